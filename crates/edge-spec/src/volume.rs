//! Local volumes as the server records them: one directory per copy of a
//! group, on the node that first ran the copy, kept until removed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A local volume: where it is, and whose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Volume {
    /// Random, made by the server.
    pub id: String,
    pub namespace: String,
    pub job_id: String,
    pub group: String,
    /// The `volume` block's label.
    pub name: String,
    /// The index of the copy of the group that owns it.
    pub index: u32,
    /// The node holding its directory; replacements of the copy go there.
    pub node_id: String,
    /// Unix milliseconds.
    pub create_time: i64,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

impl Volume {
    /// The store's key: one volume per namespace, job, group, name and copy.
    pub fn key(namespace: &str, job: &str, group: &str, name: &str, index: u32) -> String {
        format!("{namespace}/{job}/{group}/{name}/{index}")
    }

    pub fn own_key(&self) -> String {
        Volume::key(
            &self.namespace,
            &self.job_id,
            &self.group,
            &self.name,
            self.index,
        )
    }

    /// `JOB.GROUP.NAME[INDEX]`, as listings show it.
    pub fn display_name(&self) -> String {
        crate::job::local_volume_name(&self.job_id, &self.group, &self.name, self.index)
    }
}
