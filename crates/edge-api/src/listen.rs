//! The guard every HTTP listener of edge serves through: a cap on the
//! connections it holds open, a deadline for each request's head (which is
//! also how long an idle kept-alive connection may wait for its next
//! request), a deadline between two pieces of a request body, and a cap on
//! the body's size. A listener that must add a handshake (TLS) takes a
//! connection from [`Acceptor::accept`], wraps its stream and hands the
//! result to [`serve_connection`].

use crate::ErrorBody;
use bytes::Bytes;
use http_body_util::{Either, Full, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Sleep;

/// What one listener allows its clients.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections held open at once; the next one waits in the kernel's
    /// accept queue until one closes, so clients never use up the
    /// process's file descriptors.
    pub max_connections: usize,
    /// Time allowed for a request's head to arrive, counted from the
    /// connection's accept or the end of the previous response: a client
    /// that trickles its headers (slowloris) or idles between requests is
    /// disconnected after it.
    pub header_timeout: Duration,
    /// Longest pause between two pieces of a request body; a stalled upload
    /// fails the request instead of holding its connection forever.
    pub body_timeout: Duration,
    /// Largest request body; a bigger one is answered 413.
    pub max_body_bytes: usize,
    /// What `header_timeout` becomes for a connection whose client proved
    /// a node's identity with its certificate: an agent's requests come
    /// `ttl / 3` (20 s) apart, and closing its connection in between would
    /// cost a TLS handshake per heartbeat. Anonymous clients keep the
    /// short deadline, so slowloris still gets only `header_timeout`.
    pub node_idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_body_bytes: 4 * 1024 * 1024,
            node_idle_timeout: NODE_IDLE_TIMEOUT,
        }
    }
}

/// How long a node's connection may idle; clients that reuse connections
/// (`client::Client`, the simulator) drop theirs well before it.
pub const NODE_IDLE_TIMEOUT: Duration = Duration::from_secs(75);

/// The request body a guarded service sees: size-capped and with a
/// deadline between its frames.
pub type GuardedBody = Limited<TimedBody<Incoming>>;

/// A listener with a connection cap.
pub struct Acceptor {
    listener: TcpListener,
    slots: Arc<Semaphore>,
}

/// An accepted connection; it holds its slot of the listener's cap until
/// it is dropped.
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub slot: OwnedSemaphorePermit,
}

impl Acceptor {
    pub fn new(listener: TcpListener, limits: &Limits) -> Acceptor {
        Acceptor {
            listener,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Stops accepting and waits until every connection it accepted has
    /// given back its slot (`max_connections` is the cap it was made with).
    pub async fn drain(self, max_connections: usize) {
        let slots = self.slots.clone();
        let all = u32::try_from(max_connections.max(1)).unwrap_or(u32::MAX);
        drop(self);
        let _ = slots.acquire_many(all).await;
    }

    /// Waits for a free slot, then for a connection. Errors of one
    /// connection (reset before accept) are skipped; running out of file
    /// descriptors or memory backs off instead of spinning.
    pub async fn accept(&self) -> Accepted {
        let Ok(slot) = self.slots.clone().acquire_owned().await else {
            // The semaphore is never closed while `self` lives.
            return std::future::pending().await;
        };
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                    }
                    return Accepted { stream, peer, slot };
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying in 100ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Serves `service` on `listener` under `limits` until `shutdown`
/// completes; then stops accepting, asks open connections to finish their
/// request in flight and returns when they have.
pub async fn serve<S, B>(
    listener: TcpListener,
    limits: Limits,
    service: S,
    shutdown: impl Future<Output = ()>,
) where
    S: tower::Service<Request<GuardedBody>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let acceptor = Acceptor::new(listener, &limits);
    let limits = Arc::new(limits);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            conn = acceptor.accept() => {
                let service = service.clone();
                let limits = limits.clone();
                let stop = stop_rx.clone();
                tokio::spawn(async move {
                    let Accepted { stream, slot, .. } = conn;
                    serve_connection(stream, service, &limits, stop).await;
                    drop(slot);
                });
            }
        }
    }
    let _ = stop_tx.send(true);
    acceptor.drain(limits.max_connections).await;
}

/// Serves HTTP/1.1 requests of one connection under `limits`; a `true` on
/// `stop` lets the request in flight finish and then closes.
pub async fn serve_connection<I, S, B>(
    io: I,
    service: S,
    limits: &Limits,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request<GuardedBody>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let max_body = limits.max_body_bytes;
    let body_timeout = limits.body_timeout;
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let service = service.clone();
        async move {
            if let Some(len) = declared_length(&req)
                && len > max_body as u64
            {
                return Ok::<_, Infallible>(too_large(max_body).map(Either::Right));
            }
            let req = req.map(|b| Limited::new(TimedBody::new(b, body_timeout), max_body));
            let resp = tower::ServiceExt::oneshot(service, req).await?;
            Ok(resp.map(Either::Left))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    // Upgrades carry the agents' tunnels and users' exec sessions; an
    // upgraded stream leaves this guard's deadlines behind.
    let conn = builder
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    if *stop.borrow() {
        conn.as_mut().graceful_shutdown();
    }
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended");
            }
            return;
        }
        _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
    }
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "connection ended");
    }
}

fn declared_length<T>(req: &Request<T>) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The 413 every guarded listener answers, in the API's error shape.
pub fn too_large(limit: usize) -> Response<Full<Bytes>> {
    let body = ErrorBody {
        error: format!("request body too large: the limit is {limit} bytes"),
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(json)));
    *resp.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A request body whose every frame must arrive within a deadline of the
/// previous one.
pub struct TimedBody<B> {
    inner: B,
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, timeout: Duration) -> TimedBody<B> {
        TimedBody {
            inner,
            timeout,
            sleep: None,
        }
    }
}

/// A request body that paused longer than its listener's `body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("request body stalled for {0:?}")]
pub struct BodyTimeout(pub Duration);

impl<B> Body for TimedBody<B>
where
    B: Body + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                this.sleep = None;
                Poll::Ready(r.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(timeout))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Raises the soft open-file limit to the hard limit, as every daemon role
/// does at start: each connection a listener holds is a descriptor, and so
/// is every task's pipe and log. Returns the new soft limit.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: as above.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}
