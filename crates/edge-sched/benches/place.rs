//! Placement throughput: many service jobs on 5,000 nodes, one `schedule`
//! call per job, the usage map updated between jobs as the server does;
//! then the same with three affinities and a spread per job.
//! Run with `cargo bench -p edge-sched`.

use edge_sched::{NodeUsage, SchedulerConfig, Snapshot, schedule};
use edge_spec::{
    Affinity, ConstraintOp, DriverInfo, Evaluation, Group, Job, JobType, Network, Node,
    NodeResources, NodeStatus, PortSpec, Resources, Spread, Task, TriggeredBy,
};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

const NODES: usize = 5_000;

fn node(i: usize) -> Node {
    let mut drivers = BTreeMap::new();
    drivers.insert(
        "exec".to_string(),
        DriverInfo {
            detected: true,
            healthy: true,
            ..DriverInfo::default()
        },
    );
    let mut attributes = BTreeMap::new();
    attributes.insert("kernel.name".to_string(), "linux".to_string());
    Node {
        id: format!("{i:08x}-0000-4000-8000-000000000000"),
        name: format!("node-{i}"),
        datacenter: format!("dc{}", i % 4),
        address: format!("10.0.{}.{}", i / 250, i % 250),
        status: NodeStatus::Ready,
        status_description: String::new(),
        eligible: true,
        drain: false,
        revoked: false,
        attributes,
        meta: BTreeMap::from([("rack".to_string(), format!("r{}", i % 10))]),
        resources: NodeResources {
            cpu: 8000,
            memory: 16384,
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

fn job(i: usize, count: u32) -> Job {
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
        id: format!("job-{i}"),
        name: format!("job-{i}"),
        job_type: JobType::Service,
        datacenters: vec!["*".to_string()],
        priority: 50,
        meta: BTreeMap::new(),
        affinities: Vec::new(),
        spreads: Vec::new(),
        constraints: Vec::new(),
        update: None,
        groups: vec![Group {
            volumes: Vec::new(),
            depends_on: Vec::new(),
            system: false,
            batch: false,
            scaling: None,
            meta: Default::default(),
            name: "web".to_string(),
            count,
            affinities: Vec::new(),
            spreads: Vec::new(),
            constraints: Vec::new(),
            network: Network {
                networks: Default::default(),
                mode: edge_spec::NetworkMode::Host,
                ports: vec![PortSpec {
                    label: "http".to_string(),
                    static_port: None,
                    to: None,
                }],
            },
            services: Vec::new(),
            restart: Default::default(),
            reschedule: Default::default(),
            update: None,
            migrate: None,
            tasks: vec![Task {
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
                name: "server".to_string(),
                driver: "exec".to_string(),
                config: serde_json::Map::new(),
                env: BTreeMap::new(),
                resources: Resources {
                    cpu: 20,
                    memory: 32,
                },
                kill_timeout: std::time::Duration::from_secs(5),
                kill_signal: None,
            }],
        }],
        version: 0,
        stop: false,
        stable: false,
        status: Default::default(),
        submit_time: 0,
        create_index: 0,
        modify_index: 0,
    }
}

fn eval(job_id: &str) -> Evaluation {
    Evaluation {
        namespace: "default".to_string(),
        id: format!("eval-{job_id}"),
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

/// Schedules `jobs` jobs of `count` copies each; returns placements and seconds
/// spent inside `schedule`.
fn run(jobs: usize, count: u32, prefer: bool) -> (usize, f64) {
    let nodes: Vec<Node> = (0..NODES).map(node).collect();
    let mut usage: HashMap<String, NodeUsage> = HashMap::new();
    let config = SchedulerConfig::default();
    let mut placed = 0;
    let mut spent = 0.0;
    for i in 0..jobs {
        let mut j = job(i, count);
        if prefer {
            j.affinities = vec![
                affinity("${node.datacenter}", ConstraintOp::Eq, "dc1", 50),
                affinity("${meta.rack}", ConstraintOp::Regexp, "^r[0-4]$", 25),
                affinity("${attr.kernel.name}", ConstraintOp::Eq, "linux", 10),
            ];
            j.spreads = vec![Spread {
                attribute: "${node.datacenter}".to_string(),
                weight: 50,
                targets: Vec::new(),
            }];
        }
        let e = eval(&j.id);
        let snap = Snapshot {
            volumes: Vec::new(),
            nodes: nodes.iter().collect(),
            usage: &usage,
            job_allocs: Vec::new(),
            config: &config,
            now: 1_700_000_000_000,
            seed: i as u64,
            deployment: None,
        };
        let start = Instant::now();
        let plan = schedule(Some(&j), &e, &snap);
        spent += start.elapsed().as_secs_f64();
        assert_eq!(plan.place.len(), count as usize, "job {i} not fully placed");
        placed += plan.place.len();
        for a in &plan.place {
            usage.entry(a.node_id.clone()).or_default().add(a);
        }
    }
    for (id, u) in &usage {
        assert!(
            u.cpu <= 8000 && u.memory <= 16384,
            "node {id} over-committed"
        );
    }
    (placed, spent)
}

fn affinity(attribute: &str, operator: ConstraintOp, value: &str, weight: i64) -> Affinity {
    Affinity {
        attribute: attribute.to_string(),
        operator,
        value: value.to_string(),
        weight,
    }
}

fn main() {
    for (jobs, count, prefer) in [
        (100, 1_000, false),
        (1_000, 100, false),
        (100, 1_000, true),
        (1_000, 100, true),
    ] {
        let (placed, secs) = run(jobs, count, prefer);
        let with = if prefer {
            ", 3 affinities and a spread"
        } else {
            ""
        };
        println!(
            "{jobs} jobs x {count} on {NODES} nodes{with}: {placed} placements in {secs:.3} s = {:.0} placements/s",
            placed as f64 / secs
        );
    }
}
