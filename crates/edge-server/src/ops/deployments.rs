//! Deployment rules: one per registered version of a service job, what an
//! operator may do to it (promote, pause, resume, fail), and what its end
//! means for the job (a stable version, or a revert to the last one).

use super::{Env, by_prefix, evals, jobs};
use crate::ServerError;
use edge_spec::{
    AllocHealth, DESC_FAILED_BY_USER, DESC_PAUSED, DESC_RUNNING, Deployment, DeploymentStatus,
    HealthCheck, Job, TriggeredBy, Update,
};
use edge_store::{Batch, State};

/// Cancels the active deployment of the job under `job_key`, if any, for
/// `why`.
pub(crate) fn cancel_active(s: &State, env: &Env, job_key: &str, why: &str, batch: &mut Batch) {
    for d in s.job_deployments(job_key) {
        if d.status.is_active() {
            let mut d = d.clone();
            d.status = DeploymentStatus::Cancelled;
            d.status_description = why.to_string();
            d.modify_time = env.now;
            batch.deployments.push(d);
        }
    }
}

/// Starts the deployment of a newly registered version, over whatever
/// deployment the job had running.
pub(crate) fn start(s: &State, env: &mut Env, job: &Job, batch: &mut Batch) -> Option<String> {
    let key = job.key();
    cancel_active(s, env, &key, edge_spec::DESC_NEWER_VERSION, batch);
    let d = edge_sched::new_deployment(job, env.id(), env.now, &s.job_allocs(&key))?;
    let id = d.id.clone();
    batch.deployments.push(d);
    Some(id)
}

/// Records a deployment the scheduler or an operator moved on, and acts on
/// its end: a successful one makes its version stable, a failed one with
/// `auto_revert` registers the job's newest stable version again.
pub(crate) fn record(s: &State, env: &mut Env, mut d: Deployment, batch: &mut Batch) {
    let was = s.deployments.get(&d.id).map(|o| o.status);
    if d.status == DeploymentStatus::Successful
        && was != Some(DeploymentStatus::Successful)
        && let Some(job) = s
            .jobs
            .get(&d.job_key())
            .filter(|j| j.version == d.job_version && !j.stable)
    {
        let mut job = job.clone();
        job.stable = true;
        batch.jobs.push(job);
    }
    let reverts = d.groups.values().any(|g| g.auto_revert);
    if d.status == DeploymentStatus::Failed && was != Some(DeploymentStatus::Failed) && reverts {
        revert(s, env, &mut d, batch);
    }
    batch.deployments.retain(|o| o.id != d.id);
    batch.deployments.push(d);
}

fn revert(s: &State, env: &mut Env, d: &mut Deployment, batch: &mut Batch) {
    let current = s
        .jobs
        .get(&d.job_key())
        .filter(|j| j.version == d.job_version && !j.stop);
    let stable = s
        .stable
        .get(&d.job_key())
        .filter(|j| j.version < d.job_version);
    let (Some(current), Some(stable)) = (current, stable) else {
        d.status_description
            .push_str("; no stable version of the job to roll back to");
        return;
    };
    let mut job = stable.clone();
    job.stable = false;
    // The failed version's `rollback` pace, group's over job's, replaces
    // the stable version's own for the way back.
    let job_pace = current.update.as_ref().and_then(|u| u.rollback.as_ref());
    for g in &mut job.groups {
        let pace = current
            .group(&g.name)
            .and_then(|c| c.update.as_ref())
            .and_then(|u| u.rollback.as_ref())
            .or(job_pace);
        if let Some(p) = pace {
            let stable_rules = g.update.as_ref().or(stable.update.as_ref());
            g.update = Some(p.over(stable_rules));
        }
    }
    match jobs::register(s, env, job, TriggeredBy::JobRevert, None) {
        Ok((b, resp)) => {
            d.status_description.push_str(&format!(
                "; rolling back to job version {} as version {}",
                stable.version, resp.version
            ));
            merge(batch, b);
        }
        Err(e) => d.status_description.push_str(&format!(
            "; rollback to version {} failed: {e}",
            stable.version
        )),
    }
}

fn merge(into: &mut Batch, b: Batch) {
    into.jobs.extend(b.jobs);
    into.evals.extend(b.evals);
    into.deployments.extend(b.deployments);
}

/// The deployment `id` (or unique prefix) names, active.
fn active<'a>(s: &'a State, id: &str, action: &str) -> Result<&'a Deployment, ServerError> {
    let d = by_prefix("deployment", id, s.deployments.iter())?;
    if !d.status.is_active() {
        return Err(ServerError::Conflict(format!(
            "deployment {} is {}; only a running deployment can be {action}",
            d.short_id(),
            d.status.as_str()
        )));
    }
    Ok(d)
}

/// Restarts the progress deadline of every group from now.
fn restart_deadlines(d: &mut Deployment, now: i64) {
    for g in d.groups.values_mut() {
        if g.progress_deadline_ms > 0 {
            let allowed = i64::try_from(g.progress_deadline_ms).unwrap_or(i64::MAX);
            g.require_progress_by = now.saturating_add(allowed);
        }
    }
}

/// Promotes the canaries of `groups` (every group with canaries if empty),
/// each only once all its canaries are healthy.
pub(crate) fn promote(
    s: &State,
    env: &mut Env,
    id: &str,
    groups: &[String],
) -> Result<(Batch, Deployment, String), ServerError> {
    let stored = active(s, id, "promoted")?;
    if stored.status == DeploymentStatus::Paused {
        return Err(ServerError::Conflict(format!(
            "deployment {} is paused; resume it before promoting",
            stored.short_id()
        )));
    }
    let mut d = stored.clone();
    for name in groups {
        if !d.groups.contains_key(name) {
            return Err(ServerError::BadRequest(format!(
                "deployment {} has no group {name:?}",
                d.short_id()
            )));
        }
    }
    let allocs = s.job_allocs(&d.job_key());
    let mut promoted = 0;
    for (name, g) in d.groups.iter_mut() {
        if (!groups.is_empty() && !groups.contains(name)) || g.desired_canaries == 0 || g.promoted {
            continue;
        }
        let canaries: Vec<_> = allocs
            .iter()
            .filter(|a| a.canary && a.is_live() && a.deployment_id.as_deref() == Some(&stored.id))
            .filter(|a| &a.group == name)
            .collect();
        let healthy = canaries
            .iter()
            .filter(|a| a.health.is_some_and(|h| h.healthy))
            .count();
        if canaries.is_empty() || healthy < canaries.len() {
            return Err(ServerError::Conflict(format!(
                "group {name:?} has {healthy} of {} canaries healthy; promote once all are",
                canaries.len().max(g.desired_canaries as usize)
            )));
        }
        g.promoted = true;
        promoted += 1;
    }
    if promoted == 0 {
        return Err(ServerError::BadRequest(format!(
            "deployment {} has no canaries waiting for promotion",
            d.short_id()
        )));
    }
    d.status = DeploymentStatus::Running;
    d.status_description = DESC_RUNNING.to_string();
    d.modify_time = env.now;
    restart_deadlines(&mut d, env.now);
    Ok(with_eval(s, env, d))
}

/// Pauses a deployment (no new copy replaces an old one) or resumes it.
pub(crate) fn pause(
    s: &State,
    env: &mut Env,
    id: &str,
    pause: bool,
) -> Result<(Batch, Deployment, Option<String>), ServerError> {
    let stored = active(s, id, if pause { "paused" } else { "resumed" })?;
    let mut d = stored.clone();
    d.modify_time = env.now;
    if pause {
        d.status = DeploymentStatus::Paused;
        d.status_description = DESC_PAUSED.to_string();
        let mut batch = Batch::default();
        batch.deployments.push(d.clone());
        return Ok((batch, d, None));
    }
    if stored.status != DeploymentStatus::Paused {
        return Err(ServerError::Conflict(format!(
            "deployment {} is {}, not paused",
            d.short_id(),
            d.status.as_str()
        )));
    }
    d.status = DeploymentStatus::Running;
    d.status_description = DESC_RUNNING.to_string();
    restart_deadlines(&mut d, env.now);
    let (batch, d, eval) = with_eval(s, env, d);
    Ok((batch, d, Some(eval)))
}

/// Marks a deployment failed; with `auto_revert`, the job's newest stable
/// version is registered again.
pub(crate) fn fail(
    s: &State,
    env: &mut Env,
    id: &str,
) -> Result<(Batch, Deployment, String), ServerError> {
    let mut d = active(s, id, "failed")?.clone();
    d.status = DeploymentStatus::Failed;
    d.status_description = DESC_FAILED_BY_USER.to_string();
    d.modify_time = env.now;
    Ok(with_eval(s, env, d))
}

/// An operator's verdicts on copies of a deployment whose groups use
/// `health_check = "manual"`: each named copy must be one it placed, live,
/// and not judged yet; every one is checked before any is recorded. None
/// named changes nothing.
pub(crate) fn set_health(
    s: &State,
    env: &mut Env,
    id: &str,
    healthy: &[String],
    unhealthy: &[String],
) -> Result<(Batch, Deployment, Option<String>), ServerError> {
    let stored = active(s, id, "given verdicts")?;
    if healthy.is_empty() && unhealthy.is_empty() {
        return Ok((Batch::default(), stored.clone(), None));
    }
    let job = s.jobs.get(&stored.job_key());
    let mut d = stored.clone();
    let mut batch = Batch::default();
    let verdicts = healthy
        .iter()
        .map(|a| (a, true))
        .chain(unhealthy.iter().map(|a| (a, false)));
    for (alloc_id, ok) in verdicts {
        let a = by_prefix("allocation", alloc_id, s.allocs.iter())?;
        if a.deployment_id.as_deref() != Some(stored.id.as_str()) {
            return Err(ServerError::BadRequest(format!(
                "allocation {} was not placed by deployment {}",
                a.short_id(),
                stored.short_id()
            )));
        }
        let manual = job
            .and_then(|j| Some(Update::resolve(j, j.group(&a.group)?)))
            .is_some_and(|u| u.health_check == HealthCheck::Manual);
        if !manual {
            return Err(ServerError::BadRequest(format!(
                "group {:?} is judged by its agents; only health_check = \"manual\" takes verdicts by hand",
                a.group
            )));
        }
        if !a.is_live() || a.health.is_some() || batch.allocs.iter().any(|b| b.id == a.id) {
            return Err(ServerError::Conflict(format!(
                "allocation {} is {} and cannot be judged again",
                a.short_id(),
                if a.is_live() { "judged" } else { "not running" }
            )));
        }
        let mut a = edge_spec::Allocation::clone(a);
        a.health = Some(AllocHealth {
            healthy: ok,
            timestamp: env.now,
        });
        a.modify_time = env.now;
        if let Some(g) = d.groups.get_mut(&a.group) {
            if ok {
                g.healthy += 1;
            } else {
                g.unhealthy += 1;
            }
        }
        batch.allocs.push(a);
    }
    d.modify_time = env.now;
    let eval = evals::for_job(
        s,
        env,
        (&d.namespace, &d.job_id),
        TriggeredBy::AllocHealth,
        None,
    );
    let eval_id = eval.id.clone();
    batch.evals.push(eval);
    batch.deployments.push(d.clone());
    Ok((batch, d, Some(eval_id)))
}

/// Records `d` and queues an evaluation of its job to act on it; returns
/// `d` as recorded (a revert adds to its description).
fn with_eval(s: &State, env: &mut Env, d: Deployment) -> (Batch, Deployment, String) {
    let mut batch = Batch::default();
    let eval = evals::for_job(
        s,
        env,
        (&d.namespace, &d.job_id),
        TriggeredBy::Deployment,
        None,
    );
    let eval_id = eval.id.clone();
    batch.evals.push(eval);
    let id = d.id.clone();
    record(s, env, d.clone(), &mut batch);
    let recorded = batch
        .deployments
        .iter()
        .find(|x| x.id == id)
        .cloned()
        .unwrap_or(d);
    (batch, recorded, eval_id)
}
