# A sticky, migrated cache directory.
job "cache" {
  datacenters = ["dc1"]

  group "cache" {
    ephemeral_disk {
      size    = 300
      sticky  = true
      migrate = true
    }

    task "cache" {
      driver = "exec"

      config {
        command = "/usr/bin/varnishd"
      }
    }
  }
}
