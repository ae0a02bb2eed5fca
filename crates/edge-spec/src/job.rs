//! Job, group and task: what a user submits, after parsing and defaulting.

use crate::duration::PolicyWait;
use crate::limits::{
    DRIVERS, JOB_ID_PATTERN, MAX_CONSTRAINTS, MAX_COUNT, MAX_GROUPS, MAX_JOB_ID_LEN, MAX_NAME_LEN,
    MAX_TASK_CPU, MAX_TASK_MEMORY, MAX_TASKS, MAX_VOLUMES, NAME_PATTERN, SERVICE_NAME_PATTERN,
};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

/// How a job's groups are kept alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum JobType {
    /// Long-running, kept at `count`.
    #[default]
    Service,
    /// Runs to completion.
    Batch,
    /// One copy of each group on every eligible node.
    System,
}

impl JobType {
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::Service => "service",
            JobType::Batch => "batch",
            JobType::System => "system",
        }
    }
}

/// Server-side lifecycle of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    #[default]
    Pending,
    Running,
    Dead,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Job {
    #[schemars(length(min = 1, max = MAX_JOB_ID_LEN), pattern(JOB_ID_PATTERN))]
    pub id: String,
    /// Unique per namespace: the same id may name another job elsewhere.
    #[serde(default = "crate::namespace::default_namespace")]
    #[schemars(
        length(min = 1, max = crate::namespace::MAX_NAMESPACE_LEN),
        pattern(crate::namespace::NAMESPACE_PATTERN)
    )]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub job_type: JobType,
    #[serde(default = "default_datacenters")]
    #[schemars(inner(length(min = 1)))]
    pub datacenters: Vec<String>,
    #[serde(default = "default_priority")]
    #[schemars(range(min = 1, max = 100))]
    pub priority: u8,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    #[schemars(length(max = MAX_CONSTRAINTS))]
    pub constraints: Vec<Constraint>,
    /// Soft placement preferences for every group of the job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_CONSTRAINTS))]
    pub affinities: Vec<Affinity>,
    /// How every group's copies are spread over a node attribute.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_CONSTRAINTS))]
    pub spreads: Vec<Spread>,
    /// How changed groups replace their allocations; a group's own block
    /// overrides it field by field.
    #[serde(
        default,
        deserialize_with = "update_block",
        skip_serializing_if = "Option::is_none"
    )]
    pub update: Option<UpdatePolicy>,
    /// Validation asks for at least one, with a clearer message than serde's.
    #[serde(default)]
    #[schemars(length(min = 1, max = MAX_GROUPS))]
    pub groups: Vec<Group>,
    /// The job's private networks (`network "backend" {}`), which its
    /// bridge-mode groups join by name (`network { networks = [...] }`).
    /// Left out of the JSON when empty, so older jobs keep their hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::limits::MAX_NETWORKS))]
    pub networks: Vec<NamedNetwork>,
    /// `periodic { crons ... }`: never placed itself; the server launches
    /// a child job (`JOB/periodic-<unix seconds>`) on schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub periodic: Option<crate::periodic::Periodic>,
    /// `parameterized { ... }`: never placed itself; each dispatch makes a
    /// child job (`JOB/dispatch-<unix seconds>-<8 hex>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameterized: Option<crate::periodic::Parameterized>,

    /// Set by the server on a periodic or dispatched child: its parent's id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("readOnly" = true))]
    pub parent_id: String,
    /// Set by the server on a dispatched child: the dispatch's payload,
    /// base64 (at most 16 KiB decoded).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("readOnly" = true))]
    pub payload: String,
    /// Filled in on read of a periodic job: its next launch, Unix
    /// milliseconds (none while disabled or stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("readOnly" = true))]
    pub next_launch: Option<i64>,
    /// Filled in on read of a periodic or parameterized job: its children's
    /// ids, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("readOnly" = true))]
    pub children: Vec<String>,

    /// Set by the server: the version this spec became.
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub version: u64,
    /// Set by the server: a stopped job keeps its spec but runs nothing.
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub stop: bool,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub status: JobStatus,
    /// Set by the server: this version's deployment succeeded, so an
    /// `auto_revert` of a later version comes back to it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schemars(extend("readOnly" = true))]
    pub stable: bool,
    /// Unix milliseconds of the registration that made this version.
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub submit_time: i64,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub create_index: u64,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub modify_index: u64,
    /// Set by the server on a version made by `edge job scale` or the
    /// autoscaler: which group changed, from and to what count, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("readOnly" = true))]
    pub scaled: Option<crate::scaling::ScaleNote>,
}

pub fn default_datacenters() -> Vec<String> {
    vec!["*".to_string()]
}

pub fn default_priority() -> u8 {
    50
}

impl Job {
    /// What the server stores and indexes this job under (`job_key`).
    pub fn key(&self) -> String {
        crate::namespace::job_key(&self.namespace, &self.id)
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// The spec fields a user controls, without what the server stamps on it;
    /// two registrations with equal specs do not make a new version.
    pub fn spec_eq(&self, other: &Job) -> bool {
        let mut a = self.clone();
        let mut b = other.clone();
        for j in [&mut a, &mut b] {
            j.version = 0;
            j.stop = false;
            j.stable = false;
            j.status = JobStatus::Pending;
            j.submit_time = 0;
            j.create_index = 0;
            j.modify_index = 0;
            j.next_launch = None;
            j.children.clear();
            j.scaled = None;
        }
        a == b
    }

    /// A periodic or parameterized job: never placed itself, only its
    /// children are.
    pub fn launches(&self) -> bool {
        self.parent_id.is_empty() && (self.periodic.is_some() || self.parameterized.is_some())
    }
}

/// A placement rule on node attributes (`${attr.kernel.name}`), metadata
/// (`${meta.rack}`) or node fields (`${node.datacenter}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Constraint {
    #[serde(default)]
    pub attribute: String,
    #[serde(default = "default_operator")]
    pub operator: ConstraintOp,
    #[serde(default)]
    pub value: String,
}

fn default_operator() -> ConstraintOp {
    ConstraintOp::Eq
}

/// Nomad's `affinity`: a node matching the rule (as a [`Constraint`]
/// would) is preferred by `weight`, or avoided when it is negative.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Affinity {
    #[serde(default)]
    pub attribute: String,
    #[serde(default = "default_operator")]
    pub operator: ConstraintOp,
    #[serde(default)]
    pub value: String,
    /// -100 to 100, not 0.
    #[serde(default = "default_weight")]
    #[schemars(range(min = -100, max = 100))]
    pub weight: i64,
}

/// Nomad's default weight of an affinity or a spread.
fn default_weight() -> i64 {
    50
}

impl Affinity {
    /// The operators an affinity takes: a constraint's, less those that
    /// only filter (`is_set`, `distinct_*`).
    pub fn takes(op: ConstraintOp) -> bool {
        !matches!(
            op,
            ConstraintOp::IsSet
                | ConstraintOp::IsNotSet
                | ConstraintOp::DistinctHosts
                | ConstraintOp::DistinctProperty
        )
    }
}

/// Nomad's `spread`: copies of a group spread over the values of a node
/// attribute, evenly or by the targets' percentages.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spread {
    #[serde(default)]
    pub attribute: String,
    /// 1 to 100: how much this spread counts beside the others.
    #[serde(default = "default_weight")]
    #[schemars(range(min = 1, max = 100))]
    pub weight: i64,
    /// Shares of the copies by value; values left out share what remains
    /// of 100%. Without targets the copies spread evenly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_CONSTRAINTS))]
    pub targets: Vec<SpreadTarget>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpreadTarget {
    pub value: String,
    /// 0 to 100.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub percent: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConstraintOp {
    #[serde(rename = "=", alias = "==", alias = "is")]
    Eq,
    #[serde(rename = "!=", alias = "not")]
    Ne,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "regexp")]
    Regexp,
    /// Every item of the value is in the attribute's comma separated set.
    #[serde(rename = "set_contains", alias = "set_contains_all")]
    SetContains,
    /// Some item of the value is in the attribute's set.
    #[serde(rename = "set_contains_any")]
    SetContainsAny,
    #[serde(rename = "is_set")]
    IsSet,
    #[serde(rename = "is_not_set")]
    IsNotSet,
    #[serde(rename = "distinct_hosts")]
    DistinctHosts,
    /// At most `value` (1 when empty) live copies per value of
    /// `attribute`: of the job at job level, of the group below it.
    #[serde(rename = "distinct_property")]
    DistinctProperty,
    /// Version clauses, leniently (`5.10` is `5.10.0`): see [`crate::version`].
    #[serde(rename = "version")]
    Version,
    /// SemVer 2.0 clauses: see [`crate::version`].
    #[serde(rename = "semver")]
    Semver,
}

/// By hand: the derive would leave out the aliases serde reads ("==",
/// "is", "not"), and the API accepts them.
impl JsonSchema for ConstraintOp {
    fn schema_name() -> Cow<'static, str> {
        "ConstraintOp".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "enum": CONSTRAINT_OPS})
    }
}

/// Every spelling of an operator that [`ConstraintOp::parse`] reads.
const CONSTRAINT_OPS: &[&str] = &[
    "=",
    "==",
    "is",
    "!=",
    "not",
    "<",
    "<=",
    ">",
    ">=",
    "regexp",
    "set_contains",
    "set_contains_all",
    "set_contains_any",
    "is_set",
    "is_not_set",
    "distinct_hosts",
    "distinct_property",
    "version",
    "semver",
];

impl Constraint {
    /// How many copies a `distinct_property` constraint lets share one
    /// value: `value`, 1 when empty; `None` when it is not a count.
    pub fn distinct_limit(&self) -> Option<u32> {
        let v = self.value.trim();
        if v.is_empty() {
            return Some(1);
        }
        v.parse::<u32>().ok().filter(|n| *n > 0)
    }
}

impl ConstraintOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ConstraintOp::Eq => "=",
            ConstraintOp::Ne => "!=",
            ConstraintOp::Lt => "<",
            ConstraintOp::Le => "<=",
            ConstraintOp::Gt => ">",
            ConstraintOp::Ge => ">=",
            ConstraintOp::Regexp => "regexp",
            ConstraintOp::SetContains => "set_contains",
            ConstraintOp::SetContainsAny => "set_contains_any",
            ConstraintOp::IsSet => "is_set",
            ConstraintOp::IsNotSet => "is_not_set",
            ConstraintOp::DistinctHosts => "distinct_hosts",
            ConstraintOp::DistinctProperty => "distinct_property",
            ConstraintOp::Version => "version",
            ConstraintOp::Semver => "semver",
        }
    }

    pub fn parse(s: &str) -> Option<ConstraintOp> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Group {
    #[schemars(length(min = 1, max = MAX_NAME_LEN), pattern(NAME_PATTERN))]
    pub name: String,
    #[serde(default = "one")]
    #[schemars(range(max = MAX_COUNT))]
    pub count: u32,
    #[serde(default)]
    #[schemars(length(max = MAX_CONSTRAINTS))]
    pub constraints: Vec<Constraint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_CONSTRAINTS))]
    pub affinities: Vec<Affinity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_CONSTRAINTS))]
    pub spreads: Vec<Spread>,
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub services: Vec<Service>,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default)]
    pub reschedule: ReschedulePolicy,
    /// Left out of [`Group::spec_hash`]: changing how a group updates does
    /// not replace its allocations.
    #[serde(
        default,
        deserialize_with = "update_block",
        skip_serializing_if = "Option::is_none"
    )]
    pub update: Option<UpdatePolicy>,
    /// How copies leave a draining node; left out of the spec hash too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrate: Option<MigratePolicy>,
    /// Validation asks for at least one, with a clearer message than serde's.
    #[serde(default)]
    #[schemars(length(min = 1, max = MAX_TASKS))]
    pub tasks: Vec<Task>,
    /// Nomad's group `meta`, under a task's; tasks see the result as
    /// `EDGE_META_<key>`. Left out of the JSON when empty, so
    /// older groups keep their hash.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// `volume "NAME" { ... }`: what the group's tasks may mount.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_VOLUMES))]
    pub volumes: Vec<VolumeRequest>,
    /// `depends_on { group = "db" condition = "healthy" }`: the groups
    /// whose copies must run (or pass their checks) before this group's
    /// first copies are placed. Left out of [`Group::spec_hash`]: the
    /// order in which copies start replaces none of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_GROUPS))]
    pub depends_on: Vec<GroupDependency>,
    /// `system = true` in a service job: the group is placed as a system
    /// job's are, one copy on every usable node where it is feasible
    /// (Compose's and Swarm's `mode: global`), beside the job's other
    /// groups and on its networks; `count` does not apply.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub system: bool,
    /// `batch = true` in a service job: the group's copies run to
    /// completion as a batch job's do (one that exits 0 is done, not
    /// replaced), beside the job's long-running groups; others may wait
    /// for it with `depends_on { condition = "completed" }`, as Compose's
    /// `service_completed_successfully` waits for a migration.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub batch: bool,
    /// The server scales `count` between `min` and `max` by the group's
    /// load, down to zero when idle if `min = 0`. Left out of
    /// [`Group::spec_hash`]: new rules replace no running copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<crate::scaling::Scaling>,
}

/// One group another waits for before its first copies are placed, as
/// Compose's `depends_on` orders a project's services at `up`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupDependency {
    #[schemars(length(min = 1, max = MAX_NAME_LEN), pattern(NAME_PATTERN))]
    pub group: String,
    #[serde(default)]
    pub condition: DependCondition,
}

/// When a group a dependent waits for counts as ready: every one of its
/// `count` copies meets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DependCondition {
    /// Its tasks run.
    #[default]
    Started,
    /// Its tasks run and every check of its services passes.
    Healthy,
    /// Its copies ran to completion, every task exiting 0: a batch job's
    /// group or a `batch = true` one.
    Completed,
}

impl DependCondition {
    /// What a group waits for the other to be, in words.
    pub fn state(self) -> &'static str {
        match self {
            DependCondition::Started => "running",
            DependCondition::Healthy => "healthy",
            DependCondition::Completed => "completed",
        }
    }
}

/// Where a volume's data lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VolumeType {
    /// A directory the agent was given (`--host-volume NAME=PATH`): the
    /// group is placed only on nodes that have it.
    Host,
    /// A directory the node makes for each copy of the group on first use
    /// and keeps: the copy's replacements go back to that node.
    Local,
}

/// A group's `volume "NAME" { type source read_only }` block.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeRequest {
    #[schemars(length(min = 1, max = MAX_NAME_LEN), pattern(NAME_PATTERN))]
    pub name: String,
    #[serde(rename = "type")]
    pub kind: VolumeType,
    /// The host volume's name on the node; unset for a local volume.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(default)]
    pub read_only: bool,
    /// A local volume's size (`1GiB`): it is then a file system of that
    /// size of its own (an ext4 image, loop-mounted), full when full.
    /// Unset, it is a plain directory on the node's disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
}

/// A task's `volume_mount { volume destination read_only }` block.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    /// A `volume` of the task's group.
    pub volume: String,
    /// An absolute path inside the task.
    pub destination: String,
    #[serde(default)]
    pub read_only: bool,
}

/// The node attribute a host volume is fingerprinted as, `rw` or `ro`.
pub fn host_volume_attribute(name: &str) -> String {
    format!("volume.host.{name}")
}

/// A local volume's name in listings: one per copy of the group, told
/// apart by the copy's index as allocation names are.
pub fn local_volume_name(job: &str, group: &str, volume: &str, index: u32) -> String {
    format!("{job}.{group}.{volume}[{index}]")
}

/// `update { ... }`, Nomad's fields: every one optional, so a group's block
/// overrides the job's field by field; [`Update::resolve`] fills defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePolicy {
    /// New copies started at once, each healthy before its old copy stops;
    /// 0 replaces every copy at once (stop, then start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// How long a new copy must stay healthy before it counts as healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_healthy_time: Option<PolicyWait>,
    /// A new copy not healthy by then is unhealthy, and the update stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_deadline: Option<PolicyWait>,
    /// The deployment fails if no new copy turns healthy for this long;
    /// 0 disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<PolicyWait>,
    /// A failed deployment registers the job's latest stable version again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_revert: Option<bool>,
    /// Promote once every canary is healthy, without an operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_promote: Option<bool>,
    /// New copies started beside the old ones, which stay untouched until
    /// the deployment is promoted; `canary = count` is blue/green.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<u32>,
    /// Percent of the published service's traffic sent to the canaries
    /// until promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub canary_weight: Option<u32>,
    /// A system job's wait between two batches of nodes, once the last
    /// batch is healthy (Nomad's meaning; service jobs refuse it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stagger: Option<PolicyWait>,
    /// How an `auto_revert` rolls the stable version back out, when it
    /// should go at another pace than this update (Swarm's
    /// `rollback_config`): in place of the stable version's own rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackPolicy>,
}

/// The pace of a rollback: `update { rollback { ... } }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackPolicy {
    /// Stable copies started at once, each healthy before the copy it
    /// replaces stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
    /// How long a stable copy must stay healthy before it counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_healthy_time: Option<PolicyWait>,
}

impl RollbackPolicy {
    /// The update rules a rollback to a version with `stable` rules goes
    /// by: these fields over the stable version's.
    pub fn over(&self, stable: Option<&UpdatePolicy>) -> UpdatePolicy {
        let mut u = stable.cloned().unwrap_or_default();
        if self.max_parallel.is_some() {
            u.max_parallel = self.max_parallel;
        }
        if self.min_healthy_time.is_some() {
            u.min_healthy_time = self.min_healthy_time;
        }
        u
    }
}

/// An `update` block: an object or nothing. Serde's derive would also
/// take a list of the fields' values in order (`[null, 2]`), which nobody
/// means by it.
fn update_block<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<UpdatePolicy>, D::Error> {
    struct Block;
    impl<'de> serde::de::Visitor<'de> for Block {
        type Value = Option<UpdatePolicy>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an update block (an object)")
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            let d = serde::de::value::MapAccessDeserializer::new(map);
            UpdatePolicy::deserialize(d).map(Some)
        }
    }
    d.deserialize_any(Block)
}

/// `migrate { max_parallel = N }`: copies of a service group moved off a
/// draining node at once, each replacement started elsewhere and judged
/// (by `health_check`, `min_healthy_time` and `healthy_deadline`, Nomad's
/// defaults where unset) before its old copy stops; 0 stops them all at
/// once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MigratePolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = MAX_COUNT))]
    pub max_parallel: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_healthy_time: Option<PolicyWait>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_deadline: Option<PolicyWait>,
}

impl MigratePolicy {
    /// Copies of `group` migrating at once (Nomad's default 1).
    pub fn max_parallel(group: &Group) -> u32 {
        group
            .migrate
            .as_ref()
            .and_then(|m| m.max_parallel)
            .unwrap_or(1)
    }
}

/// What makes a new copy healthy during an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheck {
    /// Every task runs and every service check passes.
    #[default]
    Checks,
    /// Every task runs.
    TaskStates,
    /// An operator marks copies healthy or unhealthy
    /// (`edge deployment health`); the agent gives no verdict.
    Manual,
}

impl Update {
    /// The rules a copy placed by a drain migration is judged by: the
    /// group's `migrate` health settings, Nomad's defaults (`checks`, 10 s,
    /// 5 min) where unset, not its `update` block's.
    pub fn for_migration(job: &Job, group: &Group) -> Update {
        let m = group.migrate.clone().unwrap_or_default();
        Update {
            health_check: m.health_check.unwrap_or(HealthCheck::Checks),
            min_healthy_time: m.min_healthy_time.map_or(Duration::from_secs(10), |w| w.0),
            healthy_deadline: m.healthy_deadline.map_or(Duration::from_secs(300), |w| w.0),
            ..Update::resolve(job, group)
        }
    }
}

/// A group's update rules with the defaults filled in (Nomad's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Update {
    pub max_parallel: u32,
    pub health_check: HealthCheck,
    pub min_healthy_time: Duration,
    pub healthy_deadline: Duration,
    /// Zero: no deadline.
    pub progress_deadline: Duration,
    pub auto_revert: bool,
    pub auto_promote: bool,
    pub canary: u32,
    pub canary_weight: Option<u32>,
    /// Between two batches of a system job's rollout.
    pub stagger: Duration,
}

impl Update {
    /// The group's block over the job's over the defaults.
    pub fn resolve(job: &Job, group: &Group) -> Update {
        fn pick<T>(job: &Job, group: &Group, f: impl Fn(&UpdatePolicy) -> Option<T>) -> Option<T> {
            let from = |u: &Option<UpdatePolicy>| u.as_ref().and_then(&f);
            from(&group.update).or_else(|| from(&job.update))
        }
        Update {
            max_parallel: pick(job, group, |u| u.max_parallel).unwrap_or(1),
            health_check: pick(job, group, |u| u.health_check).unwrap_or_default(),
            min_healthy_time: pick(job, group, |u| u.min_healthy_time)
                .map_or(Duration::from_secs(10), |w| w.0),
            healthy_deadline: pick(job, group, |u| u.healthy_deadline)
                .map_or(Duration::from_secs(300), |w| w.0),
            progress_deadline: pick(job, group, |u| u.progress_deadline)
                .map_or(Duration::from_secs(600), |w| w.0),
            auto_revert: pick(job, group, |u| u.auto_revert).unwrap_or(false),
            auto_promote: pick(job, group, |u| u.auto_promote).unwrap_or(false),
            canary: pick(job, group, |u| u.canary).unwrap_or(0),
            canary_weight: pick(job, group, |u| u.canary_weight),
            stagger: pick(job, group, |u| u.stagger).map_or(Duration::ZERO, |w| w.0),
        }
    }

    /// A service group whose changes roll out under a deployment.
    pub fn deploys(&self, job: &Job) -> bool {
        job.job_type == JobType::Service && (self.max_parallel > 0 || self.canary > 0)
    }
}

fn one() -> u32 {
    1
}

impl Group {
    /// How the group's copies run: as its job's type says, or as a batch
    /// job's with `batch = true`.
    pub fn runs_as(&self, job_type: JobType) -> JobType {
        if self.batch { JobType::Batch } else { job_type }
    }

    /// Total resources one copy of the group asks for.
    pub fn resources(&self) -> GroupResources {
        self.tasks
            .iter()
            .fold(GroupResources::default(), |acc, t| GroupResources {
                cpu: acc.cpu.saturating_add(u64::from(t.resources.cpu)),
                memory: acc.memory.saturating_add(u64::from(t.resources.memory)),
            })
    }

    /// A fingerprint of everything but `count`: allocations made from a group
    /// with another fingerprint must be replaced when the job changes. Stored
    /// with every allocation, so the algorithm is fixed (SHA-256 of the JSON
    /// form): a new toolchain must not make every allocation look changed.
    pub fn spec_hash(&self) -> u64 {
        let mut g = self.clone();
        g.count = 0;
        g.update = None;
        g.migrate = None;
        g.depends_on = Vec::new();
        g.scaling = None;
        let text = serde_json::to_vec(&g).unwrap_or_default();
        stable_hash(&text)
    }

    /// Every `meta` a task of this group sees: the group's under the
    /// task's own. The job's `meta` is not passed on: it is outside the
    /// group's hash, so a change of it would leave running copies with the
    /// old values.
    pub fn task_meta(&self, task: &Task) -> BTreeMap<String, String> {
        let mut meta = self.meta.clone();
        meta.extend(task.meta.clone());
        meta
    }
}

/// The first 8 bytes of the SHA-256 of `bytes`: the same on every build,
/// unlike std's `DefaultHasher`.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// What one copy of a group asks for, summed in `u64` so that no set of
/// tasks can wrap it around to a small number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupResources {
    /// MHz.
    pub cpu: u64,
    /// MB.
    pub memory: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Left out of the JSON when `host`, so the spec hash of a group
    /// written before modes existed does not change.
    #[serde(default, skip_serializing_if = "NetworkMode::is_host")]
    pub mode: NetworkMode,
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// The job's named networks this group's allocations join, in order:
    /// the first one carries the default route, NAT and the port mappings.
    /// Empty is the node's default bridge (in bridge mode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::limits::MAX_GROUP_NETWORKS))]
    pub networks: Vec<String>,
}

/// A private network of a job: its bridge-mode groups that join it reach
/// each other by address, and nothing else reaches them but their ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedNetwork {
    pub name: String,
}

impl NamedNetwork {
    /// How nodes tell the named networks of all jobs apart: one per job
    /// and name (`NAMESPACE/JOB/NAME`; none of the three holds a `/`).
    pub fn key(namespace: &str, job_id: &str, name: &str) -> String {
        format!("{namespace}/{job_id}/{name}")
    }
}

/// Nomad's `network { mode = ... }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// The node's own network, as if the tasks ran on the host.
    #[default]
    Host,
    /// A network namespace of the allocation's own on the node's bridge,
    /// with each port mapped from the host port to `to`.
    Bridge,
}

impl NetworkMode {
    pub fn is_host(&self) -> bool {
        *self == NetworkMode::Host
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Host => "host",
            NetworkMode::Bridge => "bridge",
        }
    }
}

/// The node attribute an agent sets when it can give allocations a
/// network namespace on its bridge; bridge-mode groups go only there.
pub const BRIDGE_ATTRIBUTE: &str = "network.bridge";

/// `port "http" { static = 8080 }` or `port "http" { to = 80 }` (dynamic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    #[schemars(length(min = 1))]
    pub label: String,
    #[serde(rename = "static", default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub static_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub to: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[schemars(length(max = 63), pattern(SERVICE_NAME_PATTERN))]
    pub name: String,
    /// A port label of the group's network block, or a port number (as
    /// Nomad takes it: the instance is advertised on that port as it is).
    #[serde(
        default,
        deserialize_with = "port_ref",
        skip_serializing_if = "Option::is_none"
    )]
    pub port: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub checks: Vec<Check>,
    /// Publishes the service on every node's load balancer (the routing mesh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Publish>,
    /// How long instances are withdrawn from DNS and the load balancer before
    /// their tasks are stopped, so connections can drain. One second by
    /// default: enough for every node's balancer to hear of the withdrawal
    /// and for short requests in flight to finish.
    #[serde(with = "crate::duration", default = "default_shutdown_delay")]
    #[schemars(schema_with = "crate::duration::task_wait_schema")]
    pub shutdown_delay: Duration,
}

pub fn default_shutdown_delay() -> Duration {
    // With none, an instance could be stopped while a balancer on another
    // node still sent it a request: the rolling-update lab test lost one
    // request in about four runs that way.
    Duration::from_secs(1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum PublishProtocol {
    #[default]
    Tcp,
    Http,
    /// Datagrams: each client address keeps to one instance while it
    /// sends, as conntrack would; a port may be published for TCP and for
    /// UDP by two services.
    Udp,
}

impl PublishProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            PublishProtocol::Tcp => "tcp",
            PublishProtocol::Http => "http",
            PublishProtocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    LeastConn,
    /// Power of two random choices by EWMA latency.
    P2c,
}

/// `publish { port = 8080 protocol = "http" host = "web.example" path = "/api" }`:
/// every node listens on `port` and forwards to healthy instances.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    #[schemars(range(min = 1))]
    pub port: u16,
    #[serde(default)]
    pub protocol: PublishProtocol,
    /// HTTP only: route requests whose Host matches one of these (any when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// HTTP only: route requests whose path starts with this; `path` in a job file.
    #[serde(default, alias = "path", skip_serializing_if = "Option::is_none")]
    #[schemars(pattern("^/"))]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub balance: Balance,
    /// TCP only: send a PROXY protocol v2 header to backends.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Terminate TLS with this certificate chain and key: PEM files on the
    /// nodes, or a secret every node's load balancer fetches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<PublishTls>,
}

/// `tls { cert_file key_file }` or `tls { secret = "NAME" }`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishTls {
    #[serde(default)]
    pub cert_file: String,
    #[serde(default)]
    pub key_file: String,
    /// A secret with keys `cert` (the PEM chain) and `key`, in the job's
    /// namespace: each node's agent keeps it on a tmpfs for its load
    /// balancer.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret: String,
}

/// The keys of a secret a `publish { tls { secret } }` names.
pub const TLS_SECRET_KEYS: [&str; 2] = ["cert", "key"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckType {
    Http,
    Tcp,
    /// A command run inside one of the group's tasks, by its driver:
    /// exit 0 passes, anything else (Nomad's warning 1 included) fails.
    Script,
    /// grpc.health.v1's `Check`: SERVING passes.
    Grpc,
}

impl CheckType {
    /// Whether the check probes a port of the instance.
    pub fn uses_port(self) -> bool {
        self != CheckType::Script
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Check {
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type")]
    pub check_type: CheckType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Overrides the service's port (label or number) for this check.
    #[serde(
        default,
        deserialize_with = "port_ref",
        skip_serializing_if = "Option::is_none"
    )]
    pub port: Option<String>,
    #[serde(with = "crate::duration", default = "default_check_interval")]
    #[schemars(schema_with = "crate::duration::task_wait_schema")]
    pub interval: Duration,
    #[serde(with = "crate::duration", default = "default_check_timeout")]
    #[schemars(schema_with = "crate::duration::task_wait_schema")]
    pub timeout: Duration,
    /// Restart the task after this many consecutive failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_restart: Option<CheckRestart>,
    /// Script checks: the program, looked up in the task's PATH.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub command: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Script checks: the group's task the command runs in; may be left
    /// out when the group has one task.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub task: String,
    /// gRPC checks: the service asked about; empty asks about the server
    /// as a whole.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub grpc_service: String,
    /// gRPC checks: speak TLS. The certificate is not verified: the
    /// instance is reached by address, which its certificate seldom names.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grpc_use_tls: bool,
}

/// `check_restart { limit = 3 grace = "10s" }`, as in Nomad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CheckRestart {
    #[schemars(range(min = 1))]
    pub limit: u32,
    /// Failures during this long after a task starts do not count.
    #[serde(with = "crate::duration")]
    #[schemars(schema_with = "crate::duration::task_wait_schema")]
    pub grace: Duration,
}

impl Default for CheckRestart {
    /// Nomad's grace; a limit, since a `check_restart` block that never
    /// restarts would be pointless (validation refuses 0).
    fn default() -> Self {
        CheckRestart {
            limit: 3,
            grace: Duration::from_secs(1),
        }
    }
}

fn default_check_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_check_timeout() -> Duration {
    Duration::from_secs(2)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum RestartMode {
    /// After `attempts` restarts within `interval`, wait out the interval and go on.
    #[default]
    Fail,
    Delay,
}

/// Restarts of a task in place, on its node (Nomad's `restart` block). A
/// field left out keeps its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RestartPolicy {
    pub attempts: u32,
    #[serde(with = "crate::duration")]
    #[schemars(schema_with = "crate::duration::policy_wait_schema")]
    pub interval: Duration,
    #[serde(with = "crate::duration")]
    #[schemars(schema_with = "crate::duration::policy_wait_schema")]
    pub delay: Duration,
    pub mode: RestartMode,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            attempts: 2,
            interval: Duration::from_secs(30 * 60),
            delay: Duration::from_secs(15),
            mode: RestartMode::Fail,
        }
    }
}

/// Replacement of a failed allocation on another node (Nomad's
/// `reschedule`). A field left out keeps its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ReschedulePolicy {
    pub attempts: u32,
    #[serde(with = "crate::duration")]
    #[schemars(schema_with = "crate::duration::policy_wait_schema")]
    pub interval: Duration,
    #[serde(with = "crate::duration")]
    #[schemars(schema_with = "crate::duration::policy_wait_schema")]
    pub delay: Duration,
    pub unlimited: bool,
}

impl Default for ReschedulePolicy {
    fn default() -> Self {
        ReschedulePolicy {
            attempts: 0,
            interval: Duration::from_secs(0),
            delay: Duration::from_secs(30),
            unlimited: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Task {
    #[schemars(length(min = 1, max = MAX_NAME_LEN), pattern(NAME_PATTERN))]
    pub name: String,
    /// Validation asks for one, naming the known drivers.
    #[serde(default)]
    #[schemars(schema_with = "driver_schema")]
    pub driver: String,
    /// Driver-specific settings, checked by the task's driver when the job
    /// is submitted.
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub resources: Resources,
    #[serde(with = "crate::duration", default = "default_kill_timeout")]
    #[schemars(schema_with = "crate::duration::task_wait_schema")]
    pub kill_timeout: Duration,
    /// The signal that asks the task to stop (Nomad's `kill_signal`),
    /// SIGTERM when unset; SIGKILL follows after `kill_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_signal: Option<String>,
    /// Nomad's task-level constraints: they place the whole group (its
    /// tasks run together), as the group's own do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_CONSTRAINTS))]
    pub constraints: Vec<Constraint>,
    /// Like task-level constraints, they place the whole group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_CONSTRAINTS))]
    pub affinities: Vec<Affinity>,
    /// Nomad's task `meta`, over the group's (`EDGE_META_<key>` in the
    /// task's environment).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// Nomad's `lifecycle`: when the task runs beside the group's main
    /// tasks. Without one it is a main task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_VOLUMES))]
    pub volume_mounts: Vec<VolumeMount>,
    /// `config "NAME" { ... }`: configs written into the task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_VOLUMES))]
    pub configs: Vec<crate::objects::DataRef>,
    /// `secret "NAME" { ... }`: secrets written into the task's tmpfs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_VOLUMES))]
    pub secrets: Vec<crate::objects::DataRef>,
    /// `template { ... }`: files rendered on the agent, again on change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_VOLUMES))]
    pub templates: Vec<crate::template::Template>,
    /// `artifact { ... }`: files fetched into the task before it starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::artifact::MAX_ARTIFACTS))]
    pub artifacts: Vec<crate::artifact::Artifact>,
    /// `dispatch_payload { file }`: where a dispatched child's payload is
    /// written, under the task's `local/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch_payload: Option<crate::periodic::DispatchPayload>,
}

/// When a hook task runs, relative to the group's main tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// Before the main tasks start: they wait for it to finish (or, as a
    /// sidecar, to be running).
    Prestart,
    /// Once every main task is running.
    Poststart,
    /// Once every main task has stopped.
    Poststop,
}

/// Nomad's task `lifecycle` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Lifecycle {
    pub hook: Hook,
    /// Runs for as long as the main tasks do, restarted by the group's
    /// policy, instead of running once to completion.
    #[serde(default)]
    pub sidecar: bool,
}

impl Task {
    /// The task's hook, `None` for a main task.
    pub fn hook(&self) -> Option<Hook> {
        self.lifecycle.map(|l| l.hook)
    }

    /// A hook task that runs once to completion: a successful exit ends it
    /// for good, whatever the job's type.
    pub fn is_ephemeral(&self) -> bool {
        self.lifecycle.is_some_and(|l| !l.sidecar)
    }
}

fn default_kill_timeout() -> Duration {
    Duration::from_secs(5)
}

fn driver_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "enum": DRIVERS})
}

/// CPU in MHz, memory in MB, as in Nomad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default = "default_cpu")]
    #[schemars(range(min = 1, max = MAX_TASK_CPU))]
    pub cpu: u32,
    #[serde(default = "default_memory")]
    #[schemars(range(min = 1, max = MAX_TASK_MEMORY))]
    pub memory: u32,
}

fn default_cpu() -> u32 {
    100
}

fn default_memory() -> u32 {
    300
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cpu: default_cpu(),
            memory: default_memory(),
        }
    }
}

/// A service or check `port`: a label, or a number written with or without
/// quotes (`port = 8080` in a Nomad file), kept as text.
fn port_ref<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Ref {
        Label(String),
        Number(u64),
    }
    Ok(Option::<Ref>::deserialize(d)?.map(|r| match r {
        Ref::Label(s) => s,
        Ref::Number(n) => n.to_string(),
    }))
}

/// The port a service or check `port` names for an allocation: its
/// assigned port of that label, else the number itself.
pub fn resolve_port(port: &str, assigned: &[crate::AssignedPort]) -> Option<u16> {
    match assigned.iter().find(|p| p.label == port) {
        Some(p) => Some(p.value),
        None => port.parse::<u16>().ok().filter(|n| *n > 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A drain migration is judged by `migrate`'s rules, Nomad's defaults
    /// where unset, whatever the `update` block says.
    #[test]
    fn migrations_are_judged_by_the_migrate_block() {
        let mut job: Job = serde_json::from_value(serde_json::json!({
            "id": "web",
            "update": {"min_healthy_time": "30s", "healthy_deadline": "3m", "health_check": "manual"},
            "groups": [{"name": "g", "tasks": [{"name": "t", "driver": "exec"}]}],
        }))
        .unwrap();
        let g = job.groups[0].clone();
        let rules = Update::for_migration(&job, &g);
        assert_eq!(
            (
                rules.health_check,
                rules.min_healthy_time,
                rules.healthy_deadline
            ),
            (
                HealthCheck::Checks,
                Duration::from_secs(10),
                Duration::from_secs(300)
            )
        );
        job.groups[0].migrate = Some(MigratePolicy {
            health_check: Some(HealthCheck::TaskStates),
            healthy_deadline: Some(crate::duration::PolicyWait(Duration::from_secs(60))),
            ..Default::default()
        });
        let rules = Update::for_migration(&job, &job.groups[0]);
        assert_eq!(
            (
                rules.health_check,
                rules.min_healthy_time,
                rules.healthy_deadline
            ),
            (
                HealthCheck::TaskStates,
                Duration::from_secs(10),
                Duration::from_secs(60)
            )
        );
        assert_eq!(
            Update::resolve(&job, &job.groups[0]).min_healthy_time,
            Duration::from_secs(30)
        );
    }

    #[test]
    fn service_ports_are_labels_or_numbers() {
        let s: Service =
            serde_json::from_value(serde_json::json!({"name": "a", "port": 8080})).unwrap();
        assert_eq!(s.port.as_deref(), Some("8080"));
        let s: Service =
            serde_json::from_value(serde_json::json!({"name": "a", "port": "http"})).unwrap();
        assert_eq!(s.port.as_deref(), Some("http"));
        assert!(
            serde_json::from_value::<Service>(serde_json::json!({"name": "a", "port": [1]}))
                .is_err()
        );
        let assigned = [crate::AssignedPort {
            label: "http".into(),
            value: 23456,
            to: 80,
        }];
        assert_eq!(resolve_port("http", &assigned), Some(23456));
        assert_eq!(resolve_port("8080", &assigned), Some(8080));
        assert_eq!(resolve_port("0", &assigned), None);
        assert_eq!(resolve_port("99999", &assigned), None);
        assert_eq!(resolve_port("grpc", &assigned), None);
    }

    #[test]
    fn every_operator_of_the_schema_parses() {
        for op in CONSTRAINT_OPS {
            assert!(ConstraintOp::parse(op).is_some(), "{op}");
        }
    }
}
