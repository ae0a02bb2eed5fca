//! Routing mesh load balancer: a listener on every published port forwarding
//! to the serving instances of the catalog, over TCP, HTTP or UDP, with
//! optional TLS termination. The agent feeds it catalog versions through a
//! watch.

mod error;
mod http;
mod listener;
mod plan;
mod pool;
mod route;
mod tcp;
mod tls;
mod udp;
mod workers;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge_api::{Catalog, CatalogService};
use edge_spec::PublishTls;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub use edge_spec::PublishProtocol as Protocol;
pub use error::LbError;
pub use pool::{InstanceCount, PoolLoad};

use listener::{Listener, PortKind, PortState};
use plan::PortPlan;
use pool::ServicePool;
use route::{HostPattern, Route, Router};
use workers::Workers;

/// How often ports that failed to bind are tried again.
const BIND_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct LbConfig {
    /// Address every published port listens on, e.g. `0.0.0.0`.
    pub bind_ip: IpAddr,
    /// Bound on connecting to one backend before trying another.
    pub connect_timeout: Duration,
    /// Threads that accept and proxy connections (at least one).
    pub workers: usize,
    /// Connections one published port holds open at once (across its
    /// workers); more wait in the kernel's accept queue.
    pub max_connections: usize,
}

#[derive(Default)]
struct Status {
    listening: Mutex<Vec<(u16, Protocol)>>,
    errors: Mutex<Vec<String>>,
    index: AtomicU64,
    /// The pools of the version applied, by service key.
    pools: Mutex<HashMap<String, Arc<ServicePool>>>,
    /// Rung when a request is held for a service at zero.
    demand: Arc<tokio::sync::Notify>,
}

/// The running load balancer; dropping it stops it like `shutdown`, without
/// waiting.
pub struct LbHandle {
    status: Arc<Status>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl LbHandle {
    /// Ports with a live listener, by port.
    pub fn listening(&self) -> Vec<(u16, Protocol)> {
        lock(&self.status.listening).clone()
    }

    /// Why the last catalog version is not fully served: port conflicts,
    /// bind failures, unreadable certificates. Empty when all is well.
    pub fn errors(&self) -> Vec<String> {
        lock(&self.status.errors).clone()
    }

    /// `Catalog::index` of the version the listeners reflect.
    pub fn applied_index(&self) -> u64 {
        self.status.index.load(Ordering::Acquire)
    }

    /// Each published service's counts, by service key.
    pub fn load(&self) -> Vec<(String, PoolLoad)> {
        lock(&self.status.pools)
            .iter()
            .map(|(k, p)| (k.clone(), p.load()))
            .collect()
    }

    /// Notified when a request is held for a service at zero, so its load
    /// report can go out at once instead of at the next interval.
    pub fn demand(&self) -> Arc<tokio::sync::Notify> {
        self.status.demand.clone()
    }

    /// Closes every listener; connections in flight are left to finish.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts listening for the catalog's current version before returning, then
/// follows its updates until shut down.
pub async fn run(
    cfg: LbConfig,
    mut catalog: watch::Receiver<Arc<Catalog>>,
) -> Result<LbHandle, LbError> {
    let status = Arc::new(Status::default());
    let workers = Workers::start(cfg.workers)?;
    let mut rec = Reconciler {
        cfg,
        workers,
        listeners: BTreeMap::new(),
        udp: BTreeMap::new(),
        pools: HashMap::new(),
        demand: status.demand.clone(),
        status: status.clone(),
        bind_failed: false,
    };
    let first = catalog.borrow_and_update().clone();
    rec.reconcile(&first).await;
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(rec.follow(catalog, stop_rx));
    Ok(LbHandle { status, stop, task })
}

type TlsKey = Vec<(Vec<HostPattern>, PublishTls)>;

struct Active {
    listener: Listener,
    protocol: Protocol,
    /// Certificates are reloaded only when the files named change.
    tls: Option<(TlsKey, TlsAcceptor)>,
}

struct Reconciler {
    cfg: LbConfig,
    /// Dropped with the reconciler, after its listeners have closed.
    workers: Workers,
    listeners: BTreeMap<u16, Active>,
    udp: BTreeMap<u16, udp::UdpListener>,
    pools: HashMap<String, Arc<ServicePool>>,
    demand: Arc<tokio::sync::Notify>,
    status: Arc<Status>,
    bind_failed: bool,
}

impl Reconciler {
    async fn follow(
        mut self,
        mut catalog: watch::Receiver<Arc<Catalog>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut catalog_open = true;
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                r = catalog.changed(), if catalog_open => {
                    if r.is_err() {
                        catalog_open = false;
                        continue;
                    }
                }
                _ = tokio::time::sleep(BIND_RETRY), if self.bind_failed => {}
            }
            let current = catalog.borrow_and_update().clone();
            self.reconcile(&current).await;
        }
        for (_, active) in std::mem::take(&mut self.listeners) {
            active.listener.close().await;
        }
        for (_, udp) in std::mem::take(&mut self.udp) {
            udp.close().await;
        }
        lock(&self.status.listening).clear();
    }

    async fn reconcile(&mut self, catalog: &Catalog) {
        let plan = plan::build(catalog);
        let mut errors: Vec<String> = plan.errors.iter().map(ToString::to_string).collect();

        let mut pools = HashMap::new();
        for name in plan
            .ports
            .values()
            .flat_map(services_of)
            .chain(plan.udp.values())
        {
            if pools.contains_key(name) {
                continue;
            }
            let Some(svc) = catalog.services.get(name) else {
                continue;
            };
            let pool = self.pools.remove(name).unwrap_or_else(|| {
                Arc::new(ServicePool::new(
                    name.clone(),
                    self.workers.len(),
                    self.demand.clone(),
                ))
            });
            let balance = svc.publish.as_ref().map(|p| p.balance).unwrap_or_default();
            pool.set_activation(svc.activation);
            pool.update(
                balance,
                serving(name, svc, &mut errors).await,
                svc.canary_weight,
            );
            pools.insert(name.clone(), pool);
        }
        self.pools = pools;
        lock(&self.status.pools).clone_from(&self.pools);

        let mut wanted = BTreeMap::new();
        for (port, pp) in &plan.ports {
            let prev_tls = self.listeners.get(port).and_then(|a| a.tls.as_ref());
            match self.port_state(*port, pp, prev_tls) {
                Ok(x) => {
                    wanted.insert(*port, (pp.protocol(), x));
                }
                Err(e) => errors.push(e.to_string()),
            }
        }

        let stale: Vec<u16> = self
            .listeners
            .keys()
            .filter(|p| !wanted.contains_key(p))
            .copied()
            .collect();
        for port in stale {
            if let Some(active) = self.listeners.remove(&port) {
                active.listener.close().await;
            }
        }

        self.bind_failed = false;
        for (port, (protocol, (state, tls))) in wanted {
            if let Some(active) = self.listeners.get_mut(&port) {
                active.listener.set(state);
                active.protocol = protocol;
                active.tls = tls;
                continue;
            }
            let addr = SocketAddr::new(self.cfg.bind_ip, port);
            match Listener::start(addr, state, &self.cfg, &self.workers) {
                Ok(listener) => {
                    tracing::info!(%addr, protocol = protocol.as_str(), "listening");
                    self.listeners.insert(
                        port,
                        Active {
                            listener,
                            protocol,
                            tls,
                        },
                    );
                }
                Err(e) => {
                    self.bind_failed = true;
                    errors.push(e.to_string());
                }
            }
        }

        self.reconcile_udp(&plan.udp, &mut errors).await;

        for e in &errors {
            tracing::warn!("load balancer: {e}");
        }
        let mut listening: Vec<(u16, Protocol)> = self
            .listeners
            .iter()
            .map(|(p, a)| (*p, a.protocol))
            .chain(self.udp.keys().map(|p| (*p, Protocol::Udp)))
            .collect();
        listening.sort_by_key(|(p, _)| *p);
        *lock(&self.status.listening) = listening;
        *lock(&self.status.errors) = errors;
        self.status.index.store(catalog.index, Ordering::Release);
    }

    /// The UDP ports: each bound to its service's pool, closed when no
    /// longer published.
    async fn reconcile_udp(&mut self, wanted: &BTreeMap<u16, String>, errors: &mut Vec<String>) {
        let stale: Vec<u16> = self
            .udp
            .keys()
            .filter(|p| !wanted.contains_key(p))
            .copied()
            .collect();
        for port in stale {
            if let Some(l) = self.udp.remove(&port) {
                l.close().await;
            }
        }
        for (port, service) in wanted {
            let pool = self.pools.get(service).cloned().unwrap_or_else(|| {
                Arc::new(ServicePool::new(
                    service.clone(),
                    self.workers.len(),
                    self.demand.clone(),
                ))
            });
            if let Some(l) = self.udp.get(port) {
                l.set(pool);
                continue;
            }
            let addr = SocketAddr::new(self.cfg.bind_ip, *port);
            match udp::UdpListener::start(addr, pool) {
                Ok(l) => {
                    tracing::info!(%addr, protocol = "udp", "listening");
                    self.udp.insert(*port, l);
                }
                Err(e) => {
                    self.bind_failed = true;
                    errors.push(e.to_string());
                }
            }
        }
    }

    fn port_state(
        &self,
        port: u16,
        pp: &PortPlan,
        prev_tls: Option<&(TlsKey, TlsAcceptor)>,
    ) -> Result<(PortState, Option<(TlsKey, TlsAcceptor)>), LbError> {
        let (key, http) = match pp {
            PortPlan::Tcp { tls, .. } => (
                tls.as_ref()
                    .map(|t| vec![(vec![HostPattern::Any], t.clone())]),
                false,
            ),
            PortPlan::Http { tls, .. } => (tls.clone(), true),
        };
        let tls = match key {
            None => None,
            Some(key) => match prev_tls {
                Some((k, acceptor)) if *k == key => Some((key, acceptor.clone())),
                _ => {
                    let acceptor = tls::acceptor(port, &key, http)?;
                    Some((key, acceptor))
                }
            },
        };
        let pool = |name: &str| {
            self.pools.get(name).cloned().unwrap_or_else(|| {
                Arc::new(ServicePool::new(
                    name.to_string(),
                    self.workers.len(),
                    self.demand.clone(),
                ))
            })
        };
        let kind = match pp {
            PortPlan::Tcp {
                service,
                proxy_protocol,
                ..
            } => PortKind::Tcp {
                pool: pool(service),
                proxy_protocol: *proxy_protocol,
            },
            PortPlan::Http { routes, .. } => PortKind::Http {
                router: Router::new(
                    routes
                        .iter()
                        .map(|r| Route {
                            host: r.host.clone(),
                            prefix: r.prefix.clone(),
                            target: pool(&r.target),
                        })
                        .collect(),
                ),
            },
        };
        let acceptor = tls.as_ref().map(|(_, a)| a.clone());
        Ok((
            PortState {
                kind,
                tls: acceptor,
            },
            tls,
        ))
    }
}

fn services_of(pp: &PortPlan) -> Vec<&String> {
    match pp {
        PortPlan::Tcp { service, .. } => vec![service],
        PortPlan::Http { routes, .. } => routes.iter().map(|r| &r.target).collect(),
    }
}

/// Serving instances with their socket addresses; names that are not IP
/// literals are resolved, and ones that do not resolve are reported.
async fn serving(
    name: &str,
    svc: &CatalogService,
    errors: &mut Vec<String>,
) -> Vec<pool::ServingBackend> {
    let mut out = Vec::new();
    for inst in svc.instances.iter().filter(|i| i.serving()) {
        let addr = match inst.address.parse::<IpAddr>() {
            Ok(ip) => Some(SocketAddr::new(ip, inst.port)),
            Err(_) => tokio::net::lookup_host((inst.address.as_str(), inst.port))
                .await
                .ok()
                .and_then(|mut a| a.next()),
        };
        match addr {
            Some(addr) => out.push(pool::ServingBackend {
                alloc_id: inst.alloc_id.clone(),
                addr,
                canary: inst.canary,
            }),
            None => errors.push(
                LbError::Address {
                    service: name.to_string(),
                    alloc_id: inst.alloc_id.clone(),
                    address: inst.address.clone(),
                }
                .to_string(),
            ),
        }
    }
    out
}
