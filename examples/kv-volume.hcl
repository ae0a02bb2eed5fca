# A small stateful service: its pages live on a local volume that outlives
# the job (stop it, run it again: the data is there), a prestart task
# prepares the volume before the server starts, the server reads its
# settings from a config and its password from a secret (as files).
# Local volumes and secrets need the agent to run as root (exec tasks mount
# volumes in a mount namespace of their own; secrets live on a tmpfs).
#
#   edge config put kv-settings settings="greeting = hello"
#   edge secret put kv-password password=s3cret
#   edge job run examples/kv-volume.hcl
#   edge volume ls                      # kv.kv.data[0] on this node
#   curl localhost:PORT/                # PORT from `edge alloc status ID`
job "kv" {
  type = "service"

  group "kv" {
    count = 1

    # One directory per copy, made on the node on first run and kept; the
    # copy's replacements are placed back on that node.
    volume "data" {
      type = "local"
    }

    network {
      port "http" {}
    }

    service {
      name = "kv"
      port = "http"

      check {
        type     = "http"
        path     = "/"
        interval = "2s"
        timeout  = "1s"
      }
    }

    # Runs to completion before the server starts; a failure keeps the
    # server from starting.
    task "init" {
      driver = "exec"

      lifecycle {
        hook = "prestart"
      }

      config {
        command = "/bin/sh"
        args    = ["-c", "mkdir -p /srv/kv/pages && date >> /srv/kv/pages/starts && cp /srv/kv/pages/starts /srv/kv/pages/index.html"]
      }

      volume_mount {
        volume      = "data"
        destination = "/srv/kv"
      }
    }

    task "server" {
      driver = "exec"

      config {
        command = "/usr/bin/python3"
        args    = ["-m", "http.server", "${EDGE_PORT_http}", "--bind", "${EDGE_IP_http}", "--directory", "/srv/kv/pages"]
      }

      volume_mount {
        volume      = "data"
        destination = "/srv/kv"
      }

      # local/settings.conf in the task's directory (/local in a container).
      config "kv-settings" {
        destination = "local/settings.conf"
      }

      # secrets/password, mode 0400, on a tmpfs (/run/secrets in a container).
      secret "kv-password" {
        destination = "secrets/password"
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
