//! The writer pipeline: the writer thread stages groups of batches on its
//! own state while the committer thread writes the group before, and GC.

use crate::events::{Ring, Stored};
use crate::state::{Batch, State};
use crate::{GcConfig, GcReport, StoreError};
use edge_spec::EvalStatus;
use rusqlite::{Connection, Transaction, TransactionBehavior, params};
use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{oneshot, watch};

/// Most batches written in one transaction; bounds the latency one fsync
/// adds to the first caller of a big group.
const MAX_GROUP: usize = 256;

/// Allocations past which a group is handed to the committer and the
/// rest of the closures taken go in the next: the scheduler's batches are
/// large, and each group in the pipeline holds its rows' JSON.
const GROUP_ALLOCS: usize = 4096;

/// Rows a GC must delete before it checkpoints the WAL and vacuums.
const COMPACT_AFTER_ROWS: usize = 64;

/// A caller's closure, type-erased: it runs against the writer's state and
/// either answers its caller at once (closure error) or hands back the batch
/// with the callback that answers once the batch is durable.
pub(crate) type CommitFn = Box<dyn FnOnce(&State) -> Option<Staged> + Send>;

pub(crate) type Done = Box<dyn FnOnce(Result<u64, StoreError>) + Send>;

pub(crate) struct Staged {
    pub batch: Batch,
    pub done: Done,
}

pub(crate) enum Request {
    Commit(CommitFn),
    Gc {
        cfg: GcConfig,
        now_ms: i64,
        reply: oneshot::Sender<Result<GcReport, StoreError>>,
    },
}

/// What readers see: only durable batches ever reach it.
pub(crate) struct Shared {
    pub state: RwLock<State>,
    /// The event stream's recent history.
    pub events: Mutex<Ring>,
    /// Bumped by each failed write: the writer's state then holds batches
    /// that never reached the disk.
    pub generation: AtomicU64,
    pub index: watch::Sender<u64>,
    /// Per node, its allocations' highest modify index, for the nodes
    /// whose agents watch: a commit wakes the watches of the nodes it
    /// touched, not every node's.
    pub nodes: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Shared {
    /// Tells the watches of the nodes `allocs` are on, and of the nodes
    /// `deleted`, what changed; run after the state they read is applied.
    fn wake_nodes<'a>(
        &self,
        allocs: impl Iterator<Item = &'a str>,
        deleted: impl Iterator<Item = &'a str>,
    ) {
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        if nodes.is_empty() {
            return;
        }
        // A deleted node's watchers see their channel close.
        for id in deleted {
            nodes.remove(id);
        }
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        for id in allocs {
            if let Some(tx) = nodes.get(id) {
                tx.send_replace(state.node_alloc_index(id));
            }
        }
    }
}

/// A batch of the group being committed, serialized once for both its table
/// rows and its events.
pub(crate) struct Prepared {
    batch: Batch,
    /// The batch's allocations, moved out of it once stamped and encoded,
    /// so the writer's state and the readers' share them.
    allocs: Vec<Arc<edge_spec::Allocation>>,
    index: u64,
    rows: Option<Rows>,
    done: Done,
}

#[derive(Default)]
struct Rows {
    jobs: Vec<(String, u64, Arc<str>)>,
    /// Per job written: versions at or below this go, except those in the
    /// JSON array (versions allocations still run).
    trim: Vec<(String, i64, String)>,
    nodes: Vec<(String, Arc<str>)>,
    allocs: Vec<(String, String, String, i64, Arc<str>)>,
    evals: Vec<(String, String, &'static str, i64, Arc<str>)>,
    deployments: Vec<(String, String, i64, Arc<str>)>,
    acl_policies: Vec<(String, String)>,
    namespaces: Vec<(String, Arc<str>)>,
    volumes: Vec<(String, String)>,
    networks: Vec<(String, String)>,
    configs: Vec<(String, String)>,
    secrets: Vec<(String, String)>,
    acl_tokens: Vec<(String, String)>,
}

fn encode<T: serde::Serialize>(kind: &'static str, key: &str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Encode {
        kind,
        key: key.to_string(),
        source: Arc::new(e),
    })
}

impl Rows {
    fn of(b: &Batch) -> Result<Rows, StoreError> {
        let mut r = Rows::default();
        for j in &b.jobs {
            let key = j.key();
            let body = encode("job", &key, j)?;
            r.jobs.push((key, j.version, body.into()));
        }
        for n in &b.nodes {
            r.nodes
                .push((n.id.clone(), encode("node", &n.id, n)?.into()));
        }
        for a in &b.allocs {
            r.allocs.push((
                a.id.clone(),
                a.job_key(),
                a.node_id.clone(),
                a.modify_time,
                encode("allocation", &a.id, a)?.into(),
            ));
        }
        for e in &b.evals {
            r.evals.push((
                e.id.clone(),
                e.job_key(),
                e.status.as_str(),
                e.modify_time,
                encode("evaluation", &e.id, e)?.into(),
            ));
        }
        for d in &b.deployments {
            r.deployments.push((
                d.id.clone(),
                d.job_key(),
                d.modify_time,
                encode("deployment", &d.id, d)?.into(),
            ));
        }
        for ns in &b.namespaces {
            r.namespaces
                .push((ns.name.clone(), encode("namespace", &ns.name, ns)?.into()));
        }
        for v in &b.volumes {
            let key = v.own_key();
            let body = encode("volume", &key, v)?;
            r.volumes.push((key, body));
        }
        for n in &b.networks {
            let key = n.key();
            let body = encode("network", &key, n)?;
            r.networks.push((key, body));
        }
        for c in &b.configs {
            let key = edge_spec::objects::object_key(&c.namespace, &c.name);
            let body = encode("config", &key, c)?;
            r.configs.push((key, body));
        }
        for c in &b.secrets {
            let key = edge_spec::objects::object_key(&c.namespace, &c.name);
            let body = encode("secret", &key, c)?;
            r.secrets.push((key, body));
        }
        for p in &b.acl_policies {
            r.acl_policies
                .push((p.name.clone(), encode("acl policy", &p.name, p)?));
        }
        for t in &b.acl_tokens {
            r.acl_tokens.push((
                t.accessor_id.clone(),
                encode("acl token", &t.accessor_id, t)?,
            ));
        }
        Ok(r)
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One step of the pipeline from the stager (the writer thread, which runs
/// closures against its state) to the committer (which writes to SQLite
/// and publishes): while one group is written, the next is staged.
pub(crate) enum Step {
    Group {
        prepared: Vec<Prepared>,
        /// The group's last index.
        last: u64,
        /// [`Shared::generation`] when the group was staged.
        generation: u64,
    },
    Gc {
        doomed: Doomed,
        cfg: GcConfig,
        /// Events older than this (Unix ms) go.
        event_cut: i64,
        generation: u64,
        reply: oneshot::Sender<Result<GcReport, StoreError>>,
    },
    /// Answered once every step before it is done.
    Drained(mpsc::SyncSender<()>),
}

/// What one GC run deletes, chosen on the stager's state.
pub(crate) struct Doomed {
    allocs: Vec<String>,
    evals: Vec<String>,
    deployments: Vec<String>,
    /// Job versions the allocations that stay (and the stable versions)
    /// still run.
    referenced: HashSet<(String, u64)>,
}

/// The writer thread: runs each closure against its own state, stamps,
/// encodes and applies its batch, and hands groups to the committer.
pub(crate) struct Writer {
    /// The writer's own copy of the state, ahead of `shared` while groups
    /// are in flight, so each closure sees the batches staged before it
    /// without readers ever seeing a batch that is not yet durable.
    pub state: State,
    pub shared: Arc<Shared>,
    /// [`crate::Options::max_versions`].
    pub max_versions: u64,
    pub steps: mpsc::SyncSender<Step>,
    /// The committer's thread, joined when the writer ends so the file is
    /// closed before a reopen.
    pub committer: Option<std::thread::JoinHandle<()>>,
    /// [`Shared::generation`] that `state` descends from.
    pub generation: u64,
}

impl Writer {
    pub fn run(mut self, rx: Receiver<Request>) {
        let mut carry = None;
        loop {
            let first = match carry.take() {
                Some(r) => r,
                None => match rx.recv() {
                    Ok(r) => r,
                    Err(_) => break,
                },
            };
            self.catch_up();
            match first {
                Request::Gc { cfg, now_ms, reply } => self.gc(cfg, now_ms, reply),
                Request::Commit(f) => {
                    let mut group = vec![f];
                    while group.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(Request::Commit(f)) => group.push(f),
                            Ok(other) => {
                                carry = Some(other);
                                break;
                            }
                            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                        }
                    }
                    self.stage_group(group);
                }
            }
        }
        let Writer {
            steps, committer, ..
        } = self;
        drop(steps);
        if let Some(c) = committer {
            let _ = c.join();
        }
    }

    /// After a failed write, the groups staged on top of it were refused
    /// too: once the committer has dealt with all of them, the state goes
    /// back to what the disk holds, which is what readers see.
    fn catch_up(&mut self) {
        if self.shared.generation.load(Ordering::Acquire) == self.generation {
            return;
        }
        let (tx, rx) = mpsc::sync_channel(1);
        if self.steps.send(Step::Drained(tx)).is_ok() {
            let _ = rx.recv();
        }
        self.generation = self.shared.generation.load(Ordering::Acquire);
        self.state = self
            .shared
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
    }

    fn stage_group(&mut self, group: Vec<CommitFn>) {
        let mut prepared = Vec::with_capacity(group.len());
        let mut allocs = 0;
        for f in group {
            if allocs >= GROUP_ALLOCS {
                self.send_group(std::mem::take(&mut prepared));
                allocs = 0;
            }
            let staged = match catch_unwind(AssertUnwindSafe(|| f(&self.state))) {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(_) => {
                    // The closure's reply channel was dropped while unwinding,
                    // so its caller gets `WriterGone`; the others carry on.
                    tracing::error!("store commit closure panicked");
                    continue;
                }
            };
            let Staged { mut batch, done } = staged;
            if batch.is_empty() {
                let index = self.state.index;
                prepared.push(Prepared {
                    batch,
                    allocs: Vec::new(),
                    index,
                    rows: None,
                    done,
                });
                continue;
            }
            let index = self.state.index + 1;
            batch.stamp(index, &self.state);
            match Rows::of(&batch) {
                Ok(mut rows) => {
                    let shared = crate::state::shared_allocs(&mut batch);
                    self.state.apply(&batch, &shared, index);
                    rows.trim = self.trims(&batch);
                    allocs += shared.len();
                    prepared.push(Prepared {
                        batch,
                        allocs: shared,
                        index,
                        rows: Some(rows),
                        done,
                    });
                }
                Err(e) => done(Err(e)),
            }
        }
        self.send_group(prepared);
    }

    fn send_group(&mut self, prepared: Vec<Prepared>) {
        if prepared.is_empty() {
            return;
        }
        // Even a group of empty batches goes through the committer: its
        // callers are answered only once what their closures saw is durable.
        let step = Step::Group {
            prepared,
            last: self.state.index,
            generation: self.generation,
        };
        if let Err(mpsc::SendError(step)) = self.steps.send(step) {
            tracing::error!("store committer stopped");
            if let Step::Group { prepared, .. } = step {
                for p in prepared {
                    (p.done)(Err(StoreError::WriterGone));
                }
            }
        }
    }

    /// What writing `batch` trims from the job versions table.
    fn trims(&self, batch: &Batch) -> Vec<(String, i64, String)> {
        let max = i64::try_from(self.max_versions).unwrap_or(i64::MAX);
        batch
            .jobs
            .iter()
            .map(|j| {
                let version = i64::try_from(j.version).unwrap_or(i64::MAX);
                // The newest stable version stays too: auto_revert needs it.
                let key = j.key();
                let stable = self.state.stable.get(&key).map(|s| s.version);
                let running: Vec<u64> = self
                    .state
                    .job_allocs(&key)
                    .iter()
                    .map(|a| a.job_version)
                    .chain(stable)
                    .collect();
                let keep = serde_json::Value::from(running).to_string();
                (key, version.saturating_sub(max), keep)
            })
            .collect()
    }

    /// Chooses what GC deletes on this state and forgets it here; the
    /// committer deletes the rows, then forgets it in the readers' state.
    fn gc(
        &mut self,
        cfg: GcConfig,
        now_ms: i64,
        reply: oneshot::Sender<Result<GcReport, StoreError>>,
    ) {
        let cut = |age: std::time::Duration| {
            now_ms.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
        };
        let alloc_cut = cut(cfg.alloc_age);
        let eval_cut = cut(cfg.eval_age);
        let allocs: Vec<String> = self
            .state
            .allocs
            .values()
            .filter(|a| a.is_terminal() && a.modify_time < alloc_cut)
            .map(|a| a.id.clone())
            .collect();
        let evals: Vec<String> = self
            .state
            .evals
            .values()
            .filter(|e| {
                !matches!(e.status, EvalStatus::Pending | EvalStatus::Blocked)
                    && e.modify_time < eval_cut
            })
            .map(|e| e.id.clone())
            .collect();
        // A job's newest deployment stays, finished or not: it is what
        // `edge job status` shows.
        let deployments: Vec<String> = self
            .state
            .deployments
            .values()
            .filter(|d| {
                !d.status.is_active()
                    && d.modify_time < eval_cut
                    && self
                        .state
                        .latest_deployment(&d.job_key())
                        .is_some_and(|l| l.id != d.id)
            })
            .map(|d| d.id.clone())
            .collect();

        // Every allocation that outlives this run keeps its job version:
        // the agent is sent each of its allocations with that version.
        let referenced: HashSet<(String, u64)> = {
            let doomed: HashSet<&str> = allocs.iter().map(String::as_str).collect();
            self.state
                .allocs
                .values()
                .filter(|a| !doomed.contains(a.id.as_str()))
                .map(|a| (a.job_key(), a.job_version))
                .chain(self.state.stable.values().map(|j| (j.key(), j.version)))
                .collect()
        };
        let doomed = Doomed {
            allocs,
            evals,
            deployments,
            referenced,
        };
        doomed.forget(&mut self.state);
        let step = Step::Gc {
            doomed,
            event_cut: cut(cfg.event_age),
            cfg,
            generation: self.generation,
            reply,
        };
        if let Err(mpsc::SendError(Step::Gc { reply, .. })) = self.steps.send(step) {
            let _ = reply.send(Err(StoreError::WriterGone));
        }
    }
}

impl Doomed {
    fn forget(&self, st: &mut State) {
        for id in &self.allocs {
            st.collect_alloc(id);
        }
        for id in &self.evals {
            st.remove_eval(id);
        }
        for id in &self.deployments {
            st.remove_deployment(id);
        }
    }
}

/// The committer thread: owns the write connection, writes each group in
/// one transaction, then makes it visible (readers' state, events, index,
/// node watches) and answers its callers.
pub(crate) struct Committer {
    pub conn: Connection,
    pub shared: Arc<Shared>,
    /// The last write that failed: the groups staged on top of it get it.
    pub failure: Option<StoreError>,
}

impl Committer {
    pub fn run(mut self, rx: mpsc::Receiver<Step>) {
        for step in rx {
            match step {
                Step::Group {
                    prepared,
                    last,
                    generation,
                } => self.commit_group(prepared, last, generation),
                Step::Gc {
                    doomed,
                    cfg,
                    event_cut,
                    generation,
                    reply,
                } => {
                    let _ = reply.send(self.gc(&doomed, &cfg, event_cut, generation));
                }
                Step::Drained(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    /// Refuses a step staged on a state that held a failed write.
    fn current(&self, generation: u64) -> Result<(), StoreError> {
        if generation == self.shared.generation.load(Ordering::Acquire) {
            return Ok(());
        }
        Err(self.failure.clone().unwrap_or(StoreError::WriterGone))
    }

    /// The write rolled back and readers never saw it, so their state is
    /// exactly what the disk holds; the writer goes back to it.
    fn fail(&mut self, e: &StoreError) {
        self.failure = Some(e.clone());
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn commit_group(&mut self, prepared: Vec<Prepared>, last: u64, generation: u64) {
        if let Err(e) = self.current(generation) {
            for p in prepared {
                (p.done)(Err(e.clone()));
            }
            return;
        }
        if prepared.iter().all(|p| p.rows.is_none()) {
            for p in prepared {
                (p.done)(Ok(p.index));
            }
            return;
        }
        if let Err(e) = write_group(&mut self.conn, &prepared, last) {
            tracing::error!(error = %e, batches = prepared.len(), "store group commit failed");
            self.fail(&e);
            for p in prepared {
                (p.done)(Err(e.clone()));
            }
            return;
        }
        let time = now_ms();
        let mut events = Vec::new();
        for p in &prepared {
            if let Some(rows) = &p.rows {
                batch_events(&p.batch, rows, p.index, time, &mut events);
            }
        }
        self.shared
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(events);
        {
            let mut shared = self
                .shared
                .state
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for p in prepared.iter().filter(|p| p.rows.is_some()) {
                shared.apply(&p.batch, &p.allocs, p.index);
            }
        }
        self.shared.index.send_replace(last);
        self.shared.wake_nodes(
            prepared
                .iter()
                .flat_map(|p| p.allocs.iter().map(|a| a.node_id.as_str())),
            prepared
                .iter()
                .flat_map(|p| p.batch.delete_nodes.iter().map(String::as_str)),
        );
        for p in prepared {
            (p.done)(Ok(p.index));
        }
    }

    fn gc(
        &mut self,
        doomed: &Doomed,
        cfg: &GcConfig,
        event_cut: i64,
        generation: u64,
    ) -> Result<GcReport, StoreError> {
        self.current(generation)?;
        let written = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite("begin gc"))
            .and_then(|tx| {
                let report = gc_rows(
                    &tx,
                    cfg,
                    [&doomed.allocs, &doomed.evals, &doomed.deployments],
                    &doomed.referenced,
                )?;
                tx.commit().map_err(StoreError::sqlite("commit gc"))?;
                Ok(report)
            });
        let mut report = match written {
            Ok(r) => r,
            Err(e) => {
                // The writer already forgot what it chose.
                self.fail(&e);
                return Err(e);
            }
        };
        doomed.forget(
            &mut self
                .shared
                .state
                .write()
                .unwrap_or_else(PoisonError::into_inner),
        );
        report.events = self
            .shared
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .gc(event_cut, cfg.keep_events);

        let deleted = report.versions + report.allocs + report.evals + report.deployments;
        // Shrinking is best effort: the deletes are committed either way,
        // and the next GC tries again.
        if deleted >= COMPACT_AFTER_ROWS
            && let Err(e) = self.compact()
        {
            tracing::warn!(error = %e, "store gc could not shrink the database");
        }
        tracing::debug!(?report, "store gc");
        Ok(report)
    }

    /// Gives freed pages back to the file system: vacuum moves them off the
    /// end of the database, the checkpoint copies that into the main file and
    /// truncates the WAL.
    fn compact(&mut self) -> Result<(), StoreError> {
        // The pragma frees one page per step, so it is stepped to the end.
        let vacuum_err = StoreError::sqlite("incremental vacuum");
        let mut stmt = self
            .conn
            .prepare("PRAGMA incremental_vacuum")
            .map_err(vacuum_err)?;
        let mut rows = stmt
            .query([])
            .map_err(StoreError::sqlite("incremental vacuum"))?;
        while rows
            .next()
            .map_err(StoreError::sqlite("incremental vacuum"))?
            .is_some()
        {}
        drop(rows);
        drop(stmt);
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .map_err(StoreError::sqlite("wal checkpoint"))?;
        if busy != 0 {
            tracing::debug!("wal checkpoint could not complete: a reader was active");
        }
        Ok(())
    }
}

fn gc_rows(
    tx: &Transaction<'_>,
    cfg: &GcConfig,
    [allocs, evals, deployments]: [&[String]; 3],
    referenced: &HashSet<(String, u64)>,
) -> Result<GcReport, StoreError> {
    let mut report = GcReport::default();
    for (ids, table, count) in [
        (allocs, "allocs", &mut report.allocs),
        (evals, "evals", &mut report.evals),
        (deployments, "deployments", &mut report.deployments),
    ] {
        let err = StoreError::sqlite("gc rows");
        let mut del = tx
            .prepare_cached(&format!("DELETE FROM {table} WHERE id = ?1"))
            .map_err(err)?;
        for id in ids {
            *count += del.execute([id]).map_err(StoreError::sqlite("gc rows"))?;
        }
    }
    let keep = i64::try_from(cfg.keep_versions.max(1)).unwrap_or(i64::MAX);
    let err = StoreError::sqlite("gc job versions");
    let stale: Vec<(i64, String, i64)> = tx
        .prepare(
            "SELECT v.rowid, v.job_id, v.version FROM (
                 SELECT rowid, job_id, version,
                        ROW_NUMBER() OVER (PARTITION BY job_id ORDER BY version DESC) AS rn
                 FROM job_versions
             ) v
             LEFT JOIN jobs j ON j.id = v.job_id
             WHERE j.id IS NULL OR (v.rn > ?1 AND v.version != j.version)",
        )
        .and_then(|mut stmt| {
            stmt.query_map([keep], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .map_err(err)?;
    let mut del = tx
        .prepare_cached("DELETE FROM job_versions WHERE rowid = ?1")
        .map_err(StoreError::sqlite("gc job versions"))?;
    for (rowid, job_id, version) in stale {
        if referenced.contains(&(job_id, u64::try_from(version).unwrap_or(0))) {
            continue;
        }
        report.versions += del
            .execute([rowid])
            .map_err(StoreError::sqlite("gc job versions"))?;
    }
    Ok(report)
}

fn write_group(conn: &mut Connection, prepared: &[Prepared], last: u64) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(StoreError::sqlite("begin commit"))?;
    for p in prepared {
        if let Some(rows) = &p.rows {
            write_batch(&tx, &p.batch, rows, p.index)?;
        }
    }
    tx.execute("UPDATE meta SET idx = ?1 WHERE id = 0", [last as i64])
        .map_err(StoreError::sqlite("write index"))?;
    tx.commit().map_err(StoreError::sqlite("commit"))
}

/// The stream's events of one written batch, in the order of its tables.
/// Volumes and named networks' assignments have none (a node's
/// bookkeeping, which agents fetch), nor configs and secrets (a secret is
/// sealed, a config has its own route), nor ACL objects (who holds which
/// token is nobody's business).
fn batch_events(b: &Batch, rows: &Rows, index: u64, time: i64, out: &mut Vec<Stored>) {
    let mut ev =
        |topic: &'static str, kind: &'static str, key: &str, payload: Option<&Arc<str>>| {
            out.push(Stored {
                index,
                topic,
                kind,
                key: key.to_string(),
                payload: payload.cloned(),
                time,
            });
        };
    for id in &b.purge_jobs {
        ev("job", "deleted", id, None);
    }
    for (id, _, body) in &rows.jobs {
        ev("job", "upserted", id, Some(body));
    }
    for id in &b.delete_nodes {
        ev("node", "deleted", id, None);
    }
    for (id, body) in &rows.nodes {
        ev("node", "upserted", id, Some(body));
    }
    for (id, _, _, _, body) in &rows.allocs {
        ev("allocation", "upserted", id, Some(body));
    }
    for id in &b.delete_evals {
        ev("evaluation", "deleted", id, None);
    }
    for (id, _, _, _, body) in &rows.evals {
        ev("evaluation", "upserted", id, Some(body));
    }
    for (id, _, _, body) in &rows.deployments {
        ev("deployment", "upserted", id, Some(body));
    }
    for name in &b.delete_namespaces {
        ev("namespace", "deleted", name, None);
    }
    for (name, body) in &rows.namespaces {
        ev("namespace", "upserted", name, Some(body));
    }
}

fn write_batch(tx: &Transaction<'_>, b: &Batch, rows: &Rows, index: u64) -> Result<(), StoreError> {
    let err = StoreError::sqlite;
    let idx = index as i64;
    for id in &b.purge_jobs {
        tx.prepare_cached("DELETE FROM job_versions WHERE job_id = ?1")
            .and_then(|mut s| s.execute([id]))
            .map_err(err("purge job versions"))?;
        tx.prepare_cached("DELETE FROM jobs WHERE id = ?1")
            .and_then(|mut s| s.execute([id]))
            .map_err(err("purge job"))?;
    }
    for (id, version, body) in &rows.jobs {
        // An upsert, not INSERT OR REPLACE: a replace deletes the row first,
        // which would cascade to the job's versions.
        tx.prepare_cached(
            "INSERT INTO jobs (id, version, modify_index, body) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET version = excluded.version,
                 modify_index = excluded.modify_index, body = excluded.body",
        )
        .and_then(|mut s| s.execute(params![id, *version as i64, idx, body]))
        .map_err(err("write job"))?;
        tx.prepare_cached(
            "INSERT INTO job_versions (job_id, version, body) VALUES (?1, ?2, ?3)
             ON CONFLICT (job_id, version) DO UPDATE SET body = excluded.body",
        )
        .and_then(|mut s| s.execute(params![id, *version as i64, body]))
        .map_err(err("write job version"))?;
    }
    for (id, below, keep) in &rows.trim {
        tx.prepare_cached(
            "DELETE FROM job_versions WHERE job_id = ?1 AND version <= ?2
                 AND version NOT IN (SELECT value FROM json_each(?3))",
        )
        .and_then(|mut s| s.execute(params![id, below, keep]))
        .map_err(err("trim job versions"))?;
    }
    for id in &b.delete_nodes {
        tx.prepare_cached("DELETE FROM nodes WHERE id = ?1")
            .and_then(|mut s| s.execute([id]))
            .map_err(err("delete node"))?;
    }
    for (id, body) in &rows.nodes {
        tx.prepare_cached("INSERT OR REPLACE INTO nodes (id, body) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![id, body]))
            .map_err(err("write node"))?;
    }
    for (id, job_id, node_id, modify_time, body) in &rows.allocs {
        // An allocation keeps its job and node for life: an update rewrites
        // its row in place and leaves the job and node indexes alone (a
        // replace would delete and insert all three index entries).
        tx.prepare_cached(
            "INSERT INTO allocs (id, job_id, node_id, modify_time, body)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (id) DO UPDATE SET modify_time = excluded.modify_time,
                 body = excluded.body",
        )
        .and_then(|mut s| s.execute(params![id, job_id, node_id, modify_time, body]))
        .map_err(err("write allocation"))?;
    }
    for id in &b.delete_evals {
        tx.prepare_cached("DELETE FROM evals WHERE id = ?1")
            .and_then(|mut s| s.execute([id]))
            .map_err(err("delete evaluation"))?;
    }
    for (id, job_id, status, modify_time, body) in &rows.evals {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO evals (id, job_id, status, modify_time, body)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut s| s.execute(params![id, job_id, status, modify_time, body]))
        .map_err(err("write evaluation"))?;
    }
    for (id, job_id, modify_time, body) in &rows.deployments {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO deployments (id, job_id, modify_time, body)
             VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut s| s.execute(params![id, job_id, modify_time, body]))
        .map_err(err("write deployment"))?;
    }
    for name in &b.delete_namespaces {
        tx.prepare_cached("DELETE FROM namespaces WHERE name = ?1")
            .and_then(|mut s| s.execute([name]))
            .map_err(err("delete namespace"))?;
    }
    for (name, body) in &rows.namespaces {
        tx.prepare_cached("INSERT OR REPLACE INTO namespaces (name, body) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![name, body]))
            .map_err(err("write namespace"))?;
    }
    for key in &b.delete_volumes {
        tx.prepare_cached("DELETE FROM volumes WHERE key = ?1")
            .and_then(|mut s| s.execute([key]))
            .map_err(err("delete volume"))?;
    }
    for (key, body) in &rows.volumes {
        tx.prepare_cached("INSERT OR REPLACE INTO volumes (key, body) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![key, body]))
            .map_err(err("write volume"))?;
    }
    for key in &b.delete_networks {
        tx.prepare_cached("DELETE FROM networks WHERE key = ?1")
            .and_then(|mut s| s.execute([key]))
            .map_err(err("delete network"))?;
    }
    for (key, body) in &rows.networks {
        tx.prepare_cached("INSERT OR REPLACE INTO networks (key, body) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![key, body]))
            .map_err(err("write network"))?;
    }
    for (table, deletes, rows) in [
        ("configs", &b.delete_configs, &rows.configs),
        ("secrets", &b.delete_secrets, &rows.secrets),
    ] {
        for key in deletes {
            tx.prepare_cached(&format!("DELETE FROM {table} WHERE key = ?1"))
                .and_then(|mut s| s.execute([key]))
                .map_err(err("delete config or secret"))?;
        }
        for (key, body) in rows {
            tx.prepare_cached(&format!(
                "INSERT OR REPLACE INTO {table} (key, body) VALUES (?1, ?2)"
            ))
            .and_then(|mut s| s.execute(params![key, body]))
            .map_err(err("write config or secret"))?;
        }
    }
    for name in &b.delete_acl_policies {
        tx.prepare_cached("DELETE FROM acl_policies WHERE name = ?1")
            .and_then(|mut s| s.execute([name]))
            .map_err(err("delete acl policy"))?;
    }
    for (name, body) in &rows.acl_policies {
        tx.prepare_cached("INSERT OR REPLACE INTO acl_policies (name, body) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![name, body]))
            .map_err(err("write acl policy"))?;
    }
    for id in &b.delete_acl_tokens {
        tx.prepare_cached("DELETE FROM acl_tokens WHERE accessor_id = ?1")
            .and_then(|mut s| s.execute([id]))
            .map_err(err("delete acl token"))?;
    }
    for (id, body) in &rows.acl_tokens {
        tx.prepare_cached("INSERT OR REPLACE INTO acl_tokens (accessor_id, body) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![id, body]))
            .map_err(err("write acl token"))?;
    }
    if b.acl_bootstrap {
        tx.prepare_cached("INSERT OR IGNORE INTO acl_bootstrap (id, idx) VALUES (0, ?1)")
            .and_then(|mut s| s.execute([idx]))
            .map_err(err("write acl bootstrap"))?;
    }
    Ok(())
}
