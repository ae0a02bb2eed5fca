//! Hostile job files: names that would become paths outside the agent's
//! directories, durations and resources that overflow, too many of anything.
//! Each finding names its field and the limit.

use edge_spec::limits::{
    MAX_CONSTRAINTS, MAX_COUNT, MAX_GROUPS, MAX_TASK_CPU, MAX_TASK_MEMORY, MAX_TASKS,
};
use edge_spec::{
    Constraint, ConstraintOp, Diagnostic, Job, NameKind, ParseOptions, check_name, parse_hcl,
    validate,
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

fn find<'a>(d: &'a [Diagnostic], field: &str) -> &'a Diagnostic {
    d.iter()
        .find(|d| d.field == field)
        .unwrap_or_else(|| panic!("no finding at {field} in {d:#?}"))
}

#[test]
fn task_and_group_names_cannot_be_paths() {
    for bad in [
        "/tmp/victim",
        "../../tmp/x",
        "a/b",
        "a\0b",
        ".",
        "..",
        "a.b",
        "a b",
    ] {
        let mut job = hello();
        job.groups[0].tasks[0].name = bad.to_string();
        let d = validate(&job);
        let f = find(&d, &format!("job.hello.group.web.task.{bad}"));
        assert!(f.message.starts_with("task name "), "{f}");
        assert!(check_name(NameKind::Task, bad).is_err(), "{bad:?}");

        let mut job = hello();
        job.groups[0].name = bad.to_string();
        let d = validate(&job);
        let f = find(&d, &format!("job.hello.group.{bad}"));
        assert!(f.message.starts_with("group name "), "{f}");
    }
    for good in ["server", "web-1", "a_b", "X"] {
        assert!(check_name(NameKind::Task, good).is_ok(), "{good:?}");
        assert!(check_name(NameKind::Group, good).is_ok(), "{good:?}");
    }
}

#[test]
fn long_names_are_refused_with_the_limit_and_a_short_path() {
    let mut job = hello();
    job.groups[0].tasks[0].name = "t".repeat(64);
    let d = validate(&job);
    let f = find(&d, "job.hello.group.web.task[0]");
    assert!(f.message.contains("the limit is 63"), "{f}");
    assert!(f.message.len() < 200, "{f}");
    job.groups[0].tasks[0].name = "t".repeat(63);
    assert!(validate(&job).is_empty());
}

#[test]
fn job_ids_may_hold_dots_but_not_be_or_start_with_one() {
    for bad in [".", "..", ".hidden", "a/b", "a\0", ""] {
        let mut job = hello();
        job.id = bad.to_string();
        let d = validate(&job);
        assert!(
            d.iter().any(|d| d.field.ends_with(".id")),
            "{bad:?} accepted: {d:#?}"
        );
        assert!(check_name(NameKind::Job, bad).is_err(), "{bad:?}");
    }
    let mut job = hello();
    job.id = "web.v2".to_string();
    assert!(validate(&job).is_empty());
}

#[test]
fn a_huge_job_id_is_refused_without_repeating_it() {
    let mut job = hello();
    job.id = "a".repeat(10_000);
    let d = validate(&job);
    let f = find(&d, "job.id");
    assert!(f.message.contains("the limit is 128"), "{f}");
    assert!(d.iter().all(|d| d.to_string().len() < 300), "{d:#?}");
    let err = check_name(NameKind::Job, &job.id).unwrap_err().to_string();
    assert!(err.len() < 200, "{err}");
    job.id = "a".repeat(128);
    assert!(validate(&job).is_empty());
}

#[test]
fn every_duration_has_an_upper_bound() {
    let huge = Duration::from_secs(100_000_000_000 * 3600);
    let mut job = hello();
    let g = &mut job.groups[0];
    g.tasks[0].kill_timeout = huge;
    g.restart.interval = huge;
    g.restart.delay = huge;
    g.reschedule.interval = huge;
    g.reschedule.delay = huge;
    g.services[0].shutdown_delay = huge;
    let c = &mut g.services[0].checks[0];
    c.interval = huge;
    c.timeout = huge;
    c.check_restart = Some(edge_spec::CheckRestart {
        limit: 1,
        grace: huge,
    });
    let d = validate(&job);
    let base = "job.hello.group.web";
    for (field, limit) in [
        ("task.server.kill_timeout", "1day"),
        ("restart.interval", "7days"),
        ("restart.delay", "7days"),
        ("reschedule.interval", "7days"),
        ("reschedule.delay", "7days"),
        ("service[0].shutdown_delay", "1day"),
        ("service[0].check[0].interval", "1day"),
        ("service[0].check[0].timeout", "1day"),
        ("service[0].check[0].check_restart.grace", "1day"),
    ] {
        let f = find(&d, &format!("{base}.{field}"));
        assert!(f.message.ends_with(&format!("limit of {limit}")), "{f}");
    }
}

#[test]
fn huge_durations_in_a_file_are_findings_not_panics() {
    let src = r#"job "j" {
  group "g" {
    restart {
      delay = "100000000000h"
    }
    task "t" {
      driver       = "exec"
      kill_timeout = "100000000000h"
    }
  }
}"#;
    let err = parse_hcl(src, &ParseOptions::new("j.hcl")).expect_err("refused");
    let fields: Vec<&str> = err.diagnostics().iter().map(|d| d.field.as_str()).collect();
    assert!(
        fields.contains(&"job.j.group.g.restart.delay"),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"job.j.group.g.task.t.kill_timeout"),
        "{fields:?}"
    );
}

#[test]
fn task_resources_are_bounded_and_group_sums_do_not_wrap() {
    let mut job = hello();
    let t = job.groups[0].tasks[0].clone();
    job.groups[0].tasks.push(edge_spec::Task {
        name: "second".into(),
        ..t
    });
    for t in &mut job.groups[0].tasks {
        t.resources.cpu = u32::MAX;
        t.resources.memory = u32::MAX;
    }
    let sum = job.groups[0].resources();
    assert_eq!(sum.cpu, 2 * u64::from(u32::MAX));
    assert_eq!(sum.memory, 2 * u64::from(u32::MAX));
    let d = validate(&job);
    let f = find(&d, "job.hello.group.web.task.second.resources.cpu");
    assert!(
        f.message.contains(&format!("limit is {MAX_TASK_CPU}")),
        "{f}"
    );
    let f = find(&d, "job.hello.group.web.task.server.resources.memory");
    assert!(
        f.message.contains(&format!("limit is {MAX_TASK_MEMORY}")),
        "{f}"
    );
}

#[test]
fn counts_groups_tasks_and_constraints_are_capped() {
    let mut job = hello();
    job.groups[0].count = MAX_COUNT + 1;
    let d = validate(&job);
    assert!(
        find(&d, "job.hello.group.web.count")
            .message
            .contains("limit is 10000")
    );
    job.groups[0].count = MAX_COUNT;
    assert!(validate(&job).is_empty());

    let mut job = hello();
    let t = job.groups[0].tasks[0].clone();
    job.groups[0].tasks = (0..=MAX_TASKS)
        .map(|i| edge_spec::Task {
            name: format!("t{i}"),
            ..t.clone()
        })
        .collect();
    let d = validate(&job);
    assert!(
        find(&d, "job.hello.group.web.task")
            .message
            .contains("the limit is 100")
    );

    let mut job = hello();
    let mut g = job.groups[0].clone();
    g.services.clear();
    job.groups = (0..=MAX_GROUPS)
        .map(|i| edge_spec::Group {
            name: format!("g{i}"),
            ..g.clone()
        })
        .collect();
    let d = validate(&job);
    assert!(
        find(&d, "job.hello.group")
            .message
            .contains("the limit is 100")
    );

    let c = Constraint {
        attribute: "${attr.kernel.name}".into(),
        operator: ConstraintOp::Eq,
        value: "linux".into(),
    };
    let mut job = hello();
    job.constraints = vec![c.clone(); MAX_CONSTRAINTS + 1];
    job.groups[0].constraints = vec![c.clone(); MAX_CONSTRAINTS + 1];
    let d = validate(&job);
    for field in ["job.hello.constraint", "job.hello.group.web.constraint"] {
        assert!(
            find(&d, field).message.contains("the limit is 256"),
            "{d:#?}"
        );
    }
    assert_eq!(d.len(), 2, "one finding per list, not one per item");
    job.constraints = vec![c.clone(); MAX_CONSTRAINTS];
    job.groups[0].constraints = vec![c; MAX_CONSTRAINTS];
    assert!(validate(&job).is_empty());
}

#[test]
fn unknown_drivers_are_refused_naming_the_known_ones() {
    let mut job = hello();
    job.groups[0].tasks[0].driver = "nosuchdriver".into();
    let d = validate(&job);
    let f = find(&d, "job.hello.group.web.task.server.driver");
    assert!(
        f.message.contains(
            "unknown driver \"nosuchdriver\"; known drivers are containerd, exec, model, wasm"
        ),
        "{f}"
    );
    for driver in edge_spec::limits::DRIVERS {
        job.groups[0].tasks[0].driver = driver.to_string();
        assert!(validate(&job).is_empty(), "{driver}");
    }
}

#[test]
fn http_check_paths_must_start_with_a_slash() {
    for bad in ["@127.0.0.1:4747/v1/status/health", "health", "//x"] {
        let mut job = hello();
        job.groups[0].services[0].checks[0].path = Some(bad.into());
        let d = validate(&job);
        if bad.starts_with('/') {
            assert!(d.is_empty(), "{bad:?}: {d:#?}");
            continue;
        }
        let f = find(&d, "job.hello.group.web.service[0].check[0].path");
        assert!(f.message.contains("must start with '/'"), "{f}");
    }
}

#[test]
fn spec_hash_is_pinned() {
    let group: edge_spec::Group = serde_json::from_value(serde_json::json!({
        "name": "web",
        "count": 3,
        "tasks": [{"name": "server", "driver": "exec", "config": {"command": "true"}}]
    }))
    .expect("decodes");
    // Stored in every allocation: a change here makes every running
    // allocation look out of date after an upgrade.
    assert_eq!(group.spec_hash(), 4_681_230_778_161_065_601);
    let mut other = group.clone();
    other.count = 7;
    assert_eq!(other.spec_hash(), group.spec_hash());
    other.tasks[0].resources.cpu += 1;
    assert_ne!(other.spec_hash(), group.spec_hash());
}

#[test]
fn every_example_job_is_within_the_limits() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("examples/ exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().is_none_or(|e| e != "hcl") {
            continue;
        }
        let src = std::fs::read_to_string(&path).expect("readable example");
        let name = path.display().to_string();
        if let Err(e) = edge_spec::parse_job_file(&src, &ParseOptions::new(&name)) {
            panic!("{e}");
        }
        seen += 1;
    }
    assert!(seen >= 5, "only {seen} examples found");
}
