//! SQLite state store: migrations, group commit, in-memory state, monotonic index, watchers, GC.
//!
//! The whole cluster state lives in memory ([`State`], behind a read lock)
//! for fast reads and scheduling; SQLite on disk is the durable record. The
//! writer thread runs commit closures and stages their batches in groups on
//! its own copy of the state while the committer thread, which owns the
//! write connection, writes the group before and then publishes it;
//! reader threads with read-only connections answer what memory does not
//! hold. Past `Store::open`, no SQLite call runs on the caller's thread,
//! which is often an async runtime's worker.
//!
//! Durability: the database runs in WAL mode with `synchronous = FULL`, so
//! every commit fsyncs the WAL and a batch whose `commit` resolved survives
//! `kill -9` and power loss alike. Group commit makes this affordable:
//! concurrent callers share one transaction and one fsync per group. On the
//! 2-core development VM (fsync about 0.25 ms) `benches/commit.rs` measured
//! about 3,100 commits/s for one caller and 15,000-19,000 commits/s for 64
//! concurrent callers, so `NORMAL` (which may lose the last commits on power
//! loss) buys nothing worth its risk.

mod error;
mod events;
#[cfg(feature = "test-hooks")]
mod hold;
mod reader;
mod schema;
mod state;
mod writer;

pub use error::StoreError;
#[cfg(feature = "test-hooks")]
pub use hold::ReadHold;
pub use schema::SCHEMA_VERSION;
pub use state::{Batch, State};

use edge_spec::Job;
use reader::Readers;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use writer::{Committer, Request, Shared, Staged, Writer};

/// One change of one object, as `/v1/event/stream` sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub index: u64,
    /// `job`, `node`, `allocation` or `evaluation`.
    pub topic: String,
    /// `upserted` or `deleted`.
    pub kind: String,
    pub key: String,
    /// The object as committed, or null for deletes.
    pub payload: serde_json::Value,
    /// Unix milliseconds of the commit.
    pub time: i64,
}

/// What [`Store::gc`] keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct GcConfig {
    /// Newest versions kept per job (at least 1; the current one always stays).
    pub keep_versions: usize,
    /// Terminal allocations older than this (by `modify_time`) go.
    pub alloc_age: Duration,
    /// Evaluations neither pending nor blocked older than this go.
    pub eval_age: Duration,
    /// Newest events kept (besides [`Options::max_events`], which bounds
    /// them between GC runs).
    pub keep_events: usize,
    /// Events older than this go even within `keep_events`.
    pub event_age: Duration,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            keep_versions: 10,
            alloc_age: Duration::from_secs(3600),
            eval_age: Duration::from_secs(3600),
            keep_events: 10_000,
            event_age: Duration::from_secs(3600),
        }
    }
}

/// Rows one GC run deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GcReport {
    pub versions: usize,
    pub allocs: usize,
    pub evals: usize,
    pub deployments: usize,
    pub events: usize,
}

/// Settings of [`Store::open_with`].
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a statement waits for a lock another process holds.
    pub busy_timeout: Duration,
    /// Newest versions of a job kept on every write of a new one (versions
    /// allocations still run are kept too). GC trims to its own
    /// `keep_versions` from time to time; this bounds the table between GC
    /// runs, whatever the rate of registrations.
    pub max_versions: u64,
    /// Reader threads, each with its own read-only connection (at least
    /// one). A read that waits on the disk holds one of them; the others
    /// keep answering.
    pub readers: usize,
    /// Newest events the event stream can replay, kept in memory (a
    /// restart starts the history afresh, as Nomad's event buffer does).
    pub max_events: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            busy_timeout: Duration::from_secs(5),
            max_versions: 1000,
            readers: 2,
            max_events: 10_000,
        }
    }
}

/// The state store. `Send + Sync`; share it behind an `Arc`. Dropping it
/// stops the writer and reader threads after the work already queued.
pub struct Store {
    shared: Arc<Shared>,
    tx: Option<Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    /// Reads of what memory does not hold (job versions), on
    /// connections of their own so they never queue behind the writer.
    readers: Readers,
    path: PathBuf,
}

/// The database holds every job's env, secrets included: only its owner
/// reads it. The file is created 0600 before SQLite opens it (SQLite gives
/// its WAL and shared-memory files the database's mode); files of an older
/// install are narrowed.
fn restrict_files(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |p: &Path, e| StoreError::Permissions {
        path: p.to_path_buf(),
        source: Arc::new(e),
    };
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| err(path, e))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let p = PathBuf::from(name);
        match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(&p, e)),
            _ => {}
        }
    }
    Ok(())
}

impl Store {
    /// Opens or creates `path` (SQLite, WAL, foreign keys, busy timeout),
    /// runs the schema migrations, refusing a database written by a newer
    /// binary, and loads the state into memory.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, &Options::default())
    }

    pub fn open_with(path: &Path, opts: &Options) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source: Arc::new(e),
            })?;
        }
        restrict_files(path)?;
        let conn = schema::open_writer(path, opts.busy_timeout)?;
        let state = state::load(&conn)?;
        let readers = Readers::open(path, opts.readers, opts.busy_timeout)?;

        let (index_tx, _) = watch::channel(state.index);
        let shared = Arc::new(Shared {
            state: RwLock::new(state.clone()),
            events: Mutex::new(events::Ring::new(opts.max_events)),
            generation: std::sync::atomic::AtomicU64::new(0),
            index: index_tx,
            nodes: Mutex::default(),
        });
        let (tx, rx) = mpsc::channel();
        let spawn_err = |thread| {
            move |e| StoreError::Spawn {
                thread,
                source: Arc::new(e),
            }
        };
        // One group staged ahead while one is written.
        let (steps, steps_rx) = mpsc::sync_channel(1);
        let c = Committer {
            conn,
            shared: shared.clone(),
            failure: None,
        };
        let committer = std::thread::Builder::new()
            .name("edge-store-commit".into())
            .spawn(move || c.run(steps_rx))
            .map_err(spawn_err("committer"))?;
        let w = Writer {
            state,
            shared: shared.clone(),
            max_versions: opts.max_versions.max(1),
            steps,
            committer: Some(committer),
            generation: 0,
        };
        let writer = std::thread::Builder::new()
            .name("edge-store-writer".into())
            .spawn(move || w.run(rx))
            .map_err(spawn_err("writer"))?;
        Ok(Store {
            shared,
            tx: Some(tx),
            writer: Some(writer),
            readers,
            path: path.to_path_buf(),
        })
    }

    /// The index of the last committed batch; 0 for an empty database.
    pub fn index(&self) -> u64 {
        *self.shared.index.borrow()
    }

    /// Resolves once `index() > after`, or after `timeout`; returns the
    /// index then (blocking queries).
    pub async fn wait_for(&self, after: u64, timeout: Duration) -> u64 {
        let mut rx = self.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|i| *i > after)).await {
            Ok(Ok(i)) => *i,
            _ => self.index(),
        }
    }

    /// Resolves once the highest modify index of `node`'s allocations
    /// ([`State::node_alloc_index`]) is above `after`, after `timeout`, or
    /// when the node is deleted; returns that index then. Only commits
    /// that touch the node's allocations wake it, so thousands of agents'
    /// watches cost nothing while other nodes change.
    pub async fn wait_for_node(&self, node: &str, after: u64, timeout: Duration) -> u64 {
        let mut rx = {
            let mut nodes = self
                .shared
                .nodes
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match nodes.get(node) {
                Some(tx) => tx.subscribe(),
                None => {
                    // Read under the map's lock: the writer wakes nodes
                    // after applying, so a commit between this read and
                    // the insert still finds the sender and sends.
                    let (tx, rx) = watch::channel(self.read(|s| s.node_alloc_index(node)));
                    nodes.insert(node.to_string(), tx);
                    rx
                }
            }
        };
        match tokio::time::timeout(timeout, rx.wait_for(|i| *i > after)).await {
            Ok(Ok(i)) => *i,
            _ => self.read(|s| s.node_alloc_index(node)),
        }
    }

    /// The committed index, changing after each group commit.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.index.subscribe()
    }

    /// Reads the in-memory state under a read lock; keep `f` short.
    /// `State::index` tells which commit the view includes.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self
            .shared
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner))
    }

    /// Runs `f` against the current state on the writer thread, writes the
    /// batch it returns in one SQLite transaction, applies it to memory and
    /// bumps the index; resolves only then, with `f`'s value and the batch's
    /// index.
    ///
    /// Concurrent commits are group-committed: the writer takes every
    /// pending closure (up to 256), runs them in order, each seeing the
    /// batches before it, and writes them in one transaction with one fsync,
    /// each batch with its own index. `f` runs on the writer thread, so it
    /// must be quick and must not block. A closure returning `Err` changes
    /// nothing and its error comes back here. An empty batch changes nothing
    /// either and resolves with the index current when it ran, once all
    /// before it is durable. If the transaction fails, every caller in the
    /// group, and in a group already staged on top of it, gets the error,
    /// and memory stays at the last durable state.
    pub async fn commit<T, E, F>(&self, f: F) -> Result<(T, u64), E>
    where
        F: FnOnce(&State) -> Result<(Batch, T), E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel::<Result<(T, u64), E>>();
        let run = move |state: &State| match f(state) {
            Ok((batch, value)) => Some(Staged {
                batch,
                done: Box::new(move |res: Result<u64, StoreError>| {
                    let _ = reply.send(res.map(|i| (value, i)).map_err(E::from));
                }),
            }),
            Err(e) => {
                let _ = reply.send(Err(e));
                None
            }
        };
        self.send(Request::Commit(Box::new(run)))?;
        rx.await
            .unwrap_or_else(|_| Err(E::from(StoreError::WriterGone)))
    }

    /// Every stored version of the job under `job_key` (`edge_spec::job_key`), newest
    /// first. Read on a reader
    /// thread.
    pub async fn job_versions(&self, job_key: &str) -> Result<Vec<Job>, StoreError> {
        let job_key = job_key.to_string();
        self.readers
            .read(move |conn| reader::job_versions(conn, &job_key))
            .await
    }

    /// One stored version of the job under `job_key`, if it is still kept. Read on a
    /// reader thread.
    pub async fn job_version(
        &self,
        job_key: &str,
        version: u64,
    ) -> Result<Option<Job>, StoreError> {
        let job_key = job_key.to_string();
        self.readers
            .read(move |conn| reader::job_version(conn, &job_key, version))
            .await
    }

    /// Events with index > `after`, oldest first, at most `limit`, from
    /// the newest [`Options::max_events`] since the store opened.
    pub async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let stored = self
            .shared
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .after(after, limit);
        stored.into_iter().map(events::Stored::decode).collect()
    }

    /// Deletes old job versions, terminal allocations, finished
    /// evaluations and events per `cfg` (ages against `now_ms`), removes the
    /// same objects from memory, then shrinks the file when it deleted
    /// much. Async: it is chosen on the writer thread and written by the
    /// committer between commit groups, so it never races a commit. It
    /// does not bump the index or write events: it only forgets history.
    pub async fn gc(&self, cfg: &GcConfig, now_ms: i64) -> Result<GcReport, StoreError> {
        let (reply, rx) = oneshot::channel();
        let req = Request::Gc {
            cfg: cfg.clone(),
            now_ms,
            reply,
        };
        self.send(req)?;
        rx.await.unwrap_or(Err(StoreError::WriterGone))
    }

    /// Holds every SQLite read back until the returned hold is dropped.
    #[cfg(feature = "test-hooks")]
    pub fn hold_reads(&self) -> ReadHold {
        self.readers.gate.hold()
    }

    pub fn db_path(&self) -> &Path {
        &self.path
    }

    fn send(&self, req: Request) -> Result<(), StoreError> {
        let tx = self.tx.as_ref().ok_or(StoreError::WriterGone)?;
        tx.send(req).map_err(|_| StoreError::WriterGone)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Closing the channel ends the writer once the queue is drained;
        // joining closes the database before a reopen of the same file.
        self.tx.take();
        if let Some(w) = self.writer.take()
            && w.thread().id() != std::thread::current().id()
        {
            let _ = w.join();
        }
    }
}
