//! Node liveness: agents heartbeat within a TTL; a node that misses it is
//! marked down and the jobs with allocations there are re-evaluated, which
//! marks those allocations lost and places them elsewhere.

use crate::ops::{self, Env};
use crate::{Server, now_ms};
use edge_spec::NodeStatus;
use edge_store::{Batch, State as St};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Default)]
pub struct Heartbeats {
    inner: Mutex<HashMap<String, Beat>>,
}

struct Beat {
    deadline: Instant,
    /// Unix milliseconds of the last beat, for display.
    seen: i64,
}

impl Heartbeats {
    pub fn beat(&self, node_id: &str, ttl: Duration) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(
            node_id.to_string(),
            Beat {
                deadline: Instant::now() + ttl,
                seen: now_ms(),
            },
        );
    }

    pub fn last_seen(&self, node_id: &str) -> Option<i64> {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.get(node_id).map(|b| b.seen)
    }

    /// After a server restart, nodes that were ready get a fresh TTL (plus
    /// one more as grace) to find the server again before they count as down.
    pub fn arm_known_nodes(&self, server: &Server) {
        let ttl = server.cfg.heartbeat_ttl * 2;
        let ids: Vec<(String, i64)> = server.store.read(|s| {
            s.nodes
                .values()
                .filter(|n| n.status == NodeStatus::Ready)
                .map(|n| (n.id.clone(), n.last_heartbeat))
                .collect()
        });
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (id, seen) in ids {
            m.insert(
                id,
                Beat {
                    deadline: Instant::now() + ttl,
                    seen,
                },
            );
        }
    }

    /// Heard from within its TTL: after [`Self::expired`] took a node out,
    /// only a beat or a registration since puts it back.
    fn alive(&self, node_id: &str) -> bool {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.get(node_id).is_some_and(|b| b.deadline > Instant::now())
    }

    fn expired(&self) -> Vec<String> {
        let now = Instant::now();
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<String> = m
            .iter()
            .filter(|(_, b)| b.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            m.remove(k);
        }
        gone
    }
}

pub async fn run(server: Arc<Server>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for node_id in server.heartbeats.expired() {
            let nid = node_id.clone();
            let srv = server.clone();
            let res = server
                .store
                .commit(move |s: &St| {
                    // A beat that came in after the deadline passed, but
                    // before this commit, means the node is back already.
                    if srv.heartbeats.alive(&nid) {
                        return Ok((Batch::default(), false));
                    }
                    let batch = ops::nodes::mark_down(s, &mut Env::live(), &nid);
                    let marked = !batch.is_empty();
                    Ok::<_, crate::ServerError>((batch, marked))
                })
                .await;
            match res {
                Ok((true, _)) => {
                    tracing::warn!(node = %node_id, "node missed its heartbeat: marked it down");
                    server.evals_ready.notify_one();
                }
                Ok((false, _)) => {}
                Err(e) => tracing::error!(node = %node_id, error = %e, "cannot mark node down"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mark-down commit runs after `expired`; a beat that lands in
    /// between must keep the node up.
    #[tokio::test(start_paused = true)]
    async fn a_beat_after_expiry_keeps_the_node_alive() {
        let hb = Heartbeats::default();
        let ttl = Duration::from_secs(3);
        hb.beat("n1", ttl);
        assert!(hb.expired().is_empty());
        tokio::time::advance(ttl).await;
        assert_eq!(hb.expired(), vec!["n1".to_string()]);
        assert!(!hb.alive("n1"), "expired and not heard from since");
        hb.beat("n1", ttl);
        assert!(hb.alive("n1"));
        tokio::time::advance(ttl).await;
        assert!(!hb.alive("n1"), "silent for a TTL again");
    }
}
