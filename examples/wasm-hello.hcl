# A WebAssembly batch job on the embedded wasmtime (driver "wasm"): a WASI
# command prints a line to stdout (see `edge alloc logs`) and exits 0.
#
#   edge job run examples/wasm-hello.hcl
#
# `module` is a path on the node (a relative one resolves against the agent's
# working directory: run `edge dev` from the repository root) or an http(s)
# URL with an optional `sha256`. `.wasm` binaries and `.wat` text both work.
job "wasm-hello" {
  type = "batch"

  group "hello" {
    task "hello" {
      driver = "wasm"

      config {
        module = "examples/wasm/hello.wat"
        args   = ["edge"]
      }

      resources {
        cpu    = 100 # MHz
        memory = 32  # MB: the module's linear memory limit
      }
    }
  }
}
