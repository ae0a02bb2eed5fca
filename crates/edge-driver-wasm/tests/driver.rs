//! Driver-level tests of the wasm driver against real modules (WAT sources in
//! this file, `tests/wasm/` and `examples/wasm/`): command output and exit
//! codes, traps, loops and memory limits, WAGI http mode, the compiled-module
//! cache and modules fetched by URL.

use edge_driver::{Driver, DriverError, EventSink, ExitResult, TaskConfig, TaskHandle};
use edge_driver_wasm::WasmDriver;
use edge_spec::{AssignedPort, Resources};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const EXIT_3: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const 3))))"#;

const TRAP: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start") unreachable))"#;

const RECURSE: &str = r#"(module
  (memory (export "memory") 1)
  (func $f (call $f))
  (func (export "_start") (call $f)))"#;

const LOOP: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $l (br $l))))"#;

const GROW: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $l (drop (memory.grow (i32.const 16))) (br $l))))"#;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn hello() -> PathBuf {
    repo().join("examples/wasm/hello.wat")
}

/// The task's one port, labelled as http mode serves it by default.
fn http_port(port: u16) -> Vec<AssignedPort> {
    vec![AssignedPort {
        label: "http".into(),
        value: port,
        to: port,
    }]
}

fn wagi() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wasm/wagi.wat")
}

fn module(dir: &Path, name: &str, wat: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, wat).unwrap();
    path
}

fn task(dir: &Path, config: Value, memory: u32, ports: Vec<AssignedPort>) -> TaskConfig {
    TaskConfig {
        mounts: Vec::new(),
        alloc_id: "a1".into(),
        job_id: "j".into(),
        group: "g".into(),
        task: "t".into(),
        config: config.as_object().cloned().unwrap_or_default(),
        env: BTreeMap::from([("GREETING".to_string(), "hi".to_string())]),
        resources: Resources { cpu: 100, memory },
        ports,
        alloc_dir: dir.join("alloc"),
        task_dir: dir.join("t"),
        log_dir: dir.join("alloc/logs"),
        log_max_bytes: 1 << 20,
        log_max_files: 2,
        netns: None,
        resolv_conf: None,
    }
}

fn log(cfg: &TaskConfig, stream: &str) -> String {
    let path = edge_driver::logs::log_path(&cfg.log_dir, &cfg.task, stream, 0);
    std::fs::read_to_string(path).unwrap_or_default()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn run(driver: &WasmDriver, cfg: &TaskConfig) -> ExitResult {
    let h = driver.start(cfg).await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(20), driver.wait(&h))
        .await
        .expect("task ends")
        .unwrap();
    driver.destroy(&h).await.unwrap();
    exit
}

#[derive(Default)]
struct Events(Mutex<Vec<(String, String)>>);

impl EventSink for Events {
    fn event(&self, kind: &str, message: &str) {
        self.0.lock().unwrap().push((kind.into(), message.into()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_output_args_and_env_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let d = WasmDriver::new(dir.path().join("data")).unwrap();
    let cfg = task(
        dir.path(),
        json!({"module": hello(), "args": ["${GREETING} edge"]}),
        64,
        vec![],
    );
    let exit = run(&d, &cfg).await;
    assert!(exit.successful(), "{exit:?}");
    assert_eq!(log(&cfg, "stdout"), "hello from wasm, hi edge\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_past_the_clock_is_no_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let d = WasmDriver::new(dir.path().join("data")).unwrap();
    let cfg = task(
        dir.path(),
        json!({"module": hello(), "timeout": "500000000000years"}),
        64,
        vec![],
    );
    let exit = run(&d, &cfg).await;
    assert!(exit.successful(), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_decides_success() {
    let dir = tempfile::tempdir().unwrap();
    let d = WasmDriver::new(dir.path().join("data")).unwrap();
    let m = module(dir.path(), "exit3.wat", EXIT_3);
    let exit = run(&d, &task(dir.path(), json!({"module": m}), 64, vec![])).await;
    assert_eq!(exit.exit_code, 3);
    assert!(!exit.successful());
    assert_eq!(exit.error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_and_stack_overflow_fail_naming_the_trap() {
    let dir = tempfile::tempdir().unwrap();
    let d = WasmDriver::new(dir.path().join("data")).unwrap();
    let cfg = task(
        dir.path(),
        json!({"module": module(dir.path(), "trap.wat", TRAP)}),
        64,
        vec![],
    );
    let exit = run(&d, &cfg).await;
    let err = exit.error.clone().unwrap_or_default();
    assert!(
        err.contains("wasm trap") && err.contains("unreachable"),
        "{exit:?}"
    );
    assert!(log(&cfg, "stderr").contains("task failed"));

    let m = module(dir.path(), "recurse.wat", RECURSE);
    let exit = run(&d, &task(dir.path(), json!({"module": m}), 64, vec![])).await;
    assert!(
        exit.error
            .as_deref()
            .unwrap_or("")
            .contains("call stack exhausted"),
        "{exit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_is_stopped_by_stop_and_by_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let d = WasmDriver::new(dir.path().join("data")).unwrap();
    let m = module(dir.path(), "loop.wat", LOOP);
    let h = d
        .start(&task(dir.path(), json!({"module": m}), 64, vec![]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = d.stats(&h).await.unwrap();
    assert!(stats.cpu_total_ns > 0);
    let t = Instant::now();
    d.stop(&h, Duration::from_secs(5)).await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "stopped by the epoch, not the kill"
    );
    let exit = d.wait(&h).await.unwrap();
    assert_eq!(exit.error.as_deref(), Some("stopped by the agent"));

    let cfg = task(
        dir.path(),
        json!({"module": m, "timeout": "200ms"}),
        64,
        vec![],
    );
    let exit = run(&d, &cfg).await;
    assert!(
        exit.error
            .as_deref()
            .unwrap_or("")
            .contains("deadline of 200ms exceeded"),
        "{exit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_growth_past_the_limit_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = WasmDriver::new(dir.path().join("data")).unwrap();
    let m = module(dir.path(), "grow.wat", GROW);
    let exit = run(&d, &task(dir.path(), json!({"module": m}), 16, vec![])).await;
    let err = exit.error.unwrap_or_default();
    assert!(
        err.contains("memory limit exceeded") && err.contains("allows 16 MiB"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_mode_serves_each_request_in_a_fresh_instance() {
    let dir = tempfile::tempdir().unwrap();
    let d = WasmDriver::new(dir.path().join("data")).unwrap();
    let port = free_port();
    let cfg = task(
        dir.path(),
        json!({"module": wagi(), "mode": "http", "timeout": "300ms"}),
        32,
        http_port(port),
    );
    let h = d.start(&cfg).await.unwrap();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let c = reqwest::Client::new();
    let get = |p: &'static str| {
        let c = c.clone();
        let u = url(p);
        async move {
            let r = c.get(u).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(
        get("/hi?x=1").await,
        (200, "hello from wasm at /hi\n".to_string())
    );

    let r = c.post(url("/echo")).body("ping body").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.text().await.unwrap(), "ping body");

    let (status, body) = get("/trap").await;
    assert_eq!(status, 500);
    assert!(body.contains("wasm trap"), "{body}");
    assert_eq!(get("/after-trap").await.0, 200);

    let (status, body) = get("/loop").await;
    assert_eq!(status, 504);
    assert!(body.contains("deadline of 300ms exceeded"), "{body}");
    assert_eq!(get("/after-loop").await.0, 200);

    let (status, body) = get("/mem").await;
    assert_eq!(status, 500);
    assert!(body.contains("memory limit exceeded"), "{body}");
    assert_eq!(get("/after-mem").await.0, 200);
    assert_eq!(get("/stderr").await.0, 200);
    let stderr = log(&cfg, "stderr");
    assert!(stderr.contains("GET /loop: 504"), "{stderr}");
    assert!(stderr.contains("stderr from the handler\n"), "{stderr}");
    assert_eq!(
        d.stats(&h).await.unwrap().memory_rss_bytes,
        0,
        "instances freed"
    );

    d.stop(&h, Duration::from_secs(2)).await.unwrap();
    assert!(d.wait(&h).await.unwrap().successful());
    assert!(c.get(url("/")).send().await.is_err(), "port closed");
    d.destroy(&h).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_mode_needs_its_port() {
    let dir = tempfile::tempdir().unwrap();
    let d = WasmDriver::new(dir.path().join("data")).unwrap();
    let cfg = task(
        dir.path(),
        json!({"module": wagi(), "mode": "http", "port": "web"}),
        32,
        vec![],
    );
    match d.start(&cfg).await {
        Err(DriverError::Config { field, message }) => {
            assert_eq!(field, "config.port");
            assert!(message.contains("\"web\""), "{message}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_mode_needs_a_start_function() {
    let dir = tempfile::tempdir().unwrap();
    let d = WasmDriver::new(dir.path().join("data")).unwrap();
    let m = module(
        dir.path(),
        "lib.wat",
        r#"(module (memory (export "memory") 1))"#,
    );
    let port = free_port();
    let cfg = task(
        dir.path(),
        json!({"module": m, "mode": "http"}),
        32,
        http_port(port),
    );
    match d.start(&cfg).await {
        Err(DriverError::Config { field, message }) => {
            assert_eq!(field, "config.module");
            assert!(message.contains("no `_start` export"), "{message}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_mode_on_a_taken_port_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = WasmDriver::new(dir.path().join("data")).unwrap();
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg = task(
        dir.path(),
        json!({"module": wagi(), "mode": "http"}),
        32,
        http_port(port),
    );
    let err = d.start(&cfg).await.unwrap_err().to_string();
    assert!(err.contains(&format!("listening on port {port}")), "{err}");
    drop(taken);
    let h = d.start(&cfg).await.expect("the port is free again");
    d.stop(&h, Duration::from_secs(2)).await.unwrap();
    d.destroy(&h).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wagi_handler_runs_a_request_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let d = WasmDriver::new(dir.path().join("data")).unwrap();
    let h = d
        .wagi_handler(&wagi(), 32, Duration::from_secs(1))
        .await
        .unwrap();
    let out = h.call("POST", "/echo", "abc".into()).await.unwrap();
    assert_eq!(&out[..], b"content-type: text/plain\n\nabc");
    let err = h.call("GET", "/trap", "".into()).await.unwrap_err();
    assert!(err.starts_with("500: wasm trap"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_sees_the_cgi_variables() {
    let dir = tempfile::tempdir().unwrap();
    let d = WasmDriver::new(dir.path().join("data")).unwrap();
    let env = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wasm/env.wat");
    let h = d
        .wagi_handler(&env, 32, Duration::from_secs(1))
        .await
        .unwrap();
    let out = h.call("POST", "/a/b?x=1&y", "abc".into()).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    let (head, vars) = text.split_once("\n\n").unwrap();
    assert_eq!(head, "content-type: text/plain");
    let vars: Vec<&str> = vars.strip_suffix('\0').unwrap().split('\0').collect();
    for want in [
        "REQUEST_METHOD=POST",
        "PATH_INFO=/a/b",
        "QUERY_STRING=x=1&y",
        "CONTENT_LENGTH=3",
        "REMOTE_ADDR=127.0.0.1",
        "SERVER_SOFTWARE=edge-wasm",
        "GATEWAY_INTERFACE=CGI/1.1",
        "X_FULL_URL=http://localhost/a/b?x=1&y",
    ] {
        assert!(vars.contains(&want), "{want} missing from {vars:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_start_does_not_compile_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = task(dir.path(), json!({"module": hello()}), 64, vec![]);
    let cached = {
        let d = WasmDriver::new(&data).unwrap();
        let events = Events::default();
        d.prepare(&cfg, &events).await.unwrap();
        assert_eq!(d.compilations(), 1);
        assert_eq!(events.0.lock().unwrap()[0].0, "Compiled module");
        assert!(run(&d, &cfg).await.successful());
        assert!(run(&d, &cfg).await.successful());
        assert_eq!(d.compilations(), 1, "same driver: no second compilation");
        d.compiled_path(&std::fs::read(hello()).unwrap())
    };
    assert!(cached.exists(), "{} missing", cached.display());
    assert!(
        cached
            .to_string_lossy()
            .ends_with(&format!("-{}.cwasm", edge_driver_wasm::WASMTIME_VERSION))
    );
    // A new driver on the same data dir is what the agent has after a restart.
    let d = WasmDriver::new(&data).unwrap();
    let events = Events::default();
    d.prepare(&cfg, &events).await.unwrap();
    assert!(run(&d, &cfg).await.successful());
    assert_eq!(d.compilations(), 0, "loaded from the disk cache");
    assert!(events.0.lock().unwrap().is_empty());
}

async fn serve_module(bytes: Vec<u8>) -> String {
    let app = axum::Router::new().route(
        "/m.wat",
        axum::routing::get(move || {
            let b = bytes.clone();
            async move { b }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/m.wat")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_modules_are_checked_against_their_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let d = WasmDriver::new(dir.path().join("data")).unwrap();
    let bytes = std::fs::read(hello()).unwrap();
    let url = serve_module(bytes.clone()).await;
    let wrong = "0".repeat(64);
    let events = Events::default();
    let cfg = task(
        dir.path(),
        json!({"module": url, "sha256": wrong}),
        64,
        vec![],
    );
    match d.prepare(&cfg, &events).await {
        Err(DriverError::Config { field, message }) => {
            assert_eq!(field, "config.sha256");
            assert!(message.contains(&format!("expected {wrong}")), "{message}");
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }

    let right = {
        use sha2::Digest;
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let cfg = task(
        dir.path(),
        json!({"module": url, "sha256": right}),
        64,
        vec![],
    );
    d.prepare(&cfg, &events).await.unwrap();
    let kinds: Vec<String> = events
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.0.clone())
        .collect();
    assert_eq!(
        kinds,
        [
            "Downloading module",
            "Downloading module",
            "Downloaded module",
            "Compiled module"
        ]
    );
    assert!(run(&d, &cfg).await.successful());
    assert!(log(&cfg, "stdout").contains("hello from wasm"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_do_not_survive_the_driver() {
    let dir = tempfile::tempdir().unwrap();
    let d = WasmDriver::new(dir.path().join("data")).unwrap();
    let handle = TaskHandle {
        driver: "wasm".into(),
        task_id: "a1/t/0".into(),
        pid: None,
        started_at: 0,
        state: Value::Null,
    };
    assert!(matches!(
        d.recover(&handle).await,
        Err(DriverError::NotFound { .. })
    ));
    let info = d.fingerprint().await;
    assert!(info.detected && info.healthy);
    assert_eq!(
        info.attributes
            .get("driver.wasm.version")
            .map(String::as_str),
        Some(edge_driver_wasm::WASMTIME_VERSION)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_modules_fail_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = WasmDriver::new(dir.path().join("data")).unwrap();
    let missing = task(
        dir.path(),
        json!({"module": dir.path().join("nope.wasm")}),
        64,
        vec![],
    );
    let err = d.start(&missing).await.unwrap_err().to_string();
    assert!(
        err.contains("config.module") && err.contains("nope.wasm"),
        "{err}"
    );
    let m = module(dir.path(), "bad.wat", "(module (func");
    let err = d
        .start(&task(dir.path(), json!({"module": m}), 64, vec![]))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("compiling module"), "{err}");
}

/// Opens `out.txt` in the directory preopened as fd `FD` for writing,
/// writes "written", exits 0; exits 2 when the open is refused.
const WRITE_OUT: &str = r#"(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "written")
  (data (i32.const 200) "out.txt")
  (func (export "_start")
    ;; O_CREAT | O_TRUNC, with the right to write (fd_write = 1 << 6).
    (if (call $path_open (i32.const FD) (i32.const 0) (i32.const 200) (i32.const 7)
          (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 0))
      (then (call $exit (i32.const 2))))
    (i32.store (i32.const 8) (i32.const 100))
    (i32.store (i32.const 12) (i32.const 7))
    (drop (call $fd_write (i32.load (i32.const 0)) (i32.const 8) (i32.const 1) (i32.const 16)))
    (call $exit (i32.const 0))))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_are_preopened_writable_or_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = WasmDriver::new(dir.path().join("data")).unwrap();
    let (rw, ro) = (dir.path().join("rw"), dir.path().join("ro"));
    for v in [&rw, &ro] {
        std::fs::create_dir(v).unwrap();
    }
    let mounts = vec![
        edge_driver::Mount {
            source: rw.clone(),
            destination: "/data".into(),
            read_only: false,
        },
        edge_driver::Mount {
            source: ro.clone(),
            destination: "/pics".into(),
            read_only: true,
        },
    ];
    // Preopens: /alloc is 3, /local 4, then the mounts in order.
    for (fd, want, file) in [("5", 0, rw.join("out.txt")), ("6", 2, ro.join("out.txt"))] {
        let m = module(
            dir.path(),
            &format!("w{fd}.wat"),
            &WRITE_OUT.replace("FD", fd),
        );
        let cfg = TaskConfig {
            mounts: mounts.clone(),
            ..task(dir.path(), json!({"module": m}), 64, vec![])
        };
        let exit = run(&d, &cfg).await;
        assert_eq!(exit.exit_code, want, "fd {fd}: {exit:?}");
        assert_eq!(file.exists(), want == 0, "fd {fd}");
    }
    assert_eq!(
        std::fs::read_to_string(rw.join("out.txt")).unwrap(),
        "written"
    );
}
