//! Random job files through the whole pure pipeline: parse, validate and,
//! when the job is valid, schedule it twice against a small cluster (the
//! second time with a copy failed, so reconciliation and rescheduling run
//! too). Jobs validation refuses are also scheduled as decoded, the way a
//! job stored before a limit existed would be. Nothing may panic.

use crate::common::{Cluster, node};
use edge_spec::{
    Check, CheckType, ClientStatus, Constraint, ConstraintOp, Group, Job, ParseOptions, PortSpec,
    ReschedulePolicy, Resources, RestartMode, RestartPolicy, Service, Task, parse_hcl,
    parse_job_file,
};
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::time::Duration;

fn cluster() -> Cluster {
    let mut big = node("n2", u32::MAX, u32::MAX);
    big.attributes.insert("kernel.name".into(), "linux".into());
    let mut small = node("n3", 100, 100);
    small.meta.insert("rack".into(), "r1".into());
    Cluster::new(vec![node("n1", 4000, 8000), big, small])
}

fn schedule_twice(job: &Job) {
    let mut c = cluster();
    c.run(job, 1);
    if let Some(a) = c.allocs.first_mut() {
        a.client_status = ClientStatus::Failed;
        a.modify_time = c.now;
    }
    c.run(job, 2);
}

/// The parts of a job the structured strategy varies.
#[derive(Debug, Clone)]
struct Spec {
    id: String,
    group: String,
    task: String,
    driver: String,
    count: u32,
    cpu: u32,
    memory: u32,
    /// As written in the file, and as decoded when it is a plain number of
    /// seconds (what the unvalidated job gets).
    durations: [(String, u64); 7],
    check_path: String,
    constraints: Vec<(String, String, String)>,
    mode: bool,
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => "[a-z][a-z0-9_-]{0,12}",
        1 => "[ -~]{0,20}",
        1 => Just("../../tmp/x".to_string()),
        1 => Just("/tmp/victim".to_string()),
        1 => Just(".".to_string()),
        1 => Just("a".repeat(200)),
        1 => "\\PC{0,10}",
    ]
}

fn duration() -> impl Strategy<Value = (String, u64)> {
    prop_oneof![
        100 => (0u64..120).prop_map(|n| (format!("{n}s"), n)),
        1 => (0u64..100).prop_map(|n| (format!("{n}m"), n * 60)),
        1 => any::<u64>().prop_map(|n| (format!("{n}s"), n)),
        1 => Just(("100000000000h".to_string(), 100_000_000_000 * 3600)),
        1 => Just(("-1s".to_string(), 1)),
        1 => Just(("soon".to_string(), 0)),
    ]
}

fn constraint() -> impl Strategy<Value = (String, String, String)> {
    (
        prop_oneof![
            4 => Just("${attr.kernel.name}".to_string()),
            4 => Just("${meta.rack}".to_string()),
            4 => Just("${node.datacenter}".to_string()),
            1 => "[ -~]{0,12}",
        ],
        prop_oneof![
            4 => Just("=".to_string()),
            4 => Just("!=".to_string()),
            4 => Just("<".to_string()),
            4 => Just(">=".to_string()),
            4 => Just("regexp".to_string()),
            4 => Just("set_contains".to_string()),
            4 => Just("is_set".to_string()),
            4 => Just("distinct_hosts".to_string()),
            1 => "[a-z<>=!]{0,4}",
        ],
        prop_oneof![
            4 => Just("linux".to_string()),
            4 => Just("r1".to_string()),
            4 => Just("[".to_string()),
            1 => "[ -~]{0,12}",
        ],
    )
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (name(), name(), name()),
        prop_oneof![
            10 => Just("exec".to_string()),
            10 => Just("wasm".to_string()),
            1 => "[a-z]{0,8}",
        ],
        prop_oneof![20 => 0u32..8, 1 => Just(10_001), 1 => Just(u32::MAX)],
        (
            prop_oneof![20 => 1u32..5000, 1 => any::<u32>()],
            prop_oneof![20 => 1u32..5000, 1 => any::<u32>()],
        ),
        [
            duration(),
            duration(),
            duration(),
            duration(),
            duration(),
            duration(),
            duration(),
        ],
        prop_oneof![
            20 => Just("/".to_string()),
            1 => Just("@127.0.0.1:4747/v1/status/health".to_string()),
            1 => "[ -~]{0,16}",
        ],
        proptest::collection::vec(constraint(), 0..6),
        any::<bool>(),
    )
        .prop_map(
            |(
                (id, group, task),
                driver,
                count,
                (cpu, memory),
                durations,
                check_path,
                constraints,
                mode,
            )| Spec {
                id,
                group,
                task,
                driver,
                count,
                cpu,
                memory,
                durations,
                check_path,
                constraints,
                mode,
            },
        )
}

/// `s` as an HCL string literal whose value is exactly `s`.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn render(s: &Spec) -> String {
    let d = |i: usize| quoted(&s.durations[i].0);
    let constraints: String = s
        .constraints
        .iter()
        .map(|(a, op, v)| {
            format!(
                "  constraint {{\n    attribute = {}\n    operator = {}\n    value = {}\n  }}\n",
                quoted(a),
                quoted(op),
                quoted(v)
            )
        })
        .collect();
    format!(
        r#"job {id} {{
{constraints}  group {group} {{
    count = {count}
    restart {{
      attempts = 2
      interval = {d0}
      delay    = {d1}
      mode     = "{mode}"
    }}
    reschedule {{
      interval  = {d2}
      delay     = {d3}
      unlimited = true
    }}
    network {{
      port "http" {{}}
    }}
    service {{
      name           = "web"
      port           = "http"
      shutdown_delay = {d4}
      check {{
        type     = "http"
        path     = {path}
        interval = {d5}
        timeout  = {d6}
      }}
    }}
    task {task} {{
      driver       = {driver}
      kill_timeout = {d6}
      resources {{
        cpu    = {cpu}
        memory = {memory}
      }}
    }}
  }}
}}
"#,
        id = quoted(&s.id),
        group = quoted(&s.group),
        task = quoted(&s.task),
        driver = quoted(&s.driver),
        count = s.count,
        cpu = s.cpu,
        memory = s.memory,
        path = quoted(&s.check_path),
        mode = if s.mode { "delay" } else { "fail" },
        d0 = d(0),
        d1 = d(1),
        d2 = d(2),
        d3 = d(3),
        d4 = d(4),
        d5 = d(5),
        d6 = d(6),
    )
}

/// The job `s` describes, decoded but never validated.
fn unvalidated(s: &Spec) -> Job {
    let secs = |i: usize| Duration::from_secs(s.durations[i].1);
    let constraints = s
        .constraints
        .iter()
        .map(|(a, op, v)| Constraint {
            attribute: a.clone(),
            operator: ConstraintOp::parse(op).unwrap_or(ConstraintOp::Eq),
            value: v.clone(),
        })
        .collect();
    Job {
        networks: Default::default(),
        periodic: None,
        parameterized: None,
        parent_id: String::new(),
        payload: String::new(),
        next_launch: None,
        scaled: None,
        children: Vec::new(),
        namespace: "default".to_string(),
        id: s.id.clone(),
        name: s.id.clone(),
        job_type: Default::default(),
        datacenters: vec!["*".into()],
        priority: 50,
        meta: Default::default(),
        affinities: Vec::new(),
        spreads: Vec::new(),
        constraints,
        update: None,
        groups: vec![Group {
            volumes: Vec::new(),
            depends_on: Vec::new(),
            system: false,
            batch: false,
            scaling: None,
            meta: Default::default(),
            name: s.group.clone(),
            // Copies are placed one by one: a huge count would only test
            // patience, and validation caps it anyway.
            count: s.count.min(8),
            affinities: Vec::new(),
            spreads: Vec::new(),
            constraints: Vec::new(),
            network: edge_spec::Network {
                networks: Default::default(),
                mode: edge_spec::NetworkMode::Host,
                ports: vec![PortSpec {
                    label: "http".into(),
                    static_port: None,
                    to: None,
                }],
            },
            services: vec![Service {
                name: "web".into(),
                port: Some("http".into()),
                tags: Vec::new(),
                checks: vec![Check {
                    name: String::new(),
                    check_type: CheckType::Http,
                    path: Some(s.check_path.clone()),
                    port: None,
                    interval: secs(5),
                    timeout: secs(6),
                    check_restart: None,
                    command: String::new(),
                    args: Vec::new(),
                    task: String::new(),
                    grpc_service: String::new(),
                    grpc_use_tls: false,
                }],
                publish: None,
                shutdown_delay: secs(4),
            }],
            restart: RestartPolicy {
                attempts: 2,
                interval: secs(0),
                delay: secs(1),
                mode: if s.mode {
                    RestartMode::Delay
                } else {
                    RestartMode::Fail
                },
            },
            reschedule: ReschedulePolicy {
                attempts: 0,
                interval: secs(2),
                delay: secs(3),
                unlimited: true,
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
                name: s.task.clone(),
                driver: s.driver.clone(),
                config: Default::default(),
                env: Default::default(),
                resources: Resources {
                    cpu: s.cpu,
                    memory: s.memory,
                },
                kill_timeout: secs(6),
                kill_signal: None,
            }],
        }],
        version: 0,
        stop: false,
        stable: false,
        status: Default::default(),
        submit_time: 0,
        create_index: 0,
        modify_index: 0,
    }
}

/// Block and attribute names of job files, so random files reach deep into
/// the decoder, plus a few it does not know.
const WORDS: &[&str] = &[
    "group",
    "task",
    "service",
    "check",
    "network",
    "port",
    "restart",
    "reschedule",
    "resources",
    "config",
    "env",
    "meta",
    "constraint",
    "publish",
    "tls",
    "check_restart",
    "model",
    "batching",
    "count",
    "driver",
    "interval",
    "timeout",
    "static",
    "to",
    "name",
    "type",
    "path",
    "tags",
    "attempts",
    "delay",
    "mode",
    "unlimited",
    "cpu",
    "memory",
    "source",
    "sha256",
    "distinct_hosts",
    "host",
    "operator",
    "attribute",
    "value",
    "limit",
    "grace",
    "kill_timeout",
    "shutdown_delay",
    "groups",
    "id",
    "version",
    "x",
];

fn word() -> impl Strategy<Value = String> {
    proptest::sample::select(WORDS).prop_map(str::to_string)
}

/// An HCL expression of any type, nested a little.
fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (0u32..100).prop_map(|n| n.to_string()),
        Just("1.5".to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
        Just("var.x".to_string()),
        Just("var.nope".to_string()),
        Just("\"${attr.kernel.name}\"".to_string()),
        (0u32..100).prop_map(|n| format!("\"{n}s\"")),
        "[a-z0-9/ ]{0,8}".prop_map(|s| format!("\"{s}\"")),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3)
                .prop_map(|v| format!("[{}]", v.join(", "))),
            proptest::collection::vec((word(), inner), 0..3).prop_map(|kv| {
                let items: Vec<String> = kv.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", items.join(", "))
            }),
        ]
    })
}

/// A block body of attributes and blocks with zero to two labels.
fn body() -> impl Strategy<Value = String> {
    let attr = (word(), value()).prop_map(|(k, v)| format!("{k} = {v}\n"));
    let leaf = proptest::collection::vec(attr, 0..4).prop_map(|v| v.concat());
    leaf.prop_recursive(5, 48, 5, |inner| {
        let item = prop_oneof![
            (word(), value()).prop_map(|(k, v)| format!("{k} = {v}\n")),
            (word(), proptest::collection::vec("[a-z]{0,3}", 0..3), inner).prop_map(
                |(k, labels, b)| {
                    let labels: Vec<String> = labels.iter().map(|l| format!("\"{l}\"")).collect();
                    format!("{k} {} {{\n{b}}}\n", labels.join(" "))
                }
            ),
        ];
        proptest::collection::vec(item, 0..5).prop_map(|v| v.concat())
    })
}

fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        for file in ["job.hcl", "job.json"] {
            if let Ok(p) = parse_job_file(&text, &ParseOptions::new(file)) {
                schedule_twice(&p.job);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_job_file(&text, &ParseOptions::new("job.hcl"));
    }

    #[test]
    fn random_job_files_never_panic(body in body(), var in any::<bool>()) {
        let var = if var { "variable \"x\" {\n  default = 1\n}\n" } else { "" };
        let text = format!("{var}job \"j\" {{\n{body}}}\n");
        match parse_hcl(&text, &ParseOptions::new("job.hcl")) {
            Ok(p) => prop_assert!(edge_spec::validate(&p.job).is_empty()),
            Err(e) => prop_assert!(!e.diagnostics().is_empty(), "{e}"),
        }
    }

    #[test]
    fn structured_jobs_parse_validate_and_schedule(s in spec()) {
        let text = render(&s);
        match parse_hcl(&text, &ParseOptions::new("job.hcl")) {
            Ok(p) => {
                prop_assert!(edge_spec::validate(&p.job).is_empty());
                // HCL and JSON are two spellings of one schema.
                let json = serde_json::to_string(&p.job).expect("serializes");
                let back = parse_job_file(&json, &ParseOptions::new("job.json"));
                prop_assert_eq!(&back.expect("its JSON parses").job, &p.job);
                schedule_twice(&p.job);
            }
            Err(e) => prop_assert!(!e.diagnostics().is_empty(), "{e}"),
        }
        schedule_twice(&unvalidated(&s));
    }
}
