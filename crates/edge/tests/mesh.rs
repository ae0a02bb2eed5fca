//! Names and traffic end to end: a server and two agents (127.0.0.1 and
//! 127.0.0.2) run three instances of a web job; each agent's DNS answers the
//! service and its SRV records, both load balancers reach all three, an
//! instance failing its check gets no traffic, and scaling down under load
//! loses no request.

mod common;

use common::{EDGE, Proc, Server, dns, free_port, until};
use edge_api::QueryOptions;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn web_job(dir: &Path, count: u32, lb_port: u16) -> PathBuf {
    let p = dir.join("web.hcl");
    std::fs::write(
        &p,
        format!(
            r#"job "web" {{
  group "web" {{
    count = {count}
    network {{
      port "http" {{}}
    }}
    service {{
      name           = "web"
      port           = "http"
      shutdown_delay = "2s"
      check {{
        type     = "http"
        path     = "/health"
        interval = "1s"
        timeout  = "1s"
      }}
      publish {{
        port     = {lb_port}
        protocol = "http"
      }}
    }}
    task "server" {{
      driver = "exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "echo $EDGE_ALLOC_ID > index.html; echo ok > health; exec python3 -m http.server --bind $EDGE_IP_http $EDGE_PORT_http"]
      }}
      resources {{
        cpu    = 50
        memory = 64
      }}
    }}
  }}
}}
"#
        ),
    )
    .unwrap();
    p
}

async fn get(http: &reqwest::Client, url: &str) -> Option<String> {
    let r = http.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.text().await.ok().map(|t| t.trim().to_string())
}

#[tokio::test]
async fn dns_and_load_balancer_across_two_agents() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let (addr, api, token) = (server.addr.clone(), &server.api, server.token.clone());
    let dns_ports = [free_port(), free_port()];
    let ips = ["127.0.0.1", "127.0.0.2"];
    let mut agents = Vec::new();
    for i in 0..2 {
        let name = format!("a{i}");
        let args: Vec<String> = [
            "agent",
            "--server",
            &addr,
            "--join-token",
            &token,
            "--data-dir",
            dir.path().join(&name).to_str().unwrap(),
            "--name",
            &name,
            "--advertise",
            ips[i],
            "--dns-port",
            &dns_ports[i].to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        agents.push(Proc::edge(dir.path(), &name, &args));
    }
    until(20, "two ready nodes", async || {
        (api.health().await.ok()?.nodes_ready == 2).then_some(())
    })
    .await;

    let lb_port = free_port();
    let job = web_job(dir.path(), 3, lb_port);
    let out = Command::new(EDGE)
        .args(["job", "run", job.to_str().unwrap()])
        .env("EDGE_ADDR", &addr)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let instances = until(30, "3 passing instances", async || {
        let i = api.service("web").await.ok()?;
        (i.iter().filter(|i| i.serving()).count() == 3).then_some(i)
    })
    .await;
    let nodes: BTreeSet<&str> = instances.iter().map(|i| i.node_name.as_str()).collect();
    assert_eq!(nodes.len(), 2, "instances on both agents");

    // DNS on each agent: the name is that node's load balancer; SRV lists all three.
    for i in 0..2 {
        let server = SocketAddr::new(ips[i].parse().unwrap(), dns_ports[i]);
        let a = dns(server, "web.service.edge.", RecordType::A).await;
        let got: Vec<IpAddr> = a
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .collect();
        assert_eq!(got, vec![ips[i].parse::<IpAddr>().unwrap()]);
        let srv = dns(server, "_web._tcp.service.edge.", RecordType::SRV).await;
        let ports: BTreeSet<u16> = srv
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some(s.port),
                _ => None,
            })
            .collect();
        let want: BTreeSet<u16> = instances.iter().map(|i| i.port).collect();
        assert_eq!(ports, want, "SRV lists the three instances");
        let nx = dns(server, "nope.service.edge.", RecordType::A).await;
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    }

    // Both load balancers reach all three instances.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let ids: BTreeSet<String> = instances.iter().map(|i| i.alloc_id.clone()).collect();
    for ip in ips {
        let url = format!("http://{ip}:{lb_port}/");
        let seen = until(20, "every instance answers through the LB", async || {
            let mut seen = BTreeSet::new();
            for _ in 0..30 {
                seen.insert(get(&http, &url).await?);
            }
            (seen == ids).then_some(seen)
        })
        .await;
        assert_eq!(seen.len(), 3);
    }

    // One instance fails its check: it stops receiving traffic.
    let sick = &instances[0];
    let health = dir
        .path()
        .join(if sick.node_name == "a0" { "a0" } else { "a1" })
        .join("allocs")
        .join(&sick.alloc_id)
        .join("server")
        .join("health");
    std::fs::remove_file(&health).unwrap();
    until(15, "the failing instance is withdrawn", async || {
        let i = api.service("web").await.ok()?;
        i.iter()
            .any(|i| i.alloc_id == sick.alloc_id && !i.serving())
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..30 {
        let body = get(&http, &format!("http://127.0.0.1:{lb_port}/"))
            .await
            .expect("answer");
        assert_ne!(body, sick.alloc_id, "an unhealthy instance got traffic");
    }
    std::fs::write(&health, "ok").unwrap();
    until(15, "3 passing again", async || {
        let i = api.service("web").await.ok()?;
        (i.iter().filter(|i| i.serving()).count() == 3).then_some(())
    })
    .await;

    // Scale to 2 while a load loop runs through the LB: no request fails.
    let load = {
        let http = http.clone();
        let url = format!("http://127.0.0.1:{lb_port}/");
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, 0u32);
            let end = tokio::time::Instant::now() + Duration::from_secs(8);
            while tokio::time::Instant::now() < end {
                match get(&http, &url).await {
                    Some(_) => ok += 1,
                    None => failed += 1,
                }
            }
            (ok, failed)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let job = web_job(dir.path(), 2, lb_port);
    let out = Command::new(EDGE)
        .args(["job", "run", "--detach", job.to_str().unwrap()])
        .env("EDGE_ADDR", &addr)
        .output()
        .unwrap();
    assert!(out.status.success());
    let (ok, failed) = load.await.unwrap();
    assert!(ok > 50, "load ran ({ok} requests)");
    assert_eq!(failed, 0, "requests failed while an instance was stopped");
    until(15, "2 instances", async || {
        let i = api.service("web").await.ok()?;
        (i.len() == 2).then_some(())
    })
    .await;

    let _ = Command::new(EDGE)
        .args(["job", "stop", "web"])
        .env("EDGE_ADDR", &addr)
        .output();
    until(20, "instances gone", async || {
        let (a, _) = api.job_allocs("web", QueryOptions::default()).await.ok()?;
        a.iter()
            .all(|a| a.client_status != edge_spec::ClientStatus::Running)
            .then_some(())
    })
    .await;
    drop(agents);
}
