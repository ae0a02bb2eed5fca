//! Errors of the containerd driver; they become `DriverError`s at the trait
//! boundary and CLI errors in `edge image`.

use containerd_client::tonic::{Code, Status};
use edge_driver::DriverError;
use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error("cannot connect to containerd at {socket}: {message}")]
    Connect { socket: PathBuf, message: String },
    #[error("containerd {call}: {message}")]
    Rpc {
        call: &'static str,
        code: Code,
        message: String,
    },
    #[error("invalid image reference {reference:?}: {message}")]
    Reference { reference: String, message: String },
    #[error("image {image}: {message}")]
    Image { image: String, message: String },
    #[error("image archive {path}: {message}")]
    Archive { path: PathBuf, message: String },
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },
}

impl ContainerdError {
    pub(crate) fn rpc(call: &'static str) -> impl FnOnce(Status) -> ContainerdError {
        move |s| ContainerdError::Rpc {
            call,
            code: s.code(),
            message: s.message().to_string(),
        }
    }

    pub(crate) fn io(action: impl Into<String>) -> impl FnOnce(io::Error) -> ContainerdError {
        let action = action.into();
        move |source| ContainerdError::Io { action, source }
    }

    pub(crate) fn image(image: &str, message: impl Into<String>) -> ContainerdError {
        ContainerdError::Image {
            image: image.to_string(),
            message: message.into(),
        }
    }

    /// The object asked for does not exist in containerd.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            ContainerdError::Rpc {
                code: Code::NotFound,
                ..
            }
        )
    }

    pub(crate) fn is_already_exists(&self) -> bool {
        matches!(
            self,
            ContainerdError::Rpc {
                code: Code::AlreadyExists,
                ..
            }
        )
    }

    /// containerd is not answering (stopped, restarting, socket gone).
    pub fn is_unavailable(&self) -> bool {
        match self {
            ContainerdError::Connect { .. } => true,
            ContainerdError::Rpc {
                code: Code::Unavailable,
                ..
            } => true,
            ContainerdError::Rpc {
                code: Code::Unknown | Code::Cancelled,
                message,
                ..
            } => looks_like_transport(message),
            _ => false,
        }
    }
}

/// tonic reports a dropped connection as `Unknown`/`Cancelled` with a
/// transport message; containerd's own `Unknown` errors say something else.
fn looks_like_transport(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "transport",
        "connect",
        "connection",
        "broken pipe",
        "h2 protocol",
        "stream",
        "dns",
    ]
    .iter()
    .any(|w| m.contains(w))
}

impl From<ContainerdError> for DriverError {
    fn from(e: ContainerdError) -> DriverError {
        match e {
            ContainerdError::Connect { .. } => DriverError::Unavailable {
                driver: crate::DRIVER_NAME.to_string(),
                reason: e.to_string(),
            },
            ContainerdError::Io { action, source } => DriverError::Io { action, source },
            other => DriverError::Other(other.to_string()),
        }
    }
}
