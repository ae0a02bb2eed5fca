# Dynamic blocks: one port per listener, one task per worker kind.
locals {
  listeners = ["http", "admin"]
  workers = {
    mail  = "/srv/bin/mail-worker"
    thumb = "/srv/bin/thumb-worker"
  }
}

job "workers" {
  datacenters = ["dc1"]

  group "workers" {
    network {
      dynamic "port" {
        for_each = local.listeners
        labels   = [port.value]
        content {}
      }
    }

    dynamic "task" {
      for_each = local.workers
      iterator = w
      labels   = [w.key]

      content {
        driver = "exec"

        config {
          command = w.value
          args    = ["--admin", "${NOMAD_PORT_admin}"]
        }
      }
    }
  }
}
