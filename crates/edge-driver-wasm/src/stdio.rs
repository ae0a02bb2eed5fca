//! A WASI stdout/stderr that writes into the task's size-capped rotating log
//! files, the same ones every driver writes and `edge alloc logs` reads.

use bytes::Bytes;
use edge_driver::TaskConfig;
use edge_driver::logs::RotatingLog;
use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// How much a guest may hand over in one write.
const WRITE_BUDGET: usize = 64 * 1024;

#[derive(Clone)]
pub(crate) struct LogStream(Option<Arc<Mutex<RotatingLog>>>);

impl LogStream {
    pub(crate) fn open(cfg: &TaskConfig, stream: &str) -> std::io::Result<LogStream> {
        RotatingLog::open(
            &cfg.log_dir,
            &cfg.task,
            stream,
            cfg.log_max_bytes,
            cfg.log_max_files,
        )
        .map(|log| LogStream(Some(Arc::new(Mutex::new(log)))))
    }

    /// A stream that drops what it is given, for handlers outside tasks.
    pub(crate) fn sink() -> LogStream {
        LogStream(None)
    }

    pub(crate) fn write_bytes(&self, bytes: &[u8]) -> std::io::Result<()> {
        let Some(log) = &self.0 else {
            return Ok(());
        };
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        log.write_all(bytes)?;
        log.flush()
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes)
            .map_err(|e| StreamError::LastOperationFailed(e.into()))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

#[async_trait::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.write_bytes(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
