//! What the model server's integration tests share: the fixtures, a served
//! model on loopback, and iris's reference case.

#![allow(dead_code)]

use edge_model::ServeConfig;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/model/fixtures")
        .join(name)
}

/// A server of `cfg` on its own task: the REST address, the gRPC one if
/// asked for, and the sender whose drop (or send) stops it.
pub async fn serve(
    cfg: ServeConfig,
) -> (
    SocketAddr,
    Option<SocketAddr>,
    tokio::sync::oneshot::Sender<()>,
) {
    let server = edge_model::bind(cfg).await.expect("model loads");
    let (http, grpc) = (server.local_addr(), server.grpc_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    (http, grpc, tx)
}

/// The iris case's input rows, flat, and the whole case.
pub fn iris_rows() -> (Vec<f32>, Value) {
    let text = std::fs::read_to_string(fixture("iris.json")).unwrap();
    let case: Value = serde_json::from_str(&text).unwrap();
    let x = case["inputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    (x, case)
}
