//! Model serving end to end with the real binary: `edge dev` runs
//! examples/model.hcl (the `model` block expanded into a group, the server a
//! child process of its own), it answers Open Inference Protocol requests on
//! its allocated port with onnxruntime's outputs; a model that cannot load
//! fails its task with an event that says why; tritonclient, a real client,
//! against `edge model serve` over HTTP (JSON and binary) and gRPC;
//! `edge job init --template model`.

mod common;

use common::{EDGE, Proc, alloc_port, free_port, repo, until};
use edge_api::QueryOptions;
use edge_model::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use edge_model::grpc::proto::{ModelInferRequest, model_infer_request::InferInputTensor};
use serde_json::{Value, json};
use std::process::Command;

fn cli(addr: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(EDGE)
        .args(args)
        .env("EDGE_ADDR", addr)
        .current_dir(repo())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn iris_case() -> Value {
    let text = std::fs::read_to_string(repo().join("tests/model/fixtures/iris.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn assert_close(got: &Value, want: &Value) {
    let (g, w) = (got.as_array().unwrap(), want.as_array().unwrap());
    assert_eq!(g.len(), w.len(), "{got} vs {want}");
    for (g, w) in g.iter().zip(w) {
        let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
        assert!((g - w).abs() <= 1e-5 + 1e-4 * w.abs(), "{got} vs {want}");
    }
}

/// A job `ort` in `dir` serving iris on the onnxruntime backend, one run
/// at a time (`workers`).
fn onnxruntime_job(dir: &std::path::Path) -> std::path::PathBuf {
    let job = dir.join("ort.hcl");
    std::fs::write(
        &job,
        format!(
            "job \"ort\" {{\n  model \"iris\" {{\n    source  = {:?}\n    backend = \"onnxruntime\"\n    workers = 1\n  }}\n}}\n",
            repo().join("examples/models/iris.onnx").display().to_string()
        ),
    )
    .unwrap();
    job
}

/// Waits for the iris server at `url` to answer, and checks the answer is
/// onnxruntime's.
async fn iris_answers(url: &str) {
    let case = iris_case();
    let http = reqwest::Client::new();
    let answer = until(30, "the iris model's answer", async || {
        let r = http
            .post(format!("{url}/v2/models/iris/infer"))
            .json(&json!({"inputs": case["inputs"]}))
            .send()
            .await
            .ok()?;
        r.status().is_success().then_some(())?;
        r.json::<Value>().await.ok()
    })
    .await;
    assert_eq!(answer["outputs"][0]["data"], case["outputs"][0]["data"]);
    assert_close(&answer["outputs"][1]["data"], &case["outputs"][1]["data"]);
}

/// Stops `job` and waits for its model server at `url` to go: tasks outlive
/// the agent (edge autonomy), so a test that left it would leave it running.
async fn stop_model_job(addr: &str, job: &str, url: &str) {
    let (ok, _, err) = cli(addr, &["job", "stop", job]);
    assert!(ok, "{err}");
    until(20, "the model server stops", async || {
        reqwest::get(format!("{url}/v2/health/live"))
            .await
            .is_err()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn dev_serves_the_model_example_and_a_broken_model_fails_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (_dev, addr, api) = common::dev(dir.path()).await;

    let (ok, out, err) = cli(&addr, &["job", "plan", "examples/model.hcl"]);
    assert!(ok, "plan: {out}\n{err}");
    assert!(out.contains("iris"), "{out}");
    let (ok, out, err) = cli(&addr, &["job", "run", "examples/model.hcl"]);
    assert!(ok, "run: {out}\n{err}");

    let (ok, out, err) = cli(&addr, &["job", "inspect", "iris"]);
    assert!(ok, "inspect: {err}");
    let job: Value = serde_json::from_str(&out).unwrap();
    let group = &job["job"]["groups"][0];
    assert_eq!(group["name"], "iris");
    assert_eq!(group["tasks"][0]["driver"], "model");
    assert_eq!(
        group["tasks"][0]["config"]["source"],
        "examples/models/iris.onnx"
    );
    assert_eq!(
        group["services"][0]["checks"][0]["path"],
        "/v2/health/ready"
    );

    let model_port = alloc_port(&api, "iris", "http").await;
    let base = format!("http://127.0.0.1:{model_port}");
    until(30, "the model server is ready", async || {
        let r = reqwest::get(format!("{base}/v2/health/ready")).await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let case = iris_case();
    let http = reqwest::Client::new();
    let answer: Value = http
        .post(format!("{base}/v2/models/iris/infer"))
        .json(&json!({"inputs": case["inputs"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["outputs"][0]["data"], case["outputs"][0]["data"]);
    assert_close(&answer["outputs"][1]["data"], &case["outputs"][1]["data"]);

    // The example's `grpc {}`: the same inference over gRPC on port "grpc".
    let grpc_port = alloc_port(&api, "iris", "grpc").await;
    let mut grpc = until(30, "the gRPC endpoint", async || {
        GrpcInferenceServiceClient::connect(format!("http://127.0.0.1:{grpc_port}"))
            .await
            .ok()
    })
    .await;
    let input = &case["inputs"][0];
    let x: Vec<u8> = input["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| (v.as_f64().unwrap() as f32).to_le_bytes())
        .collect();
    let r = grpc
        .model_infer(ModelInferRequest {
            model_name: "iris".into(),
            inputs: vec![InferInputTensor {
                name: "X".into(),
                datatype: "FP32".into(),
                shape: serde_json::from_value(input["shape"].clone()).unwrap(),
                ..Default::default()
            }],
            raw_input_contents: vec![x.into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let labels: Vec<i64> = r.raw_output_contents[0]
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(json!(labels), case["outputs"][0]["data"]);

    let broken = dir.path().join("broken.hcl");
    let model = repo().join("tests/model/fixtures/broken/unsupported-op.onnx");
    std::fs::write(
        &broken,
        format!(
            "job \"broken\" {{\n  model \"frob\" {{\n    source = {:?}\n  }}\n}}\n",
            model.canonicalize().unwrap().display().to_string()
        ),
    )
    .unwrap();
    let (_, out, err) = cli(&addr, &["job", "run", "--detach", broken.to_str().unwrap()]);
    assert!(out.contains("registered"), "{out}\n{err}");
    let reason = until(30, "the broken model's task event", async || {
        let (allocs, _) = api
            .job_allocs("broken", QueryOptions::default())
            .await
            .ok()?;
        let alloc = api.alloc(&allocs.first()?.id).await.ok()?;
        alloc
            .task_states
            .values()
            .flat_map(|t| t.events.iter())
            .find(|e| e.kind == "Terminated")
            .map(|e| e.message.clone())
    })
    .await;
    assert!(
        reason.contains("unsupported operator com.example.Frobnicate"),
        "{reason}"
    );

    // One server, several models: a repository directory and a nested block.
    let models = dir.path().join("models");
    for v in ["1", "2"] {
        std::fs::create_dir_all(models.join("iris").join(v)).unwrap();
        std::fs::copy(
            repo().join("examples/models/iris.onnx"),
            models.join("iris").join(v).join("model.onnx"),
        )
        .unwrap();
    }
    let multi = dir.path().join("multi.hcl");
    std::fs::write(
        &multi,
        format!(
            "job \"multi\" {{\n  model \"zoo\" {{\n    source = \"models\"\n    model \"mlp\" {{\n      source  = {:?}\n      version = 3\n    }}\n  }}\n}}\n",
            repo().join("tests/model/fixtures/mlp.onnx").display().to_string()
        ),
    )
    .unwrap();
    let (ok, out, err) = cli(&addr, &["job", "run", multi.to_str().unwrap()]);
    assert!(ok, "run: {out}\n{err}");
    let zoo = alloc_port(&api, "multi", "http").await;
    let index = until(30, "the zoo's repository index", async || {
        let r = http
            .post(format!("http://127.0.0.1:{zoo}/v2/repository/index"))
            .send()
            .await
            .ok()?;
        r.json::<Value>().await.ok()
    })
    .await;
    assert_eq!(
        index,
        json!([
            {"name": "iris", "version": "1", "state": "READY"},
            {"name": "iris", "version": "2", "state": "READY"},
            {"name": "mlp", "version": "3", "state": "READY"},
        ])
    );
    let answer: Value = http
        .post(format!(
            "http://127.0.0.1:{zoo}/v2/models/iris/versions/1/infer"
        ))
        .json(&json!({"inputs": case["inputs"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["outputs"][0]["data"], case["outputs"][0]["data"]);

    // `backend = "onnxruntime"`: the agent hands the library it was given
    // (EDGE_ONNXRUNTIME_LIB, inherited from this test) to the model server.
    let mut jobs = vec![("iris", base), ("multi", format!("http://127.0.0.1:{zoo}"))];
    if std::env::var("EDGE_ONNXRUNTIME_LIB").is_ok_and(|v| !v.is_empty()) {
        // The node says it has the library, so the job is placed there.
        let nodes = api.nodes().await.unwrap();
        let node = api.node(&nodes[0].id).await.unwrap();
        assert_eq!(
            node.attributes
                .get("driver.model.backends")
                .map(String::as_str),
            Some("tract,onnxruntime"),
            "{:?}",
            node.attributes
        );
        assert!(
            node.attributes
                .contains_key("driver.model.onnxruntime.version")
        );
        let ort = onnxruntime_job(dir.path());
        let (ok, out, err) = cli(&addr, &["job", "run", ort.to_str().unwrap()]);
        assert!(ok, "run: {out}\n{err}");
        let port = alloc_port(&api, "ort", "http").await;
        let url = format!("http://127.0.0.1:{port}");
        iris_answers(&url).await;
        jobs.push(("ort", url));
    } else {
        assert!(
            std::env::var_os("EDGE_TEST_ROOT").is_none(),
            "EDGE_ONNXRUNTIME_LIB is required under EDGE_TEST_ROOT (deploy/test.sh sets it)"
        );
        println!("skipped: a job on the onnxruntime backend (set EDGE_ONNXRUNTIME_LIB)");
    }

    for (job, url) in jobs {
        stop_model_job(&addr, job, &url).await;
    }
}

/// `edge model serve --grpc-port` of a fixture model with `more` arguments
/// (a backend), up on both ports.
async fn serve_with_grpc(
    dir: &std::path::Path,
    model: &str,
    name: &str,
    more: &[&str],
) -> (Proc, u16, u16) {
    let (port, grpc) = (free_port(), free_port());
    let (port_arg, grpc_arg) = (port.to_string(), grpc.to_string());
    let mut args = vec![
        "model",
        "serve",
        "--model",
        model,
        "--name",
        name,
        "--host",
        "127.0.0.1",
        "--port",
        &port_arg,
        "--grpc-port",
        &grpc_arg,
    ];
    args.extend_from_slice(more);
    // The backend names the log files, so two servers of one model keep theirs.
    let label = more
        .get(1)
        .map_or(name.to_string(), |b| format!("{name}-{b}"));
    let proc = Proc::edge(dir, &label, &args);
    until(20, "edge model serve is up", async || {
        reqwest::get(format!("http://127.0.0.1:{port}/v2/health/live"))
            .await
            .ok()?;
        tokio::net::TcpStream::connect(("127.0.0.1", grpc))
            .await
            .ok()
    })
    .await;
    (proc, port, grpc)
}

/// tritonclient over HTTP (JSON and binary tensors) and gRPC: iris against
/// onnxruntime's answers, and FP32 NaN/±Inf, INT64 and BYTES round trips
/// through the echo model. Needs python3 with `tritonclient[http,grpc]`,
/// which deploy/test.sh installs: required under EDGE_TEST_ROOT=1 (CI).
#[tokio::test]
async fn tritonclient_talks_to_edge_model_serve() {
    let probe = Command::new("python3")
        .args(["-c", "import numpy, tritonclient.http, tritonclient.grpc"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os("EDGE_TEST_ROOT").is_none(),
            "python3 with tritonclient[http,grpc] is required under EDGE_TEST_ROOT (deploy/test.sh installs it)"
        );
        println!("skipped: python3 with tritonclient[http,grpc] is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The onnxruntime backend answers the same requests the same way, where
    // ONNX Runtime's library is named (required in CI: deploy/test.sh).
    let ort = std::env::var("EDGE_ONNXRUNTIME_LIB")
        .ok()
        .filter(|v| !v.is_empty());
    assert!(
        ort.is_some() || std::env::var_os("EDGE_TEST_ROOT").is_none(),
        "EDGE_ONNXRUNTIME_LIB is required under EDGE_TEST_ROOT (deploy/test.sh sets it)"
    );
    let mut backends: Vec<Vec<&str>> = vec![vec![]];
    match &ort {
        Some(lib) => backends.push(vec!["--backend", "onnxruntime", "--onnxruntime-lib", lib]),
        None => println!("skipped: the onnxruntime backend (set EDGE_ONNXRUNTIME_LIB)"),
    }
    for more in &backends {
        let (_iris, iris_http, iris_grpc) =
            serve_with_grpc(dir.path(), "examples/models/iris.onnx", "iris", more).await;
        let (_echo, echo_http, echo_grpc) =
            serve_with_grpc(dir.path(), "tests/model/fixtures/echo.onnx", "echo", more).await;
        for (protocol, iris, echo) in [
            ("http", iris_http, echo_http),
            ("grpc", iris_grpc, echo_grpc),
        ] {
            let out = Command::new("python3")
                .args([
                    "tests/model/triton_client.py",
                    protocol,
                    &format!("127.0.0.1:{iris}"),
                    "iris",
                    "tests/model/fixtures/iris.json",
                    &format!("127.0.0.1:{echo}"),
                ])
                .current_dir(repo())
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("ok"),
                "tritonclient ({protocol}, {more:?}) failed: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The `model` block's `grpc { publish }` and `service { publish }`: the
/// same tritonclient requests (binary HTTP, gRPC) through the load
/// balancer's published ports of `edge dev`.
#[tokio::test]
async fn tritonclient_through_the_published_load_balancer_ports() {
    if !common::gated("EDGE_TEST_ROOT") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_dev, addr, api) = common::dev(dir.path()).await;
    let (http_lb, grpc_lb) = (free_port(), free_port());
    let model = repo().join("examples/models/iris.onnx");
    let job = dir.path().join("wire.hcl");
    std::fs::write(
        &job,
        format!(
            "job \"wire\" {{\n  model \"iris\" {{\n    source = {:?}\n    service {{\n      publish {{\n        port = {http_lb}\n      }}\n    }}\n    grpc {{\n      publish {{\n        port = {grpc_lb}\n      }}\n    }}\n  }}\n}}\n",
            model.display().to_string()
        ),
    )
    .unwrap();
    let (ok, out, err) = cli(&addr, &["job", "run", "--detach", job.to_str().unwrap()]);
    assert!(ok, "run: {out}\n{err}");
    until(
        60,
        "the model is ready through the load balancer",
        async || {
            let r = reqwest::get(format!("http://127.0.0.1:{http_lb}/v2/health/ready"))
                .await
                .ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;
    for (protocol, lb) in [("http", http_lb), ("grpc", grpc_lb)] {
        let out = Command::new("python3")
            .args([
                "tests/model/triton_client.py",
                protocol,
                &format!("127.0.0.1:{lb}"),
                "iris",
                "tests/model/fixtures/iris.json",
            ])
            .current_dir(repo())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("ok"),
            "tritonclient ({protocol}) through the load balancer failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Tasks outlive the agent: stop the job and see its server go.
    let served = alloc_port(&api, "wire", "http").await;
    let (ok, _, err) = cli(&addr, &["job", "stop", "wire"]);
    assert!(ok, "{err}");
    until(20, "the model server stops", async || {
        reqwest::get(format!("http://127.0.0.1:{served}/v2/health/live"))
            .await
            .is_err()
            .then_some(())
    })
    .await;
}

/// `edge model backends` in both forms, and the node attributes the model
/// driver makes of it: a job with `backend = "onnxruntime"` waits, naming
/// the constraint, on a node whose agent has no library, and its node says
/// which backends it has. (The node with a library runs such a job in
/// `dev_serves_the_model_example...`.)
#[tokio::test]
async fn onnxruntime_jobs_go_only_to_nodes_with_the_library() {
    let missing = "/nonexistent/libonnxruntime.so";
    let backends = |lib: &str| -> Vec<Value> {
        let (ok, out, err) = cli(
            "",
            &["model", "backends", "-o", "json", "--onnxruntime-lib", lib],
        );
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let b = backends(missing);
    assert_eq!(
        (b[0]["name"].as_str(), b[0]["available"].as_bool()),
        (Some("tract"), Some(true))
    );
    assert_eq!(
        (b[1]["name"].as_str(), b[1]["available"].as_bool()),
        (Some("onnxruntime"), Some(false))
    );
    assert!(b[1]["error"].as_str().unwrap().contains(missing), "{b:?}");
    let (ok, out, err) = cli("", &["model", "backends", "--onnxruntime-lib", missing]);
    assert!(ok, "{err}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["BACKEND", "AVAILABLE", "VERSION", "FROM"],
        "{out}"
    );
    assert_eq!(rows[1][..3], ["tract", "yes", "-"], "{out}");
    assert_eq!(rows[2][..2], ["onnxruntime", "no"], "{out}");
    let library = std::env::var("EDGE_ONNXRUNTIME_LIB")
        .ok()
        .filter(|v| !v.is_empty());
    match &library {
        Some(lib) => {
            let b = backends(lib);
            assert_eq!(b[1]["available"], true, "{b:?}");
            let version = b[1]["version"].as_str().unwrap();
            assert!(
                version.split('.').count() == 3
                    && version.split('.').all(|p| p.parse::<u32>().is_ok()),
                "{version}"
            );
        }
        None => {
            assert!(
                std::env::var_os("EDGE_TEST_ROOT").is_none(),
                "EDGE_ONNXRUNTIME_LIB is required under EDGE_TEST_ROOT (deploy/test.sh sets it)"
            );
            println!(
                "skipped: `edge model backends` and a library installed later (set EDGE_ONNXRUNTIME_LIB)"
            );
        }
    }

    // The agent is told of a library that is not there yet. Model tasks run
    // as `nobody` under a root agent: the directory must be open to it.
    let dir = tempfile::tempdir().unwrap();
    let lib_dir = dir.path().join("lib");
    std::fs::create_dir(&lib_dir).unwrap();
    for d in [dir.path(), lib_dir.as_path()] {
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let later = lib_dir.join("libonnxruntime.so");
    let (_dev, addr, api) = common::dev_env(
        dir.path(),
        free_port(),
        &[],
        &[("EDGE_ONNXRUNTIME_LIB", later.to_str().unwrap())],
    )
    .await;
    let nodes = api.nodes().await.unwrap();
    let node = api.node(&nodes[0].id).await.unwrap();
    let attr = |k: &str| node.attributes.get(k).map(String::as_str);
    assert_eq!(attr("driver.model"), Some("1"), "{:?}", node.attributes);
    assert_eq!(attr("driver.model.backends"), Some("tract"));
    assert_eq!(attr("driver.model.formats"), Some("onnx"));
    assert_eq!(attr("driver.model.onnxruntime.version"), None);
    let job = onnxruntime_job(dir.path());
    let (_, out, err) = cli(&addr, &["job", "run", job.to_str().unwrap()]);
    let reason = "constraint ${attr.driver.model.backends} set_contains onnxruntime";
    assert!(out.contains(reason) || err.contains(reason), "{out}\n{err}");
    let evals = api.job_evals("ort").await.unwrap();
    assert!(
        evals.iter().any(|e| e
            .failed_tg_allocs
            .get("iris")
            .is_some_and(|m| m.constraint_filtered.contains_key(reason))),
        "{evals:?}"
    );
    let (allocs, _) = api
        .job_allocs("ort", QueryOptions::default())
        .await
        .unwrap();
    assert!(allocs.is_empty(), "{allocs:?}");

    // The library arrives: the agent's next fingerprint (every 30 s) sees
    // it, the node offers onnxruntime, and the waiting job is placed.
    let Some(lib) = library else {
        return;
    };
    use std::os::unix::fs::PermissionsExt;
    if nix::unistd::geteuid().is_root() {
        // Model tasks run as `nobody` here: a library only root can read
        // is not offered (the agent probes as the task's user). It appears
        // at once with its mode, so no probe sees it readable.
        let part = lib_dir.join("part");
        std::fs::copy(&lib, &part).unwrap();
        std::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::rename(&part, &later).unwrap();
        until(70, "a probe refused the unreadable library", async || {
            let log = std::fs::read_to_string(dir.path().join("dev.log")).ok()?;
            log.lines()
                .any(|l| {
                    l.contains("model backend not available on this node")
                        && l.contains("Permission denied")
                })
                .then_some(())
        })
        .await;
        let node = api.node(&nodes[0].id).await.unwrap();
        assert_eq!(
            node.attributes
                .get("driver.model.backends")
                .map(String::as_str),
            Some("tract")
        );
        std::fs::set_permissions(&later, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&later)
            .unwrap()
            .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(1))
            .unwrap();
    } else {
        std::fs::copy(&lib, &later).unwrap();
    }
    let node = until(70, "the node offering onnxruntime", async || {
        let node = api.node(&nodes[0].id).await.ok()?;
        let backends = node.attributes.get("driver.model.backends")?;
        (backends == "tract,onnxruntime").then_some(node)
    })
    .await;
    assert!(
        node.attributes
            .contains_key("driver.model.onnxruntime.version")
    );
    until(30, "the job placed", async || {
        let (allocs, _) = api.job_allocs("ort", QueryOptions::default()).await.ok()?;
        (!allocs.is_empty()).then_some(())
    })
    .await;
    let port = alloc_port(&api, "ort", "http").await;
    let url = format!("http://127.0.0.1:{port}");
    iris_answers(&url).await;
    stop_model_job(&addr, "ort", &url).await;
}

#[test]
fn serve_exits_non_zero_with_the_reason_when_the_model_cannot_load() {
    for (file, why) in [
        (
            "tests/model/fixtures/broken/not-onnx.onnx",
            "is not an ONNX model",
        ),
        ("tests/model/fixtures/broken/missing.onnx", "not found"),
    ] {
        let out = Command::new(EDGE)
            .args([
                "model", "serve", "--model", file, "--name", "m", "--port", "1",
            ])
            .current_dir(repo())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: model failed to load: "), "{err}");
        assert!(err.contains(why), "{err}");
    }
    let out = Command::new(EDGE)
        .args([
            "model",
            "serve",
            "--model",
            "examples/models/iris.onnx",
            "--port",
            "1",
            "--backend",
            "onnxruntime",
            "--onnxruntime-lib",
            "/nonexistent/libonnxruntime.so",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the onnxruntime backend is not available")
            && err.contains("/nonexistent/libonnxruntime.so"),
        "{err}"
    );
}

#[test]
fn init_template_model_writes_a_job_that_validates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.hcl");
    let p = path.to_str().unwrap();
    let (ok, _, err) = cli(
        "http://127.0.0.1:1",
        &["job", "init", "--template", "model", p],
    );
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("model \"iris\""), "{text}");
    let (ok, out, err) = cli("http://127.0.0.1:1", &["job", "validate", p]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("1 group(s), 1 task(s)"), "{out}");
}
