//! A closed-loop gRPC load generator for `benches/model.sh`: N workers, each
//! on its own HTTP/2 connection, send the same `ModelInfer` (inputs as
//! `raw_input_contents`) for a fixed time and record every latency. The
//! same client measures every server.
//!
//! usage: grpc_load HOST:PORT MODEL BODY_FILE JSON_LENGTH CONCURRENCY SECONDS
//! BODY_FILE is a binary-extension REST body (a JSON header of JSON_LENGTH
//! bytes, then the inputs' bytes), so REST and gRPC send the same tensors.
//! Prints one JSON line: concurrency, requests, errors, rps, p50_ms, p99_ms.

#[path = "load/report.rs"]
mod report;

use edge_model::grpc::proto::ModelInferRequest;
use edge_model::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use edge_model::grpc::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use serde_json::Value;
use std::time::{Duration, Instant};

fn fail(message: String) -> ! {
    eprintln!("{message}");
    std::process::exit(2)
}

/// The `ModelInfer` request a binary-extension body stands for.
fn request(model: &str, body: &[u8], json_len: usize) -> ModelInferRequest {
    let (head, mut raw) = body.split_at(json_len.min(body.len()));
    let head: Value =
        serde_json::from_slice(head).unwrap_or_else(|e| fail(format!("the JSON header: {e}")));
    let mut req = ModelInferRequest {
        model_name: model.to_string(),
        ..Default::default()
    };
    for i in head["inputs"].as_array().into_iter().flatten() {
        let size = i["parameters"]["binary_data_size"].as_u64().unwrap_or(0) as usize;
        let (data, rest) = raw.split_at(size.min(raw.len()));
        raw = rest;
        req.inputs.push(InferInputTensor {
            name: i["name"].as_str().unwrap_or_default().to_string(),
            datatype: i["datatype"].as_str().unwrap_or_default().to_string(),
            shape: i["shape"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_i64)
                .collect(),
            ..Default::default()
        });
        req.raw_input_contents.push(data.to_vec().into());
    }
    for o in head["outputs"].as_array().into_iter().flatten() {
        req.outputs.push(InferRequestedOutputTensor {
            name: o["name"].as_str().unwrap_or_default().to_string(),
            ..Default::default()
        });
    }
    req
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 7 {
        fail("usage: grpc_load HOST:PORT MODEL BODY_FILE JSON_LENGTH CONCURRENCY SECONDS".into());
    }
    let url = format!("http://{}", args[1]);
    let body =
        std::fs::read(&args[3]).unwrap_or_else(|e| fail(format!("reading {}: {e}", args[3])));
    let json_len: usize = args[4].parse().unwrap_or(0);
    let conc: usize = args[5].parse().unwrap_or(1);
    let secs: f64 = args[6].parse().unwrap_or(5.0);
    let req = request(&args[2], &body, json_len);

    let mut warm = GrpcInferenceServiceClient::connect(url.clone())
        .await
        .unwrap_or_else(|e| fail(format!("connecting to {url}: {e}")));
    for _ in 0..200 {
        if let Err(e) = warm.model_infer(req.clone()).await {
            fail(format!("warm-up request to {url} failed: {e}"));
        }
    }
    drop(warm);

    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let workers: Vec<_> = (0..conc)
        .map(|_| {
            let (url, req) = (url.clone(), req.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let Ok(mut c) = GrpcInferenceServiceClient::connect(url).await else {
                    return (lat, 1);
                };
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match c.model_infer(req.clone()).await {
                        Ok(_) => lat.push(t.elapsed()),
                        Err(_) => errors += 1,
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        if let Ok((lat, e)) = w.await {
            all.extend(lat);
            errors += e;
        }
    }
    report::print(conc, all, errors, start.elapsed().as_secs_f64());
}
