//! Periodic and parameterized jobs: whether a periodic job's next child is
//! due (a pure function of its spec, its last launch, the time and whether
//! a child still runs), and the child job a launch or a dispatch registers.
//! A parent is never placed itself; its children are ordinary batch jobs
//! with a `parent_id`.

use super::{Env, jobs};
use crate::ServerError;
use edge_api::{JobDispatchRequest, JobLaunchResponse};
use edge_spec::periodic::{Periodic, dispatch_child_id, periodic_child_id, periodic_launch_of};
use edge_spec::{Job, JobStatus, TriggeredBy};
use edge_store::{Batch, State};
use std::collections::HashMap;

/// What to do about a periodic job at some time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// A launch is due: launch one child now, however many launch times
    /// passed since the last (a server that was down launches once).
    Launch,
    /// A launch is due but a child still runs and the job prohibits
    /// overlap: this launch is skipped, the next one is the schedule's
    /// next after now.
    Skip,
    /// Nothing is due before this time (`None`: never again).
    Wait(Option<i64>),
}

/// The decision for periodic block `p` at `now`, whose last launch (or
/// registration, or skipped launch) was at `last`, with a child still
/// running or not. Times are Unix milliseconds.
pub(crate) fn decide(p: &Periodic, last: i64, now: i64, running: bool) -> Decision {
    if !p.enabled {
        return Decision::Wait(None);
    }
    match p.next_after(last) {
        Some(due) if due <= now && p.prohibit_overlap && running => Decision::Skip,
        Some(due) if due <= now => Decision::Launch,
        next => Decision::Wait(next),
    }
}

/// The children of `parent`, oldest launch first within each kind.
pub(crate) fn children<'a>(s: &'a State, parent: &'a Job) -> impl Iterator<Item = &'a Job> + 'a {
    // Child ids are `PARENT/...`, so their keys share this prefix.
    let prefix = edge_spec::job_key(&parent.namespace, &format!("{}/", parent.id));
    s.jobs
        .range(prefix.clone()..)
        .take_while(move |(k, _)| k.starts_with(&prefix))
        .map(|(_, j)| j)
        .filter(|j| j.namespace == parent.namespace && j.parent_id == parent.id)
}

/// When `parent` last launched a child, or else when its current version
/// was registered: the schedule counts from there.
pub(crate) fn last_launch(s: &State, parent: &Job) -> i64 {
    children(s, parent)
        .filter_map(|c| periodic_launch_of(&parent.id, &c.id))
        .fold(parent.submit_time, i64::max)
}

/// Whether a child of `parent` is still pending or running.
fn child_running(s: &State, parent: &Job) -> bool {
    children(s, parent).any(|c| !c.stop && jobs::status(s, c) != JobStatus::Dead)
}

/// The periodic jobs to launch and to skip at `now`, and when the next
/// launch after those comes due. `skipped` holds, per job key, when a
/// launch was last skipped (the launch loop's memory).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Due {
    /// `(namespace, id)` of each job to launch a child of.
    pub launch: Vec<(String, String)>,
    /// Keys of the jobs whose due launch is skipped.
    pub skip: Vec<String>,
    pub next: Option<i64>,
}

pub(crate) fn due(s: &State, now: i64, skipped: &HashMap<String, i64>) -> Due {
    let mut out = Due::default();
    let mut wake = |t: Option<i64>| {
        if let Some(t) = t {
            out.next = Some(out.next.map_or(t, |n: i64| n.min(t)));
        }
    };
    let mut launch = Vec::new();
    let mut skip = Vec::new();
    for job in s.jobs.values().filter(|j| !j.stop && j.launches()) {
        let Some(p) = &job.periodic else {
            continue;
        };
        let key = job.key();
        let last = last_launch(s, job).max(skipped.get(&key).copied().unwrap_or(i64::MIN));
        match decide(p, last, now, child_running(s, job)) {
            Decision::Launch => {
                wake(p.next_after(now));
                launch.push((job.namespace.clone(), job.id.clone()));
            }
            Decision::Skip => {
                wake(p.next_after(now));
                skip.push(key);
            }
            Decision::Wait(next) => wake(next),
        }
    }
    out.launch = launch;
    out.skip = skip;
    out
}

/// When the periodic job `job` launches next, for its status.
pub(crate) fn next_launch(s: &State, job: &Job) -> Option<i64> {
    let p = job.periodic.as_ref()?;
    if job.stop || !job.launches() || !p.enabled {
        return None;
    }
    p.next_after(last_launch(s, job))
}

/// `parent` as the child `id`: the same groups and tasks, a batch job of
/// its own that is neither periodic nor parameterized.
fn child_of(parent: &Job, id: String) -> Job {
    let mut child = parent.clone();
    child.name = id.clone();
    child.id = id;
    child.periodic = None;
    child.parameterized = None;
    child.parent_id = parent.id.clone();
    child.version = 0;
    child.stop = false;
    child.stable = false;
    child.status = JobStatus::Pending;
    child.create_index = 0;
    child.modify_index = 0;
    child.next_launch = None;
    child.children.clear();
    child
}

/// Registers a child of the periodic job under `key` launched at
/// `env.now` (on schedule, or forced by a user).
pub(crate) fn launch(
    s: &State,
    env: &mut Env,
    (namespace, id): (&str, &str),
) -> Result<(Batch, JobLaunchResponse), ServerError> {
    let Some(parent) = s.jobs.get(&edge_spec::job_key(namespace, id)) else {
        return Err(ServerError::no_job(namespace, id));
    };
    if parent.periodic.is_none() || !parent.launches() {
        return Err(ServerError::Conflict(format!("job {id:?} is not periodic")));
    }
    if parent.stop {
        return Err(ServerError::Conflict(format!(
            "job {id:?} is stopped; run it again to launch it"
        )));
    }
    let child = child_of(parent, periodic_child_id(id, env.now));
    register_child(s, env, child, TriggeredBy::PeriodicJob)
}

/// Registers a child of the parameterized job with the dispatch's meta
/// (over the parent's, under each group's own) and payload.
pub(crate) fn dispatch(
    s: &State,
    env: &mut Env,
    (namespace, id): (&str, &str),
    req: &JobDispatchRequest,
) -> Result<(Batch, JobLaunchResponse), ServerError> {
    use base64::Engine;
    let Some(parent) = s.jobs.get(&edge_spec::job_key(namespace, id)) else {
        return Err(ServerError::no_job(namespace, id));
    };
    let Some(rules) = parent.parameterized.as_ref().filter(|_| parent.launches()) else {
        return Err(ServerError::Conflict(format!(
            "job {id:?} is not parameterized"
        )));
    };
    if parent.stop {
        return Err(ServerError::Conflict(format!(
            "job {id:?} is stopped; run it again to dispatch it"
        )));
    }
    // Checked before decoding: base64 of more than the cap is refused
    // without allocating it.
    if req.payload.len() > edge_spec::periodic::MAX_PAYLOAD.div_ceil(3) * 4 {
        return Err(ServerError::BadRequest(format!(
            "the payload is over {} bytes",
            edge_spec::periodic::MAX_PAYLOAD
        )));
    }
    let payload = base64::engine::general_purpose::STANDARD
        .decode(req.payload.trim())
        .map_err(|e| ServerError::BadRequest(format!("the payload is not base64: {e}")))?;
    rules
        .check_dispatch(&req.meta, payload.len())
        .map_err(|e| ServerError::BadRequest(format!("cannot dispatch job {id:?}: {e}")))?;
    let suffix = format!("{:016x}", edge_spec::stable_hash(env.id().as_bytes()));
    let mut child = child_of(parent, dispatch_child_id(id, env.now, &suffix[..8]));
    // A parent registered by an older edge has its job meta only on the
    // job; one registered since has it in its groups already.
    jobs::hand_down_meta(&mut child);
    child.meta.extend(req.meta.clone());
    // The dispatch's meta goes over the job's, as in Nomad, but not over
    // a value a group set itself (one that differs from the job's).
    for g in &mut child.groups {
        for (k, v) in &req.meta {
            if g.meta.get(k) == parent.meta.get(k) {
                g.meta.insert(k.clone(), v.clone());
            }
        }
    }
    if !payload.is_empty() {
        child.payload = base64::engine::general_purpose::STANDARD.encode(&payload);
    }
    register_child(s, env, child, TriggeredBy::JobRegister)
}

fn register_child(
    s: &State,
    env: &mut Env,
    child: Job,
    trigger: TriggeredBy,
) -> Result<(Batch, JobLaunchResponse), ServerError> {
    if s.jobs.contains_key(&child.key()) {
        return Err(ServerError::Conflict(format!(
            "job {:?} already exists: one launch per second",
            child.id
        )));
    }
    let job_id = child.id.clone();
    let (batch, resp) = jobs::register(s, env, child, trigger, None)?;
    Ok((
        batch,
        JobLaunchResponse {
            job_id,
            eval_id: resp.eval_id.unwrap_or_default(),
            index: 0,
        },
    ))
}

/// Purges of the children that ended more than `age` before `now` (by
/// their registration), as Nomad collects dead batch jobs, so a job
/// launched every minute does not grow the store without bound. The
/// newest periodic child of a parent stays: the schedule counts from its
/// launch.
pub(crate) fn expired_children(s: &State, now: i64, age: i64) -> Batch {
    let mut newest: HashMap<(&str, &str), (i64, &str)> = HashMap::new();
    for c in s.jobs.values().filter(|j| !j.parent_id.is_empty()) {
        if let Some(at) = periodic_launch_of(&c.parent_id, &c.id) {
            let e = newest
                .entry((c.namespace.as_str(), c.parent_id.as_str()))
                .or_insert((at, c.id.as_str()));
            if at > e.0 {
                *e = (at, c.id.as_str());
            }
        }
    }
    let purge_jobs = s
        .jobs
        .values()
        .filter(|c| !c.parent_id.is_empty() && c.submit_time < now.saturating_sub(age))
        .filter(|c| {
            newest
                .get(&(c.namespace.as_str(), c.parent_id.as_str()))
                .is_none_or(|(_, id)| *id != c.id)
        })
        .filter(|c| jobs::status(s, c) == JobStatus::Dead)
        .map(Job::key)
        .collect();
    Batch {
        purge_jobs,
        ..Batch::default()
    }
}
