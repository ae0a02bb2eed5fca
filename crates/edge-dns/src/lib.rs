//! Service DNS of an agent: `NAME.service.edge` answers the node's load balancer,
//! `tasks.NAME.service.edge` and `_NAME._tcp.service.edge` the serving instances,
//! from the catalog; other names are forwarded to upstream resolvers.
//!
//! A name whose service has no serving instance is NXDOMAIN, as if it did not exist:
//! clients fail fast instead of caching an empty answer for a name that works nowhere.
//! A name that exists without records of the asked type is NOERROR with no answer
//! (NODATA) and the zone's SOA in the authority section.

mod acl;
mod error;
mod forward;
mod handler;
mod index;
mod udp;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use edge_api::Catalog;
use hickory_proto::rr::Name;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub use acl::Cidr;
pub use error::DnsError;

use handler::{Handler, Shared};
use index::{Index, ZoneConfig};

/// A TCP client that sends nothing for this long is disconnected.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Answers queued per TCP connection before the connection stops reading.
const TCP_RESPONSE_BUFFER: usize = 32;

#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// UDP and TCP listen on this address; port 0 picks one (read it back from the handle).
    pub listen: SocketAddr,
    /// The zone, e.g. `service.edge`.
    pub domain: String,
    /// Where this node's load balancer serves published services: the answer to `NAME.<domain>`.
    pub lb_address: IpAddr,
    /// Resolvers for names outside the zone; empty means those of /etc/resolv.conf.
    pub upstreams: Vec<SocketAddr>,
    pub ttl: u32,
    /// Clients besides 127.0.0.1, ::1 and this node's own addresses (`listen`,
    /// `lb_address`, `own_addresses`) whose names outside the zone are
    /// forwarded; others get REFUSED for them.
    pub forward_allow: Vec<Cidr>,
    /// More addresses of this node, e.g. the one it advertises.
    pub own_addresses: Vec<IpAddr>,
    /// Addresses also answered on, at `listen`'s port: a node whose own
    /// DNS address is loopback answers its bridge-mode allocations on the
    /// default bridge's address. Bound before the address exists (the
    /// bridge comes with the first allocation), and best effort: one that
    /// cannot be bound is logged, the rest of the DNS serves.
    pub also_listen: Vec<IpAddr>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8600),
            domain: "service.edge".to_string(),
            lb_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            upstreams: Vec::new(),
            ttl: 5,
            forward_allow: Vec::new(),
            own_addresses: Vec::new(),
            also_listen: Vec::new(),
        }
    }
}

/// A running DNS server; dropping it stops it too, `shutdown` also waits for that.
/// When the catalog's sender goes away the server keeps answering from the last catalog.
pub struct DnsHandle {
    udp_addr: SocketAddr,
    tcp_addr: SocketAddr,
    upstreams: Vec<SocketAddr>,
    server: Server<Handler>,
    watcher: JoinHandle<()>,
    udp_stop: Option<oneshot::Sender<()>>,
    udp_thread: Option<std::thread::JoinHandle<()>>,
}

impl DnsHandle {
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// The upstream resolvers names outside the zone go to.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Stops listening and waits for the server's tasks to end.
    pub async fn shutdown(mut self) {
        self.watcher.abort();
        if let Some(stop) = self.udp_stop.take() {
            let _ = stop.send(());
        }
        // Joining the UDP thread means its socket is closed when we return.
        if let Some(thread) = self.udp_thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        if let Err(e) = self.server.shutdown_gracefully().await {
            tracing::debug!(error = %e, "dns server shutdown");
        }
    }
}

impl Drop for DnsHandle {
    fn drop(&mut self) {
        self.watcher.abort();
        if let Some(stop) = self.udp_stop.take() {
            let _ = stop.send(());
        }
        self.server.shutdown_token().cancel();
    }
}

/// A non-blocking UDP socket or TCP listener on `addr`, which need not be
/// on an interface yet (`IP_FREEBIND`).
fn bind_free(addr: SocketAddr, tcp: bool) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let (kind, proto) = if tcp {
        (Type::STREAM, Protocol::TCP)
    } else {
        (Type::DGRAM, Protocol::UDP)
    };
    let socket = Socket::new(Domain::for_address(addr), kind, Some(proto))?;
    if addr.is_ipv4() {
        socket.set_freebind_v4(true)?;
    } else {
        socket.set_freebind_v6(true)?;
    }
    if tcp {
        socket.set_reuse_address(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    if tcp {
        socket.listen(128)?;
    }
    Ok(socket)
}

fn zone_name(domain: &str) -> Result<Name, DnsError> {
    let invalid = |reason: String| DnsError::InvalidDomain {
        domain: domain.to_string(),
        reason,
    };
    let trimmed = domain.trim_end_matches('.');
    if trimmed.is_empty() {
        return Err(invalid("empty".to_string()));
    }
    let mut name = Name::from_ascii(trimmed).map_err(|e| invalid(e.to_string()))?;
    name.set_fqdn(true);
    Ok(name)
}

/// Binds UDP and TCP on `cfg.listen` and serves until [`DnsHandle::shutdown`]; every
/// change of `catalog` rebuilds the zone, so answers follow it within milliseconds.
pub async fn serve(
    cfg: DnsConfig,
    mut catalog: watch::Receiver<Arc<Catalog>>,
) -> Result<DnsHandle, DnsError> {
    let zone = ZoneConfig {
        origin: zone_name(&cfg.domain)?,
        lb_address: cfg.lb_address,
        ttl: cfg.ttl,
    };
    let bind_err = |proto, addr| {
        move |source| DnsError::Bind {
            proto,
            addr,
            source,
        }
    };
    let udp = std::net::UdpSocket::bind(cfg.listen).map_err(bind_err("udp", cfg.listen))?;
    udp.set_nonblocking(true)
        .map_err(bind_err("udp", cfg.listen))?;
    let udp_addr = udp.local_addr().map_err(bind_err("udp", cfg.listen))?;
    // With port 0, TCP takes the port UDP got so both share one address when it is free.
    let tcp_want = SocketAddr::new(cfg.listen.ip(), udp_addr.port());
    let tcp = match TcpListener::bind(tcp_want).await {
        Ok(l) => l,
        Err(_) if cfg.listen.port() == 0 => TcpListener::bind(cfg.listen)
            .await
            .map_err(bind_err("tcp", cfg.listen))?,
        Err(e) => return Err(bind_err("tcp", tcp_want)(e)),
    };
    let tcp_addr = tcp.local_addr().map_err(bind_err("tcp", cfg.listen))?;
    let mut extra_udp = Vec::new();
    let mut extra_tcp = Vec::new();
    for ip in &cfg.also_listen {
        let addr = SocketAddr::new(*ip, udp_addr.port());
        match (bind_free(addr, false), bind_free(addr, true)) {
            (Ok(u), Ok(t)) => {
                extra_udp.push(std::net::UdpSocket::from(u));
                extra_tcp.push(std::net::TcpListener::from(t));
                tracing::info!(%addr, "dns also listening");
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(%addr, error = %e, "dns not listening on this address");
            }
        }
    }

    let forwarder = forward::Forwarder::new(cfg.upstreams, &[udp_addr, tcp_addr]);
    let upstreams = forwarder.upstreams().to_vec();
    let index = Index::build(&zone, &catalog.borrow_and_update());
    let own = [cfg.listen.ip(), cfg.lb_address]
        .into_iter()
        .chain(cfg.own_addresses.iter().copied())
        .chain(cfg.also_listen.iter().copied())
        .filter(|ip| !ip.is_unspecified());
    let acl = acl::ForwardAcl::new(own, cfg.forward_allow.clone());
    let shared = Arc::new(Shared::new(index, forwarder, acl));

    let watched = shared.clone();
    let watcher = tokio::spawn(async move {
        while catalog.changed().await.is_ok() {
            let snapshot = catalog.borrow_and_update().clone();
            watched.replace(Index::build(&zone, &snapshot));
            tracing::debug!(index = snapshot.index, "dns zone rebuilt");
        }
    });

    // UDP gets a thread and a single-threaded runtime of its own: one receive loop there
    // costs about a third less CPU per query than on a multi-threaded runtime (measured
    // with benches/dns.sh), and DNS keeps answering when the agent's runtime is busy.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| DnsError::Runtime { source })?;
    let (udp_stop, stopped) = oneshot::channel();
    let udp_shared = shared.clone();
    let udp_thread = std::thread::Builder::new()
        .name("edge-dns-udp".to_string())
        .spawn(move || {
            rt.block_on(async move {
                // The extra sockets' loops run beside the main one on this
                // thread's runtime, and end with it.
                for extra in extra_udp {
                    match UdpSocket::from_std(extra) {
                        Ok(sock) => {
                            tokio::spawn(udp::serve(Arc::new(sock), udp_shared.clone()));
                        }
                        Err(e) => tracing::warn!(error = %e, "dns udp socket"),
                    }
                }
                match UdpSocket::from_std(udp) {
                    Ok(sock) => {
                        tokio::select! {
                            () = udp::serve(Arc::new(sock), udp_shared) => {}
                            _ = stopped => {}
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "dns udp socket"),
                }
            });
        })
        .map_err(|source| DnsError::Runtime { source })?;

    let mut server = Server::new(Handler { shared });
    server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
    for extra in extra_tcp {
        match TcpListener::from_std(extra) {
            Ok(l) => server.register_listener(l, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER),
            Err(e) => tracing::warn!(error = %e, "dns tcp socket"),
        }
    }
    tracing::info!(%udp_addr, %tcp_addr, domain = %cfg.domain, "dns listening");
    Ok(DnsHandle {
        udp_addr,
        tcp_addr,
        upstreams,
        server,
        watcher,
        udp_stop: Some(udp_stop),
        udp_thread: Some(udp_thread),
    })
}
