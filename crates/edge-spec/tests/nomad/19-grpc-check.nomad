# A gRPC service checked with grpc.health.v1.
job "greeter" {
  datacenters = ["dc1"]

  group "greeter" {
    network {
      port "grpc" {}
    }

    service {
      name = "greeter"
      port = "grpc"

      check {
        type         = "grpc"
        port         = "grpc"
        grpc_service = "helloworld.Greeter"
        grpc_use_tls = false
        interval     = "5s"
        timeout      = "1s"
      }
    }

    task "greeter" {
      driver = "exec"

      config {
        command = "/srv/bin/greeter"
        args    = ["--port", "${NOMAD_PORT_grpc}"]
      }
    }
  }
}
