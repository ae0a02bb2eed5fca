//! The boundary between the agent and the things that run workloads: the
//! `Driver` trait, the task description a driver receives, and the handle it
//! gives back so the agent can re-attach after its own restart.

pub mod config;
pub mod error;
pub mod exec;
pub mod logs;
pub mod netns;

pub use error::DriverError;
pub use exec::{ExecControl, ExecRequest, ExecSession};

use async_trait::async_trait;
use edge_spec::{AssignedPort, DriverInfo, Resources};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

/// Everything a driver needs to start one task of one allocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskConfig {
    pub alloc_id: String,
    pub job_id: String,
    pub group: String,
    pub task: String,
    /// The task's `config { ... }` block, checked by the driver.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Task env plus edge's own `EDGE_*` variables, already merged.
    pub env: BTreeMap<String, String>,
    pub resources: Resources,
    pub ports: Vec<AssignedPort>,
    /// The allocation directory, shared by its tasks (`alloc/` inside it).
    pub alloc_dir: PathBuf,
    /// This task's own directory, the working directory of exec tasks.
    pub task_dir: PathBuf,
    /// Where `<task>.stdout.N` / `<task>.stderr.N` are written.
    pub log_dir: PathBuf,
    pub log_max_bytes: u64,
    pub log_max_files: u32,
    /// The allocation's network namespace (`network { mode = "bridge" }`):
    /// every task of the group joins it. `None` is the host's network.
    pub netns: Option<PathBuf>,
    /// The resolver configuration of a task in the allocation's namespace
    /// (the node's DNS at its gateway); containers get it as
    /// `/etc/resolv.conf`.
    pub resolv_conf: Option<PathBuf>,
    /// The task's `volume_mount`s, resolved to directories on this node.
    #[serde(default)]
    pub mounts: Vec<Mount>,
}

/// A directory of the node mounted into a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// The volume's directory on the node.
    pub source: PathBuf,
    /// An absolute path inside the task (validated: no `..`, not `/`).
    pub destination: String,
    pub read_only: bool,
}

/// What the agent keeps in its local state to find a task again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskHandle {
    pub driver: String,
    /// Unique per task start: `<alloc_id>/<task>/<attempt>`.
    pub task_id: String,
    pub pid: Option<u32>,
    /// Unix milliseconds.
    pub started_at: i64,
    /// Driver-specific recovery data.
    #[serde(default)]
    pub state: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ExitResult {
    pub exit_code: i32,
    #[serde(default)]
    pub signal: Option<i32>,
    #[serde(default)]
    pub oom_killed: bool,
    /// Set when the driver could not tell how the task ended.
    #[serde(default)]
    pub error: Option<String>,
}

impl ExitResult {
    pub fn successful(&self) -> bool {
        self.exit_code == 0 && self.signal.is_none() && !self.oom_killed && self.error.is_none()
    }

    pub fn describe(&self) -> String {
        if self.oom_killed {
            return "OOM killed: task exceeded its memory limit".to_string();
        }
        if let Some(e) = &self.error {
            return e.clone();
        }
        match self.signal {
            Some(s) => format!("exit code {}, signal {s}", self.exit_code),
            None => format!("exit code {}", self.exit_code),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TaskStats {
    pub memory_rss_bytes: u64,
    /// Total CPU time used, in nanoseconds.
    pub cpu_total_ns: u64,
    /// Unix milliseconds when sampled.
    pub timestamp: i64,
}

/// One ordinary path component: not empty, not `.` or `..`, no `/` or NUL.
/// Allocation ids and task names become directory and file names; both the
/// agent and the drivers check them with this before joining them to a path.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// Something a driver left on this node that no live allocation owns: a
/// container, an executor and its task, a cgroup, a run's state directory.
/// Found by [`Driver::leftovers`] after a lost data dir, an interrupted run
/// or a crash between starting a task and recording its handle.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Leftover {
    pub driver: String,
    /// The driver's own name for it (a container id, a run's task id).
    pub id: String,
    /// The allocation it was started for, when the driver can tell.
    #[serde(default)]
    pub alloc_id: Option<String>,
    /// For people: what it is and whether anything still runs in it.
    pub description: String,
}

/// Where a driver reports task events while it works (`Downloading image`,
/// progress, `Image pulled`...). They reach the task's event list and the CLI.
pub trait EventSink: Send + Sync {
    fn event(&self, kind: &str, message: &str);
}

/// A way of running tasks. Implementations must never panic on bad task
/// config: they answer `DriverError::Config` naming the field instead.
#[async_trait]
pub trait Driver: Send + Sync {
    fn name(&self) -> &'static str;

    /// Whether the driver can run tasks on this node now.
    async fn fingerprint(&self) -> DriverInfo;

    /// Gets what the task needs before it can start (an image pull, a module
    /// or model download), reporting progress through `events`. Called before
    /// every `start`; must be cheap when everything is already there.
    async fn prepare(&self, cfg: &TaskConfig, events: &dyn EventSink) -> Result<(), DriverError> {
        let _ = (cfg, events);
        Ok(())
    }

    /// Starts the task; returns once it is running (or failed to start).
    async fn start(&self, cfg: &TaskConfig) -> Result<TaskHandle, DriverError>;

    /// Re-attaches to a task started before the agent restarted.
    /// `DriverError::NotFound` means it is gone and must be started again.
    async fn recover(&self, handle: &TaskHandle) -> Result<(), DriverError>;

    /// Resolves when the task exits. Safe to call again after recovery.
    async fn wait(&self, handle: &TaskHandle) -> Result<ExitResult, DriverError>;

    /// Sends `signal` (SIGTERM unless the task says otherwise), then SIGKILL
    /// after `timeout`. Returns once the task is dead.
    async fn stop(&self, handle: &TaskHandle, timeout: Duration) -> Result<(), DriverError>;

    /// `stop` with another first signal than SIGTERM (Nomad's
    /// `kill_signal`, e.g. `SIGQUIT` for nginx's graceful stop), then
    /// SIGKILL at `timeout`. Validation refuses `kill_signal` for the
    /// drivers that keep this default.
    async fn stop_with(
        &self,
        handle: &TaskHandle,
        timeout: Duration,
        signal: &str,
    ) -> Result<(), DriverError> {
        let _ = (handle, timeout);
        Err(DriverError::Other(format!(
            "the {} driver stops its tasks with SIGTERM, not {signal}",
            self.name()
        )))
    }

    /// Frees what the task held (cgroups, containers, snapshots).
    async fn destroy(&self, handle: &TaskHandle) -> Result<(), DriverError>;

    async fn signal(&self, handle: &TaskHandle, signal: &str) -> Result<(), DriverError>;

    /// What this driver finds on the node that belongs to none of `owned`
    /// (allocation ids). Drivers whose tasks cannot outlive the agent
    /// process leave nothing behind.
    async fn leftovers(&self, owned: &BTreeSet<String>) -> Result<Vec<Leftover>, DriverError> {
        let _ = owned;
        Ok(Vec::new())
    }

    /// Kills and removes one leftover found by [`Driver::leftovers`].
    async fn reap(&self, leftover: &Leftover) -> Result<(), DriverError> {
        Err(DriverError::NotFound {
            task_id: leftover.id.clone(),
        })
    }

    async fn stats(&self, handle: &TaskHandle) -> Result<TaskStats, DriverError>;

    /// Runs a command inside the running task (`edge alloc exec`): same
    /// user, environment, working directory and limits as the task.
    /// `DriverError::NotFound` when the task is no longer running,
    /// `DriverError::Exec` when the command cannot be started.
    async fn exec(
        &self,
        handle: &TaskHandle,
        req: &ExecRequest,
    ) -> Result<ExecSession, DriverError> {
        let _ = (handle, req);
        Err(DriverError::ExecUnsupported {
            driver: self.name().to_string(),
            reason: "this driver cannot run commands inside its tasks".to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_components() {
        assert!(is_plain_name("3f2a1b9c-0000-4000-8000-000000000001"));
        for bad in ["", ".", "..", "a/b", "/tmp/victim", "../../etc", "a\0b"] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
    }
}
