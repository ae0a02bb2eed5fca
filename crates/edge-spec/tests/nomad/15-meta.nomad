# meta at every level; tasks see group and task meta as NOMAD_META_*.
job "meta" {
  datacenters = ["dc1"]

  meta {
    owner = "platform"
  }

  group "g" {
    meta {
      tier    = "backend"
      version = "1.0"
    }

    task "t" {
      driver = "exec"

      meta {
        version = "1.1"
      }

      config {
        command = "/bin/sh"
        args    = ["-c", "echo $NOMAD_META_tier $NOMAD_META_version"]
      }
    }
  }
}
