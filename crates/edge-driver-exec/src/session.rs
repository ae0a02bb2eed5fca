//! `edge alloc exec` in an exec task: the command runs as the task's user,
//! with its environment and working directory, inside its cgroup, on pipes
//! or on a pty of its own. Unlike a task it is a child of the agent and
//! lives only as long as its session: dropping the session kills its
//! process group (pipes) or session (pty).

use crate::cgroup::TaskCgroup;
use crate::executor::{
    ExecutorSpec, cloexec_stray_fds, drop_privileges, join_cgroups, join_netns, open_netns,
    task_env,
};
use async_trait::async_trait;
use edge_driver::{DriverError, ExecControl, ExecRequest, ExecSession};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};

/// Starts `req` in the task described by `spec`, joined to `cgroup`.
pub(crate) fn start(
    spec: &ExecutorSpec,
    cgroup: Option<&TaskCgroup>,
    req: &ExecRequest,
) -> Result<ExecSession, DriverError> {
    let Some((program, args)) = req.argv.split_first() else {
        return Err(DriverError::Other("exec needs a command".to_string()));
    };
    let procs: Vec<CString> = cgroup
        .map(|c| {
            c.procs_files()
                .iter()
                .filter_map(|p| CString::new(p.as_os_str().as_bytes()).ok())
                .collect()
        })
        .unwrap_or_default();
    let ids = spec.user.as_ref().map(|u| (u.uid, u.gid));
    // Kept open until the command is spawned: the child enters it.
    let netns = open_netns(spec).map_err(|e| DriverError::Other(e.to_string()))?;
    let netns_fd = netns.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
    let vars = task_env(spec);
    let path = vars.get(std::ffi::OsStr::new("PATH")).cloned();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(&vars)
        .current_dir(&spec.task_dir)
        .kill_on_drop(true);
    let spawn_err = |source: io::Error| DriverError::Exec {
        command: program.clone(),
        source: if source.kind() == io::ErrorKind::PermissionDenied
            && !on_path(program, path.as_deref())
        {
            // execvp reports EACCES when any PATH directory was closed to
            // the task's user, even though the program is nowhere.
            io::Error::new(
                io::ErrorKind::NotFound,
                "no such command in the task's PATH",
            )
        } else {
            source
        },
    };
    if req.tty {
        let size = req.size.map(|(rows, cols)| nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        });
        let pty = nix::pty::openpty(size.as_ref(), None)
            .map_err(|e| DriverError::io("opening a pty", e.into()))?;
        let slave = |fd: &OwnedFd| {
            fd.try_clone()
                .map(Stdio::from)
                .map_err(|e| DriverError::io("sharing the pty", e))
        };
        cmd.stdin(slave(&pty.slave)?)
            .stdout(slave(&pty.slave)?)
            .stderr(Stdio::from(pty.slave));
        // SAFETY: only async-signal-safe system calls on memory prepared
        // before the fork. The new session makes the pty its controlling
        // terminal, so the shell's job control and SIGHUP work as on a login.
        unsafe {
            cmd.pre_exec(move || {
                cloexec_stray_fds();
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                join_netns(netns_fd)?;
                join_cgroups(&procs)?;
                ids.map_or(Ok(()), |(uid, gid)| drop_privileges(uid, gid))
            });
        }
        let child = cmd.spawn().map_err(spawn_err)?;
        // The parent's copies of the slave must close, or reading the master
        // never ends after the command does.
        drop(cmd);
        let master = pty.master;
        set_nonblocking(&master)?;
        let read = master
            .try_clone()
            .and_then(pipe::Receiver::from_owned_fd_unchecked)
            .map_err(|e| DriverError::io("reading the pty", e))?;
        let write = master
            .try_clone()
            .and_then(pipe::Sender::from_owned_fd_unchecked)
            .map_err(|e| DriverError::io("writing the pty", e))?;
        Ok(ExecSession {
            stdin: Box::pin(write),
            stdout: Box::pin(PtyReader(read)),
            stderr: None,
            control: Box::new(Control::new(child, Some(master))),
        })
    } else {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: as above.
        unsafe {
            cmd.pre_exec(move || {
                cloexec_stray_fds();
                join_netns(netns_fd)?;
                join_cgroups(&procs)?;
                ids.map_or(Ok(()), |(uid, gid)| drop_privileges(uid, gid))
            });
        }
        let mut child = cmd.spawn().map_err(spawn_err)?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(DriverError::Other(
                "exec'd command has no pipes".to_string(),
            ));
        };
        Ok(ExecSession {
            stdin: Box::pin(stdin),
            stdout: Box::pin(stdout),
            stderr: Some(Box::pin(stderr)),
            control: Box::new(Control::new(child, None)),
        })
    }
}

/// Whether `program` names a file: a path, or a name found in `path`.
fn on_path(program: &str, path: Option<&std::ffi::OsStr>) -> bool {
    if program.contains('/') {
        return std::path::Path::new(program).exists();
    }
    path.is_some_and(|p| std::env::split_paths(p).any(|d| d.join(program).is_file()))
}

fn set_nonblocking(fd: &OwnedFd) -> Result<(), DriverError> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(|e| DriverError::io("pty flags", e.into()))?;
    fcntl(
        fd,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .map_err(|e| DriverError::io("pty flags", e.into()))?;
    Ok(())
}

/// A pty master answers EIO once the last slave closed: the end of output.
struct PtyReader(pipe::Receiver);

impl AsyncRead for PtyReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.0).poll_read(cx, buf) {
            Poll::Ready(Err(e)) if e.raw_os_error() == Some(libc::EIO) => Poll::Ready(Ok(())),
            other => other,
        }
    }
}

struct Control {
    child: tokio::sync::Mutex<Child>,
    /// The process group (pipes) or session (pty) the command leads.
    pgid: Option<i32>,
    master: Option<OwnedFd>,
    exited: AtomicBool,
}

impl Control {
    fn new(child: Child, master: Option<OwnedFd>) -> Control {
        Control {
            pgid: child.id().map(|p| p as i32),
            child: tokio::sync::Mutex::new(child),
            master,
            exited: AtomicBool::new(false),
        }
    }
}

#[async_trait]
impl ExecControl for Control {
    async fn resize(&self, rows: u16, cols: u16) -> Result<(), DriverError> {
        let Some(master) = &self.master else {
            return Ok(());
        };
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which
        // outlives the call; the fd is the session's open pty master.
        let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        if rc < 0 {
            return Err(DriverError::io(
                "resizing the pty",
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    async fn wait(&self) -> Result<i32, DriverError> {
        let status = self
            .child
            .lock()
            .await
            .wait()
            .await
            .map_err(|e| DriverError::io("waiting for the exec'd command", e))?;
        self.exited.store(true, Ordering::SeqCst);
        Ok(status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(-1))
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        // Once reaped, the group id may belong to someone else.
        if !self.exited.load(Ordering::SeqCst)
            && let Some(pgid) = self.pgid
        {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}
