# A nightly backup that never overlaps itself.
job "backup" {
  datacenters = ["dc1"]
  type        = "batch"

  periodic {
    crons            = ["0 3 * * *"]
    time_zone        = "Europe/Berlin"
    prohibit_overlap = true
  }

  group "backup" {
    task "dump" {
      driver = "exec"

      config {
        command = "/usr/local/bin/backup"
        args    = ["--target", "/srv/backups"]
      }
    }
  }
}
