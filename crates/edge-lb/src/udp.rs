//! UDP forwarding: each client address is a flow to one backend, through a
//! socket of its own connected there; answers go back from the published
//! port, and a flow idle for `FLOW_IDLE` ends, as a conntrack entry would.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::LbError;
use crate::pool::{ActiveGuard, ServicePool};

/// Conntrack's timeout for an unanswered UDP flow.
const FLOW_IDLE: Duration = Duration::from_secs(30);
/// Flows one port keeps at once; datagrams of new clients beyond it are
/// dropped, as a full conntrack table drops them.
const MAX_FLOWS: usize = 16_384;
/// The largest UDP payload.
const DATAGRAM: usize = 65_535;

struct Flow {
    up: UdpSocket,
    /// Milliseconds since the listener started, of the last datagram.
    last: AtomicU64,
    _active: ActiveGuard,
}

type Flows = Arc<Mutex<HashMap<SocketAddr, Arc<Flow>>>>;

pub(crate) struct UdpListener {
    pool: Arc<RwLock<Arc<ServicePool>>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl UdpListener {
    pub(crate) fn start(addr: SocketAddr, pool: Arc<ServicePool>) -> Result<Self, LbError> {
        let err = |source| LbError::Bind { addr, source };
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .map_err(err)?;
        if addr.is_ipv6() {
            socket.set_only_v6(false).map_err(err)?;
        }
        socket.set_nonblocking(true).map_err(err)?;
        socket.bind(&addr.into()).map_err(err)?;
        let socket = UdpSocket::from_std(socket.into()).map_err(err)?;
        let pool = Arc::new(RwLock::new(pool));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(serve(Arc::new(socket), pool.clone(), stop_rx));
        Ok(UdpListener { pool, stop, task })
    }

    pub(crate) fn set(&self, pool: Arc<ServicePool>) {
        *self.pool.write().unwrap_or_else(|e| e.into_inner()) = pool;
    }

    /// Releases the port and ends every flow.
    pub(crate) async fn close(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn serve(
    socket: Arc<UdpSocket>,
    pool: Arc<RwLock<Arc<ServicePool>>>,
    mut stop: watch::Receiver<bool>,
) {
    let flows: Flows = Arc::default();
    let start = Instant::now();
    let mut buf = vec![0u8; DATAGRAM];
    loop {
        let (n, client) = tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                // An ICMP error of an earlier send; the socket goes on.
                Err(_) => continue,
            },
        };
        let existing = lock(&flows).get(&client).cloned();
        let flow = match existing {
            Some(f) => f,
            None => {
                let current = pool.read().unwrap_or_else(|e| e.into_inner()).clone();
                match open(&current, &flows).await {
                    Some(f) => {
                        lock(&flows).insert(client, f.clone());
                        tokio::spawn(answers(
                            f.clone(),
                            client,
                            socket.clone(),
                            flows.clone(),
                            start,
                            stop.clone(),
                        ));
                        f
                    }
                    None => continue,
                }
            }
        };
        flow.last.store(millis(start), Ordering::Relaxed);
        if let Err(e) = flow.up.send(&buf[..n]).await {
            tracing::debug!(%client, "udp send to backend failed: {e}");
        }
    }
}

fn millis(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A flow to a backend the pool picks, or `None` (no backend, table full,
/// no socket).
async fn open(pool: &ServicePool, flows: &Flows) -> Option<Arc<Flow>> {
    if lock(flows).len() >= MAX_FLOWS {
        return None;
    }
    let state = pool.state();
    let backend = pool.pick(&state, None)?;
    let local: SocketAddr = if backend.addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let up = UdpSocket::bind(local).await.ok()?;
    if let Err(e) = up.connect(backend.addr).await {
        tracing::debug!(service = %pool.name, backend = %backend.addr, "udp connect failed: {e}");
        return None;
    }
    Some(Arc::new(Flow {
        up,
        last: AtomicU64::new(0),
        _active: backend.track(),
    }))
}

/// Sends the backend's answers back to `client` until the flow has been
/// idle for `FLOW_IDLE` (both ways) or the listener closes.
async fn answers(
    flow: Arc<Flow>,
    client: SocketAddr,
    socket: Arc<UdpSocket>,
    flows: Flows,
    start: Instant,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; DATAGRAM];
    loop {
        let got = tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = tokio::time::timeout(FLOW_IDLE, flow.up.recv(&mut buf)) => r,
        };
        match got {
            Ok(Ok(n)) => {
                flow.last.store(millis(start), Ordering::Relaxed);
                let _ = socket.send_to(&buf[..n], client).await;
            }
            // The backend's port is closed (ICMP): the next datagram of the
            // client opens a flow to a backend picked again.
            Ok(Err(_)) => break,
            Err(_) => {
                let idle = millis(start).saturating_sub(flow.last.load(Ordering::Relaxed));
                if Duration::from_millis(idle) >= FLOW_IDLE {
                    break;
                }
            }
        }
    }
    let mut table = lock(&flows);
    if table.get(&client).is_some_and(|f| Arc::ptr_eq(f, &flow)) {
        table.remove(&client);
    }
}
