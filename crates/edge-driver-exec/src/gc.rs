//! Leftovers of the exec driver: run state, executors, tasks and cgroups of
//! allocations the agent no longer owns (a lost agent data dir, an
//! interrupted run), found from the driver's own state dir and from the
//! executor processes whose spec lies under it, never from the agent's
//! state. Only what is provably this driver's is touched: the cgroup parent
//! is shared by every agent on the host, so a cgroup with processes goes
//! only with an allocation found by its state dir or its executors; an empty
//! one no allocation of this agent owns goes by itself.

use crate::executor::{PID_FILE, PidFile};
use crate::{DRIVER_NAME, ExecDriver, check_name, proc, read_json};
use edge_driver::{DriverError, Leftover};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Marks a leftover that is an empty cgroup rather than an allocation.
const CGROUP_PREFIX: &str = "cgroup:";
/// How long a SIGKILLed task group may take to leave before its state goes.
const REAP_GRACE: Duration = Duration::from_secs(5);

/// Tasks still alive in the runs under `alloc_dir`, as (pid, start time).
fn live_tasks(alloc_dir: &Path) -> Vec<PidFile> {
    let mut out = Vec::new();
    for task in subdirs(alloc_dir) {
        for run in subdirs(&task) {
            if let Ok(Some(p)) = read_json::<PidFile>(&run.join(PID_FILE))
                && proc::alive(p.pid, p.start_time)
            {
                out.push(p);
            }
        }
    }
    out
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

fn owned_by(name: &str, owned: &BTreeSet<String>) -> bool {
    owned.iter().any(|a| {
        name.strip_prefix(a.as_str())
            .is_some_and(|r| r.starts_with('-'))
    })
}

/// An executor process of this driver, found in `/proc`: its pid and the
/// allocation its spec file (under the driver's state dir) names.
struct Executor {
    pid: u32,
    alloc: String,
}

/// Executors whose spec lies under `state_dir`, whether or not the file is
/// still there: after a lost data dir only the process remembers it.
fn executors(executor: &[String], state_dir: &Path) -> Vec<Executor> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .collect();
        // `<program> <prefix args...> <spec path>`: the program may be shown
        // by another path, so only the prefix arguments and the spec count.
        let prefix = executor.get(1..).unwrap_or_default();
        if args.len() != prefix.len() + 2
            || !args[1..=prefix.len()]
                .iter()
                .zip(prefix)
                .all(|(a, p)| *a == p.as_bytes())
        {
            continue;
        }
        let Ok(spec) = std::str::from_utf8(args[prefix.len() + 1]) else {
            continue;
        };
        let Ok(rel) = Path::new(spec).strip_prefix(state_dir) else {
            continue;
        };
        if let Some(alloc) = rel.components().next().and_then(|c| c.as_os_str().to_str()) {
            out.push(Executor {
                pid,
                alloc: alloc.to_string(),
            });
        }
    }
    out
}

/// Direct children of `pid` (the executor's task is one).
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|c| proc::stat(*c).is_some_and(|s| s.ppid == pid))
        .collect()
}

impl ExecDriver {
    pub(crate) fn find_leftovers(&self, owned: &BTreeSet<String>) -> Vec<Leftover> {
        let mut found: BTreeSet<String> = subdirs(&self.cfg.state_dir)
            .iter()
            .filter_map(|d| d.file_name()?.to_str().map(str::to_string))
            .filter(|a| !owned.contains(a))
            .collect();
        let running = executors(&self.cfg.executor, &self.cfg.state_dir);
        found.extend(
            running
                .iter()
                .filter(|e| !owned.contains(&e.alloc))
                .map(|e| e.alloc.clone()),
        );
        let mut out = Vec::new();
        // Empty task cgroups of allocations nobody runs here: the parent is
        // shared by every agent on the host, so only empty ones, which the
        // kernel alone decides (see `remove_if_empty`).
        if let Some(h) = &self.cgroups {
            for name in h.children(&self.cfg.cgroup_parent) {
                if owned_by(&name, owned) || owned_by(&name, &found) {
                    continue;
                }
                if h.task(&self.cfg.cgroup_parent, &name).pids().is_empty() {
                    out.push(Leftover {
                        driver: DRIVER_NAME.to_string(),
                        id: format!("{CGROUP_PREFIX}{name}"),
                        alloc_id: None,
                        description: format!("empty cgroup {}/{name}", self.cfg.cgroup_parent),
                    });
                }
            }
        }
        for alloc in found {
            if check_name("alloc_id", &alloc).is_err() {
                continue;
            }
            let mut pids: Vec<u32> = live_tasks(&self.cfg.state_dir.join(&alloc))
                .iter()
                .map(|p| p.pid)
                .collect();
            pids.extend(running.iter().filter(|e| e.alloc == alloc).map(|e| e.pid));
            pids.sort_unstable();
            pids.dedup();
            let description = if pids.is_empty() {
                format!("exec state of allocation {alloc}, nothing running")
            } else {
                let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
                format!(
                    "exec executors and tasks of allocation {alloc} still running (pid {})",
                    pids.join(", ")
                )
            };
            out.push(Leftover {
                driver: DRIVER_NAME.to_string(),
                id: alloc.clone(),
                alloc_id: Some(alloc),
                description,
            });
        }
        out
    }

    /// Blocking: kills, waits and removes. Run on a blocking thread.
    pub(crate) fn reap_leftover(&self, leftover: &Leftover) -> Result<(), DriverError> {
        if let Some(name) = leftover.id.strip_prefix(CGROUP_PREFIX) {
            check_name("cgroup", name)?;
            let Some(h) = &self.cgroups else {
                return Ok(());
            };
            return match h.task(&self.cfg.cgroup_parent, name).remove_if_empty() {
                Ok(true) => Ok(()),
                Ok(false) => Err(DriverError::Other(format!(
                    "cgroup {name} is in use again; left as it is"
                ))),
                Err(e) => Err(DriverError::io(format!("removing cgroup {name}"), e)),
            };
        }
        let alloc = leftover.id.as_str();
        check_name("alloc_id", alloc)?;
        let dir = self.cfg.state_dir.join(alloc);
        let deadline = Instant::now() + REAP_GRACE;
        loop {
            let tasks = live_tasks(&dir);
            let execs: Vec<u32> = executors(&self.cfg.executor, &self.cfg.state_dir)
                .into_iter()
                .filter(|e| e.alloc == alloc)
                .map(|e| e.pid)
                .collect();
            if tasks.is_empty() && execs.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(DriverError::Other(format!(
                    "processes of allocation {alloc} still running {}s after SIGKILL",
                    REAP_GRACE.as_secs()
                )));
            }
            // Each task leads its own process group; the executor is its parent.
            for p in tasks
                .iter()
                .map(|t| t.pid)
                .chain(execs.iter().flat_map(|e| children(*e)))
            {
                let _ = killpg(Pid::from_raw(p as i32), Signal::SIGKILL);
            }
            for e in &execs {
                let _ = nix::sys::signal::kill(Pid::from_raw(*e as i32), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(h) = &self.cgroups {
            let mine = BTreeSet::from([alloc.to_string()]);
            for name in h.children(&self.cfg.cgroup_parent) {
                if owned_by(&name, &mine) {
                    h.task(&self.cfg.cgroup_parent, &name)
                        .remove()
                        .map_err(|e| DriverError::io(format!("removing cgroup {name}"), e))?;
                }
            }
        }
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(DriverError::io(format!("removing {}", dir.display()), e))
            }
            _ => Ok(()),
        }
    }
}
