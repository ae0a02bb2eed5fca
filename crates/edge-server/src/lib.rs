//! The control plane: owns the store, serves `/v1`, turns evaluations into
//! plans with the scheduler, applies them, and watches node heartbeats.

mod acl;
mod auth;
mod autoscale;
mod catalog;
mod clock;
mod deployments;
pub mod error;
mod extract;
mod heartbeat;
mod http;
mod keyring;
mod metrics;
mod models;
mod namespaces;
mod networks;
mod objects;
mod ops;
mod periodic;
mod pki;
mod routes;
mod tls;
mod token;
mod tunnel;
mod volumes;
mod worker;

pub use clock::Clock;
pub use error::ServerError;
pub use routes::ROUTES;

use edge_sched::SchedulerConfig;
use edge_store::{GcConfig, Store};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub bind: SocketAddr,
    /// How long a node may go without a heartbeat before it is marked down.
    pub heartbeat_ttl: Duration,
    pub scheduler: SchedulerConfig,
    pub gc_interval: Duration,
    pub gc: GcConfig,
    /// What the API listener allows its clients: connections, header and
    /// body deadlines, body size.
    pub listen: edge_api::listen::Limits,
    /// Serve the API over TLS with the cluster CA's certificates, and
    /// require nodes to prove who they are with theirs (mutual TLS). The
    /// binary turns it on whenever the server binds a non-loopback address.
    pub tls: bool,
    /// More names (DNS or IP) for the server certificate, beside this
    /// host's name and addresses.
    pub tls_sans: Vec<String>,
    /// How long a node certificate is valid; agents renew at 2/3 of it.
    pub node_cert_ttl: Duration,
    /// The operator's own certificate and key (PEM files) for users of the
    /// API; the cluster's own clients still get the cluster certificate.
    pub user_cert: Option<(PathBuf, PathBuf)>,
    /// The drivers' checks of task `config` blocks, applied to every job
    /// submitted or planned; the binary builds them from the driver crates.
    pub driver_configs: edge_spec::DriverConfigs,
    /// Require an ACL token on every user route (`acl.rs`). The binary
    /// turns it on whenever the server binds a non-loopback address.
    pub acl: bool,
    /// How named networks get their subnets, VXLAN ids and node slices.
    pub overlay: edge_spec::OverlayPool,
    /// The clock periodic jobs launch by; tests set one by hand.
    pub clock: Clock,
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf, bind: SocketAddr) -> ServerConfig {
        ServerConfig {
            data_dir,
            bind,
            heartbeat_ttl: Duration::from_secs(10),
            scheduler: SchedulerConfig::default(),
            gc_interval: Duration::from_secs(300),
            gc: GcConfig::default(),
            listen: edge_api::listen::Limits::default(),
            tls: false,
            tls_sans: Vec::new(),
            node_cert_ttl: Duration::from_secs(24 * 3600),
            user_cert: None,
            driver_configs: edge_spec::DriverConfigs::default(),
            acl: false,
            overlay: edge_spec::OverlayPool::default(),
            clock: Clock::system(),
        }
    }
}

/// Shared state of a running server.
pub struct Server {
    store: Arc<Store>,
    cfg: ServerConfig,
    /// The join token's secret; rotated in place.
    secret: std::sync::RwLock<String>,
    pki: pki::Pki,
    /// TLS for calls to agents (logs, node GC), when the cluster uses TLS.
    agent_tls: Option<rustls::ClientConfig>,
    evals_ready: Notify,
    heartbeats: heartbeat::Heartbeats,
    metrics: metrics::Metrics,
    catalog: catalog::CatalogCache,
    autoscaler: autoscale::Autoscaler,
    http: reqwest::Client,
    job_json: http::JobJsonCache,
    tunnels: Arc<tunnel::Tunnels>,
    /// Seals secrets at rest.
    keyring: keyring::Keyring,
    /// One keyring rotation at a time.
    keyring_rotation: tokio::sync::Mutex<()>,
    /// Wakes the periodic launch loop: a job was registered.
    periodic_changed: Notify,
    /// The clock time of the launch loop's last look, once its launches
    /// are committed.
    periodic_seen: tokio::sync::watch::Sender<i64>,
}

/// A started server; dropping it does not stop it, `shutdown` does.
pub struct ServerHandle {
    pub addr: SocketAddr,
    /// The join token as agents take it: `K10<CA fingerprint>::<secret>`.
    pub token: String,
    /// The API's URL: `https://` when the server speaks TLS.
    pub url: String,
    pub server: Arc<Server>,
    shutdown: Arc<Notify>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ServerHandle {
    pub async fn shutdown(self) {
        self.shutdown.notify_waiters();
        self.server.tunnels.close_all();
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Server {
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The join token as agents take it: `K10<CA fingerprint>::<secret>`.
    pub fn token(&self) -> String {
        edge_api::tls::JoinToken::format(self.pki.fingerprint(), &self.secret())
    }

    pub(crate) fn secret(&self) -> String {
        self.secret
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Makes a new join secret; certificates issued before stay valid.
    pub(crate) fn rotate_token(&self) -> Result<String, ServerError> {
        let secret = token::new_secret();
        token::save(&self.cfg.data_dir, self.pki.fingerprint(), &secret)?;
        *self.secret.write().unwrap_or_else(|e| e.into_inner()) = secret;
        tracing::info!("join token rotated");
        Ok(self.token())
    }

    pub(crate) fn is_revoked(s: &edge_store::State, node: &str) -> bool {
        s.nodes.get(node).is_some_and(|n| n.revoked)
    }

    /// The cluster CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        self.pki.ca_pem()
    }

    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    /// Resolves once the periodic launch loop has looked at the clock at
    /// `at_ms` or later and committed what was due then.
    pub async fn periodic_seen(&self, at_ms: i64) {
        let mut rx = self.periodic_seen.subscribe();
        let _ = rx.wait_for(|t| *t >= at_ms).await;
    }

    /// How many nodes have their tunnel open to this server.
    pub fn tunnels_open(&self) -> usize {
        self.tunnels.count()
    }
}

/// Opens the store, binds the API and starts the background loops.
pub async fn start(cfg: ServerConfig) -> Result<ServerHandle, ServerError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| ServerError::Io {
        action: "create data dir",
        path: cfg.data_dir.display().to_string(),
        source: e,
    })?;
    {
        // The database, the CA key and the join token live here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(0o700)).map_err(
            |e| ServerError::Io {
                action: "restrict data dir",
                path: cfg.data_dir.display().to_string(),
                source: e,
            },
        )?;
    }
    let pki = {
        let (dir, sans) = (cfg.data_dir.clone(), cfg.tls_sans.clone());
        tokio::task::spawn_blocking(move || pki::Pki::load_or_create(&dir, &sans))
            .await
            .map_err(|e| ServerError::Internal(format!("cluster PKI: {e}")))??
    };
    let secret = token::load_or_create(&cfg.data_dir, pki.fingerprint())?;
    let keyring = keyring::Keyring::open(&cfg.data_dir, now_ms())?;
    // Migrations and loading the whole state are SQLite reads and writes,
    // long on a big file: they stay off the runtime's workers, which may
    // already serve others (an agent in the same process).
    let path = cfg.data_dir.join("edge.db");
    let store = tokio::task::spawn_blocking(move || Store::open(&path))
        .await
        .map_err(|e| ServerError::Internal(format!("open store: {e}")))??;
    let store = Arc::new(store);
    let listener = listen(cfg.bind).map_err(|e| ServerError::Bind {
        addr: cfg.bind.to_string(),
        source: e,
    })?;
    let addr = listener.local_addr().map_err(|e| ServerError::Bind {
        addr: cfg.bind.to_string(),
        source: e,
    })?;
    let agent_tls = if cfg.tls {
        Some(pki.agent_client_config()?)
    } else {
        None
    };
    let tls_config = match (&cfg.user_cert, cfg.tls) {
        (_, true) => Some(pki.server_config(cfg.user_cert.as_ref())?),
        (Some(_), false) => {
            return Err(ServerError::BadRequest(
                "--tls-cert needs TLS: bind a non-loopback address or pass --tls".to_string(),
            ));
        }
        (None, false) => None,
    };
    let server = Arc::new(Server {
        store,
        secret: std::sync::RwLock::new(secret),
        pki,
        agent_tls,
        evals_ready: Notify::new(),
        heartbeats: heartbeat::Heartbeats::default(),
        metrics: metrics::Metrics::new(),
        catalog: catalog::CatalogCache::default(),
        autoscaler: autoscale::Autoscaler::default(),
        job_json: http::JobJsonCache::default(),
        tunnels: Arc::default(),
        keyring,
        keyring_rotation: tokio::sync::Mutex::new(()),
        periodic_changed: Notify::new(),
        periodic_seen: tokio::sync::watch::Sender::new(i64::MIN),
        http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ServerError::BadRequest(format!("http client: {e}")))?,
        cfg,
    });
    server.heartbeats.arm_known_nodes(&server);
    let shutdown = Arc::new(Notify::new());
    let app = http::router(server.clone());
    let sd = shutdown.clone();
    let limits = server.cfg.listen.clone();
    let shutdown_requested = async move { sd.notified().await };
    let mut tasks = vec![match tls_config {
        Some(config) => tokio::spawn(tls::serve(
            listener,
            limits,
            config,
            server.store.clone(),
            app,
            shutdown_requested,
        )),
        None => tokio::spawn(edge_api::listen::serve(
            listener,
            limits,
            app,
            shutdown_requested,
        )),
    }];
    tasks.push(tokio::spawn(worker::run(server.clone())));
    tasks.push(tokio::spawn(heartbeat::run(server.clone())));
    tasks.push(tokio::spawn(gc_loop(server.clone())));
    tasks.push(tokio::spawn(periodic::run(server.clone())));
    tasks.push(tokio::spawn(autoscale::run(server.clone())));
    let scheme = if server.cfg.tls { "https" } else { "http" };
    tracing::info!(%addr, tls = server.cfg.tls, acl = server.cfg.acl, "edge server listening");
    acl::log_bootstrap_hint(&server);
    Ok(ServerHandle {
        addr,
        token: server.token(),
        url: format!("{scheme}://{addr}"),
        server,
        shutdown,
        tasks,
    })
}

async fn gc_loop(server: Arc<Server>) {
    let mut tick = tokio::time::interval(server.cfg.gc_interval);
    tick.tick().await;
    loop {
        tick.tick().await;
        match server.store.gc(&server.cfg.gc, now_ms()).await {
            Ok(r) => tracing::debug!(?r, "gc done"),
            Err(e) => tracing::warn!(error = %e, "gc failed"),
        }
        let now = now_ms();
        let expired = server
            .store
            .commit(move |s: &edge_store::State| {
                let b = ops::acl::expired_tokens(s, now);
                let n = b.delete_acl_tokens.len();
                Ok::<_, ServerError>((b, n))
            })
            .await;
        match expired {
            Ok((0, _)) => {}
            Ok((n, _)) => tracing::info!(tokens = n, "deleted expired ACL tokens"),
            Err(e) => tracing::warn!(error = %e, "cannot delete expired ACL tokens"),
        }
        let age = i64::try_from(server.cfg.gc.alloc_age.as_millis()).unwrap_or(i64::MAX);
        let children = server
            .store
            .commit(move |s: &edge_store::State| {
                let b = ops::periodic::expired_children(s, now, age);
                let n = b.purge_jobs.len();
                Ok::<_, ServerError>((b, n))
            })
            .await;
        match children {
            Ok((0, _)) => {}
            Ok((n, _)) => tracing::info!(jobs = n, "purged ended periodic and dispatched children"),
            Err(e) => tracing::warn!(error = %e, "cannot purge ended children"),
        }
    }
}

/// Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Connections the kernel queues for the server before it accepts them.
/// Thousands of agents reconnect at once after a server restart or a
/// network split heals; tokio's default of 1,024 overflowed under 10,000
/// simulated nodes, and the kernel then reset connections (a job's POST
/// among them). The kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 8192;

fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind`: a restarted server binds its port at once,
    // whatever connections of the last one linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
