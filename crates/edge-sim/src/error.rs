//! Errors of the simulator.

use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SimError {
    #[error("server address {addr:?} {reason}")]
    Address { addr: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(Arc<reqwest::Error>),
    #[error("{method} {path}: {source}")]
    Request {
        method: &'static str,
        path: String,
        source: Arc<reqwest::Error>,
    },
    #[error("{method} {path}: status {status}: {body}")]
    Status {
        method: &'static str,
        path: String,
        status: u16,
        body: String,
    },
    #[error("tls: {0}")]
    Tls(String),
}

impl SimError {
    pub fn status(&self) -> Option<u16> {
        match self {
            SimError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}
