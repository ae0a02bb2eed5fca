# Keys that mean nothing on edge: accepted, each with a warning.
job "docs" {
  region      = "global"
  datacenters = ["dc1"]
  all_at_once = false

  ui {
    description = "The documentation site"

    link {
      label = "Runbook"
      url   = "https://wiki.example.org/docs"
    }
  }

  group "docs" {
    consul {
      namespace = "default"
    }

    service {
      name     = "docs"
      provider = "nomad"
    }

    task "docs" {
      driver = "exec"

      logs {
        max_files     = 3
        max_file_size = 10
      }

      config {
        command = "/srv/bin/docs"
      }
    }
  }
}
