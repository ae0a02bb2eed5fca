//! Job files with script and gRPC checks and task artifacts: what they
//! decode to, and the findings their mistakes get.

use edge_spec::{ArtifactMode, CheckType, Diagnostic, ParseOptions, SpecError, parse_hcl};

fn errors(src: &str) -> Vec<Diagnostic> {
    match parse_hcl(src, &ParseOptions::new("job.hcl")) {
        Ok(p) => panic!("expected errors, parsed {:?}", p.job),
        Err(SpecError::Invalid { errors, .. }) => errors,
        Err(e) => panic!("expected findings, got {e}"),
    }
}

fn find<'a>(diags: &'a [Diagnostic], field: &str) -> &'a Diagnostic {
    diags
        .iter()
        .find(|d| d.field == field)
        .unwrap_or_else(|| panic!("no diagnostic for {field} in {diags:#?}"))
}

/// A group with a `db` task on `driver` and a service whose one check has
/// `check` as its body.
fn with_check(driver: &str, check: &str) -> String {
    format!(
        r#"job "j" {{
  group "g" {{
    network {{
      port "grpc" {{}}
    }}
    service {{
      name = "db"
      check {{
{check}
      }}
    }}
    task "db" {{
      driver = "{driver}"
      config {{
        command = "/bin/sleep"
      }}
    }}
  }}
}}
"#
    )
}

#[test]
fn script_and_grpc_checks_decode() {
    let src = with_check(
        "exec",
        r#"        type     = "script"
        command  = "/bin/pg_isready"
        args     = ["-h", "127.0.0.1"]
        task     = "db"
        interval = "5s"
        timeout  = "1s""#,
    );
    let job = parse_hcl(&src, &ParseOptions::new("job.hcl")).unwrap().job;
    let c = &job.groups[0].services[0].checks[0];
    assert_eq!(c.check_type, CheckType::Script);
    assert_eq!(c.command, "/bin/pg_isready");
    assert_eq!(c.args, ["-h", "127.0.0.1"]);
    assert_eq!(c.task, "db");
    let src = with_check(
        "exec",
        r#"        type         = "grpc"
        port         = "grpc"
        grpc_service = "svc"
        grpc_use_tls = false"#,
    );
    let job = parse_hcl(&src, &ParseOptions::new("job.hcl")).unwrap().job;
    let c = &job.groups[0].services[0].checks[0];
    assert_eq!(c.check_type, CheckType::Grpc);
    assert_eq!(c.grpc_service, "svc");
    assert_eq!(c.port.as_deref(), Some("grpc"));
}

#[test]
fn check_mistakes_name_their_field() {
    let at = "job.j.group.g.service[0].check[0]";
    let e = errors(&with_check("exec", r#"        type = "exec""#));
    let d = find(&e, &format!("{at}.type"));
    assert!(
        d.message.contains("script") && d.message.contains("grpc"),
        "{d:?}"
    );
    let e = errors(&with_check("exec", r#"        type = "script""#));
    assert!(
        find(&e, &format!("{at}.command"))
            .message
            .contains("command")
    );
    let e = errors(&with_check("exec", r#"        type = "grpc""#));
    assert!(find(&e, &format!("{at}.port")).message.contains("port"));
    let e = errors(&with_check(
        "wasm",
        r#"        type = "script"
        command = "/bin/true""#,
    ));
    assert!(find(&e, &format!("{at}.task")).message.contains("wasm"));
    let e = errors(&with_check(
        "exec",
        r#"        type = "script"
        command = "/bin/true"
        task = "web""#,
    ));
    assert!(find(&e, &format!("{at}.task")).message.contains("\"web\""));
}

fn with_artifact(body: &str) -> String {
    format!(
        r#"job "j" {{
  group "g" {{
    task "t" {{
      driver = "exec"
      config {{
        command = "local/app"
      }}
      artifact {{
{body}
      }}
    }}
  }}
}}
"#
    )
}

#[test]
fn artifacts_decode() {
    let src = with_artifact(
        r#"        source      = "https://example.com/app.tar.gz"
        destination = "local/app"
        options {
          checksum = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
        }"#,
    );
    let job = parse_hcl(&src, &ParseOptions::new("job.hcl")).unwrap().job;
    let a = &job.groups[0].tasks[0].artifacts[0];
    assert_eq!(a.source, "https://example.com/app.tar.gz");
    assert_eq!(a.destination, "local/app");
    assert_eq!(a.mode, ArtifactMode::Any);
    assert!(a.options["checksum"].starts_with("sha256:"));
    let src = with_artifact(r#"        source = "file:///srv/app.zip""#);
    let job = parse_hcl(&src, &ParseOptions::new("job.hcl")).unwrap().job;
    assert_eq!(job.groups[0].tasks[0].artifacts[0].destination, "local/");
}

#[test]
fn artifact_mistakes_name_their_field() {
    let at = "job.j.group.g.task.t.artifact[0]";
    let e = errors(&with_artifact(
        r#"        source      = "https://example.com/app.tgz"
        destination = "../../etc""#,
    ));
    let d = find(&e, &format!("{at}.destination"));
    assert!(d.message.contains("inside the task"), "{d:?}");
    assert!(d.location.line > 0, "{d:?}");
    let e = errors(&with_artifact(
        r#"        source = "git::https://example.com/r.git""#,
    ));
    find(&e, &format!("{at}.source"));
    let e = errors(&with_artifact(
        r#"        source = "https://example.com/app.tgz"
        options {
          checksum = "sha256:abc"
        }"#,
    ));
    assert!(
        find(&e, &format!("{at}.options.checksum"))
            .message
            .contains("64 hex")
    );
}

/// Nomad 0.x's ports in a task's `resources { network }` are the group's,
/// with a warning; beside a group `network` block they are refused.
#[test]
fn task_level_network_ports_become_the_groups() {
    let task = |name: &str, port: &str| {
        format!(
            r#"    task "{name}" {{
      driver = "exec"
      config {{
        command = "/bin/sleep"
      }}
      resources {{
        cpu = 100
        network {{
          mbits = 10
          port "{port}" {{}}
        }}
      }}
    }}
"#
        )
    };
    let src = format!(
        "job \"j\" {{\n  group \"g\" {{\n    service {{\n      name = \"web\"\n      port = \"http\"\n    }}\n{}{}  }}\n}}\n",
        task("a", "http"),
        task("b", "admin")
    );
    let parsed = parse_hcl(&src, &ParseOptions::new("job.hcl")).unwrap();
    let labels: Vec<&str> = parsed.job.groups[0]
        .network
        .ports
        .iter()
        .map(|p| p.label.as_str())
        .collect();
    assert_eq!(labels, ["http", "admin"]);
    assert_eq!(parsed.job.groups[0].tasks[0].resources.cpu, 100);
    let w = find(&parsed.warnings, "job.j.group.g.task.a.resources.network");
    assert!(w.message.contains("move the block into the group"), "{w:?}");
    assert!(w.location.line > 0, "{w:?}");

    let src = format!(
        "job \"j\" {{\n  group \"g\" {{\n    network {{\n      port \"x\" {{}}\n    }}\n{}  }}\n}}\n",
        task("a", "http")
    );
    let e = errors(&src);
    let d = find(&e, "job.j.group.g.task.a.resources.network");
    assert!(d.message.contains("network` block of its own"), "{d:?}");
}
