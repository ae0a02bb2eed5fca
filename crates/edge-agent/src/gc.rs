//! The node's garbage collection: asks every driver for what it finds that
//! no allocation this agent drives owns (containers, executors, cgroups,
//! run state left by a lost data dir or an interrupted run), and the bridge
//! network for namespaces and address leases, and removes it.
//! The periodic pass removes a leftover only once it has been seen for a
//! grace period; `edge node gc` removes at once.

use crate::runner::AllocRunner;
use edge_api::GcLeftover;
use edge_driver::{Driver, Leftover};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

pub(crate) type Runners = Arc<tokio::sync::Mutex<HashMap<String, AllocRunner>>>;

/// The name network leftovers are reported under, beside the drivers'.
const NETWORK: &str = "network";

pub(crate) struct Collector {
    drivers: Vec<Arc<dyn Driver>>,
    runners: Runners,
    bridge: Option<Arc<edge_net::BridgeNetwork>>,
    /// When each leftover was first seen, by (driver, id).
    seen: Mutex<HashMap<(String, String), Instant>>,
    /// One pass at a time: the periodic one and `edge node gc` must not
    /// reap the same thing twice.
    pass: tokio::sync::Mutex<()>,
}

impl Collector {
    pub fn new(
        drivers: Vec<Arc<dyn Driver>>,
        runners: Runners,
        bridge: Option<Arc<edge_net::BridgeNetwork>>,
    ) -> Collector {
        Collector {
            drivers,
            runners,
            bridge,
            seen: Mutex::new(HashMap::new()),
            pass: tokio::sync::Mutex::new(()),
        }
    }

    /// Removes leftovers first seen at least `grace` ago (all of them when
    /// `grace` is zero) and returns what it removed or failed to remove.
    pub async fn run(&self, grace: Duration) -> Vec<GcLeftover> {
        let _pass = self.pass.lock().await;
        let now = Instant::now();
        let mut found = Vec::new();
        {
            // Held while drivers look, so an allocation starting now is owned
            // before any of its tasks exists.
            let runners = self.runners.lock().await;
            let owned: BTreeSet<String> = runners.keys().cloned().collect();
            for d in &self.drivers {
                match d.leftovers(&owned).await {
                    Ok(l) => found.extend(l),
                    Err(e) => {
                        tracing::warn!(driver = d.name(), error = %e, "cannot look for leftovers")
                    }
                }
            }
            if let Some(net) = &self.bridge {
                found.extend(net.orphans(&owned).into_iter().map(|o| Leftover {
                    driver: NETWORK.to_string(),
                    id: o.alloc_id.clone(),
                    alloc_id: Some(o.alloc_id),
                    description: o.description,
                }));
            }
        }
        let due: Vec<Leftover> = {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            let keys: BTreeSet<(String, String)> = found
                .iter()
                .map(|l| (l.driver.clone(), l.id.clone()))
                .collect();
            seen.retain(|k, _| keys.contains(k));
            found
                .into_iter()
                .filter(|l| {
                    let first = *seen.entry((l.driver.clone(), l.id.clone())).or_insert(now);
                    now.duration_since(first) >= grace
                })
                .collect()
        };
        let mut out = Vec::new();
        for l in due {
            let reaped = match (&self.bridge, l.driver.as_str()) {
                (Some(net), NETWORK) => net.detach(&l.id, None).await.map_err(|e| e.to_string()),
                _ => match self.drivers.iter().find(|d| d.name() == l.driver) {
                    Some(driver) => driver.reap(&l).await.map_err(|e| e.to_string()),
                    None => continue,
                },
            };
            let error = match reaped {
                Ok(()) => {
                    tracing::warn!(
                        driver = %l.driver,
                        id = %l.id,
                        alloc = l.alloc_id.as_deref().unwrap_or("-"),
                        "removed a leftover no allocation owns: {}",
                        l.description
                    );
                    self.seen
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&(l.driver.clone(), l.id.clone()));
                    None
                }
                Err(e) => {
                    tracing::warn!(driver = %l.driver, id = %l.id, error = %e, "cannot remove a leftover");
                    Some(e)
                }
            };
            out.push(GcLeftover {
                driver: l.driver,
                id: l.id,
                alloc_id: l.alloc_id,
                description: l.description,
                error,
            });
        }
        out
    }
}
