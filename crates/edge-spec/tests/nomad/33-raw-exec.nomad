# raw_exec: a command run straight on the host.
job "cleanup" {
  datacenters = ["dc1"]
  type        = "batch"

  group "cleanup" {
    task "cleanup" {
      driver = "raw_exec"

      config {
        command = "/usr/bin/find"
        args    = ["/tmp", "-mtime", "+7", "-delete"]
      }
    }
  }
}
