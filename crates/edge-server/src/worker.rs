//! The evaluation worker: takes pending evaluations in bursts and hands each
//! to the store's writer, which runs the scheduler on its own state (already
//! holding the plans staged before it) and commits a burst's plans together.

use crate::http::eval_for;
use crate::{Server, now_ms};
use edge_sched::{Plan, Snapshot, schedule};
use edge_spec::{ClientStatus, DesiredStatus, EvalStatus, Evaluation, TriggeredBy};
use edge_store::{Batch, State as St};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Evaluations processed between yields, so the API stays responsive under a flood.
const BURST: usize = 64;

pub async fn run(server: Arc<Server>) {
    loop {
        let (ready, next_at) = server.store.read(|s| pending(s, now_ms()));
        if ready.is_empty() {
            let sleep = next_at
                .map(|t| Duration::from_millis((t - now_ms()).max(1) as u64))
                .unwrap_or(Duration::from_secs(5));
            tokio::select! {
                _ = server.evals_ready.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
            continue;
        }
        // All of a burst is in the writer's queue at once, so one group
        // commit (one fsync) carries many plans; each plan is still computed
        // against the placements of those before it.
        let burst = ready.into_iter().take(BURST).map(|eval_id| {
            let server = server.clone();
            async move {
                if let Err(e) = process(&server, &eval_id).await {
                    tracing::error!(eval = %eval_id, error = %e, "evaluation failed");
                    mark_failed(&server, &eval_id, &e.to_string()).await;
                }
            }
        });
        futures_util::future::join_all(burst).await;
        tokio::task::yield_now().await;
    }
}

/// Ready evaluations, highest priority and oldest first, one per job (a
/// scheduler run reconciles the whole job, so older ones for the same job are
/// folded into it); plus when the next delayed one comes due.
fn pending(s: &St, now: i64) -> (Vec<String>, Option<i64>) {
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
    let mut seen = std::collections::HashSet::new();
    let ids = ready
        .into_iter()
        .filter(|e| seen.insert(e.job_id.clone()))
        .map(|e| e.id.clone())
        .collect();
    (ids, next)
}

/// The scheduler's seed: the same evaluation at the same index plans the
/// same on every build, so a plan can be reproduced from the store.
fn seed_for(eval_id: &str, index: u64) -> u64 {
    let mut bytes = eval_id.as_bytes().to_vec();
    bytes.extend_from_slice(&index.to_le_bytes());
    edge_spec::stable_hash(&bytes)
}

async fn process(server: &Arc<Server>, eval_id: &str) -> Result<(), crate::ServerError> {
    let now = now_ms();
    let srv = server.clone();
    let eval_id = eval_id.to_string();
    let scheduled = server
        .store
        .commit(move |s: &St| {
            let started = Instant::now();
            let Some(eval) = s.evals.get(&eval_id) else {
                return Ok::<_, crate::ServerError>((Batch::default(), false));
            };
            if eval.status != EvalStatus::Pending {
                return Ok((Batch::default(), false));
            }
            let snap = Snapshot {
                nodes: s.nodes.values().collect(),
                usage: &s.usage,
                job_allocs: s.job_allocs(&eval.job_id),
                config: &srv.cfg.scheduler,
                now,
                seed: seed_for(&eval_id, s.index),
            };
            let plan: Plan = schedule(s.jobs.get(&eval.job_id), eval, &snap);
            srv.metrics
                .observe_schedule(started.elapsed(), plan.place.len());
            Ok((apply(s, &eval_id, plan, now), true))
        })
        .await?;
    if scheduled.0 {
        server.metrics.evals_processed.inc();
    }
    Ok(())
}

/// Turns a plan into one batch: placements, stops, in-place updates, the
/// evaluation's outcome and any follow-up evaluation.
fn apply(s: &St, eval_id: &str, plan: Plan, now: i64) -> Batch {
    let mut batch = Batch::default();
    let Some(eval) = s.evals.get(eval_id) else {
        return batch;
    };
    let mut eval = eval.clone();
    // Older pending evals of the same job are covered by this run.
    for other in s.job_evals(&eval.job_id) {
        if other.id != eval.id
            && ((other.status == EvalStatus::Pending
                && other.wait_until <= now
                && other.create_index <= eval.create_index)
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
        let mut a = a.clone();
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
            let mut a = a.clone();
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
                .unwrap_or_else(|| prev.clone());
            prev.next_alloc = Some(a.id.clone());
            prev.modify_time = now;
            batch.allocs.retain(|x| x.id != prev.id);
            batch.allocs.push(prev);
        }
    }
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
    } else {
        eval.status = EvalStatus::Blocked;
        let queued: u32 = plan.queued.values().sum();
        eval.status_description = format!(
            "placed {}, {} could not be placed; waiting for capacity",
            plan.place.len(),
            queued
        );
    }
    if let Some(at) = plan.followup_at {
        let mut f = eval_for(s, &eval.job_id, TriggeredBy::RescheduleLater, None);
        f.wait_until = at;
        batch.evals.push(f);
    }
    batch.evals.push(eval);
    batch
}

async fn mark_failed(server: &Arc<Server>, eval_id: &str, why: &str) {
    let id = eval_id.to_string();
    let why = why.to_string();
    let res = server
        .store
        .commit(move |s: &St| {
            let mut batch = Batch::default();
            if let Some(e) = s.evals.get(&id) {
                let mut e = e.clone();
                e.status = EvalStatus::Failed;
                e.status_description = why;
                e.modify_time = now_ms();
                batch.evals.push(e);
            }
            Ok::<_, crate::ServerError>((batch, ()))
        })
        .await;
    if let Err(e) = res {
        tracing::error!(eval = %eval_id, error = %e, "cannot mark evaluation failed");
    }
}
