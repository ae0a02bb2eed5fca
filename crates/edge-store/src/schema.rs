//! Connection setup and versioned schema migrations (`PRAGMA user_version`).

use crate::StoreError;
use edge_spec::{Allocation, Job};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only:
/// a shipped migration is never edited, a change is a new entry.
const MIGRATIONS: &[&str] = &[
    // 1: objects as JSON text plus the key columns queries and GC need.
    "CREATE TABLE meta (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        idx INTEGER NOT NULL
     );
     INSERT INTO meta (id, idx) VALUES (0, 0);
     CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        modify_index INTEGER NOT NULL,
        body TEXT NOT NULL
     );
     CREATE TABLE job_versions (
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (job_id, version)
     );
     CREATE TABLE nodes (
        id TEXT PRIMARY KEY,
        body TEXT NOT NULL
     );
     CREATE TABLE allocs (
        id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        modify_time INTEGER NOT NULL,
        body TEXT NOT NULL
     );
     CREATE INDEX allocs_job ON allocs (job_id);
     CREATE INDEX allocs_node ON allocs (node_id);
     CREATE TABLE evals (
        id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL,
        status TEXT NOT NULL,
        modify_time INTEGER NOT NULL,
        body TEXT NOT NULL
     );
     CREATE INDEX evals_job ON evals (job_id);",
    // 2: the change feed behind `/v1/event/stream`, read by index range and
    // trimmed by index and by age.
    "CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        idx INTEGER NOT NULL,
        topic TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        payload TEXT,
        time INTEGER NOT NULL
     );
     CREATE INDEX events_idx ON events (idx);
     CREATE INDEX events_time ON events (time);",
    // 3: no schema change; `rehash_allocs` recomputes every allocation's
    // `group_hash` with the stable `Group::spec_hash`. Before, it came from
    // std's `DefaultHasher`, and the scheduler would have replaced every
    // allocation whose stored hash no longer matched.
    "",
    // 4: deployments, one per registered version of a service job.
    "CREATE TABLE deployments (
        id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL,
        modify_time INTEGER NOT NULL,
        body TEXT NOT NULL
     );
     CREATE INDEX deployments_job ON deployments (job_id);",
    // 5: ACL policies and tokens (a token row holds the SHA-256 of its
    // secret, never the secret), and the index of the one bootstrap.
    "CREATE TABLE acl_policies (
        name TEXT PRIMARY KEY,
        body TEXT NOT NULL
     );
     CREATE TABLE acl_tokens (
        accessor_id TEXT PRIMARY KEY,
        body TEXT NOT NULL
     );
     CREATE TABLE acl_bootstrap (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        idx INTEGER NOT NULL
     );",
    // 6: namespaces. Objects carry their namespace in their body; the
    // `job_id` columns and `jobs.id` hold the job key (`edge_spec::job_key`),
    // which for the `default` namespace is the bare id every older row has.
    "CREATE TABLE namespaces (
        name TEXT PRIMARY KEY,
        body TEXT NOT NULL
     );",
    // 7: local volumes, by namespace/job/group/name/index.
    "CREATE TABLE volumes (
        key TEXT PRIMARY KEY,
        body TEXT NOT NULL
     );",
    // 8: configs and secrets (sealed), by namespace/name.
    "CREATE TABLE configs (
        key TEXT PRIMARY KEY,
        body TEXT NOT NULL
     );
     CREATE TABLE secrets (
        key TEXT PRIMARY KEY,
        body TEXT NOT NULL
     );",
    // 9: named networks' cluster assignments, by namespace/job/name.
    "CREATE TABLE networks (
        key TEXT PRIMARY KEY,
        body TEXT NOT NULL
     );",
    // 10: the event stream's history moves to memory (`events.rs`): its
    // rows doubled every commit's bytes.
    "DROP TABLE events;",
];

/// The migration after which [`rehash_allocs`] runs, in its transaction.
const REHASH_ALLOCS: u32 = 3;

/// The schema version this binary writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Opens the writer connection: WAL, full sync, foreign keys, incremental
/// auto-vacuum for new files, then migrates.
pub(crate) fn open_writer(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let open_err = |e| StoreError::Open {
        path: path.to_path_buf(),
        source: Arc::new(e),
    };
    let mut conn = Connection::open(path).map_err(open_err)?;
    conn.busy_timeout(busy_timeout).map_err(open_err)?;
    // Only takes effect while the file has no tables, i.e. at creation; it
    // must come before the first table so GC can shrink the file later.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .map_err(open_err)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(open_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(open_err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode stayed {mode}, wal needed"
        ))));
    }
    // A checkpoint every 256 pages (1 MiB) and a WAL truncated back to that
    // size keep the WAL small on a busy server; the default 1,000 pages
    // would triple the on-disk size of a small cluster's state.
    // A 64 MiB page cache (SQLite's default is 2 MiB): allocation ids are
    // random, so each big batch touches index pages all over the file, and
    // a small cache spills them mid-transaction and reads them back.
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA wal_autocheckpoint = 256;
         PRAGMA journal_size_limit = 1048576;
         PRAGMA cache_size = -65536;",
    )
    .map_err(open_err)?;
    migrate(&mut conn, path, SCHEMA_VERSION)?;
    Ok(conn)
}

/// Runs the migrations from the file's version up to `target`, each in its
/// own transaction together with its `user_version` bump.
pub(crate) fn migrate(conn: &mut Connection, path: &Path, target: u32) -> Result<(), StoreError> {
    let found = user_version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for version in found + 1..=target {
        let mig_err = |e| StoreError::Migrate {
            version,
            source: Arc::new(e),
        };
        let tx = conn.transaction().map_err(mig_err)?;
        tx.execute_batch(MIGRATIONS[version as usize - 1])
            .map_err(mig_err)?;
        if version == REHASH_ALLOCS {
            rehash_allocs(&tx)?;
        }
        tx.pragma_update(None, "user_version", version)
            .map_err(mig_err)?;
        tx.commit().map_err(mig_err)?;
        tracing::info!(path = %path.display(), version, "migrated store schema");
    }
    Ok(())
}

/// Sets each stored allocation's `group_hash` to the hash of the group it
/// was made from (its job version's group of that name). An allocation whose
/// version is gone keeps its hash: nothing is left to compute it from.
fn rehash_allocs(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let err = || StoreError::sqlite("rehash allocations");
    let allocs: Vec<(String, String)> = tx
        .prepare("SELECT id, body FROM allocs")
        .and_then(|mut stmt| {
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .map_err(err())?;
    let mut jobs: HashMap<(String, u64), Option<Job>> = HashMap::new();
    let mut read_version = tx
        .prepare("SELECT body FROM job_versions WHERE job_id = ?1 AND version = ?2")
        .map_err(err())?;
    let mut update = tx
        .prepare("UPDATE allocs SET body = ?2 WHERE id = ?1")
        .map_err(err())?;
    for (id, body) in allocs {
        let mut alloc: Allocation = decode("allocation", &id, &body)?;
        let key = (alloc.job_id.clone(), alloc.job_version);
        if !jobs.contains_key(&key) {
            let version = i64::try_from(alloc.job_version).unwrap_or(i64::MAX);
            let text: Option<String> = read_version
                .query_row(params![alloc.job_id, version], |r| r.get(0))
                .optional()
                .map_err(err())?;
            let job = match text {
                Some(t) => Some(decode("job", &alloc.job_id, &t)?),
                None => None,
            };
            jobs.insert(key.clone(), job);
        }
        let Some(group) = jobs[&key].as_ref().and_then(|j| j.group(&alloc.group)) else {
            continue;
        };
        let hash = group.spec_hash();
        if hash == alloc.group_hash {
            continue;
        }
        alloc.group_hash = hash;
        let body = serde_json::to_string(&alloc).map_err(|e| StoreError::Encode {
            kind: "allocation",
            key: id.clone(),
            source: Arc::new(e),
        })?;
        update.execute(params![id, body]).map_err(err())?;
    }
    Ok(())
}

fn decode<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    key: &str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Decode {
        kind,
        key: key.to_string(),
        source: Arc::new(e),
    })
}

pub(crate) fn user_version(conn: &Connection) -> Result<u32, StoreError> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(StoreError::sqlite("read user_version"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_an_older_file_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path, 1).unwrap();
        assert_eq!(user_version(&conn).unwrap(), 1);
        conn.execute(
            "INSERT INTO nodes (id, body) VALUES ('n1', '{}')",
            rusqlite::params![],
        )
        .unwrap();
        let has_events: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'events'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(has_events, 0);

        migrate(&mut conn, &path, 9).unwrap();
        conn.execute(
            "INSERT INTO events (idx, topic, kind, key, payload, time) VALUES (1, 'node', 'upserted', 'n1', NULL, 0)",
            [],
        )
        .unwrap();
        migrate(&mut conn, &path, SCHEMA_VERSION).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        let nodes: i64 = conn
            .query_row("SELECT count(*) FROM nodes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(nodes, 1);
        let has_events: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'events'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(has_events, 0, "migration 10 moves events to memory");
    }

    #[test]
    fn migration_3_rehashes_allocations_with_the_stable_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path, 2).unwrap();
        let job: Job = serde_json::from_value(serde_json::json!({
            "id": "web",
            "version": 4,
            "groups": [{"name": "g", "tasks": [{"name": "t", "driver": "exec"}]}]
        }))
        .unwrap();
        let body = serde_json::to_string(&job).unwrap();
        conn.execute(
            "INSERT INTO jobs (id, version, modify_index, body) VALUES ('web', 4, 1, ?1)",
            [&body],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO job_versions (job_id, version, body) VALUES ('web', 4, ?1)",
            [&body],
        )
        .unwrap();
        let alloc = |id: &str, version: u64| {
            serde_json::json!({
                "id": id, "name": "web.g[0]", "index": 0, "job_id": "web",
                "job_version": version, "group": "g", "group_hash": 12345,
                "node_id": "n1", "node_name": "n1", "eval_id": "e",
                "desired_status": "run", "desired_description": "",
                "client_status": "running", "client_description": "",
                "task_states": {}, "resources": {"cpu": 1, "memory": 1},
                "create_time": 0, "modify_time": 0,
                "create_index": 0, "modify_index": 0
            })
            .to_string()
        };
        for (id, version) in [("current", 4), ("gone", 3)] {
            conn.execute(
                "INSERT INTO allocs (id, job_id, node_id, modify_time, body)
                 VALUES (?1, 'web', 'n1', 0, ?2)",
                params![id, alloc(id, version)],
            )
            .unwrap();
        }

        migrate(&mut conn, &path, SCHEMA_VERSION).unwrap();
        let hash_of = |id: &str| {
            let body: String = conn
                .query_row("SELECT body FROM allocs WHERE id = ?1", [id], |r| r.get(0))
                .unwrap();
            serde_json::from_str::<Allocation>(&body)
                .unwrap()
                .group_hash
        };
        assert_eq!(hash_of("current"), job.groups[0].spec_hash());
        assert_eq!(hash_of("gone"), 12345, "no version to compute it from");
    }

    #[test]
    fn new_file_gets_incremental_vacuum_and_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        let conn = open_writer(&path, Duration::from_secs(1)).unwrap();
        let av: i64 = conn
            .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
            .unwrap();
        assert_eq!(av, 2, "auto_vacuum must be INCREMENTAL");
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous must be FULL");
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("future.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = open_writer(&path, Duration::from_secs(1)).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found, .. } if found == SCHEMA_VERSION + 1)
        );
        assert!(err.to_string().contains("newer"), "{err}");
    }
}
