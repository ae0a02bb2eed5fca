//! Deployments through the scheduler, inputs to plan: a version succeeds
//! once every new copy is healthy, fails on an unhealthy copy or a missed
//! progress deadline, and canaries wait for promotion (or promote
//! themselves) while the old copies keep serving.

use crate::common::{Cluster, group, job, node};
use edge_spec::{AllocHealth, Allocation, DeploymentStatus, Job, JobType, UpdatePolicy};
use std::time::Duration;

fn cluster() -> Cluster {
    Cluster::new(vec![node("a", 4000, 8000), node("b", 4000, 8000)])
}

fn web(count: u32, update: UpdatePolicy) -> Job {
    let mut j = job("web", vec![group("g", count, 100, 100)]);
    j.update = Some(update);
    j
}

fn changed(mut j: Job) -> Job {
    j.version += 1;
    let env = &mut j.groups[0].tasks[0].env;
    let n = env.len().to_string();
    env.insert("REVISION".into(), n);
    j
}

fn live_of<'a>(c: &'a Cluster, j: &Job) -> Vec<&'a Allocation> {
    let hash = j.groups[0].spec_hash();
    let mut v = c.live("web");
    v.retain(|a| a.group_hash == hash);
    v
}

/// Gives every copy of `j` without a verdict the verdict `healthy`, now.
fn judge(c: &mut Cluster, j: &Job, healthy: bool) -> usize {
    let ids: Vec<String> = live_of(c, j)
        .iter()
        .filter(|a| a.health.is_none())
        .map(|a| a.id.clone())
        .collect();
    let timestamp = c.now;
    for id in &ids {
        c.alloc_mut(id).health = Some(AllocHealth { healthy, timestamp });
    }
    ids.len()
}

fn status(c: &Cluster) -> DeploymentStatus {
    c.deployment.as_ref().expect("a deployment").status
}

/// Registers and runs a version until its deployment stops moving, judging
/// new copies healthy after each plan; returns (placed, stopped) per plan.
fn roll(c: &mut Cluster, j: &Job) -> Vec<(usize, usize)> {
    c.register(j);
    let mut steps = Vec::new();
    // Seeds make allocation ids: each version gets its own.
    for seed in (0..30).map(|s| s + 100 * j.version) {
        let plan = c.run(j, seed);
        if !plan.place.is_empty() || !plan.stop.is_empty() {
            steps.push((plan.place.len(), plan.stop.len()));
        }
        if judge(c, j, true) == 0 && plan.place.is_empty() && plan.stop.is_empty() {
            break;
        }
    }
    steps
}

fn deployed(c: &mut Cluster, count: u32, update: UpdatePolicy) -> Job {
    let v0 = web(count, update);
    roll(c, &v0);
    assert_eq!(status(c), DeploymentStatus::Successful);
    v0
}

#[test]
fn a_version_succeeds_once_every_new_copy_is_healthy() {
    let mut c = cluster();
    let v0 = web(3, UpdatePolicy::default());
    c.register(&v0);
    let plan = c.run(&v0, 1);
    assert_eq!(plan.place.len(), 3);
    assert!(
        plan.place
            .iter()
            .all(|a| a.deployment_id.as_deref() == Some("dep-0")),
        "{plan:?}"
    );
    let d = plan.deployment.expect("the run records the placements");
    assert_eq!((d.groups["g"].placed, d.groups["g"].healthy), (3, 0));
    assert_eq!(d.status, DeploymentStatus::Running);
    judge(&mut c, &v0, true);
    let plan = c.run(&v0, 2);
    let d = plan.deployment.expect("the verdicts change it");
    assert_eq!(d.status, DeploymentStatus::Successful, "{d:?}");
    assert_eq!(d.groups["g"].healthy, 3);

    let v1 = changed(v0);
    let steps = roll(&mut c, &v1);
    assert_eq!(steps, vec![(1, 0), (1, 1), (1, 1), (0, 1)]);
    let d = c.deployment.clone().unwrap();
    assert_eq!((d.job_version, d.status), (1, DeploymentStatus::Successful));
    assert_eq!((d.groups["g"].placed, d.groups["g"].healthy), (3, 3));
    assert_eq!(live_of(&c, &v1).len(), 3);
}

#[test]
fn an_unhealthy_copy_fails_the_deployment_and_old_copies_keep_serving() {
    let mut c = cluster();
    let v0 = deployed(&mut c, 3, UpdatePolicy::default());
    let v1 = changed(v0.clone());
    c.register(&v1);
    c.run(&v1, 1000 + 1);
    judge(&mut c, &v1, false);
    let plan = c.run(&v1, 1000 + 2);
    let d = plan.deployment.expect("failed");
    assert_eq!(d.status, DeploymentStatus::Failed);
    assert!(d.status_description.contains("unhealthy"), "{d:?}");
    assert_eq!(d.groups["g"].unhealthy, 1);
    for seed in 3..6 {
        let plan = c.run(&v1, 1000 + seed);
        assert!(plan.place.is_empty() && plan.stop.is_empty(), "{plan:?}");
    }
    assert_eq!(live_of(&c, &v0).len(), 3, "every old copy still runs");
}

#[test]
fn no_progress_by_the_deadline_fails_the_deployment() {
    let mut c = cluster();
    let update = UpdatePolicy {
        progress_deadline: Some(edge_spec::duration::PolicyWait(Duration::from_secs(600))),
        ..UpdatePolicy::default()
    };
    let v0 = deployed(&mut c, 2, update);
    let v1 = changed(v0);
    c.register(&v1);
    let plan = c.run(&v1, 1000 + 1);
    let by = c.now + 600_000;
    assert_eq!(plan.followup_at, Some(by), "a follow-up at the deadline");
    c.now = by - 1;
    let plan = c.run(&v1, 1000 + 2);
    assert!(
        plan.deployment
            .is_none_or(|d| d.status == DeploymentStatus::Running)
    );
    c.now = by;
    let plan = c.run(&v1, 1000 + 3);
    let d = plan.deployment.expect("deadline passed");
    assert_eq!(d.status, DeploymentStatus::Failed);
    assert_eq!(d.status_description, edge_spec::DESC_PROGRESS_DEADLINE);
}

#[test]
fn canaries_wait_for_promotion_beside_the_old_copies() {
    // (count, canaries, auto_promote)
    for (count, canary, auto_promote) in [(4, 1, false), (4, 4, false), (3, 2, true)] {
        let case = format!("count {count}, canary {canary}, auto_promote {auto_promote}");
        let mut c = cluster();
        let update = UpdatePolicy {
            max_parallel: Some(1),
            canary: Some(canary),
            canary_weight: Some(20),
            auto_promote: Some(auto_promote),
            ..UpdatePolicy::default()
        };
        let v0 = deployed(&mut c, count, update);
        assert_eq!(
            c.deployment.as_ref().unwrap().groups["g"].desired_canaries,
            0,
            "{case}: no canaries on a first version"
        );
        let v1 = changed(v0.clone());
        c.register(&v1);
        let plan = c.run(&v1, 1000 + 1);
        assert_eq!(plan.place.len(), canary as usize, "{case}");
        assert!(plan.stop.is_empty(), "{case}: {plan:?}");
        assert!(plan.place.iter().all(|a| a.canary), "{case}");
        assert_eq!(plan.changes["g"].canary, canary, "{case}");
        judge(&mut c, &v1, true);
        let plan = c.run(&v1, 1000 + 2);
        let d = c.deployment.clone().unwrap();
        if auto_promote {
            assert!(d.groups["g"].promoted, "{case}: {d:?}");
            assert_eq!(
                plan.stop.len(),
                canary as usize,
                "{case}: olds of the canaries stop"
            );
        } else {
            assert!(
                plan.place.is_empty() && plan.stop.is_empty(),
                "{case}: {plan:?}"
            );
            assert_eq!(d.status, DeploymentStatus::AwaitingPromotion, "{case}");
            assert_eq!(d.groups["g"].placed_canaries.len(), canary as usize);
            assert_eq!(d.groups["g"].weighted_canaries(), Some(20));
            assert_eq!(
                live_of(&c, &v0).len(),
                count as usize,
                "{case}: old copies untouched"
            );
            // What `edge deployment promote` does.
            let d = c.deployment.as_mut().unwrap();
            d.groups.get_mut("g").unwrap().promoted = true;
            d.status = DeploymentStatus::Running;
        }
        for seed in 3..30 {
            let plan = c.run(&v1, 1000 + seed);
            if judge(&mut c, &v1, true) == 0 && plan.place.is_empty() && plan.stop.is_empty() {
                break;
            }
        }
        let d = c.deployment.clone().unwrap();
        assert_eq!(d.status, DeploymentStatus::Successful, "{case}: {d:?}");
        assert_eq!(d.groups["g"].weighted_canaries(), None, "{case}");
        assert_eq!(live_of(&c, &v1).len(), count as usize, "{case}");
        assert!(live_of(&c, &v0).is_empty(), "{case}: old copies gone");
    }
}

#[test]
fn blue_green_promotion_stops_every_old_copy_at_once() {
    let mut c = cluster();
    let update = UpdatePolicy {
        canary: Some(3),
        ..UpdatePolicy::default()
    };
    let v0 = deployed(&mut c, 3, update);
    let v1 = changed(v0);
    c.register(&v1);
    assert_eq!(c.run(&v1, 1000 + 1).place.len(), 3);
    judge(&mut c, &v1, true);
    c.run(&v1, 1000 + 2);
    let d = c.deployment.as_mut().unwrap();
    d.groups.get_mut("g").unwrap().promoted = true;
    d.status = DeploymentStatus::Running;
    let plan = c.run(&v1, 1000 + 3);
    assert_eq!((plan.place.len(), plan.stop.len()), (0, 3));
    assert_eq!(
        plan.deployment.unwrap().status,
        DeploymentStatus::Successful
    );
}

#[test]
fn a_paused_deployment_starts_no_new_copy() {
    let mut c = cluster();
    let v0 = deployed(&mut c, 3, UpdatePolicy::default());
    let v1 = changed(v0);
    c.register(&v1);
    c.run(&v1, 1000 + 1);
    judge(&mut c, &v1, true);
    c.deployment.as_mut().unwrap().status = DeploymentStatus::Paused;
    let plan = c.run(&v1, 1000 + 2);
    assert!(plan.place.is_empty(), "paused: {plan:?}");
    assert_eq!(plan.stop.len(), 1, "the healthy copy's old one still goes");
    assert_eq!(status(&c), DeploymentStatus::Paused);
    c.deployment.as_mut().unwrap().status = DeploymentStatus::Running;
    assert_eq!(c.run(&v1, 1000 + 3).place.len(), 1, "resumed");
}

#[test]
fn jobs_that_do_not_roll_out_get_no_deployment() {
    let allocs = [];
    let mut batch = web(2, UpdatePolicy::default());
    batch.job_type = JobType::Batch;
    let all_at_once = web(
        2,
        UpdatePolicy {
            max_parallel: Some(0),
            ..UpdatePolicy::default()
        },
    );
    for j in [batch, all_at_once] {
        assert!(edge_sched::new_deployment(&j, "d".into(), 0, &allocs).is_none());
    }
    let d = edge_sched::new_deployment(&web(2, UpdatePolicy::default()), "d".into(), 5, &allocs)
        .expect("a service job deploys");
    assert_eq!(d.groups["g"].desired_total, 2);
    assert_eq!(d.groups["g"].require_progress_by, 5 + 600_000);
}
