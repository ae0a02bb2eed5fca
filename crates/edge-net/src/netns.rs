//! Named network namespaces under `/run/netns`, made and removed by
//! iproute2's `ip netns` (which also sets up the shared mount they are
//! bound on, the part that is easy to get wrong by hand).

use crate::error::NetError;
use std::path::{Path, PathBuf};

pub(crate) const DIR: &str = "/run/netns";

pub(crate) fn path(name: &str) -> PathBuf {
    Path::new(DIR).join(name)
}

async fn ip(args: &[&str]) -> Result<(), NetError> {
    let out = tokio::process::Command::new("ip")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| NetError::Command {
            command: format!("ip {}", args.join(" ")),
            message: e.to_string(),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(NetError::Command {
        command: format!("ip {}", args.join(" ")),
        message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

pub(crate) async fn add(name: &str) -> Result<PathBuf, NetError> {
    ip(&["netns", "add", name]).await?;
    Ok(path(name))
}

/// Removes the namespace; one that is already gone is no error.
pub(crate) async fn delete(name: &str) -> Result<(), NetError> {
    if !path(name).exists() {
        return Ok(());
    }
    ip(&["netns", "delete", name]).await
}
