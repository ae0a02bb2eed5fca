//! The agent's own durable state: its node id and, per allocation, the
//! allocation, its job and the driver handles of its tasks. This is what
//! lets a restarted agent re-attach to running tasks, or restart them after
//! a reboot while the server is unreachable.

use crate::error::AgentError;
use edge_driver::TaskHandle;
use edge_spec::{Allocation, Job, TaskState};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalTask {
    #[serde(default)]
    pub handle: Option<TaskHandle>,
    #[serde(default)]
    pub state: TaskState,
    /// Unix milliseconds of restarts, for the restart policy's interval.
    #[serde(default)]
    pub restart_times: Vec<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalAlloc {
    pub alloc: Allocation,
    pub job: Job,
    #[serde(default)]
    pub tasks: BTreeMap<String, LocalTask>,
    /// The allocation's namespace and address on the node's bridge
    /// (`network { mode = "bridge" }`), adopted again after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<edge_net::Attachment>,
}

const STATE_FILE: &str = "state.json";
const CATALOG_FILE: &str = "catalog.json";
/// A catalog this large is thousands of services; past it the agent keeps
/// serving from memory but stops saving, rather than fsync megabytes on
/// every change.
pub const MAX_CATALOG_BYTES: usize = 32 << 20;

/// The last catalog seen from the server, kept so DNS and the load balancer
/// can answer after a restart while the server is away.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedCatalog {
    /// Unix milliseconds when the server sent it.
    pub received_at: i64,
    pub catalog: edge_api::Catalog,
}

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    writer: Arc<Writer>,
}

/// Allocation state waiting to be written, newest per allocation: a burst of
/// task events costs one write, done on the writer thread, never on the
/// async runtime.
#[derive(Debug, Default)]
struct Writer {
    queue: Mutex<Queue>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct Queue {
    ops: HashMap<String, Op>,
    /// Bumped on every enqueue; `written` catches up once the ops taken with
    /// it are on disk.
    queued: u64,
    written: u64,
}

#[derive(Debug)]
enum Op {
    Save(Vec<u8>),
    Remove,
}

impl LocalStore {
    pub fn open(root: &Path) -> Result<LocalStore, AgentError> {
        let allocs = root.join("allocs");
        std::fs::create_dir_all(&allocs).map_err(|e| AgentError::io("create", &allocs, e))?;
        // Task users (nobody by default) must pass through to their own
        // directories, so others may traverse but not list; the state files
        // in them are 0600 (`write_atomic`).
        for dir in [root, allocs.as_path()] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
                .map_err(|e| AgentError::io("restrict", dir, e))?;
        }
        let writer = Arc::new(Writer::default());
        let weak = Arc::downgrade(&writer);
        let dir = allocs.clone();
        std::thread::Builder::new()
            .name("agent-state".to_string())
            .spawn(move || write_loop(&weak, &dir))
            .map_err(|e| AgentError::io("start the state writer for", &allocs, e))?;
        Ok(LocalStore {
            root: root.to_path_buf(),
            writer,
        })
    }

    fn enqueue(&self, alloc_id: &str, op: Op) {
        let mut q = lock(&self.writer.queue);
        q.ops.insert(alloc_id.to_string(), op);
        q.queued += 1;
        self.writer.cv.notify_all();
    }

    /// Blocks until everything queued before the call is on disk.
    pub fn flush(&self) {
        let mut q = lock(&self.writer.queue);
        let target = q.queued;
        while q.written < target {
            q = self.writer.cv.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// [`LocalStore::flush`] off the async runtime.
    pub async fn flush_async(&self) {
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || me.flush()).await;
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The node's id: made once, then kept across restarts.
    pub fn node_id(&self) -> Result<String, AgentError> {
        let path = self.root.join("node-id");
        match std::fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            Ok(_) | Err(_) => {
                let id = uuid::Uuid::new_v4().to_string();
                write_atomic(&path, id.as_bytes())?;
                Ok(id)
            }
        }
    }

    pub fn alloc_dir(&self, alloc_id: &str) -> PathBuf {
        self.root.join("allocs").join(alloc_id)
    }

    /// Queues the allocation's state for the writer thread; see
    /// [`LocalStore::flush`] to wait for it.
    pub fn save(&self, a: &LocalAlloc) -> Result<(), AgentError> {
        let text = serde_json::to_vec_pretty(a).map_err(|e| AgentError::State {
            path: self.alloc_dir(&a.alloc.id).display().to_string(),
            source: e,
        })?;
        self.enqueue(&a.alloc.id, Op::Save(text));
        Ok(())
    }

    /// Every allocation saved before. An unreadable file is moved aside
    /// (`state.json.corrupt`) and logged, so one bad file can neither keep
    /// the agent from starting nor be mistaken for an empty allocation later.
    pub fn load_all(&self) -> Vec<LocalAlloc> {
        let dir = self.root.join("allocs");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path().join(STATE_FILE);
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            match serde_json::from_slice::<LocalAlloc>(&bytes) {
                Ok(a) => out.push(a),
                Err(err) => {
                    let aside = path.with_extension("json.corrupt");
                    let moved = std::fs::rename(&path, &aside);
                    tracing::error!(
                        path = %path.display(),
                        moved_to = %aside.display(),
                        moved = moved.is_ok(),
                        error = %err,
                        "corrupt allocation state moved aside; the server's view will restore the allocation"
                    );
                }
            }
        }
        out
    }

    /// The last catalog the server sent, if one was saved and is readable.
    pub fn load_catalog(&self) -> Option<SavedCatalog> {
        let path = self.root.join(CATALOG_FILE);
        let bytes = std::fs::read(&path).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable saved catalog");
                None
            }
        }
    }

    /// Saves the catalog unless it is larger than [`MAX_CATALOG_BYTES`].
    pub fn save_catalog(&self, c: &SavedCatalog) -> Result<(), AgentError> {
        let path = self.root.join(CATALOG_FILE);
        let bytes = serde_json::to_vec(c).map_err(|e| AgentError::State {
            path: path.display().to_string(),
            source: e,
        })?;
        if bytes.len() > MAX_CATALOG_BYTES {
            return Err(AgentError::TooLarge {
                what: "catalog",
                bytes: bytes.len(),
                limit: MAX_CATALOG_BYTES,
            });
        }
        write_atomic(&path, &bytes)
    }

    /// Queues the removal of the allocation's directory; a save queued
    /// before it is dropped, so the directory cannot come back.
    pub fn remove(&self, alloc_id: &str) {
        self.enqueue(alloc_id, Op::Remove);
    }
}

fn lock(m: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The writer thread: takes every queued op, writes them, says so; ends
/// once the last `LocalStore` is gone.
fn write_loop(writer: &Weak<Writer>, allocs: &Path) {
    loop {
        let Some(w) = writer.upgrade() else {
            return;
        };
        let (ops, upto) = {
            let q = lock(&w.queue);
            let (mut q, _) =
                w.cv.wait_timeout_while(q, Duration::from_secs(1), |q| q.ops.is_empty())
                    .unwrap_or_else(|e| e.into_inner());
            if q.ops.is_empty() {
                continue;
            }
            let upto = q.queued;
            (std::mem::take(&mut q.ops), upto)
        };
        for (id, op) in ops {
            let dir = allocs.join(&id);
            match op {
                Op::Save(bytes) => {
                    let r = std::fs::create_dir_all(&dir)
                        .map_err(|e| AgentError::io("create", &dir, e))
                        .and_then(|()| write_atomic(&dir.join(STATE_FILE), &bytes));
                    if let Err(e) = r {
                        tracing::warn!(alloc = %id, error = %e, "cannot save allocation state");
                    }
                }
                Op::Remove => {
                    if let Err(e) = std::fs::remove_dir_all(&dir)
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        tracing::warn!(path = %dir.display(), error = %e, "cannot remove allocation dir");
                    }
                }
            }
        }
        let mut q = lock(&w.queue);
        q.written = q.written.max(upto);
        w.cv.notify_all();
    }
}

/// Write to a temp file, fsync, rename, fsync the directory: a crash (or a
/// power cut) leaves the old or the new file, never half of one, and never
/// loses a rename the caller was told had happened.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    // A leftover keeps its old mode through a truncating open.
    let _ = std::fs::remove_file(&tmp);
    // Allocation state holds the job's env, secrets included.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| AgentError::io("create", &tmp, e))?;
    f.write_all(bytes)
        .map_err(|e| AgentError::io("write", &tmp, e))?;
    f.sync_all().map_err(|e| AgentError::io("sync", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| AgentError::io("rename", path, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AgentError::io("sync", dir, e))
}

/// Like [`write_atomic`], with the file's mode set from its creation on (a
/// private key is never readable by others, not even for a moment).
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AgentError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| AgentError::io("create", &tmp, e))?;
    f.write_all(bytes)
        .map_err(|e| AgentError::io("write", &tmp, e))?;
    f.sync_all().map_err(|e| AgentError::io("sync", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| AgentError::io("rename", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(id: &str) -> LocalAlloc {
        serde_json::from_value(serde_json::json!({
            "alloc": {
                "id": id, "name": "j.g[0]", "index": 0, "job_id": "j", "job_version": 0,
                "group": "g", "group_hash": 0, "node_id": "n", "eval_id": "e",
                "resources": {"cpu": 1, "memory": 1}
            },
            "job": {"id": "j", "name": "j", "groups": []}
        }))
        .unwrap()
    }

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn state_files_are_private_and_dirs_only_traversable() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("agent");
        std::fs::create_dir_all(root.join("allocs")).unwrap();
        // An older agent's state, written under the default umask.
        std::fs::write(root.join("node-id"), "n1").unwrap();
        let store = LocalStore::open(&root).unwrap();
        store.save(&local("a1")).unwrap();
        store.flush();
        store
            .save_catalog(&SavedCatalog {
                catalog: edge_api::Catalog::default(),
                received_at: 0,
            })
            .unwrap();
        assert_eq!(mode(&root), 0o711);
        assert_eq!(mode(&root.join("allocs")), 0o711);
        assert_eq!(mode(&root.join("allocs/a1").join(STATE_FILE)), 0o600);
        assert_eq!(mode(&root.join(CATALOG_FILE)), 0o600);
        std::fs::remove_file(root.join("node-id")).unwrap();
        store.node_id().unwrap();
        assert_eq!(mode(&root.join("node-id")), 0o600);
    }

    #[test]
    fn writes_are_coalesced_and_a_removal_wins_over_a_queued_save() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let mut a = local("a1");
        for i in 0..50 {
            a.alloc.client_description = format!("event {i}");
            store.save(&a).unwrap();
        }
        store.flush();
        let saved = store.load_all();
        assert_eq!(saved.len(), 1);
        assert_eq!(
            saved[0].alloc.client_description, "event 49",
            "the newest state"
        );

        store.save(&a).unwrap();
        store.remove("a1");
        store.flush();
        assert!(!store.alloc_dir("a1").exists(), "removed, not re-created");
    }

    #[test]
    fn a_corrupt_state_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let bad = store.alloc_dir("bad");
        std::fs::create_dir_all(&bad).unwrap();
        std::fs::write(bad.join(STATE_FILE), b"{\"alloc\": nul").unwrap();
        assert!(store.load_all().is_empty());
        assert!(bad.join("state.json.corrupt").exists());
        assert!(!bad.join(STATE_FILE).exists());
    }
}
