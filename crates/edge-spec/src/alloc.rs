//! Allocations: placed copies of a group, and the state of their tasks.

use crate::Resources;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum DesiredStatus {
    #[default]
    Run,
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientStatus {
    #[default]
    Pending,
    Running,
    Complete,
    Failed,
    Lost,
}

impl ClientStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ClientStatus::Complete | ClientStatus::Failed | ClientStatus::Lost
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ClientStatus::Pending => "pending",
            ClientStatus::Running => "running",
            ClientStatus::Complete => "complete",
            ClientStatus::Failed => "failed",
            ClientStatus::Lost => "lost",
        }
    }
}

impl DesiredStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredStatus::Run => "run",
            DesiredStatus::Stop => "stop",
        }
    }
}

/// A port given to an allocation: `label` from the group's network block,
/// `value` the host port, `to` the port the task listens on (same as value
/// under host networking unless `to` was set).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct AssignedPort {
    pub label: String,
    pub value: u16,
    pub to: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct AllocResources {
    pub cpu: u32,
    pub memory: u32,
    #[serde(default)]
    pub ports: Vec<AssignedPort>,
}

impl AllocResources {
    pub fn from_group(r: Resources) -> AllocResources {
        AllocResources {
            cpu: r.cpu,
            memory: r.memory,
            ports: Vec::new(),
        }
    }
}

/// Health of one service instance, as DNS and the load balancer see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Checks have not passed yet: not served.
    #[default]
    Pending,
    Passing,
    Critical,
    /// The allocation is being stopped: withdrawn, connections drain.
    Draining,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Pending => "pending",
            HealthStatus::Passing => "passing",
            HealthStatus::Critical => "critical",
            HealthStatus::Draining => "draining",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    #[default]
    Pending,
    Running,
    Dead,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Dead => "dead",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TaskEvent {
    /// Unix milliseconds.
    pub time: i64,
    /// `Received`, `Started`, `Terminated`, `Restarting`, `Killing`, `Killed`,
    /// `Driver Failure`, `Not Restarting`, `Recovered`...
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub message: String,
}

/// Events kept per task; older ones are dropped so a crash-looping task
/// cannot grow its allocation without bound.
pub const MAX_TASK_EVENTS: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct TaskState {
    pub state: TaskStatus,
    #[serde(default)]
    pub failed: bool,
    #[serde(default)]
    pub restarts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub started_at: i64,
    #[serde(default)]
    pub finished_at: i64,
    #[serde(default)]
    pub events: Vec<TaskEvent>,
}

impl TaskState {
    pub fn push_event(&mut self, ev: TaskEvent) {
        self.events.push(ev);
        if self.events.len() > MAX_TASK_EVENTS {
            let extra = self.events.len() - MAX_TASK_EVENTS;
            self.events.drain(..extra);
        }
    }
}

/// An agent's verdict on a new copy: healthy once every task ran (and every
/// check passed, per `health_check`) for `min_healthy_time`, unhealthy if
/// `healthy_deadline` came first or a task failed. Decided once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AllocHealth {
    pub healthy: bool,
    /// Unix milliseconds of the verdict.
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Allocation {
    pub id: String,
    /// `job.group[index]`, stable across replacements.
    pub name: String,
    pub index: u32,
    #[serde(default = "crate::namespace::default_namespace")]
    pub namespace: String,
    pub job_id: String,
    pub job_version: u64,
    pub group: String,
    /// `Group::spec_hash` of the group this allocation was made from.
    pub group_hash: u64,
    pub node_id: String,
    #[serde(default)]
    pub node_name: String,
    pub eval_id: String,
    #[serde(default)]
    pub desired_status: DesiredStatus,
    #[serde(default)]
    pub desired_description: String,
    #[serde(default)]
    pub client_status: ClientStatus,
    #[serde(default)]
    pub client_description: String,
    #[serde(default)]
    pub task_states: BTreeMap<String, TaskState>,
    /// Service name to the health of this allocation's instance, from the
    /// agent's checks.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, HealthStatus>,
    /// Whether the copy became healthy in time by its group's `update`
    /// rules, as its agent judged; a rolling update waits for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<AllocHealth>,
    /// The deployment that placed this copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    /// Placed as a canary beside the old copies, before promotion.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub canary: bool,
    /// Replaces a service copy on a draining node, beside it until judged
    /// healthy by the group's `migrate` rules (not its `update` rules).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub migration: bool,
    pub resources: AllocResources,
    /// The allocation's own address in its network namespace (`network {
    /// mode = "bridge" }`), reported by its agent while it holds one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<std::net::Ipv4Addr>,
    /// Its address on each named network of its job it joined, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, std::net::Ipv4Addr>,
    /// The allocation this one replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_alloc: Option<String>,
    /// Unix milliseconds of earlier reschedules in this line of replacements.
    #[serde(default)]
    pub reschedule_times: Vec<i64>,
    /// Set when the allocation failed and a replacement was placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_alloc: Option<String>,
    #[serde(default)]
    pub create_time: i64,
    #[serde(default)]
    pub modify_time: i64,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
    /// The index of the server's last change to it (Nomad's
    /// `AllocModifyIndex`), not its agent's reports: what an agent's
    /// watch is sent again, so a report does not come back to its sender.
    #[serde(default)]
    pub alloc_modify_index: u64,
}

impl Allocation {
    /// Whether `next` is this allocation with only what its agent reports
    /// changed (task states, status, checks, health, addresses) besides
    /// the stamps. An operator's health verdict counts as a report too: the
    /// agent's own judging of the copy then ends with a verdict the server
    /// ignores. Every field is named, so a new one must be sorted here.
    pub fn differs_only_in_reports(&self, next: &Allocation) -> bool {
        let Allocation {
            id,
            name,
            index,
            namespace,
            job_id,
            job_version,
            group,
            group_hash,
            node_id,
            node_name,
            eval_id,
            desired_status,
            desired_description,
            client_status: _,
            client_description: _,
            task_states: _,
            checks: _,
            health: _,
            deployment_id,
            canary,
            migration,
            resources,
            address: _,
            networks: _,
            previous_alloc,
            reschedule_times,
            next_alloc,
            create_time,
            modify_time: _,
            create_index: _,
            modify_index: _,
            alloc_modify_index: _,
        } = next;
        *id == self.id
            && *name == self.name
            && *index == self.index
            && *namespace == self.namespace
            && *job_id == self.job_id
            && *job_version == self.job_version
            && *group == self.group
            && *group_hash == self.group_hash
            && *node_id == self.node_id
            && *node_name == self.node_name
            && *eval_id == self.eval_id
            && *desired_status == self.desired_status
            && *desired_description == self.desired_description
            && *deployment_id == self.deployment_id
            && *canary == self.canary
            && *migration == self.migration
            && *resources == self.resources
            && *previous_alloc == self.previous_alloc
            && *reschedule_times == self.reschedule_times
            && *next_alloc == self.next_alloc
            && *create_time == self.create_time
    }

    /// This allocation as the server holds it, with what its agent reports
    /// taken from the agent's own copy: the server's is the agent's last
    /// report, which may be older than what the agent knows now.
    pub fn with_reports_of(self, local: &Allocation) -> Allocation {
        Allocation {
            client_status: local.client_status,
            client_description: local.client_description.clone(),
            task_states: local.task_states.clone(),
            checks: local.checks.clone(),
            health: local.health.or(self.health),
            address: local.address,
            networks: local.networks.clone(),
            ..self
        }
    }

    /// The key of this allocation's job (`job_key`).
    pub fn job_key(&self) -> String {
        crate::namespace::job_key(&self.namespace, &self.job_id)
    }

    /// Still holds (or will hold) resources on its node.
    pub fn is_live(&self) -> bool {
        self.desired_status == DesiredStatus::Run && !self.client_status.is_terminal()
    }

    /// Nothing will run for it any more.
    pub fn is_terminal(&self) -> bool {
        self.client_status.is_terminal()
            || (self.desired_status == DesiredStatus::Stop
                && self.client_status != ClientStatus::Running)
    }

    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(8)]
    }
}
