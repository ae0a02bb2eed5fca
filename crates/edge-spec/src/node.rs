//! Nodes: hosts running `edge agent`, as the server and the scheduler see them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    #[default]
    Initializing,
    Ready,
    Down,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Initializing => "initializing",
            NodeStatus::Ready => "ready",
            NodeStatus::Down => "down",
        }
    }
}

/// Hardware a node offers to allocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct NodeResources {
    /// Total CPU in MHz (cores x clock).
    pub cpu: u32,
    /// Memory in MB.
    pub memory: u32,
    pub cores: u32,
}

/// What an agent found out about one driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct DriverInfo {
    pub detected: bool,
    pub healthy: bool,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Node {
    pub id: String,
    pub name: String,
    #[serde(default = "default_datacenter")]
    pub datacenter: String,
    /// The address other nodes and clients reach this node's services on.
    pub address: String,
    #[serde(default)]
    pub status: NodeStatus,
    #[serde(default)]
    pub status_description: String,
    /// False when an operator marked the node ineligible for new placements.
    #[serde(default = "yes")]
    pub eligible: bool,
    #[serde(default)]
    pub drain: bool,
    /// True once an operator revoked the node (`edge node revoke`): the
    /// server refuses it from then on. Set by the server only.
    #[serde(default)]
    pub revoked: bool,
    /// Fingerprinted facts: `kernel.name`, `cpu.arch`, `os.name`, `unique.hostname`...
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Operator labels, from the agent's `--meta key=value`.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    pub resources: NodeResources,
    /// Held back for the host and the agent itself.
    #[serde(default)]
    pub reserved: NodeResources,
    #[serde(default)]
    pub drivers: BTreeMap<String, DriverInfo>,
    /// Unix milliseconds of the last heartbeat the server accepted.
    #[serde(default)]
    pub last_heartbeat: i64,
    #[serde(default)]
    pub agent_version: String,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

pub fn default_datacenter() -> String {
    "dc1".to_string()
}

fn yes() -> bool {
    true
}

impl Node {
    /// Ready, eligible and not draining: may receive new allocations.
    pub fn schedulable(&self) -> bool {
        self.status == NodeStatus::Ready && self.eligible && !self.drain
    }

    pub fn driver_healthy(&self, driver: &str) -> bool {
        self.drivers
            .get(driver)
            .is_some_and(|d| d.detected && d.healthy)
    }
}
