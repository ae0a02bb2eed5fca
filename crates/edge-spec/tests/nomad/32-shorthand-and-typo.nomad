# A misspelled key next to a warning: both are printed.
job "typo" {
  region      = "global"
  datacenters = ["dc1"]

  group "g" {
    count = 1

    task "t" {
      driver = "exec"

      confg {
        command = "/bin/true"
      }
    }
  }
}
