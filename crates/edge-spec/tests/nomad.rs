//! Nomad job files with keys edge does not decode: each is refused when it
//! would change what runs (naming file, line, column and field, and what to
//! use instead), or accepted with a warning saying why it means nothing
//! here; never dropped in silence. HCL1's shorthand constraint operators
//! keep their meaning.

use edge_spec::{ConstraintOp, ParseOptions, parse_hcl};

/// `job "web"` with `job_extra` in the job, `group_extra` in its group and
/// `task_extra` in its task.
fn job(job_extra: &str, group_extra: &str, task_extra: &str) -> String {
    format!(
        "job \"web\" {{\n{job_extra}\n  group \"g\" {{\n{group_extra}\n    task \"t\" {{\n      driver = \"exec\"\n      config {{\n        command = \"/bin/true\"\n      }}\n{task_extra}\n    }}\n  }}\n}}\n"
    )
}

fn refused(src: &str) -> String {
    parse_hcl(src, &ParseOptions::new("web.hcl"))
        .expect_err("refused")
        .to_string()
}

#[test]
fn blocks_that_change_what_runs_are_refused_where_they_are_written() {
    for (src, want) in [
        (
            job("  periodic {\n    crons = [\"@daily\"]\n  }", "", ""),
            "web.hcl:2:3: job.web.periodic: a periodic job must be a batch job (type = \"batch\"), not service",
        ),
        (
            job(
                "  type = \"batch\"\n  periodic {\n    crons = [\"61 * * * *\"]\n    time_zone = \"Mars/Olympus\"\n  }",
                "",
                "",
            ),
            "web.hcl:4:13: job.web.periodic.crons[0]: cron expression \"61 * * * *\" does not parse",
        ),
        (
            job("  parameterized {}", "", ""),
            "web.hcl:2:3: job.web.parameterized: a parameterized job must be a batch job",
        ),
        (
            job(
                "  type = \"batch\"\n  parameterized {}",
                "",
                "      dispatch_payload {\n        file = \"../../etc/passwd\"\n      }",
            ),
            "job.web.group.g.task.t.dispatch_payload.file: file \"../../etc/passwd\" must not contain `..`",
        ),
        (
            job(
                "",
                "    scaling {\n      max = 3\n      policy {\n        cooldown = \"1m\"\n      }\n    }",
                "",
            ),
            "web.hcl:6:7: job.web.group.g.scaling.policy: `policy` is not supported: a `policy` block is for the nomad-autoscaler's plugins",
        ),
        (
            job(
                "",
                "",
                "      artifact {\n        source = \"git::https://example.org/x.git\"\n      }",
            ),
            "job.web.group.g.task.t.artifact[0].source: source \"git::https://example.org/x.git\" is not an http://",
        ),
        (
            job(
                "",
                "",
                "      template {\n        data = \"{{ range service \\\"db\\\" }}{{ .Address }}{{ end }}\"\n        destination = \"local/x\"\n      }",
            ),
            "job.web.group.g.task.t.template[0].data: this looks like Nomad's Go template syntax",
        ),
        (
            job(
                "",
                "",
                "      lifecycle {\n        hook = \"prestart\"\n      }",
            ),
            "job.web.group.g.task: every task of the group has a `lifecycle` hook",
        ),
    ] {
        let err = refused(&src);
        assert!(err.contains(want), "want {want:?} in:\n{err}\nfor:\n{src}");
    }
}

#[test]
fn keys_without_meaning_here_are_warnings_that_say_why() {
    let src = job(
        "  region = \"global\"\n  all_at_once = false",
        "",
        "      logs {\n        max_files = 3\n      }",
    );
    let parsed = parse_hcl(&src, &ParseOptions::new("web.hcl")).expect("accepted");
    let warnings: Vec<String> = parsed.warnings.iter().map(|w| w.to_string()).collect();
    for want in [
        "web.hcl:2:3: job.web.region: `region` is ignored: edge has one region",
        "job.web.all_at_once: `all_at_once` is ignored",
        "job.web.group.g.task.t.logs: `logs` is ignored: logs are rotated by the agent",
    ] {
        assert!(
            warnings.iter().any(|w| w.contains(want)),
            "want {want:?} in {warnings:#?}"
        );
    }
}

#[test]
fn hcl1_shorthand_operators_keep_their_meaning() {
    for (line, op, value) in [
        ("regexp = \"^linux$\"", ConstraintOp::Regexp, "^linux$"),
        ("set_contains = \"a,b\"", ConstraintOp::SetContains, "a,b"),
        ("version = \">= 1.2\"", ConstraintOp::Version, ">= 1.2"),
        ("semver = \"~> 1.2.3\"", ConstraintOp::Semver, "~> 1.2.3"),
    ] {
        let src = job(
            "",
            &format!(
                "    constraint {{\n      attribute = \"${{attr.kernel.name}}\"\n      {line}\n    }}"
            ),
            "",
        );
        let parsed = parse_hcl(&src, &ParseOptions::new("web.hcl")).expect("accepted");
        let c = &parsed.job.groups[0].constraints[0];
        assert_eq!((c.operator, c.value.as_str()), (op, value), "{line}");
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    }
    let src = job(
        "",
        "    constraint {\n      attribute = \"${attr.kernel.name}\"\n      operator = \"=\"\n      regexp = \"x\"\n    }",
        "",
    );
    assert!(
        refused(&src).contains("both `operator` and the shorthand `regexp` are given"),
        "{}",
        refused(&src)
    );
}

#[test]
fn a_refused_file_still_carries_its_warnings() {
    let src = job("  region = \"global\"\n  multiregion {}", "", "");
    let e = parse_hcl(&src, &ParseOptions::new("web.hcl")).expect_err("refused");
    assert_eq!(e.diagnostics().len(), 1, "{e}");
    let w: Vec<String> = e.warnings().iter().map(|w| w.to_string()).collect();
    assert!(
        w.iter()
            .any(|w| w.contains("job.web.region: `region` is ignored")),
        "{w:?}"
    );
}

#[test]
fn group_and_task_meta_are_merged_for_tasks() {
    let src = job(
        "  meta {\n    owner = \"ops\"\n    tier = \"job\"\n  }",
        "    meta {\n      tier = \"group\"\n      zone = \"a\"\n    }",
        "      meta {\n        zone = \"task-zone\"\n      }",
    );
    let parsed = parse_hcl(&src, &ParseOptions::new("web.hcl")).unwrap().job;
    let g = &parsed.groups[0];
    assert_eq!(parsed.meta["owner"], "ops");
    let merged = g.task_meta(&g.tasks[0]);
    let pairs: Vec<(&str, &str)> = merged
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(pairs, [("tier", "group"), ("zone", "task-zone")]);

    let long = "k".repeat(65);
    let bad = job(
        "",
        &format!("    meta {{\n      {long} = \"x\"\n    }}"),
        "",
    );
    let err = refused(&bad);
    assert!(
        err.contains("job.web.group.g.meta") && err.contains("EDGE_META_"),
        "{err}"
    );
}

#[test]
fn task_constraints_are_kept_and_checked() {
    let src = job(
        "",
        "",
        "      constraint {\n        attribute = \"${attr.kernel.name}\"\n        value = \"linux\"\n      }",
    );
    let parsed = parse_hcl(&src, &ParseOptions::new("web.hcl")).unwrap().job;
    let c = &parsed.groups[0].tasks[0].constraints;
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].attribute, "${attr.kernel.name}");
    let bad = job(
        "",
        "",
        "      constraint {\n        operator = \"regexp\"\n        value = \"x\"\n      }",
    );
    let err = refused(&bad);
    assert!(
        err.contains("job.web.group.g.task.t.constraint[0].attribute"),
        "{err}"
    );
}

#[test]
fn a_version_constraint_that_does_not_parse_is_refused_at_its_value() {
    let src = job(
        "",
        "    constraint {\n      attribute = \"${attr.kernel.version}\"\n      operator = \"semver\"\n      value = \">= 5.4\"\n    }",
        "",
    );
    let err = refused(&src);
    assert!(
        err.contains("job.web.group.g.constraint[0].value")
            && err.contains("invalid semver constraint"),
        "{err}"
    );
}

#[test]
fn distinct_property_is_honoured_in_both_spellings() {
    for block in [
        "    constraint {\n      distinct_property = \"${meta.rack}\"\n      value = \"2\"\n    }",
        "    constraint {\n      operator = \"distinct_property\"\n      attribute = \"${meta.rack}\"\n      value = \"2\"\n    }",
    ] {
        let src = job("", block, "");
        let parsed = parse_hcl(&src, &ParseOptions::new("web.hcl")).expect("accepted");
        let c = &parsed.job.groups[0].constraints[0];
        assert_eq!(c.operator, ConstraintOp::DistinctProperty);
        assert_eq!(c.attribute, "${meta.rack}");
        assert_eq!(c.distinct_limit(), Some(2));
    }
    let bad = job(
        "",
        "    constraint {\n      distinct_property = \"${meta.rack}\"\n      value = \"many\"\n    }",
        "",
    );
    let err = refused(&bad);
    assert!(
        err.contains("job.web.group.g.constraint[0].value") && err.contains("\"many\""),
        "{err}"
    );
}

#[test]
fn lifecycle_hooks_are_decoded_and_checked() {
    let hooked = |lifecycle: &str| {
        format!(
            "job \"web\" {{\n  group \"g\" {{\n    task \"main\" {{\n      driver = \"exec\"\n      config {{\n        command = \"/bin/true\"\n      }}\n    }}\n    task \"hook\" {{\n      driver = \"exec\"\n      config {{\n        command = \"/bin/true\"\n      }}\n      lifecycle {{\n{lifecycle}\n      }}\n    }}\n  }}\n}}\n"
        )
    };
    let parsed = parse_hcl(
        &hooked("        hook = \"prestart\"\n        sidecar = true"),
        &ParseOptions::new("web.hcl"),
    )
    .unwrap();
    let tasks = &parsed.job.groups[0].tasks;
    assert_eq!(tasks[0].lifecycle, None);
    assert_eq!(
        tasks[1].lifecycle,
        Some(edge_spec::Lifecycle {
            hook: edge_spec::Hook::Prestart,
            sidecar: true
        })
    );
    assert!(!tasks[1].is_ephemeral());
    let err = refused(&hooked(
        "        hook = \"poststop\"\n        sidecar = true",
    ));
    assert!(
        err.contains("web.hcl:") && err.contains("task.hook.lifecycle.sidecar: a poststop task"),
        "{err}"
    );
    let err = refused(&hooked("        hook = \"prestrat\""));
    assert!(
        err.contains("prestrat") && err.contains("prestart"),
        "names the bad value and the good ones: {err}"
    );
}

#[test]
fn affinities_and_spreads_are_read_at_every_level_in_hcl_and_json() {
    let src = job(
        "  affinity {\n    attribute = \"${node.datacenter}\"\n    value = \"us-west1\"\n    weight = 100\n  }\n  spread {\n    attribute = \"${node.datacenter}\"\n  }",
        "    affinity {\n      attribute = \"${meta.rack}\"\n      value = \"r1\"\n    }\n    spread {\n      attribute = \"${meta.rack}\"\n      weight = 30\n      target \"r1\" {\n        percent = 60\n      }\n      target \"r2\" {\n        percent = 40\n      }\n    }",
        "      affinity {\n        attribute = \"${meta.my_custom_value}\"\n        operator = \"set_contains_any\"\n        value = \"a,b\"\n        weight = -50\n      }",
    );
    let parsed = parse_hcl(&src, &ParseOptions::new("web.hcl")).unwrap();
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let j = parsed.job;
    assert_eq!(j.affinities[0].weight, 100);
    assert_eq!(j.affinities[0].operator, ConstraintOp::Eq);
    assert_eq!(j.spreads[0].weight, 50, "Nomad's default weight");
    assert!(j.spreads[0].targets.is_empty());
    let g = &j.groups[0];
    assert_eq!(g.affinities[0].weight, 50, "Nomad's default weight");
    assert_eq!(g.spreads[0].weight, 30);
    let targets: Vec<(&str, i64)> = g.spreads[0]
        .targets
        .iter()
        .map(|t| (t.value.as_str(), t.percent))
        .collect();
    assert_eq!(targets, [("r1", 60), ("r2", 40)]);
    let a = &g.tasks[0].affinities[0];
    assert_eq!((a.operator, a.weight), (ConstraintOp::SetContainsAny, -50));

    let json = r#"{"id": "web", "affinities": [{"attribute": "${node.datacenter}", "value": "us-west1", "weight": 100}],
        "spreads": [{"attribute": "${node.datacenter}"}],
        "groups": [{"name": "g",
            "affinities": [{"attribute": "${meta.rack}", "value": "r1"}],
            "spreads": [{"attribute": "${meta.rack}", "weight": 30,
                "targets": [{"value": "r1", "percent": 60}, {"value": "r2", "percent": 40}]}],
            "tasks": [{"name": "t", "driver": "exec", "config": {"command": "/bin/true"},
                "affinities": [{"attribute": "${meta.my_custom_value}", "operator": "set_contains_any", "value": "a,b", "weight": -50}]}]}]}"#;
    let from_json = edge_spec::parse_json(json, "web.json").unwrap().job;
    assert_eq!(from_json.affinities, j.affinities);
    assert_eq!(from_json.spreads, j.spreads);
    assert_eq!(from_json.groups[0].affinities, g.affinities);
    assert_eq!(from_json.groups[0].spreads, g.spreads);
    assert_eq!(
        from_json.groups[0].tasks[0].affinities,
        g.tasks[0].affinities
    );
}

#[test]
fn a_group_without_preferences_keeps_its_hash() {
    let src = job("", "", "");
    let g = parse_hcl(&src, &ParseOptions::new("web.hcl"))
        .unwrap()
        .job
        .groups[0]
        .clone();
    let text = serde_json::to_string(&g).unwrap();
    assert!(
        !text.contains("affinities") && !text.contains("spreads"),
        "{text}"
    );
}

#[test]
fn bad_affinities_and_spreads_are_refused_at_their_field() {
    for (group_extra, want) in [
        (
            "    affinity {\n      attribute = \"${meta.rack}\"\n      value = \"r1\"\n      weight = 0\n    }",
            "job.web.group.g.affinity[0].weight: affinity weight cannot be zero",
        ),
        (
            "    affinity {\n      attribute = \"${meta.rack}\"\n      value = \"r1\"\n      weight = 101\n    }",
            "job.web.group.g.affinity[0].weight: affinity weight must be from -100 to 100, got 101",
        ),
        (
            "    affinity {\n      attribute = \"${meta.rack}\"\n      operator = \"distinct_hosts\"\n    }",
            "job.web.group.g.affinity[0].operator: operator \"distinct_hosts\" only filters nodes",
        ),
        (
            "    affinity {\n      attribute = \"${meta.rack}\"\n      operator = \"near\"\n      value = \"r1\"\n    }",
            "job.web.group.g.affinity[0].operator",
        ),
        (
            "    affinity {\n      attribute = \"${meta.rack}\"\n      operator = \"regexp\"\n      value = \"(\"\n    }",
            "job.web.group.g.affinity[0].value: invalid regular expression",
        ),
        (
            "    spread {\n      weight = 10\n    }",
            "job.web.group.g.spread[0].attribute: spread needs an attribute",
        ),
        (
            "    spread {\n      attribute = \"${meta.rack}\"\n      target \"r1\" {\n        percent = 70\n      }\n      target \"r2\" {\n        percent = 40\n      }\n    }",
            "job.web.group.g.spread[0].target: the targets' percentages add up to 110, over 100",
        ),
        (
            "    spread {\n      attribute = \"${meta.rack}\"\n      target \"r1\" {\n        percent = 10\n      }\n      target \"r1\" {\n        percent = 10\n      }\n    }",
            "job.web.group.g.spread[0].target.r1: target \"r1\" is given twice",
        ),
        (
            "    spread {\n      attribute = \"${meta.rack}\"\n      weight = 0\n    }",
            "job.web.group.g.spread[0].weight: spread weight must be from 1 to 100, got 0",
        ),
    ] {
        let err = refused(&job("", group_extra, ""));
        assert!(err.contains(want), "want {want:?} in:\n{err}");
        assert!(err.contains("web.hcl:"), "no line in {err}");
    }
}

fn parsed(src: &str) -> edge_spec::Parsed {
    parse_hcl(src, &ParseOptions::new("web.hcl")).expect("parses")
}

/// Nomad lets a task carry `restart`; edge restarts per group, which is the
/// same rule when the task is the group's only one.
#[test]
fn a_lone_tasks_restart_is_its_groups() {
    let restart = "      restart {\n        attempts = 7\n        delay    = \"3s\"\n      }";
    let spec = parsed(&job("", "", restart)).job;
    let r = &spec.groups[0].restart;
    assert_eq!(
        (r.attempts, r.delay),
        (7, std::time::Duration::from_secs(3))
    );
    let two = job("", "", restart).replace(
        "  group \"g\" {\n",
        "  group \"g\" {\n    task \"u\" {\n      driver = \"exec\"\n      config {\n        command = \"/bin/true\"\n      }\n    }\n",
    );
    assert!(refused(&two).contains(
        "job.web.group.g.task.t.restart: `restart` is not supported: edge restarts per group"
    ));
    let both = job("", "    restart {\n      attempts = 1\n    }", restart);
    assert!(
        refused(&both).contains("task.t.restart"),
        "{}",
        refused(&both)
    );
}

/// `ephemeral_disk { size }` means nothing here and says so; sticky or
/// migrated data is not built, so asking for it is refused.
#[test]
fn ephemeral_disk_size_is_a_warning_and_sticky_data_refused() {
    let p = parsed(&job(
        "",
        "    ephemeral_disk {\n      size   = 300\n      sticky = false\n    }",
        "",
    ));
    let w: Vec<String> = p.warnings.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        w,
        [
            "web.hcl:5:7: job.web.group.g.ephemeral_disk.size: `size` is ignored: edge does not reserve disk: an allocation's directory grows as it needs"
        ]
    );
    let err = refused(&job(
        "",
        "    ephemeral_disk {\n      migrate = true\n      colour = 1\n    }",
        "",
    ));
    assert!(err.contains("web.hcl:5:7: job.web.group.g.ephemeral_disk.migrate: `migrate` is not supported: migrated data is not built yet"), "{err}");
    assert!(
        err.contains("job.web.group.g.ephemeral_disk.colour: unknown attribute `colour`"),
        "{err}"
    );
}

/// A job's `reschedule` and `migrate` apply to every group, under what a
/// group's own block sets, as in Nomad.
#[test]
fn job_level_reschedule_and_migrate_reach_every_group() {
    let src = job(
        "  reschedule {\n    attempts  = 3\n    delay     = \"20s\"\n    unlimited = false\n  }\n  migrate {\n    max_parallel = 2\n  }",
        "    reschedule {\n      attempts = 10\n    }",
        "",
    )
    .replace(
        "  group \"g\" {\n",
        "  group \"plain\" {\n    task \"t\" {\n      driver = \"exec\"\n      config {\n        command = \"/bin/true\"\n      }\n    }\n  }\n  group \"g\" {\n",
    );
    let spec = parsed(&src).job;
    let plain = spec.group("plain").unwrap();
    assert_eq!(
        (
            plain.reschedule.attempts,
            plain.reschedule.delay,
            plain.reschedule.unlimited
        ),
        (3, std::time::Duration::from_secs(20), false)
    );
    assert_eq!(plain.migrate.as_ref().and_then(|m| m.max_parallel), Some(2));
    let g = spec.group("g").unwrap();
    assert_eq!(
        (
            g.reschedule.attempts,
            g.reschedule.delay,
            g.reschedule.unlimited
        ),
        (10, std::time::Duration::from_secs(20), false)
    );
    let twice = job("  migrate {}\n  migrate {}", "", "");
    assert!(refused(&twice).contains("only one `migrate` block is allowed here"));
}

/// Nomad's task-level `user` is the exec and containerd drivers'
/// `config.user`.
#[test]
fn a_tasks_user_is_its_configs() {
    let spec = parsed(&job("", "", "      user = \"www-data\"")).job;
    assert_eq!(
        spec.groups[0].tasks[0].config.get("user"),
        Some(&serde_json::json!("www-data"))
    );
    let both = job("", "", "      user = \"www-data\"").replace(
        "command = \"/bin/true\"",
        "command = \"/bin/true\"\n        user = \"nobody\"",
    );
    assert!(
        refused(&both).contains("are both set"),
        "{}",
        refused(&both)
    );
}

/// `kill_signal` asks an exec or containerd task to stop with another
/// signal; a name that is no signal, or a driver that stops its tasks
/// itself, is refused.
#[test]
fn kill_signal_is_checked() {
    let spec = parsed(&job("", "", "      kill_signal = \"SIGQUIT\"")).job;
    assert_eq!(
        spec.groups[0].tasks[0].kill_signal.as_deref(),
        Some("SIGQUIT")
    );
    let err = refused(&job("", "", "      kill_signal = \"SIGNOPE\""));
    assert!(
        err.contains("job.web.group.g.task.t.kill_signal: unknown signal \"SIGNOPE\""),
        "{err}"
    );
    let wasm = job("", "", "      kill_signal = \"INT\"")
        .replace("driver = \"exec\"", "driver = \"wasm\"")
        .replace("command = \"/bin/true\"", "module = \"/srv/app.wasm\"");
    assert!(
        refused(&wasm).contains("kill_signal is for exec and containerd tasks"),
        "{}",
        refused(&wasm)
    );
}
