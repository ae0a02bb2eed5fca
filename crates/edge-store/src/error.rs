//! The store's error type.

use std::path::PathBuf;
use std::sync::Arc;

/// Sources are behind `Arc` so one failed group commit can hand the same
/// error to every caller in the group.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: Arc<rusqlite::Error>,
    },
    #[error("restrict {path} to its owner: {source}")]
    Permissions {
        path: PathBuf,
        source: Arc<std::io::Error>,
    },
    #[error("create directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: Arc<std::io::Error>,
    },
    #[error(
        "database {path} has schema version {found}, newer than the {supported} this binary knows; run a newer edge"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("migrate database to schema version {version}: {source}")]
    Migrate {
        version: u32,
        source: Arc<rusqlite::Error>,
    },
    #[error("sqlite {context}: {source}")]
    Sqlite {
        context: &'static str,
        source: Arc<rusqlite::Error>,
    },
    #[error("decode stored {kind} {key}: {source}")]
    Decode {
        kind: &'static str,
        key: String,
        source: Arc<serde_json::Error>,
    },
    #[error("encode {kind} {key}: {source}")]
    Encode {
        kind: &'static str,
        key: String,
        source: Arc<serde_json::Error>,
    },
    #[error("start {thread} thread: {source}")]
    Spawn {
        thread: &'static str,
        source: Arc<std::io::Error>,
    },
    #[error("store writer stopped before answering (closed store or panicking commit closure)")]
    WriterGone,
    #[error("store reader stopped before answering (closed store or panicking read)")]
    ReaderGone,
}

impl StoreError {
    pub(crate) fn sqlite(context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
        move |e| StoreError::Sqlite {
            context,
            source: Arc::new(e),
        }
    }
}
