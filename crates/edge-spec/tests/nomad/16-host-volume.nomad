# A database on a host volume the node offers.
job "postgres" {
  datacenters = ["dc1"]

  group "db" {
    volume "pgdata" {
      type      = "host"
      source    = "pgdata"
      read_only = false
    }

    network {
      port "db" {
        static = 5432
      }
    }

    service {
      name = "postgres"
      port = "db"

      check {
        type     = "tcp"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "postgres" {
      driver = "exec"

      volume_mount {
        volume      = "pgdata"
        destination = "/var/lib/postgresql"
      }

      config {
        command = "/usr/lib/postgresql/15/bin/postgres"
        args    = ["-D", "/var/lib/postgresql/data"]
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
