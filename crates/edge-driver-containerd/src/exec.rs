//! `edge alloc exec` in a containerd task: containerd's Tasks.Exec with a
//! process spec derived from the container's (same user, env, cwd,
//! capabilities; new args and terminal), its stdio through FIFOs in the
//! driver's state dir, ResizePty for the terminal's size. Dropping the
//! session kills the process and deletes it and its FIFOs.

use crate::ContainerdError;
use crate::client::Conn;
use async_trait::async_trait;
use containerd_client::services::v1::{
    CloseIoRequest, DeleteProcessRequest, ExecProcessRequest, GetContainerRequest, KillRequest,
    ResizePtyRequest, StartRequest, WaitRequest,
};
use edge_driver::{DriverError, ExecControl, ExecRequest, ExecSession};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::net::unix::pipe;

const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
/// How long a killed exec process may take to be reaped before its record
/// is deleted anyway.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Starts `req` in container `container_id`, with its FIFOs under `dir`.
pub(crate) async fn start(
    conn: Arc<Conn>,
    dir: PathBuf,
    container_id: &str,
    req: &ExecRequest,
) -> Result<ExecSession, DriverError> {
    let container = conn
        .containers()
        .await?
        .get(conn.req(
            GetContainerRequest {
                id: container_id.to_string(),
            },
            None,
        ))
        .await
        .map_err(ContainerdError::rpc("container get"))?
        .into_inner()
        .container
        .ok_or_else(|| DriverError::Other(format!("container {container_id} has no record")))?;
    let spec: serde_json::Value = container
        .spec
        .as_ref()
        .and_then(|s| serde_json::from_slice(&s.value).ok())
        .ok_or_else(|| DriverError::Other(format!("container {container_id} has no OCI spec")))?;
    let mut process = spec
        .get("process")
        .cloned()
        .filter(serde_json::Value::is_object)
        .ok_or_else(|| DriverError::Other(format!("container {container_id} has no process")))?;
    process["args"] = serde_json::json!(req.argv);
    process["terminal"] = serde_json::json!(req.tty);
    match req.size {
        Some((rows, cols)) if req.tty => {
            process["consoleSize"] = serde_json::json!({"height": rows, "width": cols});
        }
        _ => {
            if let Some(p) = process.as_object_mut() {
                p.remove("consoleSize");
            }
        }
    }
    let exec_id = format!("exec-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let dir = dir.join(&exec_id);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| DriverError::io(format!("creating {}", dir.display()), e))?;
    let mut guard = Cleanup {
        conn: conn.clone(),
        container_id: container_id.to_string(),
        exec_id: exec_id.clone(),
        dir: dir.clone(),
        exited: Arc::new(AtomicBool::new(false)),
        created: false,
    };
    let fifo = |name: &str| -> Result<PathBuf, DriverError> {
        let path = dir.join(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| DriverError::io(format!("making fifo {}", path.display()), e.into()))?;
        Ok(path)
    };
    // Without input the command gets no stdin FIFO at all (runc gives it
    // /dev/null): closing one on a terminal makes the shim shut the console
    // down, which hangs up a command still running (`exec -t` without `-i`).
    let stdin_path = if req.stdin {
        Some(fifo("stdin")?)
    } else {
        None
    };
    let stdout_path = fifo("stdout")?;
    let stderr_path = if req.tty { None } else { Some(fifo("stderr")?) };
    let io_err = |what: &str| {
        let what = what.to_string();
        move |e: io::Error| DriverError::io(what, e)
    };
    // Read-write ends never block on open; the ones held for reading keep
    // the output FIFOs from reading as ended before the shim opened them.
    let stdin = stdin_path
        .as_deref()
        .map(|path| {
            pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(path)
                .map_err(io_err("opening the stdin fifo"))
        })
        .transpose()?;
    let mut held = Vec::new();
    let mut open_reader = |path: &Path| -> Result<pipe::Receiver, DriverError> {
        held.push(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(io_err("opening an output fifo"))?,
        );
        pipe::OpenOptions::new()
            .open_receiver(path)
            .map_err(io_err("opening an output fifo"))
    };
    let stdout = open_reader(&stdout_path)?;
    let stderr = stderr_path.as_deref().map(&mut open_reader).transpose()?;
    let path_str = |p: &Path| p.display().to_string();
    let mut tasks = conn.tasks().await?;
    let spawn_err = |what: &'static str, s: containerd_client::tonic::Status| {
        let msg = s.message().to_string();
        let kind = if msg.contains("not found") || msg.contains("no such file") {
            io::ErrorKind::NotFound
        } else {
            io::ErrorKind::PermissionDenied
        };
        match s.code() {
            containerd_client::tonic::Code::NotFound if what == "exec" => DriverError::NotFound {
                task_id: container_id.to_string(),
            },
            _ => DriverError::Exec {
                command: req.argv.first().cloned().unwrap_or_default(),
                source: io::Error::new(kind, msg),
            },
        }
    };
    tasks
        .exec(conn.req(
            ExecProcessRequest {
                container_id: container_id.to_string(),
                stdin: stdin_path.as_deref().map(path_str).unwrap_or_default(),
                stdout: path_str(&stdout_path),
                stderr: stderr_path.as_deref().map(path_str).unwrap_or_default(),
                terminal: req.tty,
                spec: Some(prost_types::Any {
                    type_url: PROCESS_TYPE_URL.to_string(),
                    value:
                        serde_json::to_vec(&process).map_err(|e| {
                            DriverError::Other(format!("encoding process spec: {e}"))
                        })?,
                }),
                exec_id: exec_id.clone(),
            },
            None,
        ))
        .await
        .map_err(|s| spawn_err("exec", s))?;
    guard.created = true;
    tasks
        .start(conn.req(
            StartRequest {
                container_id: container_id.to_string(),
                exec_id: exec_id.clone(),
            },
            None,
        ))
        .await
        .map_err(|s| spawn_err("start", s))?;
    // The shim has its ends open now: output ends when it closes them.
    drop(held);
    let control = Control { guard };
    if let (true, Some((rows, cols))) = (req.tty, req.size) {
        control.resize(rows, cols).await?;
    }
    let stdin = Stdin {
        close: if stdin.is_some() {
            Close::Open
        } else {
            Close::Closed
        },
        fifo: stdin,
        conn: control.guard.conn.clone(),
        container_id: control.guard.container_id.clone(),
        exec_id: control.guard.exec_id.clone(),
    };
    Ok(ExecSession {
        stdin: Box::pin(stdin),
        stdout: Box::pin(stdout),
        stderr: stderr.map(|r| Box::pin(r) as edge_driver::exec::Reader),
        control: Box::new(control),
    })
}

/// The command's stdin FIFO. The shim holds its end open for reading and
/// writing, so closing ours is no end of input: shutting down asks
/// containerd to close the process's stdin (CloseIO).
struct Stdin {
    fifo: Option<pipe::Sender>,
    close: Close,
    conn: Arc<Conn>,
    container_id: String,
    exec_id: String,
}

impl AsyncWrite for Stdin {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.fifo.as_mut() {
            Some(f) => Pin::new(f).poll_write(cx, buf),
            None => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.fifo.as_mut() {
            Some(f) => Pin::new(f).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Close::Open = this.close {
            this.fifo = None;
            let (conn, container_id, exec_id) = (
                this.conn.clone(),
                this.container_id.clone(),
                this.exec_id.clone(),
            );
            this.close = Close::Closing(Box::pin(async move {
                if let Ok(mut tasks) = conn.tasks().await {
                    let _ = tasks
                        .close_io(conn.req(
                            CloseIoRequest {
                                container_id,
                                exec_id,
                                stdin: true,
                            },
                            None,
                        ))
                        .await;
                }
            }));
        }
        if let Close::Closing(f) = &mut this.close {
            std::task::ready!(f.as_mut().poll(cx));
            this.close = Close::Closed;
        }
        Poll::Ready(Ok(()))
    }
}

/// Where the command's input is: open, being closed by containerd, or
/// closed (or never given).
enum Close {
    Open,
    Closing(Pin<Box<dyn Future<Output = ()> + Send>>),
    Closed,
}

/// Kills (unless it exited), deletes and removes one exec process when
/// dropped: on a failed start and at the end of every session.
struct Cleanup {
    conn: Arc<Conn>,
    container_id: String,
    exec_id: String,
    dir: PathBuf,
    exited: Arc<AtomicBool>,
    /// Whether containerd has a record of the process to delete.
    created: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (conn, container_id, exec_id, dir) = (
            self.conn.clone(),
            self.container_id.clone(),
            self.exec_id.clone(),
            self.dir.clone(),
        );
        let (exited, created) = (self.exited.load(Ordering::SeqCst), self.created);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            let _ = std::fs::remove_dir_all(&dir);
            return;
        };
        rt.spawn(async move {
            if created && let Ok(mut tasks) = conn.tasks().await {
                if !exited {
                    let _ = tasks
                        .kill(conn.req(
                            KillRequest {
                                container_id: container_id.clone(),
                                exec_id: exec_id.clone(),
                                signal: nix::sys::signal::Signal::SIGKILL as u32,
                                all: false,
                            },
                            None,
                        ))
                        .await;
                    let wait = tasks.wait(conn.req(
                        WaitRequest {
                            container_id: container_id.clone(),
                            exec_id: exec_id.clone(),
                        },
                        None,
                    ));
                    let _ = tokio::time::timeout(KILL_GRACE, wait).await;
                }
                let _ = tasks
                    .delete_process(conn.req(
                        DeleteProcessRequest {
                            container_id,
                            exec_id,
                        },
                        None,
                    ))
                    .await;
            }
            let _ = tokio::fs::remove_dir_all(&dir).await;
        });
    }
}

struct Control {
    guard: Cleanup,
}

#[async_trait]
impl ExecControl for Control {
    async fn resize(&self, rows: u16, cols: u16) -> Result<(), DriverError> {
        self.guard
            .conn
            .tasks()
            .await?
            .resize_pty(self.guard.conn.req(
                ResizePtyRequest {
                    container_id: self.guard.container_id.clone(),
                    exec_id: self.guard.exec_id.clone(),
                    width: u32::from(cols),
                    height: u32::from(rows),
                },
                None,
            ))
            .await
            .map_err(ContainerdError::rpc("resize pty"))?;
        Ok(())
    }

    async fn wait(&self) -> Result<i32, DriverError> {
        let status = self
            .guard
            .conn
            .tasks()
            .await?
            .wait(self.guard.conn.req(
                WaitRequest {
                    container_id: self.guard.container_id.clone(),
                    exec_id: self.guard.exec_id.clone(),
                },
                None,
            ))
            .await
            .map_err(ContainerdError::rpc("exec wait"))?
            .into_inner()
            .exit_status;
        self.guard.exited.store(true, Ordering::SeqCst);
        Ok(i32::try_from(status).unwrap_or(-1))
    }
}
