//! HCL job files: decoding, variables, runtime interpolation and diagnostics.

use edge_spec::{
    Check, CheckType, Constraint, ConstraintOp, Diagnostic, DriverConfigs, Group, Job, JobStatus,
    JobType, Network, NetworkMode, ParseOptions, Parsed, PortSpec, ReschedulePolicy, Resources,
    RestartMode, RestartPolicy, Service, SpecError, Task, parse_hcl,
};
use std::collections::BTreeMap;
use std::time::Duration;

const FULL: &str = r#"variable "count" {
  type        = number
  default     = 2
  description = "copies"
}

variable "name" {
  type    = string
  default = "world"
}

job "hello" {
  type        = "service"
  datacenters = ["dc1"]
  priority    = 60
  meta {
    owner = "ops"
  }
  constraint {
    attribute = "${attr.kernel.name}"
    operator  = "="
    value     = "linux"
  }

  group "web" {
    count = var.count
    constraint {
      attribute = "${meta.rack}"
      value     = "r1"
    }
    network {
      port "http" {
        static = 8080
      }
      port "admin" {}
      port "dyn" {}
    }
    service {
      name = "hello"
      port = "http"
      tags = ["a", "b"]
      check {
        type     = "http"
        path     = "/"
        interval = "10s"
        timeout  = "2s"
      }
    }
    restart {
      attempts = 2
      interval = "30m"
      delay    = "15s"
      mode     = "fail"
    }
    reschedule {
      attempts  = 3
      interval  = "1h"
      delay     = "30s"
      unlimited = false
    }
    task "server" {
      driver = "exec"
      config {
        command = "/usr/bin/python3"
        args    = ["-m", "http.server", "${EDGE_PORT_http}"]
      }
      env {
        GREETING = "hi ${var.name}"
      }
      resources {
        cpu    = 100
        memory = 64
      }
      kill_timeout = "5s"
    }
  }
}
"#;

fn opts() -> ParseOptions {
    ParseOptions::new("job.hcl")
}

fn parse(src: &str) -> Result<Parsed, SpecError> {
    parse_hcl(src, &opts())
}

fn errors(src: &str) -> Vec<Diagnostic> {
    errors_with(src, &opts())
}

fn errors_with(src: &str, opts: &ParseOptions) -> Vec<Diagnostic> {
    match parse_hcl(src, opts) {
        Ok(p) => panic!("expected errors, parsed {:?}", p.job),
        Err(SpecError::Invalid { errors: d, .. }) => d,
        Err(e) => panic!("expected findings, got {e}"),
    }
}

/// A minimal valid job with `body` spliced into its task.
fn with_task_body(body: &str) -> String {
    format!(
        "job \"j\" {{\n  group \"g\" {{\n    task \"t\" {{\n      driver = \"exec\"\n{body}\n    }}\n  }}\n}}\n"
    )
}

fn find<'a>(diags: &'a [Diagnostic], field: &str) -> &'a Diagnostic {
    diags
        .iter()
        .find(|d| d.field == field)
        .unwrap_or_else(|| panic!("no diagnostic for {field} in {diags:#?}"))
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn full_example_decodes_into_expected_job() {
    let parsed = parse(FULL).expect("parses");
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let mut config = serde_json::Map::new();
    config.insert("command".into(), "/usr/bin/python3".into());
    config.insert(
        "args".into(),
        serde_json::json!(["-m", "http.server", "${EDGE_PORT_http}"]),
    );
    let expected = Job {
        networks: Default::default(),
        periodic: None,
        parameterized: None,
        parent_id: String::new(),
        payload: String::new(),
        next_launch: None,
        children: Vec::new(),
        scaled: None,
        namespace: "default".to_string(),
        id: "hello".into(),
        name: "hello".into(),
        job_type: JobType::Service,
        datacenters: vec!["dc1".into()],
        priority: 60,
        meta: BTreeMap::from([("owner".to_string(), "ops".to_string())]),
        affinities: Vec::new(),
        spreads: Vec::new(),
        constraints: vec![Constraint {
            attribute: "${attr.kernel.name}".into(),
            operator: ConstraintOp::Eq,
            value: "linux".into(),
        }],
        update: None,
        groups: vec![Group {
            volumes: Vec::new(),
            depends_on: Vec::new(),
            system: false,
            batch: false,
            scaling: None,
            meta: Default::default(),
            name: "web".into(),
            count: 2,
            affinities: Vec::new(),
            spreads: Vec::new(),
            constraints: vec![Constraint {
                attribute: "${meta.rack}".into(),
                operator: ConstraintOp::Eq,
                value: "r1".into(),
            }],
            network: Network {
                networks: Default::default(),
                mode: NetworkMode::Host,
                ports: vec![
                    PortSpec {
                        label: "http".into(),
                        static_port: Some(8080),
                        to: None,
                    },
                    PortSpec {
                        label: "admin".into(),
                        static_port: None,
                        to: None,
                    },
                    PortSpec {
                        label: "dyn".into(),
                        static_port: None,
                        to: None,
                    },
                ],
            },
            services: vec![Service {
                name: "hello".into(),
                port: Some("http".into()),
                tags: vec!["a".into(), "b".into()],
                checks: vec![Check {
                    name: String::new(),
                    check_type: CheckType::Http,
                    path: Some("/".into()),
                    port: None,
                    interval: secs(10),
                    timeout: secs(2),
                    check_restart: None,
                    command: String::new(),
                    args: Vec::new(),
                    task: String::new(),
                    grpc_service: String::new(),
                    grpc_use_tls: false,
                }],
                publish: None,
                shutdown_delay: secs(1),
            }],
            restart: RestartPolicy {
                attempts: 2,
                interval: secs(1800),
                delay: secs(15),
                mode: RestartMode::Fail,
            },
            reschedule: ReschedulePolicy {
                attempts: 3,
                interval: secs(3600),
                delay: secs(30),
                unlimited: false,
            },
            update: None,
            migrate: None,
            tasks: vec![Task {
                templates: Vec::new(),
                artifacts: Vec::new(),
                dispatch_payload: None,
                secrets: Vec::new(),
                configs: Vec::new(),
                volume_mounts: Vec::new(),
                lifecycle: None,
                affinities: Vec::new(),
                constraints: Vec::new(),
                meta: Default::default(),
                name: "server".into(),
                driver: "exec".into(),
                config,
                env: BTreeMap::from([("GREETING".to_string(), "hi world".to_string())]),
                resources: Resources {
                    cpu: 100,
                    memory: 64,
                },
                kill_timeout: secs(5),
                kill_signal: None,
            }],
        }],
        version: 0,
        stop: false,
        stable: false,
        status: JobStatus::Pending,
        submit_time: 0,
        create_index: 0,
        modify_index: 0,
    };
    assert_eq!(parsed.job, expected);
}

#[test]
fn defaults_apply_when_fields_are_omitted() {
    let job = parse(&with_task_body("")).expect("parses").job;
    assert_eq!(job.name, "j");
    assert_eq!(job.job_type, JobType::Service);
    assert_eq!(job.datacenters, vec!["*".to_string()]);
    assert_eq!(job.priority, 50);
    let g = &job.groups[0];
    assert_eq!(g.count, 1);
    assert_eq!(g.restart, RestartPolicy::default());
    assert_eq!(g.tasks[0].resources, Resources::default());
    assert_eq!(g.tasks[0].kill_timeout, secs(5));
}

#[test]
fn meta_env_and_config_accept_attribute_form() {
    let src = r#"job "j" {
  meta = { owner = "ops", tier = 2 }
  group "g" {
    task "t" {
      driver = "exec"
      env    = { "A.B" = "x" }
      config = { command = "/bin/true", opts = { depth = 3 } }
    }
  }
}
"#;
    let job = parse(src).expect("parses").job;
    assert_eq!(job.meta["tier"], "2");
    let t = &job.groups[0].tasks[0];
    assert_eq!(t.env["A.B"], "x");
    assert_eq!(t.config["opts"], serde_json::json!({"depth": 3}));
}

#[test]
fn config_keeps_nested_blocks_and_lists() {
    let src = with_task_body(
        r#"      config {
        command = "/bin/app"
        mount {
          source = "/a"
        }
        mount {
          source = "/b"
        }
        logging {
          type = "json"
        }
        labels "web" {
          tier = "front"
        }
      }"#,
    );
    let job = parse(&src).expect("parses").job;
    let config = serde_json::Value::Object(job.groups[0].tasks[0].config.clone());
    assert_eq!(
        config,
        serde_json::json!({
            "command": "/bin/app",
            "mount": [{"source": "/a"}, {"source": "/b"}],
            "logging": {"type": "json"},
            "labels": {"web": {"tier": "front"}},
        })
    );
}

#[test]
fn task_level_service_is_hoisted_to_the_group() {
    let src = r#"job "j" {
  group "g" {
    network {
      port "http" {}
    }
    task "t" {
      driver = "exec"
      service {
        port = "http"
      }
    }
  }
}
"#;
    let job = parse(src).expect("parses").job;
    assert_eq!(job.groups[0].services.len(), 1);
    assert_eq!(job.groups[0].services[0].name, "j-g-t");
}

#[test]
fn runtime_interpolations_stay_literal() {
    let src = r#"variable "v" {
  default = "one"
}
job "j" {
  constraint {
    attribute = "${node.datacenter}"
    value     = "${meta.zone}"
  }
  group "g" {
    task "t" {
      driver = "exec"
      env {
        URL   = "http://${EDGE_ADDR_http}/x-${var.v}"
        NOMAD = "${NOMAD_PORT_http}"
        HOME2 = "${env.HOME}/sub"
        MIX   = "${attr.cpu.arch}-${var.v}-${ node.unique.name }"
        ESC   = "$${var.v}"
      }
    }
  }
}
"#;
    let job = parse(src).expect("parses").job;
    assert_eq!(job.constraints[0].attribute, "${node.datacenter}");
    assert_eq!(job.constraints[0].value, "${meta.zone}");
    let env = &job.groups[0].tasks[0].env;
    assert_eq!(env["URL"], "http://${EDGE_ADDR_http}/x-one");
    assert_eq!(env["NOMAD"], "${NOMAD_PORT_http}");
    assert_eq!(env["HOME2"], "${env.HOME}/sub");
    assert_eq!(env["MIX"], "${attr.cpu.arch}-one-${node.unique.name}");
    assert_eq!(env["ESC"], "${var.v}");
}

#[test]
fn runtime_interpolation_survives_heredoc_and_directive() {
    let src = r#"variable "items" {
  type    = list(string)
  default = ["a", "b"]
}
job "j" {
  group "g" {
    task "t" {
      driver = "exec"
      config {
        script = <<-EOT
          port=${EDGE_PORT_http}
          %{ for i in var.items }${i}@${attr.unique.hostname} %{ endfor }
        EOT
      }
    }
  }
}
"#;
    let job = parse(src).expect("parses").job;
    let script = job.groups[0].tasks[0].config["script"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(script.contains("port=${EDGE_PORT_http}\n"), "{script:?}");
    assert!(
        script.contains("a@${attr.unique.hostname} b@${attr.unique.hostname}"),
        "{script:?}"
    );
}

const VARS: &str = r#"variable "count" {
  type    = number
  default = 2
}
variable "dcs" {
  type    = list(string)
  default = ["dc1"]
}
variable "canary" {
  type    = bool
  default = false
}
variable "owner" {
  type = string
}
job "j" {
  datacenters = var.dcs
  meta {
    owner  = var.owner
    canary = var.canary
  }
  group "g" {
    count = var.count
    task "t" {
      driver = "exec"
    }
  }
}
"#;

#[test]
fn variables_default_then_var_file_then_var() {
    let mut o = opts();
    o.vars.insert("owner".into(), "me".into());
    let job = parse_hcl(VARS, &o).expect("parses").job;
    assert_eq!(job.groups[0].count, 2);
    assert_eq!(job.datacenters, vec!["dc1".to_string()]);

    o.var_files.push((
        "prod.hcl".into(),
        "count = 5\ndcs = [\"a\", \"b\"]\nowner = \"file\"\n".into(),
    ));
    let job = parse_hcl(VARS, &o).expect("parses").job;
    assert_eq!(job.groups[0].count, 5);
    assert_eq!(job.datacenters, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(job.meta["owner"], "me", "-var wins over -var-file");

    o.vars.insert("count".into(), "7".into());
    o.vars.insert("dcs".into(), r#"["x"]"#.into());
    o.vars.insert("canary".into(), "true".into());
    let job = parse_hcl(VARS, &o).expect("parses").job;
    assert_eq!(job.groups[0].count, 7);
    assert_eq!(job.datacenters, vec!["x".to_string()]);
    assert_eq!(job.meta["canary"], "true");
}

#[test]
fn var_that_does_not_convert_names_the_variable() {
    let mut o = opts();
    o.vars.insert("owner".into(), "me".into());
    o.vars.insert("count".into(), "two".into());
    o.vars.insert("canary".into(), "maybe".into());
    let d = errors_with(VARS, &o);
    let count = find(&d, "var.count");
    assert!(count.message.contains("`count`"), "{count}");
    assert!(count.message.contains("expected a number"), "{count}");
    assert!(find(&d, "var.canary").message.contains("expected a bool"));
    assert_eq!(
        count.to_string(),
        count.field.clone() + ": " + &count.message
    );
    // The failed variables do not cascade into errors where they are used.
    assert_eq!(d.len(), 2, "{d:#?}");
}

#[test]
fn missing_variable_is_reported_at_its_block() {
    let d = errors(VARS);
    assert_eq!(d.len(), 1, "{d:#?}");
    let owner = find(&d, "var.owner");
    assert!(owner.message.contains("no default"), "{owner}");
    assert_eq!((owner.location.line, owner.location.column), (13, 1));
}

#[test]
fn undeclared_var_flag_is_an_error() {
    let mut o = opts();
    o.vars.insert("owner".into(), "me".into());
    o.vars.insert("nope".into(), "1".into());
    let d = errors_with(VARS, &o);
    assert!(find(&d, "var.nope").message.contains("undeclared"));
}

#[test]
fn var_file_errors_point_into_the_var_file() {
    let mut o = opts();
    o.vars.insert("owner".into(), "me".into());
    o.var_files
        .push(("prod.hcl".into(), "extra = 1\ncount = \"many\"\n".into()));
    let parsed_err = errors_with(VARS, &o);
    let count = find(&parsed_err, "var.count");
    assert_eq!(count.location.file, "prod.hcl");
    assert_eq!((count.location.line, count.location.column), (2, 9));
    o.var_files[0].1 = "extra = 1\n".into();
    let parsed = parse_hcl(VARS, &o).expect("parses");
    let w = find(&parsed.warnings, "var.extra");
    assert_eq!(w.location.file, "prod.hcl");
    assert_eq!(w.location.line, 1);
}

#[test]
fn undeclared_variable_reference_is_located() {
    let src = with_task_body("      env {\n        A = var.missing\n      }");
    let d = errors(&src);
    let e = find(&d, "job.j.group.g.task.t.env.A");
    assert!(e.message.contains("undeclared variable `missing`"), "{e}");
    assert_eq!((e.location.line, e.location.column), (6, 13));
}

#[test]
fn syntax_error_has_line_and_column() {
    let d = errors("job \"j\" {\n  group \"g\" {\n    count = = 2\n  }\n}\n");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].location.file, "job.hcl");
    assert_eq!(d[0].location.line, 3);
    assert!(d[0].location.column > 1);
    assert!(d[0].to_string().starts_with("job.hcl:3:"), "{}", d[0]);
}

#[test]
fn type_error_names_field_and_position() {
    let src = "job \"j\" {\n  group \"web\" {\n    count = \"two\"\n    task \"t\" {\n      driver = \"exec\"\n    }\n  }\n}\n";
    let d = errors(src);
    assert_eq!(d.len(), 1, "{d:#?}");
    let e = find(&d, "job.j.group.web.count");
    assert_eq!((e.location.line, e.location.column), (3, 13));
    assert!(e.message.contains("whole number"), "{e}");
    assert!(e.message.contains("\"two\""), "{e}");
    assert_eq!(
        e.to_string(),
        format!("job.hcl:3:13: job.j.group.web.count: {}", e.message)
    );
}

#[test]
fn job_without_group_is_reported_at_job_block() {
    let d = errors("# comment\njob \"j\" {\n  type = \"batch\"\n}\n");
    let e = find(&d, "job.j.group");
    assert_eq!((e.location.line, e.location.column), (2, 1));
}

#[test]
fn group_without_task_and_task_without_driver() {
    let src = r#"job "j" {
  group "a" {
  }
  group "b" {
    task "t" {
      config {
        command = "x"
      }
    }
  }
}
"#;
    let d = errors(src);
    let a = find(&d, "job.j.group.a.task");
    assert_eq!((a.location.line, a.location.column), (2, 3));
    let t = find(&d, "job.j.group.b.task.t.driver");
    assert_eq!((t.location.line, t.location.column), (5, 5));
    assert_eq!(d.len(), 2, "{d:#?}");
}

#[test]
fn all_errors_are_reported_in_file_order() {
    let src = r#"job "j" {
  priority = 500
  type     = "daemon"
  group "g" {
    count = -1
    network {
      port "http" {
        static = 70000
      }
    }
    service {
      port = "nope"
      check {
        type     = "http"
        interval = "soon"
      }
    }
    task "t" {
      driver       = "exec"
      kill_timeout = true
      resources {
        cpu = 0
      }
    }
  }
}
"#;
    let d = errors(src);
    let fields: Vec<&str> = d.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "job.j.priority",
            "job.j.type",
            "job.j.group.g.count",
            "job.j.group.g.network.port.http.static",
            "job.j.group.g.service[0].port",
            "job.j.group.g.service[0].check[0].path",
            "job.j.group.g.service[0].check[0].interval",
            "job.j.group.g.task.t.kill_timeout",
            "job.j.group.g.task.t.resources.cpu",
        ],
        "{d:#?}"
    );
    let lines: Vec<usize> = d.iter().map(|d| d.location.line).collect();
    assert_eq!(lines, vec![2, 3, 5, 8, 12, 13, 15, 20, 22]);
}

/// Nomad refuses a key it does not know, and so does edge: a misspelled
/// key that was only a warning let a job run without what it meant to say.
#[test]
fn unknown_attributes_and_blocks_are_errors_with_lines() {
    let src = r#"job "j" {
  colour = "blue"
  group "g" {
    scratch_disk {
      size = 10
    }
    task "t" {
      driver = "exec"
      confg {
        command = "/bin/true"
      }
    }
  }
}
"#;
    let d = errors(src);
    assert_eq!(d.len(), 3, "{d:#?}");
    let colour = find(&d, "job.j.colour");
    assert_eq!((colour.location.line, colour.location.column), (2, 3));
    assert_eq!(colour.message, "unknown attribute `colour`");
    let disk = find(&d, "job.j.group.g.scratch_disk");
    assert_eq!(disk.location.line, 4);
    assert!(disk.message.starts_with("unknown block"), "{disk:?}");
    let typo = find(&d, "job.j.group.g.task.t.confg");
    assert_eq!(typo.location.line, 9);
    assert_eq!(
        typo.message,
        "unknown block `confg`: did you mean `config`?"
    );
}

#[test]
fn duplicate_group_points_at_second_occurrence() {
    let src = r#"job "j" {
  group "g" {
    task "t" {
      driver = "exec"
    }
  }
  group "g" {
    task "t" {
      driver = "exec"
    }
  }
}
"#;
    let d = errors(src);
    let e = find(&d, "job.j.group.g");
    assert!(e.message.contains("duplicate group"));
    assert_eq!(e.location.line, 7);
}

#[test]
fn missing_job_block_and_check_type() {
    let d = errors("variable \"x\" {\n  default = 1\n}\n");
    assert_eq!(find(&d, "job").location.line, 1);

    let src = r#"job "j" {
  group "g" {
    network {
      port "p" {}
    }
    service {
      port = "p"
      check {
        path = "/"
      }
    }
    task "t" {
      driver = "exec"
    }
  }
}
"#;
    let d = errors(src);
    let e = find(&d, "job.j.group.g.service[0].check[0].type");
    assert_eq!(e.location.line, 8);
}

#[test]
fn bad_constraint_operator_and_regexp() {
    let src = r#"job "j" {
  constraint {
    attribute = "${attr.os}"
    operator  = "~="
  }
  constraint {
    attribute = "${attr.os}"
    operator  = "regexp"
    value     = "(unclosed"
  }
  constraint {
    operator = "distinct_hosts"
  }
  group "g" {
    task "t" {
      driver = "exec"
    }
  }
}
"#;
    let d = errors(src);
    assert_eq!(d.len(), 2, "{d:#?}");
    assert_eq!(find(&d, "job.j.constraint[0].operator").location.line, 4);
    let re = find(&d, "job.j.constraint[1].value");
    assert_eq!(re.location.line, 9);
    assert!(re.message.contains("regular expression"));
}

#[test]
fn example_job_parses() {
    let parsed = parse_hcl(edge_spec::EXAMPLE_JOB, &ParseOptions::new("example.hcl"))
        .expect("example parses");
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let job = parsed.job;
    assert_eq!(job.id, "example");
    let g = &job.groups[0];
    assert_eq!(g.network.ports[0].static_port, None);
    assert_eq!(g.services[0].checks[0].check_type, CheckType::Http);
    let t = &g.tasks[0];
    assert_eq!(t.driver, "exec");
    assert_eq!(
        t.config["args"],
        serde_json::json!(["-m", "http.server", "${EDGE_PORT_http}"])
    );
}

#[test]
fn hello_example_file_parses() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/hello.hcl");
    let src = std::fs::read_to_string(path).expect("examples/hello.hcl exists");
    let parsed = edge_spec::parse_job_file(&src, &ParseOptions::new("examples/hello.hcl"))
        .expect("hello.hcl parses");
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let job = parsed.job;
    assert_eq!((job.id.as_str(), job.job_type), ("hello", JobType::Service));
    let g = &job.groups[0];
    assert_eq!((g.name.as_str(), g.count), ("web", 1));
    assert_eq!(g.network.ports[0].label, "http");
    let check = &g.services[0].checks[0];
    assert_eq!(g.services[0].name, "hello");
    assert_eq!((check.interval, check.timeout), (secs(2), secs(1)));
    let t = &g.tasks[0];
    assert_eq!((t.name.as_str(), t.driver.as_str()), ("server", "exec"));
    assert_eq!(
        t.config["args"],
        serde_json::json!([
            "-m",
            "http.server",
            "--bind",
            "${EDGE_IP_http}",
            "${EDGE_PORT_http}"
        ])
    );
    assert_eq!(
        t.resources,
        Resources {
            cpu: 100,
            memory: 64
        }
    );
}

#[test]
fn duplicate_attribute_and_second_job_are_errors() {
    let job =
        "job \"j\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"exec\"\n    }\n  }\n}\n";
    let d = errors(&format!("{job}job \"k\" {{\n}}\n"));
    assert_eq!(fields_of(&d), vec!["job"]);
    assert_eq!(d[0].location.line, 8);
    let d = errors("job \"j\" {\n  priority = 10\n  priority = 20\n}\n");
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].location.line, 3);
    assert!(d[0].message.contains("priority"), "{}", d[0]);
}

#[test]
fn scalar_conversions_follow_hcl() {
    let src = with_task_body(
        "      kill_timeout = \"30\"\n      env {\n        N = 1\n      }\n      resources {\n        cpu = \"250\"\n      }",
    );
    let t = parse(&src).expect("parses").job.groups[0].tasks[0].clone();
    assert_eq!(t.kill_timeout, secs(30));
    assert_eq!(t.env["N"], "1");
    assert_eq!(t.resources.cpu, 250);
    let d = errors(&with_task_body("      kill_timeout = true"));
    let e = find(&d, "job.j.group.g.task.t.kill_timeout");
    assert!(e.message.contains("expected a duration"), "{e}");
}

/// A bare number is seconds to some readers and Nomad's nanoseconds to
/// others: a duration in HCL is written with its unit.
#[test]
fn a_duration_without_a_unit_is_refused() {
    let d = errors(&with_task_body("      kill_timeout = 30"));
    let e = find(&d, "job.j.group.g.task.t.kill_timeout");
    assert_eq!((e.location.line, e.location.column), (5, 22), "{e}");
    assert_eq!(
        e.message,
        "expected a duration such as \"10s\", got number 30"
    );
}

#[test]
fn list_var_given_bad_hcl_names_the_variable() {
    let mut o = opts();
    o.vars.insert("owner".into(), "me".into());
    o.vars.insert("dcs".into(), "[\"a\",".into());
    let d = errors_with(VARS, &o);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert!(d[0].message.contains("`dcs`"), "{}", d[0]);
    o.vars.insert("dcs".into(), "{a = 1}".into());
    let d = errors_with(VARS, &o);
    assert!(d[0].message.contains("expected a list"), "{}", d[0]);
}

fn fields_of(diags: &[Diagnostic]) -> Vec<&str> {
    diags.iter().map(|d| d.field.as_str()).collect()
}

/// A stand-in for a driver's check: only `command` and `args` are known.
fn exec_like(config: &serde_json::Map<String, serde_json::Value>) -> Result<(), (String, String)> {
    match config
        .keys()
        .find(|k| !matches!(k.as_str(), "command" | "args"))
    {
        Some(k) => Err((format!("config.{k}"), format!("unknown field `{k}`"))),
        None => Ok(()),
    }
}

#[test]
fn driver_config_findings_point_at_the_key() {
    let opts = ParseOptions {
        driver_configs: DriverConfigs::default().with("exec", exec_like),
        ..opts()
    };
    let src = with_task_body("      config {\n        comand = \"x\"\n      }");
    let d = errors_with(&src, &opts);
    let c = find(&d, "job.j.group.g.task.t.config.comand");
    assert_eq!((c.location.line, c.location.column), (6, 9), "{c}");
    assert_eq!(c.message, "unknown field `comand`");
    let src = with_task_body(
        "      config {\n        command = \"x\"\n        nested { a = 1 }\n      }",
    );
    let c = find(
        &errors_with(&src, &opts),
        "job.j.group.g.task.t.config.nested",
    )
    .clone();
    assert_eq!((c.location.line, c.location.column), (7, 9), "{c}");
    let src = with_task_body("      config {\n        command = \"x\"\n      }");
    parse_hcl(&src, &opts).expect("a known key passes");
    let src = with_task_body("      config {\n        comand = \"x\"\n      }");
    parse_hcl(&src, &self::opts()).expect("no checks without a registry");
}

#[test]
fn driver_config_findings_in_json_name_the_field() {
    let opts = ParseOptions {
        driver_configs: DriverConfigs::default().with("exec", exec_like),
        ..ParseOptions::new("job.json")
    };
    let src = r#"{"id": "j", "groups": [{"name": "g", "tasks": [{"name": "t", "driver": "exec", "config": {"comand": "x"}}]}]}"#;
    match edge_spec::parse_job_file(src, &opts) {
        Err(SpecError::Invalid { errors: d, .. }) => {
            assert_eq!(d[0].field, "job.j.group.g.task.t.config.comand", "{d:?}")
        }
        other => panic!("expected findings, got {other:?}"),
    }
}

#[test]
fn bridge_mode_takes_to_and_host_mode_refuses_it() {
    let src = r#"job "a" {
  group "g" {
    network {
      mode = "bridge"
      port "http" {
        to = 80
      }
    }
    task "t" {
      driver = "exec"
      config {
        command = "/bin/true"
      }
    }
  }
}"#;
    let job = parse_hcl(src, &ParseOptions::default()).unwrap();
    let net = &job.job.groups[0].network;
    assert_eq!(net.mode, edge_spec::NetworkMode::Bridge);
    assert_eq!(net.ports[0].to, Some(80));
    let host = src.replace("      mode = \"bridge\"\n", "");
    let err = parse_hcl(&host, &ParseOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("network.port.http.to") && err.contains("mode = \"bridge\""),
        "{err}"
    );
}

#[test]
fn named_networks_are_declared_in_the_job_and_joined_by_bridge_groups() {
    let src = r#"job "shop" {
  network "front" {}
  network "back" {}
  group "web" {
    network {
      mode     = "bridge"
      networks = ["front", "back"]
      port "http" {
        to = 8080
      }
    }
    task "t" {
      driver = "exec"
      config {
        command = "/bin/true"
      }
    }
  }
}"#;
    let job = parse_hcl(src, &ParseOptions::default()).unwrap().job;
    let names: Vec<&str> = job.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["front", "back"]);
    assert_eq!(job.groups[0].network.networks, ["front", "back"]);
    assert_eq!(
        edge_spec::NamedNetwork::key(&job.namespace, &job.id, "back"),
        "default/shop/back"
    );

    let cases = [
        (
            src.replace(
                "networks = [\"front\", \"back\"]",
                "networks = [\"front\", \"db\"]",
            ),
            "job.shop.group.web.network.networks[1]",
            "network \"db\" is not declared in the job",
        ),
        (
            src.replace(
                "networks = [\"front\", \"back\"]",
                "networks = [\"front\", \"front\"]",
            ),
            "job.shop.group.web.network.networks[1]",
            "joined twice",
        ),
        (
            src.replace("      mode     = \"bridge\"\n", "")
                .replace("      port \"http\" {\n        to = 8080\n      }\n", ""),
            "job.shop.group.web.network.networks",
            "needs bridge networking",
        ),
        (
            src.replace("network \"back\" {}", "network \"front\" {}"),
            "job.shop.network.front",
            "duplicate network name",
        ),
        (
            src.replace("network \"back\" {}", "network \"../etc\" {}"),
            "job.shop.network.../etc",
            "network name \"../etc\" contains '.'",
        ),
    ];
    for (text, field, message) in cases {
        let err = match parse_hcl(&text, &ParseOptions::default()) {
            Err(e) => e,
            Ok(_) => panic!("accepted:\n{text}"),
        };
        let SpecError::Invalid { errors, .. } = &err else {
            panic!("{err}");
        };
        assert!(
            errors
                .iter()
                .any(|d| d.field.contains(field) && d.message.contains(message)),
            "{field}: {message}: {errors:?}"
        );
    }
}

#[test]
fn a_service_port_may_be_a_number_as_in_nomad() {
    let src = r#"job "a" {
  group "g" {
    service {
      name = "legacy"
      port = 8080
      check {
        type     = "tcp"
        port     = "9090"
        interval = "5s"
        timeout  = "1s"
      }
    }
    task "t" {
      driver = "exec"
      config {
        command = "/bin/true"
      }
    }
  }
}"#;
    let job = parse_hcl(src, &ParseOptions::default()).unwrap().job;
    let svc = &job.groups[0].services[0];
    assert_eq!(svc.port.as_deref(), Some("8080"));
    assert_eq!(svc.checks[0].port.as_deref(), Some("9090"));
    let err = parse_hcl(&src.replace("8080", "70000"), &ParseOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("service[0].port") && err.contains("port number"),
        "{err}"
    );
}

#[test]
fn env_file_is_read_through_the_callers_reader_only() {
    let src = "job \"e\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"exec\"\n      env_file = \"a.env\"\n      config {\n        command = \"/bin/true\"\n      }\n    }\n  }\n}\n";
    let err = edge_spec::parse_hcl(src, &edge_spec::ParseOptions::new("e.hcl"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("e.hcl:5:") && err.contains("came without one"),
        "{err}"
    );
    let mut opts = edge_spec::ParseOptions::new("e.hcl");
    opts.files = edge_spec::Files::new(|name| match name {
        "a.env" => Ok("A=1\nB 2\n".to_string()),
        _ => Err("no such file".to_string()),
    });
    let err = edge_spec::parse_hcl(src, &opts).unwrap_err().to_string();
    assert!(
        err.contains("env_file a.env:2: \"B 2\" has no `=`"),
        "{err}"
    );
    opts.files = edge_spec::Files::new(|_| Ok("A=1\nB=two words\n".to_string()));
    let job = edge_spec::parse_hcl(src, &opts).unwrap().job;
    let env = &job.groups[0].tasks[0].env;
    assert_eq!((env["A"].as_str(), env["B"].as_str()), ("1", "two words"));
}

#[test]
fn config_and_secret_blocks_are_decoded_and_checked() {
    let job = |task_extra: &str| {
        format!(
            "job \"w\" {{\n  group \"g\" {{\n    task \"t\" {{\n      driver = \"exec\"\n      config {{\n        command = \"/bin/true\"\n      }}\n{task_extra}\n    }}\n  }}\n}}\n"
        )
    };
    let ok = edge_spec::parse_hcl(
        &job("      config \"httpd\" {\n        destination = \"local/httpd.conf\"\n        env = \"CONF\"\n      }\n      secret \"tls\" {\n        key = \"cert\"\n        mode = \"0440\"\n      }"),
        &edge_spec::ParseOptions::new("w.hcl"),
    )
    .unwrap()
    .job;
    let t = &ok.groups[0].tasks[0];
    assert_eq!(
        t.config["command"], "/bin/true",
        "the driver's config stays"
    );
    assert_eq!(t.configs[0].name, "httpd");
    assert_eq!(t.configs[0].path(false), "local/httpd.conf");
    assert_eq!(t.secrets[0].path(true), "secrets/tls");
    assert_eq!(t.secrets[0].mode_bits(true), 0o440);
    for (block, want) in [
        (
            "      secret \"tls\" {\n        destination = \"local/cert.pem\"\n      }",
            "only under the task's secrets/ dir",
        ),
        (
            "      secret \"tls\" {\n        env = \"CERT\"\n      }",
            "only as a file",
        ),
        (
            "      config \"c\" {\n        destination = \"../../etc/passwd\"\n      }",
            "must not contain `..`",
        ),
        (
            "      config \"c\" {\n        mode = \"999\"\n      }",
            "not an octal file mode",
        ),
        (
            "      config \"c\" {\n        destination = \"/etc/c\"\n      }",
            "relative to the task's directory",
        ),
    ] {
        let err = edge_spec::parse_hcl(&job(block), &edge_spec::ParseOptions::new("w.hcl"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("w.hcl:") && err.contains(want),
            "{want}: {err}"
        );
    }
}

#[test]
fn a_template_source_is_read_beside_the_job_file() {
    let src = "job \"t\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"exec\"\n      config {\n        command = \"/bin/true\"\n      }\n      template {\n        source      = \"app.tpl\"\n        destination = \"local/app.conf\"\n      }\n    }\n  }\n}\n";
    let mut opts = edge_spec::ParseOptions::new("t.hcl");
    opts.files = edge_spec::Files::new(|name| match name {
        "app.tpl" => Ok("node={{ node.name }}\n".to_string()),
        _ => Err("no such file".to_string()),
    });
    let job = edge_spec::parse_hcl(src, &opts).unwrap().job;
    let tpl = &job.groups[0].tasks[0].templates[0];
    assert_eq!(tpl.data, "node={{ node.name }}\n");
    assert!(tpl.source.is_empty());
    let err = edge_spec::parse_hcl(&src.replace("app.tpl", "gone.tpl"), &opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("t.hcl:9:") && err.contains("gone.tpl"),
        "{err}"
    );
}

/// Three groups; `extra` is spliced into group "web".
fn ordered(extra: &str) -> String {
    let g = |name: &str, body: &str| {
        format!(
            "  group \"{name}\" {{\n{body}\n    task \"t\" {{\n      driver = \"exec\"\n    }}\n  }}\n"
        )
    };
    format!(
        "job \"j\" {{\n{}{}{}}}\n",
        g("db", ""),
        g("web", extra),
        g("edge", "    depends_on {\n      group = \"web\"\n    }")
    )
}

#[test]
fn depends_on_reads_and_writes_back() {
    let src =
        ordered("    depends_on {\n      group     = \"db\"\n      condition = \"healthy\"\n    }");
    let job = parse(&src).unwrap().job;
    let web = job.group("web").unwrap();
    assert_eq!(
        web.depends_on,
        vec![edge_spec::GroupDependency {
            group: "db".to_string(),
            condition: edge_spec::DependCondition::Healthy,
        }]
    );
    assert_eq!(
        job.group("edge").unwrap().depends_on[0].condition,
        edge_spec::DependCondition::Started
    );
    let again = parse(&edge_spec::job_to_hcl(&job)).unwrap().job;
    assert_eq!(again.groups, job.groups);
    // The order copies start in is not part of what they run.
    let mut plain = web.clone();
    plain.depends_on.clear();
    assert_eq!(plain.spec_hash(), web.spec_hash());
}

#[test]
fn depends_on_names_other_groups_without_a_cycle() {
    let dep = |group: &str| format!("    depends_on {{\n      group = \"{group}\"\n    }}");
    let d = errors(&ordered(&dep("cache")));
    assert_eq!(
        find(&d, "job.j.group.web.depends_on[0].group").message,
        "no group \"cache\" in the job"
    );
    assert_eq!(
        find(&d, "job.j.group.web.depends_on[0].group")
            .location
            .line,
        10
    );
    let d = errors(&ordered(&dep("web")));
    assert_eq!(
        find(&d, "job.j.group.web.depends_on[0].group").message,
        "group \"web\" cannot wait for itself"
    );
    assert_eq!(d.len(), 1, "{d:#?}");
    let d = errors(&ordered(&dep("edge")));
    assert_eq!(
        find(&d, "job.j.group.web.depends_on").message,
        "group \"web\" waits for itself through a cycle of `depends_on`"
    );
    let d = errors(&ordered(&format!("{}\n{}", dep("db"), dep("db"))));
    assert_eq!(
        find(&d, "job.j.group.web.depends_on[1].group").message,
        "\"db\" is named twice"
    );
    let completed =
        "    depends_on {\n      group     = \"db\"\n      condition = \"completed\"\n    }";
    let d = errors(&ordered(completed));
    assert_eq!(
        find(&d, "job.j.group.web.depends_on[0].condition").message,
        "group \"db\" runs until stopped, so it never completes: give it `batch = true`, or wait for \"started\" or \"healthy\""
    );
    let one_shot = ordered(completed).replacen(
        "  group \"db\" {\n",
        "  group \"db\" {\n    batch = true\n",
        1,
    );
    let job = parse(&one_shot).unwrap().job;
    assert!(job.group("db").unwrap().batch);
    assert_eq!(
        parse(&edge_spec::job_to_hcl(&job)).unwrap().job.groups,
        job.groups
    );
    let system = ordered(&dep("db")).replace("job \"j\" {\n", "job \"j\" {\n  type = \"system\"\n");
    let d = errors(&system);
    assert!(
        find(&d, "job.j.group.web.depends_on")
            .message
            .contains("a system job's groups start together"),
        "{d:#?}"
    );
}

#[test]
fn a_system_group_belongs_to_a_service_job_and_has_no_count() {
    let job = |kind: &str, extra: &str| {
        format!(
            "job \"j\" {{\n  type = \"{kind}\"\n  group \"g\" {{\n    system = true\n{extra}\n    task \"t\" {{\n      driver = \"exec\"\n    }}\n  }}\n}}\n"
        )
    };
    let parsed = parse(&job("service", "")).unwrap().job;
    assert!(parsed.groups[0].system);
    assert_eq!(
        parse(&edge_spec::job_to_hcl(&parsed)).unwrap().job.groups,
        parsed.groups
    );
    let d = errors(&job("batch", ""));
    assert_eq!(
        find(&d, "job.j.group.g.system").message,
        "`system = true` places one group of a service job on every node; in a job of type \"batch\" copies run to completion: run a system job"
    );
    let batch = |kind: &str| job(kind, "").replace("system = true", "batch = true");
    let d = errors(&batch("batch"));
    assert_eq!(
        find(&d, "job.j.group.g.batch").message,
        "`batch = true` runs one group of a service job to completion; in a job of type \"batch\" every group already does"
    );
    let d = errors(&job("service", "    batch = true"));
    assert_eq!(
        find(&d, "job.j.group.g.batch").message,
        "a group is either on every node (`system = true`) or run to completion (`batch = true`), not both"
    );
    let d = errors(&job("service", "    count = 3"));
    assert_eq!(
        find(&d, "job.j.group.g.count").message,
        "a group with `system = true` runs one copy on every feasible node: leave `count` out"
    );
    let d = errors(&job("service", "    update {\n      canary = 1\n    }"));
    assert!(
        find(&d, "job.j.group.g.update.canary")
            .message
            .contains("without canaries")
    );
    let d = errors(&job(
        "service",
        "    volume \"data\" {\n      type = \"local\"\n    }",
    ));
    assert!(
        d.iter()
            .any(|d| d.message.contains("cannot keep a local volume per copy")),
        "{d:#?}"
    );
}

#[test]
fn an_update_carries_the_pace_of_its_rollback() {
    let src = |rollback: &str| {
        with_task_body("").replace(
            "  group \"g\" {\n",
            &format!(
                "  group \"g\" {{\n    update {{\n      auto_revert = true\n      rollback {{\n{rollback}\n      }}\n    }}\n"
            ),
        )
    };
    let job = parse(&src(
        "        max_parallel     = 3\n        min_healthy_time = \"10s\"",
    ))
    .unwrap()
    .job;
    let r = job.groups[0]
        .update
        .as_ref()
        .and_then(|u| u.rollback.clone())
        .unwrap();
    assert_eq!(r.max_parallel, Some(3));
    assert_eq!(r.min_healthy_time.unwrap().0, secs(10));
    assert_eq!(
        parse(&edge_spec::job_to_hcl(&job)).unwrap().job.groups,
        job.groups
    );
    let d = errors(&src("        max_parallel = 0"));
    assert_eq!(
        find(&d, "job.j.group.g.update.rollback.max_parallel").message,
        "max_parallel is a number of copies from 1 to 10000"
    );
    let d = errors(&src("        canary = 1"));
    assert!(d.iter().any(|d| d.message.contains("canary")), "{d:#?}");
}
