# Keep running through a network partition.
job "edge-cache" {
  datacenters = ["dc1"]

  group "cache" {
    max_client_disconnect      = "1h"
    prevent_reschedule_on_lost = true

    task "cache" {
      driver = "exec"

      config {
        command = "/usr/bin/cache"
      }
    }
  }
}
