//! The executor: a small process, detached from the agent, that owns one task
//! run. It joins the task to its cgroup, starts it, copies its output into
//! size-capped logs, waits for it and records how it ended, so the task and
//! its logs outlive agent restarts and crashes.

use crate::cgroup::TaskCgroup;
use crate::error::ExecutorError;
use crate::proc;
use crate::user::TaskUser;
use edge_driver::ExitResult;
use edge_driver::logs::RotatingLog;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub(crate) const SPEC_FILE: &str = "spec.json";
pub(crate) const PID_FILE: &str = "pid.json";
pub(crate) const START_ERROR_FILE: &str = "start_error.json";
pub(crate) const EXIT_FILE: &str = "exit.json";

/// Variables a task inherits from the executor (and so from the agent) unless
/// its own env sets them; nothing else leaks from the agent's environment.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// How long output still held open by escaped grandchildren may delay the
/// exit record once the task itself is gone.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Everything the executor needs, written by the driver as `spec.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ExecutorSpec {
    pub task: String,
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub task_dir: PathBuf,
    pub log_dir: PathBuf,
    pub log_max_bytes: u64,
    pub log_max_files: u32,
    /// This run's state dir, where pid.json and exit.json go.
    pub state_dir: PathBuf,
    pub cgroup: Option<TaskCgroup>,
    pub memory_mb: u32,
    pub cpu_mhz: u32,
    /// Who the task runs as; `None` runs it as the executor's own user.
    #[serde(default)]
    pub user: Option<TaskUser>,
    /// The allocation's network namespace, joined before the task starts.
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// Volumes bind-mounted at their destinations in the task's own mount
    /// namespace.
    #[serde(default)]
    pub mounts: Vec<edge_driver::Mount>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct PidFile {
    pub pid: u32,
    pub start_time: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StartError {
    /// The config field at fault, when it is the task's own config.
    pub field: Option<String>,
    pub error: String,
}

/// Writes via a temporary file and a rename, so a reader sees the whole
/// file or none of it.
pub(crate) fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    // The spec holds the task's env, which may carry secrets.
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(&serde_json::to_vec(value).map_err(io::Error::other)?)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

/// Entry point of the hidden `edge executor <spec.json>` subcommand; `args`
/// are the arguments after the subcommand. Returns the process exit code.
pub fn executor_main(args: &[String]) -> i32 {
    let [spec_path] = args else {
        eprintln!("usage: executor <spec.json>");
        return 2;
    };
    let spec = match read_spec(Path::new(spec_path)) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let (child, logs) = match start(&spec) {
        Ok(started) => started,
        Err(e) => {
            if let Some(cg) = &spec.cgroup {
                let _ = cg.remove();
            }
            let field = match &e {
                ExecutorError::Spawn { source, .. }
                    if matches!(
                        source.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
                    ) =>
                {
                    Some("config.command".to_string())
                }
                _ => None,
            };
            let record = StartError {
                field,
                error: e.to_string(),
            };
            let _ = write_json_atomic(&spec.state_dir.join(START_ERROR_FILE), &record);
            return 1;
        }
    };
    let result = supervise(&spec, child, logs);
    match write_json_atomic(&spec.state_dir.join(EXIT_FILE), &result) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("writing exit record: {e}");
            1
        }
    }
}

pub(crate) fn read_spec(path: &Path) -> Result<ExecutorSpec, ExecutorError> {
    let spec_err = |message: String| ExecutorError::Spec {
        path: path.to_path_buf(),
        message,
    };
    let bytes = fs::read(path).map_err(|e| spec_err(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| spec_err(e.to_string()))
}

/// Opens the spec's network namespace, before the fork, for
/// [`join_netns`] to enter in the child.
pub(crate) fn open_netns(spec: &ExecutorSpec) -> Result<Option<fs::File>, ExecutorError> {
    spec.netns
        .as_ref()
        .map(|path| {
            fs::File::open(path).map_err(|source| ExecutorError::Netns {
                path: path.clone(),
                source,
            })
        })
        .transpose()
}

/// Enters a network namespace opened before the fork. Runs in the forked
/// child before exec and before privileges are dropped (setns needs them).
pub(crate) fn join_netns(fd: Option<std::os::fd::RawFd>) -> io::Result<()> {
    let Some(fd) = fd else {
        return Ok(());
    };
    // SAFETY: setns is an async-signal-safe system call on a descriptor
    // the parent keeps open across the fork.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A volume mount as the forked child makes it: paths as C strings made
/// before the fork.
pub(crate) struct RawMount {
    source: CString,
    destination: CString,
    read_only: bool,
}

/// Creates each mount point (on the host's file system: an empty directory
/// stays there, as with any bind mount) and readies the paths for
/// [`mount_volumes`].
pub(crate) fn prepare_mounts(
    mounts: &[edge_driver::Mount],
) -> Result<Vec<RawMount>, ExecutorError> {
    mounts
        .iter()
        .map(|m| {
            let bad = |message: String| ExecutorError::Mount {
                destination: m.destination.clone(),
                message,
            };
            fs::create_dir_all(&m.destination)
                .map_err(|e| bad(format!("cannot create the mount point: {e}")))?;
            let c =
                |p: &[u8]| CString::new(p).map_err(|_| bad("path holds a NUL byte".to_string()));
            Ok(RawMount {
                source: c(m.source.as_os_str().as_bytes())?,
                destination: c(m.destination.as_bytes())?,
                read_only: m.read_only,
            })
        })
        .collect()
}

/// Gives the child its own mount namespace, private so nothing mounted
/// here reaches the host, and bind-mounts each volume (read-only ones
/// remounted so). Runs between fork and exec: only raw system calls.
pub(crate) fn mount_volumes(mounts: &[RawMount]) -> io::Result<()> {
    if mounts.is_empty() {
        return Ok(());
    }
    let none = c"none";
    let root = c"/";
    // SAFETY: unshare and mount are async-signal-safe system calls on
    // NUL-terminated strings prepared before the fork.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) < 0 {
            return Err(io::Error::last_os_error());
        }
        let private = libc::MS_REC | libc::MS_PRIVATE;
        if libc::mount(
            none.as_ptr(),
            root.as_ptr(),
            std::ptr::null(),
            private,
            std::ptr::null(),
        ) < 0
        {
            return Err(io::Error::last_os_error());
        }
        for m in mounts {
            let bind = libc::MS_BIND | libc::MS_REC;
            if libc::mount(
                m.source.as_ptr(),
                m.destination.as_ptr(),
                std::ptr::null(),
                bind,
                std::ptr::null(),
            ) < 0
            {
                return Err(io::Error::last_os_error());
            }
            if m.read_only {
                let ro = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC;
                if libc::mount(
                    none.as_ptr(),
                    m.destination.as_ptr(),
                    std::ptr::null(),
                    ro,
                    std::ptr::null(),
                ) < 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
        }
    }
    Ok(())
}

/// Writes "0" (the writing process) into each `cgroup.procs`. Runs in the
/// forked child before exec, so it only makes raw system calls on memory
/// prepared before the fork.
pub(crate) fn join_cgroups(procs_files: &[CString]) -> io::Result<()> {
    for path in procs_files {
        // SAFETY: `path` is a valid NUL-terminated string; open, write and
        // close are async-signal-safe.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let written = libc::write(fd, b"0".as_ptr().cast(), 1);
            let err = io::Error::last_os_error();
            libc::close(fd);
            if written != 1 {
                return Err(err);
            }
        }
    }
    Ok(())
}

/// Marks every descriptor above stderr close-on-exec, in a forked child
/// before exec: a task must not inherit what the agent's own parent left
/// open (a lock held by a supervisor, a socket), which would live, and
/// stay held, as long as the task. Flagged rather than closed, so the
/// standard library's exec-error pipe still works. Best effort: kernels
/// before 5.11 lack the call, and then nothing changes.
pub(crate) fn cloexec_stray_fds() {
    // SAFETY: a raw system call on no memory; async-signal-safe.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
}

fn start(spec: &ExecutorSpec) -> Result<(Child, [RotatingLog; 2]), ExecutorError> {
    let procs_files: Vec<CString> = match &spec.cgroup {
        Some(cg) => {
            cg.create(spec.memory_mb, spec.cpu_mhz)
                .map_err(|source| ExecutorError::Cgroup {
                    task: spec.task.clone(),
                    source,
                })?;
            cg.procs_files()
                .iter()
                .filter_map(|p| CString::new(p.as_os_str().as_bytes()).ok())
                .collect()
        }
        None => Vec::new(),
    };
    let open_log = |stream: &'static str| {
        RotatingLog::open(
            &spec.log_dir,
            &spec.task,
            stream,
            spec.log_max_bytes,
            spec.log_max_files,
        )
        .map_err(|source| ExecutorError::Log {
            stream,
            dir: spec.log_dir.clone(),
            source,
        })
    };
    let logs = [open_log("stdout")?, open_log("stderr")?];

    let mut cmd = Command::new(&spec.command);
    cmd.args(&spec.args)
        .env_clear()
        .envs(task_env(spec))
        .current_dir(&spec.task_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let ids = spec.user.as_ref().map(|u| (u.uid, u.gid));
    let netns = open_netns(spec)?;
    let netns_fd = netns.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
    let mounts = prepare_mounts(&spec.mounts)?;
    // SAFETY: the hook only makes async-signal-safe system calls on memory
    // allocated before the fork (see `join_cgroups`).
    unsafe {
        cmd.pre_exec(move || {
            cloexec_stray_fds();
            join_netns(netns_fd)?;
            mount_volumes(&mounts)?;
            join_cgroups(&procs_files)?;
            // After joining: writing cgroup.procs needs the executor's
            // privileges, which the task must not keep.
            match ids {
                Some((uid, gid)) => drop_privileges(uid, gid),
                None => Ok(()),
            }
        });
    }
    let mut child = cmd.spawn().map_err(|source| ExecutorError::Spawn {
        command: spec.command.clone(),
        source,
    })?;

    let pid = child.id();
    // The child is not reaped before `wait`, so its stat is readable even if
    // it already exited.
    let start_time = proc::stat(pid).map(|s| s.start_time).unwrap_or(0);
    let pid_path = spec.state_dir.join(PID_FILE);
    if let Err(source) = write_json_atomic(&pid_path, &PidFile { pid, start_time }) {
        // The driver will report a failed start, so the task must not run
        // on unseen.
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        let _ = child.wait();
        return Err(ExecutorError::State {
            path: pid_path,
            source,
        });
    }
    Ok((child, logs))
}

/// The environment a task (and a command exec'd in it) sees: a few of the
/// agent's variables, the user's identity, then the task's own env.
pub(crate) fn task_env(spec: &ExecutorSpec) -> BTreeMap<OsString, OsString> {
    let mut env: BTreeMap<OsString, OsString> = INHERITED_ENV
        .iter()
        .filter_map(|k| Some((OsString::from(k), std::env::var_os(k)?)))
        .collect();
    if let Some(u) = &spec.user {
        env.insert("HOME".into(), u.home.clone().into());
        env.insert("USER".into(), u.name.clone().into());
        env.insert("LOGNAME".into(), u.name.clone().into());
    }
    for (k, v) in &spec.env {
        env.insert(k.into(), v.into());
    }
    env
}

/// Switches the forked child to `uid`/`gid` with no supplementary groups.
/// Runs between fork and exec: only async-signal-safe calls.
pub(crate) fn drop_privileges(uid: u32, gid: u32) -> io::Result<()> {
    let groups = [gid as libc::gid_t];
    // SAFETY: setgroups reads `groups`, which outlives the call; setgid and
    // setuid take plain integers.
    unsafe {
        if libc::setgroups(1, groups.as_ptr()) != 0
            || libc::setgid(gid as libc::gid_t) != 0
            || libc::setuid(uid as libc::uid_t) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Copies a pipe into a log until the writers close it. A log that cannot be
/// written any more is dropped, but the pipe is still drained so the task
/// never blocks on a full pipe.
fn copy_stream(mut from: impl Read, mut log: RotatingLog) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut writable = true;
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if writable && log.write_all(&buf[..n]).is_err() {
                    writable = false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn supervise(spec: &ExecutorSpec, mut child: Child, logs: [RotatingLog; 2]) -> ExitResult {
    let (done_tx, done_rx) = mpsc::channel();
    let [out_log, err_log] = logs;
    let pipes: [(Option<Box<dyn Read + Send>>, RotatingLog); 2] = [
        (child.stdout.take().map(|p| Box::new(p) as _), out_log),
        (child.stderr.take().map(|p| Box::new(p) as _), err_log),
    ];
    let mut copiers = 0;
    for (pipe, log) in pipes {
        let Some(pipe) = pipe else { continue };
        let done = done_tx.clone();
        copiers += 1;
        std::thread::spawn(move || {
            copy_stream(pipe, log);
            let _ = done.send(());
        });
    }

    let status = child.wait();
    let pid = Pid::from_raw(child.id() as i32);
    // The task is over: nothing it left behind in its group or cgroup keeps
    // running, as with any other end of the task.
    let _ = killpg(pid, Signal::SIGKILL);
    if let Some(cg) = &spec.cgroup {
        cg.kill_all();
    }
    let deadline = std::time::Instant::now() + DRAIN_GRACE;
    for _ in 0..copiers {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }

    let oom_killed = spec.cgroup.as_ref().is_some_and(|cg| cg.oom_kills() > 0);
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => ExitResult {
                exit_code: code,
                signal: None,
                oom_killed,
                error: None,
            },
            (None, Some(sig)) => ExitResult {
                exit_code: 128 + sig,
                signal: Some(sig),
                oom_killed,
                error: None,
            },
            (None, None) => ExitResult {
                exit_code: -1,
                signal: None,
                oom_killed,
                error: Some(format!("task ended with unknown status {status}")),
            },
        },
        Err(e) => ExitResult {
            exit_code: -1,
            signal: None,
            oom_killed,
            error: Some(format!("waiting for the task failed: {e}")),
        },
    }
}
