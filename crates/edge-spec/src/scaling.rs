//! A group's `scaling` block: the bounds and targets edge's server scales
//! the group's count by (no separate autoscaler), their defaults, and the
//! note a scaled job version carries.

use crate::duration::PolicyWait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Requests held at most while a group at zero starts, unless set.
pub const DEFAULT_QUEUE: u32 = 100;
/// The most requests a `queue` may hold per node.
pub const MAX_QUEUE: u32 = 10_000;
/// The highest `target_concurrency` or `target_rps`.
pub const MAX_TARGET: u32 = 1_000_000;

/// `scaling { ... }` on a group, in Nomad's shape (`enabled`, `min`,
/// `max`) with the targets as plain attributes instead of an autoscaler
/// plugin's `policy` block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scaling {
    /// `false` keeps the block (and `edge job scale`'s bounds) without
    /// the server changing the count.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Fewest copies; 0 lets the group scale to zero when idle. Defaults
    /// to the group's `count`, as in Nomad.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = crate::limits::MAX_COUNT))]
    pub min: Option<u32>,
    /// Most copies.
    #[schemars(range(min = 1, max = crate::limits::MAX_COUNT))]
    pub max: u32,
    /// In-flight requests per copy (through the load balancer) the count
    /// aims at: Knative's default metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_TARGET))]
    pub target_concurrency: Option<u32>,
    /// Requests per second per copy the count aims at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_TARGET))]
    pub target_rps: Option<u32>,
    /// Percent of the CPU its tasks reserved that each copy uses, which
    /// the count aims at (agents read it from task stats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu: Option<u32>,
    /// With `min = 0`: no request for this long, and the group goes to
    /// zero (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<PolicyWait>,
    /// How often the server looks at the metrics (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_interval: Option<PolicyWait>,
    /// No change for this long after one (default 0s: the stabilisation
    /// window already keeps scale-down from flapping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<PolicyWait>,
    /// A scale-down goes only as low as the highest count the metrics
    /// asked for over this window (default 60s, Knative's stable window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stabilization_window: Option<PolicyWait>,
    /// Most copies added by one decision (default: as many as needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = crate::limits::MAX_COUNT))]
    pub scale_up_step: Option<u32>,
    /// Most copies removed by one decision (default: as many as needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = crate::limits::MAX_COUNT))]
    pub scale_down_step: Option<u32>,
    /// Requests each node's load balancer holds while the group starts
    /// from zero; more get 503 with `Retry-After` (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_QUEUE))]
    pub queue: Option<u32>,
    /// How long a held request waits for a copy to serve before it gets
    /// 503 with `Retry-After` (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_timeout: Option<PolicyWait>,
}

fn yes() -> bool {
    true
}

/// A [`Scaling`] with every default filled in, for the group's `count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalingRules {
    pub enabled: bool,
    pub min: u32,
    pub max: u32,
    pub target_concurrency: Option<u32>,
    pub target_rps: Option<u32>,
    pub target_cpu: Option<u32>,
    pub idle_timeout: Duration,
    pub evaluation_interval: Duration,
    pub cooldown: Duration,
    pub stabilization_window: Duration,
    pub scale_up_step: Option<u32>,
    pub scale_down_step: Option<u32>,
    pub queue: u32,
    pub queue_timeout: Duration,
}

impl Scaling {
    pub fn resolve(&self, count: u32) -> ScalingRules {
        let d =
            |w: Option<PolicyWait>, default: u64| w.map_or(Duration::from_secs(default), |w| w.0);
        ScalingRules {
            enabled: self.enabled,
            min: self.min.unwrap_or(count),
            max: self.max,
            target_concurrency: self.target_concurrency,
            target_rps: self.target_rps,
            target_cpu: self.target_cpu,
            idle_timeout: d(self.idle_timeout, 300),
            evaluation_interval: d(self.evaluation_interval, 10),
            cooldown: d(self.cooldown, 0),
            stabilization_window: d(self.stabilization_window, 60),
            scale_up_step: self.scale_up_step,
            scale_down_step: self.scale_down_step,
            queue: self.queue.unwrap_or(DEFAULT_QUEUE),
            queue_timeout: d(self.queue_timeout, 30),
        }
    }
}

/// Why a job version's count differs from the one before: set by the
/// server on the versions `edge job scale` and the autoscaler register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleNote {
    pub group: String,
    pub from: u32,
    pub to: u32,
    /// `edge job scale`, or the autoscaler's metric against its target.
    pub reason: String,
    /// Unix milliseconds.
    pub time: i64,
}
