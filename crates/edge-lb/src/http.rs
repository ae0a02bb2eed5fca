//! HTTP/1.1 reverse proxy: routes by Host and path, adds X-Forwarded-*,
//! reuses keep-alive connections per backend, retries on another instance
//! when connecting failed or when an idempotent request without a body got
//! no answer, and tunnels upgrades (websockets).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_spec::Balance;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::listener::{PortKind, PortShared};
use crate::pool::{
    ActiveGuard, Backend, BackendConn, PoolState, ServicePool, Unavailable, Upstream,
};
use crate::route::normalize_host;

pub(crate) type ProxyBody = Either<UpstreamBody, Full<Bytes>>;

/// What a backend is sent: the client's body as it streams in, or nothing
/// for a request whose head is kept so it can be sent again.
pub(crate) type ReqBody = Either<Incoming, Empty<Bytes>>;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Bounds a slow client's request head, and how long a keep-alive
/// connection may sit idle between requests.
const HEADER_TIMEOUT: Duration = Duration::from_secs(60);

/// Per client connection facts every request needs.
pub(crate) struct ConnCtx {
    pub(crate) port: Arc<PortShared>,
    pub(crate) peer: SocketAddr,
    /// The peer's IP as a header value, made once per connection.
    pub(crate) peer_ip: HeaderValue,
    pub(crate) tls: bool,
    pub(crate) connect_timeout: Duration,
}

/// Serves one client connection until it closes, or until the listener is
/// closed, when keep-alive ends after the request in flight.
pub(crate) async fn serve<S>(io: S, ctx: ConnCtx, mut closing: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ctx = Arc::new(ctx);
    let svc = service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(handle(req, &ctx).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .writev(false)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::trace!("http client connection ended: {e}");
            }
            return;
        }
        _ = closing.wait_for(|c| *c) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

fn local(status: StatusCode, msg: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from_static(msg.as_bytes()))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// 503 with `Retry-After`, for a service that is waking from zero.
fn retry_later(msg: &'static str) -> Response<ProxyBody> {
    let mut resp = local(StatusCode::SERVICE_UNAVAILABLE, msg);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

async fn handle(mut req: Request<Incoming>, ctx: &ConnCtx) -> Response<ProxyBody> {
    let state = ctx.port.current();
    let PortKind::Http { router } = &state.kind else {
        return local(StatusCode::SERVICE_UNAVAILABLE, "port reconfigured\n");
    };
    let raw_host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    let host = normalize_host(raw_host);
    let Some(pool) = router.find(&host, req.uri().path()).cloned() else {
        return local(StatusCode::NOT_FOUND, "no route\n");
    };
    pool.arrived();
    let pstate = match pool.ready(ctx.connect_timeout).await {
        Ok(s) => s,
        Err(Unavailable::NoInstance) => {
            return local(StatusCode::SERVICE_UNAVAILABLE, "no serving instance\n");
        }
        Err(Unavailable::QueueFull) => {
            return retry_later("the service is starting and holds as many requests as it may\n");
        }
        Err(Unavailable::TimedOut) => {
            return retry_later("the service did not start serving in time\n");
        }
    };
    let upgrade = is_upgrade(req.headers());
    prepare(&mut req, ctx, upgrade);
    if upgrade {
        return tunnel(req, &pool, &pstate, ctx.connect_timeout).await;
    }
    // A copy of the head costs about 0.2 µs; with one instance there is
    // nowhere else to send it.
    let replay = if pstate.backends.len() > 1 {
        Replay::of(&req)
    } else {
        None
    };
    // The first try sends the request's own head: only a retry pays for
    // building one from the copy.
    let mut req = match &replay {
        Some(_) => req.map(|_| Either::Right(Empty::new())),
        None => req.map(Either::Left),
    };
    let mut failed: Option<Arc<Backend>> = None;
    for attempt in 0..2 {
        let Some(backend) = pool.next_try(&pstate, failed.as_ref()).await else {
            break;
        };
        // Only power of two choices reads answer times; the rest skip the clock.
        let timed = pstate.balance == Balance::P2c;
        match send(&backend, req, ctx.connect_timeout, timed).await {
            Ok(resp) => return resp,
            Err(SendError::Connect(r, e)) => {
                tracing::debug!(service = %pool.name, backend = %backend.addr, "connect failed: {e}");
                req = *r;
                backend.penalize(ctx.connect_timeout);
                failed = Some(backend);
            }
            Err(SendError::Sent(e)) => {
                tracing::debug!(service = %pool.name, backend = %backend.addr, "request failed: {e}");
                // An instance stopped with the request in flight, before
                // every balancer had heard it was withdrawn: an idempotent
                // request may go once more, elsewhere (RFC 9110 9.2.2).
                let Some(r) = replay.as_ref().filter(|_| attempt == 0) else {
                    return local(StatusCode::BAD_GATEWAY, "bad gateway\n");
                };
                req = r.request();
                backend.penalize(ctx.connect_timeout);
                failed = Some(backend);
            }
        }
    }
    local(StatusCode::BAD_GATEWAY, "no backend reachable\n")
}

/// The head of an idempotent request without a body, kept so the request
/// can be sent again when the backend closed without answering.
struct Replay {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Replay {
    fn of(req: &Request<Incoming>) -> Option<Replay> {
        (req.method().is_idempotent() && req.body().is_end_stream()).then(|| Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
        })
    }

    fn request(&self) -> Request<ReqBody> {
        let mut req = Request::new(Either::Right(Empty::new()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = self.headers.clone();
        req
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// Drops hop-by-hop headers (those an upgrade needs survive when `upgrade`).
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let is_hop = |n: &HeaderName| {
        *n == header::TE
            || *n == header::TRAILER
            || *n == header::TRANSFER_ENCODING
            || *n == KEEP_ALIVE
            || *n == PROXY_CONNECTION
            || (!upgrade && (*n == header::CONNECTION || *n == header::UPGRADE))
    };
    // One pass over the (few) headers instead of a hash lookup per
    // hop-by-hop name: most messages carry none.
    let mut doomed: Vec<HeaderName> = headers.keys().filter(|n| is_hop(n)).cloned().collect();
    if let Some(conn) = headers.get(header::CONNECTION) {
        doomed.extend(
            conn.to_str()
                .unwrap_or("")
                .split(',')
                .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
                .filter(|n| !(upgrade && *n == header::UPGRADE)),
        );
    }
    for n in doomed {
        headers.remove(n);
    }
}

fn prepare(req: &mut Request<Incoming>, ctx: &ConnCtx, upgrade: bool) {
    // Absolute-form (`GET http://host/path`) becomes origin-form for the
    // backend, its authority the Host; the usual origin-form request is
    // left as it came, with no re-parse.
    if let Some(authority) = req.uri().authority().map(|a| a.as_str().to_string()) {
        let origin: Uri = req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/")
            .parse()
            .unwrap_or_else(|_| Uri::from_static("/"));
        *req.uri_mut() = origin;
        if !req.headers().contains_key(header::HOST)
            && let Ok(v) = HeaderValue::from_str(&authority)
        {
            req.headers_mut().insert(header::HOST, v);
        }
    }
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    strip_hop_by_hop(headers, upgrade);
    let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => {
            HeaderValue::from_str(&format!("{prev}, {}", ctx.peer.ip())).ok()
        }
        _ => None,
    };
    headers.insert(X_FORWARDED_FOR, xff.unwrap_or_else(|| ctx.peer_ip.clone()));
    let proto = if ctx.tls { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if let Some(h) = headers.get(header::HOST).cloned() {
        headers.insert(X_FORWARDED_HOST, h);
    }
}

enum SendError {
    /// Nothing reached the backend: the request comes back for another try.
    Connect(Box<Request<ReqBody>>, String),
    /// The backend got (part of) the request: retrying could repeat it.
    Sent(String),
}

/// Connects to `backend` and sets up HTTP/1.1 on the connection (one write
/// per message); the caller decides where the connection is driven.
async fn handshake(
    backend: &Backend,
    timeout: Duration,
) -> Result<(SendRequest<ReqBody>, BackendConn), String> {
    let stream = backend.connect(timeout).await.map_err(|e| e.to_string())?;
    hyper::client::conn::http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())
}

/// A backend connection for an upgrade request, on a task of its own since
/// it outlives the request as a tunnel.
async fn upgrade_handshake(
    backend: &Backend,
    timeout: Duration,
) -> Result<SendRequest<ReqBody>, String> {
    let (sender, conn) = handshake(backend, timeout).await?;
    tokio::spawn(conn.with_upgrades());
    Ok(sender)
}

/// A new backend connection whose driving future stays with the caller.
async fn connect_upstream(backend: &Backend, timeout: Duration) -> Result<Box<Upstream>, String> {
    let (sender, conn) = handshake(backend, timeout).await?;
    Ok(Box::new(Upstream {
        sender,
        conn: Some(conn),
    }))
}

/// Advances the backend connection, dropping it once it has ended (which
/// fails whatever still waits on it).
fn poll_conn(conn: &mut Option<BackendConn>, cx: &mut Context<'_>) {
    if let Some(c) = conn
        && Pin::new(c).poll(cx).is_ready()
    {
        *conn = None;
    }
}

/// Awaits `fut` while driving the backend connection it waits on. `fut`
/// goes first so that a request it hands over is written by the connection
/// in the same poll, not one trip through the run queue later; it is polled
/// again in case the connection has just answered it.
async fn driving<F: Future>(conn: &mut Option<BackendConn>, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(v);
        }
        poll_conn(conn, cx);
        fut.as_mut().poll(cx)
    })
    .await
}

async fn send(
    backend: &Arc<Backend>,
    mut req: Request<ReqBody>,
    timeout: Duration,
    timed: bool,
) -> Result<Response<ProxyBody>, SendError> {
    let guard = backend.track();
    loop {
        let (mut up, fresh) = match backend.take_idle() {
            Some(up) => (up, false),
            None => match connect_upstream(backend, timeout).await {
                Ok(up) => (up, true),
                Err(e) => return Err(SendError::Connect(Box::new(req), e)),
            },
        };
        if let Err(e) = driving(&mut up.conn, up.sender.ready()).await {
            if fresh {
                return Err(SendError::Connect(Box::new(req), e.to_string()));
            }
            continue;
        }
        let start = timed.then(Instant::now);
        match driving(&mut up.conn, up.sender.try_send_request(req)).await {
            Ok(resp) => {
                if let Some(start) = start {
                    backend.observe(start.elapsed());
                }
                return Ok(upstream_response(resp, Some(up), backend.clone(), guard));
            }
            Err(mut e) => match e.take_message() {
                // A pooled connection the backend had closed: the request
                // never left, so a fresh connection to the same backend is safe.
                Some(r) if !fresh => req = r,
                Some(r) => return Err(SendError::Connect(Box::new(r), e.into_error().to_string())),
                None => return Err(SendError::Sent(e.into_error().to_string())),
            },
        }
    }
}

fn upstream_response(
    resp: Response<Incoming>,
    upstream: Option<Box<Upstream>>,
    backend: Arc<Backend>,
    guard: ActiveGuard,
) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    let upgraded = parts.status == StatusCode::SWITCHING_PROTOCOLS;
    strip_hop_by_hop(&mut parts.headers, upgraded);
    let body = UpstreamBody {
        inner: body,
        done: false,
        upstream,
        backend,
        _guard: guard,
    };
    Response::from_parts(parts, Either::Left(body))
}

/// Upgrade requests get a dedicated backend connection; after a 101 the two
/// upgraded streams are spliced until either side closes.
async fn tunnel(
    mut req: Request<Incoming>,
    pool: &ServicePool,
    pstate: &PoolState,
    timeout: Duration,
) -> Response<ProxyBody> {
    let client_side = hyper::upgrade::on(&mut req);
    let mut failed: Option<Arc<Backend>> = None;
    for _ in 0..2 {
        let Some(backend) = pool.next_try(pstate, failed.as_ref()).await else {
            break;
        };
        let mut sender = match upgrade_handshake(&backend, timeout).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(service = %pool.name, backend = %backend.addr, "connect failed: {e}");
                backend.penalize(timeout);
                failed = Some(backend);
                continue;
            }
        };
        let mut resp = match sender.send_request(req.map(Either::Left)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(service = %pool.name, backend = %backend.addr, "upgrade request failed: {e}");
                return local(StatusCode::BAD_GATEWAY, "bad gateway\n");
            }
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let backend_side = hyper::upgrade::on(&mut resp);
            let guard = backend.track();
            tokio::spawn(async move {
                let _guard = guard;
                let (Ok(c), Ok(b)) = tokio::join!(client_side, backend_side) else {
                    return;
                };
                let _ =
                    tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(b)).await;
            });
        }
        let guard = backend.track();
        return upstream_response(resp, None, backend, guard);
    }
    local(StatusCode::BAD_GATEWAY, "no backend reachable\n")
}

/// The backend's response body, driving its connection while it is read;
/// when it has been read to the end the connection goes back to the
/// backend's idle pool.
pub(crate) struct UpstreamBody {
    inner: Incoming,
    done: bool,
    /// `None` for upgrades, whose connection runs on a task of its own.
    upstream: Option<Box<Upstream>>,
    backend: Arc<Backend>,
    _guard: ActiveGuard,
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(up) = &mut this.upstream {
            poll_conn(&mut up.conn, cx);
        }
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = r {
            this.done = true;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if let Some(up) = self.upstream.take()
            && (self.done || self.inner.is_end_stream())
            && up.conn.is_some()
        {
            self.backend.put_idle(up);
        }
    }
}
