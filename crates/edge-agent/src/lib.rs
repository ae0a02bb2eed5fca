//! The node agent: fingerprints the host, registers with the server,
//! heartbeats, watches its allocations with blocking queries and runs them
//! through the drivers it was given. It knows drivers only through the
//! `Driver` trait and the server only through its HTTP API.

mod checks;
pub mod error;
mod fingerprint;
mod http;
mod restart;
mod runner;
pub mod state;

pub use error::AgentError;
pub use runner::interpolate;

use edge_api::{AgentAlloc, AllocUpdate, Catalog, Client, QueryOptions, RegisterRequest};
use edge_driver::Driver;
use edge_spec::{ClientStatus, DesiredStatus, Node, NodeResources, NodeStatus};
use runner::{AllocRunner, RunCtx};
use state::LocalStore;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub server: String,
    pub token: String,
    pub data_dir: PathBuf,
    /// Node name; the hostname when empty.
    pub name: String,
    pub datacenter: String,
    /// Address other nodes and clients reach this node's services on.
    pub address: String,
    pub meta: BTreeMap<String, String>,
    /// Where the agent serves logs to the server.
    pub http_bind: SocketAddr,
    pub reserved: NodeResources,
    pub log_max_bytes: u64,
    pub log_max_files: u32,
    /// The node's DNS server for `*.service.edge`, told to tasks as `EDGE_DNS_ADDR`.
    pub dns_addr: Option<SocketAddr>,
}

impl AgentConfig {
    pub fn new(server: String, token: String, data_dir: PathBuf) -> AgentConfig {
        AgentConfig {
            server,
            token,
            data_dir,
            name: String::new(),
            datacenter: "dc1".to_string(),
            address: "127.0.0.1".to_string(),
            meta: BTreeMap::new(),
            http_bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            reserved: NodeResources::default(),
            log_max_bytes: 10 * 1024 * 1024,
            log_max_files: 5,
            dns_addr: None,
        }
    }
}

/// Alloc updates waiting to reach the server; only the newest per allocation is kept.
#[derive(Default)]
pub struct Reporter {
    pending: Mutex<HashMap<String, AllocUpdate>>,
    notify: Notify,
}

impl Reporter {
    pub fn push(&self, u: AllocUpdate) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(u.id.clone(), u);
        self.notify.notify_one();
    }

    fn take(&self) -> Vec<AllocUpdate> {
        let mut m = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        m.drain().map(|(_, v)| v).collect()
    }

    fn put_back(&self, updates: Vec<AllocUpdate>) {
        let mut m = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for u in updates {
            m.entry(u.id.clone()).or_insert(u);
        }
    }
}

pub struct AgentHandle {
    pub node_id: String,
    pub http_addr: SocketAddr,
    catalog: watch::Receiver<Arc<Catalog>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl AgentHandle {
    /// The cluster's service catalog, kept current by a blocking watch; the
    /// last one seen stays while the server is unreachable.
    pub fn catalog(&self) -> watch::Receiver<Arc<Catalog>> {
        self.catalog.clone()
    }

    /// Stops the agent's loops; tasks it started keep running (as after a crash).
    pub async fn shutdown(self) {
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}

struct Agent {
    cfg: AgentConfig,
    client: Client,
    ctx: Arc<RunCtx>,
    node: Mutex<Node>,
    runners: tokio::sync::Mutex<HashMap<String, AllocRunner>>,
    drivers: Vec<Arc<dyn Driver>>,
    http_addr: SocketAddr,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Starts the agent: local state first (re-attach or restart what it ran,
/// even with the server unreachable), then the server loops.
pub async fn start(
    cfg: AgentConfig,
    drivers: Vec<Arc<dyn Driver>>,
) -> Result<AgentHandle, AgentError> {
    let local = LocalStore::open(&cfg.data_dir)?;
    let node_id = local.node_id()?;
    let facts = fingerprint::host();
    let name = if cfg.name.is_empty() {
        facts.hostname.clone()
    } else {
        cfg.name.clone()
    };
    let client = Client::new(&cfg.server, Some(cfg.token.clone()))?;
    let listener = tokio::net::TcpListener::bind(cfg.http_bind)
        .await
        .map_err(|e| AgentError::Bind {
            addr: cfg.http_bind.to_string(),
            source: e,
        })?;
    let http_addr = listener.local_addr().map_err(|e| AgentError::Bind {
        addr: cfg.http_bind.to_string(),
        source: e,
    })?;
    let mut attributes = facts.attributes.clone();
    attributes.insert("unique.network.ip-address".to_string(), cfg.address.clone());
    let node = Node {
        id: node_id.clone(),
        name: name.clone(),
        datacenter: cfg.datacenter.clone(),
        address: cfg.address.clone(),
        status: NodeStatus::Initializing,
        status_description: String::new(),
        eligible: true,
        drain: false,
        attributes,
        meta: cfg.meta.clone(),
        resources: facts.resources,
        reserved: cfg.reserved,
        drivers: fingerprint::drivers(&drivers).await,
        last_heartbeat: 0,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        create_index: 0,
        modify_index: 0,
    };
    let ctx = Arc::new(RunCtx {
        drivers: drivers
            .iter()
            .map(|d| (d.name().to_string(), d.clone()))
            .collect(),
        local,
        reporter: Arc::new(Reporter::default()),
        node_id: node_id.clone(),
        node_name: name,
        datacenter: cfg.datacenter.clone(),
        address: cfg.address.clone(),
        log_max_bytes: cfg.log_max_bytes,
        log_max_files: cfg.log_max_files,
        dns_addr: cfg.dns_addr,
    });
    let agent = Arc::new(Agent {
        cfg,
        client,
        ctx,
        node: Mutex::new(node),
        runners: tokio::sync::Mutex::new(HashMap::new()),
        drivers,
        http_addr,
    });
    agent.restore().await;
    let (catalog_tx, catalog_rx) = watch::channel(Arc::new(Catalog::default()));
    let tasks = vec![
        tokio::spawn(agent.clone().catalog_loop(catalog_tx)),
        tokio::spawn(http::serve(
            listener,
            agent.cfg.token.clone(),
            agent.ctx.clone(),
        )),
        tokio::spawn(agent.clone().server_loop()),
        tokio::spawn(agent.clone().report_loop()),
        tokio::spawn(agent.clone().fingerprint_loop()),
    ];
    tracing::info!(node = %node_id, http = %http_addr, "edge agent started");
    Ok(AgentHandle {
        node_id,
        http_addr,
        catalog: catalog_rx,
        tasks,
    })
}

impl Agent {
    /// Re-attaches to (or restarts) every allocation local state says should run.
    async fn restore(&self) {
        let mut runners = self.runners.lock().await;
        for la in self.ctx.local.load_all() {
            let live = la.alloc.desired_status == DesiredStatus::Run
                && !la.alloc.client_status.is_terminal();
            if live {
                tracing::info!(alloc = %la.alloc.id, "restoring allocation from local state");
                runners.insert(
                    la.alloc.id.clone(),
                    AllocRunner::spawn(self.ctx.clone(), la),
                );
            }
        }
    }

    fn node(&self) -> Node {
        self.node.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn register(&self) -> Result<u64, AgentError> {
        let resp = self
            .client
            .agent_register(&RegisterRequest {
                node: self.node(),
                http_addr: Some(format!("http://{}", self.http_addr)),
            })
            .await;
        match resp {
            Ok(r) => Ok(r.heartbeat_ttl_ms),
            Err(e) if e.status() == Some(403) => Err(AgentError::Refused(e.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Register, then heartbeat and watch allocations; on any loss of the
    /// server, back off and start over. Running tasks are never touched
    /// because the server is unreachable.
    async fn server_loop(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(200);
        // A restarted server waits about two TTLs for known nodes before it
        // marks them down, so retries must stay well inside one TTL.
        let mut max_backoff = Duration::from_secs(10);
        loop {
            let ttl = match self.register().await {
                Ok(ttl) => ttl,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "cannot register with server");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(max_backoff);
                    continue;
                }
            };
            backoff = Duration::from_millis(200);
            max_backoff = (Duration::from_millis(ttl) / 3).clamp(backoff, Duration::from_secs(10));
            let beat = tokio::spawn(self.clone().heartbeat_loop(Duration::from_millis(ttl)));
            let res = self.watch_loop().await;
            beat.abort();
            tracing::warn!(error = %res, "lost the server; registering again");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn heartbeat_loop(self: Arc<Self>, ttl: Duration) {
        let every = (ttl / 3).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            match self.client.agent_heartbeat(&self.ctx.node_id).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {
                    tracing::warn!("server does not know this node: registering again");
                    let _ = self.register().await;
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            }
        }
    }

    /// Returns only on error (the reason).
    async fn watch_loop(&self) -> AgentError {
        let mut index = 0;
        let mut failures = 0u32;
        loop {
            let q = QueryOptions::blocking(index, Duration::from_secs(30));
            match self.client.agent_allocs(&self.ctx.node_id, q).await {
                Ok((allocs, meta)) => {
                    failures = 0;
                    index = meta.index;
                    self.reconcile(allocs).await;
                }
                Err(e) if e.is_not_found() || e.status() == Some(403) => return e.into(),
                Err(e) => {
                    failures += 1;
                    if failures >= 3 {
                        return e.into();
                    }
                    tokio::time::sleep(Duration::from_millis(500 * failures as u64)).await;
                }
            }
        }
    }

    /// Makes the running set match the server's view of this node.
    async fn reconcile(&self, allocs: Vec<AgentAlloc>) {
        let mut runners = self.runners.lock().await;
        let mut wanted = std::collections::HashSet::new();
        for AgentAlloc { alloc, job } in allocs {
            wanted.insert(alloc.id.clone());
            let stop = alloc.desired_status == DesiredStatus::Stop
                || alloc.client_status == ClientStatus::Lost;
            match runners.get(&alloc.id) {
                Some(r) if stop => r.stop(),
                Some(r) => r.update(&self.ctx, alloc, job),
                None if stop || alloc.client_status.is_terminal() => {}
                None => {
                    tracing::info!(alloc = %alloc.id, job = %alloc.job_id, "starting allocation");
                    let id = alloc.id.clone();
                    let r = AllocRunner::spawn(self.ctx.clone(), runner::new_local(alloc, job));
                    runners.insert(id, r);
                }
            }
        }
        // Allocations the server no longer lists (collected, or never known
        // to it): stop them and free their directories once done.
        let gone: Vec<String> = runners
            .keys()
            .filter(|k| !wanted.contains(*k))
            .cloned()
            .collect();
        for id in gone {
            if let Some(r) = runners.remove(&id) {
                r.stop();
                let local = self.ctx.local.clone();
                tokio::spawn(async move {
                    r.join().await;
                    local.remove(&id);
                });
            }
        }
    }

    async fn report_loop(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let updates = self.ctx.reporter.take();
            if updates.is_empty() {
                self.ctx.reporter.notify.notified().await;
                // Coalesce bursts (every task of an allocation starting at once).
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            match self
                .client
                .agent_update_allocs(&self.ctx.node_id, updates.clone())
                .await
            {
                Ok(_) => backoff = Duration::from_millis(100),
                Err(e) if e.status() == Some(400) => {
                    // Allocations the server does not know (collected while we
                    // were away): nothing to retry.
                    tracing::warn!(error = %e, "server rejected allocation updates");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot report allocation state; will retry");
                    self.ctx.reporter.put_back(updates);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn catalog_loop(self: Arc<Self>, tx: watch::Sender<Arc<Catalog>>) {
        let mut index = 0;
        let mut backoff = Duration::from_millis(200);
        loop {
            let q = QueryOptions::blocking(index, Duration::from_secs(30));
            match self.client.catalog(q).await {
                Ok((cat, meta)) => {
                    backoff = Duration::from_millis(200);
                    if meta.index != index || index == 0 {
                        index = meta.index;
                        tx.send_replace(Arc::new(cat));
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "catalog watch failed; keeping the last catalog");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Driver health changes (containerd going away, say) reach the server.
    async fn fingerprint_loop(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_secs(30)).await;
            let drivers = fingerprint::drivers(&self.drivers).await;
            let changed = {
                let mut n = self.node.lock().unwrap_or_else(|e| e.into_inner());
                let changed = n.drivers != drivers;
                n.drivers = drivers;
                changed
            };
            if changed {
                tracing::info!("driver health changed: updating the server");
                if let Err(e) = self.register().await {
                    tracing::warn!(error = %e, "cannot update node");
                }
            }
        }
    }
}
