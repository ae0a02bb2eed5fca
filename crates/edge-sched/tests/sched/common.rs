//! Test fixtures: nodes, jobs and a tiny stand-in for the server that applies
//! plans to a cluster, so tests can run several evaluations in a row.

use edge_sched::{NodeUsage, Plan, SchedulerConfig, Snapshot, schedule};
use edge_spec::{
    Allocation, ClientStatus, Constraint, ConstraintOp, DesiredStatus, DriverInfo, Evaluation,
    Group, Job, JobType, Node, NodeResources, NodeStatus, PortSpec, Resources, Task, TriggeredBy,
};
use std::collections::{BTreeMap, HashMap};

pub fn node(id: &str, cpu: u32, memory: u32) -> Node {
    let mut drivers = BTreeMap::new();
    drivers.insert(
        "exec".to_string(),
        DriverInfo {
            detected: true,
            healthy: true,
            ..DriverInfo::default()
        },
    );
    Node {
        id: id.to_string(),
        name: format!("name-{id}"),
        datacenter: "dc1".to_string(),
        address: "10.0.0.1".to_string(),
        status: NodeStatus::Ready,
        status_description: String::new(),
        eligible: true,
        drain: false,
        revoked: false,
        attributes: BTreeMap::new(),
        meta: BTreeMap::new(),
        resources: NodeResources {
            cpu,
            memory,
            cores: 4,
        },
        reserved: NodeResources::default(),
        drivers,
        last_heartbeat: 0,
        agent_version: String::new(),
        create_index: 0,
        modify_index: 0,
    }
}

pub fn task(cpu: u32, memory: u32) -> Task {
    Task {
        templates: Vec::new(),
        artifacts: Vec::new(),
        dispatch_payload: None,
        secrets: Vec::new(),
        configs: Vec::new(),
        volume_mounts: Vec::new(),
        lifecycle: None,
        affinities: Vec::new(),
        constraints: Vec::new(),
        meta: Default::default(),
        name: "main".to_string(),
        driver: "exec".to_string(),
        config: serde_json::Map::new(),
        env: BTreeMap::new(),
        resources: Resources { cpu, memory },
        kill_timeout: std::time::Duration::from_secs(5),
        kill_signal: None,
    }
}

pub fn group(name: &str, count: u32, cpu: u32, memory: u32) -> Group {
    Group {
        volumes: Vec::new(),
        depends_on: Vec::new(),
        system: false,
        batch: false,
        scaling: None,
        meta: Default::default(),
        name: name.to_string(),
        count,
        affinities: Vec::new(),
        spreads: Vec::new(),
        constraints: Vec::new(),
        network: Default::default(),
        services: Vec::new(),
        restart: Default::default(),
        reschedule: Default::default(),
        update: None,
        migrate: None,
        tasks: vec![task(cpu, memory)],
    }
}

pub fn job(id: &str, groups: Vec<Group>) -> Job {
    Job {
        networks: Default::default(),
        periodic: None,
        parameterized: None,
        parent_id: String::new(),
        payload: String::new(),
        next_launch: None,
        scaled: None,
        children: Vec::new(),
        namespace: "default".to_string(),
        id: id.to_string(),
        name: id.to_string(),
        job_type: JobType::Service,
        datacenters: vec!["*".to_string()],
        priority: 50,
        meta: BTreeMap::new(),
        affinities: Vec::new(),
        spreads: Vec::new(),
        constraints: Vec::new(),
        update: None,
        groups,
        version: 0,
        stop: false,
        stable: false,
        status: Default::default(),
        submit_time: 0,
        create_index: 0,
        modify_index: 0,
    }
}

pub fn constraint(attribute: &str, op: ConstraintOp, value: &str) -> Constraint {
    Constraint {
        attribute: attribute.to_string(),
        operator: op,
        value: value.to_string(),
    }
}

pub fn dynamic_port(label: &str) -> PortSpec {
    PortSpec {
        label: label.to_string(),
        static_port: None,
        to: None,
    }
}

pub fn static_port(label: &str, port: u16) -> PortSpec {
    PortSpec {
        label: label.to_string(),
        static_port: Some(port),
        to: None,
    }
}

pub fn eval(job_id: &str) -> Evaluation {
    Evaluation {
        namespace: "default".to_string(),
        id: "eval-1".to_string(),
        job_id: job_id.to_string(),
        priority: 50,
        triggered_by: TriggeredBy::JobRegister,
        status: Default::default(),
        status_description: String::new(),
        node_id: None,
        failed_tg_allocs: BTreeMap::new(),
        queued_allocations: BTreeMap::new(),
        wait_until: 0,
        create_time: 0,
        modify_time: 0,
        create_index: 0,
        modify_index: 0,
    }
}

/// A cluster and the allocations on it, updated the way the server applies plans.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub allocs: Vec<Allocation>,
    pub usage: HashMap<String, NodeUsage>,
    pub config: SchedulerConfig,
    pub now: i64,
    /// The job's newest deployment, as the server would keep it.
    pub deployment: Option<edge_spec::Deployment>,
    /// Local volumes, recorded as the server does on first placement.
    pub volumes: Vec<edge_spec::Volume>,
}

impl Cluster {
    pub fn new(nodes: Vec<Node>) -> Cluster {
        Cluster {
            nodes,
            allocs: Vec::new(),
            usage: HashMap::new(),
            config: SchedulerConfig::default(),
            now: 1_000_000,
            deployment: None,
            volumes: Vec::new(),
        }
    }

    /// Registers `job` as the server does: a new deployment for its version.
    pub fn register(&mut self, job: &Job) {
        let allocs: Vec<&Allocation> = self.allocs.iter().filter(|a| a.job_id == job.id).collect();
        let id = format!("dep-{}", job.version);
        self.deployment = edge_sched::new_deployment(job, id, self.now, &allocs);
    }

    pub fn node_mut(&mut self, id: &str) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).expect("node")
    }

    pub fn alloc_mut(&mut self, id: &str) -> &mut Allocation {
        self.allocs.iter_mut().find(|a| a.id == id).expect("alloc")
    }

    pub fn plan(&self, job: &Job, seed: u64) -> Plan {
        self.plan_for(Some(job), &job.id, seed)
    }

    pub fn plan_for(&self, job: Option<&Job>, job_id: &str, seed: u64) -> Plan {
        let snap = Snapshot {
            volumes: self.volumes.iter().filter(|v| v.job_id == job_id).collect(),
            nodes: self.nodes.iter().collect(),
            usage: &self.usage,
            job_allocs: self.allocs.iter().filter(|a| a.job_id == job_id).collect(),
            config: &self.config,
            now: self.now,
            seed,
            deployment: self.deployment.as_ref().filter(|d| d.job_id == job_id),
        };
        schedule(job, &eval(job_id), &snap)
    }

    /// Applies a plan as the server would: placements start running.
    pub fn apply(&mut self, plan: &Plan) {
        if let Some(d) = &plan.deployment {
            self.deployment = Some(d.clone());
        }
        for s in &plan.stop {
            let a = self.alloc_mut(&s.alloc_id).clone();
            if let Some(u) = self.usage.get_mut(&a.node_id).filter(|_| a.is_live()) {
                u.remove(&a);
            }
            let a = self.alloc_mut(&s.alloc_id);
            a.desired_status = DesiredStatus::Stop;
            a.desired_description = s.description.clone();
            if let Some(cs) = s.client_status {
                a.client_status = cs;
            } else if a.client_status == ClientStatus::Running {
                a.client_status = ClientStatus::Complete;
            }
        }
        for u in &plan.in_place {
            self.alloc_mut(&u.alloc_id).job_version = u.job_version;
        }
        for p in &plan.place {
            let mut a = p.clone();
            a.client_status = ClientStatus::Running;
            if let Some(prev) = &a.previous_alloc {
                let id = a.id.clone();
                self.alloc_mut(prev).next_alloc = Some(id);
            }
            self.usage.entry(a.node_id.clone()).or_default().add(&a);
            self.allocs.push(a);
        }
    }

    /// The server's bookkeeping: a copy's local volumes live where the
    /// copy first ran.
    fn record_volumes(&mut self, job: &Job, a: &Allocation) {
        let Some(group) = job.group(&a.group) else {
            return;
        };
        let local = group
            .volumes
            .iter()
            .filter(|v| v.kind == edge_spec::VolumeType::Local);
        for name in local.map(|v| v.name.clone()) {
            let key = edge_spec::Volume::key(&a.namespace, &a.job_id, &a.group, &name, a.index);
            if self.volumes.iter().any(|v| v.own_key() == key) {
                continue;
            }
            self.volumes.push(edge_spec::Volume {
                id: format!("vol-{}", self.volumes.len()),
                namespace: a.namespace.clone(),
                job_id: a.job_id.clone(),
                group: a.group.clone(),
                name,
                index: a.index,
                node_id: a.node_id.clone(),
                create_time: self.now,
                create_index: 0,
                modify_index: 0,
            });
        }
    }

    pub fn run(&mut self, job: &Job, seed: u64) -> Plan {
        let plan = self.plan(job, seed);
        for a in &plan.place {
            self.record_volumes(job, a);
        }
        self.apply(&plan);
        plan
    }

    pub fn live(&self, job_id: &str) -> Vec<&Allocation> {
        self.allocs
            .iter()
            .filter(|a| a.job_id == job_id && a.is_live())
            .collect()
    }

    pub fn live_on(&self, job_id: &str, node: &str) -> usize {
        self.live(job_id)
            .iter()
            .filter(|a| a.node_id == node)
            .count()
    }

    /// Marks a live allocation failed, `ago_ms` before now.
    pub fn fail(&mut self, alloc_id: &str, ago_ms: i64) {
        let at = self.now - ago_ms;
        let a = self.alloc_mut(alloc_id).clone();
        if let Some(u) = self.usage.get_mut(&a.node_id) {
            u.remove(&a);
        }
        let a = self.alloc_mut(alloc_id);
        a.client_status = ClientStatus::Failed;
        a.modify_time = at;
    }
}
