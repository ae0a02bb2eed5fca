# Prefer SSD nodes in dc1, avoid nodes marked for draining soon.
job "cache" {
  datacenters = ["dc1", "dc2"]

  affinity {
    attribute = "${node.datacenter}"
    value     = "dc1"
    weight    = 60
  }

  group "cache" {
    count = 3

    affinity {
      attribute = "${meta.disk}"
      value     = "ssd"
      weight    = 80
    }

    affinity {
      attribute = "${meta.retiring}"
      value     = "true"
      weight    = -50
    }

    task "cache" {
      driver = "exec"

      config {
        command = "/usr/bin/memcached"
      }
    }
  }
}
