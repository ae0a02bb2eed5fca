# A CSI node plugin, and an action run by hand.
job "csi-node" {
  datacenters = ["dc1"]
  type        = "system"

  group "nodes" {
    task "plugin" {
      driver = "exec"

      csi_plugin {
        id        = "aws-ebs0"
        type      = "node"
        mount_dir = "/csi"
      }

      action "status" {
        command = "/bin/plugin-status"
      }

      config {
        command = "/srv/bin/ebs-csi-driver"
      }
    }
  }
}
