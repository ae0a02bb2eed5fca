//! Errors of the wasm driver, turned into `DriverError` at the trait boundary.

use edge_driver::DriverError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    #[error("creating the wasmtime engine failed: {0}")]
    Engine(String),
    #[error("reading module {path} failed: {source}")]
    ReadModule {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("compiling module {path} failed: {message}")]
    Compile { path: PathBuf, message: String },
    #[error("linking module {path} failed: {message}")]
    Link { path: PathBuf, message: String },
    #[error("downloading module {url} failed: {message}")]
    Download { url: String, message: String },
    #[error("module {url} has sha256 {actual}, expected {expected}")]
    Checksum {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{action} failed: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
}

impl WasmError {
    pub(crate) fn io(action: impl Into<String>, source: std::io::Error) -> WasmError {
        WasmError::Io {
            action: action.into(),
            source,
        }
    }
}

impl From<WasmError> for DriverError {
    fn from(e: WasmError) -> DriverError {
        match e {
            WasmError::Engine(reason) => DriverError::Unavailable {
                driver: "wasm".to_string(),
                reason,
            },
            WasmError::Checksum { .. } => DriverError::config("config.sha256", e.to_string()),
            WasmError::ReadModule { .. } | WasmError::Compile { .. } | WasmError::Link { .. } => {
                DriverError::config("config.module", e.to_string())
            }
            other => DriverError::Other(other.to_string()),
        }
    }
}
