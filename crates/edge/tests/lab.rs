//! Failure tests on a real multi-node cluster: `deploy/lab` puts the server
//! on a bridge and each agent in its own network namespace, then the tests
//! kill nodes, partition them, crash the server and the agents, reboot a
//! node while the server is away, restart the agent of a cut-off node and
//! check it keeps serving, knock on the agent door with bad input, and roll
//! a new version across two nodes under load, reach a node behind NAT
//! through its tunnel, reach bridge-mode copies on every node through
//! every node's load balancer, and run the seed's Compose webapp on three
//! nodes. Root only: run with `EDGE_TEST_ROOT=1` (the Compose test also
//! with `EDGE_TEST_CONTAINERD=1`).
//!
//! Each test has its own lab (dir, bridge, namespaces, /24), so they run in
//! parallel.

mod common;

use common::webapp::{self, Webapp};
use common::{until, until_ok};
use edge_api::{AllocListStub, Client, QueryOptions};
use edge_spec::{ClientStatus, DesiredStatus, EvalStatus, Job, NodeStatus};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const EDGE: &str = env!("CARGO_BIN_EXE_edge");
/// Short, so that loss and partition tests take seconds.
const TTL_SECS: u64 = 3;

fn enabled() -> bool {
    common::gated("EDGE_TEST_ROOT")
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/lab")
}

/// One lab; `down` on drop, with the logs printed when the test failed.
struct Lab {
    dir: tempfile::TempDir,
    tag: u8,
    api: Client,
    addr: String,
}

impl Lab {
    fn up(tag: u8, nodes: u32) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("https://10.77.{}.1:4646", 100 + tag);
        let mut lab = Lab {
            api: Client::new("http://127.0.0.1:1", None).unwrap(),
            dir,
            tag,
            addr,
        };
        // Leftovers of an earlier, killed run with the same names.
        lab.try_run(&["down"]);
        lab.run(&["up", &nodes.to_string()]);
        lab.api = lab.client(None);
        lab
    }

    /// The cluster CA the lab's server made.
    fn ca(&self) -> std::sync::Arc<edge_api::tls::ClusterCa> {
        let pem = std::fs::read_to_string(self.lab_dir().join("server/ca.pem")).unwrap();
        edge_api::tls::ClusterCa::known(&pem, None).unwrap()
    }

    /// An API client over TLS with the management token the lab
    /// bootstrapped; with `node`, holding lab node `node`'s certificate.
    fn client(&self, node: Option<u32>) -> Client {
        let token = self.token();
        let creds = node.map(|i| {
            let dir = self.lab_dir().join(format!("agent-{i}/tls"));
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
            edge_api::tls::Credentials::from_pem(&read("node.pem"), &read("node-key.pem")).unwrap()
        });
        let tls = edge_api::tls::client_config(self.ca(), creds).unwrap();
        Client::with_tls(&self.addr, Some(token), tls).unwrap()
    }

    /// The management token the lab bootstrapped (ACLs are on: the lab's
    /// server binds a non-loopback address).
    fn token(&self) -> String {
        std::fs::read_to_string(self.lab_dir().join("acl-token"))
            .unwrap()
            .trim()
            .to_string()
    }

    fn lab_dir(&self) -> PathBuf {
        self.dir.path().join("lab")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("bash");
        c.arg(script())
            .args(args)
            .env("EDGE_BIN", EDGE)
            .env("EDGE_LAB_DIR", self.lab_dir())
            .env("EDGE_LAB_BRIDGE", format!("edgelt{}", self.tag))
            .env("EDGE_LAB_NS", format!("edge-lt{}", self.tag))
            .env("EDGE_LAB_NET", format!("10.77.{}", 100 + self.tag))
            .env("EDGE_LAB_TTL", format!("{TTL_SECS}s"));
        c
    }

    fn try_run(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().unwrap()
    }

    fn run(&self, args: &[&str]) {
        let out = self.try_run(args);
        assert!(
            out.status.success(),
            "deploy/lab {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ns(&self, node: u32) -> String {
        format!("edge-lt{}-{node}", self.tag)
    }

    /// Pids of processes in node's namespace whose command line has `what`.
    fn procs(&self, node: u32, what: &str) -> BTreeSet<u32> {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.ns(node)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|p: &u32| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                    .is_ok_and(|c| c.starts_with(what))
            })
            .collect()
    }

    fn dump(&self) {
        let Ok(rd) = std::fs::read_dir(self.lab_dir()) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "log") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(60).collect();
                eprintln!("--- {} (last lines) ---", p.display());
                for l in tail.into_iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump();
        }
        self.try_run(&["down"]);
    }
}

fn sleep_job(id: &str, count: u32) -> Job {
    serde_json::from_value(serde_json::json!({
        "id": id,
        "name": id,
        "groups": [{
            "name": "s",
            "count": count,
            "tasks": [{
                "name": "sleep",
                "driver": "exec",
                "config": {"command": "/bin/sleep", "args": ["600"]},
                "resources": {"cpu": 50, "memory": 32}
            }]
        }]
    }))
    .unwrap()
}

async fn allocs(api: &Client, job: &str) -> Vec<AllocListStub> {
    api.job_allocs(job, QueryOptions::default())
        .await
        .map(|(a, _)| a)
        .unwrap_or_default()
}

fn running(a: &AllocListStub) -> bool {
    a.desired_status == DesiredStatus::Run && a.client_status == ClientStatus::Running
}

async fn live(api: &Client, job: &str) -> Vec<AllocListStub> {
    allocs(api, job).await.into_iter().filter(running).collect()
}

fn pids<'a>(list: impl IntoIterator<Item = &'a AllocListStub>) -> BTreeSet<u32> {
    list.into_iter()
        .flat_map(|a| a.task_states.values().filter_map(|t| t.pid))
        .collect()
}

fn node_no(a: &AllocListStub) -> u32 {
    a.node_name
        .strip_prefix("lab-")
        .and_then(|n| n.parse().ok())
        .unwrap()
}

fn unix_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.unwrap().as_millis() as i64
}

/// The one node's last heartbeat if it is ready and was heard at `ms` or later.
async fn heartbeat_since(api: &Client, ms: i64) -> Option<i64> {
    let node = api.nodes().await.ok()?.into_iter().next()?;
    (node.status == NodeStatus::Ready && node.last_heartbeat >= ms).then_some(node.last_heartbeat)
}

async fn ready_nodes(api: &Client, n: u32) {
    until(30, &format!("{n} ready nodes"), async || {
        (api.health().await.ok()?.nodes_ready == n).then_some(())
    })
    .await;
}

/// Runs `count` sleepers and waits until all run; returns them.
async fn deploy(api: &Client, id: &str, count: u32) -> Vec<AllocListStub> {
    api.register(&sleep_job(id, count)).await.unwrap();
    until(30, &format!("{count} running"), async || {
        let a = live(api, id).await;
        (a.len() == count as usize).then_some(a)
    })
    .await
}

async fn node_status(api: &Client, name: &str) -> Option<NodeStatus> {
    api.nodes()
        .await
        .ok()?
        .into_iter()
        .find(|n| n.name == name)
        .map(|n| n.status)
}

#[tokio::test]
async fn node_loss_is_replaced_within_ttl_plus_10s() {
    if !enabled() {
        return;
    }
    let lab = Lab::up(1, 3);
    let api = &lab.api;
    ready_nodes(api, 3).await;
    let before = deploy(api, "loss", 4).await;
    let victim = node_no(&before[0]);
    let on_victim = before.iter().filter(|a| node_no(a) == victim).count();
    let victim_pids = pids(before.iter().filter(|a| node_no(a) == victim));

    lab.run(&["kill", &victim.to_string()]);
    let t0 = Instant::now();
    assert!(
        lab.procs(victim, "").is_empty(),
        "the node is dead: nothing runs in its namespace"
    );
    until(TTL_SECS + 10, "replaced on the other nodes", async || {
        let a = live(api, "loss").await;
        (a.len() == 4 && a.iter().all(|a| node_no(a) != victim)).then_some(())
    })
    .await;
    eprintln!("replaced {:?} after the node died", t0.elapsed());
    let all = allocs(api, "loss").await;
    let lost: Vec<_> = all
        .iter()
        .filter(|a| a.client_status == ClientStatus::Lost)
        .collect();
    assert_eq!(
        lost.len(),
        on_victim,
        "exactly the victim's allocations are lost"
    );
    assert!(lost.iter().all(|a| node_no(a) == victim));
    assert_eq!(pids(lost.iter().copied()), victim_pids);
    assert_eq!(
        node_status(api, &format!("lab-{victim}")).await,
        Some(NodeStatus::Down)
    );
    // The replacements really run on the survivors.
    let now = live(api, "loss").await;
    for n in (1..=3).filter(|n| *n != victim) {
        let want = pids(now.iter().filter(|a| node_no(a) == n));
        assert_eq!(lab.procs(n, "/bin/sleep"), want, "sleepers on lab-{n}");
    }
}

#[tokio::test]
async fn partition_replaces_elsewhere_and_heal_stops_stale_copies() {
    if !enabled() {
        return;
    }
    let lab = Lab::up(2, 3);
    let api = &lab.api;
    ready_nodes(api, 3).await;
    let before = deploy(api, "part", 3).await;
    let cut = node_no(&before[0]);
    let cut_pids = pids(before.iter().filter(|a| node_no(a) == cut));
    assert!(!cut_pids.is_empty());

    lab.run(&["cut", &cut.to_string()]);
    until(
        TTL_SECS + 10,
        "replaced away from the cut node",
        async || {
            let a = live(api, "part").await;
            (a.len() == 3 && a.iter().all(|a| node_no(a) != cut)).then_some(())
        },
    )
    .await;
    assert_eq!(
        node_status(api, &format!("lab-{cut}")).await,
        Some(NodeStatus::Down)
    );
    // Disconnected: the cut-off node keeps its tasks running.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        lab.procs(cut, "/bin/sleep"),
        cut_pids,
        "tasks keep running on the partitioned node"
    );

    lab.run(&["heal", &cut.to_string()]);
    let t0 = Instant::now();
    until(30, "the healed node is ready again", async || {
        (node_status(api, &format!("lab-{cut}")).await == Some(NodeStatus::Ready)).then_some(())
    })
    .await;
    until(20, "stale copies stopped on the healed node", async || {
        lab.procs(cut, "/bin/sleep").is_empty().then_some(())
    })
    .await;
    eprintln!("stale copies stopped {:?} after heal", t0.elapsed());
    let a = live(api, "part").await;
    assert_eq!(a.len(), 3, "back at count, not above");
    assert!(a.iter().all(|a| node_no(a) != cut));
    let stale = allocs(api, "part").await;
    assert!(
        stale
            .iter()
            .filter(|a| node_no(a) == cut)
            .all(|a| a.desired_status == DesiredStatus::Stop),
        "the partitioned copies are desired-stop"
    );
}

#[tokio::test]
async fn server_kill9_loses_no_acknowledged_registration() {
    if !enabled() {
        return;
    }
    let lab = Lab::up(3, 2);
    let api = lab.api.clone();
    ready_nodes(&api, 2).await;

    // Four writers register jobs as fast as the server answers, for a
    // bounded time, while the server is killed and started again.
    let stop_at = Instant::now() + Duration::from_secs(6);
    let mut writers = Vec::new();
    for w in 0..4 {
        let api = lab.client(None);
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0;
            while Instant::now() < stop_at {
                let id = format!("w{w}-{i}");
                i += 1;
                match api.register(&sleep_job(&id, 0)).await {
                    Ok(r) => acked.push((id, r.job_modify_index)),
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            (acked, i)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    lab.run(&["kill-server"]);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    lab.run(&["start-server"]);
    let mut acked = Vec::new();
    let mut tried = 0;
    for w in writers {
        let (a, n) = w.await.unwrap();
        acked.extend(a);
        tried += n;
    }
    eprintln!("{} of {tried} registrations acknowledged", acked.len());
    assert!(acked.len() > 20, "the stream really ran: {}", acked.len());
    assert!(
        acked.len() < tried,
        "some registrations hit the dead server"
    );
    for (id, index) in &acked {
        let job = api
            .job(id)
            .await
            .unwrap_or_else(|e| panic!("acknowledged job {id} is gone: {e}"));
        assert!(
            job.modify_index >= *index,
            "{id} is at least as new as acked"
        );
    }
    // Agents find the server again by themselves.
    ready_nodes(&api, 2).await;
}

#[tokio::test]
async fn agent_kill9_reattaches_to_running_tasks() {
    if !enabled() {
        return;
    }
    let lab = Lab::up(4, 2);
    let api = &lab.api;
    ready_nodes(api, 2).await;
    let before = deploy(api, "crash", 4).await;
    let mut by_node = Vec::new();
    for n in 1..=2 {
        let want = pids(before.iter().filter(|a| node_no(a) == n));
        assert_eq!(lab.procs(n, "/bin/sleep"), want);
        by_node.push(want);
    }

    lab.run(&["kill-agent", "1"]);
    assert!(lab.procs(1, EDGE).iter().all(|p| {
        std::fs::read_to_string(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.contains("executor"))
    }));
    assert_eq!(
        lab.procs(1, "/bin/sleep"),
        by_node[0],
        "tasks outlive the agent"
    );
    lab.run(&["start", "1"]);
    tokio::time::sleep(Duration::from_secs(TTL_SECS)).await;
    ready_nodes(api, 2).await;
    let after = live(api, "crash").await;
    assert_eq!(after.len(), 4);
    assert_eq!(allocs(api, "crash").await.len(), 4, "no new allocations");
    assert_eq!(
        pids(after.iter().filter(|a| node_no(a) == 1)),
        by_node[0],
        "same pids: re-attached"
    );
    assert_eq!(
        lab.procs(1, "/bin/sleep"),
        by_node[0],
        "no duplicate processes"
    );
}

#[tokio::test]
async fn offline_reboot_restarts_from_local_state_then_reconciles() {
    if !enabled() {
        return;
    }
    let lab = Lab::up(5, 2);
    let api = &lab.api;
    ready_nodes(api, 2).await;
    let before = deploy(api, "reboot", 2).await;
    let ids: BTreeSet<String> = before.iter().map(|a| a.id.clone()).collect();
    let on_1 = before.iter().filter(|a| node_no(a) == 1).count();
    assert!(on_1 > 0);
    let old = lab.procs(1, "/bin/sleep");

    lab.run(&["kill-server"]);
    // A reboot: the agent and every task on the node die at once.
    lab.run(&["kill", "1"]);
    assert!(lab.procs(1, "").is_empty());
    lab.run(&["start", "1"]);
    let restarted = until(20, "tasks restarted with the server away", async || {
        let p = lab.procs(1, "/bin/sleep");
        (p.len() == on_1).then_some(p)
    })
    .await;
    assert!(
        restarted.is_disjoint(&old),
        "new processes after the reboot"
    );

    lab.run(&["start-server"]);
    ready_nodes(api, 2).await;
    let after = until(20, "reported running with the new pids", async || {
        let a = live(api, "reboot").await;
        let on = pids(a.iter().filter(|a| node_no(a) == 1));
        (a.len() == 2 && on == restarted).then_some(a)
    })
    .await;
    let now: BTreeSet<String> = after.iter().map(|a| a.id.clone()).collect();
    assert_eq!(now, ids, "the same allocations, none replaced");
    assert_eq!(allocs(api, "reboot").await.len(), 2, "no duplicates");
    tokio::time::sleep(Duration::from_secs(TTL_SECS)).await;
    assert_eq!(lab.procs(1, "/bin/sleep"), restarted, "still one copy each");
}

#[tokio::test]
async fn agent_door_refuses_bad_input_and_changes_nothing() {
    if !enabled() {
        return;
    }
    let lab = Lab::up(6, 1);
    let api = &lab.api;
    ready_nodes(api, 1).await;
    let allocs_before = deploy(api, "door", 1).await;
    let token = std::fs::read_to_string(lab.lab_dir().join("server/token")).unwrap();
    let token = token.trim();
    let node = api.nodes().await.unwrap().remove(0);
    let ca = std::fs::read_to_string(lab.lab_dir().join("server/ca.pem")).unwrap();
    let tls = |node: bool| {
        let mut b = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap());
        if node {
            let dir = lab.lab_dir().join("agent-1/tls");
            let mut pem = std::fs::read(dir.join("node.pem")).unwrap();
            pem.extend(std::fs::read(dir.join("node-key.pem")).unwrap());
            b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        b.build().unwrap()
    };
    // `user` has no certificate (the join token is no way in to the node
    // routes over TLS); `me` holds node 1's.
    let (user, me) = (tls(false), tls(true));
    let url = |p: &str| format!("{}{p}", lab.addr);
    let status = async |req: reqwest::RequestBuilder| req.send().await.unwrap().status().as_u16();
    let index = async || api.health().await.unwrap().index;
    let reg = serde_json::json!({"node": api.node(&node.id).await.unwrap()});
    // Nothing else writes now: the index stands still unless a request
    // below changes something.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idx0 = index().await;

    assert_eq!(
        status(user.post(url("/v1/agent/register")).json(&reg)).await,
        403
    );
    let with_token = user
        .post(url("/v1/agent/register"))
        .header("x-edge-token", token);
    assert_eq!(
        status(with_token.json(&reg)).await,
        403,
        "the token is not a node's identity"
    );
    let hb = me.post(url("/v1/agent/heartbeat/no-such-node"));
    assert_eq!(status(hb).await, 403, "a node heartbeats only as itself");
    let hb = user.post(url(&format!("/v1/agent/heartbeat/{}", node.id)));
    assert_eq!(
        status(hb).await,
        403,
        "heartbeat needs the node certificate"
    );

    let report = format!("/v1/agent/allocs/{}", node.id);
    let bodies = [
        "{not json".to_string(),
        r#"{"allocs": "nope"}"#.to_string(),
        r#"{"allocs": [{"id": 7, "client_status": "running"}]}"#.to_string(),
        format!(
            r#"{{"allocs": [{{"id": "{}", "client_status": "exploded"}}]}}"#,
            allocs_before[0].id
        ),
    ];
    for b in &bodies {
        let r = me
            .post(url(&report))
            .header("content-type", "application/json")
            .body(b.clone());
        assert_eq!(status(r).await, 400, "malformed report {b}");
    }
    let forged =
        serde_json::json!({"allocs": [{"id": allocs_before[0].id, "client_status": "failed"}]});
    let r = me.post(url("/v1/agent/allocs/other-node")).json(&forged);
    assert_eq!(status(r).await, 403, "report for another node");
    let r = user
        .post(url(&report))
        .header("x-edge-token", token)
        .json(&forged);
    assert_eq!(status(r).await, 403, "report needs the node certificate");

    assert_eq!(index().await, idx0, "no bad request moved the index");
    let a = live(api, "door").await;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].modify_index, allocs_before[0].modify_index);
}

/// A web service on the lab's node 1 (exec or wasm), published on `lb_port`.
fn web_job(id: &str, driver: &str, lb_port: u16, www: &Path) -> Job {
    let task = match driver {
        "exec" => format!(
            r#"driver = "exec"
      config {{
        command = "/usr/bin/python3"
        args    = ["-m", "http.server", "--bind", "${{EDGE_IP_http}}", "--directory", "{}", "${{EDGE_PORT_http}}"]
      }}"#,
            www.display()
        ),
        _ => format!(
            r#"driver = "wasm"
      config {{
        module = "{}"
        mode   = "http"
        port   = "http"
      }}"#,
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../examples/wasm/web.wat")
                .display()
        ),
    };
    let src = format!(
        r#"job "{id}" {{
  group "web" {{
    count = 2
    network {{
      port "http" {{}}
    }}
    service {{
      name = "{id}"
      port = "http"
      check {{
        type     = "http"
        path     = "/"
        interval = "500ms"
        timeout  = "1s"
      }}
      publish {{
        port     = {lb_port}
        protocol = "http"
      }}
    }}
    task "web" {{
      {task}
      resources {{
        cpu    = 50
        memory = 64
      }}
    }}
  }}
}}"#
    );
    edge_spec::parse_hcl(&src, &edge_spec::ParseOptions::default())
        .unwrap()
        .job
}

/// Asks from inside node `n`'s namespace (the host cannot reach a cut-off
/// node): every URL answers 200 and every name resolves on the node's DNS.
const PROBE: &str = r#"
import socket, struct, sys, urllib.request
dns_ip, urls, names = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")
for u in urls:
    try:
        assert urllib.request.urlopen(u, timeout=1).status == 200
    except Exception as e:
        sys.exit(f"{u}: {e}")
for n in names:
    q = struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in n.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    try:
        s.sendto(q, (dns_ip, 8600))
        r = s.recv(4096)
    except Exception as e:
        sys.exit(f"{n}: {e}")
    if r[3] & 0xF != 0 or struct.unpack(">H", r[6:8])[0] == 0:
        sys.exit(f"{n}: no answer")
"#;

impl Lab {
    fn node_ip(&self, n: u32) -> String {
        format!("10.77.{}.{}", 100 + self.tag, 10 + n)
    }

    fn probe(&self, n: u32, urls: &[String], names: &[&str]) -> Result<(), String> {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns(n)))
            .args(["--", "python3", "-c", PROBE, &self.node_ip(n)])
            .arg(urls.join(","))
            .arg(names.join(","))
            .output()
            .unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    }
}

/// The issue's matrix with the network cut to the server: node 1 is cut off,
/// then its agent is stopped (SIGTERM), killed (SIGKILL) or the node reboots;
/// within 10 s of the agent's start, still cut off, its exec and wasm copies
/// answer, both published ports answer through its load balancer and both
/// names resolve on its DNS. Healed, each job is back at count, no duplicate.
#[tokio::test]
async fn cut_off_node_keeps_serving_through_agent_restarts() {
    if !enabled() {
        return;
    }
    let lab = Lab::up(7, 1);
    let api = &lab.api;
    ready_nodes(api, 1).await;
    let www = lab.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "ok\n").unwrap();
    let jobs = [("cut-exec", "exec", 18081), ("cut-wasm", "wasm", 18082)];
    for (id, driver, lb) in jobs {
        api.register(&web_job(id, driver, lb, &www)).await.unwrap();
    }
    let ip = lab.node_ip(1);
    let names: Vec<String> = jobs
        .iter()
        .map(|(id, _, _)| format!("{id}.service.edge"))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let urls = async || {
        let mut urls: Vec<String> = jobs
            .iter()
            .map(|(_, _, lb)| format!("http://{ip}:{lb}/"))
            .collect();
        for (id, _, _) in jobs {
            let a = live(api, id).await;
            if a.len() != 2 {
                return None;
            }
            for a in a {
                let a = api.alloc(&a.id).await.ok()?;
                urls.push(format!("http://{ip}:{}/", a.resources.ports[0].value));
            }
        }
        Some(urls)
    };
    let mut before = until(30, "both jobs running", urls).await;
    until(20, "serving before the cut", async || {
        lab.probe(1, &before, &names).ok()
    })
    .await;
    for stop in ["term-agent", "kill-agent", "kill"] {
        lab.run(&["cut", "1"]);
        lab.run(&[stop, "1"]);
        if stop == "kill" {
            assert!(lab.procs(1, "").is_empty(), "a reboot leaves nothing");
        }
        let started = Instant::now();
        lab.run(&["start", "1"]);
        while let Err(e) = lab.probe(1, &before, &names) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{stop} while cut off: not serving within 10 s: {e}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "{stop} while cut off: serving again after {:?}",
            started.elapsed()
        );
        lab.run(&["heal", "1"]);
        let healed = unix_ms();
        // The TTL may run out before the agent gets through, and then the
        // server replaces the node's copies on the node itself. Only after
        // two heartbeats since the heal (a mark-down racing the first has
        // landed by the second) and with every evaluation done is the set
        // of copies final.
        let heard = until(40, "a heartbeat after the heal", async || {
            heartbeat_since(api, healed).await
        })
        .await;
        until(10, "a second heartbeat after the heal", async || {
            heartbeat_since(api, heard + 1).await
        })
        .await;
        let what = "each job at count and serving after the heal";
        before = until_ok(40, what, async || {
            for (id, _, _) in jobs {
                let evals = api.job_evals(id).await.map_err(|e| e.to_string())?;
                // A deployment's follow-up (its progress deadline) waits
                // pending for minutes by design: only due ones count.
                let now = unix_ms();
                if evals
                    .iter()
                    .any(|e| e.status == EvalStatus::Pending && e.wait_until <= now)
                {
                    return Err(format!("{id} has pending evaluations"));
                }
            }
            let urls = urls().await.ok_or("a job is not at count")?;
            let copies = lab.procs(1, "/usr/bin/python3").len();
            if copies != 2 {
                return Err(format!("{copies} exec copies run"));
            }
            lab.probe(1, &urls, &names)?;
            Ok(urls)
        })
        .await;
        for (id, _, _) in jobs {
            let n = allocs(api, id)
                .await
                .into_iter()
                .filter(|a| {
                    a.desired_status == DesiredStatus::Run && !a.client_status.is_terminal()
                })
                .count();
            assert_eq!(n, 2, "{id}: no duplicate after {stop}");
        }
    }
}

/// A rolling update across two lab nodes (own network namespaces, the
/// server on the bridge) under load through both nodes' load balancers:
/// no request fails, and the deployment ends successful.
#[tokio::test]
async fn rolling_update_across_lab_nodes_fails_no_request() {
    if !enabled() {
        return;
    }
    let lab = Lab::up(8, 2);
    let api = &lab.api;
    ready_nodes(api, 2).await;
    let www = lab.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "ok\n").unwrap();
    let lb = 18083;
    let mut v0 = web_job("roll", "exec", lb, &www);
    v0.update = Some(edge_spec::UpdatePolicy {
        max_parallel: Some(1),
        min_healthy_time: Some(edge_spec::duration::PolicyWait(Duration::from_secs(1))),
        ..Default::default()
    });
    api.register(&v0).await.unwrap();
    until(60, "the first version deployed", async || {
        let (d, _) = api
            .job_deployment("roll", QueryOptions::default())
            .await
            .ok()?;
        (d.status == edge_spec::DeploymentStatus::Successful).then_some(())
    })
    .await;
    let urls: Vec<String> = [1, 2]
        .iter()
        .map(|&n| format!("http://{}:{lb}/", lab.node_ip(n)))
        .collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    until(20, "both load balancers answer", async || {
        for u in &urls {
            http.get(u).send().await.ok()?.error_for_status().ok()?;
        }
        Some(())
    })
    .await;
    let clients = common::Load::start(&urls);
    let mut v1 = v0.clone();
    v1.groups[0].tasks[0].env.insert("REV".into(), "1".into());
    api.register(&v1).await.unwrap();
    let d = until(90, "the new version deployed", async || {
        let (d, _) = api
            .job_deployment("roll", QueryOptions::default())
            .await
            .ok()?;
        (d.job_version == 1 && d.status == edge_spec::DeploymentStatus::Successful).then_some(d)
    })
    .await;
    until(20, "only new copies run", async || {
        let a = live(api, "roll").await;
        (a.len() == 2 && a.iter().all(|a| a.job_version == 1)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed) = clients.finish().await;
    eprintln!("lab rolling update: {ok} requests, {failed} failed");
    assert!(ok > 100, "load ran ({ok} requests)");
    assert_eq!(failed, 0, "requests failed during the rolling update");
    assert_eq!(d.groups["web"].healthy, 2);
}

/// A node behind NAT (a one-way firewall: it can reach the server, nothing
/// can open a connection to it) still serves `edge alloc exec` and
/// `edge alloc logs -f`, through the tunnel its agent opened, also after
/// its agent restarted behind the firewall.
#[tokio::test]
async fn node_behind_nat_serves_exec_and_logs_through_its_tunnel() {
    if !enabled() {
        return;
    }
    let lab = Lab::up(9, 1);
    let api = &lab.api;
    ready_nodes(api, 1).await;
    let job: Job = serde_json::from_value(serde_json::json!({
        "id": "nat",
        "name": "nat",
        "groups": [{
            "name": "g",
            "tasks": [{
                "name": "count",
                "driver": "exec",
                "config": {"command": "/bin/sh", "args": ["-c", "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.2; done"]},
                "resources": {"cpu": 50, "memory": 32}
            }]
        }]
    }))
    .unwrap();
    api.register(&job).await.unwrap();
    let alloc = until(30, "the allocation running", async || {
        live(api, "nat").await.into_iter().next()
    })
    .await;

    lab.run(&["nat", "1"]);
    lab.run(&["kill-agent", "1"]);
    lab.run(&["start", "1"]);
    let agent_http = format!("10.77.{}.11:4647", 100 + lab.tag);
    let direct = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(&agent_http),
    )
    .await;
    assert!(
        !matches!(direct, Ok(Ok(_))),
        "the server side must not reach the agent at {agent_http}"
    );

    let cli = |args: &[&str]| {
        Command::new(EDGE)
            .args(args)
            .env("EDGE_ADDR", &lab.addr)
            .env("EDGE_CACERT", lab.lab_dir().join("server/ca.pem"))
            .env("EDGE_TOKEN", lab.token())
            .output()
            .unwrap()
    };
    let out = until(
        30,
        "exec through the tunnel of the NATed node",
        async || {
            let out = cli(&[
                "alloc",
                "exec",
                &alloc.id,
                "--",
                "sh",
                "-c",
                "echo hi; exit 4",
            ]);
            (out.status.code() == Some(4)).then_some(out)
        },
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");

    let ca = lab.lab_dir().join("server/ca.pem");
    let token = lab.token();
    common::follow_logs(
        &lab.addr,
        &alloc.id,
        &[
            ("EDGE_CACERT", ca.as_os_str()),
            ("EDGE_TOKEN", token.as_ref()),
        ],
    )
    .await;
}

/// Bridge-mode copies on two lab nodes, each in a namespace of its own
/// behind its node's port mapping: every node's load balancer reaches both,
/// the one on the other node too.
#[tokio::test]
async fn load_balancers_reach_bridge_copies_on_every_node() {
    if !enabled() {
        return;
    }
    let lab = Lab::up(10, 2);
    let api = &lab.api;
    ready_nodes(api, 2).await;
    let lb = 18084;
    let src = format!(
        r#"job "bridged" {{
  constraint {{
    operator = "distinct_hosts"
    value    = "true"
  }}
  group "web" {{
    count = 2
    network {{
      mode = "bridge"
      port "http" {{
        to = 80
      }}
    }}
    service {{
      name = "bridged"
      port = "http"
      check {{
        type     = "http"
        path     = "/"
        interval = "500ms"
        timeout  = "1s"
      }}
      publish {{
        port     = {lb}
        protocol = "http"
      }}
    }}
    task "web" {{
      driver = "exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "echo $EDGE_ALLOC_IP > $EDGE_TASK_DIR/index.html && exec busybox httpd -f -p 80 -h $EDGE_TASK_DIR"]
      }}
      resources {{
        cpu    = 50
        memory = 32
      }}
    }}
  }}
}}"#
    );
    let job = edge_spec::parse_hcl(&src, &edge_spec::ParseOptions::default())
        .unwrap()
        .job;
    api.register(&job).await.unwrap();
    let copies = until(60, "a running copy on each node", async || {
        let a = live(api, "bridged").await;
        let nodes: BTreeSet<u32> = a.iter().map(node_no).collect();
        (a.len() == 2 && nodes.len() == 2 && a.iter().all(|a| a.address.is_some())).then_some(a)
    })
    .await;
    let want: BTreeSet<String> = copies
        .iter()
        .map(|a| a.address.unwrap().to_string())
        .collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    for n in [1, 2] {
        let url = format!("http://{}:{lb}/", lab.node_ip(n));
        let seen = until(
            30,
            &format!("node {n}'s load balancer reaches both copies"),
            async || {
                let mut seen = BTreeSet::new();
                for _ in 0..20 {
                    let body = http.get(&url).send().await.ok()?.text().await.ok()?;
                    seen.insert(body.trim().to_string());
                }
                (seen == want).then_some(seen)
            },
        )
        .await;
        assert_eq!(seen, want);
    }
    api.stop_job("bridged", false).await.unwrap();
    // Stopped, each copy's namespace, address and mappings go too.
    until(30, "the copies stopped and detached", async || {
        for a in &copies {
            let a = api.alloc(&a.id).await.ok()?;
            (a.client_status.is_terminal() && a.address.is_none()).then_some(())?;
        }
        Some(())
    })
    .await;
    let left = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    for a in &copies {
        assert!(!left.contains(a.id.as_str()), "namespace of {} left", a.id);
    }
}

/// A named network across two lab nodes: one segment over VXLAN, so a
/// member on lab-1 reaches one on lab-2 by address and finds it by name
/// (DNS answers members with their addresses on the network), and a node
/// that leaves takes its forwarding entries with it.
#[tokio::test]
async fn a_named_network_spans_nodes_over_the_overlay() {
    if !enabled() {
        return;
    }
    let lab = Lab::up(11, 2);
    let api = &lab.api;
    ready_nodes(api, 2).await;
    let src = r#"job "ovl" {
  constraint {
    operator = "distinct_hosts"
    value    = "true"
  }
  network "back" {}
  group "web" {
    count = 2
    network {
      mode     = "bridge"
      networks = ["back"]
      port "http" {
        to = 80
      }
    }
    service {
      name = "ovl"
      port = "http"
    }
    task "web" {
      driver = "exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "echo $EDGE_ALLOC_IP > $EDGE_TASK_DIR/index.html && exec busybox httpd -f -p 80 -h $EDGE_TASK_DIR"]
      }
      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}"#;
    let job = edge_spec::parse_hcl(src, &edge_spec::ParseOptions::default())
        .unwrap()
        .job;
    api.register(&job).await.unwrap();
    let copies = until(60, "a running member on each node", async || {
        let mut a = live(api, "ovl").await;
        a.sort_by_key(node_no);
        let nodes: BTreeSet<u32> = a.iter().map(node_no).collect();
        (a.len() == 2 && nodes.len() == 2 && a.iter().all(|a| a.networks.contains_key("back")))
            .then_some(a)
    })
    .await;
    let ip = |i: usize| copies[i].networks["back"];
    let nets = api.networks().await.unwrap();
    let back = nets.iter().find(|n| n.key() == "default/ovl/back").unwrap();
    assert_eq!(back.nodes.len(), 2, "{back:?}");
    for i in 0..2 {
        assert!(
            back.subnet.contains(ip(i)),
            "{} outside {}",
            ip(i),
            back.subnet
        );
    }
    let in_alloc = |i: usize, cmd: &str| {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/edge-{}", copies[i].id))
            .args(["sh", "-c", cmd])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    };
    for (from, to) in [(0, 1), (1, 0)] {
        let body = until(
            30,
            &format!("member {from} reaches member {to}"),
            async || {
                let out = in_alloc(
                    from,
                    &format!("timeout 2 busybox wget -q -O - http://{}/", ip(to)),
                );
                (out.trim() == ip(to).to_string()).then_some(out)
            },
        )
        .await;
        assert_eq!(body.trim(), ip(to).to_string());
    }
    // By name: the node's DNS, through the member's gateway, answers the
    // service with the members' addresses on the network.
    let resolv = std::fs::read_to_string(
        lab.lab_dir()
            .join(format!("agent-1/allocs/{}/resolv.conf", copies[0].id)),
    )
    .unwrap();
    let gateway = resolv
        .lines()
        .find_map(|l| l.strip_prefix("nameserver "))
        .unwrap()
        .to_string();
    let answer = until(30, "DNS answers the members' addresses", async || {
        let out = in_alloc(
            0,
            &format!("timeout 5 busybox nslookup ovl.service.edge {gateway}"),
        );
        (out.contains(&ip(0).to_string()) && out.contains(&ip(1).to_string())).then_some(out)
    })
    .await;
    assert!(!answer.contains(&lab.node_ip(1)), "{answer}");
    let by_name = in_alloc(
        0,
        &format!(
            "for a in $(busybox nslookup ovl.service.edge {gateway} | sed -n 's/^Address: *//p'); do timeout 2 busybox wget -q -O - http://$a/; done"
        ),
    );
    assert!(by_name.contains(&ip(1).to_string()), "{by_name}");
    // Lab-1 floods to lab-2's underlay address; once lab-2 is gone (and
    // marked down), that entry and what was learned of lab-2 go.
    let fdb = || {
        let out = Command::new("ip")
            .args(["netns", "exec", &lab.ns(1), "bridge", "fdb", "show", "dev"])
            .arg(format!("vx{}", back.vni))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let peer = format!("dst {} ", lab.node_ip(2));
    assert!(fdb().contains(&peer), "{}", fdb());
    lab.run(&["kill", "2"]);
    until(
        30,
        "lab-2's forwarding entries removed from lab-1",
        async || (!fdb().contains(&peer)).then_some(()),
    )
    .await;
}

/// The seed lecture's webapp (examples/compose/webapp) by `edge compose up`
/// on three lab nodes with containerd: the frontend starts once the backend
/// is healthy and answers on port 443 of every node, reaches `backend` by
/// name across nodes, the global probe runs once on each node and reaches
/// neither the name nor the address of the backend, and the backend's rows
/// survive `down` + `up` and the loss of its node's agent process. Also
/// needs `EDGE_TEST_CONTAINERD=1`.
#[tokio::test]
async fn compose_webapp_runs_across_three_nodes() {
    if !enabled() || !common::gated("EDGE_TEST_CONTAINERD") {
        return;
    }
    let lab = Lab::up(12, 3);
    let api = &lab.api;
    ready_nodes(api, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = lab.lab_dir().join("server/ca.pem");
    let token = lab.token();
    let w = Webapp::new(
        dir.path(),
        &[
            ("EDGE_ADDR", lab.addr.as_str()),
            ("EDGE_CACERT", ca.to_str().unwrap()),
            ("EDGE_TOKEN", token.as_str()),
        ],
    );
    // The lab's agents share this host's containerd.
    let tar = common::build_image(dir.path(), "docker.io/edge/busybox:latest");
    let (ok, out) = w.edge(&["image", "import", tar.to_str().unwrap()]);
    assert!(ok, "{out}");

    let up = ["up", "--timeout", "4m"];
    let (ok, out) = w.compose(&up);
    assert!(ok, "{out}");
    assert!(
        out.contains("frontend starts once backend is healthy"),
        "{out}"
    );
    webapp::started_in_order(api).await;
    let all = webapp::allocs(api).await;
    let probes: BTreeSet<&str> = all
        .iter()
        .filter(|a| a.group == "probe")
        .map(|a| a.node_name.as_str())
        .collect();
    assert_eq!(probes, BTreeSet::from(["lab-1", "lab-2", "lab-3"]));

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let answers = async |what: &str| {
        for n in 1..=3 {
            let url = format!("http://{}:443/", lab.node_ip(n));
            until(30, &format!("{what} on lab-{n}'s port 443"), async || {
                let r = http.get(&url).send().await.ok()?;
                (r.status() == 200).then_some(())
            })
            .await;
        }
    };
    answers("the frontend").await;
    assert_eq!(w.rows(api).await, 1, "the backend wrote its first row");
    // Every frontend, wherever it runs, finds the backend by name.
    for front in all.iter().filter(|a| a.group == "frontend") {
        let (ok, out) = w.fetch_in(&front.id, "http://backend:5432/rows");
        assert!(
            ok,
            "frontend on {} reading the backend: {out}",
            front.node_name
        );
    }
    w.probe_is_kept_out(api).await;
    w.data_in_place(api).await;

    let (ok, out) = w.compose(&["down"]);
    assert!(ok, "{out}");
    let (ok, out) = w.compose(&up);
    assert!(ok, "{out}");
    assert_eq!(w.rows(api).await, 2, "the rows outlived down and up");

    // The backend's node loses its agent process; the container and its
    // volume stay, and the restarted agent takes them back.
    let (backend, _) = w.rows_in_backend(api).await;
    let node = webapp::allocs(api)
        .await
        .into_iter()
        .find(|a| a.id == backend)
        .map(|a| a.node_name)
        .unwrap();
    let n = node.strip_prefix("lab-").unwrap();
    lab.run(&["kill-agent", n]);
    lab.run(&["start", n]);
    let (after, kept) = w.rows_in_backend(api).await;
    assert_eq!(
        (after, kept),
        (backend, 2),
        "the same backend kept its rows"
    );
    answers("the frontend after the agent's restart").await;
}
