# A task's user written on the task, and a Connect native task.
job "native" {
  datacenters = ["dc1"]

  group "g" {
    task "t" {
      driver = "exec"
      user   = "www-data"
      kind   = "connect-native:web"

      config {
        command = "/srv/bin/web"
      }
    }
  }
}
