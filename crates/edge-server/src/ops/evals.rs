//! Evaluations: what a change queues for the scheduler, and blocked ones
//! trying again when capacity or nodes change.

use super::Env;
use edge_spec::{ClientStatus, EvalStatus, Evaluation, JobType, TriggeredBy};
use edge_store::State;
use std::collections::BTreeMap;

/// A pending evaluation of job `job_id` in `namespace`; a job no longer
/// stored (purged) gets the default priority.
pub(crate) fn for_job(
    s: &State,
    env: &mut Env,
    (namespace, job_id): (&str, &str),
    trigger: TriggeredBy,
    node: Option<&str>,
) -> Evaluation {
    let priority = s
        .jobs
        .get(&edge_spec::job_key(namespace, job_id))
        .map_or_else(edge_spec::default_priority, |j| j.priority);
    new(env, (namespace, job_id), priority, trigger, node)
}

pub(crate) fn new(
    env: &mut Env,
    (namespace, job_id): (&str, &str),
    priority: u8,
    trigger: TriggeredBy,
    node: Option<&str>,
) -> Evaluation {
    Evaluation {
        id: env.id(),
        namespace: namespace.to_string(),
        job_id: job_id.to_string(),
        priority,
        triggered_by: trigger,
        status: EvalStatus::Pending,
        status_description: String::new(),
        node_id: node.map(str::to_string),
        failed_tg_allocs: BTreeMap::new(),
        queued_allocations: BTreeMap::new(),
        wait_until: 0,
        create_time: env.now,
        modify_time: env.now,
        create_index: 0,
        modify_index: 0,
    }
}

/// One evaluation for every job with live (or still running) allocations
/// on `node_id`.
pub(crate) fn for_node(
    s: &State,
    env: &mut Env,
    node_id: &str,
    trigger: TriggeredBy,
) -> Vec<Evaluation> {
    let mut jobs: Vec<(&str, &str)> = s
        .node_allocs(node_id)
        .iter()
        .filter(|a| a.is_live() || a.client_status == ClientStatus::Running)
        .map(|a| (a.namespace.as_str(), a.job_id.as_str()))
        .collect();
    jobs.sort_unstable();
    jobs.dedup();
    jobs.into_iter()
        .map(|j| for_job(s, env, j, trigger, Some(node_id)))
        .collect()
}

/// Every blocked evaluation, pending again: capacity or nodes changed.
pub(crate) fn unblock(s: &State, env: &Env) -> Vec<Evaluation> {
    s.open_evals
        .iter()
        .filter_map(|id| s.evals.get(id))
        .filter(|e| e.status == EvalStatus::Blocked)
        .map(|e| Evaluation {
            status: EvalStatus::Pending,
            status_description: "capacity changed".to_string(),
            modify_time: env.now,
            ..e.clone()
        })
        .collect()
}

/// System jobs, and service jobs with a group on every node (`system =
/// true`), must run on a node that joins or comes back.
pub(crate) fn system_jobs(s: &State, env: &mut Env, node_id: &str) -> Vec<Evaluation> {
    s.jobs
        .values()
        .filter(|j| {
            !j.stop
                && (j.job_type == JobType::System
                    || j.job_type == JobType::Service && j.groups.iter().any(|g| g.system))
        })
        .map(|j| {
            new(
                env,
                (&j.namespace, &j.id),
                j.priority,
                TriggeredBy::NodeUpdate,
                Some(node_id),
            )
        })
        .collect()
}

/// What a node that becomes ready (joins, comes back, is made eligible or
/// undrained) queues: blocked evaluations again, and its system jobs.
pub(crate) fn node_ready(s: &State, env: &mut Env, node_id: &str) -> Vec<Evaluation> {
    let mut evals = unblock(s, env);
    evals.extend(system_jobs(s, env, node_id));
    evals
}
