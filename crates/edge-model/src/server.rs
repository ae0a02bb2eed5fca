//! The Open Inference Protocol (KServe V2) REST server of a model
//! repository: health, metadata, inference, the repository extension
//! (index, load, unload), model configs and `/metrics`.

use crate::binary;
use crate::error::ModelError;
use crate::infer;
use crate::model::TensorInfo;
use crate::repo::{ModelSource, Repository, RepositoryConfig, Served};
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
    /// Model versions named one by one.
    pub models: Vec<ModelSource>,
    /// A Triton-style repository directory: `<model>/<version>/model.onnx`.
    pub repository: Option<PathBuf>,
    pub addr: SocketAddr,
    /// Most rows stacked into one execution; 1 turns batching off.
    pub max_batch_size: usize,
    /// Longest a request waits for others to join its batch.
    pub max_delay: Duration,
    /// Model executions at once, per model version; 0 means one per CPU.
    pub workers: usize,
    /// Where to serve the protocol over gRPC too, if anywhere.
    pub grpc_addr: Option<SocketAddr>,
    /// What runs the models.
    pub backend: crate::Backend,
}

impl ServeConfig {
    /// One model, as version 1.
    pub fn new(model: PathBuf, name: impl Into<String>, addr: SocketAddr) -> ServeConfig {
        ServeConfig {
            models: vec![ModelSource {
                name: name.into(),
                version: 1,
                path: model,
            }],
            repository: None,
            addr,
            max_batch_size: 32,
            max_delay: Duration::from_millis(2),
            workers: 0,
            grpc_addr: None,
            backend: crate::Backend::Tract,
        }
    }
}

#[derive(Debug)]
pub(crate) struct AppState {
    pub repo: Arc<Repository>,
}

/// The protocol extensions this server speaks, in `/v2` and gRPC's
/// `ServerMetadata`.
pub(crate) const EXTENSIONS: &[&str] = &[
    "binary_tensor_data",
    "model_repository",
    "model_configuration",
];

/// Loaded models with their listening socket, not yet serving.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    router: Router,
    addr: SocketAddr,
    repo: Arc<Repository>,
    grpc: Option<(tokio::net::TcpListener, SocketAddr)>,
    state: Arc<AppState>,
}

#[derive(Serialize)]
struct ModelMetadata<'a> {
    name: &'a str,
    versions: Vec<String>,
    platform: &'a str,
    inputs: &'a [TensorInfo],
    outputs: &'a [TensorInfo],
}

/// Loads the models, then listens on `cfg.addr`. Loading first means a
/// model that cannot load never opens the port.
pub async fn bind(cfg: ServeConfig) -> Result<Server, ModelError> {
    let workers = match cfg.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let repo = Arc::new(
        Repository::open(RepositoryConfig {
            files: cfg.models,
            directory: cfg.repository,
            max_batch_size: cfg.max_batch_size,
            max_delay: cfg.max_delay,
            workers,
            backend: cfg.backend,
        })
        .await?,
    );
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
    let state = Arc::new(AppState { repo: repo.clone() });
    Ok(Server {
        listener,
        router: router(state.clone()),
        addr,
        repo,
        grpc,
        state,
    })
}

impl Server {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn repository(&self) -> &Repository {
        &self.repo
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
        .route("/v2/models/{name}/config", get(model_config))
        .route(
            "/v2/models/{name}/versions/{version}/config",
            get(version_config),
        )
        .route("/v2/repository/index", get(index).post(index))
        .route("/v2/repository/models/{name}/load", post(load))
        .route("/v2/repository/models/{name}/unload", post(unload))
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
    let p = uri.path();
    let wanted = if p.ends_with("/infer") || p.ends_with("/load") || p.ends_with("/unload") {
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

/// The status that answers a failed request, for REST and (through its
/// code) the request metrics of every protocol.
pub(crate) fn status_of(e: &ModelError) -> StatusCode {
    match e {
        ModelError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ModelError::ModelNotFound(_) => StatusCode::NOT_FOUND,
        ModelError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The model version `name` (at `version`, else the newest) with what runs
/// it: the one place gRPC and REST find a model.
pub(crate) fn lookup(
    s: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<Arc<Served>, ModelError> {
    s.repo.get(name, version)
}

/// The versions of `name` that are serving, oldest first.
pub(crate) fn versions(s: &AppState, name: &str) -> Vec<u64> {
    s.repo.versions(name)
}

/// [`lookup`], failing with the REST answer.
fn find(s: &AppState, name: &str, version: Option<&str>) -> Result<Arc<Served>, Box<Response>> {
    lookup(s, name, version).map_err(|e| Box::new(error(status_of(&e), e)))
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
    let served = match find(s, name, version) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let versions = match version {
        Some(v) => vec![v.to_string()],
        None => s.repo.versions(name).iter().map(u64::to_string).collect(),
    };
    let body = ModelMetadata {
        name: &served.model.name,
        versions,
        platform: "onnx",
        inputs: &served.model.inputs,
        outputs: &served.model.outputs,
    };
    match serde_json::to_vec(&body) {
        Ok(b) => json(StatusCode::OK, b),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
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
        Ok(_) => {
            let body = serde_json::json!({ "name": name, "ready": true });
            json(StatusCode::OK, body.to_string())
        }
        Err(r) => *r,
    }
}

async fn model_config(State(s): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    config_of(&s, &name, None)
}

async fn version_config(
    State(s): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    config_of(&s, &name, Some(&version))
}

/// The model's configuration in the shape of Triton's model config: with
/// a batch dimension, `max_batch_size` is positive and `dims` leave it out.
fn config_of(s: &AppState, name: &str, version: Option<&str>) -> Response {
    let served = match find(s, name, version) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let c = served.config();
    let tensors = |ts: &[crate::repo::ConfigTensor]| {
        ts.iter()
            .map(|t| {
                serde_json::json!({
                    "name": t.name,
                    "data_type": config_type(t.datatype),
                    "dims": t.dims,
                })
            })
            .collect::<Vec<_>>()
    };
    let body = serde_json::json!({
        "name": c.name,
        "platform": "onnx",
        "backend": "tract",
        "max_batch_size": c.max_batch_size,
        "input": tensors(&c.input),
        "output": tensors(&c.output),
        "version_policy": { "specific": { "versions": s.repo.versions(name) } },
    });
    json(StatusCode::OK, body.to_string())
}

/// Triton's name of a type in model configs (`TYPE_FP32`; BYTES is `TYPE_STRING`).
pub(crate) fn config_type(dt: crate::model::DataType) -> String {
    match dt {
        crate::model::DataType::Bytes => "TYPE_STRING".to_string(),
        other => format!("TYPE_{}", other.as_str()),
    }
}

/// `/v2/repository/index`: every model, its versions and their states.
/// Triton takes it as a POST with an optional `{"ready": true}`.
async fn index(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    let ready_only = if body.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        match serde_json::from_slice::<IndexRequest>(&body) {
            Ok(r) => r.ready,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("invalid repository index request: {e}"),
                );
            }
        }
    };
    match serde_json::to_vec(&s.repo.index(ready_only)) {
        Ok(b) => json(StatusCode::OK, b),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexRequest {
    #[serde(default)]
    ready: bool,
}

/// The body of a load or unload: Triton's `{"parameters": {...}}`, of
/// which only `unload_dependents` is taken (and means nothing: edge has no
/// ensembles); a config override or inline files are refused.
fn repository_parameters(body: &[u8]) -> Result<(), Box<Response>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(default)]
        parameters: serde_json::Map<String, serde_json::Value>,
    }
    let bad = |m: String| Box::new(error(StatusCode::BAD_REQUEST, m));
    let b: Body = serde_json::from_slice(body)
        .map_err(|e| bad(format!("invalid repository request: {e}")))?;
    match b.parameters.keys().find(|k| *k != "unload_dependents") {
        None => Ok(()),
        Some(k) => Err(bad(crate::repo::unsupported_parameter(k))),
    }
}

async fn load(State(s): State<Arc<AppState>>, Path(name): Path<String>, body: Bytes) -> Response {
    if let Err(r) = repository_parameters(&body) {
        return *r;
    }
    match s.repo.load(&name).await {
        Ok(versions) => {
            let body = serde_json::json!({ "name": name, "versions": versions });
            json(StatusCode::OK, body.to_string())
        }
        Err(e @ ModelError::ModelNotFound(_)) => error(StatusCode::NOT_FOUND, e),
        Err(e) => error(StatusCode::BAD_REQUEST, format!("loading {name:?}: {e}")),
    }
}

async fn unload(State(s): State<Arc<AppState>>, Path(name): Path<String>, body: Bytes) -> Response {
    if let Err(r) = repository_parameters(&body) {
        return *r;
    }
    match s.repo.unload(&name).await {
        Ok(()) => json(
            StatusCode::OK,
            serde_json::json!({ "name": name }).to_string(),
        ),
        Err(e) => error(status_of(&e), e),
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

async fn infer_of(
    s: &AppState,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let served = match find(s, name, version) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let response = run_infer(&served, headers, body)
        .await
        .unwrap_or_else(|e| error(status_of(&e), e));
    served
        .metrics
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
    let version = served.version.to_string();
    let (body, json_length) = binary::response(
        &served.model.name,
        &version,
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
        s.repo.metrics().render(),
    )
        .into_response()
}
