//! A group's `scaling` block: what it decodes to with its defaults, the
//! bounds and combinations validation refuses (each at its field), the
//! model template's block, and any numbers read without a panic.

use edge_spec::{ParseOptions, parse_hcl};
use proptest::prelude::*;
use std::time::Duration;

/// A service job with one published group; `scaling` goes in the group.
fn job(count: u32, scaling: &str, publish: bool) -> String {
    let publish = if publish {
        "\n      publish {\n        port = 8080\n      }"
    } else {
        ""
    };
    format!(
        "job \"web\" {{\n  group \"g\" {{\n    count = {count}\n    network {{\n      port \"http\" {{}}\n    }}\n    service {{\n      name = \"web\"\n      port = \"http\"{publish}\n    }}\n{scaling}\n    task \"t\" {{\n      driver = \"exec\"\n      config {{\n        command = \"/bin/true\"\n      }}\n    }}\n  }}\n}}\n"
    )
}

fn errors(src: &str) -> String {
    parse_hcl(src, &ParseOptions::new("web.hcl"))
        .expect_err("refused")
        .to_string()
}

#[test]
fn a_block_decodes_with_its_defaults() {
    let src = job(
        1,
        "    scaling {\n      min = 0\n      max = 4\n      target_concurrency = 8\n      idle_timeout = \"5m\"\n    }",
        true,
    );
    let parsed = parse_hcl(&src, &ParseOptions::new("web.hcl")).unwrap().job;
    let g = &parsed.groups[0];
    let rules = g.scaling.as_ref().unwrap().resolve(g.count);
    assert_eq!((rules.min, rules.max), (0, 4));
    assert_eq!(rules.target_concurrency, Some(8));
    assert_eq!(rules.idle_timeout, Duration::from_secs(300));
    assert_eq!(rules.evaluation_interval, Duration::from_secs(10));
    assert_eq!(rules.stabilization_window, Duration::from_secs(60));
    assert_eq!(
        (rules.queue, rules.queue_timeout),
        (100, Duration::from_secs(30))
    );
    assert!(rules.enabled);
    // min defaults to count, as in Nomad.
    let src = job(2, "    scaling {\n      max = 4\n    }", false);
    let parsed = parse_hcl(&src, &ParseOptions::new("web.hcl")).unwrap().job;
    let g = &parsed.groups[0];
    assert_eq!(g.scaling.as_ref().unwrap().resolve(g.count).min, 2);
}

#[test]
fn rules_a_group_cannot_follow_are_refused_at_their_field() {
    for (count, block, publish, want) in [
        (
            1,
            "    scaling {\n      min = 3\n      max = 2\n    }",
            true,
            "job.web.group.g.scaling.min: min (3) is more than max (2)",
        ),
        (
            5,
            "    scaling {\n      min = 1\n      max = 2\n    }",
            true,
            "job.web.group.g.count: count (5) is outside the scaling bounds 1 to 2",
        ),
        (
            1,
            "    scaling {\n      max = 2\n      target_cpu = 170\n    }",
            true,
            "job.web.group.g.scaling.target_cpu: target_cpu is a percent of the reserved CPU, from 1 to 100",
        ),
        (
            1,
            "    scaling {\n      min = 0\n      max = 2\n    }",
            false,
            "job.web.group.g.scaling: scaling by requests (target_concurrency, target_rps, min = 0) needs a service with `publish`",
        ),
        (
            1,
            "    scaling {\n      max = 2\n      target_rps = 0\n    }",
            true,
            "job.web.group.g.scaling.target_rps: target_rps is from 1 to 1000000",
        ),
        (
            1,
            "    scaling {\n      max = 2\n      evaluation_interval = \"100ms\"\n    }",
            true,
            "job.web.group.g.scaling.evaluation_interval: evaluation_interval is at least 1s",
        ),
        (
            1,
            "    scaling {\n      max = 2\n      cooldown = \"9000h\"\n    }",
            true,
            "web.hcl:16:18: job.web.group.g.scaling.cooldown: 1year9days18h is longer than the limit of 7days",
        ),
        (
            1,
            "    scaling {\n      max = 2\n      queue = 0\n    }",
            true,
            "job.web.group.g.scaling.queue: queue holds from 1 to 10000 requests",
        ),
        (
            1,
            "    scaling {\n      max = 2\n      target_concurency = 8\n    }",
            true,
            "target_concurency",
        ),
    ] {
        let err = errors(&job(count, block, publish));
        assert!(err.contains(want), "want {want:?} in:\n{err}");
    }
}

#[test]
fn a_system_group_or_job_has_no_count_to_scale() {
    let src = job(
        1,
        "    system = true\n    scaling {\n      max = 2\n    }",
        true,
    );
    assert!(
        errors(&src).contains("job.web.group.g.scaling: scaling changes the count of a service job's long-running group"),
        "{}",
        errors(&src)
    );
    let src = job(1, "    scaling {\n      max = 2\n    }", true)
        .replace("job \"web\" {\n", "job \"web\" {\n  type = \"batch\"\n");
    assert!(errors(&src).contains("job.web.group.g.scaling: scaling changes the count"));
}

#[test]
fn the_model_template_takes_a_scaling_block() {
    let src = r#"
job "ml" {
  model "iris" {
    source = "models/iris.onnx"
    service {
      publish {
        port = 8080
      }
    }
    scaling {
      min                = 0
      max                = 4
      target_concurrency = 8
      idle_timeout       = "5m"
    }
  }
}
"#;
    let job = parse_hcl(src, &ParseOptions::new("model.hcl")).unwrap().job;
    let sc = job.groups[0]
        .scaling
        .as_ref()
        .expect("scaling on the model's group");
    assert_eq!(
        (sc.min, sc.max, sc.target_concurrency),
        (Some(0), 4, Some(8))
    );
}

proptest! {
    /// Whatever numbers a block holds, it validates or is refused; never
    /// a panic.
    #[test]
    fn any_numbers_validate_or_err(
        count in 0u32..20_000, min in proptest::option::of(0u32..20_000), max in 0u32..20_000,
        c in proptest::option::of(0u32..2_000_000), r in proptest::option::of(0u32..2_000_000),
        q in proptest::option::of(0u32..20_000), secs in 0u64..10_000_000,
        publish in any::<bool>(),
    ) {
        let mut block = format!("    scaling {{\n      max = {max}\n      idle_timeout = \"{secs}s\"\n");
        for (k, v) in [("min", min), ("target_concurrency", c), ("target_rps", r), ("queue", q)] {
            if let Some(v) = v {
                block.push_str(&format!("      {k} = {v}\n"));
            }
        }
        block.push_str("    }");
        let _ = parse_hcl(&job(count, &block, publish), &ParseOptions::new("web.hcl"));
    }
}
