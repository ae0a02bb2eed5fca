# A config file read beside the job file with file().
job "conf" {
  datacenters = ["dc1"]

  group "g" {
    task "t" {
      driver = "exec"

      template {
        data        = file("34-file-function.conf")
        destination = "local/app.conf"
      }

      config {
        command = "/srv/bin/app"
        args    = ["-c", "local/app.conf"]
      }
    }
  }
}
