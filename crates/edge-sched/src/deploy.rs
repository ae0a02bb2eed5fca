//! Deployments in a scheduler run: what the job's current deployment lets
//! each group do (canaries before promotion, no replacements while paused or
//! failed), and how the run moves the deployment on from what it sees.

use crate::{Plan, Snapshot};
use edge_spec::{
    Allocation, DESC_AWAITING_PROMOTION, DESC_PROGRESS_DEADLINE, DESC_RUNNING, DESC_SUCCESSFUL,
    Deployment, DeploymentGroup, DeploymentStatus, Job,
};
use std::collections::BTreeMap;

/// What one group's rollout may do in this run.
#[derive(Debug, Default, Clone)]
pub(crate) struct Phase {
    /// The active deployment, stamped on the new copies it places.
    pub deployment: Option<String>,
    /// Paused, failed or cancelled: no new copy replaces an old one.
    pub halted: bool,
    /// Canaries wanted beside the old copies until promotion.
    pub canaries: Option<u32>,
}

impl Phase {
    /// A copy this run may count as healthy without a verdict of its own:
    /// one the active deployment did not place (kept in place from an
    /// earlier version, or older than verdicts), and running.
    pub(crate) fn established(&self, a: &Allocation) -> bool {
        self.deployment.is_some()
            && a.deployment_id != self.deployment
            && a.client_status == edge_spec::ClientStatus::Running
    }
}

/// What a group's reconcile found, for [`advance`].
pub(crate) struct Outcome {
    pub hash: u64,
    /// Nothing is left to roll out: no old copy runs, nothing is to place
    /// and every new copy of the deployment is healthy.
    pub settled: bool,
}

/// The deployment of the job's current version, as this run may change it.
pub(crate) fn current(snap: &Snapshot<'_>, job: &Job) -> Option<Deployment> {
    snap.deployment
        .filter(|d| d.job_key() == job.key() && d.job_version == job.version)
        .cloned()
}

/// The group's phase under `dep`; promotes its canaries here when
/// `auto_promote` is set and every canary is healthy.
pub(crate) fn phase(
    dep: Option<&mut Deployment>,
    group: &str,
    allocs: &[&Allocation],
    hash: u64,
) -> Phase {
    let Some(dep) = dep else {
        return Phase::default();
    };
    let halted = !matches!(
        dep.status,
        DeploymentStatus::Running | DeploymentStatus::AwaitingPromotion
    );
    let deployment = dep.status.is_active().then(|| dep.id.clone());
    let id = dep.id.clone();
    let Some(g) = dep.groups.get_mut(group) else {
        return Phase {
            deployment: None,
            halted,
            canaries: None,
        };
    };
    let mut canaries = (g.desired_canaries > 0 && !g.promoted).then_some(g.desired_canaries);
    if canaries.is_some() && g.auto_promote && !halted && canaries_ready(&id, g, allocs, hash) {
        g.promoted = true;
        canaries = None;
    }
    Phase {
        deployment,
        halted,
        canaries,
    }
}

/// Every canary the group wants is placed and healthy (fewer are wanted
/// when fewer old copies are left to compare them with).
fn canaries_ready(id: &str, g: &DeploymentGroup, allocs: &[&Allocation], hash: u64) -> bool {
    let live = || allocs.iter().filter(|a| a.is_live());
    let old = live().filter(|a| a.group_hash != hash).count();
    let canaries: Vec<&&Allocation> = live()
        .filter(|a| a.canary && a.deployment_id.as_deref() == Some(id))
        .collect();
    let want = (g.desired_canaries as usize).min(old);
    canaries.len() >= want && canaries.iter().all(|a| a.health.is_some_and(|h| h.healthy))
}

/// Recounts the deployment's copies and decides its status: failed when a
/// copy turned unhealthy or no progress came by the deadline, successful
/// once every group settled, awaiting promotion while healthy canaries wait.
pub(crate) fn advance(
    dep: &mut Deployment,
    groups: &BTreeMap<&str, Vec<&Allocation>>,
    outcomes: &BTreeMap<String, Outcome>,
    plan: &mut Plan,
    now: i64,
) {
    let mut unhealthy: Option<String> = None;
    let mut complete = true;
    let mut awaiting = false;
    let mut deadline = false;
    let running = dep.status == DeploymentStatus::Running
        || dep.status == DeploymentStatus::AwaitingPromotion;
    for (name, g) in dep.groups.iter_mut() {
        let stored = groups.get(name.as_str()).map_or(&[][..], Vec::as_slice);
        let mine: Vec<&Allocation> = stored
            .iter()
            .copied()
            .chain(plan.place.iter().filter(|a| &a.group == name))
            .filter(|a| a.deployment_id.as_deref() == Some(dep.id.as_str()))
            .collect();
        g.placed = mine.len() as u32;
        g.healthy = 0;
        g.unhealthy = 0;
        g.placed_canaries.clear();
        let mut latest = dep.create_time;
        for a in &mine {
            match a.health {
                Some(h) if h.healthy => {
                    g.healthy += 1;
                    latest = latest.max(h.timestamp);
                }
                Some(_) => {
                    g.unhealthy += 1;
                    unhealthy.get_or_insert_with(|| {
                        format!(
                            "failed: allocation {} of group {name:?} is unhealthy",
                            a.short_id()
                        )
                    });
                }
                None => {}
            }
            if a.canary {
                g.placed_canaries.push(a.id.clone());
            }
        }
        let outcome = outcomes.get(name);
        let hash = outcome.map_or(0, |o| o.hash);
        let unpromoted = g.desired_canaries > 0 && !g.promoted;
        let waits = unpromoted && canaries_ready(&dep.id, g, stored, hash);
        awaiting |= waits;
        let done = !unpromoted && outcome.is_some_and(|o| o.settled);
        complete &= done;
        if done || waits || !running || g.progress_deadline_ms == 0 {
            continue;
        }
        let allowed = i64::try_from(g.progress_deadline_ms).unwrap_or(i64::MAX);
        let by = g.require_progress_by.max(latest.saturating_add(allowed));
        g.require_progress_by = by;
        if now >= by {
            deadline = true;
        } else {
            plan.followup_at = Some(plan.followup_at.map_or(by, |f| f.min(by)));
        }
    }
    if !running {
        return;
    }
    let (status, description) = if let Some(why) = unhealthy {
        (DeploymentStatus::Failed, why)
    } else if deadline {
        (DeploymentStatus::Failed, DESC_PROGRESS_DEADLINE.to_string())
    } else if complete {
        (DeploymentStatus::Successful, DESC_SUCCESSFUL.to_string())
    } else if awaiting {
        (
            DeploymentStatus::AwaitingPromotion,
            DESC_AWAITING_PROMOTION.to_string(),
        )
    } else {
        (DeploymentStatus::Running, DESC_RUNNING.to_string())
    };
    dep.status = status;
    dep.status_description = description;
}

/// The deployment a newly registered version of `job` rolls out under, or
/// `None` when no group of it deploys (batch and system jobs, or
/// `max_parallel = 0` without canaries). `allocs` are the job's allocations:
/// canaries are only wanted for groups with old copies to compare them with.
pub fn new_deployment(
    job: &Job,
    id: String,
    now: i64,
    allocs: &[&Allocation],
) -> Option<Deployment> {
    let mut groups = BTreeMap::new();
    for group in &job.groups {
        let rules = edge_spec::Update::resolve(job, group);
        // A group on every node rolls node by node, as a system job's;
        // one run to completion is not rolled out.
        if group.system || group.batch || !rules.deploys(job) {
            continue;
        }
        let hash = group.spec_hash();
        let has_old = allocs
            .iter()
            .any(|a| a.group == group.name && a.is_live() && a.group_hash != hash);
        let desired_canaries = if has_old { rules.canary } else { 0 };
        let progress_deadline_ms =
            u64::try_from(rules.progress_deadline.as_millis()).unwrap_or(u64::MAX);
        let allowed = i64::try_from(progress_deadline_ms).unwrap_or(i64::MAX);
        groups.insert(
            group.name.clone(),
            DeploymentGroup {
                desired_total: group.count,
                desired_canaries,
                canary_weight: rules.canary_weight,
                auto_revert: rules.auto_revert,
                auto_promote: rules.auto_promote,
                promoted: desired_canaries == 0,
                progress_deadline_ms,
                require_progress_by: if progress_deadline_ms == 0 {
                    0
                } else {
                    now.saturating_add(allowed)
                },
                ..DeploymentGroup::default()
            },
        );
    }
    if groups.is_empty() {
        return None;
    }
    Some(Deployment {
        id,
        namespace: job.namespace.clone(),
        job_id: job.id.clone(),
        job_version: job.version,
        status: DeploymentStatus::Running,
        status_description: DESC_RUNNING.to_string(),
        groups,
        create_time: now,
        modify_time: now,
        create_index: 0,
        modify_index: 0,
    })
}
