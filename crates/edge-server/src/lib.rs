//! The control plane: owns the store, serves `/v1`, turns evaluations into
//! plans with the scheduler, applies them, and watches node heartbeats.

mod catalog;
mod deployments;
pub mod error;
mod extract;
mod heartbeat;
mod http;
mod metrics;
mod ops;
mod routes;
mod token;
mod worker;

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
    /// The join token; read from or written to `data_dir/token` when `None`.
    pub token: Option<String>,
    /// The drivers' checks of task `config` blocks, applied to every job
    /// submitted or planned; the binary builds them from the driver crates.
    pub driver_configs: edge_spec::DriverConfigs,
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
            token: None,
            driver_configs: edge_spec::DriverConfigs::default(),
        }
    }
}

/// Shared state of a running server.
pub struct Server {
    store: Arc<Store>,
    cfg: ServerConfig,
    token: String,
    evals_ready: Notify,
    heartbeats: heartbeat::Heartbeats,
    metrics: metrics::Metrics,
    catalog: catalog::CatalogCache,
    http: reqwest::Client,
    job_json: http::JobJsonCache,
}

/// A started server; dropping it does not stop it, `shutdown` does.
pub struct ServerHandle {
    pub addr: SocketAddr,
    pub token: String,
    pub server: Arc<Server>,
    shutdown: Arc<Notify>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ServerHandle {
    pub async fn shutdown(self) {
        self.shutdown.notify_waiters();
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

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn config(&self) -> &ServerConfig {
        &self.cfg
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
        // The database and the join token live here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(0o700)).map_err(
            |e| ServerError::Io {
                action: "restrict data dir",
                path: cfg.data_dir.display().to_string(),
                source: e,
            },
        )?;
    }
    let token = match &cfg.token {
        Some(t) => t.clone(),
        None => token::load_or_create(&cfg.data_dir)?,
    };
    // Migrations and loading the whole state are SQLite reads and writes,
    // long on a big file: they stay off the runtime's workers, which may
    // already serve others (an agent in the same process).
    let path = cfg.data_dir.join("edge.db");
    let store = tokio::task::spawn_blocking(move || Store::open(&path))
        .await
        .map_err(|e| ServerError::Internal(format!("open store: {e}")))??;
    let store = Arc::new(store);
    let listener =
        tokio::net::TcpListener::bind(cfg.bind)
            .await
            .map_err(|e| ServerError::Bind {
                addr: cfg.bind.to_string(),
                source: e,
            })?;
    let addr = listener.local_addr().map_err(|e| ServerError::Bind {
        addr: cfg.bind.to_string(),
        source: e,
    })?;
    let server = Arc::new(Server {
        store,
        token: token.clone(),
        evals_ready: Notify::new(),
        heartbeats: heartbeat::Heartbeats::default(),
        metrics: metrics::Metrics::new(),
        catalog: catalog::CatalogCache::default(),
        job_json: http::JobJsonCache::default(),
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
    let mut tasks = vec![tokio::spawn(edge_api::listen::serve(
        listener,
        limits,
        app,
        async move { sd.notified().await },
    ))];
    tasks.push(tokio::spawn(worker::run(server.clone())));
    tasks.push(tokio::spawn(heartbeat::run(server.clone())));
    tasks.push(tokio::spawn(gc_loop(server.clone())));
    tracing::info!(%addr, "edge server listening");
    Ok(ServerHandle {
        addr,
        token,
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
