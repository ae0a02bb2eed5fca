//! What an agent's report of its allocations changes.

use super::{Env, evals};
use crate::ServerError;
use edge_api::AllocUpdate;
use edge_spec::{
    Allocation, ClientStatus, DependCondition, Deployment, DesiredStatus, TriggeredBy,
};
use edge_store::{Batch, State};
use std::collections::{BTreeMap, BTreeSet};

/// Applies `node_id`'s report. An id the server does not know refuses the
/// whole report, naming every such id (the agent then drops them rather
/// than being told all went well); an allocation of another node is a bad
/// request. A lost allocation stays lost (it was replaced) and only takes
/// the task states. A copy that fails while it should run is evaluated for
/// rescheduling, one judged healthy or unhealthy for its job's rolling
/// update, and one that ends frees room for blocked evaluations.
pub(crate) fn update(
    s: &State,
    env: &mut Env,
    node_id: &str,
    updates: Vec<AllocUpdate>,
) -> Result<Batch, ServerError> {
    if !s.nodes.contains_key(node_id) {
        return Err(ServerError::not_found("node", node_id));
    }
    let mut known = Vec::with_capacity(updates.len());
    let mut unknown = Vec::new();
    for u in updates {
        match s.allocs.get(&u.id) {
            None => unknown.push(u.id),
            Some(a) if a.node_id != node_id => {
                return Err(ServerError::BadRequest(format!(
                    "allocation {:?} belongs to another node",
                    u.id
                )));
            }
            Some(a) => known.push((a, u)),
        }
    }
    if !unknown.is_empty() {
        return Err(ServerError::UnknownAllocs(unknown));
    }
    let mut batch = Batch::default();
    let mut freed = false;
    let mut deployments: BTreeMap<String, Deployment> = BTreeMap::new();
    // Jobs already evaluated for a group waiting on another: one
    // evaluation per report is enough.
    let mut waited = BTreeSet::new();
    for (a, u) in known {
        let mut a = Allocation::clone(a);
        a.task_states = u.task_states;
        a.modify_time = env.now;
        if a.client_status == ClientStatus::Lost {
            batch.allocs.push(a);
            continue;
        }
        let became_failed =
            u.client_status == ClientStatus::Failed && a.client_status != ClientStatus::Failed;
        // A verdict is given once. It matters to the scheduler only for a
        // copy started beside the one it replaces (a rolling update): then
        // it moves the update on or halts it. Any other copy's verdict
        // queues nothing, or every new copy would cost an evaluation.
        let judged = a.health.is_none() && u.health.is_some();
        if judged {
            a.health = u.health;
        }
        let rolling = judged
            && a.previous_alloc
                .as_ref()
                .and_then(|p| s.allocs.get(p))
                .is_some_and(|p| p.is_live());
        // The deployment counts the verdict at once; its scheduler run
        // waits for the verdict that can end it: an unhealthy one, or the
        // last one of the copies it placed.
        let ends_deployment = judged && count_verdict(s, &mut deployments, &a);
        // A system job's replacement (or a `system = true` group's) takes
        // its old copy's place on the node, so that copy is gone; its
        // verdict moves the rollout on.
        let system_rollout = judged
            && a.previous_alloc.is_some()
            && s.jobs.get(&a.job_key()).is_some_and(|j| {
                j.job_type == edge_spec::JobType::System
                    || j.group(&a.group).is_some_and(|g| g.system)
            });
        let moved = u.client_status != a.client_status || u.checks != a.checks;
        freed |= u.client_status.is_terminal() && !a.client_status.is_terminal();
        a.client_status = u.client_status;
        a.client_description = u.client_description;
        a.checks = u.checks;
        a.address = u.address;
        a.networks = u.networks;
        if a.desired_status == DesiredStatus::Run {
            let trigger = if became_failed {
                Some(TriggeredBy::AllocFailure)
            } else if rolling || ends_deployment || system_rollout {
                Some(TriggeredBy::AllocHealth)
            } else {
                (moved
                    && matches!(
                        a.client_status,
                        ClientStatus::Running | ClientStatus::Complete
                    )
                    && awaited(s, &a)
                    && waited.insert(a.job_key()))
                .then_some(TriggeredBy::Dependency)
            };
            if let Some(t) = trigger {
                batch.evals.push(evals::for_job(
                    s,
                    env,
                    (&a.namespace, &a.job_id),
                    t,
                    Some(node_id),
                ));
            }
        }
        batch.allocs.push(a);
    }
    if freed {
        batch.evals.extend(evals::unblock(s, env));
    }
    for mut d in deployments.into_values() {
        d.modify_time = env.now;
        batch.deployments.push(d);
    }
    Ok(batch)
}

/// Whether a group of `a`'s job waits for `a`'s group (`depends_on`) and
/// has no live copy yet, so that `a` starting, passing its checks or
/// completing may let the scheduler place it.
fn awaited(s: &State, a: &Allocation) -> bool {
    let key = a.job_key();
    let Some(job) = s.jobs.get(&key) else {
        return false;
    };
    let mut waiting = job
        .groups
        .iter()
        .filter(|g| {
            g.depends_on.iter().any(|d| {
                d.group == a.group
                    && (a.client_status == ClientStatus::Complete)
                        == (d.condition == DependCondition::Completed)
            })
        })
        .peekable();
    if waiting.peek().is_none() {
        return false;
    }
    let allocs = s.job_allocs(&key);
    waiting.any(|g| !allocs.iter().any(|x| x.group == g.name && x.is_live()))
}

/// Adds `a`'s verdict to its active deployment's counts; true when the
/// verdict may end the deployment.
fn count_verdict(s: &State, changed: &mut BTreeMap<String, Deployment>, a: &Allocation) -> bool {
    let (Some(id), Some(health)) = (a.deployment_id.as_ref(), a.health) else {
        return false;
    };
    let Some(stored) = s.deployments.get(id).filter(|d| d.status.is_active()) else {
        return false;
    };
    let d = changed.entry(id.clone()).or_insert_with(|| stored.clone());
    let Some(g) = d.groups.get_mut(&a.group) else {
        return false;
    };
    if health.healthy {
        g.healthy += 1;
    } else {
        g.unhealthy += 1;
    }
    !health.healthy || g.healthy + g.unhealthy >= g.placed
}
