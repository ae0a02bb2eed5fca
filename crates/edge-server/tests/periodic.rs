//! Periodic and parameterized jobs against a real server whose launch
//! loop runs on a clock the test moves by hand: launches on schedule, a
//! launch skipped while a child runs (prohibit_overlap), one launch after
//! downtime, forced launches and dispatches through the API.

mod common;

use common::*;
use edge_api::{AllocUpdate, JobDispatchRequest, QueryOptions};
use edge_server::{Clock, ServerHandle};
use edge_spec::{ClientStatus, Job, JobStatus};
use std::collections::BTreeMap;
use std::time::Duration;

const MINUTE: i64 = 60_000;

fn periodic(id: &str, prohibit_overlap: bool) -> Job {
    let mut j = job(id, 1);
    j.job_type = edge_spec::JobType::Batch;
    j.periodic = Some(edge_spec::periodic::Periodic {
        crons: vec!["*/1 * * * *".to_string()],
        cron: None,
        prohibit_overlap,
        time_zone: "UTC".to_string(),
        enabled: true,
    });
    j
}

/// Ids of the jobs whose parent is `parent`, sorted.
async fn children(h: &ServerHandle, parent: &str) -> Vec<String> {
    let (jobs, _) = client(h).jobs(QueryOptions::default()).await.unwrap();
    let mut ids: Vec<String> = jobs
        .into_iter()
        .filter(|j| j.parent_id == parent)
        .map(|j| j.id)
        .collect();
    ids.sort();
    ids
}

/// Moves the clock to `at` and waits for the launch loop to have acted on it.
async fn tick(h: &ServerHandle, clock: &Clock, at: i64) {
    clock.set(at);
    seen(h, at).await;
}

async fn seen(h: &ServerHandle, at: i64) {
    tokio::time::timeout(Duration::from_secs(10), h.server.periodic_seen(at))
        .await
        .expect("the launch loop looks at the clock");
}

/// The first minute after the job's registration: its first launch time.
async fn first_launch(h: &ServerHandle, id: &str) -> i64 {
    let j = client(h).job(id).await.unwrap();
    (j.submit_time / MINUTE + 1) * MINUTE
}

#[tokio::test]
async fn launches_on_schedule_and_skips_while_a_child_runs() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(edge_server::now_ms());
    let h = start_with(dir.path(), |c| c.clock = clock.clone()).await;
    register(&h, node("n1", 4000, 4096)).await;
    let c = client(&h);
    c.register(&periodic("cron", true)).await.unwrap();
    let m0 = first_launch(&h, "cron").await;
    let parent = c.job("cron").await.unwrap();
    assert_eq!(parent.status, JobStatus::Running);
    assert_eq!(parent.next_launch, Some(m0));

    tick(&h, &clock, m0 - 1).await;
    assert!(children(&h, "cron").await.is_empty());
    tick(&h, &clock, m0).await;
    let first = format!("cron/periodic-{}", m0 / 1000);
    assert_eq!(children(&h, "cron").await, std::slice::from_ref(&first));
    let allocs = eventually(10, async || {
        let (a, _) = c.job_allocs(&first, QueryOptions::default()).await.ok()?;
        (a.len() == 1).then_some(a)
    })
    .await;

    // The child's copy has not ended: the next launch is skipped.
    tick(&h, &clock, m0 + MINUTE).await;
    assert_eq!(children(&h, "cron").await.len(), 1);

    agent_client(&h)
        .agent_update_allocs(
            "n1",
            vec![AllocUpdate {
                networks: Default::default(),
                address: None,
                id: allocs[0].id.clone(),
                client_status: ClientStatus::Complete,
                client_description: "done".to_string(),
                task_states: BTreeMap::new(),
                checks: Default::default(),
                health: None,
            }],
        )
        .await
        .unwrap();
    tick(&h, &clock, m0 + 2 * MINUTE).await;
    let second = format!("cron/periodic-{}", (m0 + 2 * MINUTE) / 1000);
    assert_eq!(children(&h, "cron").await, [first.clone(), second.clone()]);
    let parent = c.job("cron").await.unwrap();
    assert_eq!(parent.children, [first, second]);
    assert_eq!(parent.next_launch, Some(m0 + 3 * MINUTE));
    let child = c
        .job(&format!("cron/periodic-{}", m0 / 1000))
        .await
        .unwrap();
    assert_eq!(child.parent_id, "cron");
    assert!(child.periodic.is_none());

    // Stopped, it launches no more; its children are left as they are.
    c.stop_job("cron", false).await.unwrap();
    tick(&h, &clock, m0 + 5 * MINUTE).await;
    assert_eq!(children(&h, "cron").await.len(), 2);
    h.shutdown().await;
}

#[tokio::test]
async fn a_server_down_over_launch_times_launches_once_when_back() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(edge_server::now_ms());
    let h = start_with(dir.path(), |c| c.clock = clock.clone()).await;
    client(&h).register(&periodic("cron", false)).await.unwrap();
    let m0 = first_launch(&h, "cron").await;
    tick(&h, &clock, m0).await;
    assert_eq!(children(&h, "cron").await.len(), 1);
    h.shutdown().await;

    // Back ten minutes (ten launch times) later.
    let back = m0 + 10 * MINUTE + 5_000;
    let clock = Clock::manual(back);
    let h = start_with(dir.path(), |c| c.clock = clock.clone()).await;
    seen(&h, back).await;
    let ids = children(&h, "cron").await;
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&format!("cron/periodic-{}", back / 1000)));
    tick(&h, &clock, back + 1_000).await;
    assert_eq!(children(&h, "cron").await.len(), 2);
    assert_eq!(
        client(&h).job("cron").await.unwrap().next_launch,
        Some(m0 + 11 * MINUTE)
    );
    h.shutdown().await;
}

#[tokio::test]
async fn forced_launches_and_dispatches_make_children() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(edge_server::now_ms());
    let h = start_with(dir.path(), |c| c.clock = clock.clone()).await;
    let c = client(&h);
    c.register(&periodic("cron", false)).await.unwrap();
    let r = c.periodic_force("cron").await.unwrap();
    assert!(r.job_id.starts_with("cron/periodic-"), "{}", r.job_id);
    assert_eq!(children(&h, "cron").await, std::slice::from_ref(&r.job_id));
    let err = c.periodic_force("cron").await.unwrap_err().to_string();
    assert!(err.contains("one launch per second"), "{err}");

    let mut render = job("render", 1);
    render.job_type = edge_spec::JobType::Batch;
    render.parameterized = Some(edge_spec::periodic::Parameterized {
        payload: edge_spec::periodic::PayloadRule::Required,
        meta_required: vec!["scene".to_string()],
        meta_optional: vec![],
    });
    c.register(&render).await.unwrap();
    let req = JobDispatchRequest {
        payload: "aGVsbG8=".to_string(),
        meta: BTreeMap::from([("scene".to_string(), "a".to_string())]),
    };
    let r = c.dispatch("render", &req).await.unwrap();
    assert!(r.job_id.starts_with("render/dispatch-"), "{}", r.job_id);
    let child = c.job(&r.job_id).await.unwrap();
    assert_eq!(
        (child.payload.as_str(), child.meta["scene"].as_str()),
        ("aGVsbG8=", "a")
    );
    let missing = JobDispatchRequest {
        payload: "aGVsbG8=".to_string(),
        meta: BTreeMap::new(),
    };
    let err = c
        .dispatch("render", &missing)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("scene"), "{err}");
    let err = c.dispatch("cron", &req).await.unwrap_err().to_string();
    assert!(err.contains("not parameterized"), "{err}");
    // A child submitted as a job of its own is nobody's child.
    let mut copy = child.clone();
    copy.id = "copy".to_string();
    c.register(&copy).await.unwrap();
    let copy = c.job("copy").await.unwrap();
    assert!(copy.parent_id.is_empty() && copy.payload.is_empty());
    h.shutdown().await;
}
