//! One listening socket per published port, accepted on by every worker.
//! What the port serves (routes, backends, certificate) is swapped in place
//! on catalog updates, so the socket is only rebound when the port is
//! unpublished and published again.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::LbConfig;
use crate::error::LbError;
use crate::http::{self, ConnCtx};
use crate::pool::ServicePool;
use crate::route::Router;
use crate::tcp;
use crate::workers::Workers;

const BACKLOG: i32 = 4096;
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) enum PortKind {
    Tcp {
        pool: Arc<ServicePool>,
        proxy_protocol: bool,
    },
    Http {
        router: Router<Arc<ServicePool>>,
    },
}

pub(crate) struct PortState {
    pub(crate) kind: PortKind,
    pub(crate) tls: Option<TlsAcceptor>,
}

pub(crate) struct PortShared {
    state: RwLock<Arc<PortState>>,
}

impl PortShared {
    pub(crate) fn current(&self) -> Arc<PortState> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

pub(crate) struct Listener {
    shared: Arc<PortShared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, LbError> {
    let err = |source| LbError::Bind { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    // Rebinding a port that was just closed must not wait for TIME_WAIT.
    socket.set_reuse_address(true).map_err(err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).map_err(err)?;
    }
    socket.set_tcp_nodelay(true).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(BACKLOG).map_err(err)?;
    Ok(socket.into())
}

impl Listener {
    pub(crate) fn start(
        addr: SocketAddr,
        state: PortState,
        cfg: &LbConfig,
        workers: &Workers,
    ) -> Result<Self, LbError> {
        let listener = bind(addr)?;
        let connect_timeout = cfg.connect_timeout;
        let slots = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
        let shared = Arc::new(PortShared {
            state: RwLock::new(Arc::new(state)),
        });
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::with_capacity(workers.len());
        for handle in workers.handles() {
            let listener = listener
                .try_clone()
                .map_err(|source| LbError::Bind { addr, source })?;
            let (shared, stop_rx, slots) = (shared.clone(), stop_rx.clone(), slots.clone());
            tasks.push(handle.spawn(async move {
                // Registered from inside the worker, with its IO driver.
                match TcpListener::from_std(listener) {
                    Ok(l) => accept_loop(l, addr, shared, stop_rx, slots, connect_timeout).await,
                    Err(e) => tracing::warn!(%addr, "listening in a worker: {e}"),
                }
            }));
        }
        Ok(Listener {
            shared,
            stop,
            tasks,
        })
    }

    pub(crate) fn set(&self, state: PortState) {
        *self.shared.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(state);
    }

    /// Stops accepting and releases the port; connections in flight finish
    /// (HTTP ones stop keep-alive after their current request).
    pub(crate) async fn close(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<PortShared>,
    mut stop: watch::Receiver<bool>,
    slots: Arc<Semaphore>,
    connect_timeout: Duration,
) {
    loop {
        let slot = tokio::select! {
            biased;
            _ = stop.changed() => break,
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                // The semaphore is never closed.
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(%addr, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(addr);
        tokio::spawn(connection(
            stream,
            peer,
            local,
            shared.clone(),
            stop.clone(),
            connect_timeout,
            slot,
        ));
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    shared: Arc<PortShared>,
    closing: watch::Receiver<bool>,
    connect_timeout: Duration,
    _slot: OwnedSemaphorePermit,
) {
    let state = shared.current();
    match &state.tls {
        Some(acceptor) => {
            let tls =
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, %local, "tls handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, %local, "tls handshake timed out");
                        return;
                    }
                };
            dispatch(
                tls,
                true,
                peer,
                local,
                &state,
                shared.clone(),
                closing,
                connect_timeout,
            )
            .await;
        }
        None => {
            dispatch(
                stream,
                false,
                peer,
                local,
                &state,
                shared.clone(),
                closing,
                connect_timeout,
            )
            .await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn dispatch<S>(
    io: S,
    tls: bool,
    peer: SocketAddr,
    local: SocketAddr,
    state: &PortState,
    shared: Arc<PortShared>,
    closing: watch::Receiver<bool>,
    connect_timeout: Duration,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    match &state.kind {
        PortKind::Tcp {
            pool,
            proxy_protocol,
        } => {
            tcp::forward(
                io,
                peer,
                local,
                pool.clone(),
                *proxy_protocol,
                connect_timeout,
            )
            .await;
        }
        PortKind::Http { .. } => {
            let Ok(peer_ip) = ::http::HeaderValue::from_str(&peer.ip().to_string()) else {
                return;
            };
            let ctx = ConnCtx {
                port: shared,
                peer,
                peer_ip,
                tls,
                connect_timeout,
            };
            http::serve(io, ctx, closing).await;
        }
    }
}
