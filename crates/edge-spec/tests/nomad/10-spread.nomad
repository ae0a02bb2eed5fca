# Spread copies 70/30 over two datacenters, and evenly over racks.
job "ingest" {
  datacenters = ["us-east", "us-west"]

  spread {
    attribute = "${node.datacenter}"
    weight    = 100

    target "us-east" {
      percent = 70
    }

    target "us-west" {
      percent = 30
    }
  }

  group "ingest" {
    count = 10

    spread {
      attribute = "${meta.rack}"
      weight    = 50
    }

    task "ingest" {
      driver = "exec"

      config {
        command = "/srv/bin/ingest"
      }
    }
  }
}
