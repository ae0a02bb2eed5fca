//! The agent's own small HTTP API, reached by the server only: task logs
//! (`edge alloc logs`, with follow) and node GC. With a TLS server it
//! serves the node's certificate and takes only clients that prove to be
//! the server (mutual TLS); with a plain one it is guarded by the join token.

use crate::runner::{RunCtx, alloc_dirs};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use edge_api::{ErrorBody, TOKEN_HEADER};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

pub type GcFuture = std::pin::Pin<Box<dyn Future<Output = Vec<edge_api::GcLeftover>> + Send>>;
/// Runs the node's garbage collection now; the agent hands it in.
pub type GcFn = Arc<dyn Fn() -> GcFuture + Send + Sync>;

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
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    limits: edge_api::listen::Limits,
    guard: Guard,
    ctx: Arc<RunCtx>,
    gc: GcFn,
) {
    let token = match &guard {
        Guard::Token(t) => Some(Arc::from(t.as_str())),
        Guard::Tls(_) => None,
    };
    let app = Router::new()
        .route("/v1/client/allocation/{id}/logs", get(logs))
        .route("/v1/client/gc", post(run_gc))
        .with_state(AppState { token, ctx, gc });
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
