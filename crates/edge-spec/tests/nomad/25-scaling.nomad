# A horizontal scaling policy for the autoscaler.
job "api" {
  datacenters = ["dc1"]

  group "api" {
    count = 2

    scaling {
      enabled = true
      min     = 2
      max     = 10

      policy {
        cooldown = "1m"
      }
    }

    task "api" {
      driver = "exec"

      config {
        command = "/srv/bin/api"
      }
    }
  }
}
