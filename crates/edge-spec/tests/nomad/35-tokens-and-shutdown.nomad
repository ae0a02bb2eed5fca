# Tokens passed at submit, and a group-level shutdown delay.
job "tokens" {
  datacenters  = ["dc1"]
  consul_token = "00000000-0000-0000-0000-000000000000"
  vault_token  = "s.abcdef"

  group "g" {
    shutdown_delay               = "5s"
    stop_after_client_disconnect = "10m"

    task "t" {
      driver = "exec"

      config {
        command = "/bin/true"
      }
    }
  }
}
