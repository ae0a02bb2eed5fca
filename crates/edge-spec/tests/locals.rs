//! HCL2 `locals` as Nomad job files use them: any order, built from
//! variables and each other, usable anywhere in the job; undefined locals,
//! cycles and broken expressions are errors at their line, each reported
//! once.

use edge_spec::{ParseOptions, parse_hcl};

const JOB: &str = r#"variable "tag" {
  default = "v2"
}

locals {
  image = "${local.repo}/web:${var.tag}"
  copies = local.base + 1
}

locals {
  repo = "registry.local"
  base = 2
}

job "web" {
  group "g" {
    count = local.copies
    task "t" {
      driver = "containerd"
      config {
        image = local.image
      }
    }
  }
}
"#;

#[test]
fn locals_evaluate_in_any_order_from_variables_and_each_other() {
    let parsed = parse_hcl(JOB, &ParseOptions::new("web.hcl")).expect("valid");
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let g = &parsed.job.groups[0];
    assert_eq!(g.count, 3);
    assert_eq!(g.tasks[0].config["image"], "registry.local/web:v2");
    let mut opts = ParseOptions::new("web.hcl");
    opts.vars.insert("tag".to_string(), "v3".to_string());
    let parsed = parse_hcl(JOB, &opts).expect("valid");
    assert_eq!(
        parsed.job.groups[0].tasks[0].config["image"],
        "registry.local/web:v3"
    );
}

fn err(src: &str) -> String {
    parse_hcl(src, &ParseOptions::new("web.hcl"))
        .expect_err("refused")
        .to_string()
}

fn job_with(locals: &str, count: &str) -> String {
    format!(
        "locals {{\n{locals}\n}}\njob \"web\" {{\n  group \"g\" {{\n    count = {count}\n    task \"t\" {{\n      driver = \"exec\"\n      config {{\n        command = \"/bin/true\"\n      }}\n    }}\n  }}\n}}\n"
    )
}

#[test]
fn undefined_cyclic_and_broken_locals_are_errors_at_their_line() {
    let e = err(&job_with("  a = 1", "local.nope"));
    assert!(
        e.contains("web.hcl:6:13: job.web.group.g.count: undefined local `nope`: add it to a `locals` block"),
        "{e}"
    );
    let e = err(&job_with("  a = local.b\n  b = local.a", "local.a"));
    assert!(
        e.contains("web.hcl:2:3: local.a: local `a` cannot be evaluated: it depends on itself through `local.b`"),
        "{e}"
    );
    assert!(e.contains("local.b: local `b` cannot be evaluated"), "{e}");
    assert!(
        !e.contains("group.g.count"),
        "a use of a broken local is not reported again: {e}"
    );
    let e = err(&job_with("  a = 1 + \"x\"", "local.a"));
    assert_eq!(e.lines().count(), 1, "one error, at the local: {e}");
    assert!(e.contains("web.hcl:2:7: local.a:"), "{e}");
    let e = err(&format!(
        "locals {{\n  a = 2\n}}\n{}",
        job_with("  a = 1", "local.a")
    ));
    assert!(
        e.contains("web.hcl:5:3: local.a: local `a` is defined twice"),
        "{e}"
    );
    let e = err(
        "variable \"v\" {\n  default = local.a\n}\nlocals {\n  a = 1\n}\njob \"web\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"exec\"\n      config {\n        command = \"/bin/true\"\n      }\n    }\n  }\n}\n",
    );
    assert!(e.contains("locals cannot be used here"), "{e}");
}

proptest::proptest! {
    /// Any graph of locals naming each other (cycles, self-references,
    /// undefined names, mixed types) parses or is refused, never panics,
    /// and an acyclic chain of numbers always evaluates.
    #[test]
    fn any_graph_of_locals_is_evaluated_or_refused(
        refs in proptest::collection::vec(
            (0usize..6, proptest::option::of(0usize..7), proptest::bool::ANY),
            1..6,
        )
    ) {
        let names = ["a", "b", "c", "d", "e", "f"];
        let mut body = String::new();
        let mut seen = std::collections::BTreeSet::new();
        for (i, r, text) in &refs {
            if !seen.insert(*i) {
                continue;
            }
            let value = match (r, text) {
                (Some(j), false) => format!("local.{} + 1", names.get(*j).unwrap_or(&"zz")),
                (Some(j), true) => format!("\"x-${{local.{}}}\"", names.get(*j).unwrap_or(&"zz")),
                (None, _) => "1".to_string(),
            };
            body.push_str(&format!("  {} = {value}\n", names[*i]));
        }
        let src = job_with(&body, "1");
        let _ = parse_hcl(&src, &ParseOptions::new("web.hcl"));
        let chain = job_with("  a = 1\n  b = local.a + 1\n  c = local.b + 1", "local.c");
        let parsed = parse_hcl(&chain, &ParseOptions::new("web.hcl"));
        proptest::prop_assert_eq!(parsed.map(|p| p.job.groups[0].count).ok(), Some(3));
    }
}
