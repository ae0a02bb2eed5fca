//! `edge server`, `edge agent` and `edge dev`: build the pieces, start them,
//! wait for a signal.

use crate::cli::{
    AclMode, AgentArgs, Algorithm, DevArgs, Global, NodeArgs, ServerArgs, ServerTuning,
};
use anyhow::Context;
use edge_agent::AgentConfig;
use edge_driver::Driver;
use edge_server::ServerConfig;
use edge_spec::{DriverConfigs, NodeResources};
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn init_logs(g: &Global) {
    let mut filter = tracing_subscriber::EnvFilter::try_new(&g.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // wasmtime-wasi opens an info-level span for every WASI call a module
    // makes (measured at about 1 µs per call with this subscriber): kept
    // only when asked for by name.
    if !g.log_level.contains("wasmtime_wasi")
        && let Ok(quiet) = "wasmtime_wasi=warn".parse()
    {
        filter = filter.add_directive(quiet);
    }
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if g.log_json {
        b.json().init();
    } else {
        b.init();
    }
}

fn server_config(
    data_dir: PathBuf,
    bind: SocketAddr,
    t: &ServerTuning,
) -> anyhow::Result<ServerConfig> {
    let mut cfg = ServerConfig::new(data_dir, bind);
    cfg.heartbeat_ttl = t.heartbeat_ttl;
    cfg.gc_interval = t.gc_interval;
    cfg.listen.max_connections = t.max_connections as usize;
    cfg.scheduler.algorithm = match t.scheduler_algorithm {
        Algorithm::Binpack => edge_sched::Algorithm::Binpack,
        Algorithm::Spread => edge_sched::Algorithm::Spread,
    };
    let (lo, hi) = t
        .port_range
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)))
        .filter(|(a, b)| a <= b && *a > 0)
        .with_context(|| {
            format!(
                "--port-range {:?}: expected MIN-MAX, e.g. 20000-32000",
                t.port_range
            )
        })?;
    cfg.scheduler.port_min = lo;
    cfg.scheduler.port_max = hi;
    cfg.overlay =
        edge_spec::OverlayPool::new(t.network_pool, t.network_prefix, t.network_node_prefix)
            .map_err(|e| anyhow::anyhow!("--network-pool, --network-prefix: {e}"))?;
    cfg.driver_configs = driver_configs();
    cfg.tls = t.tls.tls || !bind.ip().is_loopback();
    cfg.acl = match t.acl {
        AclMode::On => true,
        AclMode::Off => false,
        AclMode::Auto => !bind.ip().is_loopback(),
    };
    cfg.tls_sans = t.tls.tls_san.clone();
    cfg.node_cert_ttl = t.tls.node_cert_ttl;
    cfg.user_cert = t.tls.tls_cert.clone().zip(t.tls.tls_key.clone());
    Ok(cfg)
}

/// Each driver's check of task `config` blocks, by driver name: the CLI
/// applies it before sending a job and the server to every job it is sent.
pub(crate) fn driver_configs() -> DriverConfigs {
    use edge_driver::config::finding;
    DriverConfigs::default()
        .with("exec", |c| finding(edge_driver_exec::check_config(c)))
        .with("containerd", |c| {
            finding(edge_driver_containerd::check_config(c))
        })
        .with("wasm", |c| finding(edge_driver_wasm::check_config(c)))
        .with(edge_model::DRIVER_NAME, |c| {
            finding(edge_model::check_config(c))
        })
}

fn drivers(data_dir: &Path, n: &NodeArgs) -> anyhow::Result<Vec<Arc<dyn Driver>>> {
    let exe = std::env::current_exe().context("cannot find the edge binary for the exec driver")?;
    let exec = edge_driver_exec::ExecDriver::new(edge_driver_exec::ExecConfig {
        executor: vec![exe.display().to_string(), "executor".to_string()],
        state_dir: data_dir.join("exec"),
        cgroup_parent: "edge".to_string(),
        default_user: n.privilege.exec_user.clone(),
        allow_root: n.privilege.exec_allow_root,
    });
    let exec: Arc<dyn Driver> = Arc::new(exec);
    let model = edge_model::ModelDriver::new(
        exec.clone(),
        exe,
        data_dir.join("models"),
        n.privilege.exec_user.clone(),
    );
    let wasm = edge_driver_wasm::WasmDriver::new(data_dir.join("wasm"))
        .context("cannot start the wasm driver")?;
    let containerd = super::image::driver(data_dir, &n.containerd)?;
    Ok(vec![exec, Arc::new(model), Arc::new(wasm), containerd])
}

/// What tasks on this node may do to the host. Everything beyond the
/// default is an operator's explicit choice, made on the node itself.
#[derive(clap::Args, Debug, Clone)]
pub struct PrivilegeArgs {
    /// The user exec tasks run as when their config names none.
    #[arg(long, env = "EDGE_EXEC_USER", default_value = edge_driver_exec::DEFAULT_USER)]
    pub exec_user: String,
    /// Let exec tasks run as root (`user = "root"` in their config, or
    /// `--exec-user root`); without it such a task fails to start.
    #[arg(long, env = "EDGE_EXEC_ALLOW_ROOT")]
    pub exec_allow_root: bool,
}

/// Bridge networking: each allocation of a group with `network { mode =
/// "bridge" }` gets a network namespace on this bridge, an address from
/// the subnet, and its ports mapped from the host.
#[derive(clap::Args, Debug, Clone)]
pub struct NetworkArgs {
    /// Turn bridge networking off. It is on when the agent runs as root and
    /// the CNI plugins are installed (Debian: containernetworking-plugins);
    /// otherwise the agent logs why it is off.
    #[arg(long)]
    pub no_bridge: bool,
    /// The node bridge allocations attach to. Two agents on one host need
    /// one each.
    #[arg(long, default_value = edge_net::DEFAULT_BRIDGE)]
    pub bridge_name: String,
    /// The subnet allocations' addresses come from (the bridge takes the
    /// first address). Leases are kept in the data dir across restarts.
    #[arg(long, default_value = edge_net::DEFAULT_SUBNET)]
    pub bridge_subnet: edge_net::Subnet,
    /// The bridge's MTU. Large by default, as loopback's: host-to-allocation
    /// traffic never crosses a wire, and TCP's MSS and path MTU discovery
    /// size what leaves the node. 1500 gives Docker's behaviour.
    #[arg(long, default_value_t = edge_net::DEFAULT_MTU, value_parser = clap::value_parser!(u32).range(576..=65535))]
    pub bridge_mtu: u32,
    /// Where the CNI plugins are, `:`-separated.
    #[arg(
        long,
        env = "EDGE_CNI_PATH",
        default_value = "/usr/lib/cni:/opt/cni/bin"
    )]
    pub cni_path: String,
}

impl NetworkArgs {
    fn bridge(
        &self,
        data_dir: &Path,
        dns: Option<SocketAddr>,
        advertise: &str,
    ) -> Option<edge_net::BridgeConfig> {
        let dns = match dns {
            Some(SocketAddr::V4(d)) => Some(d),
            _ => None,
        };
        (!self.no_bridge).then(|| edge_net::BridgeConfig {
            dns,
            mtu: self.bridge_mtu,
            bridge: self.bridge_name.clone(),
            subnet: self.bridge_subnet,
            underlay: advertise.parse().ok(),
            state_dir: data_dir.join("network"),
            plugin_dirs: std::env::split_paths(&self.cni_path).collect(),
        })
    }
}

/// The mesh's flags, with the node's own bridge subnet and the named
/// networks' pool among the DNS clients whose other names are forwarded:
/// bridge-mode allocations are the cluster's workloads.
fn mesh_args(n: &NodeArgs, pool: edge_spec::Subnet) -> super::mesh::MeshArgs {
    let mut m = n.mesh.clone();
    m.dns_also = bridge_dns(n)
        .map(|d| IpAddr::V4(*d.ip()))
        .into_iter()
        .collect();
    if !n.network.no_bridge {
        for subnet in [n.network.bridge_subnet, pool] {
            match subnet.to_string().parse() {
                Ok(cidr) => m.dns_allow.push(cidr),
                Err(e) => tracing::warn!(%subnet, error = %e, "bridge subnet not allowed in DNS"),
            }
        }
    }
    m
}

/// How the agent behaves on its own: at exit, and while the server is away.
#[derive(clap::Args, Debug, Clone)]
pub struct AutonomyArgs {
    /// Stop every task when the agent exits (default: tasks keep running and
    /// the next agent re-attaches to them).
    #[arg(long)]
    pub stop_tasks_on_exit: bool,
    /// How often to look for containers, executors, cgroups and run state no
    /// allocation owns.
    #[arg(long, default_value = "1m", value_parser = crate::cli::parse_duration)]
    pub node_gc_interval: Duration,
    /// How long such a leftover must have been seen before it is removed.
    #[arg(long, default_value = "1m", value_parser = crate::cli::parse_duration)]
    pub node_gc_grace: Duration,
    /// Log when DNS and the load balancer serve a catalog older than this
    /// because the server is away (default: never; the catalog is served
    /// however old it is).
    #[arg(long, value_parser = crate::cli::parse_duration)]
    pub catalog_stale_after: Option<Duration>,
}

/// Where bridge-mode allocations reach the node's DNS when its own
/// address is loopback (`edge dev` as it starts): the default bridge's
/// address, at the DNS port, which the DNS answers on too. With a
/// routable address they reach it there, and this is `None`.
fn bridge_dns(n: &NodeArgs) -> Option<SocketAddrV4> {
    let ip: IpAddr = n.advertise.parse().ok()?;
    (ip.is_loopback() && !n.network.no_bridge && n.mesh.dns_port != 0)
        .then(|| SocketAddrV4::new(n.network.bridge_subnet.gateway(), n.mesh.dns_port))
}

fn agent_config(server: String, token: String, data_dir: PathBuf, n: &NodeArgs) -> AgentConfig {
    let dns = bridge_dns(n)
        .map(SocketAddr::V4)
        .or_else(|| n.mesh.dns_addr(&n.advertise));
    let bridge = n.network.bridge(&data_dir, dns, &n.advertise);
    let mut cfg = AgentConfig::new(server, token, data_dir);
    cfg.bridge = bridge;
    cfg.name = n.name.clone();
    cfg.datacenter = n.datacenter.clone();
    cfg.address = n.advertise.clone();
    cfg.meta = n.meta.iter().cloned().collect();
    cfg.host_volumes = n.host_volumes.iter().cloned().collect();
    cfg.artifact_dirs = n.artifact_dirs.clone();
    cfg.http_bind = n.http_bind;
    cfg.reserved = NodeResources {
        cpu: n.reserved_cpu,
        memory: n.reserved_memory,
        cores: 0,
    };
    cfg.dns_addr = n.mesh.dns_addr(&n.advertise);
    cfg.stop_tasks_on_exit = n.autonomy.stop_tasks_on_exit;
    cfg.gc_interval = n.autonomy.node_gc_interval;
    cfg.gc_grace = n.autonomy.node_gc_grace;
    cfg.catalog_stale_after = n.autonomy.catalog_stale_after;
    cfg
}

/// Every role raises its open-file limit: a server holds one socket per
/// agent's blocking watch, an agent one per proxied connection and task
/// pipe, and each listener caps its connections well below the result.
fn raise_fd_limit() {
    match edge_api::listen::raise_fd_limit() {
        Ok(n) => tracing::debug!(limit = n, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
    }
}

pub(crate) async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

pub async fn server(g: &Global, a: ServerArgs) -> anyhow::Result<u8> {
    init_logs(g);
    raise_fd_limit();
    let cfg = server_config(a.data_dir.clone(), a.bind, &a.tuning)?;
    let h = edge_server::start(cfg).await?;
    tracing::info!(dashboard = %format!("{}/ui/", h.url), "web dashboard");
    // The token itself stays in its 0600 file, out of the logs.
    tracing::info!(
        "join agents with: edge agent --server {} --join-token $(cat {})",
        h.url,
        a.data_dir.join("token").display()
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    h.shutdown().await;
    Ok(0)
}

pub async fn agent(g: &Global, a: AgentArgs) -> anyhow::Result<u8> {
    init_logs(g);
    raise_fd_limit();
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("create data dir {}", a.data_dir.display()))?;
    let cfg = agent_config(
        a.server.clone(),
        a.join_token.clone(),
        a.data_dir.clone(),
        &a.node,
    );
    let h = edge_agent::start(cfg, drivers(&a.data_dir, &a.node)?).await?;
    // The server's pool is not known here: the default's, and the
    // operator's `--dns-allow` for another.
    let pool = edge_spec::OverlayPool::default().pool;
    let mesh = super::mesh::start(
        &mesh_args(&a.node, pool),
        &a.node.advertise,
        h.catalog(),
        h.load_reporter(),
    )
    .await?;
    shutdown_signal().await;
    mesh.shutdown().await;
    h.shutdown().await;
    Ok(0)
}

pub async fn dev(g: &Global, a: DevArgs) -> anyhow::Result<u8> {
    init_logs(g);
    raise_fd_limit();
    let data = std::path::absolute(&a.data_dir)
        .with_context(|| format!("data dir {}", a.data_dir.display()))?;
    let cfg = server_config(data.join("server"), a.bind, &a.tuning)?;
    let server = edge_server::start(cfg).await?;
    let agent_dir = data.join("agent");
    std::fs::create_dir_all(&agent_dir)
        .with_context(|| format!("create {}", agent_dir.display()))?;
    let acfg = agent_config(
        server.url.clone(),
        server.token.clone(),
        agent_dir.clone(),
        &a.node,
    );
    let agent = edge_agent::start(acfg, drivers(&agent_dir, &a.node)?).await?;
    let mesh = super::mesh::start(
        &mesh_args(&a.node, a.tuning.network_pool),
        &a.node.advertise,
        agent.catalog(),
        agent.load_reporter(),
    )
    .await?;
    tracing::info!(api = %server.url, dashboard = %format!("{}/ui/", server.url), data = %data.display(), "edge dev is up");
    shutdown_signal().await;
    tracing::info!("shutting down");
    mesh.shutdown().await;
    agent.shutdown().await;
    server.shutdown().await;
    Ok(0)
}
