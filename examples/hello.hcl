# The smallest useful edge job: Python's HTTP server on a dynamic port,
# registered as the service "hello" and checked over HTTP.
# Run it with: edge job run examples/hello.hcl
job "hello" {
  type = "service"

  group "web" {
    count = 1

    network {
      # Dynamic: the scheduler picks a free port; tasks see it as EDGE_PORT_http.
      port "http" {}
    }

    service {
      name = "hello"
      port = "http"

      check {
        type     = "http"
        path     = "/"
        interval = "2s"
        timeout  = "1s"
      }
    }

    task "server" {
      driver = "exec"

      config {
        command = "/usr/bin/python3"
        # `${EDGE_PORT_http}` is resolved by the agent at start, not at parse time.
        args = ["-m", "http.server", "--bind", "${EDGE_IP_http}", "${EDGE_PORT_http}"]
      }

      resources {
        cpu    = 100 # MHz
        memory = 64  # MB
      }
    }
  }
}
