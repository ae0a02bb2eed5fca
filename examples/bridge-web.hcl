# Two copies of one web server, both listening on port 8080, each in a
# network namespace of its own (`mode = "bridge"`) with its own address on
# the node's bridge, reached from outside through its own host port.
# Needs an agent running as root with the CNI plugins installed (Debian:
# containernetworking-plugins); `edge node status` shows
# `network.bridge = true` on such nodes.
#
#   edge job run examples/bridge-web.hcl
#   edge alloc status ID        # Ports = http=23456->8080, Address = 172.26.64.2 (bridge)
#   curl localhost:23456/       # the host port, mapped to 8080 inside
job "bridge-web" {
  type = "service"

  group "web" {
    count = 2

    network {
      mode = "bridge"

      port "http" {
        to = 8080 # the port inside the namespace; the host port is dynamic
      }
    }

    service {
      name = "bridge-web"
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
        # EDGE_IP_http is the allocation's own address here, EDGE_PORT_http
        # is 8080; EDGE_HOST_IP_http and EDGE_HOST_PORT_http are the node's.
        args = ["-m", "http.server", "--bind", "${EDGE_IP_http}", "${EDGE_PORT_http}"]
      }

      resources {
        cpu    = 100 # MHz
        memory = 64  # MB
      }
    }
  }
}
