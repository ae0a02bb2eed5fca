# A database checked from inside its own task.
job "pg" {
  datacenters = ["dc1"]

  group "pg" {
    network {
      port "db" {}
    }

    service {
      name = "pg"
      port = "db"

      check {
        name     = "ready"
        type     = "script"
        task     = "pg"
        command  = "/usr/bin/pg_isready"
        args     = ["-p", "${NOMAD_PORT_db}"]
        interval = "10s"
        timeout  = "3s"
      }
    }

    task "pg" {
      driver = "exec"

      config {
        command = "/usr/bin/postgres"
      }
    }
  }
}
