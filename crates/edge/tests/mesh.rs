//! Names and traffic end to end: a server and two agents (127.0.0.1 and
//! 127.0.0.2) run three instances of a web job; each agent's DNS answers the
//! service and its SRV records, both load balancers reach all three, an
//! instance failing its check gets no traffic, and scaling down under load
//! loses no request; a rolling update under load loses none either.

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
    web_job_rev(dir, count, lb_port, 0)
}

/// The web job at revision `rev` (an env var, so each revision replaces
/// every copy), rolling one copy at a time once it passed its check for 1 s.
fn web_job_rev(dir: &Path, count: u32, lb_port: u16, rev: u32) -> PathBuf {
    web_job_with(dir, count, lb_port, &rev.to_string(), "")
}

/// The web job at revision `rev` with more `update` fields; revision `bad`
/// never passes its check.
fn web_job_with(dir: &Path, count: u32, lb_port: u16, rev: &str, update: &str) -> PathBuf {
    let p = dir.join("web.hcl");
    std::fs::write(
        &p,
        format!(
            r#"job "web" {{
  group "web" {{
    count = {count}
    update {{
      max_parallel     = 1
      min_healthy_time = "1s"
      {update}
    }}
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
        args    = ["-c", "echo $EDGE_ALLOC_ID > index.html; [ $REV = bad ] || echo ok > health; exec python3 -m http.server --bind $EDGE_IP_http $EDGE_PORT_http"]
      }}
      env {{
        REV = "{rev}"
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

/// The ports of an answer's SRV records.
fn srv_ports(msg: &hickory_proto::op::Message) -> Vec<u16> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some(s.port),
            _ => None,
        })
        .collect()
}

async fn get(http: &reqwest::Client, url: &str) -> Option<String> {
    let r = http.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.text().await.ok().map(|t| t.trim().to_string())
}

/// Agents `a0` on 127.0.0.1 and `a1` on 127.0.0.2, each with its DNS port,
/// both registered.
async fn two_agents(dir: &Path, server: &Server) -> (Vec<Proc>, [u16; 2]) {
    let dns_ports = [free_port(), free_port()];
    let ips = ["127.0.0.1", "127.0.0.2"];
    let mut agents = Vec::new();
    for i in 0..2 {
        let name = format!("a{i}");
        let args: Vec<String> = [
            "agent",
            "--server",
            &server.addr,
            "--join-token",
            &server.token,
            "--data-dir",
            dir.join(&name).to_str().unwrap(),
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
        agents.push(Proc::edge(dir, &name, &args));
    }
    until(20, "two ready nodes", async || {
        (server.api.health().await.ok()?.nodes_ready == 2).then_some(())
    })
    .await;
    (agents, dns_ports)
}

fn run_detached(addr: &str, job: &Path) {
    let out = Command::new(EDGE)
        .args(["job", "run", "--detach", job.to_str().unwrap()])
        .env("EDGE_ADDR", addr)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn dns_and_load_balancer_across_two_agents() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let (addr, api) = (server.addr.clone(), &server.api);
    let ips = ["127.0.0.1", "127.0.0.2"];
    let (agents, dns_ports) = two_agents(dir.path(), &server).await;
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
        let ports: BTreeSet<u16> = srv_ports(&srv).into_iter().collect();
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
    run_detached(&addr, &web_job(dir.path(), 2, lb_port));
    let (ok, failed) = load.await.unwrap();
    assert!(ok > 50, "load ran ({ok} requests)");
    assert_eq!(failed, 0, "requests failed while an instance was stopped");
    until(15, "2 instances", async || {
        let i = api.service("web").await.ok()?;
        (i.len() == 2).then_some(())
    })
    .await;

    stop_web(&addr, api).await;
    drop(agents);
}

/// The same job in namespaces `default` and `prod`: two jobs, each with its
/// own copy, DNS names (`web.service.edge`, `web.prod.service.edge`) and
/// published port, and stopping one leaves the other serving.
#[tokio::test]
async fn the_same_service_in_two_namespaces_answers_under_its_own_names() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let addr = server.addr.clone();
    let (agents, dns_ports) = two_agents(dir.path(), &server).await;
    let edge = |args: &[&str]| {
        let out = Command::new(EDGE)
            .args(args)
            .env("EDGE_ADDR", &addr)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "edge {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    edge(&["namespace", "apply", "prod"]);
    let ports = [free_port(), free_port()];
    let default_dir = dir.path().join("default");
    let prod_dir = dir.path().join("prod");
    std::fs::create_dir_all(&default_dir).unwrap();
    std::fs::create_dir_all(&prod_dir).unwrap();
    let default_job = web_job(&default_dir, 1, ports[0]);
    let prod_job = web_job(&prod_dir, 1, ports[1]);
    edge(&["job", "run", "--detach", default_job.to_str().unwrap()]);
    edge(&[
        "job",
        "run",
        "-namespace",
        "prod",
        "--detach",
        prod_job.to_str().unwrap(),
    ]);

    let apis = [
        server.api.clone(),
        server.api.clone().with_namespace(Some("prod".to_string())),
    ];
    let mut serving = Vec::new();
    for api in &apis {
        let inst = until(30, "one passing instance", async || {
            let i = api.service("web").await.ok()?;
            let s: Vec<_> = i.into_iter().filter(|i| i.serving()).collect();
            (s.len() == 1).then(|| s[0].clone())
        })
        .await;
        serving.push(inst);
    }
    assert_eq!(serving[0].namespace, "default");
    assert_eq!(serving[1].namespace, "prod");
    assert_ne!(serving[0].alloc_id, serving[1].alloc_id);

    let resolver = SocketAddr::new("127.0.0.1".parse().unwrap(), dns_ports[0]);
    for (name, inst) in [
        ("_web._tcp.service.edge.", &serving[0]),
        ("_web._tcp.prod.service.edge.", &serving[1]),
    ] {
        let ports = until(10, "SRV of the namespace's instance", async || {
            let p = srv_ports(&dns(resolver, name, RecordType::SRV).await);
            (!p.is_empty()).then_some(p)
        })
        .await;
        assert_eq!(ports, vec![inst.port], "{name}");
    }
    let a = dns(resolver, "web.prod.service.edge.", RecordType::A).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a.answers.len(), 1, "the node's load balancer");

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for (port, inst) in ports.iter().zip(&serving) {
        let url = format!("http://127.0.0.1:{port}/");
        let body = until(20, "the published port answers", async || {
            get(&http, &url).await
        })
        .await;
        assert_eq!(
            body, inst.alloc_id,
            "port {port} reaches its namespace's copy"
        );
    }

    // The task knows its namespace (EDGE_NAMESPACE), as `alloc exec` shows.
    let out = Command::new(EDGE)
        .args([
            "alloc",
            "exec",
            &serving[1].alloc_id,
            "--",
            "printenv",
            "EDGE_NAMESPACE",
        ])
        .env("EDGE_ADDR", &addr)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "prod",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    edge(&["job", "stop", "-namespace", "prod", "web"]);
    until(20, "prod's copy gone", async || {
        let i = apis[1].service("web").await.unwrap_or_default();
        i.is_empty().then_some(())
    })
    .await;
    let body = get(&http, &format!("http://127.0.0.1:{}/", ports[0])).await;
    assert_eq!(body.as_deref(), Some(serving[0].alloc_id.as_str()));
    stop_web(&addr, &server.api).await;
    drop(agents);
}

/// Agents leave tasks running when they end: the job is stopped first.
async fn stop_web(addr: &str, api: &edge_api::Client) {
    let _ = Command::new(EDGE)
        .args(["job", "stop", "web"])
        .env("EDGE_ADDR", addr)
        .output();
    until(20, "instances gone", async || {
        let (a, _) = api.job_allocs("web", QueryOptions::default()).await.ok()?;
        a.iter()
            .all(|a| a.client_status != edge_spec::ClientStatus::Running)
            .then_some(())
    })
    .await;
}

/// Four copies on two agents move to a new revision one at a time while
/// clients keep asking through both load balancers: no request fails, and
/// at least three copies serve at every moment.
#[tokio::test]
async fn rolling_update_under_load_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let (addr, api) = (server.addr.clone(), &server.api);
    let (agents, _) = two_agents(dir.path(), &server).await;
    let lb_port = free_port();
    run_detached(&addr, &web_job_rev(dir.path(), 4, lb_port, 1));
    until(30, "4 passing instances", async || {
        let i = api.service("web").await.ok()?;
        (i.iter().filter(|i| i.serving()).count() == 4).then_some(())
    })
    .await;
    let clients = load(lb_port);
    let started = tokio::time::Instant::now();
    run_detached(&addr, &web_job_rev(dir.path(), 4, lb_port, 2));
    let mut fewest = usize::MAX;
    until(
        90,
        "every copy at revision 2 and no other left",
        async || {
            let i = api.service("web").await.ok()?;
            fewest = fewest.min(i.iter().filter(|i| i.serving()).count());
            let (allocs, _) = api.job_allocs("web", QueryOptions::default()).await.ok()?;
            let running: Vec<_> = allocs
                .iter()
                .filter(|a| a.client_status == edge_spec::ClientStatus::Running)
                .collect();
            let done = running.len() == 4 && running.iter().all(|a| a.job_version == 1);
            (done && i.iter().filter(|i| i.serving()).count() == 4).then_some(())
        },
    )
    .await;
    let took = started.elapsed();
    // Traffic that was on its way to the last stopped copy drains first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed) = clients.finish().await;
    eprintln!("rolling update: {ok} requests, {failed} failed, {took:?}, fewest serving {fewest}");
    assert!(ok > 100, "load ran ({ok} requests)");
    assert_eq!(failed, 0, "requests failed during the rolling update");
    assert!(fewest >= 3, "only {fewest} copies served at one point");
    stop_web(&addr, api).await;
    drop(agents);
}

/// Clients asking through both load balancers.
fn load(lb_port: u16) -> common::Load {
    let urls: Vec<String> = ["127.0.0.1", "127.0.0.2"]
        .iter()
        .map(|ip| format!("http://{ip}:{lb_port}/"))
        .collect();
    common::Load::start(&urls)
}

/// `edge ARGS...` against the server; (exit code, stdout and stderr).
fn edge(addr: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(EDGE)
        .args(args)
        .env("EDGE_ADDR", addr)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// A canary with `canary_weight = 20` gets a fifth of the published
/// port's traffic beside three old copies, `canary.web.service.edge`
/// answers only it, and promotion moves every copy to the new version.
#[tokio::test]
async fn a_weighted_canary_gets_its_share_until_promoted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let (addr, api) = (server.addr.clone(), &server.api);
    let (agents, dns_ports) = two_agents(dir.path(), &server).await;
    let lb_port = free_port();
    let canary = "canary = 1\n      canary_weight = 20";
    let (code, out) = edge(
        &addr,
        &[
            "job",
            "run",
            web_job_with(dir.path(), 3, lb_port, "1", canary)
                .to_str()
                .unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("successful"),
        "job run follows the deployment: {out}"
    );
    let (code, out) = edge(
        &addr,
        &[
            "job",
            "run",
            web_job_with(dir.path(), 3, lb_port, "2", canary)
                .to_str()
                .unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("edge deployment promote"), "{out}");
    let (d, _) = api
        .job_deployment("web", QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(d.status, edge_spec::DeploymentStatus::AwaitingPromotion);
    let canary_id = d.groups["web"].placed_canaries[0].clone();
    let catalog = until(20, "the catalog's canary weight", async || {
        let c: edge_api::Catalog = api
            .get("/v1/catalog", QueryOptions::default())
            .await
            .ok()?
            .0;
        let svc = c.services.get("web")?;
        (svc.canary_weight == Some(20) && svc.instances.iter().filter(|i| i.serving()).count() == 4)
            .then_some(c)
    })
    .await;
    let canary_inst = catalog.services["web"]
        .instances
        .iter()
        .find(|i| i.alloc_id == canary_id)
        .expect("the canary serves")
        .clone();
    assert!(canary_inst.canary && canary_inst.tags.iter().any(|t| t == "canary"));
    let dns_server = SocketAddr::new("127.0.0.1".parse().unwrap(), dns_ports[0]);
    let m = dns(dns_server, "canary.web.service.edge.", RecordType::A).await;
    assert_eq!(m.response_code, ResponseCode::NoError);
    let ips: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        ips,
        std::slice::from_ref(&canary_inst.address),
        "only the canary"
    );

    let http = reqwest::Client::new();
    let n = 2000;
    let mut to_canary = 0;
    for i in 0..n {
        let ip = if i % 2 == 0 { "127.0.0.1" } else { "127.0.0.2" };
        let body = get(&http, &format!("http://{ip}:{lb_port}/"))
            .await
            .expect("served");
        to_canary += usize::from(body == canary_id);
    }
    let share = to_canary as f64 * 100.0 / n as f64;
    eprintln!("canary share: {share:.1} % of {n} requests");
    assert!((15.0..=25.0).contains(&share), "canary got {share:.1} %");

    let (code, out) = edge(&addr, &["deployment", "promote", &d.id[..8]]);
    assert_eq!(code, 0, "{out}");
    until(60, "the promoted deployment to finish", async || {
        let (d, _) = api
            .job_deployment("web", QueryOptions::default())
            .await
            .ok()?;
        (d.status == edge_spec::DeploymentStatus::Successful).then_some(())
    })
    .await;
    let (allocs, _) = api
        .job_allocs("web", QueryOptions::default())
        .await
        .unwrap();
    let new: BTreeSet<String> = allocs
        .iter()
        .filter(|a| a.client_status == edge_spec::ClientStatus::Running && a.job_version == 1)
        .map(|a| a.id.clone())
        .collect();
    assert_eq!(new.len(), 3, "{allocs:?}");
    until(20, "only new copies answer", async || {
        for _ in 0..30 {
            let body = get(&http, &format!("http://127.0.0.1:{lb_port}/")).await?;
            if !new.contains(&body) {
                return None;
            }
        }
        Some(())
    })
    .await;
    stop_web(&addr, api).await;
    drop(agents);
}

/// A version whose check never passes fails its deployment at
/// `healthy_deadline`; `auto_revert` brings the stable version back as a
/// new one, and no request through the load balancers fails meanwhile.
#[tokio::test]
async fn a_failing_version_is_reverted_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let (addr, api) = (server.addr.clone(), &server.api);
    let (agents, _) = two_agents(dir.path(), &server).await;
    let lb_port = free_port();
    let update =
        "auto_revert = true\n      healthy_deadline = \"4s\"\n      progress_deadline = \"30s\"";
    let (code, out) = edge(
        &addr,
        &[
            "job",
            "run",
            web_job_with(dir.path(), 3, lb_port, "1", update)
                .to_str()
                .unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(api.job("web").await.unwrap().stable, "{out}");
    let clients = load(lb_port);
    let (code, out) = edge(
        &addr,
        &[
            "job",
            "run",
            web_job_with(dir.path(), 3, lb_port, "bad", update)
                .to_str()
                .unwrap(),
        ],
    );
    assert_eq!(code, 1, "a failed deployment fails `job run`: {out}");
    assert!(out.contains("rolling back to job version 0"), "{out}");
    until(60, "the revert to finish", async || {
        let (d, _) = api
            .job_deployment("web", QueryOptions::default())
            .await
            .ok()?;
        (d.job_version == 2 && d.status == edge_spec::DeploymentStatus::Successful).then_some(())
    })
    .await;
    until(20, "three serving copies and nothing else", async || {
        let i = api.service("web").await.ok()?;
        (i.len() == 3 && i.iter().all(|i| i.serving())).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed) = clients.finish().await;
    eprintln!("failed version and revert: {ok} requests, {failed} failed");
    assert!(ok > 100, "load ran ({ok} requests)");
    assert_eq!(failed, 0, "requests failed during the failed deployment");
    let job = api.job("web").await.unwrap();
    assert_eq!(job.version, 2);
    stop_web(&addr, api).await;
    drop(agents);
}
