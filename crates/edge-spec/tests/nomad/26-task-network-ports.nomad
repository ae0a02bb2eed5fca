# Nomad 0.x style: ports asked for in the task's resources.
job "legacy" {
  datacenters = ["dc1"]

  group "legacy" {
    task "legacy" {
      driver = "exec"

      config {
        command = "/srv/bin/legacy"
        args    = ["--port", "${NOMAD_PORT_http}"]
      }

      resources {
        cpu    = 100
        memory = 64

        network {
          mbits = 10

          port "http" {}
        }
      }
    }
  }
}
