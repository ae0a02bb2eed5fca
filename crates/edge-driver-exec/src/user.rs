//! Who an exec task runs as: the user its config names or the agent's
//! default, resolved on this node, with root only where the agent allows
//! it; and handing the task's directories to that user.

use crate::ExecConfig;
use edge_driver::DriverError;
use nix::unistd::{Gid, Uid, User};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A resolved task user, as the executor switches to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TaskUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// The user `task` runs as, or `None` to run it as the agent itself (an
/// agent that is not root cannot switch users, so it runs tasks as itself
/// and refuses a config that names anyone else).
pub(crate) fn resolve(
    cfg: &ExecConfig,
    task: &str,
    requested: Option<&str>,
) -> Result<Option<TaskUser>, DriverError> {
    let me = Uid::effective();
    if !me.is_root() {
        let Some(name) = requested else {
            return Ok(None);
        };
        let user = lookup(task, name)?;
        if user.uid != me.as_raw() {
            return Err(DriverError::config(
                "config.user",
                format!(
                    "task {task} asks to run as {name:?}, but the agent runs as uid {me} and cannot switch users"
                ),
            ));
        }
        return Ok(None);
    }
    let name = requested.unwrap_or(&cfg.default_user);
    let user = lookup(task, name)?;
    if user.uid == 0 && !cfg.allow_root {
        return Err(DriverError::config(
            "config.user",
            format!(
                "task {task} asks to run as root ({name:?}), which this agent does not allow; start the agent with --exec-allow-root to permit it"
            ),
        ));
    }
    Ok(Some(user))
}

fn lookup(task: &str, name: &str) -> Result<TaskUser, DriverError> {
    let found = match name.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(name),
    };
    match found {
        Ok(Some(u)) => Ok(TaskUser {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            home: u.dir.display().to_string(),
        }),
        Ok(None) => Err(DriverError::config(
            "config.user",
            format!("task {task}: no user {name:?} on this node"),
        )),
        Err(e) => Err(DriverError::Other(format!(
            "task {task}: looking up user {name:?}: {e}"
        ))),
    }
}

/// Gives `dir` and everything under it to `user`, so the task can write
/// its own directory; symlinks are changed themselves, never followed.
pub(crate) fn chown_tree(dir: &Path, user: &TaskUser) -> Result<(), DriverError> {
    let uid = Some(Uid::from_raw(user.uid));
    let gid = Some(Gid::from_raw(user.gid));
    let chown = |p: &Path| {
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            p,
            uid,
            gid,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| DriverError::io(format!("giving {} to {}", p.display(), user.name), e.into()))
    };
    chown(dir)?;
    let entries = std::fs::read_dir(dir)
        .map_err(|e| DriverError::io(format!("listing {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| DriverError::io(format!("listing {}", dir.display()), e))?;
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir {
            chown_tree(&path, user)?;
        } else {
            chown(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(allow_root: bool) -> ExecConfig {
        let mut c = ExecConfig::new(vec![], "/nonexistent".into());
        c.allow_root = allow_root;
        c
    }

    #[test]
    fn root_needs_the_agent_option() {
        if std::env::var_os("EDGE_TEST_ROOT").is_none() {
            return;
        }
        let err = resolve(&cfg(false), "web", Some("root")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("task web"), "{text}");
        assert!(text.contains("--exec-allow-root"), "{text}");
        assert!(resolve(&cfg(false), "web", Some("0")).is_err());
        assert_eq!(
            resolve(&cfg(true), "web", Some("root"))
                .unwrap()
                .unwrap()
                .uid,
            0
        );
        let nobody = resolve(&cfg(false), "web", None).unwrap().unwrap();
        assert_eq!(nobody.name, "nobody");
        assert_ne!(nobody.uid, 0);
        let err = resolve(&cfg(false), "web", Some("no-such-user-here")).unwrap_err();
        assert!(err.to_string().contains("no user"), "{err}");
    }
}
