//! The server's HTTP API against a real server: jobs, placement, agents,
//! liveness, restarts, bad input and the OpenAPI contract.

mod common;

use common::*;
use edge_api::{AllocUpdate, QueryOptions};
use edge_spec::{ClientStatus, EvalStatus, NodeStatus, TaskState};
use std::collections::BTreeMap;
use std::time::Duration;

async fn wait_eval_done(c: &edge_api::Client, id: &str) -> edge_spec::Evaluation {
    eventually(10, async || {
        let (e, _) = c.eval(id, QueryOptions::default()).await.ok()?;
        (e.status != EvalStatus::Pending).then_some(e)
    })
    .await
}

#[tokio::test]
async fn job_without_nodes_is_blocked_with_reasons_then_placed_when_a_node_joins() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let c = client(&h);
    let r = c.register(&job("web", 2)).await.unwrap();
    let e = wait_eval_done(&c, r.eval_id.as_deref().unwrap()).await;
    assert_eq!(e.status, EvalStatus::Blocked);
    assert_eq!(e.queued_allocations.get("web"), Some(&2));
    assert!(e.failed_tg_allocs.contains_key("web"));

    register(&h, node("n1", 4000, 4096)).await;
    let allocs = eventually(10, async || {
        let (a, _) = c.job_allocs("web", QueryOptions::default()).await.ok()?;
        (a.len() == 2).then_some(a)
    })
    .await;
    assert!(allocs.iter().all(|a| a.node_id == "n1"));
    h.shutdown().await;
}

#[tokio::test]
async fn placement_failure_names_the_missing_driver() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let mut n = node("n1", 4000, 4096);
    n.drivers.clear();
    register(&h, n).await;
    let c = client(&h);
    let r = c.register(&job("web", 1)).await.unwrap();
    let e = wait_eval_done(&c, r.eval_id.as_deref().unwrap()).await;
    let m = &e.failed_tg_allocs["web"];
    assert_eq!(m.nodes_evaluated, 1);
    assert!(
        m.constraint_filtered.keys().any(|k| k.contains("exec")),
        "reasons: {:?}",
        m.constraint_filtered
    );
    h.shutdown().await;
}

#[tokio::test]
async fn count_four_spreads_over_two_nodes_and_versions_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    register(&h, node("n1", 4000, 4096)).await;
    register(&h, node("n2", 4000, 4096)).await;
    let c = client(&h);
    let r = c.register(&job("web", 4)).await.unwrap();
    assert_eq!(r.version, 0);
    wait_eval_done(&c, r.eval_id.as_deref().unwrap()).await;
    let (allocs, _) = c.job_allocs("web", QueryOptions::default()).await.unwrap();
    assert_eq!(allocs.len(), 4);
    let on_n1 = allocs.iter().filter(|a| a.node_id == "n1").count();
    assert_eq!(on_n1, 2, "allocations spread 2+2");

    // Same spec again: no new version.
    let same = c.register(&job("web", 4)).await.unwrap();
    assert!(!same.changed);
    assert_eq!(same.version, 0);
    // A change: version 1; the plan shows the diff first.
    let plan = c.plan(&job("web", 5)).await.unwrap();
    assert_eq!(plan.diff_type, "edited");
    assert!(
        plan.diff.iter().any(|l| l.contains("\"count\": 5")),
        "{:?}",
        plan.diff
    );
    assert_eq!(plan.changes["web"].place, 1);
    let r1 = c.register(&job("web", 5)).await.unwrap();
    assert_eq!(r1.version, 1);
    let versions = c.job_versions("web").await.unwrap();
    assert_eq!(
        versions.iter().map(|j| j.version).collect::<Vec<_>>(),
        vec![1, 0]
    );
    let rev = c.revert_job("web", 0).await.unwrap();
    wait_eval_done(&c, rev.eval_id.as_deref().unwrap()).await;
    let j = c.job("web").await.unwrap();
    assert_eq!(j.version, 2);
    assert_eq!(j.groups[0].count, 4);
    h.shutdown().await;
}

#[tokio::test]
async fn stop_and_purge() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    register(&h, node("n1", 4000, 4096)).await;
    let c = client(&h);
    let r = c.register(&job("web", 2)).await.unwrap();
    wait_eval_done(&c, r.eval_id.as_deref().unwrap()).await;
    let s = c.stop_job("web", false).await.unwrap();
    wait_eval_done(&c, s.eval_id.as_deref().unwrap()).await;
    let (allocs, _) = c.job_allocs("web", QueryOptions::default()).await.unwrap();
    assert!(
        allocs
            .iter()
            .all(|a| a.desired_status == edge_spec::DesiredStatus::Stop)
    );
    assert!(c.job("web").await.unwrap().stop);
    c.stop_job("web", true).await.unwrap();
    assert!(c.job("web").await.unwrap_err().is_not_found());
    h.shutdown().await;
}

#[tokio::test]
async fn agent_door_refuses_bad_tokens_unknown_nodes_and_malformed_reports() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", h.addr);
    let body = serde_json::json!({"node": node("n1", 1000, 1000)});
    let r = http
        .post(format!("{base}/v1/agent/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(format!("{base}/v1/agent/register"))
        .header("x-edge-token", "wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        c_nodes(&h).await.is_empty(),
        "refused registration stored nothing"
    );

    let ac = agent_client(&h);
    assert!(
        ac.agent_heartbeat("ghost")
            .await
            .unwrap_err()
            .is_not_found()
    );

    register(&h, node("n1", 4000, 4096)).await;
    let before = c_index(&h).await;
    let r = http
        .post(format!("{base}/v1/agent/allocs/n1"))
        .header("x-edge-token", &h.token)
        .header("content-type", "application/json")
        .body(r#"{"allocs": [{"id": 7}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("invalid request body"), "{text}");
    assert_eq!(
        c_index(&h).await,
        before,
        "a malformed report changes nothing"
    );
    h.shutdown().await;
}

async fn c_nodes(h: &edge_server::ServerHandle) -> Vec<edge_api::NodeListStub> {
    client(h).nodes().await.unwrap()
}

async fn c_index(h: &edge_server::ServerHandle) -> u64 {
    client(h).health().await.unwrap().index
}

#[tokio::test]
async fn a_misspelled_driver_config_key_is_400_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_with(dir.path(), |c| {
        c.driver_configs = edge_spec::DriverConfigs::default().with("exec", |config| {
            edge_driver::config::finding(edge_driver_exec::check_config(config))
        });
    })
    .await;
    let mut j = job("web", 1);
    let config = &mut j.groups[0].tasks[0].config;
    let command = config.remove("command").unwrap();
    config.insert("comand".to_string(), command);
    let field = "job.web.group.web.task.server.config.comand";
    let err = client(&h).register(&j).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(field) && text.contains("unknown field `comand`"),
        "{text}"
    );
    let err = client(&h).plan(&j).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains(field), "{err}");
    assert!(
        client(&h)
            .jobs(QueryOptions::default())
            .await
            .unwrap()
            .0
            .is_empty()
    );
    client(&h).register(&job("web", 1)).await.unwrap();
    h.shutdown().await;
}

#[tokio::test]
async fn bad_json_is_400_oversize_is_413_invalid_job_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_with(dir.path(), |c| c.listen.max_body_bytes = 64 * 1024).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", h.addr);
    let r = http
        .post(format!("{base}/v1/jobs"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("invalid request body")
    );

    let big = format!(r#"{{"job": {{"id": "{}"}}}}"#, "x".repeat(100 * 1024));
    let r = http
        .post(format!("{base}/v1/jobs"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    let mut j = job("web", 1);
    j.groups[0].tasks[0].driver = String::new();
    let err = client(&h).register(&j).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("driver"), "{err}");
    assert!(
        client(&h)
            .jobs(QueryOptions::default())
            .await
            .unwrap()
            .0
            .is_empty()
    );

    let r = http.get(format!("{base}/v1/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    h.shutdown().await;
}

#[tokio::test]
async fn missed_heartbeat_marks_node_down_and_replaces_its_allocations() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_with(dir.path(), |c| c.heartbeat_ttl = Duration::from_millis(600)).await;
    register(&h, node("n1", 4000, 4096)).await;
    register(&h, node("n2", 4000, 4096)).await;
    let c = client(&h);
    let ac = agent_client(&h);
    let r = c.register(&job("web", 2)).await.unwrap();
    wait_eval_done(&c, r.eval_id.as_deref().unwrap()).await;
    // n2 keeps heartbeating, n1 goes silent.
    let beat = {
        let ac = ac.clone();
        tokio::spawn(async move {
            loop {
                let _ = ac.agent_heartbeat("n2").await;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };
    let node1 = eventually(10, async || {
        let n = c.node("n1").await.ok()?;
        (n.status == NodeStatus::Down).then_some(n)
    })
    .await;
    assert_eq!(node1.status_description, "missed heartbeat");
    let allocs = eventually(10, async || {
        let (a, _) = c.job_allocs("web", QueryOptions::default()).await.ok()?;
        let live: Vec<_> = a
            .iter()
            .filter(|a| a.desired_status == edge_spec::DesiredStatus::Run)
            .cloned()
            .collect();
        (live.len() == 2 && live.iter().all(|a| a.node_id == "n2")).then_some(a)
    })
    .await;
    assert!(
        allocs
            .iter()
            .any(|a| a.node_id == "n1" && a.client_status == ClientStatus::Lost),
        "the allocation on the dead node is lost"
    );
    beat.abort();
    h.shutdown().await;
}

#[tokio::test]
async fn agent_watch_blocks_until_its_allocations_change_and_reports_land() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    register(&h, node("n1", 4000, 4096)).await;
    let ac = agent_client(&h);
    let (list, meta) = ac
        .agent_allocs("n1", QueryOptions::default())
        .await
        .unwrap();
    assert!(list.is_empty());
    let watcher = {
        let ac = ac.clone();
        tokio::spawn(async move {
            ac.agent_allocs(
                "n1",
                QueryOptions::blocking(meta.index.max(1), Duration::from_secs(20)),
            )
            .await
            .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !watcher.is_finished(),
        "the watch blocks while nothing changes"
    );
    client(&h).register(&job("web", 1)).await.unwrap();
    let (list, _) = tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].job.id, "web");

    let id = list[0].alloc.id.clone();
    let mut ts = BTreeMap::new();
    ts.insert("server".to_string(), TaskState::default());
    ac.agent_update_allocs(
        "n1",
        vec![AllocUpdate {
            networks: Default::default(),
            address: None,
            id: id.clone(),
            client_status: ClientStatus::Running,
            client_description: "tasks are running".to_string(),
            task_states: ts,
            checks: Default::default(),
            health: None,
        }],
    )
    .await
    .unwrap();
    let a = client(&h).alloc(&id[..8]).await.unwrap();
    assert_eq!(a.client_status, ClientStatus::Running);
    h.shutdown().await;
}

/// `?since=N`: each answer carries only the allocations the server
/// changed after the agent's last one (not the agent's own reports), with
/// the ids of every one the node holds; with `ids=on_removal` (the
/// client's way), the ids only when one left.
#[tokio::test]
async fn agent_watch_since_an_index_carries_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    register(&h, node("n1", 4000, 4096)).await;
    let ac = agent_client(&h);
    let c = client(&h);
    for id in ["web", "api"] {
        let r = c.register(&job(id, 1)).await.unwrap();
        wait_eval_done(&c, r.eval_id.as_deref().unwrap()).await;
    }
    let (all, meta) = ac
        .agent_alloc_changes("n1", 0, QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(all.ids.as_ref().map(Vec::len), Some(2));
    assert_eq!(all.changed.len(), 2);
    let web = all
        .changed
        .iter()
        .find(|a| a.job.id == "web")
        .map(|a| a.alloc.id.clone())
        .unwrap();
    // The agent's own report does not come back to it: the watch waits
    // for a change of the server's.
    ac.agent_update_allocs(
        "n1",
        vec![AllocUpdate {
            networks: Default::default(),
            address: None,
            id: web.clone(),
            client_status: ClientStatus::Running,
            client_description: String::new(),
            task_states: BTreeMap::new(),
            checks: Default::default(),
            health: None,
        }],
    )
    .await
    .unwrap();
    let (echo, _) = ac
        .agent_alloc_changes(
            "n1",
            meta.index,
            QueryOptions::blocking(meta.index, Duration::from_millis(300)),
        )
        .await
        .unwrap();
    assert_eq!((echo.ids, echo.changed.len()), (None, 0));
    // A change of the server's to one comes back alone.
    c.stop_job("web", false).await.unwrap();
    let (next, meta) = ac
        .agent_alloc_changes(
            "n1",
            meta.index,
            QueryOptions::blocking(meta.index, Duration::from_secs(10)),
        )
        .await
        .unwrap();
    assert_eq!(next.ids, None, "nothing left the node's list");
    let changed: Vec<&str> = next.changed.iter().map(|a| a.alloc.id.as_str()).collect();
    assert_eq!(changed, [web.as_str()]);
    assert_eq!(
        next.changed[0].alloc.desired_status,
        edge_spec::DesiredStatus::Stop
    );
    assert_eq!(
        next.changed[0].alloc.client_status,
        ClientStatus::Running,
        "the report is in the answer that carries the server's change"
    );
    // Nothing since: no allocation, every id.
    let (same, _) = ac
        .agent_alloc_changes("n1", meta.index, QueryOptions::default())
        .await
        .unwrap();
    assert_eq!((same.ids, same.changed.len()), (None, 0));
    // An agent that does not ask for `on_removal` gets the ids each time.
    let older: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "http://{}/v1/agent/allocs/n1?since={}",
            h.addr, meta.index
        ))
        .header("x-edge-token", &h.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(older["ids"].as_array().map(Vec::len), Some(2), "{older}");
    assert_eq!(older["changed"], serde_json::json!([]));
    let bad = reqwest::Client::new()
        .get(format!(
            "http://{}/v1/agent/allocs/n1?since=1&ids=sometimes",
            h.addr
        ))
        .header("x-edge-token", &h.token)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // A purged job's allocation leaves the ids: the agent stops it.
    c.stop_job("api", true).await.unwrap();
    let left = eventually(10, async || {
        let (l, _) = ac
            .agent_alloc_changes("n1", meta.index, QueryOptions::default())
            .await
            .ok()?;
        (l.ids.as_ref()?.len() == 1).then_some(l)
    })
    .await;
    assert_eq!(left.ids, Some(vec![web]));
    h.shutdown().await;
}

#[tokio::test]
async fn restart_keeps_jobs_versions_allocations_and_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let token = h.token.clone();
    register(&h, node("n1", 4000, 4096)).await;
    let c = client(&h);
    let r = c.register(&job("web", 2)).await.unwrap();
    wait_eval_done(&c, r.eval_id.as_deref().unwrap()).await;
    c.register(&job("web", 3)).await.unwrap();
    let before = eventually(10, async || {
        let (a, _) = c.job_allocs("web", QueryOptions::default()).await.ok()?;
        (a.len() == 3).then_some(a)
    })
    .await;
    h.shutdown().await;

    let h = start(dir.path()).await;
    assert_eq!(h.token, token);
    let c = client(&h);
    assert_eq!(c.job("web").await.unwrap().version, 1);
    assert_eq!(c.job_versions("web").await.unwrap().len(), 2);
    let (after, _) = c.job_allocs("web", QueryOptions::default()).await.unwrap();
    let ids = |v: &[edge_api::AllocListStub]| {
        let mut v: Vec<String> = v.iter().map(|a| a.id.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&before), ids(&after));
    h.shutdown().await;
}

#[tokio::test]
async fn blocking_list_and_event_stream_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let c = client(&h);
    // Index 0 means "do not block" (as in Nomad): give the store a first write.
    register(&h, node("n1", 4000, 4096)).await;
    let (_, meta) = c.jobs(QueryOptions::default()).await.unwrap();
    assert!(meta.index > 0);
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move {
            c.jobs(QueryOptions::blocking(meta.index, Duration::from_secs(20)))
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.register(&job("web", 1)).await.unwrap();
    let (jobs, m2) = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert!(m2.index > meta.index);

    let resp = c
        .stream("/v1/event/stream", &[("index", "0".to_string())])
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    use futures_util::StreamExt;
    let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let first: edge_api::StreamEvent =
        serde_json::from_str(std::str::from_utf8(&chunk).unwrap().lines().next().unwrap()).unwrap();
    assert!(first.index > 0);
    assert!(["job", "evaluation", "allocation", "node"].contains(&first.topic.as_str()));

    let text = reqwest::get(format!("http://{}/v1/metrics", h.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("edge_jobs 1"), "{text}");
    assert!(text.contains("edge_http_requests_total"));
    h.shutdown().await;
}

#[tokio::test]
async fn catalog_serves_running_instances_with_reported_health_and_blocks_until_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    register(&h, node("n1", 4000, 4096)).await;
    let c = client(&h);
    let mut j = job("web", 2);
    j.groups[0].services.push(edge_spec::Service {
        name: "web".to_string(),
        port: Some("http".to_string()),
        tags: vec!["v1".to_string()],
        checks: vec![edge_spec::Check {
            name: String::new(),
            check_type: edge_spec::CheckType::Tcp,
            path: None,
            port: None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            check_restart: None,
            command: String::new(),
            args: Vec::new(),
            task: String::new(),
            grpc_service: String::new(),
            grpc_use_tls: false,
        }],
        publish: None,
        shutdown_delay: Duration::ZERO,
    });
    c.register(&j).await.unwrap();
    let ac = agent_client(&h);
    let allocs = eventually(10, async || {
        let (l, _) = ac.agent_allocs("n1", QueryOptions::default()).await.ok()?;
        (l.len() == 2).then_some(l)
    })
    .await;
    let (cat, meta) = ac.catalog(QueryOptions::default()).await.unwrap();
    assert!(
        cat.services.is_empty(),
        "pending allocations are not in the catalog"
    );

    let waiter = {
        let ac = ac.clone();
        tokio::spawn(async move {
            ac.catalog(QueryOptions::blocking(meta.index, Duration::from_secs(20)))
                .await
                .unwrap()
        })
    };
    let report = |id: &str, health: edge_spec::HealthStatus| AllocUpdate {
        networks: Default::default(),
        address: None,
        id: id.to_string(),
        client_status: ClientStatus::Running,
        client_description: String::new(),
        task_states: BTreeMap::new(),
        checks: [("web".to_string(), health)].into_iter().collect(),
        health: None,
    };
    ac.agent_update_allocs(
        "n1",
        vec![
            report(&allocs[0].alloc.id, edge_spec::HealthStatus::Passing),
            report(&allocs[1].alloc.id, edge_spec::HealthStatus::Pending),
        ],
    )
    .await
    .unwrap();
    let (cat, _) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    let web = &cat.services["web"];
    assert_eq!(web.instances.len(), 2);
    assert_eq!(web.instances.iter().filter(|i| i.serving()).count(), 1);
    assert_eq!(web.tags, vec!["v1".to_string()]);
    let port = allocs[0].alloc.resources.ports[0].value;
    let inst = c.service("web").await.unwrap();
    assert!(
        inst.iter()
            .any(|i| i.port == port && i.address == "127.0.0.1")
    );
    let list = c.services().await.unwrap();
    assert_eq!((list[0].instances, list[0].passing), (2, 1));

    // A stopping allocation is withdrawn at once (draining), before its agent stops it.
    c.stop_job("web", false).await.unwrap();
    let drained = eventually(10, async || {
        let inst = c.service("web").await.ok()?;
        inst.iter()
            .all(|i| i.status == edge_spec::HealthStatus::Draining)
            .then_some(inst)
    })
    .await;
    assert!(drained.iter().all(|i| !i.serving()));
    assert!(c.service("nope").await.unwrap_err().is_not_found());
    h.shutdown().await;
}

/// The database holds every job's env and the token directory the join
/// token: neither is for other users of the host.
#[tokio::test]
async fn the_data_dir_database_and_token_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let h = start(&data).await;
    client(&h).register(&job("web", 1)).await.unwrap();
    assert_eq!(mode(&data), 0o700);
    for f in ["edge.db", "edge.db-wal", "edge.db-shm", "token"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    h.shutdown().await;
}

/// The routes the dashboard adds: what each node's allocations reserve, the
/// diff between two kept versions, the model groups and the model relay's
/// refusals, and the page itself beside the API.
#[tokio::test]
async fn dashboard_routes_answer_and_refuse_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    register(&h, node("n1", 4000, 4096)).await;
    let c = client(&h);
    let want = job("web", 3);
    let per_copy = &want.groups[0].tasks[0].resources;
    let (cpu, mem) = (u64::from(per_copy.cpu), u64::from(per_copy.memory));
    let r = c.register(&want).await.unwrap();
    wait_eval_done(&c, r.eval_id.as_deref().unwrap()).await;
    let n = &c_nodes(&h).await[0];
    assert_eq!(
        (n.allocated.cpu, n.allocated.memory),
        (3 * cpu, 3 * mem),
        "three live copies reserve three times a copy"
    );

    c.register(&job("web", 5)).await.unwrap();
    let base = format!("http://{}", h.addr);
    let get = async |path: &str| {
        let r = reqwest::get(format!("{base}{path}")).await.unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    };
    let (status, body) = get("/v1/job/web/diff?from=0&to=1").await;
    assert_eq!(status, 200, "{body}");
    let d: edge_api::JobVersionDiff = serde_json::from_str(&body).unwrap();
    assert_eq!(d.diff_type, "edited");
    assert!(
        d.diff
            .iter()
            .any(|l| l.starts_with('-') && l.contains("\"count\": 3")),
        "{body}"
    );
    assert!(
        d.diff
            .iter()
            .any(|l| l.starts_with('+') && l.contains("\"count\": 5")),
        "{body}"
    );
    let (status, body) = get("/v1/job/web/diff?from=1&to=1").await;
    assert_eq!((status, body.contains("\"none\"")), (200, true), "{body}");
    let (status, body) = get("/v1/job/web/diff?from=0&to=9").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no version 9"), "{body}");
    let (status, body) = get("/v1/job/nope/diff?from=0&to=1").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = get("/v1/job/web/diff?from=0").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = get("/v1/job/web/diff?from=0&to=99999999999999999999999").await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = get("/v1/models?namespace=*").await;
    assert_eq!((status, body.as_str()), (200, "[]"));
    let post = async |path: &str| {
        let r = reqwest::Client::new()
            .post(format!("{base}{path}"))
            .body("{\"inputs\": []}")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    };
    for bad in ["..%2F..%2Fetc", ".hidden", "a%20b", "x%3Fy", "a%2Fb"] {
        let (status, body) = post(&format!("/v1/model/web/infer/{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("model name"), "{body}");
    }
    let (status, body) = post("/v1/model/nosuch/infer/iris").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("nosuch"), "{body}");

    let (status, html) = get("/ui/").await;
    assert_eq!(status, 200);
    assert!(html.contains("/ui/app.js"), "{html}");
    let (status, body) = get("/ui/nope.js").await;
    assert_eq!(status, 404, "{body}");
    h.shutdown().await;
}
