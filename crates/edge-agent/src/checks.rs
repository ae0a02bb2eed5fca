//! Health checks of an allocation's services, run by the agent while the
//! allocation runs. A service with no checks is passing once its tasks run;
//! one with checks is pending until its first pass, critical after a failure.
//! `check_restart` asks the task runners to restart after repeated failures.

use edge_driver::ExecSession;
use edge_spec::{Allocation, Check, CheckType, Group, HealthStatus};
use futures_util::future::BoxFuture;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// How long after a copy starts a check that has not passed yet is probed
/// more often than its interval, and how often.
const STARTUP_PROBING: Duration = Duration::from_secs(10);
const STARTUP_PROBE_EVERY: Duration = Duration::from_millis(100);

/// The outcome of one check run.
pub async fn probe(
    check: &Check,
    address: &str,
    port: u16,
    http: &reqwest::Client,
) -> Result<(), String> {
    let target = format!("{address}:{port}");
    match check.check_type {
        CheckType::Tcp => {
            match tokio::time::timeout(check.timeout, tokio::net::TcpStream::connect(&target)).await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("tcp {target}: {e}")),
                Err(_) => Err(format!("tcp {target}: timed out after {:?}", check.timeout)),
            }
        }
        CheckType::Http => {
            let url = check_url(address, port, check.path.as_deref().unwrap_or("/"))?;
            match http.get(url.clone()).timeout(check.timeout).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("http GET {url}: status {}", r.status())),
                Err(e) => Err(format!("http GET {url}: {e}")),
            }
        }
        CheckType::Grpc => {
            let call = crate::grpc::check(address, port, &check.grpc_service, check.grpc_use_tls);
            match tokio::time::timeout(check.timeout, call).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "grpc {target}: timed out after {:?}",
                    check.timeout
                )),
            }
        }
        CheckType::Script => Err("a script check runs in its task, not against a port".to_string()),
    }
}

/// Runs a command in one of the allocation's tasks, through its driver:
/// how script checks reach their task.
pub type Exec = std::sync::Arc<
    dyn Fn(String, Vec<String>) -> BoxFuture<'static, Result<ExecSession, String>> + Send + Sync,
>;

/// What a failing script prints is kept up to this much for its message.
const SCRIPT_OUTPUT: u64 = 1024;

/// The outcome of one run of a script check in `task`: passing on exit 0;
/// anything else fails, Nomad's warning (1) included, since a service here
/// is served or not. A run past the timeout is killed (its session dropped).
pub async fn script(check: &Check, task: &str, exec: &Exec) -> Result<(), String> {
    let mut argv = vec![check.command.clone()];
    argv.extend(check.args.iter().cloned());
    let what = format!("script {:?} in task {task:?}", check.command);
    let run = async {
        let mut s = exec(task.to_string(), argv).await?;
        let _ = s.stdin.shutdown().await;
        let (out, err) = tokio::join!(capture(&mut s.stdout), async {
            match s.stderr.as_mut() {
                Some(e) => capture(e).await,
                None => Vec::new(),
            }
        });
        let code = s.control.wait().await.map_err(|e| e.to_string())?;
        let mut text = String::from_utf8_lossy(&out).trim().to_string();
        let err = String::from_utf8_lossy(&err);
        if !err.trim().is_empty() {
            if !text.is_empty() {
                text.push_str("; ");
            }
            text.push_str(err.trim());
        }
        Ok::<_, String>((code, text))
    };
    match tokio::time::timeout(check.timeout, run).await {
        Err(_) => Err(format!(
            "{what}: timed out after {:?} and was killed",
            check.timeout
        )),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Ok(Ok((0, _))) => Ok(()),
        Ok(Ok((code, out))) => {
            let warning = if code == 1 { " (warning)" } else { "" };
            let out = if out.is_empty() {
                String::new()
            } else {
                format!(": {out}")
            };
            Err(format!("{what}: exit code {code}{warning}{out}"))
        }
    }
}

/// The start of a stream, the rest read and dropped so the command never
/// blocks on a full pipe.
async fn capture(r: &mut edge_driver::exec::Reader) -> Vec<u8> {
    let mut kept = Vec::new();
    let _ = (&mut *r).take(SCRIPT_OUTPUT).read_to_end(&mut kept).await;
    let _ = tokio::io::copy(r, &mut tokio::io::sink()).await;
    kept
}

/// The URL of an http check: host and port are the instance's, and the
/// check's path can only ever be the path and query, so a path such as
/// `@other-host:80/` cannot point the check at another server.
fn check_url(address: &str, port: u16, path: &str) -> Result<reqwest::Url, String> {
    let mut url = reqwest::Url::parse(&format!("http://{address}:{port}/"))
        .map_err(|e| format!("http check of {address}:{port}: {e}"))?;
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    url.set_path(path);
    url.set_query(query);
    Ok(url)
}

/// A restart request: why, and which task (`None`: every task, as a
/// failing check asks).
#[derive(Debug, Clone)]
pub struct RestartRequest {
    pub reason: String,
    /// A changed template restarts its own task only, outside the
    /// restart policy's count.
    pub task: Option<String>,
}

struct Running {
    service: String,
    check: Check,
    /// The instance's port for the check; none for a script.
    port: Option<u16>,
    /// The task a script runs in.
    task: String,
    failures: u32,
    passed_once: bool,
    last_ok: Option<bool>,
}

/// How checks reach a copy: its address for port checks, its tasks for
/// scripts.
pub struct Reach {
    pub address: String,
    pub exec: Exec,
}

/// Runs every check of the group until `stop` turns true. Status changes go
/// to `on_status` (service name to health); restarts to `restart`.
pub async fn run(
    alloc: Allocation,
    group: Group,
    reach: Reach,
    started_at: tokio::time::Instant,
    mut stop: watch::Receiver<bool>,
    on_status: impl Fn(BTreeMap<String, HealthStatus>) + Send,
    restart: watch::Sender<Option<RestartRequest>>,
) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap_or_default();
    let mut checks: Vec<Running> = Vec::new();
    let mut status: BTreeMap<String, HealthStatus> = BTreeMap::new();
    for svc in &group.services {
        status.insert(
            svc.name.clone(),
            if svc.checks.is_empty() {
                HealthStatus::Passing
            } else {
                HealthStatus::Pending
            },
        );
        for c in &svc.checks {
            let label = c.port.as_ref().or(svc.port.as_ref());
            let port = label.and_then(|l| edge_spec::resolve_port(l, &alloc.resources.ports));
            // A script check's task: validation asks for one unless the
            // group has only one.
            let task = match (c.task.as_str(), group.tasks.as_slice()) {
                ("", [only]) => only.name.clone(),
                (t, _) => t.to_string(),
            };
            if port.is_some() || !c.check_type.uses_port() {
                checks.push(Running {
                    service: svc.name.clone(),
                    check: c.clone(),
                    port,
                    task,
                    failures: 0,
                    passed_once: false,
                    last_ok: None,
                });
            }
        }
    }
    on_status(status.clone());
    if checks.is_empty() {
        let _ = stop.wait_for(|s| *s).await;
        return;
    }
    let mut next: Vec<Option<tokio::time::Instant>> =
        vec![Some(tokio::time::Instant::now()); checks.len()];
    loop {
        let now = tokio::time::Instant::now();
        let mut changed = false;
        for (i, c) in checks.iter_mut().enumerate() {
            if next[i].is_none_or(|at| at > now) {
                continue;
            }
            let res = match c.port {
                Some(port) if c.check.check_type.uses_port() => {
                    probe(&c.check, &reach.address, port, &http).await
                }
                _ => script(&c.check, &c.task, &reach.exec).await,
            };
            let ok = res.is_ok();
            // A copy that just started is usually moments from listening:
            // until its first pass (within the check_restart grace, at most
            // STARTUP_PROBING) it is probed again soon, so that it serves,
            // and a rolling update moves on, without waiting an interval.
            // Like failures in the grace, those probes' failures do not
            // count towards a restart.
            let window = c
                .check
                .check_restart
                .map_or(STARTUP_PROBING, |cr| cr.grace.min(STARTUP_PROBING));
            let starting = !c.passed_once && now.saturating_duration_since(started_at) < window;
            if ok {
                c.failures = 0;
                c.passed_once = true;
            } else if !starting {
                c.failures += 1;
            }
            let wait = if starting && !ok {
                c.check.interval.min(STARTUP_PROBE_EVERY)
            } else {
                c.check.interval
            };
            // None past what the clock can hold: a check stored before
            // intervals were bounded then never runs again instead of
            // panicking the agent.
            next[i] = now.checked_add(wait);
            if c.last_ok != Some(ok) {
                c.last_ok = Some(ok);
                changed = true;
                if let Err(e) = &res {
                    tracing::info!(alloc = %alloc.id, service = %c.service, error = %e, "check failing");
                }
            }
            if let (Some(cr), Err(e)) = (c.check.check_restart, &res)
                && c.failures >= cr.limit
                && now.duration_since(started_at) >= cr.grace
            {
                c.failures = 0;
                c.passed_once = false;
                restart.send_replace(Some(RestartRequest {
                    reason: format!(
                        "check of service {:?} failed {} times: {e}",
                        c.service, cr.limit
                    ),
                    task: None,
                }));
            }
        }
        if changed {
            for (svc, st) in status.iter_mut() {
                let mine: Vec<&Running> = checks.iter().filter(|c| &c.service == svc).collect();
                if mine.is_empty() {
                    continue;
                }
                *st = if mine.iter().all(|c| c.last_ok == Some(true)) {
                    HealthStatus::Passing
                } else if mine
                    .iter()
                    .any(|c| c.last_ok == Some(false) && c.passed_once)
                {
                    HealthStatus::Critical
                } else if mine.iter().all(|c| !c.passed_once) {
                    HealthStatus::Pending
                } else {
                    HealthStatus::Critical
                };
            }
            on_status(status.clone());
        }
        // Until the next probe due, and at least once a second.
        let now = tokio::time::Instant::now();
        let tick = next
            .iter()
            .flatten()
            .map(|at| at.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_spec::CheckType;

    fn check(kind: CheckType, path: Option<&str>) -> Check {
        Check {
            name: String::new(),
            check_type: kind,
            path: path.map(str::to_string),
            port: None,
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(500),
            check_restart: None,
            command: String::new(),
            args: Vec::new(),
            task: String::new(),
            grpc_service: String::new(),
            grpc_use_tls: false,
        }
    }

    async fn http_server(status: &'static str) -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        port
    }

    #[tokio::test]
    async fn a_check_path_cannot_name_another_host() {
        let http = reqwest::Client::new();
        let other = http_server("200 OK").await;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let path = format!("@127.0.0.1:{other}/v1/status/health");
        let err = probe(
            &check(CheckType::Http, Some(&path)),
            "127.0.0.1",
            closed,
            &http,
        )
        .await
        .expect_err("nothing listens on the instance's port");
        assert!(err.contains(&format!("127.0.0.1:{closed}/")), "{err}");
        let url = check_url("127.0.0.1", 80, "/a b?x=1&y=/z").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1/a%20b?x=1&y=/z");
        let url = check_url("10.0.0.1", 8080, "@evil:1/").unwrap();
        assert_eq!(url.host_str(), Some("10.0.0.1"));
        assert_eq!(url.port(), Some(8080));
    }

    fn alloc_with_port(port: u16) -> Allocation {
        Allocation {
            networks: Default::default(),
            address: None,
            namespace: "default".to_string(),
            id: "a1".into(),
            name: "j.g[0]".into(),
            index: 0,
            job_id: "j".into(),
            job_version: 0,
            group: "g".into(),
            group_hash: 0,
            node_id: "n1".into(),
            node_name: "n1".into(),
            eval_id: "e1".into(),
            desired_status: Default::default(),
            desired_description: String::new(),
            client_status: Default::default(),
            client_description: String::new(),
            task_states: BTreeMap::new(),
            checks: BTreeMap::new(),
            health: None,
            deployment_id: None,
            canary: false,
            migration: false,
            resources: edge_spec::AllocResources {
                cpu: 1,
                memory: 1,
                ports: vec![edge_spec::AssignedPort {
                    label: "p".into(),
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

    fn group_with(c: Check) -> Group {
        let mut group: Group = serde_json::from_value(serde_json::json!({
            "name": "g",
            "network": {"ports": [{"label": "p"}]},
            "services": [{"name": "s", "port": "p", "checks": []}],
            "tasks": [{"name": "t", "driver": "exec"}],
        }))
        .unwrap();
        group.services[0].checks.push(c);
        group
    }

    /// A copy that starts listening 300 ms after it started passes within
    /// a few hundred milliseconds, not after its 30 s interval; failures
    /// before that, inside the check_restart grace, restart nothing.
    #[tokio::test(start_paused = true)]
    async fn a_starting_copy_is_probed_soon_and_not_restarted_for_it() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut c = check(CheckType::Tcp, None);
        c.interval = Duration::from_secs(30);
        c.check_restart = Some(edge_spec::CheckRestart {
            limit: 1,
            grace: Duration::from_secs(5),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let (restart_tx, restart_rx) = watch::channel(None);
        let (status_tx, mut status_rx) = watch::channel(HealthStatus::Pending);
        let started = tokio::time::Instant::now();
        let checker = tokio::spawn(run(
            alloc_with_port(port),
            group_with(c),
            Reach {
                address: "127.0.0.1".into(),
                exec: local_exec(),
            },
            started,
            stop_rx,
            move |st| {
                status_tx.send_replace(st["s"]);
            },
            restart_tx,
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        status_rx
            .wait_for(|s| *s == HealthStatus::Passing)
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert!(restart_rx.borrow().is_none(), "no restart for a start");
        stop_tx.send_replace(true);
        checker.await.unwrap();
        drop(l);
    }

    #[tokio::test(start_paused = true)]
    async fn a_huge_interval_does_not_panic_the_checker() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let mut c = check(CheckType::Tcp, None);
        c.interval = Duration::MAX;
        c.check_restart = Some(edge_spec::CheckRestart {
            limit: 1,
            grace: Duration::MAX,
        });
        let group = group_with(c);
        let (stop_tx, stop_rx) = watch::channel(false);
        let (restart_tx, _restart_rx) = watch::channel(None);
        let checker = tokio::spawn(run(
            alloc_with_port(port),
            group,
            Reach {
                address: "127.0.0.1".into(),
                exec: local_exec(),
            },
            tokio::time::Instant::now(),
            stop_rx,
            |_| {},
            restart_tx,
        ));
        // An hour of one-second ticks: the first probe and every tick after
        // it computed the next run past what an Instant can hold.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        stop_tx.send_replace(true);
        checker.await.expect("checker did not panic");
        drop(l);
    }

    struct LocalChild(tokio::sync::Mutex<tokio::process::Child>);

    #[async_trait::async_trait]
    impl edge_driver::ExecControl for LocalChild {
        async fn resize(&self, _: u16, _: u16) -> Result<(), edge_driver::DriverError> {
            Ok(())
        }

        async fn wait(&self) -> Result<i32, edge_driver::DriverError> {
            let st = self.0.lock().await.wait().await;
            let st = st.map_err(|e| edge_driver::DriverError::Other(e.to_string()))?;
            Ok(st.code().unwrap_or(-1))
        }
    }

    /// Runs scripts as the agent's children, as the exec driver runs them
    /// in a task (killed when the session is dropped); task "wasm" answers
    /// as a driver that cannot exec.
    fn local_exec() -> Exec {
        std::sync::Arc::new(|task: String, argv: Vec<String>| {
            Box::pin(async move {
                if task == "wasm" {
                    return Err("driver \"wasm\" cannot exec".to_string());
                }
                let mut c = tokio::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| e.to_string())?;
                let (i, o, e) = (c.stdin.take(), c.stdout.take(), c.stderr.take());
                Ok(ExecSession {
                    stdin: Box::pin(i.unwrap()),
                    stdout: Box::pin(o.unwrap()),
                    stderr: Some(Box::pin(e.unwrap())),
                    control: Box::new(LocalChild(tokio::sync::Mutex::new(c))),
                })
            }) as BoxFuture<'static, _>
        })
    }

    fn script_check(sh: &str) -> Check {
        let mut c = check(CheckType::Script, None);
        c.command = "/bin/sh".into();
        c.args = vec!["-c".into(), sh.into()];
        c
    }

    #[tokio::test]
    async fn scripts_pass_on_exit_zero_and_are_killed_at_their_timeout() {
        let exec = local_exec();
        script(&script_check("exit 0"), "db", &exec).await.unwrap();
        let err = script(&script_check("echo not ready; exit 1"), "db", &exec)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            "script \"/bin/sh\" in task \"db\": exit code 1 (warning): not ready"
        );
        let err = script(&script_check("echo down >&2; exit 2"), "db", &exec)
            .await
            .unwrap_err();
        assert!(err.ends_with("exit code 2: down"), "{err}");
        let err = script(&script_check("yes"), "db", &exec).await.unwrap_err();
        assert!(
            err.contains("timed out"),
            "endless output is drained: {err}"
        );
        let mut c = script_check("sleep 30");
        c.timeout = Duration::from_millis(200);
        let t = std::time::Instant::now();
        let err = script(&c, "db", &exec).await.unwrap_err();
        assert!(
            err.contains("timed out after 200ms and was killed"),
            "{err}"
        );
        assert!(t.elapsed() < Duration::from_secs(5));
        let err = script(&script_check("exit 0"), "wasm", &exec)
            .await
            .unwrap_err();
        assert!(err.contains("cannot exec"), "{err}");
    }

    /// A group whose only check is a script reports it, with no port.
    #[tokio::test]
    async fn a_script_check_needs_no_port() {
        let mut c = script_check("exit 0");
        c.task = String::new();
        let mut group = group_with(c);
        group.services[0].port = None;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (restart_tx, _restart_rx) = watch::channel(None);
        let (status_tx, mut status_rx) = watch::channel(HealthStatus::Pending);
        let checker = tokio::spawn(run(
            alloc_with_port(1),
            group,
            Reach {
                address: "127.0.0.1".into(),
                exec: local_exec(),
            },
            tokio::time::Instant::now(),
            stop_rx,
            move |st| {
                status_tx.send_replace(st["s"]);
            },
            restart_tx,
        ));
        status_rx
            .wait_for(|s| *s == HealthStatus::Passing)
            .await
            .unwrap();
        stop_tx.send_replace(true);
        checker.await.unwrap();
    }

    #[tokio::test]
    async fn tcp_and_http_probes() {
        let http = reqwest::Client::new();
        let ok = http_server("200 OK").await;
        let bad = http_server("500 Internal Server Error").await;
        assert!(
            probe(&check(CheckType::Tcp, None), "127.0.0.1", ok, &http)
                .await
                .is_ok()
        );
        assert!(
            probe(&check(CheckType::Http, Some("/")), "127.0.0.1", ok, &http)
                .await
                .is_ok()
        );
        let err = probe(&check(CheckType::Http, Some("/")), "127.0.0.1", bad, &http)
            .await
            .unwrap_err();
        assert!(err.contains("500"), "{err}");
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = probe(&check(CheckType::Tcp, None), "127.0.0.1", closed, &http)
            .await
            .unwrap_err();
        assert!(err.starts_with("tcp 127.0.0.1:"), "{err}");
    }
}
