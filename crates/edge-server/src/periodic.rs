//! The launch loop of periodic jobs: at each launch time on the server's
//! clock it registers a child of every periodic job `ops::periodic` finds
//! due; a registration wakes it to look again, since a new job may come
//! due before the time it sleeps until.

use crate::ops::{self, Env};
use crate::{Server, ServerError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The longest the loop sleeps on the system clock before it looks
/// again, in case the clock was set.
const CAP: Duration = Duration::from_secs(60);

pub(crate) async fn run(server: Arc<Server>) {
    // When each job's due launch was last skipped (prohibit_overlap): kept
    // in memory only, so a server restarted while a child ran launches
    // once when it is back, as after any downtime.
    let mut skipped: HashMap<String, i64> = HashMap::new();
    loop {
        let changed = server.periodic_changed.notified();
        let next = step(&server, &mut skipped).await;
        tokio::select! {
            _ = server.cfg.clock.sleep_until(next.unwrap_or(i64::MAX), CAP) => {}
            _ = changed => {}
        }
    }
}

/// Launches what is due now; returns when the next launch comes due.
async fn step(server: &Arc<Server>, skipped: &mut HashMap<String, i64>) -> Option<i64> {
    let now = server.cfg.clock.now_ms();
    let due = server.store.read(|s| {
        skipped.retain(|k, _| s.jobs.contains_key(k));
        ops::periodic::due(s, now, skipped)
    });
    for key in due.skip {
        tracing::info!(job = %key, "periodic launch skipped: a child still runs (prohibit_overlap)");
        skipped.insert(key, now);
    }
    let launched = !due.launch.is_empty();
    for (namespace, id) in due.launch {
        let (ns, job) = (namespace.clone(), id.clone());
        let res = server
            .store
            .commit(move |s| {
                let mut env = Env::live();
                env.now = now;
                ops::periodic::launch(s, &mut env, (&ns, &job))
            })
            .await;
        match res {
            Ok((r, _)) => {
                tracing::info!(%namespace, job = %id, child = %r.job_id, "periodic launch")
            }
            Err(ServerError::Conflict(why)) => tracing::debug!(job = %id, %why, "periodic launch"),
            Err(e) => tracing::warn!(%namespace, job = %id, error = %e, "periodic launch failed"),
        }
    }
    if launched {
        server.evals_ready.notify_one();
    }
    server.periodic_seen.send_replace(now);
    due.next
}
