//! The log driver containerd's shim runs for each task (`binary://` log
//! URI): it gets the container's stdout and stderr as fds 3 and 4, writes
//! them to edge's size-capped rotating files, and closes fd 5 once ready.
//! It is a child of the shim, so logs keep flowing while the agent is down.

use edge_driver::logs::RotatingLog;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};

/// What the logger of one task needs; written by the driver next to its
/// other per-task state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LoggerSpec {
    pub log_dir: PathBuf,
    pub task: String,
    pub max_bytes: u64,
    pub max_files: u32,
}

/// Runs the logger; returns the process exit code.
pub fn logger_main(args: &[String]) -> i32 {
    let Some(spec_path) = args.first() else {
        eprintln!("containerd-logger: missing spec path");
        return 2;
    };
    let spec: LoggerSpec = match std::fs::read(spec_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("containerd-logger: {spec_path}: {e}");
            return 2;
        }
    };
    // SAFETY: the shim starts this process with fds 3, 4 and 5 open for it
    // (stdout pipe, stderr pipe, readiness pipe); nothing else owns them.
    let (stdout, stderr, ready) = unsafe {
        (
            File::from_raw_fd(3),
            File::from_raw_fd(4),
            File::from_raw_fd(5),
        )
    };
    let open = |stream: &str| {
        RotatingLog::open(
            &spec.log_dir,
            &spec.task,
            stream,
            spec.max_bytes,
            spec.max_files,
        )
    };
    let (out_log, err_log) = match (open("stdout"), open("stderr")) {
        (Ok(o), Ok(e)) => (o, e),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!(
                "containerd-logger: opening logs in {}: {e}",
                spec.log_dir.display()
            );
            return 1;
        }
    };
    drop(ready);
    let err_thread = std::thread::Builder::new()
        .name("stderr".to_string())
        .stack_size(64 * 1024)
        .spawn(move || copy(stderr, err_log));
    copy(stdout, out_log);
    if let Ok(t) = err_thread {
        let _ = t.join();
    }
    0
}

/// Copies until the container closes its end. A failing write (disk full)
/// drops data rather than blocking the container on a full pipe.
fn copy(mut from: File, mut to: RotatingLog) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                let _ = to.write_all(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Where a task's logger spec lives.
pub(crate) fn spec_path(state_dir: &Path, container_id: &str) -> PathBuf {
    state_dir.join(format!("{container_id}.logger.json"))
}
