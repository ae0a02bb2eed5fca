//! `edge model serve`: ONNX models over the Open Inference Protocol, the
//! process the `model` driver runs for each model task; `edge model
//! backends`: which engines can run them here.

use crate::cli::{Global, ModelBackend, ModelCommand, ServeArgs};
use crate::output;
use anyhow::Context;
use std::net::SocketAddr;

pub async fn run(g: &Global, c: ModelCommand) -> anyhow::Result<u8> {
    match c {
        ModelCommand::Serve(a) => serve(a).await,
        ModelCommand::Backends { onnxruntime_lib } => {
            let statuses = edge_model::backends(onnxruntime_lib.as_deref());
            output::emit(g.output, &statuses, || {
                let mut t = output::table(&["BACKEND", "AVAILABLE", "VERSION", "FROM"]);
                for s in &statuses {
                    t.add_row(vec![
                        s.name.clone(),
                        if s.available { "yes" } else { "no" }.to_string(),
                        s.version.clone().unwrap_or_else(|| "-".to_string()),
                        s.source
                            .clone()
                            .or_else(|| s.error.clone())
                            .unwrap_or_default(),
                    ]);
                }
                t
            })?;
            Ok(0)
        }
    }
}

async fn serve(a: ServeArgs) -> anyhow::Result<u8> {
    if a.name.is_some() && a.model.len() != 1 {
        anyhow::bail!("--name names a lone --model PATH; with several, write --model NAME=PATH");
    }
    let models = a
        .model
        .iter()
        .map(|m| edge_model::ModelSource::parse_arg(m, a.name.as_deref()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--model {e}"))?;
    if let (Some(name), [m]) = (&a.name, models.as_slice())
        && m.name != *name
    {
        anyhow::bail!(
            "--name {name:?} and --model {:?} name two different models",
            a.model[0]
        );
    }
    let cfg = edge_model::ServeConfig {
        models,
        repository: a.repository,
        addr: SocketAddr::new(a.host, a.port),
        max_batch_size: a.max_batch_size,
        max_delay: a.max_delay,
        workers: a.workers,
        grpc_addr: a.grpc_port.map(|p| SocketAddr::new(a.host, p)),
        backend: match a.backend {
            ModelBackend::Tract => {
                if a.onnxruntime_lib.is_some() {
                    anyhow::bail!("--onnxruntime-lib is for --backend onnxruntime");
                }
                edge_model::Backend::Tract
            }
            ModelBackend::Onnxruntime => edge_model::Backend::OnnxRuntime {
                library: a.onnxruntime_lib,
            },
        },
    };
    edge_model::keep_freed_memory();
    // Failing to load or bind ends the process with `error: ...` on stderr
    // (printed by main), which the model driver puts into the task's events.
    let server = edge_model::bind(cfg)
        .await
        .context("model failed to load")?;
    let grpc = server
        .grpc_addr()
        .map(|a| format!(" and gRPC on {a}"))
        .unwrap_or_default();
    let repo = server.repository();
    for e in repo.index(true) {
        let Some(v) = e.version.as_deref() else {
            continue;
        };
        let Ok(served) = repo.get(&e.name, Some(v)) else {
            continue;
        };
        let m = &served.model;
        eprintln!(
            "serving model {:?} version {v} on http://{}{grpc} with {} (inputs: {}; batching: {})",
            m.name,
            server.local_addr(),
            m.backend(),
            m.inputs
                .iter()
                .map(|i| format!("{} {} {:?}", i.name, i.datatype.as_str(), i.shape))
                .collect::<Vec<_>>()
                .join(", "),
            match served.max_batch_size {
                1 => "off".to_string(),
                n => format!("up to {n} rows"),
            },
        );
    }
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
