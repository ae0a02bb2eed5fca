//! Affinities and spreads: where copies go on a fixed cluster of two (or
//! three) datacenters, counting copies already running and those placed
//! earlier in the same plan.

use crate::common::{Cluster, group, job, node};
use edge_spec::{Affinity, ConstraintOp, Job, Node, Spread, SpreadTarget};
use std::collections::BTreeMap;

/// `per_dc` nodes in each of `dcs`, each with a `rack` meta of its index
/// modulo 2.
fn cluster(dcs: &[&str], per_dc: usize) -> Cluster {
    let mut nodes: Vec<Node> = Vec::new();
    for dc in dcs {
        for i in 0..per_dc {
            let mut n = node(&format!("{dc}-{i}"), 4000, 8192);
            n.datacenter = dc.to_string();
            n.meta.insert("rack".into(), format!("r{}", i % 2));
            nodes.push(n);
        }
    }
    Cluster::new(nodes)
}

fn affinity(attribute: &str, op: ConstraintOp, value: &str, weight: i64) -> Affinity {
    Affinity {
        attribute: attribute.to_string(),
        operator: op,
        value: value.to_string(),
        weight,
    }
}

fn spread(attribute: &str, targets: &[(&str, i64)]) -> Spread {
    Spread {
        attribute: attribute.to_string(),
        weight: 50,
        targets: targets
            .iter()
            .map(|(v, p)| SpreadTarget {
                value: v.to_string(),
                percent: *p,
            })
            .collect(),
    }
}

/// Live copies of the job per datacenter.
fn per_dc(c: &Cluster, job: &Job) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for a in c
        .allocs
        .iter()
        .filter(|a| a.job_id == job.id && a.is_live())
    {
        let dc = &c
            .nodes
            .iter()
            .find(|n| n.id == a.node_id)
            .expect("node")
            .datacenter;
        *out.entry(dc.clone()).or_default() += 1;
    }
    out
}

fn run(c: &mut Cluster, job: &Job, seed: u64) {
    c.register(job);
    let plan = c.plan(job, seed);
    assert!(plan.failed.is_empty(), "{:?}", plan.failed);
    c.apply(&plan);
}

fn count(m: &BTreeMap<String, usize>, dc: &str) -> usize {
    m.get(dc).copied().unwrap_or(0)
}

#[test]
fn an_affinity_draws_copies_to_its_datacenter() {
    for seed in 0..20 {
        let mut c = cluster(&["dc1", "dc2"], 10);
        let mut j = job("web", vec![group("web", 6, 100, 64)]);
        j.affinities = vec![affinity("${node.datacenter}", ConstraintOp::Eq, "dc2", 100)];
        run(&mut c, &j, seed);
        assert_eq!(count(&per_dc(&c, &j), "dc2"), 6, "seed {seed}");
    }
}

#[test]
fn a_negative_affinity_keeps_copies_away() {
    for seed in 0..20 {
        let mut c = cluster(&["dc1", "dc2"], 10);
        let mut j = job("web", vec![group("web", 6, 100, 64)]);
        j.groups[0].affinities = vec![affinity("${meta.rack}", ConstraintOp::Eq, "r0", -50)];
        run(&mut c, &j, seed);
        let racks: Vec<String> = c
            .allocs
            .iter()
            .map(|a| {
                let n = c.nodes.iter().find(|n| n.id == a.node_id).expect("node");
                n.meta["rack"].clone()
            })
            .collect();
        assert!(racks.iter().all(|r| r == "r1"), "seed {seed}: {racks:?}");
    }
}

#[test]
fn an_affinity_gives_way_when_its_nodes_are_full() {
    let mut c = cluster(&["dc1", "dc2"], 2);
    let mut j = job("web", vec![group("web", 3, 3000, 64)]);
    j.affinities = vec![affinity("${node.datacenter}", ConstraintOp::Eq, "dc2", 100)];
    run(&mut c, &j, 1);
    // One copy fits per node: two in dc2, then the third in dc1.
    let m = per_dc(&c, &j);
    assert_eq!((count(&m, "dc1"), count(&m, "dc2")), (1, 2), "{m:?}");
}

#[test]
fn a_task_affinity_places_the_group() {
    for seed in 0..10 {
        let mut c = cluster(&["dc1", "dc2"], 10);
        let mut j = job("web", vec![group("web", 4, 100, 64)]);
        j.groups[0].tasks[0].affinities = vec![affinity(
            "${node.datacenter}",
            ConstraintOp::Regexp,
            "^dc1$",
            80,
        )];
        run(&mut c, &j, seed);
        assert_eq!(count(&per_dc(&c, &j), "dc1"), 4, "seed {seed}");
    }
}

#[test]
fn an_even_spread_splits_copies_between_datacenters() {
    for seed in 0..20 {
        let mut c = cluster(&["dc1", "dc2"], 10);
        // Binpack alone would stack copies on the fullest nodes.
        let mut j = job("web", vec![group("web", 10, 100, 64)]);
        j.spreads = vec![spread("${node.datacenter}", &[])];
        run(&mut c, &j, seed);
        let m = per_dc(&c, &j);
        assert!(count(&m, "dc1").abs_diff(5) <= 1, "seed {seed}: {m:?}");
        assert_eq!(count(&m, "dc1") + count(&m, "dc2"), 10);
    }
}

#[test]
fn spread_targets_set_the_shares() {
    for seed in 0..20 {
        let mut c = cluster(&["dc1", "dc2"], 10);
        let mut j = job("web", vec![group("web", 10, 100, 64)]);
        j.groups[0].spreads = vec![spread("${node.datacenter}", &[("dc1", 70), ("dc2", 30)])];
        run(&mut c, &j, seed);
        let m = per_dc(&c, &j);
        assert!(count(&m, "dc1").abs_diff(7) <= 1, "seed {seed}: {m:?}");
        assert!(count(&m, "dc2").abs_diff(3) <= 1, "seed {seed}: {m:?}");
    }
}

#[test]
fn values_no_target_names_share_the_rest() {
    let mut c = cluster(&["dc1", "dc2", "dc3"], 10);
    let mut j = job("web", vec![group("web", 10, 100, 64)]);
    j.spreads = vec![spread("${node.datacenter}", &[("dc1", 80)])];
    run(&mut c, &j, 3);
    let m = per_dc(&c, &j);
    assert!(count(&m, "dc1").abs_diff(8) <= 1, "{m:?}");
}

#[test]
fn running_copies_count_toward_the_spread() {
    for seed in 0..10 {
        let mut c = cluster(&["dc1", "dc2"], 10);
        // Four copies run in dc1 before the job asks for a spread.
        let mut j = job("web", vec![group("web", 4, 100, 64)]);
        j.constraints = vec![crate::common::constraint(
            "${node.datacenter}",
            ConstraintOp::Eq,
            "dc1",
        )];
        run(&mut c, &j, seed);
        assert_eq!(count(&per_dc(&c, &j), "dc1"), 4);
        // Same group spec (job-level changes keep the copies), more copies.
        j.constraints.clear();
        j.version += 1;
        j.groups[0].count = 8;
        j.spreads = vec![spread("${node.datacenter}", &[])];
        run(&mut c, &j, seed);
        let m = per_dc(&c, &j);
        assert_eq!(
            (count(&m, "dc1"), count(&m, "dc2")),
            (4, 4),
            "seed {seed}: {m:?}"
        );
    }
}

#[test]
fn spread_and_affinity_combine() {
    let mut c = cluster(&["dc1", "dc2"], 10);
    let mut j = job("web", vec![group("web", 10, 100, 64)]);
    j.spreads = vec![spread("${node.datacenter}", &[])];
    // Within each datacenter, rack r1 is preferred.
    j.affinities = vec![affinity("${meta.rack}", ConstraintOp::Eq, "r1", 50)];
    run(&mut c, &j, 7);
    let m = per_dc(&c, &j);
    assert!(count(&m, "dc1").abs_diff(5) <= 1, "{m:?}");
    let on_r1 = c
        .allocs
        .iter()
        .filter(|a| {
            let n = c.nodes.iter().find(|n| n.id == a.node_id).expect("node");
            n.meta["rack"] == "r1"
        })
        .count();
    assert_eq!(on_r1, 10);
}

#[test]
fn plans_with_preferences_are_deterministic() {
    let c = cluster(&["dc1", "dc2", "dc3"], 8);
    let mut j = job("web", vec![group("web", 12, 100, 64)]);
    j.spreads = vec![spread("${node.datacenter}", &[("dc1", 50)])];
    j.affinities = vec![affinity("${meta.rack}", ConstraintOp::Ne, "r0", 30)];
    let a: Vec<String> = c.plan(&j, 9).place.into_iter().map(|a| a.node_id).collect();
    let b: Vec<String> = c.plan(&j, 9).place.into_iter().map(|a| a.node_id).collect();
    assert_eq!(a, b);
    assert_eq!(a.len(), 12);
}

#[test]
fn an_affinity_finds_the_one_matching_node_among_many() {
    for seed in 0..5 {
        let mut c = cluster(&["dc1", "dc2"], 200);
        c.node_mut("dc2-123")
            .meta
            .insert("gpu".into(), "true".into());
        let mut j = job("web", vec![group("web", 1, 100, 64)]);
        j.affinities = vec![affinity("${meta.gpu}", ConstraintOp::Eq, "true", 100)];
        run(&mut c, &j, seed);
        assert_eq!(c.allocs[0].node_id, "dc2-123", "seed {seed}");
    }
}

#[test]
fn a_spread_over_a_missing_attribute_still_places() {
    let mut c = cluster(&["dc1", "dc2"], 4);
    let mut j = job("web", vec![group("web", 4, 100, 64)]);
    j.spreads = vec![spread("${meta.zone}", &[("a", 50), ("b", 50)])];
    run(&mut c, &j, 2);
    assert_eq!(c.allocs.len(), 4);
}
