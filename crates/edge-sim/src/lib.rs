//! Node simulator: many fake agents in one process speaking the real agent
//! protocol (register, heartbeat within the TTL, blocking watch of their
//! allocations, reports), like Nomad's node simulator. Fake nodes run no
//! tasks: an allocation the server wants running is reported `running`, one
//! it wants stopped is reported `complete`. Used to load the server with
//! thousands of nodes on one machine.

pub mod error;
mod node;

pub use error::SimError;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The server's API address, `http://host:port` or `https://host:port`
    /// (then every fake node gets its own certificate and speaks mutual TLS).
    pub server: String,
    pub token: String,
    pub nodes: usize,
    /// CPU (MHz) each fake node offers.
    pub cpu: u32,
    /// Memory (MB) each fake node offers.
    pub memory: u32,
    /// Delay between seeing a new allocation and reporting it running.
    pub report_running_after: Duration,
    /// Node names and ids are `<prefix>-<i>`.
    pub name_prefix: String,
    pub datacenter: String,
    /// Registrations in flight at once, so thousands of nodes starting
    /// together do not overflow the server's accept queue.
    pub register_concurrency: usize,
}

impl SimConfig {
    pub fn new(server: String, token: String, nodes: usize) -> SimConfig {
        SimConfig {
            server,
            token,
            nodes,
            cpu: 4000,
            memory: 8192,
            report_running_after: Duration::ZERO,
            name_prefix: "sim".to_string(),
            datacenter: "dc1".to_string(),
            register_concurrency: 128,
        }
    }
}

/// Counters shared by all fake nodes.
#[derive(Debug, Default)]
pub struct Stats {
    /// Nodes registered at least once.
    pub registered: AtomicU64,
    /// Allocations reported running.
    pub running: AtomicU64,
    /// Allocations reported complete (stopped).
    pub complete: AtomicU64,
    pub heartbeats: AtomicU64,
    /// Failed requests (each is retried).
    pub errors: AtomicU64,
}

impl Stats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    pub(crate) fn inc(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// A running simulation; its nodes stop heartbeating when it is shut down.
pub struct Sim {
    stats: Arc<Stats>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Sim {
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts `cfg.nodes` fake nodes, each registering, heartbeating and
/// watching on its own task, all over one pooled HTTP client.
pub fn start(cfg: SimConfig) -> Result<Sim, SimError> {
    let api = Arc::new(node::Api::new(&cfg.server, &cfg.token, cfg.nodes)?);
    let stats = Arc::new(Stats::default());
    let gate = Arc::new(tokio::sync::Semaphore::new(cfg.register_concurrency.max(1)));
    let cfg = Arc::new(cfg);
    let tasks = (0..cfg.nodes)
        .map(|i| {
            let n = node::FakeNode::new(&cfg, i, api.clone(), stats.clone());
            tokio::spawn(n.run(gate.clone()))
        })
        .collect();
    Ok(Sim { stats, tasks })
}
