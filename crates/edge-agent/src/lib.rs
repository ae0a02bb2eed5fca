//! The node agent: fingerprints the host, registers with the server,
//! heartbeats, watches its allocations with blocking queries and runs them
//! through the drivers it was given. It knows drivers only through the
//! `Driver` trait and the server only through its HTTP API.

mod artifact;
mod beneath;
mod checks;
mod data;
pub mod error;
mod fingerprint;
mod gc;
mod grpc;
mod health;
mod http;
mod lbtls;
mod networks;
mod pki;
mod restart;
mod runner;
pub mod state;
mod template;
mod tunnel;
mod usage;

pub use error::AgentError;

use edge_api::{
    AgentAlloc, AgentAllocChanges, AllocUpdate, Catalog, Client, GcLeftover, QueryOptions,
    RegisterRequest,
};
use edge_driver::Driver;
use edge_spec::{ClientStatus, DesiredStatus, Node, NodeResources, NodeStatus};
use runner::{AllocRunner, RunCtx};
use state::{LocalStore, SavedCatalog};
use std::collections::{BTreeMap, BTreeSet, HashMap};
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
    /// What that listener allows its clients.
    pub http_limits: edge_api::listen::Limits,
    pub reserved: NodeResources,
    pub log_max_bytes: u64,
    pub log_max_files: u32,
    /// The node's DNS server for `*.service.edge`, told to tasks as `EDGE_DNS_ADDR`.
    pub dns_addr: Option<SocketAddr>,
    /// Stop every task when the agent exits. Off by default: tasks outlive
    /// the agent and are re-attached by the next one.
    pub stop_tasks_on_exit: bool,
    /// How often leftovers no allocation owns are looked for.
    pub gc_interval: Duration,
    /// How long a leftover must have been seen before the periodic pass
    /// removes it.
    pub gc_grace: Duration,
    /// Serving from a saved catalog older than this is logged (it is served
    /// all the same); `None` never warns.
    pub catalog_stale_after: Option<Duration>,
    /// Bridge networking for `network { mode = "bridge" }` groups; `None`
    /// turns it off. When the node cannot do it (not root, no CNI plugins)
    /// the agent says why and runs without it.
    pub bridge: Option<edge_net::BridgeConfig>,
    /// `--host-volume NAME=PATH[:ro]`: directories groups may ask for by
    /// name; fingerprinted as `volume.host.NAME`.
    pub host_volumes: BTreeMap<String, HostVolume>,
    /// `--artifact-dir PATH`: where task artifacts with a `file://` source
    /// may come from; none, and such artifacts are refused.
    pub artifact_dirs: Vec<PathBuf>,
}

/// A directory of the node the operator offers to jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostVolume {
    pub path: PathBuf,
    pub read_only: bool,
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
            // Its requests carry no body; the connection cap only keeps
            // clients from using up the descriptors tasks need.
            http_limits: edge_api::listen::Limits {
                max_connections: 256,
                max_body_bytes: 64 * 1024,
                ..edge_api::listen::Limits::default()
            },
            reserved: NodeResources::default(),
            log_max_bytes: 10 * 1024 * 1024,
            log_max_files: 5,
            dns_addr: None,
            stop_tasks_on_exit: false,
            gc_interval: Duration::from_secs(60),
            gc_grace: Duration::from_secs(60),
            catalog_stale_after: None,
            bridge: None,
            host_volumes: BTreeMap::new(),
            artifact_dirs: Vec::new(),
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

/// Sends load reports as this node.
#[derive(Clone)]
pub struct LoadReporter {
    client: Client,
    node_id: String,
}

impl LoadReporter {
    pub async fn send(&self, report: &edge_api::LoadReport) -> Result<(), AgentError> {
        Ok(self.client.agent_load(&self.node_id, report).await?)
    }
}

pub struct AgentHandle {
    pub node_id: String,
    pub http_addr: SocketAddr,
    catalog: watch::Receiver<Arc<Catalog>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    agent: Arc<Agent>,
}

impl AgentHandle {
    /// The cluster's service catalog, kept current by a blocking watch. While
    /// the server is unreachable it is the last one seen (saved across
    /// restarts) with this node's own instances taken from local state.
    pub fn catalog(&self) -> watch::Receiver<Arc<Catalog>> {
        self.catalog.clone()
    }

    /// What sends the node's load balancer counts to the server, for the
    /// autoscaler.
    pub fn load_reporter(&self) -> LoadReporter {
        LoadReporter {
            client: self.agent.client.clone(),
            node_id: self.node_id.clone(),
        }
    }

    /// Removes what no allocation owns on this node now (`edge node gc`).
    pub async fn gc(&self) -> Vec<GcLeftover> {
        self.agent.gc.run(Duration::ZERO).await
    }

    /// Stops the agent. Its tasks keep running, as after a crash, and the
    /// next agent re-attaches to them; only with `stop_tasks_on_exit` are
    /// they stopped first. This is the one shutdown path of the agent.
    pub async fn shutdown(self) {
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
        let runners: Vec<AllocRunner> = self
            .agent
            .runners
            .lock()
            .await
            .drain()
            .map(|(_, r)| r)
            .collect();
        if self.agent.cfg.stop_tasks_on_exit {
            tracing::info!(
                allocations = runners.len(),
                "stopping every task before exit"
            );
            for r in &runners {
                r.stop();
            }
            futures_util::future::join_all(runners.into_iter().map(AllocRunner::join)).await;
        } else {
            tracing::info!(
                allocations = runners.len(),
                "agent stopping; tasks keep running and are re-attached on the next start"
            );
            futures_util::future::join_all(runners.into_iter().map(AllocRunner::detach)).await;
        }
        // What the runners last recorded (handles above all) is what the
        // next agent re-attaches from.
        self.agent.ctx.local.flush_async().await;
    }
}

struct Agent {
    cfg: AgentConfig,
    client: Client,
    ctx: Arc<RunCtx>,
    node: Mutex<Node>,
    runners: gc::Runners,
    drivers: Vec<Arc<dyn Driver>>,
    http_addr: SocketAddr,
    gc: gc::Collector,
    tls: Option<Arc<pki::NodeTls>>,
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
    let tls = pki::NodeTls::open(&cfg.server, &cfg.token, &cfg.data_dir, &node_id)?.map(Arc::new);
    let client = match &tls {
        Some(t) => t.client(&cfg.server)?,
        None => {
            let secret = edge_api::tls::JoinToken::parse(&cfg.token)?.secret;
            Client::new(&cfg.server, Some(secret))?
        }
    };
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
    for (name, v) in &cfg.host_volumes {
        edge_spec::check_name(edge_spec::NameKind::Volume, name).map_err(|e| {
            AgentError::Config {
                flag: "--host-volume",
                message: e.to_string(),
            }
        })?;
        if !v.path.is_dir() {
            return Err(AgentError::Config {
                flag: "--host-volume",
                message: format!("{name}={}: not a directory on this node", v.path.display()),
            });
        }
        let access = if v.read_only { "ro" } else { "rw" };
        attributes.insert(edge_spec::host_volume_attribute(name), access.to_string());
    }
    let bridge = cfg.bridge.clone().and_then(|b| {
        let name = b.bridge.clone();
        match edge_net::BridgeNetwork::new(b) {
            Ok(net) => {
                tracing::info!(bridge = %name, subnet = %net.config().subnet, "bridge networking is on");
                attributes.insert(edge_spec::BRIDGE_ATTRIBUTE.to_string(), "true".to_string());
                Some(Arc::new(net))
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "bridge networking is off on this node: groups with network mode \"bridge\" are not placed here"
                );
                None
            }
        }
    });
    let driver_infos = fingerprint::drivers(&drivers).await;
    fingerprint::with_drivers(&mut attributes, &driver_infos);
    let node = Node {
        id: node_id.clone(),
        name: name.clone(),
        datacenter: cfg.datacenter.clone(),
        address: cfg.address.clone(),
        status: NodeStatus::Initializing,
        status_description: String::new(),
        eligible: true,
        drain: false,
        revoked: false,
        attributes,
        meta: cfg.meta.clone(),
        resources: facts.resources,
        reserved: cfg.reserved,
        drivers: driver_infos,
        last_heartbeat: 0,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        create_index: 0,
        modify_index: 0,
    };
    // Runners render templates from the catalog from their start: the
    // saved one until the server's arrives.
    let saved = local.load_catalog();
    let (catalog_tx, catalog_rx) = watch::channel(Arc::new(
        saved
            .as_ref()
            .map(|s| s.catalog.clone())
            .unwrap_or_default(),
    ));
    let node_attributes = node.attributes.clone();
    let node_meta = node.meta.clone();
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
        bridge: bridge.clone(),
        host_volumes: cfg.host_volumes.clone(),
        artifact_dirs: cfg.artifact_dirs.clone(),
        artifact_http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default(),
        volumes_dir: cfg.data_dir.join("volumes"),
        api: client.clone(),
        alloc_data: Mutex::default(),
        catalog: catalog_rx.clone(),
        node_attributes,
        node_meta,
        template_env: Mutex::default(),
        network_sync: tokio::sync::Mutex::default(),
    });
    let runners: gc::Runners = Arc::default();
    let agent = Arc::new(Agent {
        gc: gc::Collector::new(drivers.clone(), runners.clone(), bridge),
        cfg,
        client,
        ctx,
        node: Mutex::new(node),
        runners,
        drivers,
        http_addr,
        tls: tls.clone(),
    });
    agent.restore().await;
    // DNS and the load balancer answer from the saved catalog at once; the
    // server's, when it answers, replaces it.
    if let Some(s) = &saved {
        let view = agent.local_view(&s.catalog).await;
        catalog_tx.send_replace(Arc::new(lbtls::rewrite(&agent.lb_tls_dir(), &view)));
    }
    let guard = match &tls {
        Some(t) => http::Guard::Tls(t.clone()),
        None => http::Guard::Token(edge_api::tls::JoinToken::parse(&agent.cfg.token)?.secret),
    };
    let gc_now: http::GcFn = {
        let agent = agent.clone();
        Arc::new(move || {
            let agent = agent.clone();
            Box::pin(async move { agent.gc.run(Duration::ZERO).await }) as http::GcFuture
        })
    };
    let app = http::router(&guard, agent.ctx.clone(), gc_now, agent.runners.clone());
    let mut tasks = vec![
        tokio::spawn(agent.clone().catalog_loop(catalog_tx, saved)),
        tokio::spawn(http::serve(
            listener,
            agent.cfg.http_limits.clone(),
            guard,
            app.clone(),
        )),
        tokio::spawn({
            let agent = agent.clone();
            let tls = tls.clone();
            async move {
                // A dial before the node has its certificate would leave a
                // connection without it in the client's pool, which the
                // node routes then refuse.
                if let Some(t) = &tls {
                    let _ = t.ready().wait_for(|r| *r).await;
                }
                tunnel::keep_open(
                    move || {
                        let (agent, app) = (agent.clone(), app.clone());
                        async move { tunnel::session(&agent.client, &agent.ctx.node_id, app).await }
                    },
                    tunnel::Backoff::new(Duration::from_millis(500), Duration::from_secs(30)),
                )
                .await
            }
        }),
        tokio::spawn(agent.clone().server_loop()),
        tokio::spawn(agent.clone().report_loop()),
        tokio::spawn(agent.clone().fingerprint_loop()),
        tokio::spawn(agent.clone().gc_loop()),
        tokio::spawn(agent.clone().network_loop()),
        tokio::spawn(agent.clone().usage_loop()),
    ];
    if let Some(t) = tls {
        tasks.push(tokio::spawn(t.renew_loop(agent.client.clone())));
    }
    tracing::info!(node = %node_id, http = %http_addr, "edge agent started");
    Ok(AgentHandle {
        node_id,
        http_addr,
        catalog: catalog_rx,
        tasks,
        agent,
    })
}

/// Aborts the task when dropped: a helper task (heartbeat, catalog saver,
/// an allocation's checks and stop gate) must not outlive what started it,
/// so a detached runner or an aborted loop takes its helpers along.
pub(crate) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
        let scheme = match &self.tls {
            Some(t) => {
                t.ensure().await?;
                "https"
            }
            None => "http",
        };
        let resp = self
            .client
            .agent_register(&RegisterRequest {
                node: self.node(),
                http_addr: Some(format!("{scheme}://{}", self.http_addr)),
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
            let beat = AbortOnDrop(tokio::spawn(
                self.clone().heartbeat_loop(Duration::from_millis(ttl)),
            ));
            let res = self.watch_loop().await;
            drop(beat);
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
            // Each answer after the first carries only what changed since
            // the one before, with the ids of all the node holds.
            match self
                .client
                .agent_alloc_changes(&self.ctx.node_id, index, q)
                .await
            {
                Ok((changes, meta)) => {
                    failures = 0;
                    index = meta.index;
                    self.reconcile(changes).await;
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

    /// Makes the running set match the server's view of this node: the
    /// changed allocations are applied, and, when the answer lists the
    /// node's ids, any not among them is stopped.
    async fn reconcile(&self, changes: AgentAllocChanges) {
        let mut runners = self.runners.lock().await;
        let wanted: Option<std::collections::HashSet<String>> =
            changes.ids.map(|ids| ids.into_iter().collect());
        let listed = |id: &String| wanted.as_ref().is_none_or(|w| w.contains(id));
        for AgentAlloc { alloc, job } in changes.changed {
            // Allocation ids name directories: anything but one plain path
            // component would reach outside the agent's data dir.
            if !edge_driver::is_plain_name(&alloc.id) {
                tracing::warn!(alloc = %alloc.id, "ignoring an allocation whose id is not a plain name");
                continue;
            }
            if !listed(&alloc.id) {
                continue;
            }
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
        let gone: Vec<String> = runners.keys().filter(|k| !listed(k)).cloned().collect();
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
                    tracing::warn!(error = %e, "server rejected allocation updates");
                }
                Err(e) if e.status() == Some(404) && !unknown_allocs(&e).is_empty() => {
                    // Allocations the server no longer knows (collected while
                    // this node was away): the server applied nothing, so the
                    // others go again without them.
                    let unknown = unknown_allocs(&e);
                    tracing::warn!(allocations = ?unknown, "server does not know these allocations; dropping their updates");
                    self.ctx.reporter.put_back(
                        updates
                            .into_iter()
                            .filter(|u| !unknown.contains(&u.id))
                            .collect(),
                    );
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

    /// `last` with this node's instances taken from what its runners know.
    async fn local_view(&self, last: &Catalog) -> Catalog {
        let views: Vec<_> = {
            let runners = self.runners.lock().await;
            runners.values().filter_map(AllocRunner::view).collect()
        };
        edge_api::catalog::with_local_view(
            last,
            &self.ctx.node_id,
            &self.ctx.node_name,
            &self.ctx.address,
            views
                .iter()
                .map(|(alloc, group)| edge_api::catalog::LocalInstance { alloc, group }),
        )
    }

    /// Follows the server's catalog with a blocking watch. While the server
    /// cannot be reached, serves the last catalog seen with this node's own
    /// instances from local state (a task that stopped or fails its checks is
    /// withdrawn, one restarted here serves again), refreshed every second.
    async fn catalog_loop(
        self: Arc<Self>,
        tx: watch::Sender<Arc<Catalog>>,
        saved: Option<SavedCatalog>,
    ) {
        let (save_tx, save_rx) = watch::channel(None::<SavedCatalog>);
        let _saver = AbortOnDrop(tokio::spawn(save_catalogs(self.ctx.local.clone(), save_rx)));
        let mut received_at = saved.as_ref().map(|s| s.received_at);
        let mut last = saved.map(|s| Arc::new(s.catalog));
        let mut index = 0;
        let mut online = false;
        let mut stale_logged = false;
        let mut backoff = Duration::from_millis(200);
        // A connection opened before the node has its certificate would be
        // pooled without it and taken up by the node routes: none is opened.
        if let Some(t) = &self.tls {
            let _ = t.ready().wait_for(|r| *r).await;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let q = QueryOptions::blocking(index, Duration::from_secs(30));
            let fetch = self.client.catalog(q);
            tokio::pin!(fetch);
            let res = loop {
                tokio::select! {
                    r = &mut fetch => break r,
                    _ = tick.tick() => if !online {
                        self.publish_offline(&tx, last.as_deref()).await;
                    }
                }
            };
            match res {
                Ok((cat, meta)) => {
                    backoff = Duration::from_millis(200);
                    if !online {
                        tracing::info!("catalog from the server again");
                        online = true;
                        stale_logged = false;
                    }
                    if meta.index != index || index == 0 {
                        index = meta.index;
                        let cat = Arc::new(cat);
                        let now = now_ms();
                        received_at = Some(now);
                        save_tx.send_replace(Some(SavedCatalog {
                            received_at: now,
                            catalog: (*cat).clone(),
                        }));
                        last = Some(cat.clone());
                        let dir = self.lb_tls_dir();
                        lbtls::materialize(&self.client, &self.ctx.node_id, &dir, &cat).await;
                        tx.send_replace(Arc::new(lbtls::rewrite(&dir, &cat)));
                    }
                }
                Err(e) => {
                    if online {
                        tracing::warn!(error = %e, "catalog watch failed; serving the last catalog with this node's instances from local state");
                        online = false;
                    }
                    if let (Some(limit), Some(at), false) =
                        (self.cfg.catalog_stale_after, received_at, stale_logged)
                    {
                        let age = Duration::from_millis(now_ms().saturating_sub(at).max(0) as u64);
                        if age > limit {
                            tracing::warn!(age = ?age, limit = ?limit, "serving a catalog older than the staleness limit");
                            stale_logged = true;
                        }
                    }
                    self.publish_offline(&tx, last.as_deref()).await;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn publish_offline(&self, tx: &watch::Sender<Arc<Catalog>>, last: Option<&Catalog>) {
        let empty = Catalog::default();
        let view = lbtls::rewrite(
            &self.lb_tls_dir(),
            &self.local_view(last.unwrap_or(&empty)).await,
        );
        tx.send_if_modified(|cur| {
            if cur.services == view.services {
                return false;
            }
            *cur = Arc::new(view);
            true
        });
    }

    /// The tmpfs where published services' TLS secrets are kept.
    fn lb_tls_dir(&self) -> std::path::PathBuf {
        self.cfg.data_dir.join("lb-tls")
    }

    /// Looks for leftovers at start and every `gc_interval`.
    async fn gc_loop(self: Arc<Self>) {
        loop {
            self.gc.run(self.cfg.gc_grace).await;
            tokio::time::sleep(self.cfg.gc_interval).await;
        }
    }

    /// Keeps the node's named networks on the server's list (peers that
    /// come and go, networks no longer used); only with bridge networking.
    async fn network_loop(self: Arc<Self>) {
        if self.ctx.bridge.is_none() {
            return;
        }
        // As the catalog loop: no connection before the node certificate,
        // or the pool would hand the node routes one without it.
        if let Some(t) = &self.tls {
            let _ = t.ready().wait_for(|r| *r).await;
        }
        let mut last_error = None;
        loop {
            let in_use: BTreeSet<String> = {
                let runners = self.runners.lock().await;
                runners.values().flat_map(|r| r.network_keys()).collect()
            };
            let result = networks::sync(&self.ctx, Some(&in_use)).await;
            // Said once per cause: a server away for an hour is one line.
            match result {
                Ok(()) => last_error = None,
                Err(e) if last_error.as_ref() != Some(&e) => {
                    tracing::warn!(error = %e, "named networks not brought up to date");
                    last_error = Some(e);
                }
                Err(_) => {}
            }
            tokio::time::sleep(networks::SYNC_EVERY).await;
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
                fingerprint::with_drivers(&mut n.attributes, &drivers);
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

/// Saves each new catalog, at most one a second: a busy cluster changes its
/// catalog often, and only the newest matters after a restart.
async fn save_catalogs(local: LocalStore, mut rx: watch::Receiver<Option<SavedCatalog>>) {
    while rx.changed().await.is_ok() {
        let Some(c) = rx.borrow_and_update().clone() else {
            continue;
        };
        let local = local.clone();
        let saved = tokio::task::spawn_blocking(move || local.save_catalog(&c)).await;
        if let Ok(Err(e)) = saved {
            tracing::warn!(error = %e, "cannot save the catalog");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The ids a 404 `unknown allocation "a", "b"` names (the server's wording).
fn unknown_allocs(e: &edge_api::ApiError) -> Vec<String> {
    let Some(rest) = e
        .message()
        .and_then(|m| m.strip_prefix("unknown allocation "))
    else {
        return Vec::new();
    };
    rest.split(", ")
        .filter_map(|q| q.strip_prefix('"')?.strip_suffix('"'))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, message: &str) -> edge_api::ApiError {
        edge_api::ApiError::Status {
            method: "POST".into(),
            path: "/v1/agent/allocs/n".into(),
            status: code,
            message: message.into(),
        }
    }

    #[test]
    fn unknown_allocations_are_read_from_the_servers_404() {
        assert_eq!(
            unknown_allocs(&status(404, r#"unknown allocation "a1", "b-2""#)),
            ["a1", "b-2"]
        );
        // An unknown node is not an unknown allocation: everything is retried.
        assert!(unknown_allocs(&status(404, r#"node "n" not found"#)).is_empty());
    }
}
