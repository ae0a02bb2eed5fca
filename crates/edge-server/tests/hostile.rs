//! Hostile and unlucky input against a real server: made-up methods and
//! paths, oversize bodies, jobs past the limits, reports of allocations that
//! do not exist, load reports out of range or of made-up names, job
//! versions that cannot be read, and a disk slow to read.

mod common;

use common::*;
use edge_api::{AllocUpdate, QueryOptions};
use edge_spec::{ClientStatus, DesiredStatus, EvalStatus};
use edge_store::GcConfig;
use std::time::Duration;

async fn eval_done(c: &edge_api::Client, id: &str) {
    eventually(10, async || {
        let (e, _) = c.eval(id, QueryOptions::default()).await.ok()?;
        (e.status != EvalStatus::Pending).then_some(())
    })
    .await
}

#[tokio::test]
async fn metrics_labels_come_from_a_closed_set() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", h.addr);
    for i in 0..300 {
        let method = reqwest::Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
        http.request(method, format!("{base}/v1/made/up/{i}"))
            .send()
            .await
            .unwrap();
        http.get(format!("{base}/v1/job/nosuch{i}"))
            .send()
            .await
            .unwrap();
    }
    let text = http
        .get(format!("{base}/v1/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("MADEUP"), "{text}");
    assert!(!text.contains("/made/up"), "{text}");
    assert!(!text.contains("nosuch"), "{text}");
    assert!(text.contains(r#"method="OTHER""#), "{text}");
    assert!(text.contains(r#"route="unmatched""#), "{text}");
    assert!(
        text.contains(r#"method="GET",route="/v1/job/{id}",code="404"} 300"#),
        "{text}"
    );
    assert!(text.len() < 16 * 1024, "{} bytes", text.len());
    h.shutdown().await;
}

/// The issue's attack: a crowd of connections that never send a header.
/// The bound is generous for a loaded CI machine; `benches/idle_conns.sh`
/// measures the latency itself.
#[tokio::test]
async fn a_thousand_idle_connections_do_not_stop_the_api() {
    edge_api::listen::raise_fd_limit().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(tokio::net::TcpStream::connect(h.addr).await.unwrap());
    }
    let c = client(&h);
    let started = std::time::Instant::now();
    let nodes = c.nodes().await.unwrap();
    let took = started.elapsed();
    eprintln!("GET /v1/nodes with 1000 idle connections: {took:?}");
    assert!(nodes.is_empty());
    assert!(took < Duration::from_secs(2), "{took:?}");
    drop(idle);
    h.shutdown().await;
}

#[tokio::test]
async fn an_oversize_body_is_413_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_with(dir.path(), |c| c.listen.max_body_bytes = 64 * 1024).await;
    let big = format!(r#"{{"job": {{"id": "{}"}}}}"#, "x".repeat(100 * 1024));
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/jobs", h.addr))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: serde_json::Value = r.json().await.unwrap();
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("the limit is 65536 bytes"), "{error}");
    h.shutdown().await;
}

#[tokio::test]
async fn jobs_past_the_limits_are_400_naming_field_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let c = client(&h);
    let mut j = job("web", 1);
    j.groups[0].count = 10_001;
    let err = c.register(&j).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(
        err.to_string()
            .contains("job.web.group.web.count: count is 10001; the limit is 10000"),
        "{err}"
    );
    j.groups[0].count = 1;
    j.groups[0].tasks[0].driver = "nosuchdriver".into();
    let err = c.plan(&j).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(
        err.to_string()
            .contains("unknown driver \"nosuchdriver\"; known drivers are"),
        "{err}"
    );
    j.groups[0].tasks[0].driver = "exec".into();
    j.groups[0].tasks[0].name = "../../tmp/x".into();
    let err = c.register(&j).await.unwrap_err();
    assert!(
        err.to_string().contains("task name \"../../tmp/x\""),
        "{err}"
    );
    assert!(c.jobs(QueryOptions::default()).await.unwrap().0.is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn a_report_of_an_unknown_allocation_is_404_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    register(&h, node("n1", 4000, 4096)).await;
    let c = client(&h);
    let r = c.register(&job("web", 1)).await.unwrap();
    eval_done(&c, r.eval_id.as_deref().unwrap()).await;
    let (allocs, _) = c.job_allocs("web", QueryOptions::default()).await.unwrap();
    let report = |id: &str| AllocUpdate {
        networks: Default::default(),
        address: None,
        id: id.to_string(),
        client_status: ClientStatus::Running,
        client_description: String::new(),
        task_states: Default::default(),
        checks: Default::default(),
        health: None,
    };
    let before = h.server.store().index();
    let err = agent_client(&h)
        .agent_update_allocs("n1", vec![report(&allocs[0].id), report("no-such-alloc")])
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert!(
        err.to_string()
            .contains("unknown allocation \"no-such-alloc\""),
        "{err}"
    );
    assert_eq!(h.server.store().index(), before, "nothing was committed");
    h.shutdown().await;
}

/// Version 0 runs on the node (its allocations stopping but still running)
/// while version 1 replaces it.
async fn two_versions_on_one_node(h: &edge_server::ServerHandle) -> Vec<String> {
    register(h, node("n1", 4000, 4096)).await;
    let c = client(h);
    let r = c.register(&job("web", 2)).await.unwrap();
    eval_done(&c, r.eval_id.as_deref().unwrap()).await;
    let (old, _) = c.job_allocs("web", QueryOptions::default()).await.unwrap();
    let reports = old
        .iter()
        .map(|a| AllocUpdate {
            networks: Default::default(),
            address: None,
            id: a.id.clone(),
            client_status: ClientStatus::Running,
            client_description: String::new(),
            task_states: Default::default(),
            checks: Default::default(),
            health: None,
        })
        .collect();
    agent_client(h)
        .agent_update_allocs("n1", reports)
        .await
        .unwrap();
    let mut v1 = job("web", 2);
    v1.groups[0].tasks[0]
        .config
        .insert("args".into(), serde_json::json!(["2000"]));
    // All at once: both old copies stop while the new ones start.
    v1.update = Some(edge_spec::UpdatePolicy {
        max_parallel: Some(0),
        ..Default::default()
    });
    let r = c.register(&v1).await.unwrap();
    assert_eq!(r.version, 1);
    eval_done(&c, r.eval_id.as_deref().unwrap()).await;
    let (all, _) = c.job_allocs("web", QueryOptions::default()).await.unwrap();
    assert_eq!(all.len(), 4);
    let old: Vec<String> = old.into_iter().map(|a| a.id).collect();
    for a in &all {
        if old.contains(&a.id) {
            assert_eq!(a.desired_status, DesiredStatus::Stop);
            assert_eq!(a.client_status, ClientStatus::Running);
        }
    }
    old
}

#[tokio::test]
async fn gc_keeps_a_version_still_running_and_the_agent_still_gets_it() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let old = two_versions_on_one_node(&h).await;
    let cfg = GcConfig {
        keep_versions: 1,
        ..GcConfig::default()
    };
    h.server
        .store()
        .gc(&cfg, edge_server::now_ms())
        .await
        .unwrap();
    assert!(
        h.server
            .store()
            .job_version("web", 0)
            .await
            .unwrap()
            .is_some()
    );
    let (listed, _) = agent_client(&h)
        .agent_allocs("n1", QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(listed.len(), 4);
    for id in &old {
        let a = listed.iter().find(|a| &a.alloc.id == id).expect("listed");
        assert_eq!(a.job.version, 0);
    }
    h.shutdown().await;
}

#[tokio::test]
async fn an_unreadable_job_version_is_503_not_an_omission() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let old = two_versions_on_one_node(&h).await;
    // What an older GC did: the version of running allocations deleted.
    let db = rusqlite::Connection::open(dir.path().join("edge.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute(
        "DELETE FROM job_versions WHERE job_id = 'web' AND version = 0",
        [],
    )
    .unwrap();
    drop(db);
    let err = agent_client(&h)
        .agent_allocs("n1", QueryOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(503), "{err}");
    let text = err.to_string();
    assert!(
        old.iter().any(|id| text.contains(id.as_str())) && text.contains("version 0"),
        "{text}"
    );
    h.shutdown().await;
}

/// A plan that scans every node against hundreds of constraints takes a
/// while; the server's other requests must not wait for it. On this
/// current-thread runtime a plan run inline would stop the ticker below
/// for as long as the plan takes.
#[tokio::test]
async fn a_long_plan_does_not_stall_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let nodes: Vec<_> = (0..2000)
        .map(|i| {
            let mut n = node(&format!("n{i}"), 4000, 4096);
            n.status = edge_spec::NodeStatus::Ready;
            n
        })
        .collect();
    h.server
        .store()
        .commit(move |_| {
            Ok::<_, edge_store::StoreError>((
                edge_store::Batch {
                    nodes,
                    ..Default::default()
                },
                (),
            ))
        })
        .await
        .unwrap();
    let mut j = job("web", 1);
    let g = j.groups[0].clone();
    j.groups = (0..20)
        .map(|i| edge_spec::Group {
            name: format!("g{i}"),
            ..g.clone()
        })
        .collect();
    // Every node passes all but the last constraint, so each group checks
    // all of them on every node.
    j.constraints = (0..255)
        .map(|i| edge_spec::Constraint {
            attribute: "${attr.kernel.name}".into(),
            operator: edge_spec::ConstraintOp::Ne,
            value: format!("os{i}"),
        })
        .collect();
    j.constraints.push(edge_spec::Constraint {
        attribute: "${attr.kernel.name}".into(),
        operator: edge_spec::ConstraintOp::Eq,
        value: "plan9".into(),
    });

    let (gap_tx, gap_rx) = tokio::sync::watch::channel(Duration::ZERO);
    let ticker = tokio::spawn(async move {
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let now = tokio::time::Instant::now();
            gap_tx.send_modify(|g| *g = (*g).max(now - last));
            last = now;
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = tokio::time::Instant::now();
    let plan = client(&h).plan(&j).await.unwrap();
    let took = started.elapsed();
    ticker.abort();
    assert_eq!(plan.failed.len(), 20, "no group fits");
    let gap = *gap_rx.borrow();
    assert!(
        took > Duration::from_millis(100),
        "plan too quick to tell: {took:?}"
    );
    assert!(
        gap < took / 2,
        "ticker stalled {gap:?} during a {took:?} plan"
    );
    h.shutdown().await;
}

/// A read of what only the disk holds (job history, an old version an
/// agent still runs, the event feed) may take long. On this runtime with
/// one worker, a read run on that worker would stop every other request
/// until it finished; the agent's read of an old version, made under the
/// state's read lock, would hold back every commit (heartbeats included)
/// whatever the number of workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_slow_read_stalls_no_other_request() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    two_versions_on_one_node(&h).await;
    let hold = h.server.store().hold_reads();
    let waiting = || hold.waiting();
    let history = tokio::spawn({
        let c = client(&h);
        async move { c.job_versions("web").await }
    });
    let watch = tokio::spawn({
        let c = agent_client(&h);
        async move { c.agent_allocs("n1", QueryOptions::default()).await }
    });
    let events = tokio::spawn({
        let url = format!("http://{}/v1/event/stream?index=0", h.addr);
        async move {
            let mut resp = reqwest::get(url).await?;
            resp.chunk().await
        }
    });
    let reached = std::time::Instant::now();
    while waiting() == 0 && reached.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(waiting() > 0, "no read reached the store");

    // Released by a thread, not by this test's tasks: with the worker
    // stuck in a read they would never run.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let valve = std::thread::spawn(move || {
        let _ = released.recv_timeout(Duration::from_secs(10));
        drop(hold);
    });
    let started = std::time::Instant::now();
    let c = client(&h);
    c.health().await.unwrap();
    c.jobs(QueryOptions::default()).await.unwrap();
    agent_client(&h).agent_heartbeat("n1").await.unwrap();
    let took = started.elapsed();
    let _ = release.send(());
    valve.join().unwrap();
    assert!(
        took < Duration::from_secs(3),
        "health, job list and heartbeat took {took:?} behind a held read"
    );

    assert_eq!(history.await.unwrap().unwrap().len(), 2);
    let (listed, _) = watch.await.unwrap().unwrap();
    assert_eq!(listed.len(), 4);
    assert!(listed.iter().any(|a| a.job.version == 0));
    let first = events.await.unwrap().unwrap().expect("an event");
    assert!(first.starts_with(b"{"), "{first:?}");
    h.shutdown().await;
}

/// One malformed request: method, path and query, content type and body,
/// the status it must get, and a word the error must contain.
struct Malformed {
    method: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    body: &'static str,
    status: u16,
    names: &'static str,
}

const MALFORMED: &[Malformed] = &[
    // Every body is an object; serde alone would read `[]` as a struct
    // whose fields all have defaults.
    Malformed {
        method: "POST",
        path: "/v1/namespace/prod",
        content_type: Some("application/json"),
        body: "[]",
        status: 400,
        names: "expected a JSON object",
    },
    Malformed {
        method: "GET",
        path: "/v1/jobs?index=abc",
        content_type: None,
        body: "",
        status: 400,
        names: "index",
    },
    Malformed {
        method: "GET",
        path: "/v1/jobs?wait=zzz",
        content_type: None,
        body: "",
        status: 400,
        names: "wait",
    },
    Malformed {
        method: "GET",
        path: "/v1/allocations?wait=zzz",
        content_type: None,
        body: "",
        status: 400,
        names: "wait",
    },
    Malformed {
        method: "DELETE",
        path: "/v1/job/x?purge=maybe",
        content_type: None,
        body: "",
        status: 400,
        names: "purge",
    },
    Malformed {
        method: "GET",
        path: "/v1/client/allocation/x/logs?follow=maybe",
        content_type: None,
        body: "",
        status: 400,
        names: "follow",
    },
    Malformed {
        method: "GET",
        path: "/v1/event/stream?index=-1",
        content_type: None,
        body: "",
        status: 400,
        names: "index",
    },
    Malformed {
        method: "GET",
        path: "/v1/agent/allocs/x?index=abc",
        content_type: None,
        body: "",
        status: 400,
        names: "index",
    },
    Malformed {
        method: "GET",
        path: "/v1/job/%FF",
        content_type: None,
        body: "",
        status: 400,
        names: "id",
    },
    Malformed {
        method: "POST",
        path: "/v1/jobs",
        content_type: Some("text/plain"),
        body: "{}",
        status: 415,
        names: "application/json",
    },
    Malformed {
        method: "POST",
        path: "/v1/job/x/plan",
        content_type: None,
        body: "{}",
        status: 415,
        names: "application/json",
    },
    Malformed {
        method: "POST",
        path: "/v1/jobs",
        content_type: Some("application/json"),
        body: "not json",
        status: 400,
        names: "invalid request body",
    },
];

#[tokio::test]
async fn malformed_queries_paths_and_bodies_are_json_errors_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let http = reqwest::Client::new();
    for m in MALFORMED {
        let what = format!("{} {}", m.method, m.path);
        let method = reqwest::Method::from_bytes(m.method.as_bytes()).unwrap();
        let mut req = http
            .request(method, format!("http://{}{}", h.addr, m.path))
            .body(m.body);
        if let Some(ct) = m.content_type {
            req = req.header("content-type", ct);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), m.status, "{what}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert_eq!(ct, "application/json", "{what}");
        let v: serde_json::Value = r.json().await.unwrap();
        let error = v["error"].as_str().unwrap_or_else(|| panic!("{what}: {v}"));
        assert!(error.contains(m.names), "{what}: {error}");
    }
    h.shutdown().await;
}

/// A random load report: numbers drawn across and beyond their ranges,
/// and names the catalog does not have.
fn any_report() -> impl proptest::strategy::Strategy<Value = edge_api::LoadReport> {
    use proptest::prelude::*;
    let number = prop_oneof![0.0..100.0f64, -1e3..0.0f64, 1e8..1e12f64];
    let instances = prop::collection::btree_map(
        "[a-z0-9]{1,8}",
        (number.clone(), any::<u64>()).prop_map(|(in_flight, requests)| edge_api::InstanceLoad {
            in_flight,
            requests,
        }),
        0..4,
    );
    let service = (
        number.clone(),
        any::<u64>(),
        prop_oneof![Just(2_000u64), any::<u64>()],
        any::<u32>(),
        instances,
    )
        .prop_map(|(in_flight, requests, interval_ms, waiting, instances)| {
            edge_api::ServiceLoad {
                in_flight,
                requests,
                interval_ms,
                waiting,
                instances,
            }
        });
    let alloc = (
        prop_oneof![0.0..1e6f64, -1e3..0.0f64, 1e6..1e9f64],
        any::<u64>(),
    )
        .prop_map(|(cpu_percent, memory_bytes)| edge_api::AllocLoad {
            cpu_percent,
            memory_bytes,
        });
    (
        prop::collection::btree_map("[a-z0-9./-]{1,12}", service, 0..4),
        prop::collection::btree_map("[a-z0-9-]{1,12}", alloc, 0..3),
    )
        .prop_map(|(services, allocs)| edge_api::LoadReport { services, allocs })
}

/// Whether every number of `r` is within its range, as the server checks.
fn in_range(r: &edge_api::LoadReport) -> bool {
    let flight = |f: f64| (0.0..=1e9).contains(&f);
    r.services.values().all(|l| {
        flight(l.in_flight)
            && (1..=3_600_000).contains(&l.interval_ms)
            && l.instances.values().all(|i| flight(i.in_flight))
    }) && r
        .allocs
        .values()
        .all(|a| (0.0..=1e6).contains(&a.cpu_percent))
}

/// The autoscaler's input: a number out of its range is refused naming
/// its field, no report makes the server fail, and names the catalog
/// and the store do not have leave no trace on the metrics.
#[tokio::test]
async fn load_reports_are_checked_by_field_and_made_up_names_leave_no_trace() {
    use proptest::strategy::{Strategy, ValueTree};
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    register(&h, node("n1", 1000, 1000)).await;
    let agent = agent_client(&h);
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = any_report();
    let (mut taken, mut refused) = (0, 0);
    for _ in 0..300 {
        let report = strategy.new_tree(&mut runner).unwrap().current();
        match agent.agent_load("n1", &report).await {
            Ok(()) => {
                assert!(in_range(&report), "took {report:?}");
                taken += 1;
            }
            Err(edge_api::ApiError::Status {
                status, message, ..
            }) => {
                assert_eq!(status, 400, "{message}");
                assert!(!in_range(&report), "refused {report:?}: {message}");
                assert!(
                    ["in_flight", "interval_ms", "cpu_percent"]
                        .iter()
                        .any(|f| message.contains(f))
                        && (message.contains("services.") || message.contains("allocs.")),
                    "{message}"
                );
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        taken > 20 && refused > 20,
        "{taken} taken, {refused} refused"
    );
    let text = reqwest::get(format!("http://{}/v1/metrics", h.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for family in [
        "edge_service_in_flight{",
        "edge_service_requests_total{",
        "edge_service_instance_",
        "edge_alloc_",
    ] {
        assert!(
            !text.lines().any(|l| l.starts_with(family)),
            "{family}: {text}"
        );
    }
    h.shutdown().await;
}
