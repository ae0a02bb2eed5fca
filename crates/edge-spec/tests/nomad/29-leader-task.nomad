# When the leader exits, its followers are stopped.
job "pipeline" {
  datacenters = ["dc1"]
  type        = "batch"

  group "pipeline" {
    task "main" {
      driver = "exec"
      leader = true

      config {
        command = "/srv/bin/pipeline"
      }
    }

    task "metrics" {
      driver = "exec"

      config {
        command = "/srv/bin/metrics-pusher"
      }
    }
  }
}
