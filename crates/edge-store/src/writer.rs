//! The single writer thread: group commit of batches, and GC.

use crate::state::{Batch, State};
use crate::{GcConfig, GcReport, StoreError};
use edge_spec::EvalStatus;
use rusqlite::{Connection, Transaction, TransactionBehavior, params};
use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{oneshot, watch};

/// Most batches written in one transaction; bounds the latency one fsync
/// adds to the first caller of a big group.
const MAX_GROUP: usize = 256;

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
    pub index: watch::Sender<u64>,
}

/// A batch of the group being committed, serialized once for both its table
/// rows and its events.
struct Prepared {
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
    jobs: Vec<(String, u64, String)>,
    /// Per job written: versions at or below this go, except those in the
    /// JSON array (versions allocations still run).
    trim: Vec<(String, i64, String)>,
    nodes: Vec<(String, String)>,
    allocs: Vec<(String, String, String, i64, String)>,
    evals: Vec<(String, String, &'static str, i64, String)>,
    deployments: Vec<(String, String, i64, String)>,
    acl_policies: Vec<(String, String)>,
    namespaces: Vec<(String, String)>,
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
            r.jobs.push((key, j.version, body));
        }
        for n in &b.nodes {
            r.nodes.push((n.id.clone(), encode("node", &n.id, n)?));
        }
        for a in &b.allocs {
            r.allocs.push((
                a.id.clone(),
                a.job_key(),
                a.node_id.clone(),
                a.modify_time,
                encode("allocation", &a.id, a)?,
            ));
        }
        for e in &b.evals {
            r.evals.push((
                e.id.clone(),
                e.job_key(),
                e.status.as_str(),
                e.modify_time,
                encode("evaluation", &e.id, e)?,
            ));
        }
        for d in &b.deployments {
            r.deployments.push((
                d.id.clone(),
                d.job_key(),
                d.modify_time,
                encode("deployment", &d.id, d)?,
            ));
        }
        for ns in &b.namespaces {
            r.namespaces
                .push((ns.name.clone(), encode("namespace", &ns.name, ns)?));
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

pub(crate) struct Writer {
    pub conn: Connection,
    /// The writer's own copy of the state, ahead of `shared` while a group
    /// is in flight, so each closure sees the batches staged before it
    /// without readers ever seeing a batch that is not yet durable.
    pub state: State,
    pub shared: Arc<Shared>,
    /// [`crate::Options::max_versions`].
    pub max_versions: u64,
}

impl Writer {
    pub fn run(mut self, rx: Receiver<Request>) {
        let mut carry = None;
        loop {
            let first = match carry.take() {
                Some(r) => r,
                None => match rx.recv() {
                    Ok(r) => r,
                    Err(_) => return,
                },
            };
            match first {
                Request::Gc { cfg, now_ms, reply } => {
                    let _ = reply.send(self.gc(&cfg, now_ms));
                }
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
                    self.commit_group(group);
                }
            }
        }
    }

    fn commit_group(&mut self, group: Vec<CommitFn>) {
        let mut prepared = Vec::with_capacity(group.len());
        for f in group {
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
                    let allocs = crate::state::shared_allocs(&mut batch);
                    self.state.apply(&batch, &allocs, index);
                    rows.trim = self.trims(&batch);
                    prepared.push(Prepared {
                        batch,
                        allocs,
                        index,
                        rows: Some(rows),
                        done,
                    });
                }
                Err(e) => done(Err(e)),
            }
        }
        if prepared.iter().all(|p| p.rows.is_none()) {
            for p in prepared {
                (p.done)(Ok(p.index));
            }
            return;
        }
        match write_group(&mut self.conn, &prepared, self.state.index) {
            Ok(()) => {
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
                self.shared.index.send_replace(self.state.index);
                for p in prepared {
                    (p.done)(Ok(p.index));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batches = prepared.len(), "store group commit failed");
                // The transaction rolled back and readers never saw the group,
                // so the shared state is exactly what the disk holds.
                self.state = self
                    .shared
                    .state
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                for p in prepared {
                    (p.done)(Err(e.clone()));
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

    fn gc(&mut self, cfg: &GcConfig, now_ms: i64) -> Result<GcReport, StoreError> {
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
        let doomed: HashSet<&str> = allocs.iter().map(String::as_str).collect();
        let referenced: HashSet<(String, u64)> = self
            .state
            .allocs
            .values()
            .filter(|a| !doomed.contains(a.id.as_str()))
            .map(|a| (a.job_key(), a.job_version))
            .chain(self.state.stable.values().map(|j| (j.key(), j.version)))
            .collect();

        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite("begin gc"))?;
        let report = gc_rows(
            &tx,
            cfg,
            [&allocs, &evals, &deployments],
            &referenced,
            cut(cfg.event_age),
        )?;
        tx.commit().map_err(StoreError::sqlite("commit gc"))?;

        {
            let mut shared = self
                .shared
                .state
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for st in [&mut self.state, &mut *shared] {
                for id in &allocs {
                    st.remove_alloc(id);
                }
                for id in &evals {
                    st.remove_eval(id);
                }
                for id in &deployments {
                    st.remove_deployment(id);
                }
            }
        }

        let deleted =
            report.versions + report.allocs + report.evals + report.deployments + report.events;
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
    event_cut: i64,
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
    let keep_events = i64::try_from(cfg.keep_events).unwrap_or(i64::MAX);
    report.events = tx
        .execute(
            "DELETE FROM events WHERE time < ?1
                OR seq <= (SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
            params![event_cut, keep_events],
        )
        .map_err(StoreError::sqlite("gc events"))?;
    Ok(report)
}

fn write_group(conn: &mut Connection, prepared: &[Prepared], last: u64) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(StoreError::sqlite("begin commit"))?;
    let time = now_ms();
    for p in prepared {
        if let Some(rows) = &p.rows {
            write_batch(&tx, &p.batch, rows, p.index, time)?;
        }
    }
    tx.execute("UPDATE meta SET idx = ?1 WHERE id = 0", [last as i64])
        .map_err(StoreError::sqlite("write index"))?;
    tx.commit().map_err(StoreError::sqlite("commit"))
}

fn write_batch(
    tx: &Transaction<'_>,
    b: &Batch,
    rows: &Rows,
    index: u64,
    time: i64,
) -> Result<(), StoreError> {
    let err = StoreError::sqlite;
    let idx = index as i64;
    let mut event = tx
        .prepare_cached(
            "INSERT INTO events (idx, topic, kind, key, payload, time) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(err("prepare event"))?;
    let mut ev = |topic: &str, kind: &str, key: &str, payload: Option<&str>| {
        event
            .execute(params![idx, topic, kind, key, payload, time])
            .map(|_| ())
            .map_err(err("write event"))
    };

    for id in &b.purge_jobs {
        tx.prepare_cached("DELETE FROM job_versions WHERE job_id = ?1")
            .and_then(|mut s| s.execute([id]))
            .map_err(err("purge job versions"))?;
        tx.prepare_cached("DELETE FROM jobs WHERE id = ?1")
            .and_then(|mut s| s.execute([id]))
            .map_err(err("purge job"))?;
        ev("job", "deleted", id, None)?;
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
        ev("job", "upserted", id, Some(body))?;
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
        ev("node", "deleted", id, None)?;
    }
    for (id, body) in &rows.nodes {
        tx.prepare_cached("INSERT OR REPLACE INTO nodes (id, body) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![id, body]))
            .map_err(err("write node"))?;
        ev("node", "upserted", id, Some(body))?;
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
        ev("allocation", "upserted", id, Some(body))?;
    }
    for id in &b.delete_evals {
        tx.prepare_cached("DELETE FROM evals WHERE id = ?1")
            .and_then(|mut s| s.execute([id]))
            .map_err(err("delete evaluation"))?;
        ev("evaluation", "deleted", id, None)?;
    }
    for (id, job_id, status, modify_time, body) in &rows.evals {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO evals (id, job_id, status, modify_time, body)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut s| s.execute(params![id, job_id, status, modify_time, body]))
        .map_err(err("write evaluation"))?;
        ev("evaluation", "upserted", id, Some(body))?;
    }
    for (id, job_id, modify_time, body) in &rows.deployments {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO deployments (id, job_id, modify_time, body)
             VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut s| s.execute(params![id, job_id, modify_time, body]))
        .map_err(err("write deployment"))?;
        ev("deployment", "upserted", id, Some(body))?;
    }
    for name in &b.delete_namespaces {
        tx.prepare_cached("DELETE FROM namespaces WHERE name = ?1")
            .and_then(|mut s| s.execute([name]))
            .map_err(err("delete namespace"))?;
        ev("namespace", "deleted", name, None)?;
    }
    for (name, body) in &rows.namespaces {
        tx.prepare_cached("INSERT OR REPLACE INTO namespaces (name, body) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![name, body]))
            .map_err(err("write namespace"))?;
        ev("namespace", "upserted", name, Some(body))?;
    }
    // Volumes stay out of the event stream: they are a node's local
    // bookkeeping, listed under /v1/volumes.
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
    // So do named networks' assignments: agents fetch theirs.
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
    // Configs and secrets stay out of the event stream too: a secret's
    // row is sealed, and a config is read through its own route.
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
    // ACL objects stay out of the event stream: a token's row is its
    // secret's hash, and who holds which token is nobody's business.
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
