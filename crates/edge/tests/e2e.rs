//! End-to-end: the real `edge` binary as separate processes on loopback —
//! `edge dev` running the hello example, a server with two agents surviving
//! `kill -9` of an agent and of the server, and the CLI's bad-input errors.

mod common;

use common::{EDGE, Proc, alloc_port, free_port, repo, until};
use edge_api::{Client, QueryOptions};
use edge_spec::{ClientStatus, DesiredStatus};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn cli(addr: &str, args: &[&str]) -> std::process::Output {
    Command::new(EDGE)
        .args(args)
        .env("EDGE_ADDR", addr)
        .current_dir(repo())
        .output()
        .unwrap()
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.split_whitespace().nth(2) == Some("Z"))
            .unwrap_or(true)
}

#[tokio::test]
async fn dev_runs_hello_and_it_answers_then_stops() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("http://127.0.0.1:{port}");
    let data = dir.path().join("data");
    let _dev = Proc::edge(
        dir.path(),
        "dev",
        &[
            "dev",
            "--data-dir",
            data.to_str().unwrap(),
            "--bind",
            &format!("127.0.0.1:{port}"),
        ],
    );
    let api = Client::new(&addr, None).unwrap();
    until(30, "a ready node", async || {
        (api.health().await.ok()?.nodes_ready == 1).then_some(())
    })
    .await;

    let out = cli(&addr, &["job", "run", "examples/hello.hcl"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "job run failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("running"), "{stdout}");

    let port = alloc_port(&api, "hello", "http").await;
    let body = until(20, "hello answers over HTTP", async || {
        let r = reqwest::get(format!("http://127.0.0.1:{port}/"))
            .await
            .ok()?;
        r.status().is_success().then_some(())?;
        r.text().await.ok()
    })
    .await;
    assert!(!body.is_empty());

    let out = cli(&addr, &["job", "status", "hello", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["job"]["id"], "hello");

    let out = cli(&addr, &["job", "stop", "hello"]);
    assert!(out.status.success());
    until(20, "hello stops answering", async || {
        reqwest::get(format!("http://127.0.0.1:{port}/"))
            .await
            .is_err()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn broken_job_file_names_file_line_and_column_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("http://127.0.0.1:{port}");
    let _srv = Proc::edge(
        dir.path(),
        "server",
        &[
            "server",
            "--data-dir",
            dir.path().join("s").to_str().unwrap(),
            "--bind",
            &format!("127.0.0.1:{port}"),
        ],
    );
    let api = Client::new(&addr, None).unwrap();
    until(20, "server up", async || api.health().await.ok()).await;
    let bad = dir.path().join("bad.hcl");
    std::fs::write(&bad, "job \"x\" {\n  group \"g\" {\n    count = \"two\"\n    task \"t\" { driver = \"exec\" }\n  }\n}\n").unwrap();
    let out = cli(&addr, &["job", "run", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.hcl:3:"),
        "error names file and line: {err}"
    );
    assert!(err.contains("count"), "error names the field: {err}");
    assert!(
        api.jobs(QueryOptions::default())
            .await
            .unwrap()
            .0
            .is_empty()
    );
}

fn sleep_job(dir: &Path, count: u32) -> PathBuf {
    let p = dir.join("sleep.hcl");
    std::fs::write(
        &p,
        format!(
            r#"job "sleepers" {{
  group "s" {{
    count = {count}
    task "sleep" {{
      driver = "exec"
      config {{
        command = "/bin/sleep"
        args    = ["600"]
      }}
      resources {{
        cpu    = 50
        memory = 32
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

async fn live_allocs(api: &Client, job: &str) -> Vec<edge_api::AllocListStub> {
    api.job_allocs(job, QueryOptions::default())
        .await
        .map(|(a, _)| a)
        .unwrap_or_default()
        .into_iter()
        .filter(|a| {
            a.desired_status == DesiredStatus::Run && a.client_status == ClientStatus::Running
        })
        .collect()
}

fn pids(a: &edge_api::AllocListStub) -> Vec<u32> {
    a.task_states.values().filter_map(|t| t.pid).collect()
}

#[tokio::test]
async fn two_agents_survive_agent_and_server_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("http://127.0.0.1:{port}");
    let sdir = dir.path().join("server");
    let server_args = [
        "server",
        "--data-dir",
        sdir.to_str().unwrap(),
        "--bind",
        &format!("127.0.0.1:{port}"),
        "--heartbeat-ttl",
        "2s",
    ]
    .map(String::from);
    let sargs: Vec<&str> = server_args.iter().map(String::as_str).collect();
    let mut server = Proc::edge(dir.path(), "server", &sargs);
    let api = Client::new(&addr, None).unwrap();
    until(20, "server up", async || api.health().await.ok()).await;
    let token = std::fs::read_to_string(sdir.join("token")).unwrap();
    let agent_args = |name: &str| -> Vec<String> {
        vec![
            "agent".into(),
            "--server".into(),
            addr.clone(),
            "--join-token".into(),
            token.clone(),
            "--data-dir".into(),
            dir.path().join(name).display().to_string(),
            "--name".into(),
            name.into(),
        ]
    };
    let spawn_agent = |name: &str| {
        let a = agent_args(name);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        Proc::edge(dir.path(), name, &a)
    };
    let mut a1 = spawn_agent("a1");
    let mut a2 = spawn_agent("a2");
    until(20, "two ready nodes", async || {
        (api.health().await.ok()?.nodes_ready == 2).then_some(())
    })
    .await;

    let job = sleep_job(dir.path(), 4);
    let out = cli(&addr, &["job", "run", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let allocs = until(30, "4 running", async || {
        let a = live_allocs(&api, "sleepers").await;
        (a.len() == 4).then_some(a)
    })
    .await;
    let on = |n: &str| allocs.iter().filter(|a| a.node_name == n).count();
    assert_eq!((on("a1"), on("a2")), (2, 2), "count=4 lands on both nodes");

    // kill -9 of an agent: its tasks keep running; a restarted agent re-attaches.
    let a2_pids: Vec<u32> = allocs
        .iter()
        .filter(|a| a.node_name == "a2")
        .flat_map(pids)
        .collect();
    a2.kill9();
    assert!(
        a2_pids.iter().all(|p| pid_alive(*p)),
        "tasks outlive the agent"
    );
    let mut a2 = spawn_agent("a2");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = until(20, "4 running after agent restart", async || {
        let a = live_allocs(&api, "sleepers").await;
        (a.len() == 4).then_some(a)
    })
    .await;
    let mut again: Vec<u32> = after
        .iter()
        .filter(|a| a.node_name == "a2")
        .flat_map(pids)
        .collect();
    let mut before = a2_pids.clone();
    again.sort();
    before.sort();
    assert_eq!(before, again, "same PIDs: re-attached, not restarted");
    let total = api
        .job_allocs("sleepers", QueryOptions::default())
        .await
        .unwrap()
        .0
        .len();
    assert_eq!(total, 4, "no duplicate allocations");

    // kill -9 of the server: nothing is lost.
    let versions_before = api.job_versions("sleepers").await.unwrap().len();
    server.kill9();
    let mut server = Proc::edge(dir.path(), "server2", &sargs);
    until(20, "server back", async || api.health().await.ok()).await;
    assert_eq!(
        api.job_versions("sleepers").await.unwrap().len(),
        versions_before
    );
    until(30, "agents reconnect", async || {
        (api.health().await.ok()?.nodes_ready == 2).then_some(())
    })
    .await;
    assert_eq!(live_allocs(&api, "sleepers").await.len(), 4);

    // kill -9 of an agent for good: its allocations are lost and replaced on
    // the other node within TTL + 10 s.
    let lost_pids: Vec<u32> = live_allocs(&api, "sleepers")
        .await
        .iter()
        .filter(|a| a.node_name == "a1")
        .flat_map(pids)
        .collect();
    a1.kill9();
    let t0 = std::time::Instant::now();
    until(12, "replaced on a2", async || {
        let a = live_allocs(&api, "sleepers").await;
        (a.len() == 4 && a.iter().all(|a| a.node_name == "a2")).then_some(())
    })
    .await;
    eprintln!(
        "allocations replaced {:?} after the agent was killed",
        t0.elapsed()
    );
    let lost = api
        .job_allocs("sleepers", QueryOptions::default())
        .await
        .unwrap()
        .0
        .into_iter()
        .filter(|a| a.client_status == ClientStatus::Lost)
        .count();
    assert_eq!(lost, 2);

    let out = cli(&addr, &["job", "stop", "sleepers"]);
    assert!(out.status.success());
    until(30, "a2's tasks stopped", async || {
        let a = api
            .job_allocs("sleepers", QueryOptions::default())
            .await
            .ok()?
            .0;
        a.iter()
            .filter(|a| a.node_name == "a2")
            .all(|a| a.client_status == ClientStatus::Complete)
            .then_some(())
    })
    .await;
    for p in lost_pids {
        let _ = Command::new("kill").arg(p.to_string()).status();
    }
    a2.kill9();
    server.kill9();
}
