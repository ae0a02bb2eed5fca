//! Edge autonomy end to end with the real binary. For exec, wasm (http
//! mode) and containerd tasks, every combination of {server up, server
//! killed} × {agent SIGTERM, agent SIGKILL, simulated reboot (agent and
//! tasks killed)} must end, within 10 s of the agent starting again and with
//! the server still away, with every task answering, the published port
//! answering through the load balancer and `NAME.service.edge` resolving;
//! once the server is back, the job is at count with no duplicate and no
//! orphan. A network cut to the server is the lab's (tests/lab.rs). Then:
//! the processes of a lost data dir are removed by the node's GC.

mod common;

use common::{EDGE, Proc, Server, build_image, dns, free_port, repo, until, until_ok};
use edge_api::{Client, QueryOptions};
use edge_spec::{ClientStatus, DesiredStatus};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const COUNT: usize = 2;
/// The issue's bar: serving again within this long of the agent's start.
const BACK_WITHIN: u64 = 10;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Exec,
    Wasm,
    Containerd,
}

#[derive(Clone, Copy, Debug)]
enum Stop {
    Term,
    Kill,
    Reboot,
}

fn root() -> bool {
    common::gated("EDGE_TEST_ROOT")
}

fn containerd() -> bool {
    common::gated("EDGE_TEST_CONTAINERD")
}

struct Cluster {
    dir: PathBuf,
    kind: Kind,
    server_args: Vec<String>,
    server: Option<Proc>,
    agent_args: Vec<String>,
    agent: Option<Proc>,
    api: Client,
    dns: SocketAddr,
    lb_port: u16,
    /// Each task serves this directory; `pgrep -f` finds exec tasks by it.
    marker: PathBuf,
}

fn job_file(c: &Cluster) -> PathBuf {
    let name = service(c.kind);
    let task = match c.kind {
        Kind::Exec => format!(
            r#"driver = "exec"
      config {{
        command = "/usr/bin/python3"
        args    = ["-m", "http.server", "--bind", "127.0.0.1", "--directory", "{}", "${{EDGE_PORT_http}}"]
      }}"#,
            c.marker.display()
        ),
        Kind::Wasm => r#"driver = "wasm"
      config {
        module = "examples/wasm/web.wat"
        mode   = "http"
        port   = "http"
      }"#
        .to_string(),
        Kind::Containerd => r#"driver = "containerd"
      config {
        image   = "docker.io/edge/autonomy:v1"
        command = "httpd"
        args    = ["-f", "-p", "${EDGE_PORT_http}", "-h", "/www"]
      }"#
        .to_string(),
    };
    let p = c.dir.join("job.hcl");
    std::fs::write(
        &p,
        format!(
            r#"job "{name}" {{
  group "web" {{
    count = {COUNT}
    network {{
      port "http" {{}}
    }}
    service {{
      name = "{name}"
      port = "http"
      check {{
        type     = "http"
        path     = "/"
        interval = "500ms"
        timeout  = "1s"
      }}
      publish {{
        port     = {}
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
}}
"#,
            c.lb_port
        ),
    )
    .unwrap();
    p
}

fn service(kind: Kind) -> String {
    format!("auto-{}", format!("{kind:?}").to_lowercase())
}

impl Cluster {
    async fn start(dir: &Path, kind: Kind) -> Cluster {
        let server = Server::start(dir).await;
        let (addr, token) = (server.addr.clone(), server.token.clone());
        let adir = dir.join("agent");
        if kind == Kind::Containerd {
            // Dropped in the agent's images/ folder: imported when it starts.
            std::fs::create_dir_all(adir.join("images")).unwrap();
            let tar = build_image(dir, "docker.io/edge/autonomy:v1");
            std::fs::rename(tar, adir.join("images/autonomy.tar")).unwrap();
        }
        let dns_port = free_port();
        let agent_args: Vec<String> = [
            "agent",
            "--server",
            &addr,
            "--join-token",
            &token,
            "--data-dir",
            adir.to_str().unwrap(),
            "--name",
            "edge-1",
            "--dns-port",
            &dns_port.to_string(),
        ]
        .map(String::from)
        .to_vec();
        let marker = dir.join("www");
        std::fs::create_dir_all(&marker).unwrap();
        std::fs::write(marker.join("index.html"), "ok\n").unwrap();
        let mut c = Cluster {
            dir: dir.to_path_buf(),
            kind,
            server_args: server.args,
            server: Some(server.proc),
            agent_args,
            agent: None,
            api: server.api,
            dns: SocketAddr::from(([127, 0, 0, 1], dns_port)),
            lb_port: free_port(),
            marker,
        };
        c.start_agent();
        until(20, "a ready node", async || {
            (c.api.health().await.ok()?.nodes_ready == 1).then_some(())
        })
        .await;
        c
    }

    fn start_agent(&mut self) {
        self.agent = Some(Proc::edge(&self.dir, "agent", &self.agent_args));
    }

    fn start_server(&mut self) {
        self.server = Some(Proc::edge(&self.dir, "server", &self.server_args));
    }

    async fn run_job(&self) {
        let out = Command::new(EDGE)
            .args(["job", "run", "--detach"])
            .arg(job_file(self))
            .env("EDGE_ADDR", self.api.address())
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        self.at_count().await;
    }

    /// Live allocations of the job, from the server.
    async fn live(&self) -> Option<Vec<edge_api::AllocListStub>> {
        let (allocs, _) = self
            .api
            .job_allocs(&service(self.kind), QueryOptions::default())
            .await
            .ok()?;
        Some(
            allocs
                .into_iter()
                .filter(|a| {
                    a.desired_status == DesiredStatus::Run && !a.client_status.is_terminal()
                })
                .collect(),
        )
    }

    /// The job is at count on the server, every copy running, and exactly
    /// that many copies run on the node.
    async fn at_count(&self) -> Vec<u16> {
        until(40, "job at count, no duplicate, no orphan", async || {
            let live = self.live().await?;
            let ok = live.len() == COUNT
                && live
                    .iter()
                    .all(|a| a.client_status == ClientStatus::Running);
            if !ok || self.local_copies() != Some(COUNT) {
                return None;
            }
            let mut ports = Vec::new();
            for a in &live {
                let a = self.api.alloc(&a.id).await.ok()?;
                ports.push(a.resources.ports[0].value);
            }
            Some(ports)
        })
        .await
    }

    /// How many copies run on the node, counted without the agent; `None`
    /// for wasm, whose instances live inside the agent (counted by ports).
    fn local_copies(&self) -> Option<usize> {
        match self.kind {
            Kind::Exec => Some(pgrep(&self.marker.display().to_string()).len()),
            Kind::Wasm => Some(COUNT),
            Kind::Containerd => Some(
                ctr(&["tasks", "ls"])
                    .lines()
                    .filter(|l| l.contains("RUNNING") && self.ours(l))
                    .count(),
            ),
        }
    }

    /// Stops the job through the server and waits until no copy runs on
    /// the node: tasks outlive agents by design, so a test leaves nothing
    /// behind only by asking for the stop.
    async fn stop_job(&self) {
        self.api.stop_job(&service(self.kind), false).await.unwrap();
        until(30, "every copy stopped", async || {
            let gone = match self.kind {
                Kind::Wasm => true,
                Kind::Exec => self.local_copies() == Some(0),
                // Removed, not only stopped.
                Kind::Containerd => {
                    let adir = self.dir.join("agent");
                    !ctr(&["containers", "ls", "-q"])
                        .lines()
                        .any(|id| ctr(&["containers", "info", id]).contains(adir.to_str().unwrap()))
                }
            };
            gone.then_some(())
        })
        .await;
    }

    fn ours(&self, ctr_line: &str) -> bool {
        let adir = self.dir.join("agent");
        let id = ctr_line.split_whitespace().next().unwrap_or_default();
        ctr(&["containers", "info", id]).contains(adir.to_str().unwrap())
    }

    /// Kills what a reboot would: the agent, then every task process (and
    /// for containerd their shims, as a reboot empties containerd's state).
    fn reboot(&mut self) {
        if let Some(mut a) = self.agent.take() {
            a.kill9();
        }
        match self.kind {
            Kind::Exec => {
                // Executors first: a task dying under a live executor would be
                // recorded as an exit, which a reboot never writes.
                let exec_dir = self.dir.join("agent/exec");
                pkill(&exec_dir.display().to_string());
                pkill(&self.marker.display().to_string());
            }
            Kind::Wasm => {}
            Kind::Containerd => {
                for line in ctr(&["tasks", "ls"]).lines().skip(1) {
                    if self.ours(line) {
                        let id = line.split_whitespace().next().unwrap();
                        pkill(&format!("-id {id} "));
                        let _ = ctr(&["tasks", "kill", "-s", "SIGKILL", id]);
                    }
                }
            }
        }
    }

    async fn none_answers(&self, ports: &[u16]) -> Option<()> {
        for p in ports {
            if tokio::net::TcpStream::connect(("127.0.0.1", *p))
                .await
                .is_ok()
            {
                return None;
            }
        }
        Some(())
    }

    /// Everything a client of this node sees works: each copy answers on its
    /// port, the load balancer answers, the service name resolves. The
    /// error names the first that does not.
    async fn serving(&self, ports: &[u16]) -> Result<(), String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let ok = async |url: String| match http.get(&url).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("{url}: {}", r.status())),
            Err(e) => Err(format!("{url}: {e}")),
        };
        for p in ports {
            ok(format!("http://127.0.0.1:{p}/")).await?;
        }
        ok(format!("http://127.0.0.1:{}/", self.lb_port))
            .await
            .map_err(|e| format!("load balancer {e}"))?;
        let name = format!("{}.service.edge.", service(self.kind));
        let m = dns(self.dns, &name, RecordType::A).await;
        if m.metadata.response_code == ResponseCode::NoError && !m.answers.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{name}: {} with {} answers",
                m.metadata.response_code,
                m.answers.len()
            ))
        }
    }
}

fn pgrep(pattern: &str) -> Vec<u32> {
    let out = Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn pkill(pattern: &str) {
    let _ = Command::new("pkill")
        .args(["-9", "-f", "--", pattern])
        .status();
}

fn ctr(args: &[&str]) -> String {
    let out = Command::new("ctr")
        .args(["-n", "edge"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

async fn matrix(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), kind).await;
    c.run_job().await;
    let mut ports = c.at_count().await;
    until_ok(20, "serving before any failure", async || {
        c.serving(&ports).await
    })
    .await;
    let mut report = Vec::new();
    for server_killed in [false, true] {
        for stop in [Stop::Term, Stop::Kill, Stop::Reboot] {
            if server_killed && let Some(mut s) = c.server.take() {
                s.kill9();
            }
            match stop {
                Stop::Term => c.agent.take().unwrap().term(),
                Stop::Kill => c.agent.take().unwrap().kill9(),
                Stop::Reboot => {
                    c.reboot();
                    until(10, "no copy answers after the reboot", async || {
                        c.none_answers(&ports).await
                    })
                    .await;
                }
            }
            let started = Instant::now();
            c.start_agent();
            let what = format!(
                "{kind:?}, server {}, agent {stop:?}: serving again with the server {}",
                if server_killed { "killed" } else { "up" },
                if server_killed { "away" } else { "up" },
            );
            until_ok(BACK_WITHIN, &what, async || c.serving(&ports).await).await;
            report.push(format!("{what}: {:?}", started.elapsed()));
            if server_killed {
                assert!(c.server.is_none(), "the server stayed away throughout");
                c.start_server();
            }
            ports = c.at_count().await;
            until_ok(20, "serving once the server is back", async || {
                c.serving(&ports).await
            })
            .await;
        }
    }
    eprintln!("{}", report.join("\n"));
    c.stop_job().await;
}

#[tokio::test]
async fn exec_tasks_survive_every_restart_while_the_server_is_away() {
    if !root() {
        return;
    }
    matrix(Kind::Exec).await;
}

#[tokio::test]
async fn wasm_tasks_survive_every_restart_while_the_server_is_away() {
    matrix(Kind::Wasm).await;
}

#[tokio::test]
async fn containerd_tasks_survive_every_restart_while_the_server_is_away() {
    if !containerd() {
        return;
    }
    matrix(Kind::Containerd).await;
}

/// A lost agent data dir: the new agent owns nothing, and the old executors
/// and tasks are removed by the node's GC once the grace period passed.
#[tokio::test]
async fn gc_removes_the_processes_of_a_lost_data_dir() {
    if !root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), Kind::Exec).await;
    c.run_job().await;
    // Serving, not only started: a task still starting up can die by
    // itself when its working directory goes with the data dir.
    let ports = c.at_count().await;
    until_ok(20, "serving", async || c.serving(&ports).await).await;
    let old = pgrep(&c.marker.display().to_string());
    assert_eq!(old.len(), COUNT);
    let old_allocs: Vec<String> = c.live().await.unwrap().into_iter().map(|a| a.id).collect();
    assert!(
        old_allocs.iter().all(|a| !cgroups_of(a).is_empty()),
        "each task in its cgroup"
    );
    c.agent.take().unwrap().kill9();
    let adir = dir.path().join("agent");
    for entry in std::fs::read_dir(&adir).unwrap().flatten() {
        // The executors' spec files go with the rest of the data dir.
        let p = entry.path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
    }
    c.agent_args
        .extend(["--node-gc-interval", "500ms", "--node-gc-grace", "1s"].map(String::from));
    c.start_agent();
    until(20, "the old tasks are gone", async || {
        let now = pgrep(&c.marker.display().to_string());
        (!old.iter().any(|p| now.contains(p))).then_some(())
    })
    .await;
    // A task leaves `pgrep` as a zombie, before the GC pass that kills it
    // has seen it reaped and removed its cgroups: the pass logs when done.
    let log = dir.path().join("agent.log");
    until(20, "each old allocation's removal is logged", async || {
        let log = std::fs::read_to_string(&log).ok()?;
        old_allocs
            .iter()
            .all(|a| {
                log.lines().any(|l| {
                    l.contains("removed a leftover no allocation owns") && l.contains(a.as_str())
                })
            })
            .then_some(())
    })
    .await;
    for a in &old_allocs {
        assert!(cgroups_of(a).is_empty(), "cgroups of {a} removed");
    }
    assert!(
        pgrep(&adir.join("exec").display().to_string()).is_empty(),
        "no executor of the lost data dir is left"
    );
    c.stop_job().await;
}

/// Task cgroups of an allocation, in any controller's hierarchy.
fn cgroups_of(alloc: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for root in [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/cpu",
    ] {
        let Ok(rd) = std::fs::read_dir(Path::new(root).join("edge")) else {
            continue;
        };
        out.extend(rd.flatten().map(|e| e.path()).filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(alloc))
        }));
    }
    out
}

/// Containers of a lost data dir (same path, state gone) are removed by the
/// node's GC: `edge node gc` at once, listing what it removed.
#[tokio::test]
async fn node_gc_removes_containers_nobody_owns() {
    if !containerd() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), Kind::Containerd).await;
    c.run_job().await;
    assert_eq!(c.local_copies(), Some(COUNT));
    c.agent.take().unwrap().kill9();
    std::fs::remove_dir_all(dir.path().join("agent/allocs")).unwrap();
    std::fs::remove_file(dir.path().join("agent/node-id")).unwrap();
    // Periodic GC off: this test is about `edge node gc`.
    c.agent_args
        .extend(["--node-gc-interval", "1h", "--node-gc-grace", "1h"].map(String::from));
    c.start_agent();
    until(20, "the new node ready", async || {
        let nodes = c.api.nodes().await.ok()?;
        nodes
            .iter()
            .any(|n| n.status == edge_spec::NodeStatus::Ready && n.allocs_running == 0)
            .then_some(())
    })
    .await;
    let node = until(20, "the new node's id", async || {
        std::fs::read_to_string(dir.path().join("agent/node-id")).ok()
    })
    .await;
    let out = Command::new(EDGE)
        .args(["node", "gc", "-o", "json", node.trim()])
        .env("EDGE_ADDR", c.api.address())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let r: edge_api::GcResponse = serde_json::from_slice(&out.stdout).unwrap();
    let containers: Vec<&edge_api::GcLeftover> = r
        .removed
        .iter()
        .filter(|l| l.driver == "containerd")
        .collect();
    assert_eq!(containers.len(), COUNT, "{r:?}");
    assert!(containers.iter().all(|l| l.error.is_none()), "{r:?}");
    assert_eq!(c.local_copies(), Some(0), "no container of ours runs");
    let adir = dir.path().join("agent");
    assert!(
        !ctr(&["containers", "ls", "-q"])
            .lines()
            .any(|id| ctr(&["containers", "info", id]).contains(adir.to_str().unwrap())),
        "and none is left"
    );
    c.api.stop_job(&service(c.kind), true).await.unwrap();
}
