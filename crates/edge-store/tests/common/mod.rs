//! Builders of small jobs, nodes, allocations and evaluations for the store tests.

#![allow(dead_code)]

use edge_spec::{
    AllocResources, Allocation, AssignedPort, ClientStatus, DesiredStatus, EvalStatus, Evaluation,
    Job, Node, NodeResources, TriggeredBy,
};
use edge_store::{Batch, Store, StoreError};

pub fn job(id: &str, version: u64) -> Job {
    serde_json::from_value(serde_json::json!({
        "id": id,
        "version": version,
        "groups": [{ "name": "web", "tasks": [{ "name": "t", "driver": "exec" }] }]
    }))
    .unwrap()
}

pub fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        name: id.into(),
        datacenter: "dc1".into(),
        address: "10.0.0.1".into(),
        status: Default::default(),
        status_description: String::new(),
        eligible: true,
        drain: false,
        revoked: false,
        attributes: Default::default(),
        meta: Default::default(),
        resources: NodeResources {
            cpu: 4000,
            memory: 8192,
            cores: 4,
        },
        reserved: Default::default(),
        drivers: Default::default(),
        last_heartbeat: 0,
        agent_version: String::new(),
        create_index: 0,
        modify_index: 0,
    }
}

pub fn alloc(id: &str, job_id: &str, node_id: &str, port: u16) -> Allocation {
    Allocation {
        networks: Default::default(),
        address: None,
        namespace: "default".to_string(),
        id: id.into(),
        name: format!("{job_id}.web[0]"),
        index: 0,
        job_id: job_id.into(),
        job_version: 0,
        group: "web".into(),
        group_hash: 0,
        node_id: node_id.into(),
        node_name: node_id.into(),
        eval_id: "e".into(),
        desired_status: DesiredStatus::Run,
        desired_description: String::new(),
        client_status: ClientStatus::Pending,
        client_description: String::new(),
        task_states: Default::default(),
        checks: Default::default(),
        health: None,
        deployment_id: None,
        canary: false,
        migration: false,
        resources: AllocResources {
            cpu: 100,
            memory: 256,
            ports: vec![AssignedPort {
                label: "http".into(),
                value: port,
                to: port,
            }],
        },
        previous_alloc: None,
        reschedule_times: Vec::new(),
        next_alloc: None,
        create_time: 0,
        modify_time: 0,
        create_index: 0,
        modify_index: 0,
        alloc_modify_index: 0,
    }
}

pub fn eval(id: &str, job_id: &str, status: EvalStatus, modify_time: i64) -> Evaluation {
    Evaluation {
        namespace: "default".to_string(),
        id: id.into(),
        job_id: job_id.into(),
        priority: 50,
        triggered_by: TriggeredBy::JobRegister,
        status,
        status_description: String::new(),
        node_id: None,
        failed_tg_allocs: Default::default(),
        queued_allocations: Default::default(),
        wait_until: 0,
        create_time: modify_time,
        modify_time,
        create_index: 0,
        modify_index: 0,
    }
}

/// Commits a fixed batch and returns its index.
pub async fn put(store: &Store, batch: Batch) -> u64 {
    store
        .commit(move |_| Ok::<_, StoreError>((batch, ())))
        .await
        .unwrap()
        .1
}

/// Size of the database file plus its WAL.
pub fn disk_size(store: &Store) -> u64 {
    let db = store.db_path();
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    [db.to_path_buf(), wal.into()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}
