//! System jobs: one copy per usable node, kept in step with the nodes.

use crate::common::{Cluster, constraint, group, job, node};
use edge_spec::{ClientStatus, ConstraintOp, Job, JobType, NodeStatus, ReschedulePolicy};
use std::collections::BTreeSet;
use std::time::Duration;

fn system_job() -> Job {
    let mut j = job("agentd", vec![group("g", 1, 500, 500)]);
    j.job_type = JobType::System;
    j
}

#[test]
fn one_copy_per_node_and_none_where_it_does_not_fit() {
    let mut small = node("small", 200, 4000);
    small.datacenter = "dc1".into();
    let mut c = Cluster::new(vec![
        node("n1", 4000, 4000),
        node("n2", 4000, 4000),
        node("n3", 4000, 4000),
        small,
    ]);
    let plan = c.run(&system_job(), 1);
    let nodes: BTreeSet<_> = plan.place.iter().map(|a| a.node_id.as_str()).collect();
    assert_eq!(nodes, BTreeSet::from(["n1", "n2", "n3"]));
    assert!(plan.place.iter().all(|a| a.name == "agentd.g[0]"));
    let m = &plan.failed["g"];
    assert_eq!(m.nodes_exhausted, 1);
    assert_eq!(m.dimension_exhausted.get("cpu"), Some(&1));
    assert_eq!(m.coalesced_failures, 0);
    assert_eq!(plan.queued["g"], 1);
    assert_eq!(plan.changes["g"].place, 4);

    // Steady state: nothing to do but report the node still too small.
    let plan = c.plan(&system_job(), 2);
    assert!(plan.is_noop());
    assert_eq!(plan.changes["g"].ignore, 3);
    assert_eq!(plan.queued["g"], 1);
}

#[test]
fn constraint_filtered_nodes_are_not_failures() {
    let mut arm = node("arm", 4000, 4000);
    arm.attributes.insert("cpu.arch".into(), "arm64".into());
    let mut x86 = node("x86", 4000, 4000);
    x86.attributes.insert("cpu.arch".into(), "amd64".into());
    let c = Cluster::new(vec![arm, x86]);
    let mut j = system_job();
    j.constraints
        .push(constraint("${attr.cpu.arch}", ConstraintOp::Eq, "amd64"));
    let plan = c.plan(&j, 1);
    assert_eq!(plan.place.len(), 1);
    assert_eq!(plan.place[0].node_id, "x86");
    assert!(plan.failed.is_empty());
    assert_eq!(plan.queued["g"], 0);
}

#[test]
fn follows_nodes_joining_leaving_draining_and_changing() {
    let mut c = Cluster::new(vec![node("n1", 4000, 4000), node("n2", 4000, 4000)]);
    let mut j = system_job();
    j.constraints
        .push(constraint("${meta.role}", ConstraintOp::IsNotSet, ""));
    c.run(&j, 1);
    assert_eq!(c.live("agentd").len(), 2);

    c.nodes.push(node("n3", 4000, 4000));
    let plan = c.run(&j, 2);
    assert_eq!(plan.place.len(), 1);
    assert_eq!(plan.place[0].node_id, "n3");

    c.node_mut("n1").status = NodeStatus::Down;
    c.node_mut("n2").drain = true;
    c.node_mut("n3").meta.insert("role".into(), "db".into());
    let plan = c.run(&j, 3);
    assert!(plan.place.is_empty());
    assert_eq!(plan.changes["g"].lost, 1);
    assert_eq!(plan.changes["g"].migrate, 1);
    assert_eq!(plan.changes["g"].stop, 1);
    let lost = plan
        .stop
        .iter()
        .find(|s| s.client_status == Some(ClientStatus::Lost));
    assert!(lost.is_some());
    assert!(
        plan.stop
            .iter()
            .any(|s| s.description == "node no longer feasible")
    );
    assert!(c.live("agentd").is_empty());
}

#[test]
fn ineligible_node_keeps_its_copy() {
    let mut c = Cluster::new(vec![node("n1", 4000, 4000)]);
    let mut j = system_job();
    c.run(&j, 1);
    c.node_mut("n1").eligible = false;
    j.version = 1;
    j.groups[0].tasks[0].env.insert("X".into(), "1".into());
    let plan = c.plan(&j, 2);
    assert!(plan.is_noop());
    assert_eq!(plan.changes["g"].ignore, 1);
}

#[test]
fn update_replaces_on_the_same_node() {
    let mut c = Cluster::new(vec![node("n1", 1000, 1000), node("n2", 1000, 1000)]);
    let mut j = system_job();
    j.groups[0].tasks[0].resources.cpu = 800;
    j.update = Some(edge_spec::UpdatePolicy {
        max_parallel: Some(0),
        ..Default::default()
    });
    c.run(&j, 1);
    j.version = 1;
    j.groups[0].tasks[0].env.insert("X".into(), "1".into());
    let plan = c.run(&j, 2);
    // The copy being replaced frees the room its successor needs.
    assert_eq!(plan.changes["g"].destructive, 2);
    assert_eq!(plan.place.len(), 2);
    for a in &plan.place {
        let prev = plan
            .stop
            .iter()
            .find(|s| Some(&s.alloc_id) == a.previous_alloc.as_ref());
        assert!(prev.is_some());
    }
    assert_eq!(c.live_on("agentd", "n1"), 1);
    assert_eq!(c.live_on("agentd", "n2"), 1);

    j.version = 2;
    let plan = c.plan(&j, 3);
    assert_eq!(plan.in_place.len(), 2);
}

#[test]
fn failed_system_copy_follows_the_reschedule_policy() {
    let mut c = Cluster::new(vec![node("n1", 4000, 4000)]);
    let mut j = system_job();
    j.groups[0].reschedule = ReschedulePolicy {
        attempts: 1,
        interval: Duration::from_secs(600),
        delay: Duration::from_secs(10),
        unlimited: false,
    };
    c.run(&j, 1);
    let id = c.live("agentd")[0].id.clone();
    c.fail(&id, 1_000);
    let plan = c.plan(&j, 2);
    assert!(plan.is_noop());
    assert_eq!(plan.followup_at, Some(c.now + 9_000));
    c.now += 9_000;
    let plan = c.run(&j, 3);
    assert_eq!(plan.place.len(), 1);
    assert_eq!(plan.place[0].previous_alloc.as_deref(), Some(id.as_str()));
    assert_eq!(plan.stop[0].description, "rescheduled");
    let second = plan.place[0].id.clone();
    c.fail(&second, 20_000);
    let plan = c.plan(&j, 4);
    assert!(plan.is_noop());
    assert_eq!(plan.changes["g"].reschedule_exhausted, 1);
}

/// A changed system job rolls node by node: `max_parallel` nodes between
/// stop and a healthy replacement at once, `stagger` apart, and an
/// unhealthy replacement halts the rest.
#[test]
fn an_update_rolls_node_by_node() {
    let nodes = (1..=4)
        .map(|i| node(&format!("n{i}"), 1000, 1000))
        .collect();
    let mut c = Cluster::new(nodes);
    let mut j = system_job();
    j.update = Some(edge_spec::UpdatePolicy {
        max_parallel: Some(2),
        stagger: Some(edge_spec::duration::PolicyWait(Duration::from_secs(30))),
        ..Default::default()
    });
    c.run(&j, 1);
    j.version = 1;
    j.groups[0].tasks[0].env.insert("X".into(), "1".into());
    let hash = j.groups[0].spec_hash();
    let plan = c.run(&j, 2);
    assert_eq!(
        (plan.place.len(), plan.stop.len()),
        (2, 2),
        "two nodes at once"
    );
    assert_eq!(plan.changes["g"].ignore, 2);
    assert!(c.run(&j, 3).is_noop(), "waits for the verdicts");
    let judge = |c: &mut Cluster, healthy: bool| {
        let ids: Vec<String> = c
            .live("agentd")
            .iter()
            .filter(|a| a.group_hash == hash && a.health.is_none())
            .map(|a| a.id.clone())
            .collect();
        let timestamp = c.now;
        for id in ids {
            c.alloc_mut(&id).health = Some(edge_spec::AllocHealth { healthy, timestamp });
        }
    };
    judge(&mut c, true);
    let plan = c.run(&j, 4);
    assert!(plan.place.is_empty(), "stagger: {plan:?}");
    assert_eq!(plan.followup_at, Some(c.now + 30_000));
    c.now += 30_000;
    let plan = c.run(&j, 5);
    assert_eq!(
        (plan.place.len(), plan.stop.len()),
        (2, 2),
        "the next batch"
    );
    judge(&mut c, true);

    // v2's first node turns out unhealthy: the other three keep v1.
    let mut v2 = j.clone();
    v2.version = 2;
    v2.update = None;
    v2.groups[0].tasks[0].env.insert("X".into(), "2".into());
    let hash = v2.groups[0].spec_hash();
    assert_eq!(c.run(&v2, 6).place.len(), 1, "max_parallel 1 by default");
    let id = c
        .live("agentd")
        .iter()
        .find(|a| a.group_hash == hash)
        .map(|a| a.id.clone())
        .unwrap();
    c.alloc_mut(&id).health = Some(edge_spec::AllocHealth {
        healthy: false,
        timestamp: c.now,
    });
    let plan = c.run(&v2, 7);
    assert!(
        plan.place.is_empty(),
        "an unhealthy replacement halts it: {plan:?}"
    );
    assert_eq!(
        plan.changes["g"].ignore, 4,
        "three waiting, the judged one kept"
    );
}

/// A service job with one group on every node (`system = true`, Compose's
/// `mode: global`) beside a replicated one.
fn mixed() -> Job {
    let mut exporter = group("exporter", 1, 100, 100);
    exporter.system = true;
    let mut j = job("shop", vec![group("web", 2, 100, 100), exporter]);
    j.update = Some(edge_spec::UpdatePolicy {
        max_parallel: Some(1),
        ..edge_spec::UpdatePolicy::default()
    });
    j
}

#[test]
fn a_system_group_of_a_service_job_runs_on_every_node() {
    let mut c = Cluster::new(vec![node("n1", 4000, 4000), node("n2", 4000, 4000)]);
    let j = mixed();
    c.register(&j);
    let plan = c.run(&j, 1);
    let on = |plan: &edge_sched::Plan, g: &str| -> BTreeSet<String> {
        plan.place
            .iter()
            .filter(|a| a.group == g)
            .map(|a| a.node_id.clone())
            .collect()
    };
    assert_eq!(
        on(&plan, "exporter"),
        BTreeSet::from(["n1".into(), "n2".into()])
    );
    assert_eq!(plan.place.iter().filter(|a| a.group == "web").count(), 2);
    // Only the replicated group is rolled out under the deployment.
    let d = c.deployment.as_ref().unwrap();
    assert_eq!(d.groups.keys().collect::<Vec<_>>(), ["web"]);
    assert!(
        plan.place
            .iter()
            .filter(|a| a.group == "exporter")
            .all(|a| a.deployment_id.is_none() && a.name == "shop.exporter[0]")
    );

    // A node joins: the system group follows, the replicated one stays.
    c.nodes.push(node("n3", 4000, 4000));
    let plan = c.run(&j, 2);
    assert_eq!(on(&plan, "exporter"), BTreeSet::from(["n3".into()]));
    assert_eq!(plan.place.len(), 1);
    assert!(c.plan(&j, 3).is_noop());
}

#[test]
fn a_group_waits_for_a_system_group_on_every_node() {
    let mut c = Cluster::new(vec![node("n1", 4000, 4000), node("n2", 4000, 4000)]);
    let mut j = mixed();
    j.groups[0].depends_on = vec![edge_spec::GroupDependency {
        group: "exporter".to_string(),
        condition: edge_spec::DependCondition::Started,
    }];
    let plan = c.run(&j, 1);
    assert_eq!(
        plan.place.iter().filter(|a| a.group == "exporter").count(),
        2
    );
    assert_eq!(
        plan.waiting["web"],
        "waits for group \"exporter\" to be running (0 of 1 copies)"
    );
    // Placed copies run at once in this cluster; one is still pulling.
    c.allocs[0].client_status = ClientStatus::Pending;
    let plan = c.run(&j, 2);
    assert_eq!(
        plan.waiting["web"],
        "waits for group \"exporter\" to be running (1 of 2 copies)"
    );
    c.allocs[0].client_status = ClientStatus::Running;
    let plan = c.run(&j, 3);
    assert!(plan.waiting.is_empty());
    assert_eq!(plan.place.iter().filter(|a| a.group == "web").count(), 2);
}
