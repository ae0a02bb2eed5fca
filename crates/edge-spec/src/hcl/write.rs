//! A job as an HCL job file, in the block form people write (`group
//! "web" { task "server" { ... } }`), so a job made another way (`edge
//! compose convert`) can become a job file; `parse_hcl` reads it back to
//! the same job.

use ::hcl::{Attribute, Block, Body, Expression, Identifier, ObjectKey};
use serde_json::{Map, Value};

use super::{LISTS, SERVER_FIELDS};
use crate::job::Job;

/// Blocks that appear once, holding attributes: written as blocks.
const SINGLE: &[&str] = &[
    "network",
    "update",
    "rollback",
    "restart",
    "reschedule",
    "migrate",
    "resources",
    "publish",
    "tls",
    "check_restart",
    "lifecycle",
    "config",
    "periodic",
    "parameterized",
    "dispatch_payload",
];

/// The job as HCL; a field at its default or empty is left out.
pub fn job_to_hcl(job: &Job) -> String {
    let mut value = match serde_json::to_value(job) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for f in SERVER_FIELDS {
        value.remove(*f);
    }
    value.remove("id");
    if value.get("name").and_then(Value::as_str) == Some(job.id.as_str()) {
        value.remove("name");
    }
    let block = block("job", Some(&job.id), &value);
    let body = Body::builder().add_block(block).build();
    ::hcl::format::to_string(&body).unwrap_or_default()
}

fn block(ident: &str, label: Option<&str>, fields: &Map<String, Value>) -> Block {
    let mut b = Block::builder(Identifier::sanitized(ident));
    if let Some(l) = label {
        b = b.add_label(l);
    }
    // Attributes first, then blocks, as job files are written.
    let mut blocks = Vec::new();
    for (key, value) in fields {
        if is_empty(value) {
            continue;
        }
        let list = LISTS
            .iter()
            .find(|(kind, _, list, _)| *kind == ident && list == key)
            .map(|(_, item, _, label)| (*item, *label))
            .or_else(|| (ident == "task" && key == "configs").then_some(("config", Some("name"))));
        match (list, value) {
            (Some((item, label_field)), Value::Array(items)) => {
                for it in items {
                    let Value::Object(m) = it else { continue };
                    let mut m = m.clone();
                    let label = label_field
                        .and_then(|f| m.remove(f))
                        .and_then(|v| v.as_str().map(str::to_string));
                    blocks.push(block(item, label.as_deref(), &m));
                }
            }
            (None, Value::Object(m)) if SINGLE.contains(&key.as_str()) => {
                blocks.push(block(key, None, m));
            }
            _ => {
                b = b.add_attribute(Attribute::new(
                    Identifier::sanitized(key),
                    expression(value),
                ))
            }
        }
    }
    b.add_blocks(blocks).build()
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

fn expression(v: &Value) -> Expression {
    match v {
        Value::Null => Expression::Null,
        Value::Bool(b) => Expression::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Expression::Number(u.into()),
            (None, Some(i), _) => Expression::Number(i.into()),
            (None, None, Some(f)) => {
                ::hcl::Number::from_f64(f).map_or(Expression::Null, Expression::Number)
            }
            _ => Expression::Null,
        },
        // `${` and `%{` would be read back as HCL templates.
        Value::String(s) => Expression::String(s.clone()),
        Value::Array(items) => Expression::Array(items.iter().map(expression).collect()),
        Value::Object(m) => Expression::Object(
            m.iter()
                .map(|(k, v)| {
                    let key = if Identifier::new(k.as_str()).is_ok() && !k.contains('-') {
                        ObjectKey::Identifier(Identifier::sanitized(k))
                    } else {
                        ObjectKey::Expression(Expression::String(k.clone()))
                    };
                    (key, expression(v))
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ParseOptions, parse_hcl};

    fn parse(src: &str) -> Job {
        match parse_hcl(src, &ParseOptions::default()) {
            Ok(p) => p.job,
            Err(e) => panic!("{e}\n{src}"),
        }
    }

    /// Every example job file, written out and read back, is the same job.
    #[test]
    fn examples_survive_a_round_trip() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "hcl") {
                continue;
            }
            let job = parse(&std::fs::read_to_string(&path).unwrap());
            let text = job_to_hcl(&job);
            let back = parse(&text);
            assert!(
                job.spec_eq(&back),
                "{}:\n{text}\n{job:#?}\n{back:#?}",
                path.display()
            );
            n += 1;
        }
        assert!(n >= 5, "{n}");
    }

    #[test]
    fn templates_and_odd_keys_are_kept_as_text() {
        let job = parse(
            r#"job "j" {
  meta = { "compose.project" = "x" }
  group "g" {
    task "t" {
      driver = "exec"
      config {
        command = "/bin/echo"
        args    = ["$${EDGE_PORT_http}", "100%%{x}"]
      }
      env {
        A_B = "$${HOME}"
      }
    }
  }
}"#,
        );
        assert_eq!(job.groups[0].tasks[0].env["A_B"], "${HOME}");
        let back = parse(&job_to_hcl(&job));
        assert!(job.spec_eq(&back), "{}", job_to_hcl(&job));
    }
}
