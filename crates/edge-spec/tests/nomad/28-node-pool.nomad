# Placed in a node pool.
job "gpu-train" {
  datacenters = ["*"]
  node_pool   = "gpu"
  type        = "batch"

  group "train" {
    task "train" {
      driver = "exec"

      config {
        command = "/srv/bin/train"
      }
    }
  }
}
