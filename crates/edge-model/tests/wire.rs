//! The wire formats over real HTTP on loopback: the binary tensor extension
//! (framing both ways and its errors), NaN and ±Inf in JSON and in binary,
//! numbers out of range for their type, and BYTES tensors as JSON strings
//! and length-prefixed binary.

mod common;

use common::{fixture, iris_rows};
use edge_model::ServeConfig;
use serde_json::{Value, json};
use std::time::Duration;

struct Running {
    base: String,
    _stop: tokio::sync::oneshot::Sender<()>,
    http: reqwest::Client,
}

async fn start(model: &str, name: &str) -> Running {
    let mut cfg = ServeConfig::new(fixture(model), name, "127.0.0.1:0".parse().unwrap());
    cfg.max_delay = Duration::from_millis(1);
    let (addr, _, tx) = common::serve(cfg).await;
    Running {
        base: format!("http://{addr}"),
        _stop: tx,
        http: reqwest::Client::new(),
    }
}

/// An answer split at its `Inference-Header-Content-Length`.
struct Answer {
    status: u16,
    content_type: String,
    json: Value,
    binary: Vec<u8>,
}

impl Answer {
    fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or_default()
    }

    /// The binary bytes of each output, in order.
    fn binary_outputs(&self) -> Vec<Vec<u8>> {
        let mut rest = self.binary.as_slice();
        let mut out = Vec::new();
        for o in self.json["outputs"].as_array().unwrap() {
            let n = o["parameters"]["binary_data_size"].as_u64().unwrap() as usize;
            out.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        assert!(rest.is_empty(), "bytes left after the outputs");
        out
    }
}

impl Running {
    async fn send(&self, path: &str, body: Vec<u8>, header_length: Option<String>) -> Answer {
        let mut req = self.http.post(format!("{}{path}", self.base)).body(body);
        if let Some(n) = header_length {
            req = req.header("Inference-Header-Content-Length", n);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let split = r
            .headers()
            .get("inference-header-content-length")
            .map(|v| v.to_str().unwrap().parse::<usize>().unwrap());
        let bytes = r.bytes().await.unwrap().to_vec();
        let n = split.unwrap_or(bytes.len());
        Answer {
            status,
            content_type,
            json: serde_json::from_slice(&bytes[..n]).unwrap_or(Value::Null),
            binary: bytes[n..].to_vec(),
        }
    }

    /// A request with a JSON header and these binary parts after it.
    async fn binary(&self, path: &str, header: &Value, parts: &[&[u8]]) -> Answer {
        let mut body = header.to_string().into_bytes();
        let n = body.len();
        for p in parts {
            body.extend_from_slice(p);
        }
        self.send(path, body, Some(n.to_string())).await
    }

    async fn json(&self, path: &str, body: &str) -> Answer {
        self.send(path, body.as_bytes().to_vec(), None).await
    }
}

fn f32s(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn from_f32s(raw: &[u8]) -> Vec<f32> {
    raw.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn length_prefixed(items: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in items {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out
}

#[tokio::test]
async fn binary_inputs_and_outputs_match_the_json_answer() {
    let s = start("iris.onnx", "iris").await;
    let (x, case) = iris_rows();
    let rows = x.len() / 4;
    let header = json!({
        "id": "b1",
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [rows, 4],
                    "parameters": {"binary_data_size": x.len() * 4}}],
        "parameters": {"binary_data_output": true}
    });
    let a = s
        .binary("/v2/models/iris/infer", &header, &[&f32s(&x)])
        .await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.content_type, "application/octet-stream");
    assert_eq!(a.json["id"], "b1");
    assert!(a.json["outputs"][0].get("data").is_none(), "{}", a.json);
    let outs = a.binary_outputs();
    let labels: Vec<i64> = outs[0]
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let want: Vec<i64> = case["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(labels, want);
    let probs = from_f32s(&outs[1]);
    for (g, w) in probs
        .iter()
        .zip(case["outputs"][1]["data"].as_array().unwrap())
    {
        let w = w.as_f64().unwrap() as f32;
        assert!((g - w).abs() <= 1e-5 + 1e-4 * w.abs(), "{g} vs {w}");
    }

    // Per output: probabilities in binary, label as JSON; a binary input
    // and a JSON answer.
    let header = json!({
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [rows, 4],
                    "parameters": {"binary_data_size": x.len() * 4}}],
        "outputs": [{"name": "label", "parameters": {"binary_data": false}},
                    {"name": "probabilities", "parameters": {"binary_data": true}}]
    });
    let a = s
        .binary("/v2/models/iris/infer", &header, &[&f32s(&x)])
        .await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["outputs"][0]["data"], case["outputs"][0]["data"]);
    let size = a.json["outputs"][1]["parameters"]["binary_data_size"].as_u64();
    assert_eq!(size, Some((rows * 3 * 4) as u64));
    assert_eq!(a.binary.len(), rows * 3 * 4);
    let header = json!({
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [rows, 4],
                    "parameters": {"binary_data_size": x.len() * 4}}]
    });
    let a = s
        .binary("/v2/models/iris/infer", &header, &[&f32s(&x)])
        .await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.content_type, "application/json");
    assert!(a.binary.is_empty());
    assert_eq!(a.json["outputs"][0]["data"], case["outputs"][0]["data"]);

    let (_, meta) = {
        let r = reqwest::get(format!("{}/v2", s.base)).await.unwrap();
        ((), r.json::<Value>().await.unwrap())
    };
    assert!(
        meta["extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("binary_tensor_data")),
        "{meta}"
    );
}

#[tokio::test]
async fn bad_framing_is_a_400_that_says_what_is_wrong() {
    let s = start("iris.onnx", "iris").await;
    let path = "/v2/models/iris/infer";
    let row = f32s(&[5.1, 3.5, 1.4, 0.2]);
    let input = |size: Value| {
        json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4],
                           "parameters": {"binary_data_size": size}}]})
    };
    let header = input(json!(16)).to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&row);

    let a = s.send(path, body.clone(), Some("100000".into())).await;
    assert_eq!(a.status, 400);
    assert!(
        a.error()
            .contains("Inference-Header-Content-Length is 100000 but the body has only"),
        "{}",
        a.error()
    );
    let a = s.send(path, body.clone(), Some("twelve".into())).await;
    assert!(a.error().contains("is not a byte count"), "{}", a.error());
    let a = s.send(path, body.clone(), None).await;
    assert_eq!(a.status, 400);
    assert!(
        a.error().contains("16 bytes follow the JSON request")
            && a.error().contains("Inference-Header-Content-Length"),
        "{}",
        a.error()
    );
    assert!(!a.error().contains("trailing characters"), "{}", a.error());
    let a = s
        .send(path, body.clone(), Some((header.len() + 4).to_string()))
        .await;
    assert!(
        a.error()
            .contains("the JSON request ends 4 bytes before that"),
        "{}",
        a.error()
    );

    let cases: [(Value, Vec<&[u8]>, &str); 6] = [
        (
            input(json!(32)),
            vec![&row],
            "input \"X\": binary_data_size is 32 but only 16 bytes of binary data are left",
        ),
        (
            input(json!(16)),
            vec![&row, &row],
            "the binary part is 32 bytes but the inputs' binary_data_size add up to 16",
        ),
        (
            input(json!(12)),
            vec![&row[..12]],
            "input \"X\": shape [1, 4] of FP32 needs 16 bytes, the binary data has 12",
        ),
        (
            input(json!(-4)),
            vec![&row],
            "input \"X\": parameters.binary_data_size must be a whole number of bytes, got -4",
        ),
        (
            json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4],
                               "data": [1, 2, 3, 4], "parameters": {"binary_data_size": 16}}]}),
            vec![&row],
            "input \"X\" has both `data` and parameters.binary_data_size",
        ),
        (
            json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4],
                               "parameters": {"binary_data_size": 16}}],
                   "outputs": [{"name": "label", "parameters": {"binary_data": "yes"}}]}),
            vec![&row],
            "output \"label\": parameters.binary_data must be true or false",
        ),
    ];
    for (header, parts, needle) in &cases {
        let a = s.binary(path, header, parts).await;
        assert_eq!(a.status, 400, "{header}");
        assert!(a.error().contains(needle), "{header}: {:?}", a.error());
    }
    let a = s.json(path, &input(json!(16)).to_string()).await;
    assert!(
        a.error().contains("the request has no binary part"),
        "{}",
        a.error()
    );
    let a = s.binary(path, &input(json!(16)), &[&row]).await;
    assert_eq!(a.status, 200, "the server still answers: {}", a.json);
}

#[tokio::test]
async fn nan_and_infinities_round_trip_in_json_and_binary() {
    let s = start("echo.onnx", "echo").await;
    let path = "/v2/models/echo/infer";
    let body = |f32: &str| {
        format!(
            r#"{{"inputs": [
                {{"name": "f32", "datatype": "FP32", "shape": [6], "data": {f32}}},
                {{"name": "i64", "datatype": "INT64", "shape": [6], "data": [1, -2, 3, 4, 5, 9007199254740993]}},
                {{"name": "text", "datatype": "BYTES", "shape": [6], "data": ["a", "b", "c", "d", "e", "f"]}}
            ], "outputs": [{{"name": "f32_out"}}, {{"name": "i64_out"}}]}}"#
        )
    };
    let want = json!(["NaN", "Infinity", "-Infinity", "Infinity", 1.5, "-Infinity"]);
    for data in [
        r#"["NaN", "Infinity", "-Infinity", "inf", 1.5, "-inf"]"#,
        r#"["nan", "+Inf", "-INFINITY", "Inf", 1.5, "-Inf"]"#,
        // Python's json and rapidjson (tritonclient) write them bare.
        r#"[NaN, Infinity, -Infinity, Inf, 1.5, -Inf]"#,
    ] {
        let a = s.json(path, &body(data)).await;
        assert_eq!(a.status, 200, "{data}: {}", a.json);
        assert_eq!(a.json["outputs"][0]["data"], want, "{data}");
        assert_eq!(
            a.json["outputs"][1]["data"],
            json!([1, -2, 3, 4, 5, 9007199254740993i64])
        );
    }
    let a = s
        .json(path, &body(r#"["NaN", "Infinity", "nope", 1, 2, 3]"#))
        .await;
    assert_eq!(a.status, 400);
    assert!(
        a.error()
            .contains("input \"f32\": element 2 (\"nope\") is not a valid FP32"),
        "{}",
        a.error()
    );
    // A bare token inside a string stays a string.
    let a = s
        .json(
            path,
            r#"{"inputs": [
                {"name": "f32", "datatype": "FP32", "shape": [1], "data": [NaN]},
                {"name": "i64", "datatype": "INT64", "shape": [1], "data": [0]},
                {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["NaN, Infinity \" -Inf"]}
            ]}"#,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["outputs"][0]["data"], json!(["NaN"]));
    assert_eq!(
        a.json["outputs"][2]["data"],
        json!(["NaN, Infinity \" -Inf"])
    );

    let values = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, f32::MAX];
    let header = json!({
        "inputs": [
            {"name": "f32", "datatype": "FP32", "shape": [5], "parameters": {"binary_data_size": 20}},
            {"name": "i64", "datatype": "INT64", "shape": [5], "parameters": {"binary_data_size": 40}},
            {"name": "text", "datatype": "BYTES", "shape": [5], "data": ["", "", "", "", ""]}
        ],
        "outputs": [{"name": "f32_out", "parameters": {"binary_data": true}}]
    });
    let ints: Vec<u8> = [i64::MIN, -1, 0, 1, i64::MAX]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let a = s.binary(path, &header, &[&f32s(&values), &ints]).await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.binary_outputs()[0], f32s(&values), "the bits come back");
}

#[tokio::test]
async fn numbers_out_of_range_for_their_type_are_refused() {
    let s = start("iris.onnx", "iris").await;
    let a = s
        .json(
            "/v2/models/iris/infer",
            r#"{"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [1, 1e39, 3, 4]}]}"#,
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(
        a.error()
            .contains("input \"X\": element 1 (1e+39) is out of range for FP32"),
        "{}",
        a.error()
    );
    // The largest finite FP32, written in full, still is one.
    let a = s
        .json(
            "/v2/models/iris/infer",
            r#"{"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [1, 3.4028235e38, 3, 4]}]}"#,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.json);

    let s = start("typed/add_fp16.onnx", "h").await;
    let a = s
        .json(
            "/v2/models/h/infer",
            r#"{"inputs": [{"name": "x", "datatype": "FP16", "shape": [1, 3], "data": [1, 65504, 70000]}]}"#,
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(
        a.error()
            .contains("input \"x\": element 2 (70000) is out of range for FP16"),
        "{}",
        a.error()
    );
    let a = s
        .json(
            "/v2/models/h/infer",
            r#"{"inputs": [{"name": "x", "datatype": "FP16", "shape": [1, 3], "data": [1, "-Infinity", "NaN"]}]}"#,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(
        a.json["outputs"][0]["data"],
        json!([2.0, "-Infinity", "NaN"])
    );
}

#[tokio::test]
async fn bytes_tensors_are_strings_in_json_and_length_prefixed_in_binary() {
    let s = start("echo.onnx", "echo").await;
    let path = "/v2/models/echo/infer";
    let texts = ["héllo", "", "a \"quoted\" word", "日本"];
    let a = s
        .json(
            path,
            &json!({"inputs": [
                {"name": "f32", "datatype": "FP32", "shape": [4], "data": [0, 0, 0, 0]},
                {"name": "i64", "datatype": "INT64", "shape": [4], "data": [0, 0, 0, 0]},
                {"name": "text", "datatype": "BYTES", "shape": [4], "data": texts}
            ], "outputs": [{"name": "text_out"}]})
            .to_string(),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(
        a.json["outputs"][0],
        json!({"name": "text_out", "datatype": "BYTES", "shape": [4], "data": texts})
    );

    let raw = length_prefixed(&texts);
    let header = json!({
        "inputs": [
            {"name": "f32", "datatype": "FP32", "shape": [4], "data": [0, 0, 0, 0]},
            {"name": "i64", "datatype": "INT64", "shape": [4], "data": [0, 0, 0, 0]},
            {"name": "text", "datatype": "BYTES", "shape": [4], "parameters": {"binary_data_size": raw.len()}}
        ],
        "outputs": [{"name": "text_out", "parameters": {"binary_data": true}}]
    });
    let a = s.binary(path, &header, &[&raw]).await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.binary_outputs()[0], raw);

    let a = s
        .json(
            path,
            &json!({"inputs": [
                {"name": "f32", "datatype": "FP32", "shape": [1], "data": [0]},
                {"name": "i64", "datatype": "INT64", "shape": [1], "data": [0]},
                {"name": "text", "datatype": "BYTES", "shape": [1], "data": [7]}
            ]})
            .to_string(),
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(
        a.error()
            .contains("input \"text\": element 0 (7) is not a string"),
        "{}",
        a.error()
    );
    let a = s.binary(path, &header, &[&raw[..raw.len() - 1]]).await;
    assert_eq!(a.status, 400);
    let needle = format!(
        "binary_data_size is {} but only {} bytes",
        raw.len(),
        raw.len() - 1
    );
    assert!(a.error().contains(&needle), "{}", a.error());
}
