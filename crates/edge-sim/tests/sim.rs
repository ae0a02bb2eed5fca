//! The simulator against a real server on loopback: fake nodes register,
//! take placements, report them running, and report stops as complete.

use edge_api::{Client, QueryOptions};
use edge_sim::{SimConfig, Stats};
use edge_spec::{ClientStatus, Job};
use std::time::Duration;

fn job(count: u32) -> Job {
    let json = serde_json::json!({
        "id": "simjob",
        "name": "simjob",
        "groups": [{
            "name": "g",
            "count": count,
            "tasks": [{
                "name": "t",
                "driver": "exec",
                "config": {"command": "/bin/true"},
                "resources": {"cpu": 10, "memory": 10}
            }]
        }]
    });
    serde_json::from_value(json).expect("job json")
}

async fn until(secs: u64, what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count(api: &Client, status: ClientStatus) -> usize {
    api.job_allocs("simjob", QueryOptions::default())
        .await
        .map(|(a, _)| a.iter().filter(|a| a.client_status == status).count())
        .unwrap_or(0)
}

#[tokio::test]
async fn fake_nodes_run_and_stop_allocations() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = edge_server::ServerConfig::new(dir.path().to_path_buf(), "127.0.0.1:0".parse()?);
    cfg.heartbeat_ttl = Duration::from_secs(2);
    let srv = edge_server::start(cfg).await?;
    let addr = format!("http://{}", srv.addr);
    let api = Client::new(&addr, None)?;

    let sim = edge_sim::start(SimConfig::new(addr.clone(), srv.token.clone(), 20))?;
    let stats = sim.stats();
    until(20, "20 nodes ready", async || {
        api.health().await.is_ok_and(|h| h.nodes_ready == 20)
    })
    .await;
    assert_eq!(Stats::get(&stats.registered), 20);

    api.register(&job(60)).await?;
    until(20, "60 running", async || {
        count(&api, ClientStatus::Running).await == 60
    })
    .await;
    let (allocs, _) = api.job_allocs("simjob", QueryOptions::default()).await?;
    let nodes: std::collections::HashSet<_> = allocs.iter().map(|a| &a.node_id).collect();
    assert!(nodes.len() > 1, "placements spread over fake nodes");

    // Heartbeats keep every node ready past several TTLs.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(api.health().await?.nodes_ready, 20);

    api.stop_job("simjob", false).await?;
    until(20, "60 complete", async || {
        count(&api, ClientStatus::Complete).await == 60
    })
    .await;
    assert_eq!(Stats::get(&stats.running), 60);
    assert_eq!(Stats::get(&stats.complete), 60);

    // A node that stops heartbeating goes down.
    sim.shutdown().await;
    until(20, "nodes down", async || {
        api.health().await.is_ok_and(|h| h.nodes_ready == 0)
    })
    .await;
    srv.shutdown().await;
    Ok(())
}

/// Over TLS every fake node joins with the token (CSR), then heartbeats,
/// watches and reports with its own certificate.
#[tokio::test]
async fn fake_nodes_speak_mutual_tls() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = edge_server::ServerConfig::new(dir.path().to_path_buf(), "127.0.0.1:0".parse()?);
    cfg.tls = true;
    let srv = edge_server::start(cfg).await?;
    assert!(srv.url.starts_with("https://"));
    let ca = edge_api::tls::ClusterCa::known(srv.server.ca_pem(), None)?;
    let api = Client::with_tls(&srv.url, None, edge_api::tls::client_config(ca, None)?)?;

    let sim = edge_sim::start(SimConfig::new(srv.url.clone(), srv.token.clone(), 20))?;
    until(30, "20 nodes ready over mTLS", async || {
        api.health().await.is_ok_and(|h| h.nodes_ready == 20)
    })
    .await;
    api.register(&job(40)).await?;
    until(20, "40 running", async || {
        count(&api, ClientStatus::Running).await == 40
    })
    .await;
    sim.shutdown().await;

    // The same fake nodes with a token that pins another CA never join.
    let wrong = format!("K10{}::x", "0".repeat(64));
    let mut cfg = SimConfig::new(srv.url.clone(), wrong, 1);
    cfg.name_prefix = "impostor".into();
    let sim = edge_sim::start(cfg)?;
    let stats = sim.stats();
    until(10, "pin refused", async || Stats::get(&stats.errors) > 0).await;
    assert_eq!(Stats::get(&stats.registered), 0);
    sim.shutdown().await;
    srv.shutdown().await;
    Ok(())
}

#[test]
fn rejects_a_bad_address() {
    let err = edge_sim::start(SimConfig::new("localhost:1".into(), "t".into(), 1));
    assert!(matches!(err, Err(edge_sim::SimError::Address { .. })));
}
