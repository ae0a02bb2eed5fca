# How copies leave a draining node.
job "queue" {
  datacenters = ["dc1"]

  group "queue" {
    count = 4

    migrate {
      max_parallel     = 1
      health_check     = "checks"
      min_healthy_time = "10s"
      healthy_deadline = "5m"
    }

    task "queue" {
      driver = "exec"

      config {
        command = "/usr/bin/queue"
      }
    }
  }
}
