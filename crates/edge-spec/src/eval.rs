//! Evaluations: units of scheduler work, the reasons a placement failed, and
//! what a plan changes per group.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum EvalStatus {
    #[default]
    Pending,
    Complete,
    /// Some groups could not be placed; the eval is retried when a node
    /// joins or frees capacity.
    Blocked,
    Failed,
    Canceled,
}

impl EvalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EvalStatus::Pending => "pending",
            EvalStatus::Complete => "complete",
            EvalStatus::Blocked => "blocked",
            EvalStatus::Failed => "failed",
            EvalStatus::Canceled => "canceled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TriggeredBy {
    JobRegister,
    JobDeregister,
    NodeUpdate,
    NodeDrain,
    AllocFailure,
    RescheduleLater,
    QueuedAllocs,
    JobRevert,
    JobScale,
    /// A new copy was judged healthy or unhealthy: a rolling update goes on
    /// or stops.
    AllocHealth,
    /// A deployment was promoted, resumed or reached its progress deadline.
    Deployment,
    /// A periodic job launched a child on schedule or by force.
    PeriodicJob,
    /// A copy of a group another group `depends_on` started or passed its
    /// checks: the waiting group may be placed now.
    Dependency,
}

impl TriggeredBy {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggeredBy::JobRegister => "job-register",
            TriggeredBy::JobDeregister => "job-deregister",
            TriggeredBy::NodeUpdate => "node-update",
            TriggeredBy::NodeDrain => "node-drain",
            TriggeredBy::AllocFailure => "alloc-failure",
            TriggeredBy::RescheduleLater => "reschedule-later",
            TriggeredBy::QueuedAllocs => "queued-allocs",
            TriggeredBy::JobRevert => "job-revert",
            TriggeredBy::JobScale => "job-scale",
            TriggeredBy::AllocHealth => "alloc-health",
            TriggeredBy::Deployment => "deployment-watcher",
            TriggeredBy::PeriodicJob => "periodic-job",
            TriggeredBy::Dependency => "dependency",
        }
    }
}

/// Why a group could not be placed, in Nomad's terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct AllocMetric {
    pub nodes_evaluated: u32,
    pub nodes_filtered: u32,
    /// Ready nodes per datacenter the job may use.
    #[serde(default)]
    pub nodes_available: BTreeMap<String, u32>,
    /// Filter reason (`constraint ${attr.kernel.name} = linux`,
    /// `missing driver "exec"`) to the number of nodes it removed.
    #[serde(default)]
    pub constraint_filtered: BTreeMap<String, u32>,
    pub nodes_exhausted: u32,
    /// Resource (`cpu`, `memory`, `network: port 8080 in use`) to nodes out of it.
    #[serde(default)]
    pub dimension_exhausted: BTreeMap<String, u32>,
    /// Further copies of the group that failed for the same reasons.
    #[serde(default)]
    pub coalesced_failures: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Evaluation {
    pub id: String,
    #[serde(default = "crate::namespace::default_namespace")]
    pub namespace: String,
    pub job_id: String,
    pub priority: u8,
    pub triggered_by: TriggeredBy,
    #[serde(default)]
    pub status: EvalStatus,
    #[serde(default)]
    pub status_description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Group name to why its remaining copies could not be placed.
    #[serde(default)]
    pub failed_tg_allocs: BTreeMap<String, AllocMetric>,
    /// Group name to copies still waiting for room.
    #[serde(default)]
    pub queued_allocations: BTreeMap<String, u32>,
    /// Unix milliseconds before which this eval must not run (delayed reschedule).
    #[serde(default)]
    pub wait_until: i64,
    #[serde(default)]
    pub create_time: i64,
    #[serde(default)]
    pub modify_time: i64,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

impl Evaluation {
    /// The key of this evaluation's job (`job_key`).
    pub fn job_key(&self) -> String {
        crate::namespace::job_key(&self.namespace, &self.job_id)
    }
}

/// Per group counts, what `edge job plan` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct GroupChanges {
    /// New copies: missing ones, replacements of lost and rescheduled ones.
    pub place: u32,
    /// Copies stopped for good (count lowered, group removed, job stopped).
    pub stop: u32,
    /// Copies stopped on a draining node; service and batch copies are
    /// replaced elsewhere.
    pub migrate: u32,
    pub in_place: u32,
    /// Copies stopped and replaced because their group spec changed.
    pub destructive: u32,
    pub ignore: u32,
    pub reschedule_now: u32,
    pub reschedule_later: u32,
    /// Copies on down or vanished nodes, stopped as lost.
    pub lost: u32,
    /// New copies started as canaries beside the old ones.
    #[serde(default)]
    pub canary: u32,
    /// Failed allocations left unreplaced: their reschedule attempts are used up.
    #[serde(default)]
    pub reschedule_exhausted: u32,
}
