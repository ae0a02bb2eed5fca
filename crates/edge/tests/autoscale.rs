//! The built-in autoscaler end to end on `edge dev`: a service at zero
//! answers its first requests through the load balancer (wasm and exec
//! here; the model template with root; containerd with containerd), 50
//! at once included; a request beyond the queue gets 503 with
//! `Retry-After`; an idle service goes back to zero with its name and
//! listener kept; a step load scales a wasm service up to the count its
//! target asks and back, without flapping, with each copy's counts and
//! memory on the metrics; and the count survives a server restart.

mod common;

use common::{dev, free_port, repo, until};
use std::path::Path;
use std::time::{Duration, Instant};

/// A job `id` whose one group serves `task` on port `http`, published on
/// `lb_port`, with `scaling`.
fn write_job(dir: &Path, id: &str, count: u32, lb_port: u16, scaling: &str, task: &str) -> String {
    let p = dir.join(format!("{id}.hcl"));
    std::fs::write(
        &p,
        format!(
            r#"job "{id}" {{
  group "web" {{
    count = {count}
    network {{
      port "http" {{}}
    }}
    service {{
      name = "{id}"
      port = "http"
      publish {{
        port     = {lb_port}
        protocol = "http"
      }}
    }}
    scaling {{
{scaling}
    }}
{task}
  }}
}}
"#
        ),
    )
    .unwrap();
    p.to_str().unwrap().to_string()
}

fn wasm_task() -> String {
    format!(
        r#"    task "handler" {{
      driver = "wasm"
      config {{
        module = "{}"
        mode   = "http"
        port   = "http"
      }}
      resources {{
        cpu    = 50
        memory = 32
      }}
    }}"#,
        repo().join("examples/wasm/web.wat").display()
    )
}

/// Python's `http.server` with a listen backlog of 128 instead of its 5: a
/// burst of 50 held requests (and the activator's probes) overflowed the
/// accept queue, and a connection whose handshake the kernel then dropped
/// on the server's side waited out the client's timeout.
fn exec_task() -> &'static str {
    r#"    task "server" {
      driver = "exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "echo cold > index.html; exec python3 -c 'import http.server as h, sys; h.ThreadingHTTPServer.request_queue_size = 128; h.test(h.SimpleHTTPRequestHandler, h.ThreadingHTTPServer, port=int(sys.argv[2]), bind=sys.argv[1])' $EDGE_IP_http $EDGE_PORT_http"]
      }
      resources {
        cpu    = 50
        memory = 64
      }
    }"#
}

fn run(addr: &str, file: &str) {
    let (ok, out) = common::cli(addr, &["job", "run", "--detach", file]);
    assert!(ok, "job run {file}: {out}");
}

async fn count(api: &edge_api::Client, job: &str) -> u32 {
    api.job(job).await.unwrap().groups[0].count
}

async fn running(api: &edge_api::Client, job: &str) -> usize {
    let (allocs, _) = api
        .job_allocs(job, edge_api::QueryOptions::default())
        .await
        .unwrap();
    allocs
        .iter()
        .filter(|a| a.client_status == edge_spec::ClientStatus::Running)
        .count()
}

/// Stops `jobs` and waits until none of their tasks runs: tasks outlive
/// the `edge dev` a test kills.
async fn stop_all(addr: &str, api: &edge_api::Client, jobs: &[&str]) {
    for job in jobs {
        let (ok, out) = common::cli(addr, &["job", "stop", job]);
        assert!(ok, "{out}");
    }
    for job in jobs {
        until(30, "the job's tasks stopped", async || {
            (running(api, job).await == 0).then_some(())
        })
        .await;
    }
}

/// Sends `n` requests at once to a service at zero; all must answer 200
/// with `want`. Returns the time to the first answer.
async fn cold_burst(port: u16, n: usize, want: &str) -> Duration {
    let client = reqwest::Client::new();
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let client = client.clone();
        set.spawn(async move {
            let r = client
                .get(format!("http://127.0.0.1:{port}/"))
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            Ok::<_, String>((status, body, start.elapsed()))
        });
    }
    let mut first = Duration::MAX;
    while let Some(r) = set.join_next().await {
        let (status, body, took) = r.unwrap().unwrap_or_else(|e| panic!("request failed: {e}"));
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(want), "{body}");
        first = first.min(took);
    }
    first
}

/// The LB has the published port open (requests to it are held, not
/// refused) once the catalog reached the node.
async fn listening(port: u16) {
    until(30, "the published port listens", async || {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(drop)
    })
    .await;
}

#[tokio::test]
async fn a_service_at_zero_answers_its_first_requests_and_returns_to_zero() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let dns_port = free_port().to_string();
    let dns_args = ["--dns-port", dns_port.as_str()];
    let (mut dev_proc, addr, api) = common::dev_logging(dir.path(), port, &dns_args, "info").await;
    let scaling = r#"      min                 = 0
      max                 = 2
      target_concurrency  = 50
      idle_timeout        = "3s"
      evaluation_interval = "1s"
      queue               = 60"#;
    let (wasm_lb, exec_lb) = (free_port(), free_port());
    let wasm = write_job(dir.path(), "zw", 0, wasm_lb, scaling, &wasm_task());
    let exec = write_job(dir.path(), "ze", 0, exec_lb, scaling, exec_task());
    run(&addr, &wasm);
    run(&addr, &exec);
    listening(wasm_lb).await;
    listening(exec_lb).await;
    assert_eq!(running(&api, "zw").await, 0);

    let wasm_first = cold_burst(wasm_lb, 50, "hello from wasm").await;
    let exec_first = cold_burst(exec_lb, 50, "cold").await;
    eprintln!("first answer from zero: wasm {wasm_first:?}, exec {exec_first:?}");
    for job in ["zw", "ze"] {
        let status = api.job_scale_status(job).await.unwrap();
        let g = &status.groups["web"];
        assert!(
            g.events
                .iter()
                .any(|e| e.from == 0 && e.to == 1 && e.reason.contains("held at zero")),
            "{job}: {:?}",
            g.events
        );
    }

    // Idle for idle_timeout: back to zero, with the name and listener kept.
    until(40, "both services back at zero", async || {
        (count(&api, "zw").await == 0
            && count(&api, "ze").await == 0
            && running(&api, "zw").await == 0
            && running(&api, "ze").await == 0)
            .then_some(())
    })
    .await;
    let catalog = api
        .catalog(edge_api::QueryOptions::default())
        .await
        .unwrap()
        .0;
    let svc = &catalog.services["zw"];
    assert!(
        svc.instances.is_empty() && svc.activation.is_some(),
        "{svc:?}"
    );
    // Its name still answers with the load balancer's address.
    let dns: std::net::SocketAddr = format!("127.0.0.1:{dns_port}").parse().unwrap();
    let m = common::dns(dns, "zw.service.edge.", hickory_proto::rr::RecordType::A).await;
    assert!(
        m.answers.iter().any(|r| r.data.to_string() == "127.0.0.1"),
        "{m:?}"
    );
    let status = api.job_scale_status("zw").await.unwrap();
    assert!(
        status.groups["web"]
            .events
            .iter()
            .any(|e| e.to == 0 && e.reason.contains("idle for")),
        "{:?}",
        status.groups["web"].events
    );
    // The load balancer's counts are on the server's metrics.
    let requests: f64 = metric(&addr, "edge_service_requests_total{", "service=\"zw\"")
        .await
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert!(requests >= 50.0, "{requests}");
    // `edge job status` shows the scaling table and the decisions.
    let (ok, out) = common::cli(&addr, &["job", "status", "zw"]);
    assert!(
        ok && out.contains("Scaling") && out.contains("held at zero"),
        "{out}"
    );

    // The count lives in the store: after a restart the group is still at
    // zero, stays there without requests, and wakes for one.
    dev_proc.term();
    let (_dev, _, api) = common::dev_logging(dir.path(), port, &dns_args, "info").await;
    listening(wasm_lb).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(count(&api, "zw").await, 0);
    assert_eq!(running(&api, "zw").await, 0);
    cold_burst(wasm_lb, 1, "hello from wasm").await;
    assert_eq!(count(&api, "zw").await, 1);
    stop_all(&addr, &api, &["zw", "ze"]).await;
}

#[tokio::test]
async fn requests_beyond_the_queue_or_past_the_timeout_get_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let (_dev, addr, api) = dev(dir.path()).await;
    let lb = free_port();
    // A copy that never serves: every held request waits out its timeout.
    let task = r#"    task "server" {
      driver = "exec"
      config {
        command = "/bin/sleep"
        args    = ["3600"]
      }
    }"#;
    let file = write_job(
        dir.path(),
        "never",
        0,
        lb,
        "      min = 0\n      max = 1\n      queue = 2\n      queue_timeout = \"2s\"",
        task,
    );
    run(&addr, &file);
    listening(lb).await;
    let client = reqwest::Client::new();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let client = client.clone();
        set.spawn(async move {
            let start = Instant::now();
            let r = client
                .get(format!("http://127.0.0.1:{lb}/"))
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.headers().get("retry-after").cloned(),
                r.text().await.unwrap(),
                start.elapsed(),
            )
        });
    }
    let mut full = 0;
    let mut timed_out = 0;
    while let Some(r) = set.join_next().await {
        let (status, retry, body, took) = r.unwrap();
        assert_eq!(status, 503, "{body}");
        assert_eq!(retry.as_ref().and_then(|v| v.to_str().ok()), Some("1"));
        if body.contains("holds as many requests") {
            full += 1;
            assert!(took < Duration::from_secs(1), "{took:?}");
        } else {
            assert!(body.contains("did not start serving in time"), "{body}");
            assert!(took >= Duration::from_millis(1900), "{took:?}");
            timed_out += 1;
        }
    }
    assert_eq!((full, timed_out), (3, 2));
    stop_all(&addr, &api, &["never"]).await;
}

/// Requests per second from `loops` sequential clients until `stop`.
/// The samples of `/v1/metrics` whose line starts with `prefix` and
/// holds `needle`, as (labels, value).
async fn metric(addr: &str, prefix: &str, needle: &str) -> Vec<(String, f64)> {
    let text = reqwest::get(format!("{addr}/v1/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(prefix) && l.contains(needle))
        .filter_map(|l| {
            let (labels, value) = l.rsplit_once(' ')?;
            Some((labels.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn load(
    port: u16,
    loops: usize,
    pause: Duration,
) -> (tokio::sync::watch::Sender<bool>, tokio::task::JoinSet<u32>) {
    let (stop, rx) = tokio::sync::watch::channel(false);
    let client = reqwest::Client::new();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..loops {
        let client = client.clone();
        let rx = rx.clone();
        set.spawn(async move {
            let mut failed = 0;
            while !*rx.borrow() {
                match client
                    .get(format!("http://127.0.0.1:{port}/load"))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {}
                    _ => failed += 1,
                }
                tokio::time::sleep(pause).await;
            }
            failed
        });
    }
    (stop, set)
}

#[tokio::test]
async fn a_step_load_scales_up_to_the_target_and_back_without_flapping() {
    let dir = tempfile::tempdir().unwrap();
    let (_dev, addr, api) = dev(dir.path()).await;
    let lb = free_port();
    let file = write_job(
        dir.path(),
        "step",
        1,
        lb,
        r#"      min                  = 1
      max                  = 6
      target_rps           = 40
      evaluation_interval  = "1s"
      stabilization_window = "8s""#,
        &wasm_task(),
    );
    run(&addr, &file);
    until(30, "one copy serves", async || {
        reqwest::get(format!("http://127.0.0.1:{lb}/"))
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(drop)
    })
    .await;
    // About 100 requests a second: 40 per copy asks for 3.
    let (stop, mut clients) = load(lb, 4, Duration::from_millis(40));
    let step = std::time::Instant::now();
    let reached = until(40, "the count the target asks", async || {
        let c = count(&api, "step").await;
        (c >= 3).then_some(c)
    })
    .await;
    let took = step.elapsed();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let held = count(&api, "step").await;
    let status = api.job_scale_status("step").await.unwrap();
    let rps = status.groups["web"].rps;
    eprintln!("under load: {rps:.1} req/s, count {held} (reached {reached} in {took:?})");
    assert!((2..=4).contains(&held), "count {held} at {rps:.1} req/s");
    // Each copy's share is on the metrics, and its memory.
    let copies = metric(
        &addr,
        "edge_service_instance_requests_total{",
        "service=\"step\"",
    )
    .await;
    assert!(
        copies.len() >= 2 && copies.iter().all(|(_, n)| *n > 0.0),
        "{copies:?}"
    );
    let in_flight = metric(
        &addr,
        "edge_service_instance_in_flight{",
        "service=\"step\"",
    )
    .await;
    assert!(in_flight.len() >= 2, "{in_flight:?}");
    let memory = metric(&addr, "edge_alloc_memory_bytes{", "job=\"step\"").await;
    assert!(memory.len() >= 2, "{memory:?}");
    stop.send(true).unwrap();
    let mut failed = 0;
    while let Some(f) = clients.join_next().await {
        failed += f.unwrap();
    }
    assert_eq!(failed, 0, "requests failed while scaling up");
    until(40, "back to one copy", async || {
        (count(&api, "step").await == 1).then_some(())
    })
    .await;
    let events = api.job_scale_status("step").await.unwrap().groups["web"]
        .events
        .clone();
    eprintln!("decisions: {events:?}");
    let ups = events.iter().filter(|e| e.to > e.from).count();
    let downs = events.iter().filter(|e| e.to < e.from).count();
    assert!(
        ups >= 1 && downs >= 1 && ups + downs <= 5,
        "flapping: {events:?}"
    );
    // Every down came after the last up: no down and up again.
    let order: Vec<bool> = events.iter().rev().map(|e| e.to > e.from).collect();
    assert!(
        order.windows(2).all(|w| w[0] || !w[1]),
        "a scale-down followed by a scale-up: {events:?}"
    );
    stop_all(&addr, &api, &["step"]).await;
}

/// The model template with `scaling { min = 0 }` (KServe's
/// `minReplicas: 0`): the first inference through the load balancer is
/// answered, and correctly. Root: the model server runs as an exec task.
#[tokio::test]
async fn a_model_at_zero_answers_its_first_inference() {
    if !common::gated("EDGE_TEST_ROOT") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_dev, addr, api) = dev(dir.path()).await;
    let lb = free_port();
    let job = dir.path().join("iris.hcl");
    std::fs::write(
        &job,
        format!(
            r#"job "iris" {{
  model "iris" {{
    source = {:?}
    count  = 0
    service {{
      publish {{
        port = {lb}
      }}
    }}
    scaling {{
      min                = 0
      max                = 2
      target_concurrency = 8
      idle_timeout       = "5m"
    }}
  }}
}}
"#,
            repo()
                .join("examples/models/iris.onnx")
                .display()
                .to_string()
        ),
    )
    .unwrap();
    run(&addr, job.to_str().unwrap());
    listening(lb).await;
    assert_eq!(running(&api, "iris").await, 0);
    let start = Instant::now();
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{lb}/v2/models/iris/infer"))
        .json(&serde_json::json!({
            "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]
        }))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    let took = start.elapsed();
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap();
    eprintln!("first inference from zero: {took:?}");
    assert_eq!(status, 200, "{body}");
    let label = body["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "label")
        .unwrap_or_else(|| panic!("no label output: {body}"));
    assert_eq!(label["data"][0], 0, "setosa: {body}");
    assert_eq!(count(&api, "iris").await, 1);
    stop_all(&addr, &api, &["iris"]).await;
}

/// A containerd service at zero: the activator holds the first requests
/// while the container starts, as it does for wasm and exec.
#[tokio::test]
async fn a_container_at_zero_answers_its_first_requests() {
    if !common::gated("EDGE_TEST_CONTAINERD") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_dev, addr, api) = dev(dir.path()).await;
    let image = "docker.io/edge/busybox:latest";
    let tar = common::build_image(dir.path(), image);
    let (ok, out) = common::cli(&addr, &["image", "import", tar.to_str().unwrap()]);
    assert!(ok, "{out}");
    let task = format!(
        r#"    task "web" {{
      driver       = "containerd"
      kill_timeout = "2s"
      config {{
        image   = "{image}"
        command = "sh"
        args    = ["-c", "exec httpd -f -p $EDGE_PORT_http -h /www"]
      }}
      resources {{
        cpu    = 50
        memory = 32
      }}
    }}"#
    );
    let lb = free_port();
    let scaling = "      min = 0\n      max = 1\n      idle_timeout = \"1m\"";
    let file = write_job(dir.path(), "zc", 0, lb, scaling, &task);
    run(&addr, &file);
    listening(lb).await;
    assert_eq!(running(&api, "zc").await, 0);
    let first = cold_burst(lb, 20, "hello from edge").await;
    eprintln!("first answer from zero: containerd {first:?}");
    assert_eq!(count(&api, "zc").await, 1);
    stop_all(&addr, &api, &["zc"]).await;
}

/// `target_cpu`: a copy that keeps a core busy uses far more than the
/// 100 MHz it reserved, so the group goes to its max, and says why.
#[tokio::test]
async fn a_busy_copy_scales_its_group_by_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let (_dev, addr, api) = dev(dir.path()).await;
    let task = r#"    task "spin" {
      driver = "exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "while :; do :; done"]
      }
      resources {
        cpu    = 100
        memory = 16
      }
    }"#;
    let file = write_job(
        dir.path(),
        "spin",
        1,
        free_port(),
        "      min = 1\n      max = 2\n      target_cpu = 50\n      evaluation_interval = \"1s\"",
        task,
    );
    run(&addr, &file);
    until(40, "a second copy for the CPU", async || {
        (count(&api, "spin").await == 2).then_some(())
    })
    .await;
    let status = api.job_scale_status("spin").await.unwrap();
    let g = &status.groups["web"];
    assert!(g.cpu_percent.is_some_and(|p| p > 100.0), "{g:?}");
    assert!(g.memory_bytes.is_some_and(|m| m > 0), "{g:?}");
    let cpu = metric(&addr, "edge_alloc_cpu_percent{", "job=\"spin\"").await;
    assert!(
        cpu.iter()
            .any(|(l, p)| l.contains("group=\"web\"") && *p > 50.0),
        "{cpu:?}"
    );
    assert!(
        g.events
            .iter()
            .any(|e| e.from == 1 && e.to == 2 && e.reason.contains("% of reserved at 50%")),
        "{:?}",
        g.events
    );
    stop_all(&addr, &api, &["spin"]).await;
}
