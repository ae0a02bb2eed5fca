//! End-to-end tests of the wasm driver in the real binary: `edge dev` runs
//! the WAGI example and answers over HTTP, the command example completes with
//! its output in `edge alloc logs`, and modules that trap, loop forever or
//! outgrow their memory fail with an event naming the cause (after their
//! restart attempts) while the web allocation keeps serving.

mod common;

use common::{Proc, alloc_port, cli, free_port, until};
use edge_api::{Client, QueryOptions};
use edge_spec::{Allocation, ClientStatus};
use std::path::{Path, PathBuf};

async fn terminal_alloc(api: &Client, job: &str) -> Allocation {
    until(60, &format!("{job} allocation finished"), async || {
        let (allocs, _) = api.job_allocs(job, QueryOptions::default()).await.ok()?;
        let a = allocs.first()?;
        let a = api.alloc(&a.id).await.ok()?;
        a.client_status.is_terminal().then_some(a)
    })
    .await
}

/// A batch job running `wat` once, restarted once on failure.
fn failing_job(dir: &Path, name: &str, wat: &str, extra: &str) -> PathBuf {
    let module = dir.join(format!("{name}.wat"));
    std::fs::write(&module, wat).unwrap();
    let job = dir.join(format!("{name}.hcl"));
    std::fs::write(
        &job,
        format!(
            r#"job "{name}" {{
  type = "batch"
  group "g" {{
    restart {{
      attempts = 1
      delay    = "100ms"
      interval = "10m"
      mode     = "fail"
    }}
    task "t" {{
      driver = "wasm"
      config {{
        module = "{}"
        {extra}
      }}
      resources {{
        cpu    = 100
        memory = 16
      }}
    }}
  }}
}}
"#,
            module.display()
        ),
    )
    .unwrap();
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_serves_wasm_web_runs_wasm_hello_and_isolates_failures() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("http://127.0.0.1:{port}");
    let data = dir.path().join("data");
    let bind = format!("127.0.0.1:{port}");
    let _dev = Proc::edge(
        dir.path(),
        "dev",
        &["dev", "--data-dir", data.to_str().unwrap(), "--bind", &bind],
    );
    let api = Client::new(&addr, None).unwrap();
    until(30, "a ready node", async || {
        (api.health().await.ok()?.nodes_ready == 1).then_some(())
    })
    .await;

    let (ok, out) = cli(&addr, &["job", "run", "examples/wasm-web.hcl"]);
    assert!(ok, "job run failed: {out}");
    let web_port = alloc_port(&api, "wasm-web", "http").await;
    let get = async || {
        let r = reqwest::get(format!("http://127.0.0.1:{web_port}/e2e/path"))
            .await
            .ok()?;
        r.status().is_success().then_some(())?;
        r.text().await.ok()
    };
    let body = until(20, "wasm-web answers over HTTP", get).await;
    assert_eq!(body, "hello from wasm at /e2e/path\n");

    let (ok, out) = cli(&addr, &["job", "run", "examples/wasm-hello.hcl"]);
    assert!(ok, "job run failed: {out}");
    let hello = terminal_alloc(&api, "wasm-hello").await;
    assert_eq!(hello.client_status, ClientStatus::Complete, "{hello:?}");
    let (ok, logs) = cli(&addr, &["alloc", "logs", &hello.id]);
    assert!(ok, "{logs}");
    assert_eq!(logs, "hello from wasm, edge\n");

    let cases = [
        (
            "wasm-trap",
            r#"(module (memory 1) (func (export "_start") unreachable))"#,
            "",
            "wasm trap: wasm `unreachable` instruction executed",
        ),
        (
            "wasm-loop",
            r#"(module (memory 1) (func (export "_start") (loop $l (br $l))))"#,
            r#"timeout = "500ms""#,
            "deadline of 500ms exceeded",
        ),
        (
            "wasm-grow",
            r#"(module (memory 1)
                 (func (export "_start") (loop $l (drop (memory.grow (i32.const 16))) (br $l))))"#,
            "",
            "memory limit exceeded",
        ),
    ];
    for (name, wat, extra, cause) in cases {
        let job = failing_job(dir.path(), name, wat, extra);
        let (_, out) = cli(&addr, &["job", "run", job.to_str().unwrap()]);
        let alloc = terminal_alloc(&api, name).await;
        assert_eq!(alloc.client_status, ClientStatus::Failed, "{name}: {out}");
        let state = &alloc.task_states["t"];
        assert_eq!(state.restarts, 1, "{name}: the restart policy applies");
        let failures = state
            .events
            .iter()
            .filter(|e| e.message.contains(cause))
            .count();
        assert_eq!(failures, 2, "{name}: {:?}", state.events);
        let (_, status) = cli(&addr, &["alloc", "status", &alloc.id]);
        assert!(status.contains(cause), "{name}: {status}");
        assert_eq!(
            get().await.as_deref(),
            Some("hello from wasm at /e2e/path\n"),
            "wasm-web keeps serving after {name}"
        );
    }

    let (ok, _) = cli(&addr, &["job", "stop", "wasm-web"]);
    assert!(ok);
    until(20, "wasm-web stops answering", async || {
        reqwest::get(format!("http://127.0.0.1:{web_port}/"))
            .await
            .is_err()
            .then_some(())
    })
    .await;
}
