//! Health checks of an allocation's services, run by the agent while the
//! allocation runs. A service with no checks is passing once its tasks run;
//! one with checks is pending until its first pass, critical after a failure.
//! `check_restart` asks the task runners to restart after repeated failures.

use edge_spec::{Allocation, Check, CheckType, Group, HealthStatus};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;

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
            let path = check.path.as_deref().unwrap_or("/");
            let url = format!("http://{target}{path}");
            match http.get(&url).timeout(check.timeout).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("http GET {url}: status {}", r.status())),
                Err(e) => Err(format!("http GET {url}: {e}")),
            }
        }
    }
}

/// A check_restart request: which task should restart, and why.
#[derive(Debug, Clone)]
pub struct RestartRequest {
    pub reason: String,
}

struct Running {
    service: String,
    check: Check,
    port: u16,
    failures: u32,
    passed_once: bool,
    last_ok: Option<bool>,
}

/// Runs every check of the group until `stop` turns true. Status changes go
/// to `on_status` (service name to health); restarts to `restart`.
pub async fn run(
    alloc: Allocation,
    group: Group,
    address: String,
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
            let port = label.and_then(|l| alloc.resources.ports.iter().find(|p| &p.label == l));
            if let Some(p) = port {
                checks.push(Running {
                    service: svc.name.clone(),
                    check: c.clone(),
                    port: p.value,
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
    let tick = checks
        .iter()
        .map(|c| c.check.interval)
        .min()
        .unwrap_or(Duration::from_secs(10))
        .min(Duration::from_secs(1));
    let mut next: Vec<tokio::time::Instant> = vec![tokio::time::Instant::now(); checks.len()];
    loop {
        let now = tokio::time::Instant::now();
        let mut changed = false;
        for (i, c) in checks.iter_mut().enumerate() {
            if next[i] > now {
                continue;
            }
            next[i] = now + c.check.interval;
            let res = probe(&c.check, &address, c.port, &http).await;
            let ok = res.is_ok();
            if ok {
                c.failures = 0;
                c.passed_once = true;
            } else {
                c.failures += 1;
            }
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
