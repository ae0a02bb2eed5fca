//! Nomad's periodic and parameterized job files read as they are written.

use edge_spec::periodic::PayloadRule;
use edge_spec::{ParseOptions, parse_hcl};

#[test]
fn a_nomad_periodic_job_reads_unchanged() {
    let src = r#"
job "backup" {
  type = "batch"
  periodic {
    cron             = "*/15 * * * * *"
    prohibit_overlap = true
    time_zone        = "Europe/Berlin"
  }
  group "g" {
    task "t" {
      driver = "exec"
      config {
        command = "/bin/true"
      }
    }
  }
}
"#;
    let parsed = parse_hcl(src, &ParseOptions::new("backup.hcl")).expect("accepted");
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let p = parsed.job.periodic.clone().expect("periodic");
    assert_eq!(p.cron.as_deref(), Some("*/15 * * * * *"));
    assert!(p.prohibit_overlap && p.enabled);
    assert_eq!(p.time_zone, "Europe/Berlin");
    assert!(parsed.job.launches());
}

#[test]
fn a_nomad_parameterized_job_reads_unchanged() {
    let src = r#"
job "render" {
  type = "batch"
  parameterized {
    payload       = "required"
    meta_required = ["scene"]
    meta_optional = ["quality"]
  }
  group "g" {
    task "t" {
      driver = "exec"
      config {
        command = "/bin/cat"
        args    = ["local/input.txt"]
      }
      dispatch_payload {
        file = "input.txt"
      }
    }
  }
}
"#;
    let parsed = parse_hcl(src, &ParseOptions::new("render.hcl")).expect("accepted");
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let p = parsed.job.parameterized.as_ref().expect("parameterized");
    assert_eq!(p.payload, PayloadRule::Required);
    assert_eq!(p.meta_required, ["scene"]);
    let task = &parsed.job.groups[0].tasks[0];
    assert_eq!(
        task.dispatch_payload.as_ref().expect("payload").file,
        "input.txt"
    );
}

#[test]
fn parameterized_meta_keys_are_checked() {
    let src = r#"
job "j" {
  type = "batch"
  parameterized {
    meta_required = ["a b"]
  }
  group "g" {
    task "t" {
      driver = "exec"
      config {
        command = "/bin/true"
      }
    }
  }
}
"#;
    let err = parse_hcl(src, &ParseOptions::new("j.hcl"))
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("job.j.parameterized.meta_required: meta key \"a b\" must be"),
        "{err}"
    );
}

#[test]
fn a_payload_file_outside_a_parameterized_job_is_refused() {
    let src = r#"
job "j" {
  type = "batch"
  group "g" {
    task "t" {
      driver = "exec"
      config {
        command = "/bin/true"
      }
      dispatch_payload {
        file = "input.txt"
      }
    }
  }
}
"#;
    let err = parse_hcl(src, &ParseOptions::new("j.hcl"))
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains(
            "job.j.group.g.task.t.dispatch_payload: dispatch_payload needs a parameterized job"
        ),
        "{err}"
    );
}

proptest::proptest! {
    /// Child ids hold a `/`, as namespaced keys do: no child's key is
    /// another job's, in its namespace or any other.
    #[test]
    fn child_keys_never_collide(
        a in "(default|[a-z]{1,4})",
        b in "(default|[a-z]{1,4})",
        x in "[a-z]{1,4}(/periodic-[0-9]{1,3})?",
        y in "[a-z]{1,4}(/periodic-[0-9]{1,3})?",
    ) {
        proptest::prop_assume!((a.as_str(), x.as_str()) != (b.as_str(), y.as_str()));
        proptest::prop_assert_ne!(edge_spec::job_key(&a, &x), edge_spec::job_key(&b, &y));
    }
}
