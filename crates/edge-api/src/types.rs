//! Request and response bodies of `/v1`, documented in `api/openapi.yaml`.

use edge_spec::{
    AllocMetric, Allocation, ClientStatus, DesiredStatus, GroupChanges, Job, JobStatus, JobType,
    Node, NodeResources, NodeStatus, TaskState,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(example = register_example())]
pub struct JobRegisterRequest {
    pub job: Job,
    /// Only register when the job's current modify index equals this (check-and-set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce_index: Option<u64>,
}

/// The spec's example registration: a job the server takes (with a
/// config the exec driver accepts), so that request generators starting
/// from examples reach past validation.
fn register_example() -> serde_json::Value {
    serde_json::json!({
        "job": {
            "id": "hello",
            "groups": [{
                "name": "web",
                "tasks": [{
                    "name": "server",
                    "driver": "exec",
                    "config": {"command": "/bin/sleep", "args": ["3600"]}
                }]
            }]
        }
    })
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobRegisterResponse {
    pub eval_id: Option<String>,
    pub job_modify_index: u64,
    pub version: u64,
    /// False when the spec equals the current version and nothing changed.
    pub changed: bool,
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobPlanRequest {
    pub job: Job,
}

/// A dry run: what registering the job would do, without doing it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobPlanResponse {
    /// `added`, `edited`, `none` or `deleted`, as in Nomad's plan.
    pub diff_type: String,
    /// Lines of a unified-style diff of the spec against the current version.
    pub diff: Vec<String>,
    pub changes: BTreeMap<String, GroupChanges>,
    pub failed: BTreeMap<String, AllocMetric>,
    pub current_version: Option<u64>,
    pub job_modify_index: u64,
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobListStub {
    pub id: String,
    #[serde(default = "edge_spec::namespace::default_namespace")]
    pub namespace: String,
    pub name: String,
    #[serde(rename = "type")]
    pub job_type: JobType,
    pub priority: u8,
    pub status: JobStatus,
    pub stop: bool,
    pub version: u64,
    pub submit_time: i64,
    /// Group name to allocation counts by client status.
    pub summary: BTreeMap<String, BTreeMap<String, u32>>,
    pub modify_index: u64,
    /// A periodic or dispatched child's parent job.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parent_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct EvalResponse {
    pub eval_id: Option<String>,
    pub index: u64,
}

/// `POST /v1/job/{id}/dispatch`, Nomad's body: a child of the
/// parameterized job with this meta merged into its own and this payload.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobDispatchRequest {
    /// Base64; at most 16 KiB decoded.
    #[serde(rename = "Payload", alias = "payload", default)]
    pub payload: String,
    #[serde(rename = "Meta", alias = "meta", default)]
    pub meta: BTreeMap<String, String>,
}

/// The child a dispatch or a forced periodic launch made, and the
/// evaluation that places it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobLaunchResponse {
    pub job_id: String,
    pub eval_id: String,
    pub index: u64,
}

/// `POST /v1/job/{id}/scale`: a new version of the job with one group's
/// count changed.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobScaleRequest {
    pub group: String,
    #[schemars(range(max = edge_spec::limits::MAX_COUNT))]
    pub count: u32,
}

/// `POST /v1/deployment/{id}/promote`: the groups whose canaries to
/// promote; none named promotes every group with canaries.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentPromoteRequest {
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `POST /v1/deployment/{id}/allocation-health`: an operator's verdicts on
/// copies of groups with `health_check = "manual"` (ids or unique prefixes).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentAllocHealthRequest {
    #[serde(default)]
    pub healthy: Vec<String>,
    #[serde(default)]
    pub unhealthy: Vec<String>,
}

/// What promote, pause, resume and fail answer: the deployment as changed,
/// and the evaluation that acts on it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DeploymentUpdateResponse {
    pub eval_id: Option<String>,
    pub deployment: edge_spec::Deployment,
    pub index: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobRevertRequest {
    pub version: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AllocListStub {
    pub id: String,
    pub name: String,
    #[serde(default = "edge_spec::namespace::default_namespace")]
    pub namespace: String,
    pub job_id: String,
    pub job_version: u64,
    pub group: String,
    pub node_id: String,
    pub node_name: String,
    pub desired_status: DesiredStatus,
    pub client_status: ClientStatus,
    pub client_description: String,
    pub task_states: BTreeMap<String, TaskState>,
    /// The allocation's own address (bridge mode), while it holds one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<std::net::Ipv4Addr>,
    /// Its address on each named network it joined.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, std::net::Ipv4Addr>,
    pub create_time: i64,
    pub modify_time: i64,
    pub modify_index: u64,
}

impl From<&Allocation> for AllocListStub {
    fn from(a: &Allocation) -> Self {
        AllocListStub {
            id: a.id.clone(),
            name: a.name.clone(),
            namespace: a.namespace.clone(),
            job_id: a.job_id.clone(),
            job_version: a.job_version,
            group: a.group.clone(),
            node_id: a.node_id.clone(),
            node_name: a.node_name.clone(),
            desired_status: a.desired_status,
            client_status: a.client_status,
            client_description: a.client_description.clone(),
            task_states: a.task_states.clone(),
            address: a.address,
            networks: a.networks.clone(),
            create_time: a.create_time,
            modify_time: a.modify_time,
            modify_index: a.modify_index,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NodeListStub {
    pub id: String,
    pub name: String,
    pub datacenter: String,
    pub address: String,
    pub status: NodeStatus,
    pub eligible: bool,
    pub drain: bool,
    pub drivers: Vec<String>,
    pub resources: NodeResources,
    pub allocs_running: u32,
    /// What the node's live allocations reserve of `resources`.
    #[serde(default)]
    pub allocated: NodeAllocated,
    pub agent_version: String,
    pub last_heartbeat: i64,
    pub modify_index: u64,
}

/// CPU (MHz) and memory (MB) reserved on a node by allocations that run or
/// are about to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeAllocated {
    pub cpu: u64,
    pub memory: u64,
}

/// `GET /v1/job/{id}/diff?from=A&to=B`: how version B's spec differs from
/// version A's.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobVersionDiff {
    pub from: u64,
    pub to: u64,
    /// `edited` or `none`.
    pub diff_type: String,
    /// Lines of a unified-style diff, each starting with `+`, `-` or a space.
    pub diff: Vec<String>,
}

/// What the caller's token may do, for a client (the dashboard) that hides
/// what it would be refused: `GET /v1/acl/token/self/grants`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TokenGrants {
    pub management: bool,
    pub node_write: bool,
    /// Each existing namespace the token has a capability in, and those
    /// capabilities.
    pub namespaces: BTreeMap<String, Vec<edge_spec::acl::Capability>>,
}

/// A group that serves models (a `model` block), for `GET /v1/models`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ModelListStub {
    pub namespace: String,
    pub job_id: String,
    pub group: String,
    /// The REST (KServe V2) service the models answer on.
    pub service: String,
    /// The model names the group serves.
    pub models: Vec<String>,
    pub instances: u32,
    pub passing: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NodeDrainRequest {
    pub enable: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NodeEligibilityRequest {
    pub eligible: bool,
}

/// An agent introduces itself; `node.id` is the agent's persistent id.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RegisterRequest {
    pub node: Node,
    /// The agent's own HTTP address (logs, stats), when it serves one.
    #[serde(default)]
    pub http_addr: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RegisterResponse {
    pub node_id: String,
    /// Heartbeat at least this often, in milliseconds.
    pub heartbeat_ttl_ms: u64,
    pub index: u64,
}

/// A node asks for its certificate: with the join token on first contact
/// (`/v1/agent/csr`), with its current certificate to renew it
/// (`/v1/agent/renew`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CsrRequest {
    /// PEM PKCS#10 request whose subject is `O=edge-node, CN=<node id>`.
    pub csr: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CsrResponse {
    /// The node certificate, PEM.
    pub cert: String,
    /// The cluster CA certificate, PEM.
    pub ca: String,
    /// Unix seconds after which the certificate is no longer valid.
    pub not_after: i64,
}

/// A revoked node is refused at every request until the end of time.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NodeRevokeResponse {
    pub node_id: String,
    pub index: u64,
}

/// The new join token; node certificates issued before stay valid.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TokenRotateResponse {
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct HeartbeatResponse {
    pub heartbeat_ttl_ms: u64,
    pub index: u64,
}

/// An allocation as the agent needs it: with the job version it was made from.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentAlloc {
    pub alloc: Allocation,
    pub job: Job,
}

/// `GET /v1/agent/allocs/{node}?since=N`: the node's allocations as a
/// change since index `N`, so a watch answer carries only what changed,
/// not the node's whole list.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct AgentAllocChanges {
    /// Every allocation the node holds now: one left out is to be stopped.
    /// Absent when asked with `ids=on_removal` and none left the node's
    /// list after `N`: the node holds what it held plus what changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
    /// Those whose allocation (or its job version) changed after `N`,
    /// with their job versions; all of them when `N` is 0.
    pub changed: Vec<AgentAlloc>,
}

/// What an agent tells the server about one of its allocations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AllocUpdate {
    pub id: String,
    pub client_status: ClientStatus,
    #[serde(default)]
    pub client_description: String,
    #[serde(default)]
    pub task_states: BTreeMap<String, TaskState>,
    /// Service name to the health of this allocation's instance of it.
    #[serde(default)]
    pub checks: BTreeMap<String, HealthStatus>,
    /// Set once the agent judged the copy by its group's `update` rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<edge_spec::AllocHealth>,
    /// The allocation's address on the node's bridge, while it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<std::net::Ipv4Addr>,
    /// Its address on each named network it joined, by network name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, std::net::Ipv4Addr>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AllocUpdateRequest {
    pub allocs: Vec<AllocUpdate>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AllocUpdateResponse {
    pub index: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct HealthResponse {
    pub status: String,
    pub version: String,
    pub index: u64,
    pub nodes_ready: u32,
}

/// One line of `/v1/event/stream`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StreamEvent {
    pub index: u64,
    pub topic: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub key: String,
    pub time: i64,
    pub payload: serde_json::Value,
}

pub use edge_spec::HealthStatus;

/// One instance of a service: an allocation's port on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceInstance {
    pub service: String,
    pub alloc_id: String,
    #[serde(default = "edge_spec::namespace::default_namespace")]
    pub namespace: String,
    pub job_id: String,
    pub group: String,
    pub node_id: String,
    pub node_name: String,
    /// The node's address.
    pub address: String,
    /// The host port the instance listens on.
    pub port: u16,
    #[serde(default)]
    pub tags: Vec<String>,
    pub status: HealthStatus,
    /// An unpromoted canary of a deployment (also tagged `canary`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub canary: bool,
    /// The instance's addresses on the named networks its group joins,
    /// by network key (`NAMESPACE/JOB/NAME`): what DNS answers callers on
    /// that network.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, std::net::Ipv4Addr>,
}

impl ServiceInstance {
    /// Only passing instances get traffic or appear in answers.
    pub fn serving(&self) -> bool {
        self.status == HealthStatus::Passing
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CatalogService {
    pub name: String,
    #[serde(default = "edge_spec::namespace::default_namespace")]
    pub namespace: String,
    /// Union of the tags of its instances.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The published port of the routing mesh, when the job asks for one.
    #[serde(default)]
    pub publish: Option<edge_spec::Publish>,
    /// Percent of the load balancer's traffic sent to the canary instances
    /// while a deployment's `canary_weight` asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub canary_weight: Option<u32>,
    /// Set while the service's group may scale to zero: the load
    /// balancer holds requests that find no serving copy and asks for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<Activation>,
    /// The job and group whose `scaling` block sets how many instances
    /// there are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaled_by: Option<ScaledBy>,
    pub instances: Vec<ServiceInstance>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ScaledBy {
    pub job_id: String,
    pub group: String,
}

/// How a node's load balancer holds requests for a service at zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Activation {
    /// Requests held at once; more get 503 with `Retry-After`.
    pub queue: u32,
    /// How long one is held before it gets 503 with `Retry-After`.
    pub timeout_ms: u64,
}

/// `POST /v1/agent/load/{node}`: what the node's load balancer saw of
/// each service since its last report.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadReport {
    /// By `edge_spec::service_key`.
    #[schemars(length(max = 10_000))]
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, ServiceLoad>,
    /// By allocation id: the CPU and memory of this node's copies of
    /// groups with a `scaling` block, from their tasks' stats.
    #[schemars(length(max = 10_000))]
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocs: BTreeMap<String, AllocLoad>,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocLoad {
    /// CPU used over the interval, in percent of what its tasks reserved.
    #[schemars(range(min = 0.0, max = 1.0e6))]
    pub cpu_percent: f64,
    /// Resident memory of its running tasks now.
    #[serde(default)]
    pub memory_bytes: u64,
}

/// What one node's load balancer sent to one instance of a service over
/// the interval.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceLoad {
    /// Average requests (or connections) in flight to it.
    #[schemars(range(min = 0.0, max = 1.0e9))]
    pub in_flight: f64,
    /// Requests (or connections) sent to it.
    pub requests: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceLoad {
    /// Average requests (or connections) in flight over the interval.
    #[schemars(range(min = 0.0, max = 1.0e9))]
    pub in_flight: f64,
    /// Requests (or connections) that ended in the interval.
    pub requests: u64,
    /// Length of the interval.
    #[schemars(range(min = 1, max = 3_600_000))]
    pub interval_ms: u64,
    /// Requests held now because no copy serves.
    #[serde(default)]
    pub waiting: u32,
    /// The same by instance (allocation id), for those that had any.
    #[schemars(length(max = 10_000))]
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub instances: BTreeMap<String, InstanceLoad>,
}

/// `GET /v1/job/{id}/scale`: each scaling group's count, bounds, load
/// and recent decisions.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct JobScaleStatus {
    pub job_id: String,
    pub groups: BTreeMap<String, GroupScaleStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GroupScaleStatus {
    /// The count the job asks for now.
    pub desired: u32,
    /// Copies running.
    pub running: u32,
    pub enabled: bool,
    pub min: u32,
    pub max: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_concurrency: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_rps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cpu: Option<u32>,
    /// Average CPU per running copy over the last evaluation interval, in
    /// percent of what it reserved (groups with `target_cpu`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    /// Resident memory of the running copies, summed, as their nodes last
    /// reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// The load of the last evaluation interval, summed over nodes.
    pub in_flight: f64,
    pub rps: f64,
    pub waiting: u32,
    /// Milliseconds since the last request, as far as this server saw.
    pub idle_ms: i64,
    /// The latest count changes, newest first.
    pub events: Vec<edge_spec::ScaleNote>,
}

/// Every service the cluster knows, with all instances (serving or not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct Catalog {
    pub index: u64,
    /// By `edge_spec::service_key`: `NAME`, or `NAME.NAMESPACE` outside
    /// the default namespace.
    pub services: BTreeMap<String, CatalogService>,
    /// The named networks' subnets, by network key: how DNS tells which
    /// network a caller is on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, edge_spec::Subnet>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ServiceListStub {
    pub name: String,
    #[serde(default = "edge_spec::namespace::default_namespace")]
    pub namespace: String,
    pub tags: Vec<String>,
    pub instances: u32,
    pub passing: u32,
    #[serde(default)]
    pub publish: Option<edge_spec::Publish>,
}

/// One thing a node's garbage collection found that no allocation owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GcLeftover {
    pub driver: String,
    /// The driver's name for it (a container id, an allocation's run state).
    pub id: String,
    #[serde(default)]
    pub alloc_id: Option<String>,
    pub description: String,
    /// Set when removing it failed; it is tried again on the next pass.
    #[serde(default)]
    pub error: Option<String>,
}

/// What `POST /v1/node/{id}/gc` removed from the node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GcResponse {
    pub node_id: String,
    pub removed: Vec<GcLeftover>,
}

/// `POST /v1/config/{name}` and `POST /v1/secret/{name}`: the values of
/// the next version, every key at once.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectPutRequest {
    #[schemars(schema_with = "object_data_schema")]
    pub data: BTreeMap<String, String>,
}

/// The bounds `edge_spec::objects::data_problem` holds a put to, those
/// OpenAPI 3.0 can say: not the keys' characters (no `propertyNames`), nor
/// a value's size (a value past it is a 400, past the body limit a 413).
fn object_data_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "Keys of 1 to 128 ASCII letters, digits, `_`, `-` and `.`; values of at most 256 KiB, 1 MiB in all",
        "minProperties": 1,
        "maxProperties": edge_spec::objects::MAX_OBJECT_KEYS,
        "additionalProperties": {"type": "string"}
    })
}

/// What a config or secret write did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ObjectWriteResponse {
    /// The version written; 0 for a delete.
    pub version: u64,
    pub index: u64,
}

/// What `POST /v1/operator/keyring/rotate` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KeyringRotateResponse {
    /// The new active key.
    pub key_id: String,
    /// Secrets sealed again under it.
    pub resealed: u64,
    /// Old keys dropped.
    pub retired_keys: u64,
}

/// One config's or secret's values, as an agent gets them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ObjectValue {
    pub version: u64,
    pub data: BTreeMap<String, String>,
}

/// `GET /v1/agent/data/{node}?alloc=ID`: the configs and secrets an
/// allocation's tasks ask for, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AllocData {
    pub configs: BTreeMap<String, ObjectValue>,
    pub secrets: BTreeMap<String, ObjectValue>,
}

/// `GET /v1/agent/networks/{node}`: the named networks with a live member
/// on the node, as the server assigned them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgentNetworks {
    pub networks: Vec<AgentNetwork>,
}

/// One named network on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgentNetwork {
    /// `NAMESPACE/JOB/NAME`.
    pub key: String,
    /// The VXLAN id, unique in the cluster.
    pub vni: u32,
    /// The network's subnet, one segment across nodes.
    pub subnet: edge_spec::Subnet,
    /// The node's slice: its gateway and its members' addresses.
    pub slice: edge_spec::Subnet,
    /// The other nodes with a live member, by address.
    pub peers: Vec<std::net::Ipv4Addr>,
}

/// What `DELETE /v1/volume/{id}` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VolumeDeleteResponse {
    pub id: String,
    /// `JOB.GROUP.VOLUME[INDEX]`.
    pub name: String,
    pub node_id: String,
    /// False when the directory was already gone (or its node is).
    pub removed_dir: bool,
}

/// The agent's answer to the server's request to remove a local volume.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentVolumeDeleted {
    /// False when there was no directory to remove.
    pub removed: bool,
}

/// `POST /v1/namespace/{name}`: creates the namespace, or sets its
/// description.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamespaceApplyRequest {
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub description: String,
}

/// `DELETE /v1/namespace/{name}`: the index the deletion committed at.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NamespaceDeleteResponse {
    pub index: u64,
}

/// `PUT/POST /v1/acl/policy/{name}`: a policy's HCL (Nomad's shape).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(example = policy_example())]
pub struct AclPolicyApplyRequest {
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub description: String,
    /// The rules, HCL: `namespace "NAME" { policy = "read" }`, `node`,
    /// `agent`, `operator` blocks.
    #[schemars(length(max = 65536))]
    pub rules: String,
}

fn policy_example() -> serde_json::Value {
    serde_json::json!({
        "description": "read jobs, read nodes",
        "rules": "namespace \"default\" { policy = \"read\" }\nnode { policy = \"read\" }\n"
    })
}

/// A policy in a listing.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AclPolicyListStub {
    pub name: String,
    pub description: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// `POST /v1/acl/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AclTokenCreateRequest {
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub name: String,
    /// `management` tokens may do everything and take no policies;
    /// `client` tokens need at least one existing policy.
    #[serde(default)]
    pub token_type: edge_spec::acl::TokenType,
    #[serde(default)]
    pub policies: Vec<String>,
    /// The token is refused this many seconds after its creation (at most
    /// ten years); none: it never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 315_360_000))]
    pub ttl_secs: Option<u64>,
}

/// A token as the API shows it: never its secret, which only its
/// creation answers.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AclTokenInfo {
    pub accessor_id: String,
    pub name: String,
    pub token_type: edge_spec::acl::TokenType,
    pub policies: Vec<String>,
    /// Unix milliseconds.
    pub create_time: i64,
    /// Unix milliseconds after which the token is refused.
    pub expiration_time: Option<i64>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl From<&edge_spec::acl::AclToken> for AclTokenInfo {
    fn from(t: &edge_spec::acl::AclToken) -> Self {
        AclTokenInfo {
            accessor_id: t.accessor_id.clone(),
            name: t.name.clone(),
            token_type: t.token_type,
            policies: t.policies.clone(),
            create_time: t.create_time,
            expiration_time: t.expiration_time,
            create_index: t.create_index,
            modify_index: t.modify_index,
        }
    }
}

/// A new token with its secret, shown this once (the server keeps only
/// its hash).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AclTokenCreated {
    /// What clients send in `X-Edge-Token`.
    pub secret_id: String,
    pub token: AclTokenInfo,
}

/// The index of an ACL change.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AclWriteResponse {
    pub index: u64,
}
