# Every constraint operator, in the long form and HCL1's shorthands.
job "placement" {
  datacenters = ["dc1"]

  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }

  constraint {
    attribute = "${attr.kernel.version}"
    version   = ">= 5.4, < 7"
  }

  group "g" {
    constraint {
      attribute = "${attr.unique.hostname}"
      regexp    = "^edge-[0-9]+$"
    }

    constraint {
      attribute    = "${meta.features}"
      set_contains = "gpu,nvme"
    }

    constraint {
      attribute = "${meta.rack}"
      operator  = "distinct_property"
      value     = "2"
    }

    constraint {
      attribute = "${meta.tier}"
      operator  = "!="
      value     = "legacy"
    }

    constraint {
      attribute = "${attr.os.version}"
      operator  = "semver"
      value     = "~> 12.0"
    }

    task "t" {
      driver = "exec"

      constraint {
        attribute = "${meta.zone}"
        operator  = "is_set"
      }

      config {
        command = "/bin/true"
      }
    }
  }
}
