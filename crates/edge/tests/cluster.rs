//! The agent's logic against a real server in the same process, with a fake
//! driver whose tasks exit when told: restart policy, batch completion,
//! reschedule, stop, re-attachment after an agent restart, autonomy while
//! the server is away (tasks, saved catalog) and the node's garbage
//! collection.

use async_trait::async_trait;
use edge_agent::AgentConfig;
use edge_api::{Client, QueryOptions};
use edge_driver::{Driver, DriverError, ExitResult, Leftover, TaskConfig, TaskHandle, TaskStats};
use edge_spec::{ClientStatus, DesiredStatus, DriverInfo, Job, ParseOptions};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Stands in for the exec driver (job files name known drivers only).
/// Tasks are timers: `config.exit_after_ms` and `config.exit_code` decide how
/// they end; `config.fail_start` makes start fail. Counts starts and recovers.
#[derive(Default)]
struct FakeDriver {
    starts: AtomicU32,
    recovers: AtomicU32,
    stops: AtomicU32,
    running: Mutex<HashMap<String, tokio::sync::watch::Sender<Option<ExitResult>>>>,
    /// What `leftovers` reports (those of owned allocations excepted);
    /// `reap` removes from here.
    leftovers: Mutex<Vec<Leftover>>,
}

impl FakeDriver {
    fn running(&self) -> usize {
        self.running
            .lock()
            .unwrap()
            .values()
            .filter(|t| t.borrow().is_none())
            .count()
    }
}

#[async_trait]
impl Driver for FakeDriver {
    fn name(&self) -> &'static str {
        "exec"
    }

    async fn fingerprint(&self) -> DriverInfo {
        DriverInfo {
            detected: true,
            healthy: true,
            description: "fake".to_string(),
            attributes: Default::default(),
        }
    }

    async fn start(&self, cfg: &TaskConfig) -> Result<TaskHandle, DriverError> {
        if cfg.config.get("fail_start").is_some() {
            return Err(DriverError::config("config.fail_start", "asked to fail"));
        }
        let n = self.starts.fetch_add(1, Ordering::SeqCst);
        let task_id = format!("{}/{}/{n}", cfg.alloc_id, cfg.task);
        let (tx, _) = tokio::sync::watch::channel(None);
        if let Some(ms) = cfg.config.get("exit_after_ms").and_then(|v| v.as_u64()) {
            let code = cfg
                .config
                .get("exit_code")
                .and_then(|v| v.as_i64())
                .unwrap_or(0) as i32;
            let tx2 = tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                tx2.send_replace(Some(ExitResult {
                    exit_code: code,
                    ..Default::default()
                }));
            });
        }
        self.running.lock().unwrap().insert(task_id.clone(), tx);
        Ok(TaskHandle {
            driver: "exec".to_string(),
            task_id,
            pid: None,
            started_at: 0,
            state: serde_json::Value::Null,
        })
    }

    async fn recover(&self, h: &TaskHandle) -> Result<(), DriverError> {
        if self.running.lock().unwrap().contains_key(&h.task_id) {
            self.recovers.fetch_add(1, Ordering::SeqCst);
            Ok(())
        } else {
            Err(DriverError::NotFound {
                task_id: h.task_id.clone(),
            })
        }
    }

    async fn wait(&self, h: &TaskHandle) -> Result<ExitResult, DriverError> {
        let mut rx = {
            let m = self.running.lock().unwrap();
            m.get(&h.task_id)
                .ok_or_else(|| DriverError::NotFound {
                    task_id: h.task_id.clone(),
                })?
                .subscribe()
        };
        let r = rx
            .wait_for(|v| v.is_some())
            .await
            .map_err(|e| DriverError::Other(e.to_string()))?;
        Ok(r.clone().unwrap_or_default())
    }

    async fn stop(&self, h: &TaskHandle, _timeout: Duration) -> Result<(), DriverError> {
        self.stops.fetch_add(1, Ordering::SeqCst);
        if let Some(tx) = self.running.lock().unwrap().get(&h.task_id) {
            tx.send_replace(Some(ExitResult {
                exit_code: 0,
                signal: Some(15),
                ..Default::default()
            }));
        }
        Ok(())
    }

    async fn destroy(&self, _h: &TaskHandle) -> Result<(), DriverError> {
        Ok(())
    }

    async fn signal(&self, _h: &TaskHandle, _s: &str) -> Result<(), DriverError> {
        Ok(())
    }

    async fn stats(&self, _h: &TaskHandle) -> Result<TaskStats, DriverError> {
        Ok(TaskStats::default())
    }

    async fn leftovers(&self, owned: &BTreeSet<String>) -> Result<Vec<Leftover>, DriverError> {
        Ok(self
            .leftovers
            .lock()
            .unwrap()
            .iter()
            .filter(|l| !l.alloc_id.as_ref().is_some_and(|a| owned.contains(a)))
            .cloned()
            .collect())
    }

    async fn reap(&self, l: &Leftover) -> Result<(), DriverError> {
        self.leftovers.lock().unwrap().retain(|x| x != l);
        Ok(())
    }
}

fn leftover(id: &str, alloc: &str) -> Leftover {
    Leftover {
        driver: "exec".to_string(),
        id: id.to_string(),
        alloc_id: Some(alloc.to_string()),
        description: format!("fake container {id}"),
    }
}

fn job(src: &str) -> Job {
    edge_spec::parse_hcl(
        src,
        &ParseOptions {
            filename: "t.hcl".to_string(),
            ..Default::default()
        },
    )
    .unwrap()
    .job
}

fn service(count: u32, extra_config: &str, restart: &str) -> Job {
    job(&format!(
        r#"job "svc" {{
  group "g" {{
    count = {count}
    {restart}
    task "t" {{
      driver = "exec"
      config {{
        {extra_config}
      }}
      resources {{
        cpu    = 10
        memory = 10
      }}
    }}
  }}
}}"#
    ))
}

struct Cluster {
    server: edge_server::ServerHandle,
    api: Client,
    dir: tempfile::TempDir,
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        edge_server::ServerConfig::new(dir.path().join("server"), "127.0.0.1:0".parse().unwrap());
    let server = edge_server::start(cfg).await.unwrap();
    let api = Client::new(&format!("http://{}", server.addr), None).unwrap();
    Cluster { server, api, dir }
}

impl Cluster {
    async fn agent(&self, name: &str, driver: Arc<FakeDriver>) -> edge_agent::AgentHandle {
        self.agent_with(name, driver, |_| {}).await
    }

    async fn agent_with(
        &self,
        name: &str,
        driver: Arc<FakeDriver>,
        tune: impl FnOnce(&mut AgentConfig),
    ) -> edge_agent::AgentHandle {
        start_agent(
            &format!("http://{}", self.server.addr),
            &self.server.token,
            self.dir.path(),
            name,
            driver,
            tune,
        )
        .await
    }

    /// Registers `job` and waits until `n` of its allocations run.
    async fn deploy(&self, job: &Job, n: usize) {
        self.api.register(job).await.unwrap();
        self.until(&format!("{n} running"), async |c| {
            (running(&c.allocs(&job.id).await) == n).then_some(())
        })
        .await;
    }

    async fn allocs(&self, job: &str) -> Vec<edge_api::AllocListStub> {
        self.api
            .job_allocs(job, QueryOptions::default())
            .await
            .unwrap()
            .0
    }

    async fn until<T>(&self, what: &str, f: impl AsyncFnMut(&Cluster) -> Option<T>) -> T {
        self.until_for(20, what, f).await
    }

    async fn until_for<T>(
        &self,
        secs: u64,
        what: &str,
        mut f: impl AsyncFnMut(&Cluster) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = f(self).await {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for: {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn start_agent(
    server: &str,
    token: &str,
    dir: &std::path::Path,
    name: &str,
    driver: Arc<FakeDriver>,
    tune: impl FnOnce(&mut AgentConfig),
) -> edge_agent::AgentHandle {
    let mut cfg = AgentConfig::new(server.to_string(), token.to_string(), dir.join(name));
    cfg.name = name.to_string();
    tune(&mut cfg);
    edge_agent::start(cfg, vec![driver as Arc<dyn Driver>])
        .await
        .unwrap()
}

fn running(a: &[edge_api::AllocListStub]) -> usize {
    a.iter()
        .filter(|a| {
            a.client_status == ClientStatus::Running && a.desired_status == DesiredStatus::Run
        })
        .count()
}

#[tokio::test]
async fn service_runs_and_stops() {
    let c = cluster().await;
    let d = Arc::new(FakeDriver::default());
    let _a = c.agent("a1", d.clone()).await;
    c.api.register(&service(3, "", "")).await.unwrap();
    c.until("3 running", async |c| {
        (running(&c.allocs("svc").await) == 3).then_some(())
    })
    .await;
    assert_eq!(d.running(), 3);
    c.api.stop_job("svc", false).await.unwrap();
    c.until("all complete", async |c| {
        c.allocs("svc")
            .await
            .iter()
            .all(|a| a.client_status == ClientStatus::Complete)
            .then_some(())
    })
    .await;
    assert_eq!(d.running(), 0);
}

#[tokio::test]
async fn restart_policy_then_failure_then_reschedule() {
    let c = cluster().await;
    let d = Arc::new(FakeDriver::default());
    let _a = c.agent("a1", d.clone()).await;
    let restart = r#"restart {
      attempts = 2
      interval = "1m"
      delay    = "10ms"
      mode     = "fail"
    }
    reschedule {
      attempts  = 1
      interval  = "1h"
      delay     = "0s"
      unlimited = false
    }"#;
    c.api
        .register(&service(1, "exit_after_ms = 20\nexit_code = 3", restart))
        .await
        .unwrap();
    let failed = c
        .until("first alloc failed and replaced", async |c| {
            let a = c.allocs("svc").await;
            let f = a
                .iter()
                .find(|a| a.client_status == ClientStatus::Failed)?
                .clone();
            (a.len() >= 2).then_some(f)
        })
        .await;
    let st = &failed.task_states["t"];
    assert_eq!(st.restarts, 2, "restarted twice before failing");
    assert!(st.failed);
    assert!(st.events.iter().any(|e| e.kind == "Not Restarting"));
    assert!(st.events.iter().any(|e| e.message.contains("exit code 3")));
    // The replacement also fails; reschedule attempts (1) are then used up.
    c.until("two failed, no third", async |c| {
        let a = c.allocs("svc").await;
        (a.iter()
            .filter(|a| a.client_status == ClientStatus::Failed)
            .count()
            == 2)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(c.allocs("svc").await.len(), 2);
}

#[tokio::test]
async fn batch_job_completes_and_is_not_restarted() {
    let c = cluster().await;
    let d = Arc::new(FakeDriver::default());
    let _a = c.agent("a1", d.clone()).await;
    let mut j = service(2, "exit_after_ms = 30", "");
    j.job_type = edge_spec::JobType::Batch;
    c.api.register(&j).await.unwrap();
    c.until("2 complete", async |c| {
        let a = c.allocs("svc").await;
        (a.len() == 2 && a.iter().all(|a| a.client_status == ClientStatus::Complete)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(d.starts.load(Ordering::SeqCst), 2);
    assert_eq!(
        c.api.job("svc").await.unwrap().status,
        edge_spec::JobStatus::Dead
    );
}

#[tokio::test]
async fn start_failure_is_reported_with_the_driver_message() {
    let c = cluster().await;
    let d = Arc::new(FakeDriver::default());
    let _a = c.agent("a1", d.clone()).await;
    let restart = r#"restart {
      attempts = 0
      interval = "1m"
      delay    = "10ms"
      mode     = "fail"
    }"#;
    c.api
        .register(&service(1, "fail_start = true", restart))
        .await
        .unwrap();
    let a = c
        .until("failed", async |c| {
            c.allocs("svc")
                .await
                .into_iter()
                .find(|a| a.client_status == ClientStatus::Failed)
        })
        .await;
    let ev = &a.task_states["t"].events;
    assert!(
        ev.iter()
            .any(|e| e.kind == "Driver Failure" && e.message.contains("asked to fail")),
        "{ev:?}"
    );
}

#[tokio::test]
async fn a_driver_no_node_has_is_refused_by_the_scheduler_not_the_agent() {
    let c = cluster().await;
    let d = Arc::new(FakeDriver::default());
    let _a = c.agent("a1", d.clone()).await;
    c.api.register(&service(1, "", "")).await.unwrap();
    c.until("running", async |c| {
        (running(&c.allocs("svc").await) == 1).then_some(())
    })
    .await;
    // A job for a driver no node has (this one runs only the stand-in for
    // exec) is refused by the scheduler with a reason, and the agent keeps
    // serving the first job.
    let mut j = service(1, "", "");
    j.id = "other".to_string();
    j.groups[0].tasks[0].driver = "containerd".to_string();
    let r = c.api.register(&j).await.unwrap();
    let e = c
        .until("eval done", async |c| {
            let (e, _) = c
                .api
                .eval(r.eval_id.as_deref().unwrap(), QueryOptions::default())
                .await
                .ok()?;
            (e.status != edge_spec::EvalStatus::Pending).then_some(e)
        })
        .await;
    assert!(
        e.failed_tg_allocs["g"]
            .constraint_filtered
            .keys()
            .any(|k| k.contains("containerd"))
    );
    assert_eq!(running(&c.allocs("svc").await), 1);
}

#[tokio::test]
async fn restarted_agent_reattaches_instead_of_restarting() {
    let c = cluster().await;
    let d = Arc::new(FakeDriver::default());
    let a = c.agent("a1", d.clone()).await;
    c.api.register(&service(2, "", "")).await.unwrap();
    c.until("2 running", async |c| {
        (running(&c.allocs("svc").await) == 2).then_some(())
    })
    .await;
    a.shutdown().await;
    assert_eq!(d.running(), 2, "tasks outlive the agent");
    let _a = c.agent("a1", d.clone()).await;
    c.until("recovered", async |_| {
        (d.recovers.load(Ordering::SeqCst) == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(d.starts.load(Ordering::SeqCst), 2, "no task started twice");
    assert_eq!(running(&c.allocs("svc").await), 2);
    assert_eq!(c.allocs("svc").await.len(), 2, "no duplicate allocations");
}

#[tokio::test]
async fn agent_restarts_its_tasks_from_local_state_without_the_server() {
    let c = cluster().await;
    let d = Arc::new(FakeDriver::default());
    let a = c.agent("a1", d.clone()).await;
    c.api.register(&service(1, "", "")).await.unwrap();
    c.until("running", async |c| {
        (running(&c.allocs("svc").await) == 1).then_some(())
    })
    .await;
    a.shutdown().await;
    // A reboot: the tasks are gone (a fresh driver knows none) and the server is away.
    let server_addr = c.server.addr;
    let Cluster { server, dir, .. } = c;
    server.shutdown().await;
    let d2 = Arc::new(FakeDriver::default());
    let mut cfg = AgentConfig::new(
        format!("http://{server_addr}"),
        "t".to_string(),
        dir.path().join("a1"),
    );
    cfg.name = "a1".to_string();
    let _a = edge_agent::start(cfg, vec![d2.clone() as Arc<dyn Driver>])
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while d2.running() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "task not restarted offline"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `f` for up to ten seconds.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn web_service(count: u32) -> Job {
    job(&format!(
        r#"job "web" {{
  group "g" {{
    count = {count}
    network {{
      port "http" {{}}
    }}
    service {{
      name = "web"
      port = "http"
      publish {{
        port = 18080
      }}
    }}
    task "t" {{
      driver = "exec"
      config {{}}
      resources {{
        cpu    = 10
        memory = 10
      }}
    }}
  }}
}}"#
    ))
}

fn serving(c: &edge_api::Catalog, service: &str) -> usize {
    c.services
        .get(service)
        .map_or(0, |s| s.instances.iter().filter(|i| i.serving()).count())
}

/// Stopping the agent while the server is away (its loops are re-registering,
/// nothing else holds the runners) must not stop a single task, and the next
/// agent re-attaches to them without the server.
#[tokio::test]
async fn agent_stopped_while_the_server_is_away_leaves_tasks_running() {
    let c = cluster().await;
    let d = Arc::new(FakeDriver::default());
    let a = c.agent("a1", d.clone()).await;
    c.deploy(&service(2, "", ""), 2).await;
    let addr = format!("http://{}", c.server.addr);
    let Cluster { server, dir, .. } = c;
    server.shutdown().await;
    // Long enough for the agent to lose its watch and heartbeat.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.shutdown().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(d.stops.load(Ordering::SeqCst), 0, "no task was stopped");
    assert_eq!(d.running(), 2, "tasks outlive the agent");
    let _a = start_agent(&addr, "t", dir.path(), "a1", d.clone(), |_| {}).await;
    eventually("both tasks re-attached", || {
        d.recovers.load(Ordering::SeqCst) == 2
    })
    .await;
    assert_eq!(d.starts.load(Ordering::SeqCst), 2, "no task started twice");
    assert_eq!(d.running(), 2);
}

#[tokio::test]
async fn stop_tasks_on_exit_stops_them() {
    let c = cluster().await;
    let d = Arc::new(FakeDriver::default());
    let a = c
        .agent_with("a1", d.clone(), |cfg| cfg.stop_tasks_on_exit = true)
        .await;
    c.deploy(&service(2, "", ""), 2).await;
    a.shutdown().await;
    assert_eq!(d.running(), 0, "every task stopped before the agent exited");
    assert_eq!(d.stops.load(Ordering::SeqCst), 2);
}

/// After a reboot with the server away, the agent restarts its tasks and
/// serves the saved catalog, with its own instances from local state.
#[tokio::test]
async fn saved_catalog_is_served_after_a_reboot_without_the_server() {
    let c = cluster().await;
    let d = Arc::new(FakeDriver::default());
    let a = c.agent("a1", d.clone()).await;
    c.api.register(&web_service(2)).await.unwrap();
    let mut cat = a.catalog();
    tokio::time::timeout(
        Duration::from_secs(10),
        cat.wait_for(|c| serving(c, "web") == 2),
    )
    .await
    .expect("catalog with two instances")
    .unwrap();
    // Saved at most once a second.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    a.shutdown().await;
    let addr = format!("http://{}", c.server.addr);
    let Cluster { server, dir, .. } = c;
    server.shutdown().await;

    let rebooted = Arc::new(FakeDriver::default());
    let a = start_agent(&addr, "t", dir.path(), "a1", rebooted.clone(), |_| {}).await;
    let first = a.catalog().borrow().clone();
    assert!(
        first.services.contains_key("web"),
        "the saved catalog is there from the start: {first:?}"
    );
    eventually("tasks restarted offline", || rebooted.running() == 2).await;
    let mut cat = a.catalog();
    tokio::time::timeout(
        Duration::from_secs(10),
        cat.wait_for(|c| serving(c, "web") == 2),
    )
    .await
    .expect("both restarted instances serve from the saved catalog")
    .unwrap();
    assert!(
        dir.path().join("a1/catalog.json").exists(),
        "catalog saved in the data dir"
    );
}

#[tokio::test]
async fn gc_removes_only_what_no_allocation_owns() {
    let c = cluster().await;
    let d = Arc::new(FakeDriver::default());
    let a = c
        .agent_with("a1", d.clone(), |cfg| {
            cfg.gc_interval = Duration::from_millis(100);
            cfg.gc_grace = Duration::from_millis(600);
        })
        .await;
    c.api.register(&service(1, "", "")).await.unwrap();
    let live = c
        .until("running", async |c| {
            let a = c.allocs("svc").await;
            (running(&a) == 1).then(|| a[0].id.clone())
        })
        .await;
    let started = tokio::time::Instant::now();
    d.leftovers.lock().unwrap().extend([
        leftover("ghost-1", "3f2a0000-dead-4000-8000-000000000001"),
        leftover("mine", &live),
    ]);
    eventually("the ghost is removed", || {
        d.leftovers.lock().unwrap().len() == 1
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "removed only after the grace period"
    );
    assert_eq!(d.leftovers.lock().unwrap()[0].id, "mine", "owned ones stay");

    // On demand: at once, and what was removed is said.
    d.leftovers
        .lock()
        .unwrap()
        .push(leftover("ghost-2", "3f2a0000-dead-4000-8000-000000000002"));
    let removed = a.gc().await;
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0].id, "ghost-2");
    assert!(removed[0].error.is_none());

    // Through the API, relayed to the agent.
    d.leftovers
        .lock()
        .unwrap()
        .push(leftover("ghost-3", "3f2a0000-dead-4000-8000-000000000003"));
    let r = c.api.node_gc("a1").await.unwrap();
    assert_eq!(r.node_id, a.node_id);
    assert_eq!(r.removed.len(), 1, "{r:?}");
    assert_eq!(r.removed[0].id, "ghost-3");
    assert_eq!(d.leftovers.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn corrupt_allocation_state_is_moved_aside_and_the_agent_starts() {
    let c = cluster().await;
    let bad = c
        .dir
        .path()
        .join("a1/allocs/3f2a0000-0000-4000-8000-00000000beef");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("state.json"), b"{\"alloc\": tru").unwrap();
    let d = Arc::new(FakeDriver::default());
    let _a = c.agent("a1", d.clone()).await;
    assert!(!bad.join("state.json").exists());
    assert!(bad.join("state.json.corrupt").exists());
    c.api.register(&service(1, "", "")).await.unwrap();
    c.until("the agent still runs work", async |c| {
        (running(&c.allocs("svc").await) == 1).then_some(())
    })
    .await;
}

/// The agent drops the updates of allocations the server names in its 404
/// and sends the rest again; this pins the server's wording it reads.
#[tokio::test]
async fn a_report_of_an_unknown_allocation_is_a_404_naming_it() {
    let c = cluster().await;
    let d = Arc::new(FakeDriver::default());
    let a = c.agent("a1", d.clone()).await;
    let agent_api = Client::new(
        &format!("http://{}", c.server.addr),
        Some(c.server.token.clone()),
    )
    .unwrap();
    let update = edge_api::AllocUpdate {
        networks: Default::default(),
        address: None,
        id: "3f2a0000-dead-4000-8000-000000000009".to_string(),
        client_status: ClientStatus::Running,
        client_description: String::new(),
        task_states: Default::default(),
        checks: Default::default(),
        health: None,
    };
    let e = agent_api
        .agent_update_allocs(&a.node_id, vec![update])
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404));
    assert_eq!(
        e.message(),
        Some(r#"unknown allocation "3f2a0000-dead-4000-8000-000000000009""#)
    );
}

/// A rolling update resumes when the agent restarts in the middle of it:
/// the new copy in flight is re-attached, judged, and the rest follow.
#[tokio::test]
async fn a_rolling_update_resumes_after_an_agent_restart() {
    let c = cluster().await;
    let d = Arc::new(FakeDriver::default());
    let a = c.agent("a1", d.clone()).await;
    let update = r#"update {
      max_parallel     = 1
      min_healthy_time = "300ms"
    }"#;
    c.deploy(&service(3, "", update), 3).await;
    let v2 = service(3, r#"command = "v2""#, update);
    c.api.register(&v2).await.unwrap();
    c.until("a new copy beside the three old ones", async |c| {
        let allocs = c.allocs("svc").await;
        let new = allocs.iter().filter(|a| a.job_version == 1).count();
        (new == 1 && running(&allocs) == 4).then_some(())
    })
    .await;
    a.shutdown().await;
    let _a = c.agent("a1", d.clone()).await;
    c.until("every copy at version 1, the old ones stopped", async |c| {
        let allocs = c.allocs("svc").await;
        let live: Vec<_> = allocs
            .iter()
            .filter(|a| a.client_status == ClientStatus::Running)
            .collect();
        (live.len() == 3 && live.iter().all(|a| a.job_version == 1)).then_some(())
    })
    .await;
    assert_eq!(d.running(), 3, "the driver runs the three new copies only");
}

/// A deployment lives in the store: a server restarted in the middle of a
/// rolling update picks it up where it was and finishes it.
#[tokio::test]
async fn a_deployment_resumes_after_a_server_restart() {
    let c = cluster().await;
    let d = Arc::new(FakeDriver::default());
    let _a = c.agent("a1", d.clone()).await;
    let update = r#"update {
      max_parallel     = 1
      min_healthy_time = "300ms"
    }"#;
    c.deploy(&service(3, "", update), 3).await;
    c.api
        .register(&service(3, r#"command = "v2""#, update))
        .await
        .unwrap();
    c.until("a new copy beside the three old ones", async |c| {
        let allocs = c.allocs("svc").await;
        let new = allocs.iter().filter(|a| a.job_version == 1).count();
        (new == 1 && running(&allocs) == 4).then_some(())
    })
    .await;
    let (before, _) = c
        .api
        .job_deployment("svc", QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(before.job_version, 1);
    let addr = c.server.addr;
    let Cluster { server, dir, api } = c;
    server.shutdown().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cfg = edge_server::ServerConfig::new(dir.path().join("server"), addr);
    let server = edge_server::start(cfg)
        .await
        .expect("the server starts again");
    let c = Cluster { server, api, dir };
    // In this one process the old server's connections outlive it: the
    // agent's allocation watch in flight (30 s) ends before it asks the
    // new one. A real restart closes them at once.
    let done = c
        .until_for(60, "the deployment to finish", async |c| {
            let (dep, _) = c
                .api
                .job_deployment("svc", QueryOptions::default())
                .await
                .ok()?;
            (dep.status == edge_spec::DeploymentStatus::Successful).then_some(dep)
        })
        .await;
    assert_eq!(done.id, before.id, "the same deployment, from the store");
    assert_eq!(done.groups["g"].healthy, 3);
    c.until("the old copies stopped", async |c| {
        let allocs = c.allocs("svc").await;
        let live: Vec<_> = allocs
            .iter()
            .filter(|a| a.client_status == ClientStatus::Running)
            .collect();
        (live.len() == 3 && live.iter().all(|a| a.job_version == 1)).then_some(())
    })
    .await;
    assert!(c.api.job("svc").await.unwrap().stable);
}
