//! Deployments: the rollout of one job version, as the scheduler drives it
//! and as users follow, promote, pause or fail it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    #[default]
    Running,
    /// An operator paused it: no new copies replace old ones until resumed.
    Paused,
    /// Every canary is healthy; the rest waits for `promote`.
    AwaitingPromotion,
    Successful,
    Failed,
    /// A newer version of the job, or its stop, replaced it.
    Cancelled,
}

impl DeploymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Running => "running",
            DeploymentStatus::Paused => "paused",
            DeploymentStatus::AwaitingPromotion => "awaiting_promotion",
            DeploymentStatus::Successful => "successful",
            DeploymentStatus::Failed => "failed",
            DeploymentStatus::Cancelled => "cancelled",
        }
    }

    /// Still rolling out (or waiting for an operator).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            DeploymentStatus::Running
                | DeploymentStatus::Paused
                | DeploymentStatus::AwaitingPromotion
        )
    }
}

/// One group's part of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct DeploymentGroup {
    /// The group's count at this version.
    pub desired_total: u32,
    /// New copies started beside the old ones before promotion.
    #[serde(default)]
    pub desired_canaries: u32,
    /// Percent of the published service's traffic the unpromoted canaries
    /// get; `None` leaves them an ordinary instance's share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_weight: Option<u32>,
    #[serde(default)]
    pub auto_revert: bool,
    #[serde(default)]
    pub auto_promote: bool,
    /// The canaries were promoted (or there are none to promote).
    #[serde(default)]
    pub promoted: bool,
    /// Copies this deployment placed, canaries included.
    #[serde(default)]
    pub placed: u32,
    #[serde(default)]
    pub healthy: u32,
    #[serde(default)]
    pub unhealthy: u32,
    /// Ids of the canaries placed.
    #[serde(default)]
    pub placed_canaries: Vec<String>,
    /// Milliseconds allowed between two copies turning healthy; 0: no limit.
    #[serde(default)]
    pub progress_deadline_ms: u64,
    /// Unix milliseconds by which the next copy must turn healthy (0: none).
    #[serde(default)]
    pub require_progress_by: i64,
}

impl DeploymentGroup {
    /// Unpromoted canaries that take a weighted share of traffic.
    pub fn weighted_canaries(&self) -> Option<u32> {
        (!self.promoted && self.desired_canaries > 0)
            .then_some(self.canary_weight)
            .flatten()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Deployment {
    pub id: String,
    #[serde(default = "crate::namespace::default_namespace")]
    pub namespace: String,
    pub job_id: String,
    pub job_version: u64,
    #[serde(default)]
    pub status: DeploymentStatus,
    #[serde(default)]
    pub status_description: String,
    /// Group name to its rollout.
    #[serde(default)]
    pub groups: BTreeMap<String, DeploymentGroup>,
    #[serde(default)]
    pub create_time: i64,
    #[serde(default)]
    pub modify_time: i64,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

impl Deployment {
    /// The key of this deployment's job (`job_key`).
    pub fn job_key(&self) -> String {
        crate::namespace::job_key(&self.namespace, &self.job_id)
    }

    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(8)]
    }

    /// Some group still has canaries waiting for promotion.
    pub fn awaits_promotion(&self) -> bool {
        self.groups
            .values()
            .any(|g| g.desired_canaries > 0 && !g.promoted)
    }
}

pub const DESC_RUNNING: &str = "deployment is running";
pub const DESC_AWAITING_PROMOTION: &str = "deployment is running but requires manual promotion";
pub const DESC_PAUSED: &str = "deployment is paused";
pub const DESC_SUCCESSFUL: &str = "deployment completed successfully";
pub const DESC_NEWER_VERSION: &str = "cancelled because a newer version of the job was registered";
pub const DESC_JOB_STOPPED: &str = "cancelled because the job was stopped";
pub const DESC_FAILED_BY_USER: &str = "deployment marked as failed by an operator";
pub const DESC_PROGRESS_DEADLINE: &str = "failed: no copy turned healthy by the progress deadline";
