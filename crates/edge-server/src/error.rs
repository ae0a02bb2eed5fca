//! Errors of the control plane, each mapped to an HTTP status with a JSON body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use edge_api::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("job {id:?} not found in namespace {namespace:?}")]
    NoJob { namespace: String, id: String },
    #[error("namespace {0:?} does not exist (create it with `edge namespace apply {0}`)")]
    NoNamespace(String),
    #[error("job {job:?} has no version {version} (see `edge job history {job}`)")]
    NoSuchVersion { job: String, version: u64 },
    #[error("job {job:?} has no group {group:?}; its groups are {groups}")]
    NoSuchGroup {
        job: String,
        group: String,
        groups: String,
    },
    #[error("allocation {alloc} has no task {task:?}; its tasks are {tasks}")]
    NoSuchTask {
        alloc: String,
        task: String,
        tasks: String,
    },
    #[error("{0}")]
    Conflict(String),
    /// No credentials, or ones the server does not know (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// Known credentials that do not allow this (403).
    #[error("{0}")]
    Unauthorized(String),
    #[error("store: {0}")]
    Store(#[from] edge_store::StoreError),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("agent of node {node} unreachable: {reason}")]
    AgentUnreachable { node: String, reason: String },
    /// An allocation an agent must be told about cannot be sent now; the
    /// agent retries rather than stop it.
    #[error("allocation {alloc} of job {job:?} version {version} cannot be sent: {reason}")]
    AllocUnavailable {
        alloc: String,
        job: String,
        version: u64,
        reason: String,
    },
    /// A model service that cannot answer now: no passing instance, or the
    /// instance did not reply.
    #[error("model service {service:?}: {reason}")]
    ModelUnavailable { service: String, reason: String },
    #[error("unknown allocation {}", quoted(.0))]
    UnknownAllocs(Vec<String>),
    #[error("{0}")]
    Internal(String),
}

fn quoted(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("{id:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ServerError {
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> ServerError {
        ServerError::NotFound {
            kind,
            id: id.into(),
        }
    }

    pub fn no_job(namespace: &str, id: &str) -> ServerError {
        ServerError::NoJob {
            namespace: namespace.to_string(),
            id: id.to_string(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ServerError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ServerError::NotFound { .. }
            | ServerError::NoJob { .. }
            | ServerError::NoNamespace(_)
            | ServerError::NoSuchVersion { .. }
            | ServerError::NoSuchGroup { .. }
            | ServerError::UnknownAllocs(_)
            | ServerError::NoSuchTask { .. } => StatusCode::NOT_FOUND,
            ServerError::Conflict(_) => StatusCode::CONFLICT,
            ServerError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ServerError::Unauthorized(_) => StatusCode::FORBIDDEN,
            ServerError::AgentUnreachable { .. } => StatusCode::BAD_GATEWAY,
            ServerError::AllocUnavailable { .. } | ServerError::ModelUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ServerError::Store(_)
            | ServerError::Bind { .. }
            | ServerError::Io { .. }
            | ServerError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        (
            status,
            axum::Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response()
    }
}
