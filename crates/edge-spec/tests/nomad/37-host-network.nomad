# A port bound only on the node's private network.
job "admin" {
  datacenters = ["dc1"]

  group "admin" {
    network {
      port "http" {
        static       = 8500
        host_network = "private"
      }
    }

    task "admin" {
      driver = "exec"

      config {
        command = "/srv/bin/admin"
      }
    }
  }
}
