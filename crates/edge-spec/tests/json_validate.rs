//! JSON job files and the semantic checks shared with API-submitted jobs.

use edge_spec::{
    Check, CheckType, Constraint, ConstraintOp, Diagnostic, Job, ParseOptions, PortSpec, Service,
    SpecError, parse_hcl, parse_job_file, parse_json, validate,
};
use std::time::Duration;

fn hello() -> Job {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/hello.hcl"
    ))
    .expect("examples/hello.hcl exists");
    parse_hcl(&src, &ParseOptions::new("hello.hcl"))
        .expect("parses")
        .job
}

fn json_errors(src: &str) -> Vec<Diagnostic> {
    match parse_json(src, "job.json") {
        Ok(p) => panic!("expected errors, parsed {:?}", p.job),
        Err(SpecError::Invalid { errors: d, .. }) => d,
        Err(e) => panic!("expected findings, got {e}"),
    }
}

fn fields(diags: &[Diagnostic]) -> Vec<&str> {
    diags.iter().map(|d| d.field.as_str()).collect()
}

#[test]
fn json_round_trips_bare_and_wrapped() {
    let job = hello();
    let bare = serde_json::to_string_pretty(&job).expect("serializes");
    assert_eq!(parse_json(&bare, "job.json").expect("bare").job, job);
    let wrapped = serde_json::to_string(&serde_json::json!({ "job": job })).expect("serializes");
    assert_eq!(parse_json(&wrapped, "job.json").expect("wrapped").job, job);
}

#[test]
fn job_file_picks_the_reader_by_name_or_content() {
    let job = hello();
    let text = serde_json::to_string(&job).expect("serializes");
    let by_content = parse_job_file(&format!("\n  {text}"), &ParseOptions::new("job.txt"));
    assert_eq!(by_content.expect("json by content").job, job);
    let err = parse_job_file("job \"x\" {}", &ParseOptions::new("job.json")).expect_err("not json");
    assert_eq!(err.diagnostics()[0].location.file, "job.json");
}

#[test]
fn json_type_error_has_line_column_and_path() {
    let src = r#"{
  "id": "j",
  "groups": [
    {
      "name": "g",
      "count": "two",
      "tasks": []
    }
  ]
}"#;
    let d = json_errors(src);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].field, "job.groups[0].count");
    assert_eq!((d[0].location.line, d[0].location.column), (6, 20));
    assert!(d[0].message.contains("invalid type"), "{}", d[0]);
    assert!(!d[0].message.contains("at line"), "{}", d[0]);
}

#[test]
fn json_unknown_and_missing_fields_name_the_path() {
    let d = json_errors(
        r#"{"job": {"id": "j", "groups": [{"name": "g", "tasks": [{"name": "t", "drvier": "exec"}]}]}}"#,
    );
    assert_eq!(fields(&d), vec!["job.groups[0].tasks[0].drvier"]);
    assert!(d[0].message.contains("unknown field"), "{}", d[0]);
    let d = json_errors(r#"{"groups": []}"#);
    assert!(d[0].message.contains("missing field `id`"), "{}", d[0]);
}

#[test]
fn json_syntax_error_and_validation_run() {
    let d = json_errors("{\n  \"id\": \"j\",\n  \"groups\": [\n}");
    assert_eq!(d[0].location.line, 4);
    let d = json_errors(r#"{"id": "bad id!", "groups": []}"#);
    assert_eq!(fields(&d), vec!["job.bad id!.id", "job.bad id!.group"]);
    assert_eq!(d[0].location.file, "job.json");
    assert!(
        d[0].to_string().starts_with("job.json: job.bad id!.id: "),
        "{}",
        d[0]
    );
}

#[test]
fn valid_job_has_no_findings_and_display_omits_location() {
    assert!(validate(&hello()).is_empty());
    let mut job = hello();
    job.groups[0].tasks[0].driver.clear();
    let d = validate(&job);
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].to_string(),
        "job.hello.group.web.task.server.driver: task needs a `driver`, e.g. \"exec\""
    );
}

#[test]
fn validation_of_ids_priority_resources_and_names() {
    let mut job = hello();
    job.id = "a/b".into();
    job.priority = 0;
    job.groups[0].tasks[0].resources.cpu = 0;
    job.groups[0].tasks[0].resources.memory = 0;
    let t = job.groups[0].tasks[0].clone();
    job.groups[0].tasks.push(t);
    let g = job.groups[0].clone();
    job.groups.push(g);
    let d = validate(&job);
    let f = fields(&d);
    for want in [
        "job.a/b.id",
        "job.a/b.priority",
        "job.a/b.group.web",
        "job.a/b.group.web.task.server",
        "job.a/b.group.web.task.server.resources.cpu",
        "job.a/b.group.web.task.server.resources.memory",
        "job.a/b.group.web.service[0].name",
    ] {
        assert!(f.contains(&want), "missing {want} in {f:#?}");
    }
    let dup = d
        .iter()
        .find(|d| d.message.contains("duplicate service"))
        .expect("duplicate service reported");
    assert!(dup.message.contains("\"hello\""));
}

#[test]
fn validation_of_ports() {
    let mut job = hello();
    let g = &mut job.groups[0];
    g.network.ports = vec![
        PortSpec {
            label: "a".into(),
            static_port: Some(80),
            to: None,
        },
        PortSpec {
            label: "b".into(),
            static_port: Some(80),
            to: Some(0),
        },
        PortSpec {
            label: "a".into(),
            static_port: Some(0),
            to: None,
        },
    ];
    g.services[0].port = Some("http".into());
    let d = validate(&job);
    let f = fields(&d);
    assert_eq!(
        f,
        vec![
            "job.hello.group.web.network.port.b.static",
            "job.hello.group.web.network.port.b.to",
            "job.hello.group.web.network.port.a",
            "job.hello.group.web.network.port.a.static",
            "job.hello.group.web.service[0].port",
        ],
        "{d:#?}"
    );
    assert!(d[4].message.contains("\"a\", \"b\""), "{}", d[4]);
}

#[test]
fn validation_of_checks() {
    let mut job = hello();
    let s = &mut job.groups[0].services[0];
    s.port = None;
    s.checks = vec![
        Check {
            name: String::new(),
            check_type: CheckType::Http,
            path: None,
            port: None,
            interval: Duration::ZERO,
            timeout: Duration::ZERO,
            check_restart: None,
            command: String::new(),
            args: Vec::new(),
            task: String::new(),
            grpc_service: String::new(),
            grpc_use_tls: false,
        },
        Check {
            name: String::new(),
            check_type: CheckType::Tcp,
            path: None,
            port: Some("http".into()),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            check_restart: None,
            command: String::new(),
            args: Vec::new(),
            task: String::new(),
            grpc_service: String::new(),
            grpc_use_tls: false,
        },
    ];
    let d = validate(&job);
    assert_eq!(
        fields(&d),
        vec![
            "job.hello.group.web.service[0].check[0].port",
            "job.hello.group.web.service[0].check[0].path",
            "job.hello.group.web.service[0].check[0].interval",
            "job.hello.group.web.service[0].check[0].timeout",
        ]
    );
}

#[test]
fn validation_of_constraints_and_service_names() {
    let mut job = hello();
    job.constraints = vec![
        Constraint {
            attribute: String::new(),
            operator: ConstraintOp::DistinctHosts,
            value: String::new(),
        },
        Constraint {
            attribute: " ".into(),
            operator: ConstraintOp::Eq,
            value: "x".into(),
        },
        Constraint {
            attribute: "${attr.os}".into(),
            operator: ConstraintOp::Regexp,
            value: "^lin[".into(),
        },
    ];
    job.groups[0].services.push(Service {
        name: "-bad_name".into(),
        port: Some("http".into()),
        tags: Vec::new(),
        checks: Vec::new(),
        publish: None,
        shutdown_delay: Duration::ZERO,
    });
    let d = validate(&job);
    assert_eq!(
        fields(&d),
        vec![
            "job.hello.constraint[1].attribute",
            "job.hello.constraint[2].value",
            "job.hello.group.web.service[1].name",
        ],
        "{d:#?}"
    );
}
