# A Consul Connect sidecar: edge's DNS and load balancer connect services.
job "countdash" {
  datacenters = ["dc1"]

  group "api" {
    network {
      mode = "bridge"
    }

    service {
      name = "count-api"
      port = "9001"

      connect {
        sidecar_service {}
      }
    }

    task "web" {
      driver = "exec"

      config {
        command = "/srv/bin/counting-service"
      }
    }
  }
}
