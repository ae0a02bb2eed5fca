//! Errors of loading, serving and fetching models.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model file {} not found", .path.display())]
    NotFound { path: PathBuf },
    #[error("reading model file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not an ONNX model: {reason}", .path.display())]
    NotOnnx { path: PathBuf, reason: String },
    /// tract cannot run (or would answer wrongly) an operator of the model.
    #[error("model {} uses unsupported operator {op}; the onnxruntime backend may run it", .path.display())]
    UnsupportedOperator { path: PathBuf, op: String },
    #[error("model {} cannot be prepared for inference: {reason}", .path.display())]
    Load { path: PathBuf, reason: String },
    #[error("{0}")]
    Repository(String),
    /// `--backend onnxruntime` without a usable ONNX Runtime library.
    #[error("the onnxruntime backend is not available: {0}")]
    BackendUnavailable(String),
    /// A request that does not fit the model; answered with 400.
    #[error("{0}")]
    BadRequest(String),
    /// No model (or version) of that name is served, or it is unloaded;
    /// answered with 404.
    #[error("{0}")]
    ModelNotFound(String),
    /// The model failed on well-formed input; answered with 500.
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("server is shutting down")]
    ShuttingDown,
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
    #[error("downloading {url}: {reason}")]
    Download { url: String, reason: String },
    #[error("{url}: sha256 is {actual}, expected {expected}")]
    Checksum {
        url: String,
        expected: String,
        actual: String,
    },
}

impl ModelError {
    pub(crate) fn bad(message: impl Into<String>) -> ModelError {
        ModelError::BadRequest(message.into())
    }
}
