//! HTTP mode (WAGI): the task's port is served by the agent and every request
//! runs in a fresh instance of the module, CGI style — request metadata in
//! env vars, the body on stdin, headers + blank line + body on stdout.

use crate::runtime::{
    Host, Interrupt, Interrupted, MemoryLimiter, describe, interrupted, new_store,
};
use crate::stdio::LogStream;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpSocket};
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use wasmtime::{Engine, InstancePre};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

/// Request bodies above this are refused with 413.
const MAX_BODY: usize = 16 << 20;
/// A handler writing more than this traps.
const MAX_OUTPUT: usize = 64 << 20;

/// One module serving requests: everything a request's fresh instance needs.
pub(crate) struct Handler {
    pub engine: Engine,
    pub pre: InstancePre<Host>,
    pub argv: Vec<String>,
    /// From [`base_env`].
    pub env: Vec<(String, String)>,
    pub stderr: LogStream,
    pub memory_limit: u64,
    pub live_memory: Arc<AtomicU64>,
    pub busy_ns: Arc<AtomicU64>,
    pub timeout: Duration,
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
        request_env: impl FnOnce(&mut WasiCtxBuilder),
        body: Bytes,
    ) -> Result<Bytes, Failure> {
        let started = Instant::now();
        let stdout = MemoryOutputPipe::new(MAX_OUTPUT);
        let mut b = WasiCtxBuilder::new();
        b.args(&self.argv).envs(&self.env);
        request_env(&mut b);
        b.stdin(MemoryInputPipe::new(body))
            .stdout(stdout.clone())
            .stderr(self.stderr.clone());
        let host = Host {
            wasi: b.build_p1(),
            limits: MemoryLimiter::new(self.memory_limit, self.live_memory.clone()),
            interrupt: Interrupt {
                stop: None,
                deadline: Some((started + self.timeout, self.timeout)),
            },
        };
        let mut store = new_store(&self.engine, host);
        let result = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call_async(&mut store, ()).await
        }
        .await;
        drop(store);
        self.busy_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        match result {
            Ok(()) => Ok(stdout.contents()),
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(I32Exit(0)) => Ok(stdout.contents()),
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
    pub(crate) fn serve(
        &self,
        port: u16,
        handler: Arc<Handler>,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<impl Future<Output = std::io::Result<()>> + Send + 'static> {
        let addr = SocketAddr::from(([0, 0, 0, 0], port));
        let mut listeners = Vec::with_capacity(self.handles.len());
        for handle in &self.handles {
            // Registers the listener with that thread's reactor.
            let _enter = handle.enter();
            let socket = TcpSocket::new_v4()?;
            socket.set_reuseaddr(true)?;
            socket.set_reuseport(true)?;
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
    let app = Router::new().fallback(handle).with_state(handler);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    })
    .await
}

async fn handle(
    State(h): State<Arc<Handler>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n").into_response();
    };
    let body_len = body.len();
    let request_env = |b: &mut WasiCtxBuilder| add_request_env(b, &parts, remote, body_len);
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
    (failure.status, format!("{}\n", failure.reason)).into_response()
}

/// The variables every request of a task shares: the task's own env, then
/// the CGI constants. Built once so that a request only adds its own.
pub(crate) fn base_env<'a>(
    task_env: impl IntoIterator<Item = (&'a String, &'a String)>,
    port: u16,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = task_env
        .into_iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let constants = [
        ("SCRIPT_NAME", String::new()),
        ("X_MATCHED_ROUTE", "/...".to_string()),
        ("SERVER_PORT", port.to_string()),
        ("SERVER_SOFTWARE", "edge-wasm".to_string()),
        ("GATEWAY_INTERFACE", "CGI/1.1".to_string()),
        ("REMOTE_USER", String::new()),
        ("AUTH_TYPE", String::new()),
    ];
    env.extend(constants.into_iter().map(|(k, v)| (k.to_string(), v)));
    env
}

/// Adds the CGI/WAGI variables of one request to the instance's WASI context,
/// straight from the parsed request so that nothing is copied twice.
pub(crate) fn add_request_env(
    b: &mut WasiCtxBuilder,
    parts: &axum::http::request::Parts,
    remote: SocketAddr,
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
    let ip = remote.ip().to_string();
    b.env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", path)
        .env("PATH_TRANSLATED", path)
        .env("X_RAW_PATH_INFO", path)
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("X_FULL_URL", format!("http://{host}{path_and_query}"))
        .env("SERVER_NAME", server_name)
        .env("SERVER_PROTOCOL", protocol(parts.version))
        .env("REMOTE_ADDR", &ip)
        .env("REMOTE_HOST", &ip)
        .env(
            "CONTENT_TYPE",
            parts
                .headers
                .get(header::CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()))
                .unwrap_or_default(),
        )
        .env("CONTENT_LENGTH", body_len.to_string());
    let mut key = String::with_capacity(64);
    for (name, value) in &parts.headers {
        // Credentials stay with the server, as in CGI; type and length are
        // above under their CGI names.
        if matches!(
            *name,
            header::AUTHORIZATION | header::CONTENT_TYPE | header::CONTENT_LENGTH
        ) {
            continue;
        }
        key.clear();
        key.push_str("HTTP_");
        key.extend(name.as_str().chars().map(|c| match c {
            '-' => '_',
            c => c.to_ascii_uppercase(),
        }));
        b.env(&key, String::from_utf8_lossy(value.as_bytes()));
    }
}

fn protocol(version: axum::http::Version) -> &'static str {
    match version {
        axum::http::Version::HTTP_09 => "HTTP/0.9",
        axum::http::Version::HTTP_10 => "HTTP/1.0",
        axum::http::Version::HTTP_2 => "HTTP/2.0",
        axum::http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// Turns the module's CGI output into a response: `status:` sets the code,
/// `location:` alone means a redirect, other headers pass through.
fn cgi_response(out: Bytes) -> Result<Response, String> {
    let (head_end, body_start) =
        head_split(&out).ok_or("module output has no blank line ending its CGI headers")?;
    let head = std::str::from_utf8(&out[..head_end])
        .map_err(|_| "module wrote CGI headers that are not UTF-8".to_string())?;
    let mut status = None;
    let mut redirect = false;
    let mut resp = Response::new(Body::empty());
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
    *resp.body_mut() = Body::from(out.slice(body_start..));
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
