//! The Open Inference Protocol (KServe V2) REST server of one model:
//! health, metadata, inference and `/metrics`.

use crate::MODEL_VERSION;
use crate::batch::{BatchConfig, Batcher};
use crate::binary;
use crate::error::ModelError;
use crate::infer;
use crate::metrics::Metrics;
use crate::model::{Model, TensorInfo};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Request bodies larger than this are refused (413).
pub(crate) const BODY_LIMIT: usize = 64 << 20;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The `.onnx` file.
    pub model: PathBuf,
    /// The name clients use in `/v2/models/{name}`.
    pub name: String,
    pub addr: SocketAddr,
    /// Most rows stacked into one execution; 1 turns batching off.
    pub max_batch_size: usize,
    /// Longest a request waits for others to join its batch.
    pub max_delay: Duration,
    /// Model executions at once; 0 means one per CPU.
    pub workers: usize,
    /// Where to serve the protocol over gRPC too, if anywhere.
    pub grpc_addr: Option<SocketAddr>,
}

impl ServeConfig {
    pub fn new(model: PathBuf, name: impl Into<String>, addr: SocketAddr) -> ServeConfig {
        ServeConfig {
            model,
            name: name.into(),
            addr,
            max_batch_size: 32,
            max_delay: Duration::from_millis(2),
            workers: 0,
            grpc_addr: None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct AppState {
    model: Arc<Model>,
    batcher: Batcher,
    metrics: Arc<Metrics>,
    metadata: Bytes,
}

/// The protocol extensions this server speaks, in `/v2` and gRPC's
/// `ServerMetadata`.
pub(crate) const EXTENSIONS: &[&str] = &["binary_tensor_data"];

/// A served model and what runs it, as an inference needs them.
#[derive(Clone)]
pub(crate) struct Served {
    pub model: Arc<Model>,
    pub batcher: Batcher,
    pub metrics: Arc<Metrics>,
}

/// A loaded model with its listening socket, not yet serving.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    router: Router,
    addr: SocketAddr,
    model: Arc<Model>,
    grpc: Option<(tokio::net::TcpListener, SocketAddr)>,
    state: Arc<AppState>,
}

#[derive(Serialize)]
struct ModelMetadata<'a> {
    name: &'a str,
    versions: [&'a str; 1],
    platform: &'a str,
    inputs: &'a [TensorInfo],
    outputs: &'a [TensorInfo],
}

/// Loads the model, then listens on `cfg.addr`. Loading first means a model
/// that cannot load never opens the port.
pub async fn bind(cfg: ServeConfig) -> Result<Server, ModelError> {
    let (path, name) = (cfg.model.clone(), cfg.name.clone());
    let model = tokio::task::spawn_blocking(move || Model::load(&path, &name))
        .await
        .map_err(|e| ModelError::Load {
            path: cfg.model.clone(),
            reason: e.to_string(),
        })??;
    let model = Arc::new(model);
    let workers = match cfg.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let max_batch_size = if model.batchable {
        cfg.max_batch_size.max(1)
    } else {
        1
    };
    let metrics = Arc::new(Metrics::new(&model.name, max_batch_size));
    let batcher = Batcher::start(
        model.clone(),
        BatchConfig {
            max_batch_size,
            max_delay: cfg.max_delay,
            workers,
        },
        metrics.clone(),
    );
    let metadata = serde_json::to_vec(&ModelMetadata {
        name: &model.name,
        versions: [MODEL_VERSION],
        platform: "onnx",
        inputs: &model.inputs,
        outputs: &model.outputs,
    })
    .map_err(|e| ModelError::Load {
        path: cfg.model.clone(),
        reason: format!("encoding metadata: {e}"),
    })?;
    let state = Arc::new(AppState {
        model: model.clone(),
        batcher,
        metrics,
        metadata: Bytes::from(metadata),
    });
    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .map_err(|source| ModelError::Bind {
            addr: cfg.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(ModelError::Serve)?;
    let grpc = match cfg.grpc_addr {
        None => None,
        Some(at) => {
            let l = tokio::net::TcpListener::bind(at)
                .await
                .map_err(|source| ModelError::Bind { addr: at, source })?;
            let bound = l.local_addr().map_err(ModelError::Serve)?;
            Some((l, bound))
        }
    };
    Ok(Server {
        listener,
        router: router(state.clone()),
        addr,
        model,
        grpc,
        state,
    })
}

impl Server {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The gRPC address, when the config asked for one.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().map(|(_, a)| *a)
    }

    /// Serves until `shutdown` resolves, then finishes requests in flight.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ModelError> {
        let shutdown = futures_util::FutureExt::shared(Box::pin(shutdown));
        let app = tower::ServiceExt::map_request(self.router, trim_trailing_slash);
        let app = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
        let rest = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown.clone())
            .into_future();
        let Some((listener, _)) = self.grpc else {
            return rest.await.map_err(ModelError::Serve);
        };
        let grpc = crate::grpc::serve(self.state, listener, shutdown);
        let (rest, grpc) = tokio::join!(rest, grpc);
        rest.map_err(ModelError::Serve)?;
        grpc
    }
}

/// Loads, binds and serves until `shutdown` resolves.
pub async fn serve(
    cfg: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ModelError> {
    bind(cfg).await?.run(shutdown).await
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(infer))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(version_metadata),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(version_ready),
        )
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(version_infer),
        )
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

fn json(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.into(),
    )
        .into_response()
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let body = serde_json::json!({ "error": message.to_string() }).to_string();
    json(status, body)
}

/// `/v2/` is `/v2`: clients and people add the slash, and the protocol's
/// paths have no meaning for it. Done before routing.
fn trim_trailing_slash(mut req: axum::extract::Request) -> axum::extract::Request {
    let path = req.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let pq = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_string(),
        };
        let mut parts = req.uri().clone().into_parts();
        if let Ok(pq) = pq.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}

/// A JSON error like every other, naming what the route takes.
async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> Response {
    let wanted = if uri.path().ends_with("/infer") {
        "POST"
    } else {
        "GET"
    };
    let mut resp = error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not allowed on {}: it takes {wanted}",
            uri.path()
        ),
    );
    resp.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(wanted));
    resp
}

async fn not_found(uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no route for {}", uri.path()),
    )
}

async fn server_metadata() -> Response {
    let (name, version) = server_info();
    let body = serde_json::json!({
        "name": name,
        "version": version,
        "extensions": EXTENSIONS,
    });
    json(StatusCode::OK, body.to_string())
}

async fn live() -> Response {
    json(StatusCode::OK, r#"{"live":true}"#)
}

/// The model is loaded before the port opens, so a listening server is ready.
async fn ready() -> Response {
    json(StatusCode::OK, r#"{"ready":true}"#)
}

/// The model `name` (at `version`, if given) with what runs it. The one
/// place gRPC and REST inference find a model.
pub(crate) fn lookup(
    s: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<Served, ModelError> {
    if name != s.model.name {
        return Err(ModelError::ModelNotFound(format!(
            "model {name:?} not found; this server serves {:?}",
            s.model.name
        )));
    }
    match version {
        Some(v) if v != MODEL_VERSION => Err(ModelError::ModelNotFound(format!(
            "model {name:?} has no version {v:?}; it has {MODEL_VERSION:?}"
        ))),
        _ => Ok(Served {
            model: s.model.clone(),
            batcher: s.batcher.clone(),
            metrics: s.metrics.clone(),
        }),
    }
}

/// Checks the name and version in the path against the served model.
fn find(s: &AppState, name: &str, version: Option<&str>) -> Result<(), Box<Response>> {
    lookup(s, name, version)
        .map(drop)
        .map_err(|e| Box::new(error(StatusCode::NOT_FOUND, e)))
}

/// The server's metadata, the same for REST and gRPC.
pub(crate) fn server_info() -> (&'static str, &'static str) {
    ("edge", env!("CARGO_PKG_VERSION"))
}

async fn model_metadata(State(s): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    metadata_of(&s, &name, None)
}

async fn version_metadata(
    State(s): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    metadata_of(&s, &name, Some(&version))
}

fn metadata_of(s: &AppState, name: &str, version: Option<&str>) -> Response {
    match find(s, name, version) {
        Ok(()) => json(StatusCode::OK, s.metadata.clone()),
        Err(r) => *r,
    }
}

async fn model_ready(State(s): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    ready_of(&s, &name, None)
}

async fn version_ready(
    State(s): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    ready_of(&s, &name, Some(&version))
}

fn ready_of(s: &AppState, name: &str, version: Option<&str>) -> Response {
    match find(s, name, version) {
        Ok(()) => {
            let body = serde_json::json!({ "name": name, "ready": true });
            json(StatusCode::OK, body.to_string())
        }
        Err(r) => *r,
    }
}

async fn infer(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    infer_of(&s, &name, None, &headers, body).await
}

async fn version_infer(
    State(s): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    infer_of(&s, &name, Some(&version), &headers, body).await
}

/// The status that answers a failed inference, for REST and (through its
/// code) the request metrics of every protocol.
pub(crate) fn status_of(e: &ModelError) -> StatusCode {
    match e {
        ModelError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ModelError::ModelNotFound(_) => StatusCode::NOT_FOUND,
        ModelError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn infer_of(
    s: &AppState,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let response = match lookup(s, name, version) {
        Ok(served) => run_infer(&served, headers, body)
            .await
            .unwrap_or_else(|e| error(status_of(&e), e)),
        Err(e) => error(status_of(&e), e),
    };
    s.metrics
        .record(response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

async fn run_infer(
    served: &Served,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ModelError> {
    let incoming = served.batcher.incoming();
    let header_length = headers.get(binary::HEADER_LENGTH).map(|v| v.as_bytes());
    let (req, modes) = binary::parse(body, header_length)?;
    let answer = infer::infer(&served.model, &served.batcher, incoming, req).await?;
    let outputs = answer.outputs(&served.model)?;
    let (body, json_length) = binary::response(
        &served.model.name,
        MODEL_VERSION,
        answer.id.clone(),
        &outputs,
        &modes,
    )?;
    Ok(match json_length {
        None => json(StatusCode::OK, body),
        // Binary outputs follow the JSON: Triton answers such a body as
        // octet-stream, and its clients split it at this header.
        Some(n) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (
                    header::HeaderName::from_static(binary::HEADER_LENGTH),
                    n.to_string(),
                ),
            ],
            body,
        )
            .into_response(),
    })
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}
