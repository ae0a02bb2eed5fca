# A prestart migration and a long-running log shipper next to the app.
job "app" {
  datacenters = ["dc1"]

  group "app" {
    task "migrate" {
      driver = "exec"

      lifecycle {
        hook    = "prestart"
        sidecar = false
      }

      config {
        command = "/srv/app/bin/migrate"
      }
    }

    task "shipper" {
      driver = "exec"

      lifecycle {
        hook    = "poststart"
        sidecar = true
      }

      config {
        command = "/usr/bin/shipper"
      }
    }

    task "app" {
      driver = "exec"

      config {
        command = "/srv/app/bin/app"
      }
    }
  }
}
