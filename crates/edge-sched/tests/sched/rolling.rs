//! Rolling updates of service groups: each new copy starts beside the copy
//! it replaces, which stops only once the new one is healthy, at most
//! `max_parallel` on their way at once; an unhealthy copy halts the update.

use crate::common::{Cluster, group, job, node};
use edge_spec::{AllocHealth, Allocation, Job, JobType, UpdatePolicy};

fn cluster() -> Cluster {
    Cluster::new(vec![node("a", 4000, 8000), node("b", 4000, 8000)])
}

fn web(count: u32, max_parallel: Option<u32>) -> Job {
    let mut j = job("web", vec![group("g", count, 100, 100)]);
    j.update = max_parallel.map(|m| UpdatePolicy {
        max_parallel: Some(m),
        ..Default::default()
    });
    j
}

/// The job with its group changed, as a new version.
fn changed(mut j: Job) -> Job {
    j.version += 1;
    let env = &mut j.groups[0].tasks[0].env;
    let n = env.len().to_string();
    env.insert("REVISION".into(), n);
    j
}

fn current<'a>(c: &'a Cluster, j: &Job) -> Vec<&'a Allocation> {
    let hash = j.groups[0].spec_hash();
    let mut v = c.live("web");
    v.retain(|a| a.group_hash == hash);
    v
}

/// Gives every new copy without a verdict the verdict `healthy`.
fn judge(c: &mut Cluster, j: &Job, healthy: bool) -> usize {
    let ids: Vec<String> = current(c, j)
        .iter()
        .filter(|a| a.health.is_none())
        .map(|a| a.id.clone())
        .collect();
    for id in &ids {
        c.alloc_mut(id).health = Some(AllocHealth {
            healthy,
            timestamp: 0,
        });
    }
    ids.len()
}

#[test]
fn rollouts_step_by_max_parallel() {
    // (count, max_parallel (None: no update block), (placed, stopped) per
    // plan until nothing is left to do)
    type Case = (u32, Option<u32>, &'static [(usize, usize)]);
    let cases: &[Case] = &[
        (3, None, &[(1, 0), (1, 1), (1, 1), (0, 1)]),
        (3, Some(1), &[(1, 0), (1, 1), (1, 1), (0, 1)]),
        (3, Some(2), &[(2, 0), (1, 2), (0, 1)]),
        (2, Some(5), &[(2, 0), (0, 2)]),
        (4, Some(0), &[(4, 4)]),
    ];
    for (count, max_parallel, steps) in cases {
        let case = format!("count {count}, max_parallel {max_parallel:?}");
        let mut c = cluster();
        let v0 = web(*count, *max_parallel);
        c.run(&v0, 1);
        let v1 = changed(v0);
        let mut got = Vec::new();
        for seed in 2..20 {
            let plan = c.run(&v1, seed);
            if plan.place.is_empty() && plan.stop.is_empty() {
                break;
            }
            got.push((plan.place.len(), plan.stop.len()));
            // Never below count: an old copy stops only for a healthy new one.
            if max_parallel != &Some(0) {
                let serving = c.live("web").len();
                assert!(serving >= *count as usize, "{case}: {serving} live");
            }
            judge(&mut c, &v1, true);
        }
        assert_eq!(got, *steps, "{case}");
        let done = current(&c, &v1);
        assert_eq!(done.len(), *count as usize, "{case}: all new");
        assert_eq!(c.live("web").len(), *count as usize, "{case}: no old left");
    }
}

#[test]
fn a_copy_in_flight_holds_the_next_one() {
    let mut c = cluster();
    let v0 = web(3, Some(1));
    c.run(&v0, 1);
    let v1 = changed(v0);
    let plan = c.run(&v1, 2);
    assert_eq!((plan.place.len(), plan.stop.len()), (1, 0));
    let new = &plan.place[0];
    let old = new.previous_alloc.clone().expect("replaces an old copy");
    assert!(
        c.live("web").iter().any(|a| a.id == old),
        "old copy still runs"
    );
    let plan = c.run(&v1, 3);
    assert!(
        plan.place.is_empty() && plan.stop.is_empty(),
        "waits: {plan:?}"
    );
    assert_eq!(plan.changes["g"].ignore, 3, "one in flight, two waiting");
}

#[test]
fn an_unhealthy_copy_halts_the_rollout_and_old_copies_keep_serving() {
    let mut c = cluster();
    let v0 = web(3, Some(1));
    c.run(&v0, 1);
    let v1 = changed(v0.clone());
    c.run(&v1, 2);
    assert_eq!(judge(&mut c, &v1, false), 1);
    for seed in 3..6 {
        let plan = c.run(&v1, seed);
        assert!(plan.place.is_empty() && plan.stop.is_empty(), "{plan:?}");
    }
    let old_hash = v0.groups[0].spec_hash();
    let old = c
        .live("web")
        .iter()
        .filter(|a| a.group_hash == old_hash)
        .count();
    assert_eq!(old, 3, "every old copy still runs");
    // A fixed version rolls out again, over the failed one.
    let v2 = changed(v1);
    let plan = c.run(&v2, 7);
    assert_eq!(plan.place.len(), 1);
    assert_eq!(plan.stop.len(), 1, "the unhealthy v1 copy goes");
}

#[test]
fn scaling_down_mid_rollout_drops_whole_indexes() {
    let mut c = cluster();
    let v0 = web(3, Some(1));
    c.run(&v0, 1);
    let mut v1 = changed(v0);
    c.run(&v1, 2);
    v1.groups[0].count = 1;
    v1.version += 1;
    let plan = c.run(&v1, 3);
    let left: Vec<u32> = c.live("web").iter().map(|a| a.index).collect();
    assert!(
        left.iter().all(|&i| i == 0),
        "only index 0 is left: {left:?}"
    );
    assert_eq!(plan.changes["g"].stop, 2);
}

#[test]
fn batch_jobs_replace_at_once() {
    let mut c = cluster();
    let mut v0 = web(3, Some(1));
    v0.job_type = JobType::Batch;
    c.run(&v0, 1);
    let v1 = changed(v0);
    let plan = c.run(&v1, 2);
    assert_eq!((plan.place.len(), plan.stop.len()), (3, 3));
}
