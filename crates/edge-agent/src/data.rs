//! Configs and secrets into tasks: fetched from the server for one
//! allocation when it starts, written as files into each task's directory
//! (secrets on a tmpfs, so they never touch the node's disk), and kept in
//! memory only, for the env vars a task asks of its configs.

use crate::runner::RunCtx;
use crate::state::LocalAlloc;
use edge_api::AllocData;
use edge_spec::{DataRef, Task};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The tmpfs a task's secrets live on.
const SECRETS_TMPFS: &str = "size=4m,mode=0700";

pub(crate) fn secrets_dir(root: &Path, task: &str) -> PathBuf {
    root.join(task).join("secrets")
}

/// Whether `dir` is a mount point (its tmpfs or file system is there).
pub(crate) fn mounted(dir: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = dir.display().to_string();
    info.lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .any(|m| m == want)
}

/// Fetches what the allocation's tasks ask for and writes it into them.
/// After an agent restart with the server away, files already written
/// (secrets still on their tmpfs) are kept and the task goes on.
pub(crate) async fn up(ctx: &RunCtx, g: &Mutex<LocalAlloc>) -> Result<(), String> {
    let (alloc_id, tasks) = {
        let g = g.lock().unwrap_or_else(|e| e.into_inner());
        let tasks: Vec<Task> = g
            .job
            .group(&g.alloc.group)
            .map(|grp| grp.tasks.clone())
            .unwrap_or_default();
        (g.alloc.id.clone(), tasks)
    };
    if tasks
        .iter()
        .all(|t| t.configs.is_empty() && t.secrets.is_empty())
    {
        return Ok(());
    }
    let root = ctx.local.alloc_dir(&alloc_id);
    let wants_secrets = tasks.iter().any(|t| !t.secrets.is_empty());
    if wants_secrets && !nix::unistd::Uid::effective().is_root() {
        return Err(
            "secrets need the agent to run as root: they are kept on a tmpfs, never written to the node's disk"
                .to_string(),
        );
    }
    for t in tasks.iter().filter(|t| !t.secrets.is_empty()) {
        let dir = secrets_dir(&root, &t.name);
        if !mounted(&dir) {
            // Mounted through the opened directory: a link the task left
            // in its place is refused, never mounted over.
            let rel = Path::new(&t.name).join("secrets");
            let fd = crate::beneath::dir(&root, &rel)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let target = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
            nix::mount::mount(
                Some("tmpfs"),
                target.as_str(),
                Some("tmpfs"),
                nix::mount::MsFlags::MS_NOSUID
                    | nix::mount::MsFlags::MS_NODEV
                    | nix::mount::MsFlags::MS_NOEXEC,
                Some(SECRETS_TMPFS),
            )
            .map_err(|e| format!("cannot mount a tmpfs for secrets at {}: {e}", dir.display()))?;
        }
    }
    let data = match ctx.api.alloc_data(&ctx.node_id, &alloc_id).await {
        Ok(d) => d,
        Err(e) => {
            let written = tasks.iter().all(|t| {
                t.configs
                    .iter()
                    .map(|r| (r, false))
                    .chain(t.secrets.iter().map(|r| (r, true)))
                    .all(|(r, s)| root.join(&t.name).join(r.path(s)).exists())
            });
            if written {
                tracing::warn!(alloc = %alloc_id, error = %e, "cannot fetch configs and secrets: the files written before stay");
                return Ok(());
            }
            return Err(format!(
                "cannot fetch the configs and secrets the tasks ask for: {e}"
            ));
        }
    };
    for t in &tasks {
        for (refs, secret) in [(&t.configs, false), (&t.secrets, true)] {
            for r in refs {
                let value = value(&data, r, secret)?;
                let rel = Path::new(&t.name).join(r.path(secret));
                crate::beneath::write(&root, &rel, value.as_bytes(), r.mode_bits(secret))
                    .map_err(|e| format!("cannot write {}: {e}", root.join(&rel).display()))?;
            }
        }
    }
    ctx.alloc_data
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(alloc_id, data);
    Ok(())
}

/// Writes a dispatched job's payload into each task that asks for it
/// (`dispatch_payload { file }`), under the task's `local/`, before any
/// task starts. The payload rides in the job itself, so nothing is
/// fetched and a restart with the server away writes it again.
pub(crate) fn payload_up(ctx: &RunCtx, g: &Mutex<LocalAlloc>) -> Result<(), String> {
    use base64::Engine;
    let (alloc_id, payload, wants) = {
        let g = g.lock().unwrap_or_else(|e| e.into_inner());
        let wants: Vec<(String, String)> = g
            .job
            .group(&g.alloc.group)
            .map(|grp| {
                grp.tasks
                    .iter()
                    .filter_map(|t| {
                        Some((t.name.clone(), t.dispatch_payload.as_ref()?.file.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        (g.alloc.id.clone(), g.job.payload.clone(), wants)
    };
    if wants.is_empty() || payload.is_empty() {
        return Ok(());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|e| format!("the job's payload is not base64: {e}"))?;
    let root = ctx.local.alloc_dir(&alloc_id);
    for (task, file) in wants {
        // Checked again here: the job may predate the check, and the
        // agent writes as root.
        if let Some(why) = edge_spec::periodic::payload_file_problem(&file) {
            return Err(format!("task {task:?} dispatch_payload: {why}"));
        }
        let rel = Path::new(&task).join("local").join(&file);
        crate::beneath::write(&root, &rel, &bytes, 0o644)
            .map_err(|e| format!("cannot write {}: {e}", root.join(&rel).display()))?;
    }
    Ok(())
}

fn value<'a>(data: &'a AllocData, r: &DataRef, secret: bool) -> Result<&'a str, String> {
    let (kind, map) = if secret {
        ("secret", &data.secrets)
    } else {
        ("config", &data.configs)
    };
    let obj = map
        .get(&r.name)
        .ok_or_else(|| format!("{kind} {:?} does not exist", r.name))?;
    r.pick(&obj.data).map_err(|e| format!("{kind} {e}"))
}

/// The env vars a task asks for from its configs (a secret is never one:
/// validation refuses it, as drivers keep a task's environment on disk).
pub(crate) fn env(ctx: &RunCtx, alloc_id: &str, task: &Task) -> BTreeMap<String, String> {
    let held = ctx.alloc_data.lock().unwrap_or_else(|e| e.into_inner());
    let Some(data) = held.get(alloc_id) else {
        return BTreeMap::new();
    };
    task.configs
        .iter()
        .filter(|r| !r.env.is_empty())
        .filter_map(|r| Some((r.env.clone(), value(data, r, false).ok()?.to_string())))
        .collect()
}

/// Forgets the allocation's values (and what its templates rendered into
/// env vars) and unmounts its tasks' secrets.
pub(crate) fn down(ctx: &RunCtx, alloc_id: &str, tasks: &[Task]) {
    ctx.alloc_data
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(alloc_id);
    ctx.template_env
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(alloc_id);
    let root = ctx.local.alloc_dir(alloc_id);
    for t in tasks.iter().filter(|t| !t.secrets.is_empty()) {
        let dir = secrets_dir(&root, &t.name);
        if mounted(&dir)
            && let Err(e) = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH)
        {
            tracing::warn!(path = %dir.display(), error = %e, "cannot unmount a task's secrets");
        }
    }
}
