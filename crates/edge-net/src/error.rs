//! Errors of allocation networking, each naming the plugin, command or
//! path it concerns.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("bridge networking needs root: the agent runs as uid {uid}")]
    NotRoot { uid: u32 },
    #[error(
        "CNI plugin {plugin:?} not found in {dirs} (Debian: apt install containernetworking-plugins)"
    )]
    MissingPlugin { plugin: String, dirs: String },
    #[error("{program:?} not found on PATH (Debian: apt install {package})")]
    MissingProgram {
        program: &'static str,
        package: &'static str,
    },
    #[error("invalid subnet {subnet:?}: {reason}")]
    Subnet { subnet: String, reason: String },
    #[error("CNI plugin {plugin} {command} for {container}: {message}")]
    Plugin {
        plugin: String,
        command: &'static str,
        container: String,
        message: String,
    },
    #[error("CNI plugin {plugin} answered what is not a CNI result: {source}")]
    Result {
        plugin: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the CNI result for {container} holds no IPv4 address")]
    NoAddress { container: String },
    #[error("{command} failed: {message}")]
    Command { command: String, message: String },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid bridge name {bridge:?}: at most 15 letters, digits, '-', '_' or '.'")]
    BadBridge { bridge: String },
    #[error(
        "bridge {bridge} is in use by another edge agent on this host (lock {lock}): give this agent a bridge and subnet of its own (--bridge-name, --bridge-subnet)"
    )]
    BridgeInUse { bridge: String, lock: PathBuf },
    #[error("no /24 left in the named networks' pool {pool} (agent flag --network-pool)")]
    PoolFull { pool: String },
    #[error("{path}: {message}")]
    State { path: PathBuf, message: String },
    #[error("{id:?} is not an allocation id edge makes a network namespace for")]
    BadId { id: String },
}

impl NetError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        NetError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
