# A nightly-style batch job run by hand: exec driver, restart and reschedule.
job "report" {
  datacenters = ["dc1", "dc2"]
  type        = "batch"
  priority    = 70

  group "render" {
    count = 2

    restart {
      attempts = 3
      delay    = "15s"
      interval = "10m"
      mode     = "fail"
    }

    reschedule {
      attempts  = 2
      interval  = "1h"
      delay     = "30s"
      unlimited = false
    }

    task "render" {
      driver = "exec"

      config {
        command = "/usr/local/bin/render"
        args    = ["--out", "${NOMAD_ALLOC_DIR}/report.pdf"]
      }

      env {
        RENDER_THREADS = "2"
      }

      kill_timeout = "20s"

      resources {
        cpu    = 250
        memory = 128
      }
    }
  }
}
