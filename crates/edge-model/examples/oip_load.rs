//! A closed-loop load generator for `benches/model.sh`: N clients, each with
//! one keep-alive connection, send the same request for a fixed time and
//! record every latency. The same client measures every server.
//!
//! usage: oip_load HOST:PORT PATH BODY_FILE CONCURRENCY SECONDS [JSON_LENGTH]
//!        oip_load grpc HOST:PORT MODEL JSON_BODY_FILE CONCURRENCY SECONDS
//! HTTP: POSTs BODY_FILE (with `Inference-Header-Content-Length:
//! JSON_LENGTH` when given: a binary tensor extension body) from threads.
//! gRPC: ModelInfer with the JSON body's inputs as raw_input_contents, one
//! HTTP/2 connection per client.
//! Prints one JSON line: concurrency, requests, errors, rps, p50_ms, p99_ms.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    request: Vec<u8>,
}

impl Conn {
    fn open(addr: &str, request: &[u8]) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            request: request.to_vec(),
        })
    }

    /// One request and its whole response; true when the status was 200.
    fn call(&mut self) -> std::io::Result<bool> {
        self.writer.write_all(&self.request)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let ok = line.split(' ').nth(1) == Some("200");
        let mut length = 0usize;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body)?;
        Ok(ok)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("grpc") && args.len() == 7 {
        return grpc::main(&args[2..]);
    }
    if !(6..=7).contains(&args.len()) {
        eprintln!(
            "usage: oip_load HOST:PORT PATH BODY_FILE CONCURRENCY SECONDS [JSON_LENGTH]\n       oip_load grpc HOST:PORT MODEL JSON_BODY_FILE CONCURRENCY SECONDS"
        );
        std::process::exit(2);
    }
    let (addr, path) = (args[1].clone(), &args[2]);
    let body = std::fs::read(&args[3]).unwrap_or_else(|e| {
        eprintln!("reading {}: {e}", args[3]);
        std::process::exit(2)
    });
    let conc: usize = args[4].parse().unwrap_or(1);
    let secs: f64 = args[5].parse().unwrap_or(5.0);
    let framing = args
        .get(6)
        .map(|n| format!("Inference-Header-Content-Length: {n}\r\n"))
        .unwrap_or_default();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{framing}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);

    let mut warm = Conn::open(&addr, &request).unwrap_or_else(|e| {
        eprintln!("connecting to {addr}: {e}");
        std::process::exit(1)
    });
    for _ in 0..200 {
        if !matches!(warm.call(), Ok(true)) {
            eprintln!("warm-up request to {addr}{path} failed");
            std::process::exit(1);
        }
    }
    drop(warm);

    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..conc)
        .map(|_| {
            let (addr, request) = (addr.clone(), request.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let Ok(mut c) = Conn::open(&addr, &request) else {
                    return (lat, 1);
                };
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match c.call() {
                        Ok(true) => lat.push(t.elapsed()),
                        Ok(false) => errors += 1,
                        Err(_) => {
                            errors += 1;
                            match Conn::open(&addr, &request) {
                                Ok(n) => c = n,
                                Err(_) => break,
                            }
                        }
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in threads {
        if let Ok((lat, e)) = t.join() {
            all.extend(lat);
            errors += e;
        }
    }
    report(conc, all, errors, start.elapsed().as_secs_f64());
}

fn report(conc: usize, mut all: Vec<Duration>, errors: u64, elapsed: f64) {
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "{{\"concurrency\": {conc}, \"requests\": {}, \"errors\": {errors}, \"rps\": {:.1}, \"p50_ms\": {:.4}, \"p99_ms\": {:.4}}}",
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.5),
        pct(0.99)
    );
}

mod grpc {
    use super::{Duration, Instant, report};
    use edge_model::grpc::proto::ModelInferRequest;
    use edge_model::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
    use edge_model::grpc::proto::model_infer_request::InferInputTensor;
    use serde_json::Value;

    /// The JSON request's inputs as raw contents.
    fn request(model: &str, body: &Value) -> ModelInferRequest {
        let mut req = ModelInferRequest {
            model_name: model.to_string(),
            ..Default::default()
        };
        for i in body["inputs"].as_array().into_iter().flatten() {
            let dt = i["datatype"].as_str().unwrap_or_default();
            let mut raw = Vec::new();
            for v in i["data"].as_array().into_iter().flatten() {
                match dt {
                    "FP32" => raw.extend((v.as_f64().unwrap_or(0.0) as f32).to_le_bytes()),
                    "FP64" => raw.extend(v.as_f64().unwrap_or(0.0).to_le_bytes()),
                    "INT32" => raw.extend((v.as_i64().unwrap_or(0) as i32).to_le_bytes()),
                    "INT64" => raw.extend(v.as_i64().unwrap_or(0).to_le_bytes()),
                    other => {
                        eprintln!("datatype {other} is not supported by the load generator");
                        std::process::exit(2);
                    }
                }
            }
            req.inputs.push(InferInputTensor {
                name: i["name"].as_str().unwrap_or_default().to_string(),
                datatype: dt.to_string(),
                shape: i["shape"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_i64)
                    .collect(),
                ..Default::default()
            });
            req.raw_input_contents.push(raw.into());
        }
        req
    }

    pub fn main(args: &[String]) {
        let (addr, model) = (&args[0], &args[1]);
        let body: Value = std::fs::read(&args[2])
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| {
                eprintln!("reading the JSON request {}", args[2]);
                std::process::exit(2)
            });
        let conc: usize = args[3].parse().unwrap_or(1);
        let secs: f64 = args[4].parse().unwrap_or(5.0);
        let req = request(model, &body);
        let url = format!("http://{addr}");
        let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| {
            eprintln!("starting tokio: {e}");
            std::process::exit(1)
        });
        rt.block_on(async move {
            let connect = || async {
                GrpcInferenceServiceClient::connect(url.clone())
                    .await
                    .unwrap_or_else(|e| {
                        eprintln!("connecting to {url}: {e}");
                        std::process::exit(1)
                    })
            };
            let mut warm = connect().await;
            for _ in 0..200 {
                if warm.model_infer(req.clone()).await.is_err() {
                    eprintln!("warm-up request to {addr} failed");
                    std::process::exit(1);
                }
            }
            let start = Instant::now();
            let deadline = start + Duration::from_secs_f64(secs);
            let mut tasks = Vec::new();
            for _ in 0..conc {
                let (mut c, req) = (connect().await, req.clone());
                tasks.push(tokio::spawn(async move {
                    let (mut lat, mut errors) = (Vec::new(), 0u64);
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        match c.model_infer(req.clone()).await {
                            Ok(_) => lat.push(t.elapsed()),
                            Err(_) => errors += 1,
                        }
                    }
                    (lat, errors)
                }));
            }
            let (mut all, mut errors) = (Vec::new(), 0);
            for t in tasks {
                if let Ok((lat, e)) = t.await {
                    all.extend(lat);
                    errors += e;
                }
            }
            report(conc, all, errors, start.elapsed().as_secs_f64());
        });
    }
}
