//! exec driver: host processes under cgroup limits, surviving agent restarts.
//!
//! The driver never parents a task itself. Each start spawns an executor (the
//! edge binary's hidden `executor` subcommand, see [`executor_main`]) in a
//! session of its own; the executor runs the task, keeps its logs and records
//! its exit in the run's state dir. The driver talks to a run only through
//! that dir and the pids recorded there, so a restarted agent re-attaches to
//! a run exactly as the agent that started it would.

mod cgroup;
mod config;
mod error;
mod executor;
mod gc;
mod proc;
mod session;
mod user;

pub use config::{ExecBlock, check_config};
pub use executor::executor_main;

use async_trait::async_trait;
use cgroup::{Hierarchy, TaskCgroup, Version};
use edge_driver::{Driver, DriverError, ExitResult, Leftover, TaskConfig, TaskHandle, TaskStats};
use edge_spec::DriverInfo;
use executor::{
    EXIT_FILE, ExecutorSpec, PID_FILE, PidFile, SPEC_FILE, START_ERROR_FILE, StartError,
    write_json_atomic,
};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::{Instant, sleep};

const DRIVER_NAME: &str = "exec";
/// How long the executor may take to report the task's pid.
const START_TIMEOUT: Duration = Duration::from_secs(10);
const START_POLL: Duration = Duration::from_millis(10);
const WAIT_POLL: Duration = Duration::from_millis(100);
const STOP_POLL: Duration = Duration::from_millis(50);
/// How long a SIGKILLed task may take to be recorded as gone.
const KILL_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecConfig {
    /// Command prefix that runs the executor, e.g. `[<edge binary>, "executor"]`;
    /// the spec file path is appended.
    pub executor: Vec<String>,
    /// Where each run keeps `spec.json`, `pid.json` and `exit.json`:
    /// `<state_dir>/<alloc_id>/<task>/<attempt>/`.
    pub state_dir: PathBuf,
    /// Task cgroups are `<cgroup_parent>/<alloc_id>-<task>-<attempt>`.
    pub cgroup_parent: String,
    /// Who a task runs as when its config names no `user` (an agent that
    /// is not root runs every task as itself).
    pub default_user: String,
    /// Whether a task may run as root (uid 0); off, a task asking for it
    /// fails to start.
    pub allow_root: bool,
}

impl ExecConfig {
    /// With the default cgroup parent, `edge`.
    pub fn new(executor: Vec<String>, state_dir: PathBuf) -> ExecConfig {
        ExecConfig {
            executor,
            state_dir,
            cgroup_parent: "edge".to_string(),
            default_user: DEFAULT_USER.to_string(),
            allow_root: false,
        }
    }
}

/// Nomad's default for exec tasks: a user that owns nothing on the host.
pub const DEFAULT_USER: &str = "nobody";

/// What a [`TaskHandle`] of this driver carries in `state`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HandleState {
    executor_pid: u32,
    executor_start_time: u64,
    /// `/proc/<pid>/stat` field 22 of the task, to tell it from a reused pid.
    pid_start_time: u64,
    /// For people reading the agent's state; the driver derives the path
    /// from the task id instead.
    state_dir: PathBuf,
    #[serde(default)]
    cgroup: Option<TaskCgroup>,
}

/// One started task, as found from its handle.
#[derive(Debug)]
struct Run {
    task_id: String,
    dir: PathBuf,
    pid: u32,
    pid_start_time: u64,
    executor_pid: u32,
    executor_start_time: u64,
    cgroup: Option<TaskCgroup>,
}

impl Run {
    fn task_alive(&self) -> bool {
        proc::alive(self.pid, self.pid_start_time)
    }

    fn executor_alive(&self) -> bool {
        proc::alive(self.executor_pid, self.executor_start_time)
    }

    fn exit(&self) -> Result<Option<ExitResult>, DriverError> {
        read_json(&self.dir.join(EXIT_FILE))
    }

    /// How the task ended, once it has: the executor's record, or an error
    /// result when the executor and the task are both gone without one.
    fn finished(&self) -> Result<Option<ExitResult>, DriverError> {
        if let Some(result) = self.exit()? {
            return Ok(Some(result));
        }
        if self.executor_alive() || self.task_alive() {
            return Ok(None);
        }
        // The executor may have written its record just before exiting.
        if let Some(result) = self.exit()? {
            return Ok(Some(result));
        }
        Ok(Some(ExitResult {
            exit_code: -1,
            signal: None,
            oom_killed: false,
            error: Some(format!(
                "executor died (pid {}) before recording how the task exited",
                self.executor_pid
            )),
        }))
    }

    /// Signals the task's whole process group while its leader is still the
    /// process we started.
    fn signal_group(&self, signal: Signal) {
        if self.task_alive() {
            let _ = killpg(Pid::from_raw(self.pid as i32), signal);
        }
    }

    /// Polls until the task has finished or `within` has passed. A `within`
    /// past what the clock can hold (a kill_timeout stored before durations
    /// were bounded) waits for the task however long it takes.
    async fn finished_within(&self, within: Duration) -> Result<bool, DriverError> {
        let deadline = Instant::now().checked_add(within);
        loop {
            if self.finished()?.is_some() {
                return Ok(true);
            }
            let left = deadline.map_or(STOP_POLL, |d| d.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                return Ok(false);
            }
            sleep(STOP_POLL.min(left)).await;
        }
    }
}

/// Runs tasks as plain host processes. See the crate docs.
#[derive(Debug, Clone)]
pub struct ExecDriver {
    cfg: ExecConfig,
    /// `None` when cgroups are missing or not writable: tasks then run
    /// without limits.
    cgroups: Option<Hierarchy>,
}

impl ExecDriver {
    pub fn new(cfg: ExecConfig) -> ExecDriver {
        let cgroups = Hierarchy::detect().filter(|h| match h.prepare(&cfg.cgroup_parent) {
            Ok(()) => true,
            Err(e) => {
                tracing::info!(error = %e, "cgroups not writable; exec tasks run without limits");
                false
            }
        });
        ExecDriver { cfg, cgroups }
    }

    /// `v1`, `v2` or `none`, as reported in the `exec.cgroups` attribute.
    pub fn cgroups(&self) -> &'static str {
        match self.cgroups.as_ref().map(Hierarchy::version) {
            Some(Version::V1) => "v1",
            Some(Version::V2) => "v2",
            None => "none",
        }
    }

    fn task_cgroup(&self, alloc_id: &str, task: &str, attempt: &str) -> Option<TaskCgroup> {
        let name = format!("{alloc_id}-{task}-{attempt}");
        Some(self.cgroups.as_ref()?.task(&self.cfg.cgroup_parent, &name))
    }

    /// Creates a fresh `<state_dir>/<alloc>/<task>/<attempt>` and returns the
    /// attempt number.
    fn claim_run_dir(&self, alloc_id: &str, task: &str) -> Result<(u32, PathBuf), DriverError> {
        let parent = self.cfg.state_dir.join(alloc_id).join(task);
        fs::create_dir_all(&parent)
            .map_err(|e| DriverError::io(format!("creating {}", parent.display()), e))?;
        let listing = fs::read_dir(&parent)
            .map_err(|e| DriverError::io(format!("listing {}", parent.display()), e))?;
        let mut attempt = listing
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .max()
            .map_or(1, |n| n.saturating_add(1));
        loop {
            let dir = parent.join(attempt.to_string());
            match fs::create_dir(&dir) {
                Ok(()) => return Ok((attempt, dir)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => attempt += 1,
                Err(e) => {
                    return Err(DriverError::io(format!("creating {}", dir.display()), e));
                }
            }
        }
    }

    /// Rebuilds a run from its handle. Paths come from the task id and this
    /// driver's config, never from the handle's free-form state, so a
    /// damaged handle cannot point destroy at an unrelated directory.
    /// `signal` to the task's process group, SIGKILL once `timeout` passes.
    async fn stop_by(
        &self,
        handle: &TaskHandle,
        timeout: Duration,
        signal: Signal,
    ) -> Result<(), DriverError> {
        let run = self.run(handle)?;
        if run.finished()?.is_some() {
            return Ok(());
        }
        run.signal_group(signal);
        if run.finished_within(timeout).await? {
            return Ok(());
        }
        run.signal_group(Signal::SIGKILL);
        if run.finished_within(KILL_GRACE).await? {
            return Ok(());
        }
        Err(DriverError::Other(format!(
            "task {} still running {}s after SIGKILL",
            run.task_id,
            KILL_GRACE.as_secs()
        )))
    }

    fn run(&self, handle: &TaskHandle) -> Result<Run, DriverError> {
        let invalid = |why: &str| {
            DriverError::Other(format!(
                "invalid exec task handle {}: {why}",
                handle.task_id
            ))
        };
        if handle.driver != DRIVER_NAME {
            return Err(invalid(&format!("belongs to driver {:?}", handle.driver)));
        }
        let parts: Vec<&str> = handle.task_id.split('/').collect();
        let [alloc_id, task, attempt] = parts[..] else {
            return Err(invalid("task id is not <alloc_id>/<task>/<attempt>"));
        };
        if check_name("alloc_id", alloc_id).is_err()
            || check_name("task", task).is_err()
            || attempt.parse::<u32>().is_err()
        {
            return Err(invalid("task id is not <alloc_id>/<task>/<attempt>"));
        }
        let pid = handle.pid.ok_or_else(|| invalid("no pid"))?;
        let state: HandleState = serde_json::from_value(handle.state.clone())
            .map_err(|e| invalid(&format!("bad state: {e}")))?;
        let cgroup = state
            .cgroup
            .and_then(|_| self.task_cgroup(alloc_id, task, attempt));
        Ok(Run {
            task_id: handle.task_id.clone(),
            dir: self.cfg.state_dir.join(alloc_id).join(task).join(attempt),
            pid,
            pid_start_time: state.pid_start_time,
            executor_pid: state.executor_pid,
            executor_start_time: state.executor_start_time,
            cgroup,
        })
    }

    async fn launch(
        &self,
        cfg: &TaskConfig,
        task_cfg: config::ExecTaskConfig,
        attempt: u32,
        dir: &Path,
    ) -> Result<TaskHandle, DriverError> {
        let Some((program, prefix_args)) = self.cfg.executor.split_first() else {
            return Err(DriverError::Unavailable {
                driver: DRIVER_NAME.to_string(),
                reason: "no executor command configured".to_string(),
            });
        };
        fs::create_dir_all(&cfg.task_dir).map_err(|e| {
            DriverError::io(format!("creating task dir {}", cfg.task_dir.display()), e)
        })?;
        if !cfg.mounts.is_empty() && !nix::unistd::Uid::effective().is_root() {
            return Err(DriverError::config(
                "volume_mount",
                "exec tasks mount volumes in a mount namespace of their own, which needs the agent to run as root",
            ));
        }
        let user = user::resolve(&self.cfg, &cfg.task, task_cfg.user.as_deref())?;
        if let Some(u) = &user {
            user::chown_tree(&cfg.task_dir, u)?;
            // The allocation's shared dir, but not its logs: those are the
            // executor's record of what the task printed.
            let data = cfg.alloc_dir.join("data");
            if data.is_dir() {
                user::chown_tree(&data, u)?;
            }
        }
        let cgroup = self.task_cgroup(&cfg.alloc_id, &cfg.task, &attempt.to_string());
        let spec = ExecutorSpec {
            task: cfg.task.clone(),
            command: task_cfg.command,
            args: task_cfg.args,
            env: cfg.env.clone(),
            task_dir: cfg.task_dir.clone(),
            log_dir: cfg.log_dir.clone(),
            log_max_bytes: cfg.log_max_bytes,
            log_max_files: cfg.log_max_files,
            state_dir: dir.to_path_buf(),
            cgroup: cgroup.clone(),
            memory_mb: cfg.resources.memory,
            cpu_mhz: cfg.resources.cpu,
            user,
            netns: cfg.netns.clone(),
            mounts: cfg.mounts.clone(),
        };
        let spec_path = dir.join(SPEC_FILE);
        write_json_atomic(&spec_path, &spec)
            .map_err(|e| DriverError::io(format!("writing {}", spec_path.display()), e))?;

        let mut cmd = Command::new(program);
        cmd.args(prefix_args)
            .arg(&spec_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: setsid and close_range are async-signal-safe and touch no
        // memory. A session of its own keeps the executor out of the agent's
        // process group, so signals aimed at the agent (Ctrl-C, its own stop)
        // do not reach it.
        unsafe {
            cmd.pre_exec(|| {
                executor::cloexec_stray_fds();
                nix::unistd::setsid().map(drop).map_err(io::Error::from)
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| DriverError::io(format!("starting executor {program:?}"), e))?;
        let executor_pid = child.id();
        // Read before anything can reap the executor, so the pid is still ours.
        let executor_start_time = proc::stat(executor_pid).map_or(0, |s| s.start_time);
        // Reaps the executor if it exits while this agent lives; after an
        // agent restart init does it instead.
        let reaper = std::thread::Builder::new()
            .name("exec-reaper".to_string())
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = child.wait();
            });
        if let Err(e) = reaper {
            // Only costs a zombie until the agent exits: liveness checks
            // already treat zombies as gone.
            tracing::warn!(error = %e, "cannot start a thread to reap the executor");
        }

        let deadline = Instant::now() + START_TIMEOUT;
        let started = loop {
            if let Some(started) = started_or_failed(dir, &cfg.task)? {
                break started;
            }
            if !proc::alive(executor_pid, executor_start_time) {
                if let Some(started) = started_or_failed(dir, &cfg.task)? {
                    break started;
                }
                return Err(DriverError::Other(format!(
                    "executor for task {} exited before starting it",
                    cfg.task
                )));
            }
            if Instant::now() >= deadline {
                let _ = kill(Pid::from_raw(executor_pid as i32), Signal::SIGKILL);
                return Err(DriverError::Other(format!(
                    "task {} did not start within {}s",
                    cfg.task,
                    START_TIMEOUT.as_secs()
                )));
            }
            sleep(START_POLL).await;
        };

        let state = HandleState {
            executor_pid,
            executor_start_time,
            pid_start_time: started.start_time,
            state_dir: dir.to_path_buf(),
            cgroup,
        };
        Ok(TaskHandle {
            driver: DRIVER_NAME.to_string(),
            task_id: format!("{}/{}/{attempt}", cfg.alloc_id, cfg.task),
            pid: Some(started.pid),
            started_at: now_ms(),
            state: serde_json::to_value(state)
                .map_err(|e| DriverError::Other(format!("encoding task handle: {e}")))?,
        })
    }
}

/// The task's pid once the executor recorded it, or its start error.
fn started_or_failed(dir: &Path, task: &str) -> Result<Option<PidFile>, DriverError> {
    if let Some(pid) = read_json::<PidFile>(&dir.join(PID_FILE))? {
        return Ok(Some(pid));
    }
    match read_json::<StartError>(&dir.join(START_ERROR_FILE))? {
        Some(StartError {
            field: Some(field),
            error,
        }) => Err(DriverError::Config {
            field,
            message: error,
        }),
        Some(StartError { field: None, error }) => Err(DriverError::Other(format!(
            "task {task} failed to start: {error}"
        ))),
        None => Ok(None),
    }
}

/// `None` while the file does not exist; the executor writes each file
/// atomically, so one that exists is complete.
fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, DriverError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DriverError::io(format!("reading {}", path.display()), e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| DriverError::Other(format!("corrupt {}: {e}", path.display())))
}

/// Names become path components and cgroup names, so they must be single,
/// ordinary components.
fn check_name(field: &str, name: &str) -> Result<(), DriverError> {
    if !edge_driver::is_plain_name(name) {
        return Err(DriverError::config(
            field,
            format!("{name:?} cannot be used as a directory name"),
        ));
    }
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[async_trait]
impl Driver for ExecDriver {
    fn name(&self) -> &'static str {
        DRIVER_NAME
    }

    async fn fingerprint(&self) -> DriverInfo {
        let cgroups = self.cgroups();
        let attributes = BTreeMap::from([("exec.cgroups".to_string(), cgroups.to_string())]);
        let (healthy, description) = match self.cfg.executor.first() {
            None => (false, "no executor command configured".to_string()),
            Some(exe) if exe.contains('/') && !Path::new(exe).exists() => {
                (false, format!("executor {exe} not found"))
            }
            Some(_) if cgroups == "none" => (
                true,
                "host processes without resource limits (cgroups not writable)".to_string(),
            ),
            Some(_) => (true, format!("host processes under cgroups {cgroups}")),
        };
        DriverInfo {
            detected: true,
            healthy,
            description,
            attributes,
        }
    }

    async fn start(&self, cfg: &TaskConfig) -> Result<TaskHandle, DriverError> {
        let task_cfg = config::parse(&cfg.config, &cfg.env)?;
        check_name("alloc_id", &cfg.alloc_id)?;
        check_name("task", &cfg.task)?;
        let (attempt, dir) = self.claim_run_dir(&cfg.alloc_id, &cfg.task)?;
        let result = self.launch(cfg, task_cfg, attempt, &dir).await;
        if result.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        result
    }

    async fn recover(&self, handle: &TaskHandle) -> Result<(), DriverError> {
        let not_found = || DriverError::NotFound {
            task_id: handle.task_id.clone(),
        };
        let run = self.run(handle).map_err(|_| not_found())?;
        if run.exit()?.is_some() || run.task_alive() || run.executor_alive() {
            Ok(())
        } else {
            Err(not_found())
        }
    }

    async fn wait(&self, handle: &TaskHandle) -> Result<ExitResult, DriverError> {
        let run = self.run(handle)?;
        loop {
            if let Some(result) = run.finished()? {
                return Ok(result);
            }
            sleep(WAIT_POLL).await;
        }
    }

    async fn stop(&self, handle: &TaskHandle, timeout: Duration) -> Result<(), DriverError> {
        self.stop_by(handle, timeout, Signal::SIGTERM).await
    }

    async fn stop_with(
        &self,
        handle: &TaskHandle,
        timeout: Duration,
        signal: &str,
    ) -> Result<(), DriverError> {
        let signal = edge_driver::config::parse_signal(signal)?;
        self.stop_by(handle, timeout, signal).await
    }

    async fn destroy(&self, handle: &TaskHandle) -> Result<(), DriverError> {
        let run = self.run(handle)?;
        if run.finished()?.is_none() {
            run.signal_group(Signal::SIGKILL);
            run.finished_within(KILL_GRACE).await?;
        }
        if let Some(cg) = run.cgroup.clone() {
            tokio::task::spawn_blocking(move || cg.remove())
                .await
                .map_err(|e| DriverError::Other(format!("removing cgroup: {e}")))?
                .map_err(|e| DriverError::io(format!("removing cgroup of {}", run.task_id), e))?;
        }
        match fs::remove_dir_all(&run.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(DriverError::io(
                    format!("removing {}", run.dir.display()),
                    e,
                ));
            }
        }
        // The task and alloc dirs go once their last run is gone; a failure
        // only means other runs still live there.
        for parent in run.dir.ancestors().skip(1).take(2) {
            if fs::remove_dir(parent).is_err() {
                break;
            }
        }
        Ok(())
    }

    async fn signal(&self, handle: &TaskHandle, signal: &str) -> Result<(), DriverError> {
        let signal = edge_driver::config::parse_signal(signal)?;
        let run = self.run(handle)?;
        if !run.task_alive() {
            return Err(DriverError::NotFound {
                task_id: run.task_id,
            });
        }
        kill(Pid::from_raw(run.pid as i32), signal).map_err(|e| {
            DriverError::io(
                format!("sending {signal} to task {}", run.task_id),
                io::Error::from(e),
            )
        })
    }

    async fn leftovers(&self, owned: &BTreeSet<String>) -> Result<Vec<Leftover>, DriverError> {
        Ok(self.find_leftovers(owned))
    }

    async fn reap(&self, leftover: &Leftover) -> Result<(), DriverError> {
        let (driver, leftover) = (self.clone(), leftover.clone());
        tokio::task::spawn_blocking(move || driver.reap_leftover(&leftover))
            .await
            .map_err(|e| DriverError::Other(format!("reaping a leftover: {e}")))?
    }

    async fn exec(
        &self,
        handle: &TaskHandle,
        req: &edge_driver::ExecRequest,
    ) -> Result<edge_driver::ExecSession, DriverError> {
        let run = self.run(handle)?;
        if !run.task_alive() {
            return Err(DriverError::NotFound {
                task_id: run.task_id.clone(),
            });
        }
        let spec = executor::read_spec(&run.dir.join(SPEC_FILE))
            .map_err(|e| DriverError::Other(e.to_string()))?;
        session::start(&spec, run.cgroup.as_ref(), req)
    }

    async fn stats(&self, handle: &TaskHandle) -> Result<TaskStats, DriverError> {
        let run = self.run(handle)?;
        if !run.task_alive() {
            return Err(DriverError::NotFound {
                task_id: run.task_id,
            });
        }
        let cg = run.cgroup.as_ref();
        // Kernels refresh cgroup memory.stat lazily (every ~2s), so a young
        // task reads 0 there; its own VmRSS is then the better answer.
        let memory_rss_bytes = cg
            .and_then(TaskCgroup::memory_rss_bytes)
            .filter(|&bytes| bytes > 0)
            .or_else(|| proc::rss_bytes(run.pid))
            .unwrap_or(0);
        let cpu_total_ns = cg
            .and_then(TaskCgroup::cpu_ns)
            .or_else(|| proc::stat(run.pid).map(|s| s.cpu_ticks * proc::nanos_per_tick()))
            .unwrap_or(0);
        Ok(TaskStats {
            memory_rss_bytes,
            cpu_total_ns,
            timestamp: now_ms(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_single_path_components() {
        assert!(check_name("task", "web").is_ok());
        assert!(check_name("task", "web.v2 x").is_ok());
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(matches!(
                check_name("task", bad),
                Err(DriverError::Config { .. })
            ));
        }
    }

    #[test]
    fn rejects_handles_it_cannot_trust() {
        let dir = tempfile::tempdir().unwrap();
        let driver = ExecDriver::new(ExecConfig::new(vec!["true".into()], dir.path().into()));
        let state = serde_json::json!({
            "executor_pid": 1, "executor_start_time": 0, "pid_start_time": 0,
            "state_dir": "/"
        });
        let handle = |driver: &str, task_id: &str| TaskHandle {
            driver: driver.to_string(),
            task_id: task_id.to_string(),
            pid: Some(1),
            started_at: 0,
            state: state.clone(),
        };
        let run = driver.run(&handle("exec", "a/web/3")).unwrap();
        assert_eq!(run.dir, dir.path().join("a/web/3"));
        for (d, id) in [
            ("docker", "a/web/3"),
            ("exec", "../../x"),
            ("exec", "a/web"),
            ("exec", "a/web/x"),
        ] {
            assert!(driver.run(&handle(d, id)).is_err(), "{d} {id}");
        }
    }
}
