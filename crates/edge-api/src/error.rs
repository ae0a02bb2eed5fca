//! Errors of API calls, keeping the server's own message when it sent one.

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach edge server at {addr}: {}", chain(source))]
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
    #[error("tls: {reason}")]
    Tls { reason: String },
    #[error("invalid join token: {reason}")]
    Token { reason: String },
}

/// An error and its causes on one line: reqwest's own message leaves out
/// why a connection failed (a refused certificate, a pin that did not match).
fn chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
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
