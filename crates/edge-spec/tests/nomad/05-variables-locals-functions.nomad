# HCL2 as Nomad writes it: variables, locals and functions.
variable "env" {
  type    = string
  default = "staging"
}

variable "replicas" {
  type    = number
  default = 2
}

variable "tags" {
  type    = list(string)
  default = ["api", "internal"]
}

locals {
  name     = "api-${var.env}"
  image    = format("registry.local/api:%s", "1.4.2")
  all_tags = concat(var.tags, [upper(var.env)])
  settings = jsonencode({ workers = var.replicas * 2, env = var.env })
}

job "api" {
  datacenters = ["dc1"]

  group "api" {
    count = var.replicas

    network {
      port "http" {}
    }

    service {
      name = local.name
      port = "http"
      tags = local.all_tags
    }

    task "api" {
      driver = "exec"

      config {
        command = "/srv/api/bin/api"
        args    = ["--listen", ":${NOMAD_PORT_http}", "--name", lower(local.name)]
      }

      env {
        SETTINGS  = local.settings
        TAG_COUNT = length(local.all_tags)
        JOINED    = join(",", local.all_tags)
      }
    }
  }
}
