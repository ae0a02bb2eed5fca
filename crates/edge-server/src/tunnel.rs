//! Agents' tunnels and what goes through them. An agent opens
//! `GET /v1/node/{id}/tunnel` with `Upgrade: edge-tunnel` (authenticated
//! like every node route, for its own id only); after 101 the server runs an
//! HTTP/2 client over the upgraded stream and keeps the newest tunnel per
//! node. Every call the server makes to an agent (logs, GC, exec) goes
//! through it; logs and GC fall back to the agent's registered address
//! when a node has no tunnel. Exec sessions (`/v1/client/allocation/{id}/exec`)
//! are an HTTP/1.1 upgrade on the user's side and one full-duplex HTTP/2
//! stream on the agent's; the server relays their bytes without reading
//! them.

use crate::Server;
use crate::auth::{self, Caller};
use crate::error::ServerError;
use crate::extract::{ApiPath, ApiQuery};
use crate::ops;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use edge_api::TOKEN_HEADER;
use edge_api::exec::{EXEC_PROTOCOL, ExecQuery, TUNNEL_PROTOCOL};
use edge_spec::ClientStatus;
use http_body_util::BodyExt;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

/// How often the server pings a tunnel, and how long a ping may go
/// unanswered before the tunnel is dropped.
const KEEPALIVE: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an exec waits for a node's tunnel to come (back) up.
const TUNNEL_WAIT: Duration = Duration::from_secs(5);

type Res = Result<Response, ServerError>;

/// The open tunnels, newest per node.
#[derive(Default)]
pub struct Tunnels {
    open: Mutex<HashMap<String, (u64, SendRequest<Body>)>>,
    generation: AtomicU64,
    /// Bumped whenever a tunnel opens, for callers waiting for one.
    opened: watch::Sender<u64>,
    /// Set at server shutdown: every tunnel closes.
    closed: watch::Sender<bool>,
    /// Nodes whose tunnels must close now (revoked).
    dropped: watch::Sender<Vec<String>>,
}

impl Tunnels {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, SendRequest<Body>)>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many nodes have a tunnel open.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Closes every tunnel (server shutdown).
    pub fn close_all(&self) {
        self.closed.send_replace(true);
    }

    /// Closes `node`'s tunnel (it was revoked).
    pub fn drop_node(&self, node: &str) {
        self.lock().remove(node);
        self.dropped.send_modify(|d| {
            d.clear();
            d.push(node.to_string());
        });
    }

    /// `node`'s tunnel, waiting up to `wait` for one to open.
    pub async fn get(&self, node: &str, wait: Duration) -> Option<SendRequest<Body>> {
        let mut opened = self.opened.subscribe();
        let found = || self.lock().get(node).map(|(_, s)| s.clone());
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(s) = found().filter(|s| !s.is_closed()) {
                return Some(s);
            }
            if tokio::time::timeout_at(deadline, opened.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    /// Serves one tunnel of `node` until it closes.
    async fn run(self: Arc<Self>, node: String, on: hyper::upgrade::OnUpgrade) {
        let upgraded = match on.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(%node, error = %e, "tunnel upgrade failed");
                return;
            }
        };
        let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .handshake(upgraded)
            .await;
        let (send, conn) = match handshake {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(%node, error = %e, "tunnel handshake failed");
                return;
            }
        };
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(node.clone(), (generation, send));
        self.opened.send_modify(|n| *n += 1);
        tracing::info!(%node, "agent tunnel open");
        let mut closed = self.closed.subscribe();
        let mut dropped = self.dropped.subscribe();
        tokio::select! {
            r = conn => {
                if let Err(e) = r {
                    tracing::debug!(%node, error = %e, "tunnel ended");
                }
            }
            _ = closed.wait_for(|c| *c) => {}
            _ = dropped.wait_for(|d| d.contains(&node)) => {}
        }
        let mut open = self.lock();
        if open.get(&node).is_some_and(|(g, _)| *g == generation) {
            open.remove(&node);
        }
        drop(open);
        tracing::info!(%node, "agent tunnel closed");
    }

    /// Sends `req` to `node`'s agent through its tunnel. `None` when the
    /// node has no tunnel open (within `wait`).
    pub async fn send(
        &self,
        node: &str,
        wait: Duration,
        req: hyper::Request<Body>,
    ) -> Option<Result<hyper::Response<hyper::body::Incoming>, ServerError>> {
        let mut send = self.get(node, wait).await?;
        let unreachable = |e: hyper::Error| ServerError::AgentUnreachable {
            node: node.to_string(),
            reason: format!("tunnel: {e}"),
        };
        Some(match send.ready().await {
            Ok(()) => send.send_request(req).await.map_err(unreachable),
            Err(e) => Err(unreachable(e)),
        })
    }
}

/// A request for an agent route, as the tunnel carries it.
pub fn agent_request(
    sv: &Server,
    method: axum::http::Method,
    path_and_query: &str,
    body: Body,
) -> Result<hyper::Request<Body>, ServerError> {
    hyper::Request::builder()
        .method(method)
        .uri(format!("http://agent{path_and_query}"))
        .header(TOKEN_HEADER, sv.secret())
        .body(body)
        .map_err(|e| ServerError::Internal(format!("agent request: {e}")))
}

fn upgrade_asked(headers: &HeaderMap, protocol: &str) -> bool {
    let has = |name: header::HeaderName, want: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.trim().eq_ignore_ascii_case(want))
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, protocol)
}

fn switching(protocol: &'static str) -> Response {
    let mut resp = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static(protocol));
    resp
}

/// `GET /v1/node/{id}/tunnel`: a node opens its tunnel.
pub async fn node_tunnel(
    State(sv): State<Arc<Server>>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    mut req: Request,
) -> Res {
    auth::node(&sv, &caller, &headers, &id)?;
    if !upgrade_asked(&headers, TUNNEL_PROTOCOL) {
        return Err(ServerError::BadRequest(format!(
            "the tunnel needs `Connection: upgrade` and `Upgrade: {TUNNEL_PROTOCOL}`"
        )));
    }
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(sv.tunnels.clone().run(id, on));
    Ok(switching(TUNNEL_PROTOCOL))
}

/// `GET /v1/client/allocation/{id}/exec`: runs a command in a running task
/// of the allocation, as an upgraded connection carrying exec frames.
pub async fn alloc_exec(
    State(sv): State<Arc<Server>>,
    access: crate::acl::Access,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiQuery(mut q): ApiQuery<ExecQuery>,
    mut req: Request,
) -> Res {
    let alloc = sv
        .store
        .read(|s| ops::by_prefix("allocation", &id, s.allocs.iter()).cloned())?;
    access.require(&alloc.namespace, edge_spec::acl::Capability::AllocExec)?;
    if alloc.client_status != ClientStatus::Running {
        return Err(ServerError::Conflict(format!(
            "allocation {} is {}, not running{}",
            alloc.short_id(),
            alloc.client_status.as_str(),
            if alloc.client_description.is_empty() {
                String::new()
            } else {
                format!(": {}", alloc.client_description)
            }
        )));
    }
    let task = match q.task.take() {
        Some(t) if alloc.task_states.contains_key(&t) => t,
        Some(t) => {
            return Err(ServerError::NoSuchTask {
                alloc: alloc.short_id().to_string(),
                task: t,
                tasks: tasks_of(&alloc),
            });
        }
        None if alloc.task_states.len() == 1 => {
            alloc.task_states.keys().next().cloned().unwrap_or_default()
        }
        None => {
            return Err(ServerError::BadRequest(format!(
                "allocation {} has several tasks ({}); name one with ?task=",
                alloc.short_id(),
                tasks_of(&alloc)
            )));
        }
    };
    q.task = Some(task);
    q.argv().map_err(ServerError::BadRequest)?;
    if !upgrade_asked(&headers, EXEC_PROTOCOL) {
        return Err(ServerError::BadRequest(format!(
            "exec needs `Connection: upgrade` and `Upgrade: {EXEC_PROTOCOL}`"
        )));
    }
    let query = serde_urlencoded::to_string(&q)
        .map_err(|e| ServerError::Internal(format!("exec query: {e}")))?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let agent_req = agent_request(
        &sv,
        axum::http::Method::POST,
        &format!("/v1/client/allocation/{}/exec?{query}", alloc.id),
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )?;
    let resp = sv
        .tunnels
        .send(&alloc.node_id, TUNNEL_WAIT, agent_req)
        .await
        .ok_or_else(|| ServerError::AgentUnreachable {
            node: alloc.node_id.clone(),
            reason: "the agent has no tunnel open to this server".to_string(),
        })??;
    if resp.status() != StatusCode::OK {
        // The agent's own refusal (no such task, not running, a driver that
        // cannot exec) goes to the user as it is.
        return Ok(resp.map(Body::new).into_response());
    }
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(relay(on, tx, resp.into_body()));
    Ok(switching(EXEC_PROTOCOL))
}

fn tasks_of(alloc: &edge_spec::Allocation) -> String {
    alloc
        .task_states
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Copies the user's bytes to the agent and the agent's to the user until
/// either side ends: the agent's end is the exit frame; the user's end
/// closes the agent's stream, which kills the command.
async fn relay(
    on: hyper::upgrade::OnUpgrade,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    mut from_agent: hyper::body::Incoming,
) {
    let upgraded = match on.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "exec upgrade failed");
            return;
        }
    };
    let (mut user_r, mut user_w) = tokio::io::split(TokioIo::new(upgraded));
    let to_agent = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match user_r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx
                        .send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    };
    let to_user = async move {
        while let Some(Ok(frame)) = from_agent.frame().await {
            if let Ok(data) = frame.into_data()
                && (user_w.write_all(&data).await.is_err() || user_w.flush().await.is_err())
            {
                return;
            }
        }
        let _ = user_w.shutdown().await;
    };
    tokio::select! {
        () = to_agent => {}
        () = to_user => {}
    }
}
