//! Nomad's HCL2 functions and `dynamic` blocks through whole job files:
//! functions in locals and anywhere in the job, `dynamic` for tasks,
//! ports, constraints and nested in each other, and their errors at the
//! line that has them.

use edge_spec::{Files, ParseOptions, parse_hcl};

const JOB: &str = r#"variable "dcs" {
  default = ["dc1", "dc2"]
}

locals {
  name  = lower(format("%s-%02d", "WEB", 7))
  ports = { http = 8080, admin = 9090 }
  tasks = {
    a = { args = ["one"] }
    b = { args = ["two", "three"] }
  }
  kernels = ["linux"]
}

job "web" {
  datacenters = [for dc in var.dcs : upper(dc)]

  group "g" {
    count = max(1, length(var.dcs))

    network {
      dynamic "port" {
        for_each = local.ports
        labels   = [port.key]
        content {
          static = port.value
        }
      }
    }

    dynamic "task" {
      for_each = local.tasks
      iterator = t
      labels   = ["task-${t.key}"]
      content {
        driver = "exec"
        config {
          command = "/bin/echo"
          args    = concat([local.name, "${NOMAD_TASK_DIR}"], t.value.args)
        }
        dynamic "constraint" {
          for_each = local.kernels
          content {
            attribute = "${attr.kernel.name}"
            value     = constraint.value
          }
        }
      }
    }
  }
}
"#;

#[test]
fn functions_locals_and_dynamic_blocks_make_a_job() {
    let parsed = parse_hcl(JOB, &ParseOptions::new("web.hcl")).expect("valid");
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let job = &parsed.job;
    assert_eq!(job.datacenters, ["DC1", "DC2"]);
    let g = &job.groups[0];
    assert_eq!(g.count, 2);
    let ports: Vec<(&str, Option<u16>)> = g
        .network
        .ports
        .iter()
        .map(|p| (p.label.as_str(), p.static_port))
        .collect();
    assert_eq!(ports, [("admin", Some(9090)), ("http", Some(8080))]);
    let names: Vec<&str> = g.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["task-a", "task-b"]);
    let args = &g.tasks[1].config["args"];
    assert_eq!(
        args,
        &serde_json::json!(["web-07", "${NOMAD_TASK_DIR}", "two", "three"])
    );
    let c = &g.tasks[0].constraints[0];
    assert_eq!(c.attribute, "${attr.kernel.name}");
    assert_eq!(c.value, "linux");
}

fn err(src: &str) -> String {
    parse_hcl(src, &ParseOptions::new("web.hcl"))
        .expect_err("refused")
        .to_string()
}

fn job_with(group_body: &str) -> String {
    format!(
        "job \"web\" {{\n  group \"g\" {{\n{group_body}\n    task \"t\" {{\n      driver = \"exec\"\n      config {{\n        command = \"/bin/true\"\n      }}\n    }}\n  }}\n}}\n"
    )
}

#[test]
fn a_failing_function_is_named_at_its_line_and_column() {
    let e = err(&job_with("    count = parseint(\"12\", 2)"));
    assert!(
        e.contains("web.hcl:3:13: job.web.group.g.count: parseint(): cannot parse \"12\" as a base 2 integer"),
        "{e}"
    );
    let e = err(&job_with(
        "    meta {\n      a = upper(\"${attr.x}\")\n    }",
    ));
    assert!(e.contains("web.hcl:4:"), "{e}");
    assert!(
        e.contains("only known where the task runs, but upper()"),
        "{e}"
    );
    let e = err(&job_with("    count = nosuch(1)"));
    assert!(
        e.contains("web.hcl:3:13:") && e.contains("unknown function `nosuch`"),
        "{e}"
    );
}

#[test]
fn variable_defaults_are_constants_as_in_nomad() {
    let src = format!(
        "variable \"n\" {{\n  default = upper(\"a\")\n}}\n{}",
        job_with("")
    );
    let e = err(&src);
    assert!(
        e.contains("web.hcl:2:13: var.n.default: upper() cannot be used here"),
        "{e}"
    );
}

#[test]
fn file_reads_beside_the_job_file_or_says_it_cannot() {
    let src = job_with("    meta {\n      motd = trimspace(file(\"motd.txt\"))\n    }");
    let e = err(&src);
    assert!(e.contains("file(): files cannot be read here"), "{e}");
    let mut opts = ParseOptions::new("web.hcl");
    opts.files = Files::new(|name| match name {
        "motd.txt" => Ok("hello\n".to_string()),
        other => Err(format!("{other}: not found")),
    });
    let parsed = parse_hcl(&src, &opts).expect("valid");
    assert_eq!(parsed.job.groups[0].meta["motd"], "hello");
}

#[test]
fn dynamic_block_errors_name_their_line() {
    let e = err(&job_with(
        "    dynamic \"constraint\" {\n      for_each = 3\n      content {\n        attribute = \"x\"\n      }\n    }",
    ));
    assert!(
        e.contains("web.hcl:4:18:")
            && e.contains("for_each must be a list, set or map, not number 3"),
        "{e}"
    );
    let e = err(&job_with(
        "    dynamic \"constraint\" {\n      for_each = [1]\n    }",
    ));
    assert!(
        e.contains("web.hcl:3:5:") && e.contains("needs a `content` block"),
        "{e}"
    );
    let e = err(&job_with(
        "    dynamic \"constraint\" {\n      for_each = [1]\n      count = 2\n      content {}\n    }",
    ));
    assert!(
        e.contains("web.hcl:5:7:") && e.contains("unknown attribute `count` in a dynamic block"),
        "{e}"
    );
    let e = err(&job_with(
        "    dynamic \"task\" {\n      for_each = [1]\n      content {\n        driver = \"exec\"\n      }\n    }",
    ));
    assert!(e.contains("each `task` block needs one label"), "{e}");
    let e = err(&job_with(
        "    dynamic \"constraint\" {\n      for_each = [\"a\"]\n      content {\n        attribute = \"x\"\n        value = constraint.value\n        operator = nosuch()\n      }\n    }",
    ));
    assert!(
        e.contains("web.hcl:8:20:") && e.contains("unknown function `nosuch`"),
        "{e}"
    );
}

#[test]
fn nested_dynamic_blocks_see_both_iterators() {
    let src = r#"job "web" {
  dynamic "group" {
    for_each = ["a", "b"]
    labels   = [group.value]
    content {
      count = 1
      dynamic "task" {
        for_each = range(2)
        labels   = ["${group.value}-${task.value}"]
        content {
          driver = "exec"
          config {
            command = "/bin/true"
            args    = [group.key, task.key]
          }
        }
      }
    }
  }
}
"#;
    let parsed = parse_hcl(src, &ParseOptions::new("web.hcl")).expect("valid");
    let names: Vec<String> = parsed
        .job
        .groups
        .iter()
        .flat_map(|g| {
            g.tasks
                .iter()
                .map(move |t| format!("{}/{}", g.name, t.name))
        })
        .collect();
    assert_eq!(names, ["a/a-0", "a/a-1", "b/b-0", "b/b-1"]);
    assert_eq!(
        parsed.job.groups[1].tasks[1].config["args"],
        serde_json::json!([1, 1])
    );
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    fn pick(options: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
        prop::sample::select(options)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Any mix of block type, collection, labels and iterator uses
        /// expands or errs.
        #[test]
        fn dynamic_blocks_expand_or_err(
            kind in pick(&["constraint", "task", "group", "port", "service", "config", "x y", "dynamic", "content"]),
            for_each in pick(&["3", "null", "\"s\"", "[]", "[1, 2]", "{a = 1, b = {c = 2}}", "range(1000)", "[[1], [\"a\"]]", "var.nope", "attr.x"]),
            labels in pick(&["", "labels = []", "labels = [\"x\"]", "labels = [it.key]", "labels = [it.value]", "labels = [1, 2]", "labels = \"x\"", "labels = [{}]"]),
            iterator in pick(&["", "iterator = it", "iterator = \"it\"", "iterator = it.key"]),
            body in pick(&["", "attribute = it.value", "name = \"${it.key}\"", "dynamic \"check\" {\n for_each = it.value\n content {}\n}", "content {}"]),
        ) {
            let src = format!(
                "job \"web\" {{\n  group \"g\" {{\n    dynamic \"{kind}\" {{\n      for_each = {for_each}\n      {labels}\n      {iterator}\n      content {{\n        {body}\n      }}\n    }}\n    task \"t\" {{\n      driver = \"exec\"\n      config {{\n        command = \"/bin/true\"\n      }}\n    }}\n  }}\n}}\n"
            );
            let _ = parse_hcl(&src, &ParseOptions::new("web.hcl"));
        }
    }
}
