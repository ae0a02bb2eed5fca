//! The scheduler: turns an evaluation of a job, against a snapshot of the
//! cluster, into a plan of allocations to place and stop. Pure: it does no IO,
//! reads no clock and draws no randomness it is not handed in the snapshot.

pub mod autoscale;
mod cluster;
mod deploy;
mod error;
mod feasible;
mod ports;
mod prefer;
mod rank;
mod reconcile;
mod system;

pub use deploy::new_deployment;
pub use error::SchedError;

use edge_spec::{
    AllocMetric, Allocation, ClientStatus, Deployment, Evaluation, GroupChanges, Job, JobType,
    Node, NodeStatus, Volume,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// How nodes are ranked for a placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Fill the fullest node that fits first (fewer, busier nodes).
    #[default]
    Binpack,
    /// Prefer the emptiest node (even load).
    Spread,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerConfig {
    pub algorithm: Algorithm,
    /// Inclusive range dynamic ports are drawn from.
    pub port_min: u16,
    pub port_max: u16,
}

impl SchedulerConfig {
    /// Rejects a configuration the scheduler could only half use.
    pub fn validate(&self) -> Result<(), SchedError> {
        if self.port_min > self.port_max {
            return Err(SchedError::BadPortRange {
                min: self.port_min,
                max: self.port_max,
            });
        }
        Ok(())
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            algorithm: Algorithm::Binpack,
            port_min: 20000,
            port_max: 32000,
        }
    }
}

/// Resources held on one node by its live allocations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeUsage {
    /// MHz, summed in `u64`: allocations stored before resource limits
    /// existed may hold up to `u32::MAX` each.
    pub cpu: u64,
    /// MB, like `cpu`.
    pub memory: u64,
    pub ports: BTreeSet<u16>,
    pub allocs: u32,
}

impl NodeUsage {
    pub fn add(&mut self, a: &Allocation) {
        self.cpu = self.cpu.saturating_add(u64::from(a.resources.cpu));
        self.memory = self.memory.saturating_add(u64::from(a.resources.memory));
        self.ports.extend(a.resources.ports.iter().map(|p| p.value));
        self.allocs = self.allocs.saturating_add(1);
    }

    pub fn remove(&mut self, a: &Allocation) {
        self.cpu = self.cpu.saturating_sub(u64::from(a.resources.cpu));
        self.memory = self.memory.saturating_sub(u64::from(a.resources.memory));
        for p in &a.resources.ports {
            self.ports.remove(&p.value);
        }
        self.allocs = self.allocs.saturating_sub(1);
    }
}

/// The cluster as one evaluation sees it.
pub struct Snapshot<'a> {
    /// Every known node, whatever its status.
    pub nodes: Vec<&'a Node>,
    /// Node id to the resources its live allocations hold (all jobs).
    pub usage: &'a HashMap<String, NodeUsage>,
    /// Every allocation of the evaluated job, terminal ones included.
    pub job_allocs: Vec<&'a Allocation>,
    /// The job's newest deployment, whatever its version and status.
    pub deployment: Option<&'a Deployment>,
    /// The job's local volumes: a copy that has one goes back to its node.
    pub volumes: Vec<&'a Volume>,
    pub config: &'a SchedulerConfig,
    /// Unix milliseconds, for reschedule delays.
    pub now: i64,
    /// Seeds node sampling, tie breaking and allocation ids.
    pub seed: u64,
}

/// An allocation the plan stops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopAlloc {
    pub alloc_id: String,
    pub description: String,
    /// Set when the client status changes with the stop (`lost` for allocations
    /// on down nodes).
    pub client_status: Option<ClientStatus>,
}

/// An allocation kept in place whose job version moves forward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InPlaceUpdate {
    pub alloc_id: String,
    pub job_version: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Plan {
    pub eval_id: String,
    pub job_id: String,
    pub place: Vec<Allocation>,
    pub stop: Vec<StopAlloc>,
    pub in_place: Vec<InPlaceUpdate>,
    /// Group name to why some copies could not be placed.
    pub failed: BTreeMap<String, AllocMetric>,
    /// Group name to copies left unplaced.
    pub queued: BTreeMap<String, u32>,
    /// Group name to why it is not placed yet: a group it `depends_on`
    /// is not ready. Its copies count as queued, not as failed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub waiting: BTreeMap<String, String>,
    /// Unix milliseconds at which a follow-up evaluation must run (delayed
    /// reschedules of failed allocations).
    pub followup_at: Option<i64>,
    pub changes: BTreeMap<String, GroupChanges>,
    /// The job's current deployment as this run moved it on; `None` when
    /// nothing about it changed.
    pub deployment: Option<Deployment>,
}

impl Plan {
    pub fn is_noop(&self) -> bool {
        self.place.is_empty() && self.stop.is_empty() && self.in_place.is_empty()
    }
}

/// Runs one evaluation. `job` is `None` when the job was purged.
pub fn schedule(job: Option<&Job>, eval: &Evaluation, snap: &Snapshot<'_>) -> Plan {
    let mut plan = Plan {
        eval_id: eval.id.clone(),
        job_id: job.map_or_else(|| eval.job_id.clone(), |j| j.id.clone()),
        ..Plan::default()
    };
    match job {
        None => stop_all(None, snap, "job purged", &mut plan),
        Some(j) if j.stop => stop_all(Some(j), snap, "job stopped", &mut plan),
        Some(j) => {
            let mut cl = cluster::Cluster::new(snap, j, eval);
            match j.job_type {
                JobType::System => system::run(&mut cl, &mut plan),
                JobType::Service | JobType::Batch => reconcile::run(&mut cl, &mut plan),
            }
        }
    }
    plan
}

/// Stops every live allocation of a stopped or purged job.
fn stop_all(job: Option<&Job>, snap: &Snapshot<'_>, description: &str, plan: &mut Plan) {
    for g in job.map_or(&[][..], |j| j.groups.as_slice()) {
        plan.changes.insert(g.name.clone(), GroupChanges::default());
        plan.queued.insert(g.name.clone(), 0);
    }
    let status: HashMap<&str, NodeStatus> = snap
        .nodes
        .iter()
        .map(|n| (n.id.as_str(), n.status))
        .collect();
    for a in snap.job_allocs.iter().filter(|a| a.is_live()) {
        let down = status
            .get(a.node_id.as_str())
            .is_none_or(|s| *s == NodeStatus::Down);
        plan.stop.push(StopAlloc {
            alloc_id: a.id.clone(),
            description: description.to_string(),
            client_status: down.then_some(ClientStatus::Lost),
        });
        let ch = plan.changes.entry(a.group.clone()).or_default();
        if down {
            ch.lost += 1;
        } else {
            ch.stop += 1;
        }
    }
}
