//! Why the executor could not start or supervise a task; recorded in the
//! task's state dir for the driver to report.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ExecutorError {
    #[error("reading executor spec {path}: {message}")]
    Spec { path: PathBuf, message: String },
    #[error("setting up cgroup for task {task}: {source}")]
    Cgroup {
        task: String,
        #[source]
        source: io::Error,
    },
    #[error("opening {stream} log in {dir}: {source}")]
    Log {
        stream: &'static str,
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("command {command:?} could not be started: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("volume mount at {destination}: {message}")]
    Mount {
        destination: String,
        message: String,
    },
    #[error("opening network namespace {path}: {source}")]
    Netns {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing {path}: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}
