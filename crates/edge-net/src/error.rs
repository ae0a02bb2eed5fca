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
    #[error(
        "network {network}: the server's subnet {subnet} overlaps this node's bridge subnet {bridge} (change the server's --network-pool or the agent's --bridge-subnet)"
    )]
    Overlaps {
        network: String,
        subnet: String,
        bridge: String,
    },
    #[error("this node is on {max} named networks already")]
    TooManyNetworks { max: u32 },
    #[error(
        "network {key} has no subnet on this node: the server hands one out when it places a member here, unless its network pool or the network's node slices are full (the evaluation that placed it says which)"
    )]
    UnknownNetwork { key: String },
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
