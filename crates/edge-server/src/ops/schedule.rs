//! Running the scheduler for an evaluation: which evaluations are ready,
//! the snapshot the scheduler sees, and the batch its plan becomes.

use super::{Env, deployments, evals};
use edge_sched::{Plan, SchedulerConfig, Snapshot, schedule};
use edge_spec::{
    Allocation, ClientStatus, DesiredStatus, EvalStatus, Evaluation, NamedNetwork, OverlayNetwork,
    OverlayPool, TriggeredBy, Volume,
};
use edge_store::{Batch, State};
use std::collections::HashSet;

/// Ready evaluations, highest priority and oldest first, one per job (a
/// scheduler run reconciles the whole job, so older ones for the same job are
/// folded into it); plus when the next delayed one comes due.
pub(crate) fn ready(s: &State, now: i64) -> (Vec<String>, Option<i64>) {
    let mut ready: Vec<&Evaluation> = Vec::new();
    let mut next: Option<i64> = None;
    let open = s.open_evals.iter().filter_map(|id| s.evals.get(id));
    for e in open.filter(|e| e.status == EvalStatus::Pending) {
        if e.wait_until > now {
            next = Some(next.map_or(e.wait_until, |n: i64| n.min(e.wait_until)));
        } else {
            ready.push(e);
        }
    }
    ready.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(a.create_index.cmp(&b.create_index))
    });
    let mut seen = HashSet::new();
    let ids = ready
        .into_iter()
        .filter(|e| seen.insert(e.job_key()))
        .map(|e| e.id.clone())
        .collect();
    (ids, next)
}

/// What the scheduler sees of the cluster for the job under `job_key`.
pub(crate) fn snapshot<'a>(
    s: &'a State,
    job_key: &str,
    config: &'a SchedulerConfig,
    now: i64,
    seed: u64,
) -> Snapshot<'a> {
    Snapshot {
        nodes: s.nodes.values().collect(),
        usage: &s.usage,
        job_allocs: s.job_allocs(job_key),
        deployment: s.latest_deployment(job_key),
        volumes: match s.jobs.get(job_key) {
            Some(j) => s
                .volumes
                .values()
                .filter(|v| v.namespace == j.namespace && v.job_id == j.id)
                .collect(),
            None => Vec::new(),
        },
        config,
        now,
        seed,
    }
}

/// The scheduler's seed: the same evaluation at the same index plans the
/// same on every build, so a plan can be reproduced from the store.
fn seed_for(eval_id: &str, index: u64) -> u64 {
    let mut bytes = eval_id.as_bytes().to_vec();
    bytes.extend_from_slice(&index.to_le_bytes());
    edge_spec::stable_hash(&bytes)
}

/// Schedules a pending evaluation and returns the batch that commits its
/// plan with the number of allocations it places; `None` if the
/// evaluation is gone or no longer pending.
pub(crate) fn evaluate(
    s: &State,
    env: &mut Env,
    config: &SchedulerConfig,
    overlay: &OverlayPool,
    eval_id: &str,
) -> Option<(Batch, usize)> {
    let eval = s.evals.get(eval_id)?;
    if eval.status != EvalStatus::Pending {
        return None;
    }
    let key = eval.job_key();
    let snap = snapshot(s, &key, config, env.now, seed_for(eval_id, s.index));
    let job = s.jobs.get(&key).map(placed);
    let plan = schedule(job.as_deref(), eval, &snap);
    let placed = plan.place.len();
    let mut batch = apply(s, env, eval, plan);
    record_networks(s, overlay, eval_id, &mut batch);
    Some((batch, placed))
}

/// The job as the scheduler places it: a periodic or parameterized job
/// runs only as its children, so itself places nothing (and stops what
/// an earlier, ordinary version of it runs).
pub(crate) fn placed(job: &edge_spec::Job) -> std::borrow::Cow<'_, edge_spec::Job> {
    if job.launches() {
        let mut j = job.clone();
        j.stop = true;
        std::borrow::Cow::Owned(j)
    } else {
        std::borrow::Cow::Borrowed(job)
    }
}

/// Gives each named network a placement joins a subnet and VXLAN id of
/// the cluster's pool (the first time) and the placement's node a slice
/// of it (the first time a member runs there), kept until the job is
/// purged. A full pool or network is said in the evaluation's
/// description; the agent then refuses the allocation, naming the
/// network.
fn record_networks(s: &State, pool: &OverlayPool, eval_id: &str, batch: &mut Batch) {
    let mut problems: Vec<String> = Vec::new();
    let placed: Vec<(String, String, String, String)> = batch
        .allocs
        .iter()
        .filter(|a| a.desired_status == DesiredStatus::Run && !s.allocs.contains_key(&a.id))
        .filter_map(|a| {
            let job = s.jobs.get(&a.job_key())?;
            let group = job.group(&a.group)?;
            Some(group.network.networks.iter().map(move |n| {
                (
                    job.namespace.clone(),
                    job.id.clone(),
                    n.clone(),
                    a.node_id.clone(),
                )
            }))
        })
        .flatten()
        .collect();
    for (namespace, job_id, name, node) in placed {
        let key = NamedNetwork::key(&namespace, &job_id, &name);
        let mut net = match batch.networks.iter().position(|n| n.key() == key) {
            Some(i) => batch.networks.swap_remove(i),
            None => match s.networks.get(&key) {
                Some(n) => n.clone(),
                None => {
                    let taken = s.networks.values().chain(batch.networks.iter());
                    let Some((vni, subnet)) = pool.next_network(taken) else {
                        problems.push(format!(
                            "network {key}: the network pool {} is full (server flags --network-pool, --network-prefix)",
                            pool.pool
                        ));
                        continue;
                    };
                    OverlayNetwork {
                        namespace,
                        job_id,
                        name,
                        vni,
                        subnet,
                        node_prefix: pool.node_prefix,
                        nodes: Default::default(),
                        create_index: 0,
                        modify_index: 0,
                    }
                }
            },
        };
        if !net.join(&node) {
            problems.push(format!(
                "network {key}: every node slice is taken, none for node {node} (server flag --network-node-prefix)"
            ));
        }
        if s.networks.get(&key) != Some(&net) {
            batch.networks.push(net);
        }
    }
    problems.dedup();
    if problems.is_empty() {
        return;
    }
    if let Some(e) = batch.evals.iter_mut().find(|e| e.id == eval_id) {
        for p in problems {
            if !e.status_description.is_empty() {
                e.status_description.push_str("; ");
            }
            e.status_description.push_str(&p);
        }
    }
}

/// Records the local volumes a placement makes on its node, the first
/// time a copy of its group runs: from then on the copy goes back there.
fn record_volumes(s: &State, env: &mut Env, plan: &Plan, batch: &mut Batch) {
    for a in &plan.place {
        let Some(group) = s.jobs.get(&a.job_key()).and_then(|j| j.group(&a.group)) else {
            continue;
        };
        for v in &group.volumes {
            if v.kind != edge_spec::VolumeType::Local {
                continue;
            }
            let key = Volume::key(&a.namespace, &a.job_id, &a.group, &v.name, a.index);
            if s.volumes.contains_key(&key) || batch.volumes.iter().any(|b| b.own_key() == key) {
                continue;
            }
            batch.volumes.push(Volume {
                id: env.id(),
                namespace: a.namespace.clone(),
                job_id: a.job_id.clone(),
                group: a.group.clone(),
                name: v.name.clone(),
                index: a.index,
                node_id: a.node_id.clone(),
                create_time: env.now,
                create_index: 0,
                modify_index: 0,
            });
        }
    }
}

/// Turns a plan into one batch: placements, stops, in-place updates, the
/// evaluation's outcome and any follow-up evaluation.
fn apply(s: &State, env: &mut Env, eval: &Evaluation, plan: Plan) -> Batch {
    let now = env.now;
    let mut batch = Batch::default();
    let mut eval = eval.clone();
    // Every other due evaluation of the job is covered by this run: it
    // reconciles the whole job against the state that already holds
    // whatever triggered them. Folding only older ones ran the scheduler
    // once per queued evaluation, and a busy job starved the others.
    let key = eval.job_key();
    for other in s.job_evals(&key) {
        if other.id != eval.id
            && ((other.status == EvalStatus::Pending && other.wait_until <= now)
                || other.status == EvalStatus::Blocked)
        {
            let mut o = other.clone();
            o.status = EvalStatus::Canceled;
            o.status_description = format!("folded into evaluation {}", eval.id);
            o.modify_time = now;
            batch.evals.push(o);
        }
    }
    for stop in &plan.stop {
        let Some(a) = s.allocs.get(&stop.alloc_id) else {
            continue;
        };
        let mut a = Allocation::clone(a);
        a.desired_status = DesiredStatus::Stop;
        a.desired_description = stop.description.clone();
        if let Some(cs) = stop.client_status {
            a.client_status = cs;
            if cs == ClientStatus::Lost {
                a.client_description = "node down: allocation lost".to_string();
            }
        }
        a.modify_time = now;
        batch.allocs.push(a);
    }
    for upd in &plan.in_place {
        if let Some(a) = s.allocs.get(&upd.alloc_id) {
            let mut a = Allocation::clone(a);
            a.job_version = upd.job_version;
            a.modify_time = now;
            batch.allocs.push(a);
        }
    }
    for a in &plan.place {
        if let Some(prev) = a.previous_alloc.as_ref().and_then(|p| s.allocs.get(p)) {
            let mut prev = batch
                .allocs
                .iter()
                .find(|x| x.id == prev.id)
                .cloned()
                .unwrap_or_else(|| Allocation::clone(prev));
            prev.next_alloc = Some(a.id.clone());
            prev.modify_time = now;
            batch.allocs.retain(|x| x.id != prev.id);
            batch.allocs.push(prev);
        }
    }
    record_volumes(s, env, &plan, &mut batch);
    batch.allocs.extend(plan.place.iter().cloned());
    eval.failed_tg_allocs = plan.failed.clone();
    eval.queued_allocations = plan.queued.clone();
    eval.modify_time = now;
    if plan.failed.is_empty() {
        eval.status = EvalStatus::Complete;
        eval.status_description = format!(
            "placed {}, stopped {}, updated {}",
            plan.place.len(),
            plan.stop.len(),
            plan.in_place.len()
        );
        // A copy of what it waits for starting (or passing its checks)
        // evaluates the job again: see `allocs::update`.
        for (group, why) in &plan.waiting {
            eval.status_description
                .push_str(&format!("; group {group:?} {why}"));
        }
    } else {
        eval.status = EvalStatus::Blocked;
        let queued: u32 = plan.queued.values().sum();
        eval.status_description = format!(
            "placed {}, {} could not be placed; waiting for capacity",
            plan.place.len(),
            queued
        );
    }
    // One delayed evaluation at a time is enough: whichever comes due
    // first plans again and asks for the next.
    let queued = |at: i64| {
        s.job_evals(&key).iter().any(|e| {
            e.id != eval.id
                && e.status == EvalStatus::Pending
                && e.wait_until > now
                && e.wait_until <= at
        })
    };
    if let Some(at) = plan.followup_at.filter(|&at| !queued(at)) {
        let mut f = evals::for_job(
            s,
            env,
            (&eval.namespace, &eval.job_id),
            TriggeredBy::RescheduleLater,
            None,
        );
        f.wait_until = at;
        batch.evals.push(f);
    }
    batch.evals.push(eval);
    if let Some(d) = plan.deployment {
        deployments::record(s, env, d, &mut batch);
    }
    batch
}
