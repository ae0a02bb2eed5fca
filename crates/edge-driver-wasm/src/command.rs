//! Command mode: a WASI preview 1 command runs `_start` once, in the agent
//! process, and its exit code (or trap) ends the task.

use crate::environ::Environ;
use crate::runtime::{Host, Interrupt, MemoryLimiter, describe, new_store};
use crate::stdio::LogStream;
use edge_driver::{DriverError, ExitResult, TaskConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmtime::{Engine, InstancePre};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// The exit code reported when the module did not exit by itself.
const FAILED: i32 = 1;

/// The WASI context of a command (args, `/alloc`, `/local` and the task's
/// volumes preopened,
/// stdout/stderr into the task's log files) and its environment.
pub(crate) fn context(
    cfg: &TaskConfig,
    argv: &[String],
    stdout: LogStream,
    stderr: LogStream,
) -> Result<(WasiP1Ctx, Environ), DriverError> {
    let local = cfg.task_dir.join("local");
    for dir in [&cfg.alloc_dir, &local] {
        std::fs::create_dir_all(dir)
            .map_err(|e| DriverError::io(format!("creating {}", dir.display()), e))?;
    }
    let mut b = WasiCtxBuilder::new();
    b.args(argv).stdout(stdout).stderr(stderr);
    let mut environ = Environ::default();
    for (k, v) in &cfg.env {
        // The module sees its directories under their guest names.
        let v = match k.as_str() {
            "EDGE_ALLOC_DIR" | "NOMAD_ALLOC_DIR" => "/alloc",
            "EDGE_TASK_DIR" | "NOMAD_TASK_DIR" => "/local",
            _ => v.as_str(),
        };
        environ.push(k, v);
    }
    let (configs, secrets) = (cfg.task_dir.join("configs"), cfg.task_dir.join("secrets"));
    let mut own = vec![(&cfg.alloc_dir, "/alloc", false), (&local, "/local", false)];
    // A task's configs and secrets, where containers see them too.
    for (dir, guest) in [(&configs, "/configs"), (&secrets, "/run/secrets")] {
        if dir.is_dir() {
            own.push((dir, guest, true));
        }
    }
    let mounts = cfg
        .mounts
        .iter()
        .map(|m| (&m.source, m.destination.as_str(), m.read_only));
    for (host, guest, read_only) in own.into_iter().chain(mounts) {
        let perms = if read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        b.preopened_dir(host, guest, perms).map_err(|e| {
            DriverError::Other(format!(
                "preopening {} as {guest} failed: {e:#}",
                host.display()
            ))
        })?;
    }
    Ok((b.build_p1(), environ))
}

pub(crate) struct Command {
    pub engine: Engine,
    pub pre: InstancePre<Host>,
    pub wasi: WasiP1Ctx,
    pub environ: Environ,
    pub limits: MemoryLimiter,
    pub stop: Arc<AtomicBool>,
    pub timeout: Option<Duration>,
    pub stderr: LogStream,
    pub busy_ns: Arc<AtomicU64>,
}

impl Command {
    pub(crate) async fn run(self) -> ExitResult {
        let started = Instant::now();
        let mut store = new_store(
            &self.engine,
            Host {
                wasi: self.wasi,
                environ: self.environ,
                capture: None,
                limits: self.limits,
                interrupt: Interrupt {
                    stop: Some(self.stop),
                    // A timeout past what the clock can hold is no deadline.
                    deadline: self
                        .timeout
                        .and_then(|t| started.checked_add(t).map(|at| (at, t))),
                },
            },
        );
        let result = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            let start = instance
                .get_typed_func::<(), ()>(&mut store, "_start")
                .map_err(|_| {
                    wasmtime::format_err!("module has no `_start` export: not a WASI command")
                })?;
            start.call_async(&mut store, ()).await
        }
        .await;
        drop(store);
        self.busy_ns
            .store(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        match result {
            Ok(()) => ExitResult::default(),
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(I32Exit(code)) => ExitResult {
                    exit_code: *code,
                    ..ExitResult::default()
                },
                None => {
                    let reason = describe(&e);
                    // The full error carries the wasm backtrace: worth having
                    // in the task's stderr, too long for an event.
                    let _ = self
                        .stderr
                        .write_bytes(format!("edge wasm: task failed: {e:?}\n").as_bytes());
                    ExitResult {
                        exit_code: FAILED,
                        error: Some(reason),
                        ..ExitResult::default()
                    }
                }
            },
        }
    }
}
