# reschedule and migrate written once for the job, with a group override.
job "fleet" {
  datacenters = ["dc1"]

  reschedule {
    attempts  = 3
    interval  = "30m"
    delay     = "20s"
    unlimited = false
  }

  migrate {
    max_parallel = 2
  }

  group "api" {
    count = 4

    reschedule {
      attempts = 10
    }

    task "api" {
      driver = "exec"

      restart {
        attempts = 4
        delay    = "5s"
      }

      config {
        command = "/srv/bin/api"
      }
    }
  }

  group "worker" {
    task "worker" {
      driver = "exec"

      config {
        command = "/srv/bin/worker"
      }
    }
  }
}
