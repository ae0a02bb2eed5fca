# A WebAssembly HTTP service (WAGI): the agent listens on the dynamic port
# "http" and runs every request in a fresh instance of the module, with the
# request in CGI env vars and the body on stdin.
#
#   edge job run examples/wasm-web.hcl
#   curl localhost:PORT/some/path     # hello from wasm at /some/path
job "wasm-web" {
  type = "service"

  group "web" {
    count = 1

    network {
      port "http" {}
    }

    task "handler" {
      driver = "wasm"

      config {
        module  = "examples/wasm/web.wat"
        mode    = "http"
        port    = "http" # the label of the group port to serve
        timeout = "5s"   # per-request deadline: past it the request gets 504
      }

      resources {
        cpu    = 100
        memory = 32 # MB per request instance
      }
    }
  }
}
