//! The reader threads: read-only connections answering what memory does
//! not hold (job versions, events), so no SQLite call runs on the caller's
//! async runtime.

use crate::StoreError;
use edge_spec::Job;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;

/// A read, type-erased: it runs against one reader's connection and
/// answers its caller itself.
type ReadFn = Box<dyn FnOnce(&Connection) + Send>;

/// A pool of reader threads, each with its own connection; WAL lets them
/// read beside each other and beside the writer. Dropping it ends the
/// threads after the reads already queued.
pub(crate) struct Readers {
    tx: Option<Sender<ReadFn>>,
    threads: Vec<JoinHandle<()>>,
    #[cfg(feature = "test-hooks")]
    pub gate: Arc<crate::hold::Gate>,
}

impl Readers {
    pub fn open(path: &Path, count: usize, busy_timeout: Duration) -> Result<Readers, StoreError> {
        let (tx, rx) = mpsc::channel();
        let rx = Arc::new(Mutex::new(rx));
        let mut readers = Readers {
            tx: Some(tx),
            threads: Vec::with_capacity(count),
            #[cfg(feature = "test-hooks")]
            gate: Arc::default(),
        };
        for _ in 0..count.max(1) {
            let open_err = |e| StoreError::Open {
                path: path.to_path_buf(),
                source: Arc::new(e),
            };
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(open_err)?;
            conn.busy_timeout(busy_timeout).map_err(open_err)?;
            let rx = rx.clone();
            #[cfg(feature = "test-hooks")]
            let gate = readers.gate.clone();
            let thread = std::thread::Builder::new()
                .name("edge-store-reader".into())
                .spawn(move || {
                    run(
                        &conn,
                        &rx,
                        #[cfg(feature = "test-hooks")]
                        &gate,
                    )
                })
                .map_err(|e| StoreError::Spawn {
                    thread: "reader",
                    source: Arc::new(e),
                })?;
            readers.threads.push(thread);
        }
        Ok(readers)
    }

    /// Runs `f` on a reader thread and resolves with its answer.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let read: ReadFn = Box::new(move |conn| {
            let _ = reply.send(f(conn));
        });
        self.tx
            .as_ref()
            .ok_or(StoreError::ReaderGone)?
            .send(read)
            .map_err(|_| StoreError::ReaderGone)?;
        rx.await.unwrap_or(Err(StoreError::ReaderGone))
    }
}

fn run(
    conn: &Connection,
    rx: &Mutex<Receiver<ReadFn>>,
    #[cfg(feature = "test-hooks")] gate: &crate::hold::Gate,
) {
    loop {
        // The lock is held only while waiting: one idle reader waits on the
        // channel, the others on the lock, and a read never holds it.
        let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(read) = next else { return };
        #[cfg(feature = "test-hooks")]
        gate.pass();
        if catch_unwind(AssertUnwindSafe(|| read(conn))).is_err() {
            // The reply channel was dropped while unwinding, so the caller
            // gets `ReaderGone` and this thread keeps serving the others.
            tracing::error!("store read panicked");
        }
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        // Closing the channel ends the threads once the queue is drained;
        // joining closes their connections before a reopen of the file.
        self.tx.take();
        let me = std::thread::current().id();
        for t in self.threads.drain(..) {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

pub(crate) fn job_versions(conn: &Connection, job_id: &str) -> Result<Vec<Job>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT version, body FROM job_versions WHERE job_id = ?1 ORDER BY version DESC",
        )
        .map_err(StoreError::sqlite("prepare job versions"))?;
    let rows = stmt
        .query_map([job_id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(StoreError::sqlite("read job versions"))?;
    let mut out = Vec::new();
    for row in rows {
        let (version, body) = row.map_err(StoreError::sqlite("read job versions"))?;
        out.push(decode_job(job_id, version, &body)?);
    }
    Ok(out)
}

pub(crate) fn job_version(
    conn: &Connection,
    job_id: &str,
    version: u64,
) -> Result<Option<Job>, StoreError> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM job_versions WHERE job_id = ?1 AND version = ?2")
        .and_then(|mut s| {
            s.query_row(rusqlite::params![job_id, version as i64], |r| r.get(0))
                .optional()
        })
        .map_err(StoreError::sqlite("read job version"))?;
    body.map(|b| decode_job(job_id, version as i64, &b))
        .transpose()
}

fn decode_job(job_id: &str, version: i64, body: &str) -> Result<Job, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Decode {
        kind: "job version",
        key: format!("{job_id}@{version}"),
        source: Arc::new(e),
    })
}
