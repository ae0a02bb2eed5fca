//! Reading a large job file: about 2,000 lines of HCL with variables,
//! locals, Nomad functions and `dynamic` blocks, parsed and validated as
//! `edge job run` does. Run with `cargo bench -p edge-spec`.

use edge_spec::{ParseOptions, parse_hcl};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

const GROUPS: usize = 52;
const RUNS: usize = 50;

/// A job whose groups come half from `dynamic "group"` over a local map
/// and half written out, each with dynamic ports, tasks and constraints.
fn job_file() -> String {
    let mut s = String::from(
        r#"variable "region" {
  type    = string
  default = "eu-west"
}

variable "replicas" {
  type    = number
  default = 2
}

locals {
  prefix   = lower(format("%s-%s", "EDGE", var.region))
  kernels  = ["linux"]
  ports    = { http = 8080, metrics = 9100, admin = 9000 }
  env_base = merge({ REGION = upper(var.region) }, { TIER = "web" })
  subnets  = cidrsubnets("10.0.0.0/16", 4, 4, 8)
  apps = {
"#,
    );
    for i in 0..GROUPS / 2 {
        let _ = writeln!(
            s,
            "    app{i:02} = {{ image = \"registry.local/app{i:02}:${{var.region}}\", cpu = {}, sidecars = [\"log\", \"proxy\"] }}",
            100 + i * 10
        );
    }
    s.push_str(
        r#"  }
}

job "big" {
  datacenters = [for dc in ["dc1", "dc2", "dc3"] : "${local.prefix}-${dc}"]
  type        = "service"

  dynamic "constraint" {
    for_each = local.kernels
    content {
      attribute = "${attr.kernel.name}"
      value     = constraint.value
    }
  }

  dynamic "group" {
    for_each = local.apps
    iterator = app
    labels   = [app.key]
    content {
      count = max(1, var.replicas)

      network {
        mode = "bridge"

        dynamic "port" {
          for_each = local.ports
          labels   = [port.key]
          content {
            to = port.value
          }
        }
      }

      service {
        name = "${local.prefix}-${app.key}"
        port = "http"
        tags = formatlist("v%s", split(".", "1.2.3"))

        check {
          type     = "http"
          path     = "/health"
          interval = "10s"
          timeout  = "2s"
        }
      }

      task "main" {
        driver = "exec"

        config {
          command = "/bin/serve"
          args    = ["--name", app.key, "--image", app.value.image, "--net", local.subnets[0]]
        }

        env = merge(local.env_base, { APP = upper(app.key), HASH = substr(sha256(app.key), 0, 12) })

        resources {
          cpu    = app.value.cpu
          memory = 128
        }
      }

      dynamic "task" {
        for_each = app.value.sidecars
        iterator = side
        labels   = ["${side.value}-${app.key}"]
        content {
          driver = "exec"

          config {
            command = "/bin/${side.value}"
            args    = [join(",", sort(keys(local.ports)))]
          }

          resources {
            cpu    = 50
            memory = 32
          }
        }
      }
    }
  }
"#,
    );
    for i in GROUPS / 2..GROUPS {
        let _ = write!(
            s,
            r#"
  # Group {i}, written out.
  group "plain{i:02}" {{
    count = var.replicas

    constraint {{
      attribute = "${{attr.cpu.arch}}"
      operator  = "regexp"
      value     = "^(amd64|arm64)$"
    }}

    network {{
      mode = "bridge"

      port "http" {{
        to = 8080
      }}

      port "metrics" {{
        to = 9100
      }}
    }}

    service {{
      name = "plain{i:02}"
      port = "http"
      tags = ["plain", "group-{i}"]

      check {{
        type     = "tcp"
        interval = "15s"
        timeout  = "3s"
      }}
    }}

    restart {{
      attempts = 3
      delay    = "15s"
      interval = "5m"
      mode     = "delay"
    }}

    task "web" {{
      driver = "exec"

      config {{
        command = "/bin/web"
        args    = ["--port", "8080", "--id", "{i}"]
      }}

      env {{
        GROUP  = "plain{i:02}"
        REGION = var.region
      }}

      resources {{
        cpu    = {cpu}
        memory = 256
      }}
    }}

    task "log" {{
      driver = "exec"

      config {{
        command = "/bin/log"
      }}

      resources {{
        cpu    = 50
        memory = 32
      }}
    }}
  }}
"#,
            cpu = 100 + i,
        );
    }
    s.push_str("}\n");
    s
}

fn main() {
    let src = job_file();
    let lines = src.lines().count();
    let opts = ParseOptions::new("big.hcl");
    let parsed = match parse_hcl(&src, &opts) {
        Ok(p) => p,
        Err(e) => panic!("the generated job is invalid: {e}"),
    };
    let tasks: usize = parsed.job.groups.iter().map(|g| g.tasks.len()).sum();
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            let _ = std::hint::black_box(parse_hcl(std::hint::black_box(&src), &opts));
            start.elapsed()
        })
        .collect();
    times.sort();
    let mut syntax: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            let _ = std::hint::black_box(hcl_edit::parser::parse_body(std::hint::black_box(&src)));
            start.elapsed()
        })
        .collect();
    syntax.sort();
    println!(
        "parse + validate: {lines} lines, {} groups, {tasks} tasks: p50 {:.2?}, min {:.2?}, max {:.2?} over {RUNS} runs (target <= 20 ms); of which HCL syntax alone: p50 {:.2?}",
        parsed.job.groups.len(),
        times[RUNS / 2],
        times[0],
        times[RUNS - 1],
        syntax[RUNS / 2],
    );
}
