# A dispatchable transcoder: each dispatch carries the input as payload.
job "transcode" {
  datacenters = ["dc1"]
  type        = "batch"

  parameterized {
    payload       = "required"
    meta_required = ["profile"]
    meta_optional = ["priority"]
  }

  group "transcode" {
    task "ffmpeg" {
      driver = "exec"

      config {
        command = "/usr/bin/transcode"
        args    = ["--profile", "${NOMAD_META_profile}", "local/input.json"]
      }

      dispatch_payload {
        file = "input.json"
      }
    }
  }
}
