//! `edge alloc ...`: list, inspect, and read logs of allocations.

use crate::cli::{AllocCommand, Global, Output};
use crate::output::{emit, short, time};
use edge_api::QueryOptions;
use futures_util::StreamExt;
use std::io::Write;

pub async fn run(g: &Global, c: AllocCommand) -> anyhow::Result<u8> {
    let api = super::client(g)?;
    match c {
        AllocCommand::Ls { job, node } => {
            let (mut allocs, _) = api.allocs(QueryOptions::default()).await?;
            allocs.retain(|a| job.as_ref().is_none_or(|j| &a.job_id == j));
            allocs.retain(|a| {
                node.as_ref()
                    .is_none_or(|n| a.node_id.starts_with(n.as_str()) || &a.node_name == n)
            });
            emit(g.output, &allocs, || super::job::alloc_table(&allocs))?;
            Ok(0)
        }
        AllocCommand::Status { id } => {
            let a = api.alloc(&id).await?;
            if g.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&a)?);
                return Ok(0);
            }
            println!("ID                  = {}", a.id);
            println!("Name                = {}", a.name);
            println!(
                "Node                = {} ({})",
                a.node_name,
                short(&a.node_id)
            );
            println!(
                "Job                 = {} (version {})",
                a.job_id, a.job_version
            );
            println!("Desired Status      = {}", a.desired_status.as_str());
            if !a.desired_description.is_empty() {
                println!("Desired Description = {}", a.desired_description);
            }
            println!("Client Status       = {}", a.client_status.as_str());
            println!("Client Description  = {}", a.client_description);
            println!("Created             = {}", time(a.create_time));
            println!("Modified            = {}", time(a.modify_time));
            if let Some(p) = &a.previous_alloc {
                println!("Replaces            = {}", short(p));
            }
            if let Some(n) = &a.next_alloc {
                println!("Replaced By         = {}", short(n));
            }
            if !a.resources.ports.is_empty() {
                let ports: Vec<String> = a
                    .resources
                    .ports
                    .iter()
                    .map(|p| format!("{}={}", p.label, p.value))
                    .collect();
                println!("Ports               = {}", ports.join(", "));
            }
            for (name, st) in &a.task_states {
                println!(
                    "\nTask {name:?} is {}{} (restarts: {}{})",
                    st.state.as_str(),
                    if st.failed { ", failed" } else { "" },
                    st.restarts,
                    st.pid.map(|p| format!(", pid {p}")).unwrap_or_default()
                );
                let mut t = crate::output::table(&["Time", "Type", "Description"]);
                for ev in st.events.iter().rev() {
                    t.add_row(vec![time(ev.time), ev.kind.clone(), ev.message.clone()]);
                }
                println!("{t}");
            }
            Ok(0)
        }
        AllocCommand::Logs {
            id,
            task,
            follow,
            stderr,
            tail,
        } => {
            let mut q: Vec<(&str, String)> = vec![
                ("type", if stderr { "stderr" } else { "stdout" }.to_string()),
                ("follow", follow.to_string()),
            ];
            if let Some(t) = task {
                q.push(("task", t));
            }
            if let Some(t) = tail {
                q.push(("tail", t.to_string()));
            }
            let resp = api
                .stream(&format!("/v1/client/allocation/{id}/logs"), &q)
                .await?;
            let mut body = resp.bytes_stream();
            let mut out = std::io::stdout();
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                out.write_all(&chunk)?;
                out.flush()?;
            }
            Ok(0)
        }
    }
}
