//! Job rules: checking a submitted job, registering it as a version,
//! stopping or purging it, and the status it shows.

use super::{Env, deployments, evals};
use crate::ServerError;
use edge_api::JobRegisterResponse;
use edge_spec::{ClientStatus, DriverConfigs, Job, JobStatus, TriggeredBy};
use edge_store::{Batch, State};

/// A submitted job as it will be stored: named after its id when unnamed,
/// valid for the server's drivers, and its `meta` handed down to each
/// group beneath the group's own. Tasks see their group's meta, as in
/// Nomad, and a change of the job's meta then changes the groups' hash,
/// so running copies are replaced rather than left with old values.
pub(crate) fn prepare(mut job: Job, drivers: &DriverConfigs) -> Result<Job, ServerError> {
    if job.name.is_empty() {
        job.name = job.id.clone();
    }
    let diags = edge_spec::validate_with(&job, drivers);
    if diags.is_empty() {
        hand_down_meta(&mut job);
        return Ok(job);
    }
    let msg: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    Err(ServerError::BadRequest(format!(
        "invalid job: {}",
        msg.join("; ")
    )))
}

/// Puts the job's `meta` in each group beneath the group's own: tasks see
/// their group's meta, and the groups' hash then covers the job's.
pub(crate) fn hand_down_meta(job: &mut Job) {
    for g in &mut job.groups {
        for (k, v) in &job.meta {
            g.meta.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

/// The version `job` gets over `current`, and whether it is a change: the
/// same spec keeps its version unless the job was stopped.
pub(crate) fn next_version(current: Option<&Job>, job: &Job) -> (u64, bool) {
    match current {
        None => (0, true),
        Some(c) if c.stop || !c.spec_eq(job) => (c.version + 1, true),
        Some(c) => (c.version, false),
    }
}

/// Registers a prepared job (a new version only if it changed) and queues an
/// evaluation; with `enforce_index`, only if the stored job is still at it.
/// Every config and secret a job's tasks ask for exists in its namespace:
/// a missing one is named at submit, not found by a task failing to start.
fn check_refs(s: &State, job: &Job) -> Result<(), ServerError> {
    use edge_spec::objects::object_key;
    for t in job.groups.iter().flat_map(|g| &g.tasks) {
        let configs = t.configs.iter().map(|r| {
            (
                "config",
                r,
                s.configs.contains_key(&object_key(&job.namespace, &r.name)),
            )
        });
        let secrets = t.secrets.iter().map(|r| {
            (
                "secret",
                r,
                s.secrets.contains_key(&object_key(&job.namespace, &r.name)),
            )
        });
        if let Some((kind, r, _)) = configs.chain(secrets).find(|(_, _, there)| !there) {
            return Err(ServerError::BadRequest(format!(
                "job {:?} asks for {kind} {:?}, which does not exist in namespace {:?} (edge {kind} put {} KEY=VALUE)",
                job.id, r.name, job.namespace, r.name
            )));
        }
    }
    let published = job
        .groups
        .iter()
        .flat_map(|g| &g.services)
        .filter_map(|s| s.publish.as_ref()?.tls.as_ref())
        .filter(|t| !t.secret.is_empty());
    for tls in published {
        let missing: Vec<&str> = match s.secrets.get(&object_key(&job.namespace, &tls.secret)) {
            None => {
                return Err(ServerError::BadRequest(format!(
                    "job {:?} publishes with TLS secret {:?}, which does not exist in namespace {:?} (edge secret put {} cert=@cert.pem key=@key.pem)",
                    job.id, tls.secret, job.namespace, tls.secret
                )));
            }
            Some(sec) => edge_spec::TLS_SECRET_KEYS
                .into_iter()
                .filter(|k| !sec.keys.iter().any(|have| have == k))
                .collect(),
        };
        if !missing.is_empty() {
            return Err(ServerError::BadRequest(format!(
                "TLS secret {:?} has no key {}: it needs cert (the PEM chain) and key",
                tls.secret,
                missing.join(" or ")
            )));
        }
    }
    Ok(())
}

pub(crate) fn register(
    s: &State,
    env: &mut Env,
    mut job: Job,
    trigger: TriggeredBy,
    enforce_index: Option<u64>,
) -> Result<(Batch, JobRegisterResponse), ServerError> {
    if s.namespace(&job.namespace).is_none() {
        return Err(ServerError::NoNamespace(job.namespace));
    }
    check_refs(s, &job)?;
    let existing = s.jobs.get(&job.key());
    if let Some(want) = enforce_index {
        let have = existing.map_or(0, |j| j.modify_index);
        if have != want {
            return Err(ServerError::Conflict(format!(
                "job {:?} is at modify index {have}, not {want}",
                job.id
            )));
        }
    }
    if trigger != TriggeredBy::JobScale {
        job.scaled = None;
    }
    let (version, changed) = next_version(existing, &job);
    job.stop = false;
    job.stable = existing.is_some_and(|e| !changed && e.stable);
    job.version = version;
    job.submit_time = env.now;
    if let Some(e) = existing {
        job.create_index = e.create_index;
        if !changed {
            job.submit_time = e.submit_time;
        }
    }
    let eval = evals::new(env, (&job.namespace, &job.id), job.priority, trigger, None);
    let resp = JobRegisterResponse {
        eval_id: Some(eval.id.clone()),
        job_modify_index: 0,
        version,
        changed,
        warnings: vec![],
    };
    let mut batch = Batch::default();
    if changed {
        deployments::start(s, env, &job, &mut batch);
        batch.jobs.push(job);
    }
    batch.evals.push(eval);
    Ok((batch, resp))
}

/// The current job `id` of `namespace` with `group`'s count set to
/// `count`, to register as a new version (so a scale shows in the job's
/// history, with `reason`).
pub(crate) fn scaled(
    s: &State,
    (namespace, id): (&str, &str),
    group: &str,
    count: u32,
    reason: String,
    now: i64,
) -> Result<Job, ServerError> {
    let Some(job) = s.jobs.get(&edge_spec::job_key(namespace, id)) else {
        return Err(ServerError::no_job(namespace, id));
    };
    if job.stop {
        return Err(ServerError::Conflict(format!(
            "job {id:?} is stopped; run it again before scaling it"
        )));
    }
    if count > edge_spec::limits::MAX_COUNT {
        return Err(ServerError::BadRequest(format!(
            "count is {count}; the limit is {}",
            edge_spec::limits::MAX_COUNT
        )));
    }
    let mut job = job.clone();
    let names: Vec<String> = job.groups.iter().map(|g| g.name.clone()).collect();
    let Some(g) = job.groups.iter_mut().find(|g| g.name == group) else {
        return Err(ServerError::NoSuchGroup {
            job: id.to_string(),
            group: group.to_string(),
            groups: names.join(", "),
        });
    };
    if g.system {
        return Err(ServerError::BadRequest(format!(
            "group {group:?} runs one copy on every node (`system = true`): it has no count to scale"
        )));
    }
    if let Some(sc) = &g.scaling {
        let rules = sc.resolve(g.count);
        if !(rules.min..=rules.max).contains(&count) {
            return Err(ServerError::BadRequest(format!(
                "count {count} is outside group {group:?}'s scaling bounds {} to {}",
                rules.min, rules.max
            )));
        }
    }
    let from = g.count;
    g.count = count;
    job.scaled = Some(edge_spec::ScaleNote {
        group: group.to_string(),
        from,
        to: count,
        reason,
        time: now,
    });
    Ok(job)
}

/// Stops a job (a new, stopped version) or purges it with all its versions,
/// and queues the evaluation that stops its allocations; returns its id.
pub(crate) fn stop(
    s: &State,
    env: &mut Env,
    (namespace, id): (&str, &str),
    purge: bool,
) -> Result<(Batch, String), ServerError> {
    let key = edge_spec::job_key(namespace, id);
    let Some(job) = s.jobs.get(&key) else {
        return Err(ServerError::no_job(namespace, id));
    };
    let mut batch = Batch::default();
    deployments::cancel_active(s, env, &key, edge_spec::DESC_JOB_STOPPED, &mut batch);
    let eval = evals::new(
        env,
        (namespace, id),
        job.priority,
        TriggeredBy::JobDeregister,
        None,
    );
    let eval_id = eval.id.clone();
    if purge {
        batch.delete_networks.extend(
            s.networks
                .values()
                .filter(|n| n.namespace == namespace && n.job_id == id)
                .map(|n| n.key()),
        );
        batch.purge_jobs.push(key);
    } else if !job.stop {
        let mut j = job.clone();
        j.stop = true;
        j.version += 1;
        j.submit_time = env.now;
        batch.jobs.push(j);
    }
    batch.evals.push(eval);
    Ok((batch, eval_id))
}

/// Running if any allocation runs, pending while any is on its way, dead
/// once stopped or all allocations ended.
pub(crate) fn status(s: &State, job: &Job) -> JobStatus {
    // A periodic or parameterized job runs as long as it may launch.
    if job.launches() {
        return if job.stop {
            JobStatus::Dead
        } else {
            JobStatus::Running
        };
    }
    let allocs = s.job_allocs(&job.key());
    if allocs
        .iter()
        .any(|a| a.client_status == ClientStatus::Running)
    {
        return JobStatus::Running;
    }
    if allocs.iter().any(|a| a.is_live()) {
        return JobStatus::Pending;
    }
    if job.stop || !allocs.is_empty() {
        return JobStatus::Dead;
    }
    JobStatus::Pending
}
