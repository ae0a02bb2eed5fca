# restart written on a task (Nomad allows it there too).
job "worker" {
  datacenters = ["dc1"]

  group "worker" {
    task "worker" {
      driver = "exec"

      restart {
        attempts = 5
        delay    = "10s"
      }

      config {
        command = "/srv/bin/worker"
      }
    }
  }
}
