//! Running a command inside a running task (`edge alloc exec`): what the
//! agent asks a driver for and the session the driver hands back. The
//! session's streams are plain async IO, so the agent relays them without
//! knowing how the driver connected them (pipes, a pty, containerd FIFOs).

use crate::DriverError;
use async_trait::async_trait;
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncWrite};

/// One command to run in a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// Program and arguments; the program is looked up in the task's PATH.
    pub argv: Vec<String>,
    /// A terminal instead of pipes; stdout and stderr then arrive merged.
    pub tty: bool,
    /// The terminal's size at start as `(rows, cols)`, with `tty`.
    pub size: Option<(u16, u16)>,
    /// Whether the client sends stdin; without it the session's stdin is
    /// dropped at once, which the command reads as the end of its input.
    pub stdin: bool,
}

pub type Reader = Pin<Box<dyn AsyncRead + Send>>;
pub type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// A running command. Dropping it kills the command (and what it started
/// in its process group or session), so a client that goes away leaves
/// nothing behind.
pub struct ExecSession {
    /// Shutting it down ends the command's input.
    pub stdin: Writer,
    pub stdout: Reader,
    /// `None` with a tty: the terminal carries both streams.
    pub stderr: Option<Reader>,
    pub control: Box<dyn ExecControl>,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession")
            .field("tty", &self.stderr.is_none())
            .finish_non_exhaustive()
    }
}

/// The parts of a session that are not streams.
#[async_trait]
pub trait ExecControl: Send + Sync {
    /// Tells the command's terminal its new size; nothing without a tty.
    async fn resize(&self, rows: u16, cols: u16) -> Result<(), DriverError>;

    /// Resolves with the exit code once the command ended (128+N when
    /// signal N killed it).
    async fn wait(&self) -> Result<i32, DriverError>;
}
