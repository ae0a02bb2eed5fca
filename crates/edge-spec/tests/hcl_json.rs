//! HCL and JSON are two spellings of one schema: the same job decodes to the
//! same `Job`, defaults included, and a type error anywhere in an HCL file
//! names its line, column and dotted field.

use edge_spec::{Diagnostic, Job, ParseOptions, SpecError, parse_hcl, parse_json};

fn hcl(src: &str) -> Job {
    match parse_hcl(src, &ParseOptions::new("job.hcl")) {
        Ok(p) => {
            assert!(p.warnings.is_empty(), "{:#?}", p.warnings);
            p.job
        }
        Err(e) => panic!("HCL does not parse:\n{e}\n{src}"),
    }
}

fn json(src: &str) -> Job {
    match parse_json(src, "job.json") {
        Ok(p) => p.job,
        Err(e) => panic!("JSON does not parse:\n{e}\n{src}"),
    }
}

fn errors(src: &str) -> Vec<Diagnostic> {
    match parse_hcl(src, &ParseOptions::new("job.hcl")) {
        Ok(p) => panic!("expected errors, parsed {:?}", p.job),
        Err(SpecError::Invalid { errors: d, .. }) => d,
        Err(e) => panic!("expected findings, got {e}"),
    }
}

/// (what the case covers, HCL, JSON)
const SAME: &[(&str, &str, &str)] = &[
    (
        "every default",
        r#"job "a" {
  group "g" {
    task "t" {
      driver = "exec"
    }
  }
}"#,
        r#"{"id": "a", "groups": [{"name": "g", "tasks": [{"name": "t", "driver": "exec"}]}]}"#,
    ),
    (
        "job fields, constraints and meta converted to strings",
        r#"job "a" {
  name        = "A"
  type        = "batch"
  datacenters = ["dc1", "dc2"]
  priority    = 70
  meta {
    n    = 1
    flag = true
  }
  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }
  constraint {
    distinct_hosts = true
  }
  group "g" {
    constraint {
      attribute = "${meta.rack}"
      operator  = "regexp"
      value     = "r[0-9]"
    }
    task "t" {
      driver = "exec"
    }
  }
}"#,
        r#"{"id": "a", "name": "A", "type": "batch", "datacenters": ["dc1", "dc2"],
  "priority": 70, "meta": {"n": "1", "flag": "true"},
  "constraints": [
    {"attribute": "${attr.kernel.name}", "value": "linux"},
    {"operator": "distinct_hosts"}
  ],
  "groups": [{"name": "g",
    "constraints": [{"attribute": "${meta.rack}", "operator": "regexp", "value": "r[0-9]"}],
    "tasks": [{"name": "t", "driver": "exec"}]}]}"#,
    ),
    (
        "policies given in part keep the rest of their defaults",
        r#"job "a" {
  group "g" {
    count = 3
    restart {
      attempts = 5
    }
    reschedule {
      delay = "1m"
    }
    task "t" {
      driver       = "exec"
      kill_timeout = "20s"
      resources {
        memory = 64
      }
    }
  }
}"#,
        r#"{"id": "a", "groups": [{"name": "g", "count": 3,
  "restart": {"attempts": 5}, "reschedule": {"delay": "1m"},
  "tasks": [{"name": "t", "driver": "exec", "kill_timeout": "20s", "resources": {"memory": 64}}]}]}"#,
    ),
    (
        "ports, services, checks and check_restart defaults",
        r#"job "a" {
  group "g" {
    network {
      port "http" {
        static = 8080
      }
      port "admin" {}
    }
    service {
      port = "http"
      tags = ["x"]
      check {
        type = "tcp"
        check_restart {
          limit = 2
        }
      }
      check {
        type     = "http"
        path     = "/health"
        port     = "admin"
        interval = "5s"
      }
    }
    task "t" {
      driver = "exec"
    }
  }
}"#,
        r#"{"id": "a", "groups": [{"name": "g",
  "network": {"ports": [{"label": "http", "static": 8080}, {"label": "admin"}]},
  "services": [{"name": "a-g", "port": "http", "tags": ["x"], "checks": [
    {"type": "tcp", "check_restart": {"limit": 2}},
    {"type": "http", "path": "/health", "port": "admin", "interval": "5s"}
  ]}],
  "tasks": [{"name": "t", "driver": "exec"}]}]}"#,
    ),
    (
        "a task's service is the group's, with the service's check_restart on each check",
        r#"job "a" {
  group "g" {
    network {
      port "http" {}
    }
    task "t" {
      driver = "exec"
      service {
        port = "http"
        check_restart {
          grace = "30s"
        }
        check {
          type = "tcp"
        }
      }
    }
  }
}"#,
        r#"{"id": "a", "groups": [{"name": "g",
  "network": {"ports": [{"label": "http"}]},
  "services": [{"name": "a-g-t", "port": "http",
    "checks": [{"type": "tcp", "check_restart": {"grace": "30s"}}]}],
  "tasks": [{"name": "t", "driver": "exec"}]}]}"#,
    ),
    (
        "publish: host and path are hosts and path_prefix",
        r#"job "a" {
  group "g" {
    network {
      port "http" {}
    }
    service {
      name           = "web"
      port           = "http"
      shutdown_delay = "3s"
      publish {
        port     = 8080
        protocol = "http"
        host     = "web.example"
        path     = "/api"
        balance  = "p2c"
        tls {
          cert_file = "/c.pem"
          key_file  = "/k.pem"
        }
      }
    }
    task "t" {
      driver = "exec"
    }
  }
}"#,
        r#"{"id": "a", "groups": [{"name": "g",
  "network": {"ports": [{"label": "http"}]},
  "services": [{"name": "web", "port": "http", "shutdown_delay": "3s",
    "publish": {"port": 8080, "protocol": "http", "hosts": ["web.example"],
      "path_prefix": "/api", "balance": "p2c",
      "tls": {"cert_file": "/c.pem", "key_file": "/k.pem"}}}],
  "tasks": [{"name": "t", "driver": "exec"}]}]}"#,
    ),
    (
        "config keeps its shape, env converts to strings",
        r#"job "a" {
  group "g" {
    task "t" {
      driver = "containerd"
      config {
        image = "busybox"
        args  = ["-c", "echo ${EDGE_PORT_http}"]
        mount {
          source = "/a"
        }
        mount {
          source = "/b"
        }
        limits {
          depth = 3
        }
      }
      env {
        PORT = 80
        NAME = "x"
      }
    }
  }
}"#,
        r#"{"id": "a", "groups": [{"name": "g", "tasks": [{"name": "t", "driver": "containerd",
  "config": {"image": "busybox", "args": ["-c", "echo ${EDGE_PORT_http}"],
    "mount": [{"source": "/a"}, {"source": "/b"}], "limits": {"depth": 3}},
  "env": {"PORT": "80", "NAME": "x"}}]}]}"#,
    ),
];

#[test]
fn the_same_job_in_hcl_and_json_decodes_alike() {
    for (case, h, j) in SAME {
        assert_eq!(hcl(h), json(j), "{case}");
    }
}

#[test]
fn defaults_come_from_the_serde_types() {
    let job = hcl(SAME[0].1);
    let g = &job.groups[0];
    assert_eq!((job.name.as_str(), job.priority), ("a", 50));
    assert_eq!(g.restart, edge_spec::RestartPolicy::default());
    assert_eq!(g.reschedule, edge_spec::ReschedulePolicy::default());
    let job = hcl(SAME[3].1);
    let checks = &job.groups[0].services[0].checks;
    let restart = checks[0].check_restart.expect("set");
    assert_eq!(restart.grace, std::time::Duration::from_secs(1));
    assert_eq!(checks[0].interval, std::time::Duration::from_secs(10));
    assert_eq!(checks[0].timeout, std::time::Duration::from_secs(2));
}

/// A valid job with one line left for each case to fill, at known lines.
fn spliced(slot: &str, text: &str) -> String {
    let line = |name: &str, indent: &str| {
        if name == slot {
            format!("{indent}{text}")
        } else {
            format!("{indent}# {name}")
        }
    };
    [
        "job \"j\" {".to_string(),
        "  group \"g\" {".to_string(),
        line("group", "    "),
        "    network {".to_string(),
        "      port \"http\" {".to_string(),
        line("port", "        "),
        "      }".to_string(),
        "    }".to_string(),
        "    service {".to_string(),
        "      port = \"http\"".to_string(),
        line("service", "      "),
        "      check {".to_string(),
        "        type = \"tcp\"".to_string(),
        line("check", "        "),
        "      }".to_string(),
        "    }".to_string(),
        "    task \"t\" {".to_string(),
        "      driver = \"exec\"".to_string(),
        line("task", "      "),
        "      resources {".to_string(),
        line("resources", "        "),
        "      }".to_string(),
        "    }".to_string(),
        "  }".to_string(),
        "}".to_string(),
    ]
    .join("\n")
}

/// (slot, line, field under `job.j.group.g.`, line, column, message)
const TYPE_ERRORS: &[(&str, &str, &str, usize, usize, &str)] = &[
    (
        "group",
        r#"count = "x""#,
        "count",
        3,
        13,
        r#"expected a whole number from 0 to 4294967295, got string "x""#,
    ),
    (
        "group",
        r#"restart { mode = "sometimes" }"#,
        "restart.mode",
        3,
        22,
        "unknown variant `sometimes`, expected `fail` or `delay`",
    ),
    (
        "port",
        r#"static = "http""#,
        "network.port.http.static",
        6,
        18,
        r#"expected a whole number from 0 to 65535, got string "http""#,
    ),
    (
        "service",
        r#"tags = "a""#,
        "service[0].tags",
        11,
        14,
        r#"expected a list, got string "a""#,
    ),
    (
        "service",
        r#"shutdown_delay = "soon""#,
        "service[0].shutdown_delay",
        11,
        24,
        "invalid duration \"soon\"",
    ),
    (
        "check",
        "interval = 5",
        "service[0].check[0].interval",
        14,
        20,
        r#"expected a duration such as "10s", got number 5"#,
    ),
    (
        "check",
        r#"check_restart { limit = "x" }"#,
        "service[0].check[0].check_restart.limit",
        14,
        33,
        "expected a whole number",
    ),
    (
        "task",
        r#"env = ["a"]"#,
        "task.t.env",
        19,
        13,
        "expected a block or an object, got a list",
    ),
    (
        "resources",
        "cpu = true",
        "task.t.resources.cpu",
        21,
        15,
        "expected a whole number from 0 to 4294967295, got bool true",
    ),
    (
        "resources",
        "memory = -5",
        "task.t.resources.memory",
        21,
        18,
        "got number -5",
    ),
];

#[test]
fn type_errors_deep_in_the_tree_name_line_column_and_field() {
    for (slot, text, field, line, column, message) in TYPE_ERRORS {
        let src = spliced(slot, text);
        let d = errors(&src);
        assert_eq!(d.len(), 1, "{text}: {d:#?}");
        let want = format!("job.hcl:{line}:{column}: job.j.group.g.{field}: ");
        let got = d[0].to_string();
        assert!(got.starts_with(&want), "{text}: want {want:?}, got {got:?}");
        assert!(got.contains(message), "{text}: {got:?}");
    }
    hcl(&spliced("", ""));
}

#[test]
fn every_type_error_is_reported_and_the_rest_still_decodes() {
    let src = spliced(
        "check",
        "interval = 5\n        timeout = true\n        name = [1]",
    );
    let d = errors(&src);
    let fields: Vec<&str> = d.iter().map(|d| d.field.as_str()).collect();
    let base = "job.j.group.g.service[0].check[0]";
    assert_eq!(
        fields,
        [
            format!("{base}.interval"),
            format!("{base}.timeout"),
            format!("{base}.name")
        ],
        "{d:#?}"
    );
}

#[test]
fn a_missing_required_field_is_named_at_its_block() {
    let src = spliced("service", "check {\n        path = \"/\"\n      }");
    let d = errors(&src);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].field, "job.j.group.g.service[0].check[0].type");
    assert_eq!((d[0].location.line, d[0].location.column), (11, 7));
    assert_eq!(d[0].message, "missing field `type`");
}

#[test]
fn server_fields_are_warnings_and_nomad_keys_not_built_are_errors() {
    let src = r#"job "j" {
  version = 3
  group "g" {
    network {
      port "http" {
        host_network = "public"
      }
    }
    task "t" {
      driver = "exec"
    }
  }
}"#;
    let err = parse_hcl(src, &ParseOptions::new("job.hcl")).expect_err("host_network refused");
    let w: Vec<String> = err.warnings().iter().map(|d| d.to_string()).collect();
    assert_eq!(
        w,
        ["job.hcl:2:3: job.j.version: `version` is set by the server; ignored"]
    );
    assert!(
        err.to_string().starts_with(
            "job.hcl:6:9: job.j.group.g.network.port.http.host_network: `host_network` is not supported"
        ),
        "{err}"
    );
}

#[test]
fn a_block_label_and_a_body_field_cannot_both_name_it() {
    let src = "job \"j\" {\n  group \"g\" {\n    name = \"other\"\n    task \"t\" {\n      driver = \"exec\"\n    }\n  }\n}\n";
    let d = errors(src);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].field, "job.j.group.g.name");
    assert_eq!(d[0].location.line, 3);
}

#[test]
fn a_field_whose_expression_failed_is_not_also_missing() {
    let src = spliced("check", "name = 1").replace("type = \"tcp\"", "type = var.nope");
    let d = errors(&src);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].field, "job.j.group.g.service[0].check[0].type");
    assert!(
        d[0].message.contains("undeclared variable `nope`"),
        "{}",
        d[0]
    );
}

/// `update` blocks at job and group level decode like their JSON; fields
/// edge does not honour yet are refused by name, at their line.
#[test]
fn update_blocks_decode_and_bad_rollouts_are_refused() {
    let src = r#"job "web" {
  update {
    max_parallel     = 2
    min_healthy_time = "5s"
  }
  group "g" {
    update {
      health_check     = "task_states"
      healthy_deadline = "1m"
    }
    task "t" {
      driver = "exec"
      config {
        command = "/bin/true"
      }
    }
  }
}"#;
    let job = edge_spec::parse_hcl(src, &edge_spec::ParseOptions::default())
        .expect("parses")
        .job;
    let rules = edge_spec::Update::resolve(&job, &job.groups[0]);
    assert_eq!(rules.max_parallel, 2);
    assert_eq!(rules.min_healthy_time, std::time::Duration::from_secs(5));
    assert_eq!(rules.healthy_deadline, std::time::Duration::from_secs(60));
    assert_eq!(rules.health_check, edge_spec::HealthCheck::TaskStates);

    let canary = src.replace(
        "max_parallel     = 2",
        "canary = 2\n    canary_weight = 20\n    auto_revert = true\n    progress_deadline = \"10m\"",
    );
    let job = edge_spec::parse_hcl(&canary, &edge_spec::ParseOptions::default())
        .expect("canaries parse")
        .job;
    let rules = edge_spec::Update::resolve(&job, &job.groups[0]);
    assert_eq!((rules.canary, rules.canary_weight), (2, Some(20)));
    assert!(rules.auto_revert && !rules.auto_promote);
    assert_eq!(rules.progress_deadline, std::time::Duration::from_secs(600));

    for (bad, field, says) in [
        (
            "stagger = \"30s\"",
            "job.web.group.g.update.stagger",
            "system job",
        ),
        (
            "canary_weight = 101",
            "job.web.update.canary_weight",
            "0 to 100",
        ),
        (
            "canary_weight = 10",
            "job.web.group.g.update.canary_weight",
            "needs canaries",
        ),
        (
            "auto_promote = true",
            "job.web.group.g.update.auto_promote",
            "needs canaries",
        ),
        (
            "progress_deadline = \"30s\"",
            "job.web.group.g.update.progress_deadline",
            "longer than healthy_deadline",
        ),
    ] {
        let text = src.replace("max_parallel     = 2", bad);
        let err = edge_spec::parse_hcl(&text, &edge_spec::ParseOptions::default())
            .expect_err(bad)
            .to_string();
        assert!(err.contains(field) && err.contains(says), "{bad}: {err}");
    }
    let system = canary.replace("job \"web\" {", "job \"web\" {\n  type = \"system\"");
    let err = edge_spec::parse_hcl(&system, &edge_spec::ParseOptions::default())
        .expect_err("no canaries for system jobs")
        .to_string();
    assert!(err.contains("service jobs only"), "{err}");
}

/// serde's derive would read a list as the block's fields in order.
#[test]
fn an_update_block_must_be_an_object() {
    let job = |update: &str| {
        format!(
            r#"{{"id": "web", "update": {update}, "groups": [{{"name": "g",
            "tasks": [{{"name": "t", "driver": "exec", "config": {{"command": "/bin/true"}}}}]}}]}}"#
        )
    };
    let opts = "job.json";
    let err = edge_spec::parse_json(&job("[null, 2]"), opts)
        .expect_err("a list is not an update block")
        .to_string();
    assert!(err.contains("update"), "{err}");
    assert!(edge_spec::parse_json(&job("null"), opts).is_ok());
    let ok = edge_spec::parse_json(&job(r#"{"max_parallel": 2}"#), opts).expect("an object");
    assert_eq!(ok.job.update.and_then(|u| u.max_parallel), Some(2));
}

/// `migrate { max_parallel }` is read; the health fields Nomad also takes
/// there are refused by name (the update block's rules judge migrations).
#[test]
fn migrate_blocks_decode_with_their_health_fields() {
    let src = |body: &str| {
        format!(
            r#"job "web" {{
  group "g" {{
    migrate {{
      {body}
    }}
    task "t" {{
      driver = "exec"
      config {{
        command = "/bin/true"
      }}
    }}
  }}
}}"#
        )
    };
    let opts = edge_spec::ParseOptions::default();
    let job = edge_spec::parse_hcl(&src("max_parallel = 2"), &opts)
        .expect("parses")
        .job;
    assert_eq!(edge_spec::MigratePolicy::max_parallel(&job.groups[0]), 2);
    let job = edge_spec::parse_hcl(
        &src("min_healthy_time = \"5s\"\n      health_check = \"task_states\""),
        &opts,
    )
    .expect("parses")
    .job;
    let m = job.groups[0].migrate.clone().expect("migrate");
    assert_eq!(m.health_check, Some(edge_spec::HealthCheck::TaskStates));
    let err = edge_spec::parse_hcl(&src("health_check = \"manual\""), &opts)
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("job.web.group.g.migrate.health_check: a migration is judged by"),
        "{err}"
    );
    let json = r#"{"id": "web", "groups": [{"name": "g", "migrate": {"max_parallel": 0},
        "tasks": [{"name": "t", "driver": "exec", "config": {"command": "/bin/true"}}]}]}"#;
    let job = edge_spec::parse_json(json, "job.json").expect("json").job;
    assert_eq!(edge_spec::MigratePolicy::max_parallel(&job.groups[0]), 0);
}
