# Secrets from Vault: edge has its own secrets, not Vault.
job "billing" {
  datacenters = ["dc1"]

  group "billing" {
    task "billing" {
      driver = "exec"

      vault {
        policies = ["billing-read"]
      }

      config {
        command = "/srv/bin/billing"
      }
    }
  }
}
