//! The agent's own durable state: its node id and, per allocation, the
//! allocation, its job and the driver handles of its tasks. This is what
//! lets a restarted agent re-attach to running tasks, or restart them after
//! a reboot while the server is unreachable.

use crate::error::AgentError;
use edge_driver::TaskHandle;
use edge_spec::{Allocation, Job, TaskState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

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
}

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn open(root: &Path) -> Result<LocalStore, AgentError> {
        let allocs = root.join("allocs");
        std::fs::create_dir_all(&allocs).map_err(|e| AgentError::io("create", &allocs, e))?;
        Ok(LocalStore {
            root: root.to_path_buf(),
        })
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

    pub fn save(&self, a: &LocalAlloc) -> Result<(), AgentError> {
        let dir = self.alloc_dir(&a.alloc.id);
        std::fs::create_dir_all(&dir).map_err(|e| AgentError::io("create", &dir, e))?;
        let text = serde_json::to_vec_pretty(a).map_err(|e| AgentError::State {
            path: dir.display().to_string(),
            source: e,
        })?;
        write_atomic(&dir.join("state.json"), &text)
    }

    /// Every allocation saved before; unreadable ones are logged and skipped
    /// so one bad file cannot keep the agent from starting.
    pub fn load_all(&self) -> Vec<LocalAlloc> {
        let dir = self.root.join("allocs");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path().join("state.json");
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            match serde_json::from_slice::<LocalAlloc>(&bytes) {
                Ok(a) => out.push(a),
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "skipping unreadable allocation state")
                }
            }
        }
        out
    }

    pub fn remove(&self, alloc_id: &str) {
        let dir = self.alloc_dir(alloc_id);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %dir.display(), error = %e, "cannot remove allocation dir");
        }
    }
}

/// Write to a temp file, fsync, rename: a crash leaves the old or the new file, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| AgentError::io("create", &tmp, e))?;
    f.write_all(bytes)
        .map_err(|e| AgentError::io("write", &tmp, e))?;
    f.sync_all().map_err(|e| AgentError::io("sync", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| AgentError::io("rename", path, e))
}
