//! Feasibility: constraints, drivers, datacenters, cpu, memory and ports,
//! and the reasons reported when a group cannot be placed.

use crate::common::{Cluster, constraint, dynamic_port, group, job, node, static_port};
use edge_spec::{ConstraintOp, Job, Node};
use std::collections::BTreeSet;

fn labelled() -> Node {
    let mut n = node("n1", 4000, 8000);
    n.datacenter = "eu-west".into();
    for (k, v) in [
        ("kernel.name", "linux"),
        ("cpu.numcores", "8"),
        ("os.version", "22.04"),
        ("features", "gpu,ssd, avx"),
    ] {
        n.attributes.insert(k.into(), v.into());
    }
    n.meta.insert("rack".into(), "r10".into());
    n
}

/// Whether a one-copy job with this constraint places on [`labelled`], and
/// the filter reason when it does not.
fn verdict(attribute: &str, op: ConstraintOp, value: &str) -> Result<(), String> {
    let c = Cluster::new(vec![labelled()]);
    let mut j = job("web", vec![group("g", 1, 100, 100)]);
    j.constraints.push(constraint(attribute, op, value));
    let plan = c.plan(&j, 1);
    if plan.place.len() == 1 {
        return Ok(());
    }
    let m = &plan.failed["g"];
    assert_eq!(plan.queued["g"], 1);
    assert_eq!((m.nodes_evaluated, m.nodes_filtered), (1, 1));
    Err(m
        .constraint_filtered
        .keys()
        .next()
        .cloned()
        .unwrap_or_default())
}

#[test]
fn every_operator_filters_with_a_readable_reason() {
    use ConstraintOp::*;
    let ok = [
        ("${attr.kernel.name}", Eq, "linux"),
        ("${attr.kernel.name}", Ne, "windows"),
        ("${attr.missing}", Ne, "x"),
        ("${attr.cpu.numcores}", Gt, "4"),
        ("${attr.cpu.numcores}", Ge, "8"),
        ("${attr.cpu.numcores}", Lt, "10"),
        ("${attr.cpu.numcores}", Le, "8"),
        ("${attr.os.version}", Ge, "20.04"),
        ("${meta.rack}", Regexp, "^r[0-9]+$"),
        ("${attr.features}", SetContains, "ssd,avx"),
        ("${meta.rack}", IsSet, ""),
        ("${meta.zone}", IsNotSet, ""),
        ("${node.datacenter}", Eq, "eu-west"),
        ("${node.unique.name}", Eq, "name-n1"),
        ("${node.id}", Eq, "n1"),
        ("${node.address}", Eq, "10.0.0.1"),
        ("${attr.kernel.name}", Eq, "${attr.kernel.name}"),
    ];
    for (a, op, v) in ok {
        assert_eq!(verdict(a, op, v), Ok(()), "{a} {op:?} {v}");
    }
    let filtered = [
        (
            "${attr.kernel.name}",
            Eq,
            "windows",
            "constraint ${attr.kernel.name} = windows",
        ),
        (
            "${attr.kernel.name}",
            Ne,
            "linux",
            "constraint ${attr.kernel.name} != linux",
        ),
        // 8 < 10 numerically though "8" > "10" as text.
        (
            "${attr.cpu.numcores}",
            Gt,
            "10",
            "constraint ${attr.cpu.numcores} > 10",
        ),
        (
            "${attr.cpu.numcores}",
            Lt,
            "8",
            "constraint ${attr.cpu.numcores} < 8",
        ),
        (
            "${attr.cpu.numcores}",
            Le,
            "7",
            "constraint ${attr.cpu.numcores} <= 7",
        ),
        (
            "${attr.cpu.numcores}",
            Ge,
            "9",
            "constraint ${attr.cpu.numcores} >= 9",
        ),
        ("${attr.missing}", Eq, "x", "constraint ${attr.missing} = x"),
        (
            "${meta.rack}",
            Regexp,
            "^x",
            "constraint ${meta.rack} regexp ^x",
        ),
        (
            "${attr.features}",
            SetContains,
            "gpu,tpu",
            "constraint ${attr.features} set_contains gpu,tpu",
        ),
        ("${meta.zone}", IsSet, "", "constraint ${meta.zone} is_set"),
        (
            "${meta.rack}",
            IsNotSet,
            "",
            "constraint ${meta.rack} is_not_set",
        ),
        ("${node.class}", Eq, "x", "constraint ${node.class} = x"),
    ];
    for (a, op, v, reason) in filtered {
        assert_eq!(verdict(a, op, v), Err(reason.to_string()), "{a} {op:?} {v}");
    }
    let bad = verdict("${meta.rack}", Regexp, "([");
    assert!(
        bad.as_ref()
            .is_err_and(|r| r.starts_with("constraint ${meta.rack} regexp ([: invalid regexp")),
        "{bad:?}"
    );
}

#[test]
fn group_constraints_apply_after_job_constraints() {
    let mut other = labelled();
    other.id = "n2".into();
    other
        .attributes
        .insert("kernel.name".into(), "darwin".into());
    let c = Cluster::new(vec![labelled(), other]);
    let mut g = group("g", 2, 100, 100);
    g.constraints
        .push(constraint("${attr.kernel.name}", ConstraintOp::Eq, "linux"));
    let plan = c.plan(&job("web", vec![g]), 1);
    assert_eq!(plan.place.len(), 2);
    assert!(plan.place.iter().all(|a| a.node_id == "n1"));
}

#[test]
fn missing_driver_is_reported_first() {
    let mut n = node("n1", 4000, 8000);
    if let Some(d) = n.drivers.get_mut("exec") {
        d.healthy = false;
    }
    let c = Cluster::new(vec![n, {
        let mut n2 = node("n2", 4000, 8000);
        n2.drivers.clear();
        n2
    }]);
    let mut j = job("web", vec![group("g", 3, 100, 100)]);
    j.constraints
        .push(constraint("${attr.kernel.name}", ConstraintOp::Eq, "linux"));
    let plan = c.plan(&j, 1);
    assert!(plan.place.is_empty());
    let m = &plan.failed["g"];
    assert_eq!(
        m.constraint_filtered.get("missing driver \"exec\""),
        Some(&2)
    );
    assert_eq!(m.constraint_filtered.len(), 1);
    assert_eq!(m.coalesced_failures, 2);
    assert_eq!(m.nodes_available.get("dc1"), Some(&2));
    assert_eq!(plan.queued["g"], 3);
}

#[test]
fn datacenters_limit_the_nodes_considered() {
    let mut east = node("e", 4000, 8000);
    east.datacenter = "us-east-1".into();
    let mut west = node("w", 4000, 8000);
    west.datacenter = "us-west-1".into();
    let c = Cluster::new(vec![east, west]);
    let mut j = job("web", vec![group("g", 2, 100, 100)]);
    j.datacenters = vec!["us-east-*".into()];
    let plan = c.plan(&j, 1);
    assert!(plan.place.iter().all(|a| a.node_id == "e"));
    j.datacenters = vec!["eu".into()];
    let plan = c.plan(&j, 1);
    assert_eq!(plan.failed["g"].nodes_evaluated, 0);
    assert_eq!(plan.queued["g"], 2);
}

fn exhaust(j: &Job, dimension: &str) {
    let c = Cluster::new(vec![node("n1", 1000, 1000)]);
    let plan = c.plan(j, 1);
    assert_eq!(plan.place.len(), 2, "{plan:?}");
    let m = &plan.failed["g"];
    assert_eq!(m.nodes_exhausted, 1);
    assert_eq!(m.dimension_exhausted.get(dimension), Some(&1), "{m:?}");
    assert_eq!(m.coalesced_failures, 0);
    assert_eq!(plan.queued["g"], 1);
}

#[test]
fn cpu_and_memory_exhaustion_are_named() {
    exhaust(&job("web", vec![group("g", 3, 400, 100)]), "cpu");
    exhaust(&job("web", vec![group("g", 3, 100, 400)]), "memory");
}

#[test]
fn reserved_resources_and_existing_usage_count() {
    let mut n = node("n1", 1000, 1000);
    n.reserved.cpu = 500;
    let mut c = Cluster::new(vec![n]);
    c.run(&job("other", vec![group("g", 1, 300, 100)]), 1);
    let plan = c.plan(&job("web", vec![group("g", 1, 300, 100)]), 2);
    assert_eq!(plan.failed["g"].dimension_exhausted.get("cpu"), Some(&1));
}

#[test]
fn static_port_collides_on_one_node() {
    let mut g = group("g", 2, 100, 100);
    g.network.ports.push(static_port("http", 8080));
    let j = job("web", vec![g]);
    let c = Cluster::new(vec![node("n1", 4000, 4000)]);
    let plan = c.plan(&j, 1);
    assert_eq!(plan.place.len(), 1);
    let p = &plan.place[0].resources.ports[0];
    assert_eq!((p.label.as_str(), p.value, p.to), ("http", 8080, 8080));
    assert_eq!(
        plan.failed["g"]
            .dimension_exhausted
            .get("network: reserved port 8080 collision"),
        Some(&1)
    );
    let c = Cluster::new(vec![node("n1", 4000, 4000), node("n2", 4000, 4000)]);
    let plan = c.plan(&j, 1);
    let nodes: BTreeSet<_> = plan.place.iter().map(|a| a.node_id.as_str()).collect();
    assert_eq!(nodes.len(), 2);
}

#[test]
fn dynamic_ports_are_unique_on_a_node() {
    let mut n1 = node("n1", 100_000, 100_000);
    n1.attributes
        .insert(edge_spec::BRIDGE_ATTRIBUTE.into(), "true".into());
    let mut c = Cluster::new(vec![n1]);
    c.config.port_min = 20000;
    c.config.port_max = 20011;
    // A port already held on the node is never handed out again.
    let mut holder = group("g", 1, 10, 10);
    holder.network.ports.push(static_port("x", 20005));
    c.run(&job("holder", vec![holder]), 1);

    let mut g = group("g", 6, 10, 10);
    g.network.mode = edge_spec::NetworkMode::Bridge;
    g.network.ports.push(dynamic_port("http"));
    let mut mapped = dynamic_port("grpc");
    mapped.to = Some(9090);
    g.network.ports.push(mapped);
    let plan = c.plan(&job("web", vec![g]), 2);
    assert_eq!(plan.place.len(), 5, "11 free ports hold 5 copies of 2");
    let mut seen = BTreeSet::new();
    for a in &plan.place {
        for p in &a.resources.ports {
            assert!((20000..=20011).contains(&p.value));
            assert_ne!(p.value, 20005);
            assert!(seen.insert(p.value), "port {} handed out twice", p.value);
            if p.label == "grpc" {
                assert_eq!(p.to, 9090);
            } else {
                assert_eq!(p.to, p.value);
            }
        }
    }
    assert_eq!(
        plan.failed["g"]
            .dimension_exhausted
            .get("network: dynamic port selection failed"),
        Some(&1)
    );
}

#[test]
fn distinct_hosts_keeps_copies_apart() {
    let c = Cluster::new(vec![node("a", 4000, 4000), node("b", 4000, 4000)]);
    let mut j = job("web", vec![group("g", 3, 100, 100)]);
    j.constraints
        .push(constraint("", ConstraintOp::DistinctHosts, "true"));
    let plan = c.plan(&j, 1);
    let nodes: BTreeSet<_> = plan.place.iter().map(|a| a.node_id.as_str()).collect();
    assert_eq!(nodes, BTreeSet::from(["a", "b"]));
    let m = &plan.failed["g"];
    assert_eq!(
        m.constraint_filtered.get("constraint distinct_hosts"),
        Some(&2)
    );
}

#[test]
fn binpack_fills_the_fuller_node_and_spread_the_emptier() {
    use edge_sched::Algorithm;
    for algorithm in [Algorithm::Binpack, Algorithm::Spread] {
        let mut c = Cluster::new(vec![node("a", 4000, 4000), node("b", 4000, 4000)]);
        c.config.algorithm = algorithm;
        c.run(&job("other", vec![group("g", 1, 2000, 2000)]), 1);
        let busy = c.live("other")[0].node_id.clone();
        let idle = if busy == "a" { "b" } else { "a" };
        let want = match algorithm {
            Algorithm::Binpack => busy.as_str(),
            Algorithm::Spread => idle,
        };
        let plan = c.plan(&job("web", vec![group("g", 1, 100, 100)]), 2);
        assert_eq!(plan.place[0].node_id, want, "{algorithm:?}");
    }
}

#[test]
fn config_with_an_empty_port_range_is_rejected() {
    let mut cfg = edge_sched::SchedulerConfig::default();
    assert_eq!(cfg.validate(), Ok(()));
    cfg.port_min = 30000;
    cfg.port_max = 20000;
    let err = cfg.validate().map_err(|e| e.to_string());
    assert_eq!(
        err,
        Err("invalid dynamic port range 30000-20000: the minimum is above the maximum".into())
    );
}

#[test]
fn group_resources_that_overflow_u32_never_fit() {
    let c = Cluster::new(vec![node("n1", u32::MAX, u32::MAX)]);
    let mut g = group("g", 1, u32::MAX, u32::MAX);
    let mut second = g.tasks[0].clone();
    second.name = "second".into();
    g.tasks.push(second);
    let plan = c.plan(&job("web", vec![g]), 1);
    assert!(plan.place.is_empty(), "{:?}", plan.place);
    let m = &plan.failed["g"];
    assert_eq!(m.nodes_exhausted, 1, "{m:?}");
}

#[test]
fn the_one_failing_constraint_among_65535_filters_the_node() {
    let c = Cluster::new(vec![labelled()]);
    let mut j = job("web", vec![group("g", 1, 100, 100)]);
    // Distinct reasons, so the one that fails is the 65,536th reason
    // (the driver's is the first): a 16-bit index wraps there.
    for i in 0..65_534 {
        j.constraints.push(constraint(
            "${attr.kernel.name}",
            ConstraintOp::Ne,
            &format!("os{i}"),
        ));
    }
    j.constraints
        .push(constraint("${attr.kernel.name}", ConstraintOp::Eq, "plan9"));
    let started = std::time::Instant::now();
    let plan = c.plan(&j, 1);
    assert!(plan.place.is_empty(), "placed despite a failing constraint");
    let m = &plan.failed["g"];
    assert_eq!(
        m.constraint_filtered.keys().collect::<Vec<_>>(),
        vec!["constraint ${attr.kernel.name} = plan9"]
    );
    // Linear in the constraints: well under a second even unoptimized.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn bridge_groups_go_only_to_nodes_with_bridge_networking() {
    let mut bridged = node("b", 4000, 4000);
    bridged
        .attributes
        .insert(edge_spec::BRIDGE_ATTRIBUTE.into(), "true".into());
    let c = Cluster::new(vec![node("a", 4000, 4000), bridged]);
    let mut g = group("g", 2, 100, 100);
    g.network.mode = edge_spec::NetworkMode::Bridge;
    let plan = c.plan(&job("web", vec![g]), 1);
    assert_eq!(plan.place.len(), 2);
    assert!(plan.place.iter().all(|a| a.node_id == "b"));

    let c = Cluster::new(vec![node("a", 4000, 4000)]);
    let mut g = group("g", 1, 100, 100);
    g.network.mode = edge_spec::NetworkMode::Bridge;
    let plan = c.plan(&job("web", vec![g]), 1);
    assert!(plan.place.is_empty());
    assert_eq!(
        plan.failed["g"]
            .constraint_filtered
            .get("missing bridge networking (network mode \"bridge\")"),
        Some(&1)
    );
}

#[test]
fn a_task_constraint_places_its_whole_group() {
    let mut other = labelled();
    other.id = "n2".into();
    other.name = "n2".into();
    other
        .attributes
        .insert("kernel.name".into(), "freebsd".into());
    let c = Cluster::new(vec![labelled(), other]);
    let mut j = job("web", vec![group("g", 2, 100, 100)]);
    j.groups[0].tasks[0].constraints.push(constraint(
        "${attr.kernel.name}",
        ConstraintOp::Eq,
        "freebsd",
    ));
    let plan = c.plan(&j, 1);
    assert_eq!(plan.place.len(), 2);
    assert!(
        plan.place.iter().all(|a| a.node_id == "n2"),
        "{:?}",
        plan.place
    );

    j.groups[0].tasks[0].constraints[0].value = "plan9".into();
    let plan = c.plan(&j, 2);
    assert!(plan.place.is_empty());
    assert_eq!(plan.failed["g"].nodes_filtered, 2);
}

#[test]
fn version_and_semver_compare_versions_not_text() {
    use ConstraintOp::*;
    // Compared as text, "22.04" >= "9.1" would fail.
    assert_eq!(
        verdict("${attr.os.version}", Version, ">= 9.1, < 23"),
        Ok(())
    );
    assert_eq!(
        verdict("${attr.os.version}", Version, "~> 21.10"),
        Err("constraint ${attr.os.version} version ~> 21.10".to_string())
    );
    // `22.04` is not SemVer: strict comparison refuses it.
    assert!(verdict("${attr.os.version}", Semver, ">= 1.0.0").is_err());
}

#[test]
fn distinct_property_caps_copies_per_value() {
    let racks = ["r1", "r1", "r2", "r2", "r3"];
    let nodes: Vec<Node> = racks
        .iter()
        .enumerate()
        .map(|(i, rack)| {
            let mut n = node(&format!("n{i}"), 4000, 8000);
            if i < 4 {
                n.meta.insert("rack".into(), (*rack).into());
            }
            n
        })
        .collect();
    let rack_of = |id: &str| {
        let i: usize = id.trim_start_matches('n').parse().unwrap();
        racks[i]
    };
    let c = Cluster::new(nodes.clone());
    let mut j = job("web", vec![group("g", 4, 100, 100)]);
    j.groups[0].constraints.push(constraint(
        "${meta.rack}",
        ConstraintOp::DistinctProperty,
        "",
    ));
    let plan = c.plan(&j, 1);
    // One per rack; n4 has no rack and takes none.
    let used: BTreeSet<&str> = plan.place.iter().map(|a| rack_of(&a.node_id)).collect();
    assert_eq!(plan.place.len(), 2, "{:?}", plan.place);
    assert_eq!(used, BTreeSet::from(["r1", "r2"]));
    assert_eq!(plan.queued["g"], 2);
    assert!(
        plan.failed["g"]
            .constraint_filtered
            .keys()
            .any(|k| k.contains("distinct_property ${meta.rack} (at most 1 per value)")),
        "{:?}",
        plan.failed["g"]
    );

    // Two per rack: all four place, two in each.
    j.groups[0].constraints[0].value = "2".into();
    let mut c = Cluster::new(nodes);
    let plan = c.run(&j, 2);
    assert_eq!(plan.place.len(), 4);
    for rack in ["r1", "r2"] {
        assert_eq!(
            plan.place
                .iter()
                .filter(|a| rack_of(&a.node_id) == rack)
                .count(),
            2
        );
    }
    // Counted from the placed copies on the next evaluation too.
    j.groups[0].count = 5;
    let plan = c.plan(&j, 3);
    assert!(plan.place.is_empty(), "{:?}", plan.place);
}
