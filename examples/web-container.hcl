# A web server in a container: busybox httpd on a dynamic port, through the
# containerd driver. Build and import the image first (no registry needed):
#   bash tests/images/build-busybox.sh /tmp/busybox.tar
#   edge image import /tmp/busybox.tar
#   edge job run examples/web-container.hcl
# A registry image works the same: image = "docker.io/library/nginx:1.25".
variable "image" {
  default = "docker.io/edge/busybox:latest"
}

job "web-container" {
  type = "service"

  group "web" {
    count = 1

    network {
      port "http" {}
    }

    service {
      name = "web-container"
      port = "http"

      check {
        type     = "http"
        path     = "/"
        interval = "2s"
        timeout  = "1s"
      }
    }

    restart {
      attempts = 2
      delay    = "1s"
    }

    task "httpd" {
      driver = "containerd"

      config {
        image   = var.image
        command = "httpd"
        # Host networking: the container listens on the node's port directly.
        args = ["-f", "-p", "${EDGE_PORT_http}", "-h", "/www"]
        readonly_rootfs = true
        # volumes = ["/srv/site:/www:ro"]
      }

      resources {
        cpu    = 100 # MHz, as CPU shares
        memory = 32  # MB, a hard cgroup limit
      }
    }
  }
}
