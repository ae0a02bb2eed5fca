//! The evaluation worker: takes pending evaluations in bursts and hands each
//! to the store's writer, which runs the scheduler on its own state (already
//! holding the plans staged before it) and commits a burst's plans together.

use crate::ops::{self, Env};
use crate::{Server, now_ms};
use edge_spec::EvalStatus;
use edge_store::{Batch, State as St};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Evaluations processed between yields, so the API stays responsive under a flood.
const BURST: usize = 64;

pub async fn run(server: Arc<Server>) {
    loop {
        let (ready, next_at) = server.store.read(|s| ops::schedule::ready(s, now_ms()));
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

async fn process(server: &Arc<Server>, eval_id: &str) -> Result<(), crate::ServerError> {
    let srv = server.clone();
    let eval_id = eval_id.to_string();
    let (scheduled, _) = server
        .store
        .commit(move |s: &St| {
            let started = Instant::now();
            let out = ops::schedule::evaluate(
                s,
                &mut Env::live(),
                &srv.cfg.scheduler,
                &srv.cfg.overlay,
                &eval_id,
            );
            let Some((batch, placed)) = out else {
                return Ok::<_, crate::ServerError>((Batch::default(), false));
            };
            srv.metrics.observe_schedule(started.elapsed(), placed);
            Ok((batch, true))
        })
        .await?;
    if scheduled {
        server.metrics.evals_processed.inc();
    }
    Ok(())
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
