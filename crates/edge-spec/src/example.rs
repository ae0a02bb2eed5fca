//! The starter job printed by `edge job init`.

/// A commented job that serves the current directory with Python's built-in
/// HTTP server on a dynamic port, checked over HTTP.
pub const EXAMPLE_JOB: &str = r#"# An example edge job: a small web server.
#
# Run it with `edge job run example.hcl`, see it with `edge job status example`.
# The format follows Nomad's job specification, so most Nomad jobs read as-is.

# Variables can be set with `-var name=value` or `-var-file vars.hcl`.
variable "count" {
  type        = number
  default     = 1
  description = "How many copies of the web server to run"
}

job "example" {
  # "service" keeps `count` copies running; "batch" runs to completion;
  # "system" runs one copy on every eligible node.
  type = "service"

  # Which datacenters may run the job ("*" matches any).
  datacenters = ["*"]

  # Only place it on Linux nodes. `${attr.*}` is read from each node's
  # fingerprint when the job is scheduled, not when the file is parsed.
  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }

  # A group is the unit of placement: every copy of it lands on one node.
  group "web" {
    count = var.count

    network {
      # No `static` port: the agent picks a free one and hands it to the task
      # as EDGE_PORT_http (and NOMAD_PORT_http).
      port "http" {}
    }

    # Registers the server in the service catalog (web.service.edge) and only
    # routes traffic to it while the check passes.
    service {
      name = "web"
      port = "http"

      check {
        type     = "http"
        path     = "/"
        interval = "10s"
        timeout  = "2s"
      }
    }

    # Restarts in place before giving up on a copy.
    restart {
      attempts = 2
      interval = "30m"
      delay    = "15s"
      mode     = "fail"
    }

    task "server" {
      # "exec" runs a plain host process under cgroup limits.
      driver = "exec"

      config {
        command = "/usr/bin/python3"
        # `${EDGE_PORT_http}` is filled in by the agent when the task starts.
        args = ["-m", "http.server", "${EDGE_PORT_http}"]
      }

      # CPU in MHz, memory in MB; the scheduler places the group where they fit.
      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
"#;
