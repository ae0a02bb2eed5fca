//! Errors of API calls, keeping the server's own message when it sent one.

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach edge server at {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {path}: {status}: {message}")]
    Status {
        method: String,
        path: String,
        status: u16,
        message: String,
    },
    #[error("{method} {path}: invalid response: {source}")]
    Decode {
        method: String,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("invalid server address {addr:?}: {reason}")]
    Address { addr: String, reason: String },
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// The server's own message, for a status it answered with.
    pub fn message(&self) -> Option<&str> {
        match self {
            ApiError::Status { message, .. } => Some(message),
            _ => None,
        }
    }
}
