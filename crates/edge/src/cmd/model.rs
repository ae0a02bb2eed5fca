//! `edge model serve`: one ONNX model over the Open Inference Protocol, the
//! process the `model` driver runs for each model task.

use crate::cli::{ModelCommand, ServeArgs};
use anyhow::Context;
use std::net::SocketAddr;

pub async fn run(c: ModelCommand) -> anyhow::Result<u8> {
    match c {
        ModelCommand::Serve(a) => serve(a).await,
    }
}

async fn serve(a: ServeArgs) -> anyhow::Result<u8> {
    let mut cfg = edge_model::ServeConfig::new(a.model, a.name, SocketAddr::new(a.host, a.port));
    cfg.max_batch_size = a.max_batch_size;
    cfg.max_delay = a.max_delay;
    cfg.workers = a.workers;
    cfg.grpc_addr = a.grpc_port.map(|p| SocketAddr::new(a.host, p));
    // Failing to load or bind ends the process with `error: ...` on stderr
    // (printed by main), which the model driver puts into the task's events.
    let server = edge_model::bind(cfg)
        .await
        .context("model failed to load")?;
    let m = server.model();
    let grpc = server
        .grpc_addr()
        .map(|a| format!(" and gRPC on {a}"))
        .unwrap_or_default();
    eprintln!(
        "serving model {:?} on http://{}{grpc} (inputs: {}; batching: {})",
        m.name,
        server.local_addr(),
        m.inputs
            .iter()
            .map(|i| format!("{} {} {:?}", i.name, i.datatype.as_str(), i.shape))
            .collect::<Vec<_>>()
            .join(", "),
        if m.batchable { "on" } else { "off" },
    );
    edge_model::release_startup_pages();
    server.run(shutdown()).await?;
    Ok(0)
}

async fn shutdown() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
