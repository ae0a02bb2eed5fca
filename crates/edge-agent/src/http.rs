//! The agent's own small HTTP API, reached by the server only: task logs
//! (`edge alloc logs`, with follow), exec sessions (`edge alloc exec`) and
//! node GC. The server reaches it through the agent's tunnel (`tunnel.rs`)
//! and, for logs and GC, directly on the agent's listener as a fallback.
//! With a TLS server the listener serves the node's certificate and takes
//! only clients that prove to be the server (mutual TLS); with a plain one
//! it is guarded by the join token.

use crate::gc::Runners;
use crate::runner::{RunCtx, alloc_dirs};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use edge_api::exec::{Decoder, ExecQuery, Frame};
use edge_api::{ErrorBody, TOKEN_HEADER};
use edge_driver::{DriverError, ExecRequest, ExecSession};
use futures_util::StreamExt;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

pub type GcFuture = std::pin::Pin<Box<dyn Future<Output = Vec<edge_api::GcLeftover>> + Send>>;
/// Runs the node's garbage collection now; the agent hands it in.
pub type GcFn = Arc<dyn Fn() -> GcFuture + Send + Sync>;

/// How long output still held open by a command's children may delay the
/// exit frame once the command itself ended.
const EXEC_DRAIN: Duration = Duration::from_secs(2);

/// Who may call: whoever holds the join token (plain), or the server
/// proven by its certificate (TLS, checked at the handshake).
pub enum Guard {
    Token(String),
    Tls(Arc<crate::pki::NodeTls>),
}

#[derive(Clone)]
struct AppState {
    token: Option<Arc<str>>,
    ctx: Arc<RunCtx>,
    gc: GcFn,
    runners: Runners,
}

/// The agent's routes; the listener and the tunnel serve the same ones.
pub fn router(guard: &Guard, ctx: Arc<RunCtx>, gc: GcFn, runners: Runners) -> Router {
    let token = match guard {
        Guard::Token(t) => Some(Arc::from(t.as_str())),
        Guard::Tls(_) => None,
    };
    Router::new()
        .route("/v1/client/allocation/{id}/logs", get(logs))
        .route("/v1/client/allocation/{id}/exec", post(exec))
        .route("/v1/client/gc", post(run_gc))
        .route("/v1/client/volume/delete", post(delete_volume))
        .with_state(AppState {
            token,
            ctx,
            gc,
            runners,
        })
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    limits: edge_api::listen::Limits,
    guard: Guard,
    app: Router,
) {
    match guard {
        Guard::Token(_) => {
            edge_api::listen::serve(listener, limits, app, std::future::pending()).await;
        }
        Guard::Tls(tls) => {
            // The node's certificate comes with its first contact with the
            // server; until then nobody is served.
            let _ = tls.ready().wait_for(|r| *r).await;
            let config = match tls.server_config() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "agent http server cannot serve TLS");
                    return;
                }
            };
            let admit: edge_api::tls::Admit =
                Arc::new(|peer| peer == Some(&edge_api::tls::Identity::Server));
            edge_api::tls::serve(listener, limits, config, admit, app, std::future::pending())
                .await;
        }
    }
}

fn authorized(st: &AppState, headers: &HeaderMap) -> bool {
    match &st.token {
        None => true,
        Some(t) => headers
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|given| edge_api::tls::secret_matches(given, t)),
    }
}

async fn run_gc(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if !authorized(&st, &headers) {
        return err(StatusCode::FORBIDDEN, "invalid token");
    }
    let removed = (st.gc)().await;
    axum::Json(edge_api::GcResponse {
        node_id: st.ctx.node_id.clone(),
        removed,
    })
    .into_response()
}

/// Removes a local volume's directory, unless a copy on this node still
/// runs with it.
async fn delete_volume(
    State(st): State<AppState>,
    headers: HeaderMap,
    axum::Json(v): axum::Json<edge_spec::Volume>,
) -> Response {
    if !authorized(&st, &headers) {
        return err(StatusCode::FORBIDDEN, "invalid token");
    }
    let in_use = st.runners.lock().await.values().any(|r| {
        r.view().is_some_and(|(a, _)| {
            a.namespace == v.namespace
                && a.job_id == v.job_id
                && a.group == v.group
                && a.index == v.index
                && !a.is_terminal()
        })
    });
    if in_use {
        return err(
            StatusCode::CONFLICT,
            format!("volume {} is in use on this node", v.display_name()),
        );
    }
    let dir = match crate::runner::local_volume_dir(
        &st.ctx,
        &v.namespace,
        &v.job_id,
        &v.group,
        &v.name,
        v.index,
    ) {
        Ok(d) => d,
        Err(e) => return err(StatusCode::BAD_REQUEST, e),
    };
    // A sized volume's file system goes first, then its image.
    if crate::data::mounted(&dir)
        && let Err(e) = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH)
    {
        return err(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot unmount {}: {e}", dir.display()),
        );
    }
    let image = crate::runner::volume_image(&dir);
    let had_image = match tokio::fs::remove_file(&image).await {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            return err(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot remove {}: {e}", image.display()),
            );
        }
    };
    let removed = match tokio::fs::remove_dir_all(&dir).await {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => had_image,
        Err(e) => {
            return err(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot remove {}: {e}", dir.display()),
            );
        }
    };
    tracing::info!(volume = %v.display_name(), path = %dir.display(), removed, "local volume removed");
    axum::Json(edge_api::AgentVolumeDeleted { removed }).into_response()
}

fn err(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, axum::Json(ErrorBody { error: msg.into() })).into_response()
}

#[derive(Deserialize)]
struct LogQuery {
    task: String,
    #[serde(rename = "type", default = "stdout")]
    stream: String,
    #[serde(default)]
    follow: bool,
    #[serde(default)]
    tail: Option<u64>,
}

fn stdout() -> String {
    "stdout".to_string()
}

async fn logs(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> Response {
    if !authorized(&st, &headers) {
        return err(StatusCode::FORBIDDEN, "invalid token");
    }
    if q.stream != "stdout" && q.stream != "stderr" {
        return err(StatusCode::BAD_REQUEST, "type must be stdout or stderr");
    }
    if id.contains('/') || id.contains("..") || q.task.contains('/') || q.task.contains("..") {
        return err(StatusCode::BAD_REQUEST, "invalid allocation or task name");
    }
    let (root, dir) = alloc_dirs(&st.ctx, &id);
    if !root.exists() {
        return err(
            StatusCode::NOT_FOUND,
            format!("allocation {id} has no directory on this node"),
        );
    }
    let initial = match edge_driver::logs::read_logs(&dir, &q.task, &q.stream, q.tail) {
        Ok(b) => b,
        Err(e) => return err(StatusCode::INTERNAL_SERVER_ERROR, format!("read logs: {e}")),
    };
    if !q.follow {
        return (StatusCode::OK, initial).into_response();
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(8);
    let task = q.task.clone();
    let stream = q.stream.clone();
    tokio::spawn(async move {
        let mut cursor = match edge_driver::logs::log_end(&dir, &task, &stream) {
            Ok(c) => c,
            Err(_) => return,
        };
        if tx.send(Ok(bytes::Bytes::from(initial))).await.is_err() {
            return;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if tx.is_closed() {
                return;
            }
            let (chunk, next) =
                match edge_driver::logs::read_logs_from(&dir, &task, &stream, cursor, 1 << 20) {
                    Ok(x) => x,
                    Err(_) => continue,
                };
            cursor = next;
            if !chunk.is_empty() && tx.send(Ok(bytes::Bytes::from(chunk))).await.is_err() {
                return;
            }
        }
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).into_response()
}

/// Starts a command in a running task and streams it: the request body
/// carries the client's frames (stdin, resize), the response body the
/// command's (stdout, stderr, exit). The request body ending means the
/// client is gone, and the command is killed.
async fn exec(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ExecQuery>,
    body: Body,
) -> Response {
    if !authorized(&st, &headers) {
        return err(StatusCode::FORBIDDEN, "invalid token");
    }
    let argv = match q.argv() {
        Ok(a) => a,
        Err(e) => return err(StatusCode::BAD_REQUEST, e),
    };
    let Some(task) = q.task.clone() else {
        return err(
            StatusCode::BAD_REQUEST,
            "name the task to exec in with ?task=",
        );
    };
    let found = st.runners.lock().await.get(&id).map(|r| r.task(&task));
    let (driver, handle) = match found {
        None => {
            return err(
                StatusCode::NOT_FOUND,
                format!("allocation {id} does not run on this node"),
            );
        }
        Some(None) => {
            return err(
                StatusCode::NOT_FOUND,
                format!("task {task:?} is not in allocation {id}"),
            );
        }
        Some(Some((_, None))) => return not_running(&id, &task),
        Some(Some((driver, Some(handle)))) => (driver, handle),
    };
    let Some(d) = st.ctx.drivers.get(&driver).cloned() else {
        return err(
            StatusCode::BAD_REQUEST,
            format!("driver {driver} is not on this node"),
        );
    };
    let req = ExecRequest {
        argv,
        tty: q.tty,
        size: q.rows.zip(q.cols),
        stdin: q.stdin,
    };
    let (tx, rx) = mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(16);
    match d.exec(&handle, &req).await {
        Ok(session) => {
            tokio::spawn(pump(session, body, tx, q.stdin));
        }
        Err(DriverError::Exec { command, source }) => {
            // Like a shell: 127 for a command that is not there, 126 for one
            // that cannot run. The task itself is untouched.
            let code = if source.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            let msg = format!("cannot run {command:?} in task {task:?}: {source}");
            for f in [Frame::Error(msg), Frame::Exit(code)] {
                let _ = tx.try_send(Ok(bytes::Bytes::from(f.encode())));
            }
        }
        Err(DriverError::NotFound { .. }) => return not_running(&id, &task),
        Err(e @ DriverError::ExecUnsupported { .. }) => {
            return err(StatusCode::BAD_REQUEST, e.to_string());
        }
        Err(e) => return err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response()
}

fn not_running(id: &str, task: &str) -> Response {
    err(
        StatusCode::CONFLICT,
        format!("task {task:?} of allocation {id} is not running"),
    )
}

type FrameTx = mpsc::Sender<Result<bytes::Bytes, std::io::Error>>;

async fn send(tx: &FrameTx, f: Frame) -> bool {
    tx.send(Ok(bytes::Bytes::from(f.encode()))).await.is_ok()
}

/// Relays one session until the command exits (exit frame sent) or the
/// client goes away (the session is dropped, which kills the command).
async fn pump(session: ExecSession, body: Body, tx: FrameTx, stdin_open: bool) {
    let ExecSession {
        stdin,
        stdout,
        stderr,
        control,
    } = session;
    let mut outputs = {
        let tx = tx.clone();
        crate::AbortOnDrop(tokio::spawn(async move {
            let out = forward(stdout, &tx, Frame::Stdout);
            let err = async {
                if let Some(e) = stderr {
                    forward(e, &tx, Frame::Stderr).await;
                }
            };
            tokio::join!(out, err);
        }))
    };
    let input = async {
        let mut stdin = Some(stdin);
        if !stdin_open && let Some(mut w) = stdin.take() {
            let _ = w.shutdown().await;
        }
        let mut dec = Decoder::default();
        let mut stream = body.into_data_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            dec.push(&chunk);
            loop {
                match dec.next_frame() {
                    Ok(Some(Frame::Stdin(b))) => {
                        if let Some(w) = stdin.as_mut()
                            && (w.write_all(&b).await.is_err() || w.flush().await.is_err())
                        {
                            stdin = None;
                        }
                    }
                    Ok(Some(Frame::StdinClose)) => {
                        if let Some(mut w) = stdin.take() {
                            let _ = w.shutdown().await;
                        }
                    }
                    Ok(Some(Frame::Resize { rows, cols })) => {
                        let _ = control.resize(rows, cols).await;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "exec client sent a broken frame");
                        return;
                    }
                }
            }
        }
    };
    let exited = async {
        let code = control.wait().await;
        let _ = tokio::time::timeout(EXEC_DRAIN, &mut outputs.0).await;
        code
    };
    tokio::select! {
        code = exited => {
            let last = match code {
                Ok(c) => Frame::Exit(c),
                Err(e) => Frame::Error(e.to_string()),
            };
            send(&tx, last).await;
        }
        () = input => {}
    }
}

async fn forward(mut from: edge_driver::exec::Reader, tx: &FrameTx, frame: fn(Vec<u8>) -> Frame) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if !send(tx, frame(buf[..n].to_vec())).await {
                    return;
                }
            }
        }
    }
}
