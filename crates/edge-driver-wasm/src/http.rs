//! HTTP mode (WAGI): the task's port is served by the agent and every request
//! runs in a fresh instance of the module, CGI style — request metadata in
//! env vars, the body on stdin, headers + blank line + body on stdout.

use crate::capture::Capture;
use crate::environ::Environ;
use crate::runtime::{
    Host, Interrupt, Interrupted, MemoryLimiter, describe, interrupted, new_store,
};
use crate::stdio::LogStream;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use wasmtime::{Engine, Extern, ExternType, InstancePre, Module, ModuleExport, TypedFunc};
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

/// Request bodies above this are refused with 413.
const MAX_BODY: usize = 16 << 20;
/// What a response buffer starts with: a small page answers without growing.
const OUTPUT_CAPACITY: usize = 1024;
/// Bounds a slow client's request head, and how long a keep-alive
/// connection may sit idle between requests.
const HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// Room reserved for one request's own variables: enough for a request with
/// a dozen ordinary headers to need no second allocation.
const REQUEST_ENV_BYTES: usize = 1024;

/// One module serving requests: everything a request's fresh instance needs.
pub(crate) struct Handler {
    pub engine: Engine,
    /// The module's `_start`, from [`start_export`].
    pub start: ModuleExport,
    /// The task's port, for logs.
    pub port: u16,
    pub pre: InstancePre<Host>,
    pub argv: Vec<String>,
    /// From [`base_env`].
    pub env: Environ,
    pub stderr: LogStream,
    pub memory_limit: u64,
    pub live_memory: Arc<AtomicU64>,
    pub busy_ns: Arc<AtomicU64>,
    pub timeout: Duration,
}

/// Finds `_start` once per task, so that a request neither looks it up by
/// name nor type-checks it; a module without one cannot be a handler.
pub(crate) fn start_export(module: &Module) -> Result<ModuleExport, String> {
    match (
        module.get_export("_start"),
        module.get_export_index("_start"),
    ) {
        (Some(ExternType::Func(f)), Some(start))
            if f.params().len() == 0 && f.results().len() == 0 =>
        {
            Ok(start)
        }
        (Some(_), _) => Err("`_start` is not a function taking and returning nothing".into()),
        (None, _) => Err("the module has no `_start` export: not a WASI command".into()),
    }
}

/// Why a request got no response from the module.
pub(crate) struct Failure {
    pub status: StatusCode,
    pub reason: String,
    pub detail: String,
}

impl Handler {
    /// Runs the module once for one request and returns what it wrote to
    /// stdout. `request_env` adds the request's own variables.
    pub(crate) async fn invoke(
        &self,
        request_env: impl FnOnce(&mut Environ),
        body: Bytes,
    ) -> Result<Bytes, Failure> {
        let started = Instant::now();
        let mut environ = Environ::with_base(&self.env, REQUEST_ENV_BYTES);
        request_env(&mut environ);
        let mut b = WasiCtxBuilder::new();
        b.args(&self.argv).stdin(MemoryInputPipe::new(body));
        let host = Host {
            wasi: b.build_p1(),
            environ,
            capture: Some(Capture {
                stdout: Vec::with_capacity(OUTPUT_CAPACITY),
                stderr: self.stderr.clone(),
            }),
            limits: MemoryLimiter::new(self.memory_limit, self.live_memory.clone()),
            interrupt: Interrupt {
                stop: None,
                // A timeout past what the clock can hold is no deadline.
                deadline: started
                    .checked_add(self.timeout)
                    .map(|at| (at, self.timeout)),
            },
        };
        let mut store = new_store(&self.engine, host);
        let result = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            let start = instance
                .get_module_export(&mut store, &self.start)
                .and_then(Extern::into_func)
                .ok_or_else(|| wasmtime::format_err!("the instance has no `_start`"))?;
            // SAFETY: `start_export` checked that the module's `_start` is a
            // function taking and returning nothing, and `get_module_export`
            // returned it only because this instance is of that module.
            let start = unsafe { TypedFunc::<(), ()>::new_unchecked(&store, start) };
            start.call_async(&mut store, ()).await
        }
        .await;
        let stdout = store
            .into_data()
            .capture
            .map(|c| Bytes::from(c.stdout))
            .unwrap_or_default();
        self.busy_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        match result {
            Ok(()) => Ok(stdout),
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(I32Exit(0)) => Ok(stdout),
                Some(I32Exit(code)) => Err(Failure {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    reason: format!("handler exited with code {code}"),
                    detail: String::new(),
                }),
                None => Err(Failure {
                    status: match interrupted(&e) {
                        Some(Interrupted::Deadline(_)) => StatusCode::GATEWAY_TIMEOUT,
                        _ => StatusCode::INTERNAL_SERVER_ERROR,
                    },
                    reason: describe(&e),
                    detail: format!("{e:?}"),
                }),
            },
        }
    }
}

/// The threads that serve http-mode tasks: one current-thread runtime each.
/// A request is read, run and answered on one thread with no hand-off, and a
/// busy guest never holds up the agent's own runtime (heartbeats, the API).
pub(crate) struct ServePool {
    handles: Vec<Handle>,
    /// Dropping these ends the threads.
    _stop: Vec<oneshot::Sender<()>>,
}

impl ServePool {
    pub(crate) fn new(threads: usize) -> std::io::Result<ServePool> {
        let mut handles = Vec::with_capacity(threads);
        let mut stops = Vec::with_capacity(threads);
        for i in 0..threads {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            handles.push(rt.handle().clone());
            stops.push(stop);
            std::thread::Builder::new()
                .name(format!("wasm-http-{i}"))
                .spawn(move || {
                    rt.block_on(async {
                        let _ = stopped.await;
                    });
                })?;
        }
        Ok(ServePool {
            handles,
            _stop: stops,
        })
    }

    /// A server for `port` on every thread (the kernel spreads connections
    /// over their `SO_REUSEPORT` listeners). The returned future ends when
    /// all of them have stopped after `shutdown` turned true; dropping it
    /// stops them at once.
    /// With `netns`, the listeners are made in that network namespace (a
    /// bridge-mode allocation's) and serve only there.
    pub(crate) fn serve(
        &self,
        port: u16,
        netns: Option<&std::path::Path>,
        handler: Arc<Handler>,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<impl Future<Output = std::io::Result<()>> + Send + 'static> {
        let addr = SocketAddr::from(([0, 0, 0, 0], port));
        let count = self.handles.len();
        let sockets = move || {
            (0..count)
                .map(|_| {
                    let socket = TcpSocket::new_v4()?;
                    socket.set_reuseaddr(true)?;
                    socket.set_reuseport(true)?;
                    Ok(socket)
                })
                .collect::<std::io::Result<Vec<TcpSocket>>>()
        };
        let sockets = match netns {
            None => sockets()?,
            Some(ns) => edge_driver::netns::within(ns, sockets)
                .map_err(|e| std::io::Error::other(e.to_string()))??,
        };
        let mut listeners = Vec::with_capacity(count);
        for (handle, socket) in self.handles.iter().zip(sockets) {
            // Registers the listener with that thread's reactor.
            let _enter = handle.enter();
            socket.bind(addr)?;
            listeners.push((handle, socket.listen(1024)?));
        }
        let servers = Servers(
            listeners
                .into_iter()
                .map(|(handle, listener)| {
                    handle.spawn(serve_on(listener, handler.clone(), shutdown.clone()))
                })
                .collect(),
        );
        Ok(async move {
            let mut servers = servers;
            for server in &mut servers.0 {
                match server.await {
                    Ok(result) => result?,
                    Err(e) => return Err(std::io::Error::other(e)),
                }
            }
            Ok(())
        })
    }
}

/// One task's per-thread servers, stopped when the task's future is dropped.
struct Servers(Vec<JoinHandle<std::io::Result<()>>>);

impl Drop for Servers {
    fn drop(&mut self) {
        for server in &self.0 {
            server.abort();
        }
    }
}

/// Serves until `shutdown` turns true, then lets open requests finish.
async fn serve_on(
    listener: TcpListener,
    handler: Arc<Handler>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut connections = JoinSet::new();
    loop {
        let (stream, remote) = tokio::select! {
            biased;
            () = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(port = handler.port, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        // Reaps finished connections so the set stays as large as the open ones.
        while connections.try_join_next().is_some() {}
        connections.spawn(connection(
            stream,
            Arc::new(Peer {
                handler: handler.clone(),
                remote_ip: remote.ip().to_string(),
            }),
            shutdown.clone(),
        ));
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Resolves once `shutdown` is true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// What every request of one client connection shares.
struct Peer {
    handler: Arc<Handler>,
    /// The client's address as CGI's REMOTE_ADDR, made once per connection.
    remote_ip: String,
}

/// One keep-alive client connection; after `shutdown` it ends once the
/// request in flight is answered.
async fn connection(stream: TcpStream, peer: Arc<Peer>, mut shutdown: watch::Receiver<bool>) {
    let svc = service_fn(move |req| {
        let peer = peer.clone();
        async move { Ok::<_, Infallible>(handle(&peer, req).await) }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        // One write per response instead of a writev of head and body.
        .writev(false)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::trace!("wasm http connection ended: {e}");
            }
            return;
        }
        () = stopped(&mut shutdown) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

async fn handle(peer: &Peer, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let h = &peer.handler;
    let (parts, body) = req.into_parts();
    let body = if body.is_end_stream() {
        Bytes::new()
    } else {
        match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<LengthLimitError>() => {
                return plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request body too large\n".to_string(),
                );
            }
            Err(e) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!("reading the request body failed: {e}\n"),
                );
            }
        }
    };
    let body_len = body.len();
    let request_env = |env: &mut Environ| add_request_env(env, &parts, &peer.remote_ip, body_len);
    let failure = match h.invoke(request_env, body).await {
        Ok(out) => match cgi_response(out) {
            Ok(resp) => return resp,
            Err(reason) => Failure {
                status: StatusCode::BAD_GATEWAY,
                reason,
                detail: String::new(),
            },
        },
        Err(f) => f,
    };
    let line = format!(
        "{} {}: {} {}",
        parts.method,
        parts.uri.path(),
        failure.status.as_u16(),
        failure.reason
    );
    tracing::warn!(request = %line, "wasm request failed");
    let mut log = format!("edge wasm: {line}\n");
    if !failure.detail.is_empty() {
        log.push_str(&failure.detail);
        log.push('\n');
    }
    let _ = h.stderr.write_bytes(log.as_bytes());
    plain(failure.status, format!("{}\n", failure.reason))
}

/// The variables every request of a task shares: the task's own env, then
/// the CGI constants. Built once so that a request only adds its own.
pub(crate) fn base_env<'a>(
    task_env: impl IntoIterator<Item = (&'a String, &'a String)>,
    port: u16,
) -> Environ {
    let mut env = Environ::default();
    for (k, v) in task_env {
        env.push(k, v);
    }
    env.push("SCRIPT_NAME", "");
    env.push("X_MATCHED_ROUTE", "/...");
    env.push_fmt("SERVER_PORT", format_args!("{port}"));
    env.push("SERVER_SOFTWARE", "edge-wasm");
    env.push("GATEWAY_INTERFACE", "CGI/1.1");
    env.push("REMOTE_USER", "");
    env.push("AUTH_TYPE", "");
    env
}

/// Adds the CGI/WAGI variables of one request, written straight from the
/// parsed request into the instance's environment buffer.
pub(crate) fn add_request_env(
    env: &mut Environ,
    parts: &http::request::Parts,
    remote_ip: &str,
    body_len: usize,
) {
    let path = parts.uri.path();
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let server_name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    let path_and_query = parts.uri.path_and_query().map_or(path, |pq| pq.as_str());
    env.push("REQUEST_METHOD", parts.method.as_str());
    env.push("PATH_INFO", path);
    env.push("PATH_TRANSLATED", path);
    env.push("X_RAW_PATH_INFO", path);
    env.push("QUERY_STRING", parts.uri.query().unwrap_or(""));
    env.push_concat("X_FULL_URL", &["http://", host, path_and_query]);
    env.push("SERVER_NAME", server_name);
    env.push("SERVER_PROTOCOL", protocol(parts.version));
    env.push("REMOTE_ADDR", remote_ip);
    env.push("REMOTE_HOST", remote_ip);
    env.push_bytes(
        "CONTENT_TYPE",
        parts
            .headers
            .get(header::CONTENT_TYPE)
            .map_or(&b""[..], |v| v.as_bytes()),
    );
    env.push_fmt("CONTENT_LENGTH", format_args!("{body_len}"));
    for (name, value) in &parts.headers {
        // Credentials stay with the server, as in CGI; type and length are
        // above under their CGI names.
        if matches!(
            *name,
            header::AUTHORIZATION | header::CONTENT_TYPE | header::CONTENT_LENGTH
        ) {
            continue;
        }
        env.push_header(name.as_str(), value.as_bytes());
    }
}

fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// Turns the module's CGI output into a response: `status:` sets the code,
/// `location:` alone means a redirect, other headers pass through.
fn cgi_response(out: Bytes) -> Result<Response<Full<Bytes>>, String> {
    let (head_end, body_start) =
        head_split(&out).ok_or("module output has no blank line ending its CGI headers")?;
    let head = std::str::from_utf8(&out[..head_end])
        .map_err(|_| "module wrote CGI headers that are not UTF-8".to_string())?;
    let mut status = None;
    let mut redirect = false;
    let mut resp = Response::new(Full::default());
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("module wrote a bad CGI header line {line:?}"))?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok())
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| format!("module wrote a bad CGI status {value:?}"))?;
            status = Some(code);
            continue;
        }
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("module wrote a bad header name {name:?}"))?;
        if matches!(name, header::CONTENT_LENGTH | header::TRANSFER_ENCODING) {
            continue;
        }
        redirect |= name == header::LOCATION;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("module wrote a bad value for header {name}"))?;
        resp.headers_mut().append(name, value);
    }
    *resp.status_mut() = status.unwrap_or(if redirect {
        StatusCode::FOUND
    } else {
        StatusCode::OK
    });
    *resp.body_mut() = Full::new(out.slice(body_start..));
    Ok(resp)
}

/// Where the header block ends and the body starts (`\n\n` or `\r\n\r\n`).
fn head_split(out: &[u8]) -> Option<(usize, usize)> {
    let lf = out
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    let crlf = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgi_output_becomes_a_response() {
        let resp = cgi_response(Bytes::from_static(
            b"content-type: text/plain\nstatus: 404 Not Found\nx-a: 1\n\nnope\n",
        ))
        .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(resp.headers()["content-type"], "text/plain");
        assert_eq!(resp.headers()["x-a"], "1");
    }

    #[test]
    fn location_alone_redirects_and_crlf_works() {
        let resp = cgi_response(Bytes::from_static(b"location: /there\r\n\r\n")).unwrap();
        assert_eq!(resp.status(), StatusCode::FOUND);
    }

    #[test]
    fn output_without_headers_is_refused() {
        assert!(cgi_response(Bytes::from_static(b"hello")).is_err());
        assert!(cgi_response(Bytes::from_static(b"no colon\n\nbody")).is_err());
        assert!(cgi_response(Bytes::from_static(b"status: abc\n\n")).is_err());
    }
}
