//! http mode benchmark: per-request instance overhead measured in process,
//! cold start of an http task for a cached module, and `wrk` throughput and
//! latency of a trivial WAGI handler beside native axum and plain hyper
//! servers answering the same bytes, and beside the axum one made to spend
//! 6 µs per request
//! (the per-request cost a handler can add on a 2-core host before wrk,
//! sharing the cores, sees half the throughput).
//! Run: `cargo bench -p edge-driver-wasm --bench http` (needs `wrk` on PATH
//! for the throughput part).

use edge_driver::{Driver, TaskConfig};
use edge_driver_wasm::WasmDriver;
use edge_spec::{AssignedPort, Resources};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const TRIVIAL: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "content-type: text/plain\n\nhello from wasm\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 42))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;
const BODY: &str = "hello from wasm\n";
const ITERATIONS: usize = 20_000;
const BUSY: Duration = Duration::from_micros(6);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn task(dir: &Path, module: &Path, port: u16) -> TaskConfig {
    TaskConfig {
        mounts: Vec::new(),
        alloc_id: format!("bench{port}"),
        job_id: "bench".into(),
        group: "g".into(),
        task: "web".into(),
        config: serde_json::json!({"module": module, "mode": "http"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        env: BTreeMap::new(),
        resources: Resources {
            cpu: 100,
            memory: 16,
        },
        ports: vec![AssignedPort {
            label: "http".into(),
            value: port,
            to: port,
        }],
        alloc_dir: dir.join("alloc"),
        task_dir: dir.join("web"),
        log_dir: dir.join("logs"),
        log_max_bytes: 1 << 20,
        log_max_files: 2,
        netns: None,
        resolv_conf: None,
    }
}

async fn first_answer(client: &reqwest::Client, port: u16) {
    loop {
        if let Ok(r) = client.get(format!("http://127.0.0.1:{port}/")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// Runs wrk and returns (req/s, p50, p99) as printed.
fn wrk(port: u16) -> Option<(String, String, String)> {
    let out = Command::new("wrk")
        .args(["-t2", "-c32", "-d10s", "--latency"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_string)
    };
    Some((field("Requests/sec:")?, field("50%")?, field("99%")?))
}

/// Starts a native axum server answering `BODY` after spinning for `busy`.
async fn native(client: &reqwest::Client, busy: Duration) -> u16 {
    let port = free_port();
    let app = axum::Router::new().fallback(move || async move {
        let t = Instant::now();
        while t.elapsed() < busy {
            std::hint::spin_loop();
        }
        ([("content-type", "text/plain")], BODY)
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind native");
    tokio::spawn(async move { axum::serve(listener, app).await });
    first_answer(client, port).await;
    port
}

/// Starts a native server on plain hyper, set up as the wasm driver's own
/// (HTTP/1.1, one write per response), answering `BODY`.
async fn native_hyper(client: &reqwest::Client) -> u16 {
    use http_body_util::Full;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let port = free_port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind native hyper");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    let mut resp =
                        http::Response::new(Full::new(bytes::Bytes::from_static(BODY.as_bytes())));
                    resp.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/plain"),
                    );
                    Ok::<_, std::convert::Infallible>(resp)
                });
                let _ = http1::Builder::new()
                    .writev(false)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    first_answer(client, port).await;
    port
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = dir.path().join("trivial.wat");
    std::fs::write(&module, TRIVIAL).expect("write module");
    let data = dir.path().join("data");

    // Instance overhead: instantiate + run + collect stdout, in process.
    {
        let d = WasmDriver::new(&data).expect("driver");
        let h = d
            .wagi_handler(&module, 16, Duration::from_secs(5))
            .await
            .expect("handler");
        for _ in 0..1000 {
            h.call("GET", "/", bytes::Bytes::new())
                .await
                .expect("warm-up");
        }
        let mut times = Vec::with_capacity(ITERATIONS);
        for _ in 0..ITERATIONS {
            let t = Instant::now();
            let out = h.call("GET", "/", bytes::Bytes::new()).await.expect("call");
            times.push(t.elapsed());
            assert!(out.ends_with(BODY.as_bytes()));
        }
        times.sort();
        println!(
            "instance overhead over {ITERATIONS} requests: p50 {:?}, p99 {:?}",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }

    // Cold start: a fresh driver (as after an agent restart) with the module
    // in the disk cache; from driver start() to the first answered request.
    let client = reqwest::Client::new();
    let d = WasmDriver::new(&data).expect("driver");
    let port = free_port();
    let cfg = task(dir.path(), &module, port);
    let t = Instant::now();
    let handle = d.start(&cfg).await.expect("start");
    first_answer(&client, port).await;
    println!(
        "cold start (cached module, start → first 200): {:?}, compilations: {}",
        t.elapsed(),
        d.compilations()
    );

    let native_port = native(&client, Duration::ZERO).await;
    let hyper_port = native_hyper(&client).await;
    // The same native server burning 6 µs of CPU per request: how much any
    // per-request cost of that size weighs when wrk shares the two cores.
    let busy_port = native(&client, BUSY).await;

    for (name, p) in [
        ("wasm (WAGI)", port),
        ("native axum", native_port),
        ("native hyper", hyper_port),
        ("native axum + 6 µs busy", busy_port),
    ] {
        match tokio::task::spawn_blocking(move || wrk(p))
            .await
            .ok()
            .flatten()
        {
            Some((rps, p50, p99)) => {
                println!("wrk -t2 -c32 -d10s {name}: {rps} req/s, p50 {p50}, p99 {p99}")
            }
            None => println!("wrk not found or failed: install it (apt-get install wrk)"),
        }
    }
    d.stop(&handle, Duration::from_secs(1)).await.expect("stop");
}
