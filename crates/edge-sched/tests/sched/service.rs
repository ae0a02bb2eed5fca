//! Service and batch jobs: counts, updates, lost and draining nodes,
//! reschedules, stop and purge.

use crate::common::{Cluster, group, job, node};
use edge_sched::Algorithm;
use edge_spec::{ClientStatus, JobType, ReschedulePolicy};
use std::collections::BTreeSet;
use std::time::Duration;

fn two_nodes() -> Cluster {
    Cluster::new(vec![node("a", 4000, 8000), node("b", 4000, 8000)])
}

#[test]
fn count_four_on_two_nodes_lands_two_and_two() {
    for algorithm in [Algorithm::Binpack, Algorithm::Spread] {
        for seed in 0..20 {
            let mut c = two_nodes();
            c.config.algorithm = algorithm;
            let j = job("web", vec![group("g", 4, 100, 100)]);
            let plan = c.run(&j, seed);
            assert_eq!(plan.place.len(), 4);
            assert_eq!(c.live_on("web", "a"), 2, "{algorithm:?} seed {seed}");
            assert_eq!(c.live_on("web", "b"), 2, "{algorithm:?} seed {seed}");
        }
    }
}

#[test]
fn placements_carry_the_plan_fields() {
    let c = two_nodes();
    let mut j = job("web", vec![group("g", 2, 100, 200)]);
    j.version = 3;
    let plan = c.plan(&j, 1);
    assert_eq!(plan.eval_id, "eval-1");
    assert_eq!(plan.job_id, "web");
    let names: BTreeSet<_> = plan.place.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["web.g[0]", "web.g[1]"]));
    for a in &plan.place {
        assert_eq!(a.job_version, 3);
        assert_eq!(a.group_hash, j.groups[0].spec_hash());
        assert_eq!(a.eval_id, "eval-1");
        assert_eq!(a.client_status, ClientStatus::Pending);
        assert_eq!((a.resources.cpu, a.resources.memory), (100, 200));
        assert_eq!(a.create_time, c.now);
        assert_eq!(a.node_name, format!("name-{}", a.node_id));
        assert_eq!(a.id.len(), 36);
        assert_eq!((a.create_index, a.modify_index), (0, 0));
    }
    assert_ne!(plan.place[0].id, plan.place[1].id);
    assert_eq!(plan.changes["g"].place, 2);
    assert_eq!(plan.queued["g"], 0);
    assert!(plan.failed.is_empty());
}

#[test]
fn count_up_fills_missing_indexes_and_count_down_stops_highest() {
    let mut c = two_nodes();
    let mut j = job("web", vec![group("g", 3, 100, 100)]);
    c.run(&j, 1);
    j.groups[0].count = 5;
    let plan = c.run(&j, 2);
    let idx: BTreeSet<u32> = plan.place.iter().map(|a| a.index).collect();
    assert_eq!(idx, BTreeSet::from([3, 4]));
    assert_eq!(plan.changes["g"].ignore, 3);

    j.groups[0].count = 2;
    let plan = c.run(&j, 3);
    assert!(plan.place.is_empty());
    assert_eq!(plan.stop.len(), 3);
    assert_eq!(plan.changes["g"].stop, 3);
    let left: BTreeSet<u32> = c.live("web").iter().map(|a| a.index).collect();
    assert_eq!(left, BTreeSet::from([0, 1]));

    let plan = c.plan(&j, 4);
    assert!(plan.is_noop());
    assert_eq!(plan.changes["g"].ignore, 2);
}

#[test]
fn spec_change_with_max_parallel_0_is_destructive_and_version_bump_is_in_place() {
    let mut c = two_nodes();
    let mut j = job("web", vec![group("g", 2, 100, 100)]);
    j.update = Some(edge_spec::UpdatePolicy {
        max_parallel: Some(0),
        ..Default::default()
    });
    c.run(&j, 1);

    j.version = 1;
    j.meta.insert("owner".into(), "ops".into());
    let plan = c.run(&j, 2);
    assert_eq!(plan.in_place.len(), 2);
    assert!(plan.in_place.iter().all(|u| u.job_version == 1));
    assert!(plan.place.is_empty() && plan.stop.is_empty());
    assert_eq!(plan.changes["g"].in_place, 2);

    j.version = 2;
    j.groups[0].tasks[0].env.insert("A".into(), "1".into());
    let old: BTreeSet<String> = c.live("web").iter().map(|a| a.id.clone()).collect();
    let plan = c.run(&j, 3);
    assert_eq!(plan.changes["g"].destructive, 2);
    assert_eq!(plan.stop.len(), 2);
    assert!(plan.stop.iter().all(|s| old.contains(&s.alloc_id)));
    assert_eq!(plan.place.len(), 2);
    for a in &plan.place {
        assert!(old.contains(a.previous_alloc.as_deref().unwrap_or_default()));
        assert_eq!(a.group_hash, j.groups[0].spec_hash());
    }
    let idx: BTreeSet<u32> = plan.place.iter().map(|a| a.index).collect();
    assert_eq!(idx, BTreeSet::from([0, 1]));
}

#[test]
fn lost_allocations_on_a_down_node_are_replaced_elsewhere() {
    let mut c = two_nodes();
    let j = job("web", vec![group("g", 4, 100, 100)]);
    c.run(&j, 1);
    let on_a: BTreeSet<String> = c
        .live("web")
        .iter()
        .filter(|a| a.node_id == "a")
        .map(|a| a.id.clone())
        .collect();
    c.node_mut("a").status = edge_spec::NodeStatus::Down;
    let plan = c.run(&j, 2);
    assert_eq!(plan.changes["g"].lost, 2);
    assert_eq!(plan.stop.len(), 2);
    for s in &plan.stop {
        assert!(on_a.contains(&s.alloc_id));
        assert_eq!(s.client_status, Some(ClientStatus::Lost));
        assert_eq!(s.description, "node down");
    }
    assert_eq!(plan.place.len(), 2);
    assert!(plan.place.iter().all(|a| a.node_id == "b"));
    assert_eq!(c.live_on("web", "b"), 4);
}

#[test]
fn allocations_on_a_vanished_node_are_lost() {
    let mut c = two_nodes();
    let j = job("web", vec![group("g", 2, 100, 100)]);
    c.run(&j, 1);
    c.nodes.retain(|n| n.id != "a");
    let plan = c.run(&j, 2);
    assert_eq!(plan.changes["g"].lost, 1);
    assert_eq!(c.live_on("web", "b"), 2);
}

#[test]
fn draining_node_migrates_and_ineligible_node_keeps() {
    let mut c = Cluster::new(vec![
        node("a", 4000, 8000),
        node("b", 4000, 8000),
        node("c", 4000, 8000),
    ]);
    let j = job("web", vec![group("g", 3, 100, 100)]);
    c.run(&j, 1);
    assert_eq!(c.live_on("web", "a"), 1);
    c.node_mut("a").drain = true;
    c.node_mut("b").eligible = false;
    // The replacement starts first; the old copy serves until it is judged.
    let plan = c.run(&j, 2);
    assert_eq!(plan.changes["g"].migrate, 1);
    assert!(plan.stop.is_empty(), "{plan:?}");
    assert_eq!(plan.place.len(), 1);
    assert_eq!(plan.place[0].node_id, "c");
    assert!(c.run(&j, 3).is_noop(), "waits for the verdict");
    let new = plan.place[0].id.clone();
    c.alloc_mut(&new).health = Some(edge_spec::AllocHealth {
        healthy: true,
        timestamp: 0,
    });
    let plan = c.run(&j, 4);
    assert_eq!(plan.stop.len(), 1);
    assert_eq!(plan.stop[0].description, "node draining");
    assert_eq!(plan.stop[0].client_status, None);
    assert!(plan.place.is_empty());
    assert_eq!(c.live_on("web", "a"), 0);
    assert_eq!(c.live_on("web", "b"), 1);
    assert_eq!(c.live_on("web", "c"), 2);
}

/// `migrate { max_parallel }` bounds the copies of a group moving off a
/// draining node at once; 0 moves them all at once (stop, then start).
#[test]
fn a_drain_moves_copies_by_migrate_max_parallel() {
    // (max_parallel, (placed, stopped) per plan while each replacement is
    // judged healthy after its plan)
    type Case = (u32, &'static [(usize, usize)]);
    let cases: &[Case] = &[
        (1, &[(1, 0), (1, 1), (1, 1), (0, 1)]),
        (2, &[(2, 0), (1, 2), (0, 1)]),
        (0, &[(3, 3)]),
    ];
    for (max_parallel, steps) in cases {
        let mut c = Cluster::new(vec![node("a", 4000, 8000), node("b", 4000, 8000)]);
        let mut g = group("g", 3, 100, 100);
        g.migrate = Some(edge_spec::MigratePolicy {
            max_parallel: Some(*max_parallel),
            ..Default::default()
        });
        let j = job("web", vec![g]);
        c.node_mut("b").eligible = false;
        c.run(&j, 1);
        assert_eq!(c.live_on("web", "a"), 3);
        c.node_mut("a").drain = true;
        c.node_mut("b").eligible = true;
        let mut got = Vec::new();
        for seed in 2..20 {
            let plan = c.run(&j, seed);
            if plan.is_noop() {
                break;
            }
            got.push((plan.place.len(), plan.stop.len()));
            // A replacement beside its draining copy is judged by the
            // group's `migrate` rules; one that replaces a stopped copy
            // (max_parallel 0) is an ordinary placement.
            assert!(
                plan.place
                    .iter()
                    .all(|a| a.migration == (*max_parallel > 0)),
                "max_parallel {max_parallel}: {:?}",
                plan.place.iter().map(|a| a.migration).collect::<Vec<_>>()
            );
            if *max_parallel > 0 {
                assert!(
                    c.live("web").len() >= 3,
                    "max_parallel {max_parallel}: a copy short"
                );
            }
            let ids: Vec<String> = c
                .live("web")
                .iter()
                .filter(|a| a.node_id == "b" && a.health.is_none())
                .map(|a| a.id.clone())
                .collect();
            for id in ids {
                c.alloc_mut(&id).health = Some(edge_spec::AllocHealth {
                    healthy: true,
                    timestamp: 0,
                });
            }
        }
        assert_eq!(&got, steps, "max_parallel {max_parallel}");
        assert_eq!(c.live_on("web", "b"), 3);
    }
}

#[test]
fn batch_complete_allocations_are_never_replaced() {
    let mut c = two_nodes();
    let mut j = job("etl", vec![group("g", 3, 100, 100)]);
    j.job_type = JobType::Batch;
    c.run(&j, 1);
    let done = c
        .live("etl")
        .iter()
        .find(|a| a.index == 1)
        .map(|a| a.id.clone())
        .unwrap_or_default();
    c.alloc_mut(&done).client_status = ClientStatus::Complete;
    let plan = c.run(&j, 2);
    assert!(plan.is_noop(), "{plan:?}");
    assert_eq!(plan.changes["g"].ignore, 2);

    // Lost batch work that had not completed is replaced.
    let lost_node = c.live("etl")[0].node_id.clone();
    let on_it = c.live_on("etl", &lost_node);
    c.node_mut(&lost_node).status = edge_spec::NodeStatus::Down;
    let plan = c.run(&j, 3);
    assert_eq!(plan.changes["g"].lost as usize, on_it);
    assert_eq!(plan.place.len(), on_it);
    assert!(
        plan.place
            .iter()
            .all(|a| a.index != 1 && a.node_id != lost_node)
    );
    assert_eq!(c.live("etl").len(), 2);
}

fn reschedule_job(policy: ReschedulePolicy) -> edge_spec::Job {
    let mut g = group("g", 1, 100, 100);
    g.reschedule = policy;
    job("web", vec![g])
}

#[test]
fn failed_allocation_is_rescheduled_now_when_its_delay_passed() {
    let mut c = two_nodes();
    let j = reschedule_job(ReschedulePolicy {
        attempts: 2,
        interval: Duration::from_secs(3600),
        delay: Duration::from_secs(30),
        unlimited: false,
    });
    c.run(&j, 1);
    let first = c.live("web")[0].id.clone();
    let first_node = c.live("web")[0].node_id.clone();
    c.fail(&first, 31_000);
    let plan = c.run(&j, 2);
    assert_eq!(plan.changes["g"].reschedule_now, 1);
    assert_eq!(plan.place.len(), 1);
    let r = &plan.place[0];
    assert_eq!(r.previous_alloc.as_deref(), Some(first.as_str()));
    assert_eq!(r.reschedule_times, vec![c.now]);
    assert_eq!(r.index, 0);
    assert_ne!(r.node_id, first_node, "prefers another node");
    assert_eq!(plan.stop.len(), 1);
    assert_eq!(plan.stop[0].alloc_id, first);
    assert_eq!(plan.stop[0].description, "rescheduled");
    assert_eq!(plan.followup_at, None);
}

#[test]
fn failed_allocation_within_its_delay_is_rescheduled_later() {
    let mut c = two_nodes();
    let j = reschedule_job(ReschedulePolicy {
        attempts: 2,
        interval: Duration::from_secs(3600),
        delay: Duration::from_secs(30),
        unlimited: false,
    });
    c.run(&j, 1);
    let id = c.live("web")[0].id.clone();
    c.fail(&id, 10_000);
    let plan = c.plan(&j, 2);
    assert!(plan.is_noop(), "{plan:?}");
    assert_eq!(plan.changes["g"].reschedule_later, 1);
    assert_eq!(plan.followup_at, Some(c.now + 20_000));

    c.now += 20_000;
    let plan = c.plan(&j, 3);
    assert_eq!(plan.changes["g"].reschedule_now, 1);
    assert_eq!(plan.followup_at, None);
}

#[test]
fn reschedule_attempts_run_out_within_the_interval() {
    let mut c = two_nodes();
    let j = reschedule_job(ReschedulePolicy {
        attempts: 1,
        interval: Duration::from_secs(3600),
        delay: Duration::ZERO,
        unlimited: false,
    });
    c.run(&j, 1);
    let id = c.live("web")[0].id.clone();
    c.fail(&id, 0);
    let plan = c.run(&j, 2);
    assert_eq!(plan.changes["g"].reschedule_now, 1);
    let second = plan.place[0].id.clone();
    c.fail(&second, 0);
    let plan = c.run(&j, 3);
    assert!(plan.is_noop(), "{plan:?}");
    assert_eq!(plan.changes["g"].reschedule_exhausted, 1);
    assert_eq!(plan.queued["g"], 0);

    // Outside the interval the attempt is available again.
    c.now += 3_700_000;
    let plan = c.plan(&j, 4);
    assert_eq!(plan.changes["g"].reschedule_now, 1);

    // A new version of the group replaces an exhausted failure.
    let mut j2 = j.clone();
    j2.version = 1;
    j2.groups[0].tasks[0].env.insert("FIX".into(), "1".into());
    c.now -= 3_700_000;
    let plan = c.plan(&j2, 5);
    assert_eq!(plan.changes["g"].destructive, 1);
    assert_eq!(plan.place.len(), 1);
    assert!(plan.place[0].reschedule_times.is_empty());
}

#[test]
fn reschedule_without_room_leaves_the_failure_for_later() {
    let mut c = Cluster::new(vec![node("a", 1000, 1000)]);
    let j = reschedule_job(ReschedulePolicy {
        attempts: 0,
        interval: Duration::ZERO,
        delay: Duration::ZERO,
        unlimited: true,
    });
    c.run(&j, 1);
    let id = c.live("web")[0].id.clone();
    c.fail(&id, 0);
    c.node_mut("a").eligible = false;
    let plan = c.plan(&j, 2);
    assert!(plan.stop.is_empty(), "failed alloc kept until replaced");
    assert_eq!(plan.queued["g"], 1);
    assert!(plan.failed.contains_key("g"));
}

#[test]
fn job_stop_and_purge_stop_every_live_allocation() {
    let mut c = two_nodes();
    let mut j = job(
        "web",
        vec![group("g", 3, 100, 100), group("h", 1, 100, 100)],
    );
    c.run(&j, 1);
    c.node_mut("b").status = edge_spec::NodeStatus::Down;
    j.stop = true;
    let plan = c.plan(&j, 2);
    assert_eq!(plan.stop.len(), 4);
    assert!(plan.place.is_empty());
    assert!(plan.stop.iter().all(|s| s.description == "job stopped"));
    let lost = plan
        .stop
        .iter()
        .filter(|s| s.client_status == Some(ClientStatus::Lost))
        .count();
    let on_b = c.live("web").iter().filter(|a| a.node_id == "b").count();
    assert_eq!(lost, on_b);
    let ch = &plan.changes;
    assert_eq!(ch["g"].stop + ch["g"].lost + ch["h"].stop + ch["h"].lost, 4);

    let plan = c.plan_for(None, "web", 3);
    assert_eq!(plan.job_id, "web");
    assert_eq!(plan.stop.len(), 4);
    assert!(plan.stop.iter().all(|s| s.description == "job purged"));
}

#[test]
fn removed_group_is_stopped() {
    let mut c = two_nodes();
    let mut j = job(
        "web",
        vec![group("g", 1, 100, 100), group("old", 2, 100, 100)],
    );
    c.run(&j, 1);
    j.groups.pop();
    let plan = c.run(&j, 2);
    assert_eq!(plan.stop.len(), 2);
    assert_eq!(plan.changes["old"].stop, 2);
    assert_eq!(plan.changes["g"].ignore, 1);
}

#[test]
fn duplicate_indexes_are_stopped() {
    let mut c = two_nodes();
    let j = job("web", vec![group("g", 2, 100, 100)]);
    c.run(&j, 1);
    let mut dup = c.live("web")[0].clone();
    dup.id = "dup".into();
    dup.create_time += 1;
    c.usage.entry(dup.node_id.clone()).or_default().add(&dup);
    c.allocs.push(dup);
    let plan = c.plan(&j, 2);
    assert_eq!(plan.stop.len(), 1);
    assert_eq!(plan.stop[0].alloc_id, "dup");
    assert!(plan.place.is_empty());
}

#[test]
fn same_seed_gives_the_same_plan() {
    let mut nodes = Vec::new();
    for i in 0..50 {
        nodes.push(node(&format!("n{i}"), 2000 + i * 10, 4000));
    }
    let c = Cluster::new(nodes);
    let mut g = group("g", 40, 300, 200);
    g.network.ports.push(crate::common::dynamic_port("http"));
    let j = job("web", vec![g]);
    let a = c.plan(&j, 42);
    let b = c.plan(&j, 42);
    assert_eq!(a, b);
    let other = c.plan(&j, 43);
    assert_ne!(a.place[0].id, other.place[0].id);
}

#[test]
fn huge_count_places_what_fits_and_queues_the_rest() {
    let c = two_nodes();
    let plan = c.plan(&job("web", vec![group("g", 2_000_000_000, 1000, 1000)]), 1);
    assert_eq!(plan.place.len(), 8);
    assert_eq!(plan.queued["g"], 2_000_000_000 - 8);
    assert_eq!(plan.failed["g"].coalesced_failures, 2_000_000_000 - 9);
    assert_eq!(plan.failed["g"].dimension_exhausted.get("cpu"), Some(&2));
}
