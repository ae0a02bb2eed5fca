//! Task usage for the autoscaler: every few seconds, the CPU each
//! allocation of a group with a `scaling` block used, as a percent of
//! what its tasks reserved, and their memory, sent to the server beside
//! the load balancer's counts.

use crate::Agent;
use edge_api::{AllocLoad, LoadReport};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often usage is read and reported.
const EVERY: Duration = Duration::from_secs(2);
/// A node that does not say its CPU frequency counts 1 GHz per core.
const DEFAULT_MHZ: u64 = 1000;

/// Percent of `reserved_mhz` that `used_ns` of CPU time over `over`
/// stands for, on cores of `mhz_per_core`.
pub(crate) fn percent(used_ns: u64, over: Duration, reserved_mhz: u64, mhz_per_core: u64) -> f64 {
    let over_ns = over.as_nanos() as f64;
    if over_ns <= 0.0 || reserved_mhz == 0 {
        return 0.0;
    }
    let cores = used_ns as f64 / over_ns;
    let reserved_cores = reserved_mhz as f64 / mhz_per_core.max(1) as f64;
    (cores / reserved_cores * 100.0).clamp(0.0, 1e6)
}

impl Agent {
    pub(crate) async fn usage_loop(self: Arc<Self>) {
        let mhz_per_core = self
            .ctx
            .node_attributes
            .get("cpu.frequency")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&m| m > 0)
            .unwrap_or(DEFAULT_MHZ);
        let mut last: HashMap<String, (u64, Instant)> = HashMap::new();
        loop {
            tokio::time::sleep(EVERY).await;
            let watched: Vec<_> = self
                .runners
                .lock()
                .await
                .iter()
                .filter_map(|(id, r)| r.usage_watch().map(|w| (id.clone(), w)))
                .collect();
            let mut report = LoadReport::default();
            let mut seen = HashMap::new();
            for (id, (handles, reserved_mhz)) in watched {
                let (mut used, mut memory) = (0u64, 0u64);
                let mut read = !handles.is_empty();
                for h in &handles {
                    match self.ctx.drivers.get(&h.driver) {
                        Some(d) => match d.stats(h).await {
                            Ok(s) => {
                                used = used.saturating_add(s.cpu_total_ns);
                                memory = memory.saturating_add(s.memory_rss_bytes);
                            }
                            Err(_) => read = false,
                        },
                        None => read = false,
                    }
                }
                if !read {
                    continue;
                }
                let now = Instant::now();
                if let Some((before, at)) = last.get(&id)
                    && used >= *before
                {
                    let pct = percent(used - before, now - *at, reserved_mhz, mhz_per_core);
                    report.allocs.insert(
                        id.clone(),
                        AllocLoad {
                            cpu_percent: pct,
                            memory_bytes: memory,
                        },
                    );
                }
                seen.insert(id, (used, now));
            }
            last = seen;
            if report.allocs.is_empty() {
                continue;
            }
            if let Err(e) = self.client.agent_load(&self.ctx.node_id, &report).await {
                tracing::debug!(error = %e, "usage report not sent");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_core_is_its_share_of_what_was_reserved() {
        // One core busy for 2 s, 500 MHz reserved on 2,000 MHz cores.
        let p = percent(2_000_000_000, Duration::from_secs(2), 500, 2000);
        assert!((p - 400.0).abs() < 1e-9, "{p}");
        assert_eq!(percent(0, Duration::from_secs(2), 500, 2000), 0.0);
        assert_eq!(percent(1, Duration::ZERO, 500, 2000), 0.0);
        assert_eq!(percent(u64::MAX, Duration::from_nanos(1), 1, 1), 1e6);
    }
}
