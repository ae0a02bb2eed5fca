//! How an agent's copy of an allocation and the server's combine.

use edge_spec::{AllocHealth, Allocation, ClientStatus, DesiredStatus, HealthStatus};

fn alloc() -> Allocation {
    serde_json::from_value(serde_json::json!({
        "id": "a1", "name": "web.web[0]", "index": 0, "job_id": "web",
        "job_version": 0, "group": "web", "group_hash": 1, "node_id": "n1",
        "eval_id": "e1", "resources": {"cpu": 100, "memory": 64}
    }))
    .unwrap()
}

#[test]
fn the_agents_reports_win_over_the_servers_older_copy_of_them() {
    let mut local = alloc();
    local.client_status = ClientStatus::Running;
    local.client_description = "tasks are running".to_string();
    local
        .checks
        .insert("web".to_string(), HealthStatus::Pending);
    local.address = Some("10.0.0.2".parse().unwrap());
    local
        .networks
        .insert("front".to_string(), "10.1.0.2".parse().unwrap());
    // The server still holds the previous agent's last report.
    let mut server = alloc();
    server.client_status = ClientStatus::Running;
    server
        .checks
        .insert("web".to_string(), HealthStatus::Passing);
    server.health = Some(AllocHealth {
        healthy: true,
        timestamp: 5,
    });
    server.job_version = 1;
    server.desired_status = DesiredStatus::Stop;
    server.alloc_modify_index = 9;

    let merged = server.clone().with_reports_of(&local);
    assert_eq!(merged.checks, local.checks, "the agent's checks stay");
    assert_eq!(merged.client_description, local.client_description);
    assert_eq!(merged.address, local.address);
    assert_eq!(merged.networks, local.networks);
    // A verdict only the server has (an operator's) is kept.
    assert_eq!(merged.health, server.health);
    // What the server decides comes from the server.
    assert_eq!(merged.job_version, 1);
    assert_eq!(merged.desired_status, DesiredStatus::Stop);
    assert_eq!(merged.alloc_modify_index, 9);
    assert!(server.differs_only_in_reports(&merged));
}
