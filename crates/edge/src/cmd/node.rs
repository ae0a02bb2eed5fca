//! `edge node ...` and `edge eval ...`.

use crate::cli::{EvalCommand, Global, NodeCommand, Output};
use crate::output::{ago, emit, short, table, time};

pub async fn run(g: &Global, c: NodeCommand) -> anyhow::Result<u8> {
    let api = super::client(g)?;
    match c {
        NodeCommand::Ls => {
            let nodes = api.nodes().await?;
            emit(g.output, &nodes, || {
                let mut t = table(&[
                    "ID",
                    "Name",
                    "DC",
                    "Address",
                    "Status",
                    "Eligible",
                    "Drain",
                    "Drivers",
                    "Running",
                    "Heartbeat",
                ]);
                for n in &nodes {
                    t.add_row(vec![
                        short(&n.id).to_string(),
                        n.name.clone(),
                        n.datacenter.clone(),
                        n.address.clone(),
                        n.status.as_str().to_string(),
                        if n.eligible { "eligible" } else { "ineligible" }.to_string(),
                        n.drain.to_string(),
                        n.drivers.join(","),
                        n.allocs_running.to_string(),
                        ago(n.last_heartbeat),
                    ]);
                }
                t
            })?;
            Ok(0)
        }
        NodeCommand::Status { id } => {
            let n = api.node(&id).await?;
            if g.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&n)?);
                return Ok(0);
            }
            println!("ID          = {}", n.id);
            println!("Name        = {}", n.name);
            println!("Datacenter  = {}", n.datacenter);
            println!("Address     = {}", n.address);
            println!(
                "Status      = {} {}",
                n.status.as_str(),
                n.status_description
            );
            println!("Eligible    = {}", n.eligible);
            println!("Drain       = {}", n.drain);
            println!(
                "Resources   = cpu {} MHz ({} cores), memory {} MB",
                n.resources.cpu, n.resources.cores, n.resources.memory
            );
            println!("Heartbeat   = {}", time(n.last_heartbeat));
            println!("\nDrivers");
            let mut t = table(&["Driver", "Detected", "Healthy", "Description"]);
            for (k, d) in &n.drivers {
                t.add_row(vec![
                    k.clone(),
                    d.detected.to_string(),
                    d.healthy.to_string(),
                    d.description.clone(),
                ]);
            }
            println!("{t}");
            println!("\nAttributes");
            for (k, v) in &n.attributes {
                println!("  {k} = {v}");
            }
            if !n.meta.is_empty() {
                println!("\nMeta");
                for (k, v) in &n.meta {
                    println!("  {k} = {v}");
                }
            }
            let (allocs, _) = api
                .get::<Vec<edge_api::AllocListStub>>(
                    &format!("/v1/allocations?node={}", n.id),
                    Default::default(),
                )
                .await?;
            println!("\nAllocations");
            println!("{}", super::job::alloc_table(&allocs));
            Ok(0)
        }
        NodeCommand::Drain { id, disable } => {
            api.drain_node(&id, !disable).await?;
            if disable {
                println!("Node {id:?} drain disabled; it is eligible again");
            } else {
                println!("Node {id:?} draining: its allocations move to other nodes");
            }
            Ok(0)
        }
        NodeCommand::Gc { id } => {
            let node = api.node(&id).await?;
            let r = api.node_gc(&node.id).await?;
            emit(g.output, &r, || {
                let mut t = table(&["Driver", "ID", "Allocation", "What", "Error"]);
                for l in &r.removed {
                    t.add_row(vec![
                        l.driver.clone(),
                        l.id.clone(),
                        l.alloc_id.as_deref().map(short).unwrap_or("-").to_string(),
                        l.description.clone(),
                        l.error.clone().unwrap_or_default(),
                    ]);
                }
                t
            })?;
            if g.output != Output::Json && r.removed.is_empty() {
                println!("Node {} has nothing left over", node.name);
            }
            Ok(u8::from(r.removed.iter().any(|l| l.error.is_some())))
        }
        NodeCommand::Revoke { id } => {
            let r = api.revoke_node(&id).await?;
            emit(g.output, &r, || {
                let mut t = table(&["Node", "Index"]);
                t.add_row(vec![r.node_id.clone(), r.index.to_string()]);
                t
            })?;
            if g.output != Output::Json {
                println!("Node {} revoked: it is refused from now on", r.node_id);
            }
            Ok(0)
        }
        NodeCommand::Eligibility {
            id,
            enable,
            disable,
        } => {
            if enable == disable {
                anyhow::bail!("pass exactly one of --enable or --disable");
            }
            api.node_eligibility(&id, enable).await?;
            println!(
                "Node {id:?} is now {}",
                if enable { "eligible" } else { "ineligible" }
            );
            Ok(0)
        }
    }
}

pub async fn eval(g: &Global, c: EvalCommand) -> anyhow::Result<u8> {
    let api = super::client(g)?;
    match c {
        EvalCommand::Ls => {
            let evals = api.evals().await?;
            emit(g.output, &evals, || {
                let mut t = table(&[
                    "ID",
                    "Priority",
                    "Triggered By",
                    "Job",
                    "Status",
                    "Placement Failures",
                    "Created",
                ]);
                for e in &evals {
                    t.add_row(vec![
                        short(&e.id).to_string(),
                        e.priority.to_string(),
                        e.triggered_by.as_str().to_string(),
                        e.job_id.clone(),
                        e.status.as_str().to_string(),
                        (!e.failed_tg_allocs.is_empty()).to_string(),
                        ago(e.create_time),
                    ]);
                }
                t
            })?;
            Ok(0)
        }
        EvalCommand::Status { id } => {
            let (e, _) = api.eval(&id, Default::default()).await?;
            if g.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&e)?);
                return Ok(0);
            }
            println!("ID           = {}", e.id);
            println!("Job          = {}", e.job_id);
            println!("Triggered By = {}", e.triggered_by.as_str());
            println!("Status       = {}", e.status.as_str());
            println!("Description  = {}", e.status_description);
            println!("Created      = {}", time(e.create_time));
            for (group, m) in &e.failed_tg_allocs {
                println!(
                    "\nTask Group {group:?} failed to place {} allocation(s):",
                    m.coalesced_failures + 1
                );
                println!(
                    "  Nodes evaluated: {}, filtered: {}, exhausted: {}",
                    m.nodes_evaluated, m.nodes_filtered, m.nodes_exhausted
                );
                for (r, n) in &m.constraint_filtered {
                    println!("  * {r}: {n} nodes excluded");
                }
                for (d, n) in &m.dimension_exhausted {
                    println!("  * {d} exhausted on {n} nodes");
                }
            }
            Ok(0)
        }
    }
}

pub async fn operator(g: &Global, c: crate::cli::OperatorCommand) -> anyhow::Result<u8> {
    use crate::cli::{OperatorCommand, TokenCommand};
    let api = super::client(g)?;
    match c {
        OperatorCommand::Keyring(crate::cli::KeyringCommand::Rotate) => {
            let r = api.keyring_rotate().await?;
            if g.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "keyring rotated: key {} is active, {} secrets sealed again, {} old keys dropped",
                    r.key_id, r.resealed, r.retired_keys
                );
            }
            Ok(0)
        }
        OperatorCommand::Token(TokenCommand::Rotate) => {
            let r = api.rotate_token().await?;
            if g.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("{}", r.token);
            }
            Ok(0)
        }
    }
}
