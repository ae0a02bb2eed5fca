# A config file rendered from the task's environment before it starts.
job "proxy" {
  datacenters = ["dc1"]

  group "proxy" {
    network {
      port "http" {}
    }

    task "proxy" {
      driver = "exec"

      template {
        data        = <<-EOT
          listen {{ env "NOMAD_PORT_http" }}
          upstream {{ env "UPSTREAM" }}
        EOT
        destination = "local/proxy.conf"
        change_mode = "restart"
      }

      env {
        UPSTREAM = "api.service.edge:8080"
      }

      config {
        command = "/usr/bin/tinyproxy"
        args    = ["-c", "local/proxy.conf"]
      }
    }
  }
}
