//! The model server over real HTTP on loopback: answers for real ONNX models
//! (scikit-learn iris, an MLP, ONNX backend test cases) must match the
//! reference outputs stored beside them (onnxruntime's or the ONNX test
//! suite's); every route of the protocol, with or without a trailing slash;
//! bad requests answered with 400/404/405 and a JSON error body while the
//! server keeps serving; load failures, including a model tract cannot run
//! (caught by the dry run) or would answer wrongly.

mod common;

use edge_model::{Backend, ModelError, ServeConfig};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/model/fixtures")
}

struct Running {
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    http: reqwest::Client,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

async fn start(model: &Path, name: &str, max_delay: Duration) -> Running {
    let mut cfg = ServeConfig::new(model.to_path_buf(), name, "127.0.0.1:0".parse().unwrap());
    cfg.max_delay = max_delay;
    start_with(cfg).await
}

async fn start_with(cfg: ServeConfig) -> Running {
    let (addr, _, tx) = common::serve(cfg).await;
    Running {
        base: format!("http://{addr}"),
        stop: Some(tx),
        http: reqwest::Client::new(),
    }
}

impl Running {
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post_raw(&self, path: &str, body: String) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, body.to_string()).await
    }
}

fn load_case(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Compares each expected output with the answer's output of the same name.
fn assert_matches(case: &str, expected: &Value, answer: &Value, rtol: f64, atol: f64) {
    let outputs = answer["outputs"].as_array().expect("outputs");
    for want in expected.as_array().unwrap() {
        let name = want["name"].as_str().unwrap();
        let got = outputs
            .iter()
            .find(|o| o["name"] == name)
            .unwrap_or_else(|| panic!("{case}: no output {name} in {answer}"));
        assert_eq!(got["datatype"], want["datatype"], "{case}: {name} datatype");
        assert_eq!(got["shape"], want["shape"], "{case}: {name} shape");
        let (g, w) = (
            got["data"].as_array().unwrap(),
            want["data"].as_array().unwrap(),
        );
        assert_eq!(g.len(), w.len(), "{case}: {name} length");
        for (i, (g, w)) in g.iter().zip(w).enumerate() {
            match (g.as_f64(), w.as_f64()) {
                (Some(g), Some(w)) => assert!(
                    (g - w).abs() <= atol + rtol * w.abs(),
                    "{case}: {name}[{i}] = {g}, expected {w}"
                ),
                _ => assert_eq!(g, w, "{case}: {name}[{i}]"),
            }
        }
    }
}

fn request(case: &Value) -> Value {
    json!({ "id": "t1", "inputs": case["inputs"] })
}

async fn check_case(json_path: &Path) {
    check_case_on(json_path, &Backend::Tract).await;
}

async fn check_case_on(json_path: &Path, backend: &Backend) {
    let case = load_case(json_path);
    let model = json_path.with_file_name(case["model"].as_str().unwrap());
    let name = json_path.file_stem().unwrap().to_str().unwrap();
    let mut cfg = ServeConfig::new(model, "m", "127.0.0.1:0".parse().unwrap());
    cfg.backend = backend.clone();
    let s = start_with(cfg).await;
    let (status, answer) = s.post("/v2/models/m/infer", &request(&case)).await;
    assert_eq!(status, 200, "{name}: {answer}");
    assert_eq!(answer["model_name"], "m");
    assert_eq!(answer["id"], "t1");
    let rtol = case["rtol"].as_f64().unwrap();
    let atol = case["atol"].as_f64().unwrap();
    assert_matches(name, &case["outputs"], &answer, rtol, atol);
}

#[tokio::test]
async fn iris_and_mlp_match_onnxruntime() {
    check_case(&fixtures().join("iris.json")).await;
    check_case(&fixtures().join("mlp.json")).await;
}

#[tokio::test]
async fn onnx_backend_cases_match_their_reference_outputs() {
    let mut checked = 0;
    for dir in ["backend", "typed"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for f in files {
            check_case(&f).await;
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} cases");
}

#[tokio::test]
async fn every_route_of_the_protocol() {
    let s = start(
        &fixtures().join("iris.onnx"),
        "iris",
        Duration::from_millis(2),
    )
    .await;
    assert_eq!(s.get("/v2/health/live").await.0, 200);
    assert_eq!(s.get("/v2/health/ready").await.0, 200);
    let (status, meta) = s.get("/v2").await;
    assert_eq!(status, 200);
    assert_eq!(meta["name"], "edge");
    assert!(meta["extensions"].is_array());
    for path in ["/v2/models/iris", "/v2/models/iris/versions/1"] {
        let (status, meta) = s.get(path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            meta,
            json!({
                "name": "iris", "versions": ["1"], "platform": "onnx",
                "inputs": [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}],
                "outputs": [
                    {"name": "label", "datatype": "INT64", "shape": [-1]},
                    {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}
                ]
            })
        );
    }
    for path in ["/v2/models/iris/ready", "/v2/models/iris/versions/1/ready"] {
        let (status, body) = s.get(path).await;
        assert_eq!((status, &body["ready"]), (200, &json!(true)), "{path}");
    }
    let case = load_case(&fixtures().join("iris.json"));
    let (status, answer) = s
        .post("/v2/models/iris/versions/1/infer", &request(&case))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["model_version"], "1");
    assert_matches("iris v1", &case["outputs"], &answer, 1e-4, 1e-5);

    for path in [
        "/v2/models/nope",
        "/v2/models/nope/ready",
        "/v2/models/iris/versions/2",
        "/v2/models/iris/versions/2/ready",
        "/v2/nothing",
    ] {
        let (status, body) = s.get(path).await;
        assert_eq!(status, 404, "{path}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let (status, body) = s.post("/v2/models/nope/infer", &request(&case)).await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("nope"), "{body}");
    let (status, _) = s
        .post("/v2/models/iris/infer", &json!({"inputs": []}))
        .await;
    assert_eq!(status, 400);

    let (status, text) = {
        let r = s
            .http
            .get(format!("{}/metrics", s.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(status, 200);
    assert!(
        text.contains(
            r#"edge_model_inference_requests_total{model="iris",version="1",code="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"edge_model_inference_errors_total{model="iris",version="1",code="400"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("edge_model_inference_duration_seconds_bucket"));
    assert!(text.contains("edge_model_batch_size_count"));
    // A trailing slash is the same route; a wrong method a JSON 405 that
    // names the one the route takes.
    for path in ["/v2/", "/v2/models/iris/", "/v2/health/ready/"] {
        assert_eq!(s.get(path).await.0, 200, "{path}");
    }
    let (status, answer) = s.post("/v2/models/iris/infer/", &request(&case)).await;
    assert_eq!(status, 200, "{answer}");
    let (status, body) = s.get("/v2/models/iris/infer").await;
    assert_eq!(status, 405);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("GET is not allowed on /v2/models/iris/infer: it takes POST"),
        "{body}"
    );
    let (status, body) = s.post("/v2/health/live", &json!({})).await;
    assert_eq!(status, 405);
    assert!(
        body["error"].as_str().unwrap().contains("it takes GET"),
        "{body}"
    );
}

/// Several models and versions in one server: the repository extension
/// (index, unload, load), per-version routes and Triton-style configs.
#[tokio::test]
async fn a_repository_of_models_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    for (name, version, file) in [("iris", "1", "iris.onnx"), ("iris", "2", "iris.onnx")] {
        let d = dir.path().join(name).join(version);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(fixtures().join(file), d.join("model.onnx")).unwrap();
    }
    let mut cfg = ServeConfig::new(
        fixtures().join("mlp.onnx"),
        "mlp",
        "127.0.0.1:0".parse().unwrap(),
    );
    cfg.repository = Some(dir.path().to_path_buf());
    let s = start_with(cfg).await;
    let (status, index) = s.post("/v2/repository/index", &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(
        index,
        json!([
            {"name": "iris", "version": "1", "state": "READY"},
            {"name": "iris", "version": "2", "state": "READY"},
            {"name": "mlp", "version": "1", "state": "READY"},
        ])
    );
    let (_, meta) = s.get("/v2/models/iris").await;
    assert_eq!(meta["versions"], json!(["1", "2"]));
    let case = load_case(&fixtures().join("iris.json"));
    for (path, version) in [
        ("/v2/models/iris/infer", "2"),
        ("/v2/models/iris/versions/1/infer", "1"),
        ("/v2/models/iris/versions/2/infer", "2"),
    ] {
        let (status, answer) = s.post(path, &request(&case)).await;
        assert_eq!(status, 200, "{path}: {answer}");
        assert_eq!(answer["model_version"], version, "{path}");
        assert_matches(path, &case["outputs"], &answer, 1e-4, 1e-5);
    }
    let (status, config) = s.get("/v2/models/mlp/config").await;
    assert_eq!(status, 200);
    // At most the server's 32; fewer where larger batches cost more per row.
    let max = config["max_batch_size"].as_u64().unwrap();
    assert!((1..=32).contains(&max), "{config}");
    assert_eq!(config["input"][0]["dims"], json!([32]));
    assert_eq!(config["input"][0]["data_type"], "TYPE_FP32");
    assert_eq!(config["version_policy"]["specific"]["versions"], json!([1]));

    let (status, _) = s
        .post("/v2/repository/models/iris/unload", &json!({}))
        .await;
    assert_eq!(status, 200);
    let (status, body) = s.post("/v2/models/iris/infer", &request(&case)).await;
    assert_eq!(status, 404);
    assert!(
        body["error"].as_str().unwrap().contains("not loaded"),
        "{body}"
    );
    let (_, index) = s
        .post("/v2/repository/index", &json!({"ready": true}))
        .await;
    assert_eq!(
        index,
        json!([{"name": "mlp", "version": "1", "state": "READY"}])
    );
    let (_, index) = s.get("/v2/repository/index").await;
    assert_eq!(
        index[0],
        json!({"name": "iris", "state": "UNAVAILABLE", "reason": "unloaded"})
    );
    let (status, loaded) = s.post("/v2/repository/models/iris/load", &json!({})).await;
    assert_eq!((status, &loaded["versions"]), (200, &json!([1, 2])));
    assert_eq!(
        s.post("/v2/models/iris/infer", &request(&case)).await.0,
        200
    );
    let (status, body) = s.post("/v2/repository/models/ghost/load", &json!({})).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = s
        .post(
            "/v2/repository/models/iris/load",
            &json!({"parameters": {"config": "{}"}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("\"config\" is not supported"),
        "{body}"
    );
    let (status, body) = s
        .post("/v2/repository/index", &json!({"ready": "yes"}))
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn nested_data_and_selected_outputs() {
    let s = start(
        &fixtures().join("iris.onnx"),
        "iris",
        Duration::from_millis(2),
    )
    .await;
    let case = load_case(&fixtures().join("iris.json"));
    let flat = case["inputs"][0]["data"].as_array().unwrap().clone();
    let nested: Vec<Value> = flat.chunks(4).map(|c| Value::Array(c.to_vec())).collect();
    let body = json!({
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [4, 4], "data": nested}],
        "outputs": [{"name": "probabilities"}]
    });
    let (status, answer) = s.post("/v2/models/iris/infer", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outputs"].as_array().unwrap().len(), 1);
    assert!(answer.get("id").is_none());
    let want = json!([case["outputs"][1]]);
    assert_matches("nested", &want, &answer, 1e-4, 1e-5);
}

#[tokio::test]
async fn bad_requests_get_400_and_the_server_keeps_serving() {
    let s = start(
        &fixtures().join("iris.onnx"),
        "iris",
        Duration::from_millis(2),
    )
    .await;
    let input = |name: &str, datatype: &str, shape: Value, data: Value| json!({"inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": data}]});
    let row = json!([5.1, 3.5, 1.4, 0.2]);
    let cases = [
        (input("X", "FP32", json!([1, 3]), json!([1, 2, 3])), "shape"),
        (
            input("X", "FP32", json!([2, 4]), row.clone()),
            "needs 8 elements",
        ),
        (input("X", "FP32", json!([4]), row.clone()), "shape"),
        (input("X", "FP32", json!([-1, 4]), row.clone()), "shape"),
        (
            input("X", "FP64", json!([1, 4]), row.clone()),
            "does not match",
        ),
        (
            input("X", "BYTES", json!([1, 4]), row.clone()),
            "does not match the model's FP32",
        ),
        (
            input("X", "FLOAT", json!([1, 4]), row.clone()),
            "unknown datatype",
        ),
        (
            input("Y", "FP32", json!([1, 4]), row.clone()),
            "unknown input",
        ),
        (
            input("X", "FP32", json!([1, 4]), json!([1, "a", 3, 4])),
            "not a valid FP32",
        ),
        (json!({"inputs": []}), "missing input"),
        (json!({"inputs": "x"}), "invalid inference request"),
        (
            json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": row}],
                   "outputs": [{"name": "nope"}]}),
            "unknown output",
        ),
    ];
    for (body, needle) in &cases {
        let (status, answer) = s.post("/v2/models/iris/infer", body).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        let msg = answer["error"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{body}: {msg:?} lacks {needle:?}");
    }
    for raw in ["{not json", "", r#"{"inputs": ["#] {
        let (status, answer) = s.post_raw("/v2/models/iris/infer", raw.to_string()).await;
        assert_eq!(status, 400, "{raw:?}");
        assert!(
            answer["error"].as_str().unwrap().contains("malformed JSON"),
            "{answer}"
        );
    }
    let ok = input("X", "FP32", json!([1, 4]), row);
    let (status, answer) = s.post("/v2/models/iris/infer", &ok).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outputs"][0]["data"], json!([0]));

    let u8_model = start(
        &fixtures().join("backend/test_add_uint8.onnx"),
        "u8",
        Duration::ZERO,
    )
    .await;
    let (_, meta) = u8_model.get("/v2/models/u8").await;
    let shape = meta["inputs"][0]["shape"].clone();
    let n: i64 = shape
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_i64().unwrap())
        .product();
    let mut data = vec![json!(1); n as usize];
    data[1] = json!(300);
    let body = json!({"inputs": [
        {"name": "x", "datatype": "UINT8", "shape": shape, "data": data},
        {"name": "y", "datatype": "UINT8", "shape": shape, "data": data},
    ]});
    let (status, answer) = u8_model.post("/v2/models/u8/infer", &body).await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("element 1 (300) is out of range for UINT8"),
        "{answer}"
    );
}

#[tokio::test]
async fn concurrent_requests_each_get_their_own_rows() {
    let s = start(
        &fixtures().join("mlp.onnx"),
        "mlp",
        Duration::from_millis(20),
    )
    .await;
    let case = load_case(&fixtures().join("mlp.json"));
    let x = case["inputs"][0]["data"].as_array().unwrap().clone();
    let y = case["outputs"][0]["data"].as_array().unwrap().clone();
    let mut tasks = Vec::new();
    for i in 0..48 {
        let row = i % 3;
        let body = json!({"inputs": [{
            "name": "x", "datatype": "FP32", "shape": [1, 32],
            "data": x[row * 32..(row + 1) * 32]
        }]});
        let http = s.http.clone();
        let url = format!("{}/v2/models/mlp/infer", s.base);
        tasks.push(tokio::spawn(async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200);
            (row, r.json::<Value>().await.unwrap())
        }));
    }
    for t in tasks {
        let (row, answer) = t.await.unwrap();
        let want = json!([{
            "name": "probabilities", "datatype": "FP32", "shape": [1, 10],
            "data": y[row * 10..(row + 1) * 10]
        }]);
        assert_matches("mlp row", &want, &answer, 1e-4, 1e-5);
    }
}

#[tokio::test]
async fn load_failures_say_why() {
    let dir = fixtures().join("broken");
    let err = |p: PathBuf| match edge_model::Model::load(&p, "m") {
        Err(e) => e,
        Ok(_) => panic!("{} loaded", p.display()),
    };
    assert!(matches!(
        err(dir.join("missing.onnx")),
        ModelError::NotFound { .. }
    ));
    let e = err(dir.join("not-onnx.onnx"));
    assert!(matches!(e, ModelError::NotOnnx { .. }), "{e}");
    assert!(e.to_string().contains("is not an ONNX model"), "{e}");
    let e = err(dir.join("unsupported-op.onnx"));
    assert!(
        e.to_string()
            .contains("uses unsupported operator com.example.Frobnicate")
            && e.to_string().contains("the onnxruntime backend may run it"),
        "{e}"
    );
    // Loads, but tract cannot run it: the dry run says so at load.
    let e = err(dir.join("sigmoid-fp64.onnx"));
    assert!(matches!(e, ModelError::Load { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("a dry run on zeros of shape [1, 4] failed")
            && e.to_string().contains("Sigmoid does not support F64"),
        "{e}"
    );
    // Runs, but tract would answer wrongly.
    let e = err(dir.join("celu-alpha.onnx"));
    assert!(
        e.to_string().contains(
            "uses unsupported operator Celu with alpha=2: tract 0.23 leaves the alpha factor \
             out of the negative part (node \"act\")"
        ),
        "{e}"
    );
    let cfg = ServeConfig::new(
        dir.join("not-onnx.onnx"),
        "m",
        "127.0.0.1:0".parse().unwrap(),
    );
    assert!(matches!(
        edge_model::bind(cfg).await,
        Err(ModelError::NotOnnx { .. })
    ));
}

/// The benchmark's image model (1x3x224x224) over JSON: onnxruntime's answer.
#[tokio::test]
async fn the_conv_net_matches_onnxruntime() {
    let s = start(
        &fixtures().join("convnet.onnx"),
        "convnet",
        Duration::from_millis(2),
    )
    .await;
    conv_net_answers(&s, 1e-5, 1e-4).await;
}

/// The conv net served by `s` answers the pattern image as onnxruntime did
/// when tests/model/make_models.py stored its answer.
async fn conv_net_answers(s: &Running, atol: f64, rtol: f64) {
    let case = load_case(&fixtures().join("convnet.json"));
    let image: Vec<f32> = (0..3 * 224 * 224)
        .map(|i| (i % 251) as f32 / 251.0 - 0.5)
        .collect();
    let body = json!({"inputs": [{
        "name": "image", "datatype": "FP32", "shape": [1, 3, 224, 224], "data": image,
    }]});
    let (status, answer) = s.post("/v2/models/convnet/infer", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outputs"][0]["shape"], json!([1, 10]));
    let got = answer["outputs"][0]["data"].as_array().unwrap();
    let want = case["probabilities"].as_array().unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
        assert!((g - w).abs() <= atol + rtol * w.abs(), "{g} vs {w}");
    }
}

/// ONNX Runtime's library for the onnxruntime backend's tests, from
/// `$EDGE_ONNXRUNTIME_LIB`; required under `EDGE_TEST_ROOT=1` (CI), where
/// deploy/test.sh installs onnxruntime and names its library.
fn onnxruntime_library() -> Option<PathBuf> {
    match std::env::var_os(edge_model::ONNXRUNTIME_LIB_ENV).filter(|v| !v.is_empty()) {
        Some(lib) => Some(PathBuf::from(lib)),
        None => {
            assert!(
                std::env::var_os("EDGE_TEST_ROOT").is_none(),
                "EDGE_ONNXRUNTIME_LIB is required under EDGE_TEST_ROOT (deploy/test.sh sets it)"
            );
            println!("skipped: set EDGE_ONNXRUNTIME_LIB to ONNX Runtime's library");
            None
        }
    }
}

/// The onnxruntime backend: a library that is not there is refused with its
/// path and what to do; then, with the real one, the stored references of
/// iris, the MLP and the conv net come back over the same protocol, iris
/// batches (its first dimension is open) and a fixed-shape case does not.
#[tokio::test]
async fn the_onnxruntime_backend_answers_as_onnxruntime_does() {
    let Some(library) = onnxruntime_library() else {
        return;
    };
    let missing = PathBuf::from("/nonexistent/libonnxruntime.so");
    let err = edge_model::Model::load_with(
        &fixtures().join("iris.onnx"),
        "iris",
        &Backend::OnnxRuntime {
            library: Some(missing),
        },
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ModelError::BackendUnavailable(_))
            && text.contains("/nonexistent/libonnxruntime.so")
            && text.contains("--onnxruntime-lib"),
        "{text}"
    );
    let backend = Backend::OnnxRuntime {
        library: Some(library),
    };
    let iris =
        edge_model::Model::load_with(&fixtures().join("iris.onnx"), "iris", &backend).unwrap();
    assert_eq!(iris.backend(), "onnxruntime");
    assert!(iris.batchable);
    assert_eq!(iris.inputs[0].shape, [-1, 4]);
    let fixed =
        edge_model::Model::load_with(&fixtures().join("backend/test_add.onnx"), "add", &backend)
            .unwrap();
    assert!(!fixed.batchable);
    assert_eq!(fixed.inputs[0].shape, [3, 4, 5]);
    assert!(matches!(
        edge_model::Model::load_with(&fixtures().join("broken/not-onnx.onnx"), "m", &backend),
        Err(ModelError::Load { .. })
    ));

    for case in ["iris.json", "mlp.json"] {
        check_case_on(&fixtures().join(case), &backend).await;
    }
    let mut cfg = ServeConfig::new(
        fixtures().join("convnet.onnx"),
        "convnet",
        "127.0.0.1:0".parse().unwrap(),
    );
    cfg.backend = backend;
    conv_net_answers(&start_with(cfg).await, 1e-6, 1e-5).await;
}
