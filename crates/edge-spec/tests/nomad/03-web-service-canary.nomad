# A web service behind a health check, rolled out with one canary.
job "web" {
  datacenters = ["dc1"]
  type        = "service"

  update {
    max_parallel      = 1
    canary            = 1
    min_healthy_time  = "10s"
    healthy_deadline  = "3m"
    progress_deadline = "10m"
    auto_revert       = true
    auto_promote      = false
  }

  group "frontend" {
    count = 3

    network {
      port "http" {}
    }

    service {
      name = "frontend"
      port = "http"
      tags = ["web", "v2"]

      check {
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "server" {
      driver = "exec"

      config {
        command = "/usr/bin/http-server"
        args    = ["-p", "${NOMAD_PORT_http}"]
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
