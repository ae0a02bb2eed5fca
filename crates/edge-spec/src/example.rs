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

/// A commented job that serves an ONNX model over the Open Inference
/// Protocol (`edge job init --template model`).
pub const EXAMPLE_MODEL_JOB: &str = r#"# An example edge job: an ONNX model served over the Open Inference Protocol
# (KServe V2 REST, and gRPC with a `grpc` block), e.g. the iris classifier of
# examples/models/iris.onnx.
#
# Run it with `edge job run model.hcl`; `edge job plan model.hcl` shows the
# ordinary group it stands for. Then, on the port the agent picked:
#   curl localhost:PORT/v2/models/iris
#   curl -d '{"inputs":[{"name":"X","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}' \
#     localhost:PORT/v2/models/iris/infer

job "models" {
  # Expands into a group "iris" with one task (driver "model") running
  # `edge model serve` as a separate process under the task's limits, a
  # port "http", and a service checked on /v2/health/ready.
  model "iris" {
    # A path on the node, relative to this file; or an http(s) URL, then
    # with `sha256 = "..."` (the download is checked and cached).
    source = "models/iris.onnx"
    format = "onnx"
    count  = 1

    # What runs the model: the built-in tract, or "onnxruntime" (ONNX
    # Runtime's shared library on the node, found as libonnxruntime.so or
    # through the agent's EDGE_ONNXRUNTIME_LIB): faster on convolutions,
    # and it knows more operators.
    # backend = "onnxruntime"

    # A static port; leave it out for a dynamic one.
    # port = 8500

    resources {
      cpu    = 200
      memory = 64
    }

    # Concurrent requests are stacked along the batch dimension (when the
    # model has one) up to max_batch_size rows, waiting at most max_delay.
    batching {
      max_batch_size = 32
      max_delay      = "2ms"
    }

    service {
      # The catalog name (iris.service.edge); the model name by default.
      name = "iris"
      # For the load balancer: listen on this port on every node.
      # publish {
      #   port = 8080
      # }
    }

    # Also serve the protocol over gRPC (KServe's GRPCInferenceService,
    # what tritonclient.grpc speaks) on a second port "grpc", with a service
    # "iris-grpc"; `publish` passes it through the load balancer as TCP.
    # grpc {
    #   port = 8501
    #   publish {
    #     port = 9001
    #   }
    # }
  }
}
"#;
