//! `edge volume ...`: local volumes as the server records them, and the
//! host volumes the nodes fingerprint (`volume.host.NAME` attributes).

use crate::cli::{Global, VolumeCommand};
use crate::output::{emit, short, table, time};
use edge_api::QueryOptions;
use serde::Serialize;

#[derive(Debug, Serialize)]
struct HostVolumeView {
    node_id: String,
    node: String,
    name: String,
    read_only: bool,
}

#[derive(Debug, Serialize)]
struct Listing {
    local: Vec<edge_spec::Volume>,
    host: Vec<HostVolumeView>,
}

pub async fn run(g: &Global, c: VolumeCommand) -> anyhow::Result<u8> {
    let api = super::client(g)?;
    match c {
        VolumeCommand::Ls => {
            let local = api.volumes().await?;
            // Host volumes are node attributes, which only the full node
            // carries; a token without node read sees local volumes only.
            let stubs = api.nodes().await.unwrap_or_default();
            let mut nodes = Vec::new();
            for s in &stubs {
                if let Ok(n) = api.node(&s.id).await {
                    nodes.push(n);
                }
            }
            let mut host = Vec::new();
            for n in &nodes {
                for (k, v) in &n.attributes {
                    if let Some(name) = k.strip_prefix("volume.host.") {
                        host.push(HostVolumeView {
                            node_id: n.id.clone(),
                            node: n.name.clone(),
                            name: name.to_string(),
                            read_only: v == "ro",
                        });
                    }
                }
            }
            let list = Listing { local, host };
            emit(g.output, &list, || {
                let mut t = table(&["ID", "Type", "Name", "Node", "Access", "Created"]);
                let node_name = |id: &str| {
                    stubs
                        .iter()
                        .find(|n| n.id == id)
                        .map_or_else(|| format!("{} (gone)", short(id)), |n| n.name.clone())
                };
                for v in &list.local {
                    t.add_row(vec![
                        short(&v.id).to_string(),
                        "local".to_string(),
                        edge_spec::job_key(&v.namespace, &v.display_name()),
                        node_name(&v.node_id),
                        "rw".to_string(),
                        time(v.create_time),
                    ]);
                }
                for h in &list.host {
                    t.add_row(vec![
                        "-".to_string(),
                        "host".to_string(),
                        h.name.clone(),
                        h.node.clone(),
                        if h.read_only { "ro" } else { "rw" }.to_string(),
                        "-".to_string(),
                    ]);
                }
                t
            })?;
            Ok(0)
        }
        VolumeCommand::Status { id } => {
            let v = api.volume(&id).await?;
            let api = api.with_namespace(Some(v.namespace.clone()));
            let (allocs, _) = api.job_allocs(&v.job_id, QueryOptions::default()).await?;
            let user = allocs.iter().find(|a| {
                a.group == v.group
                    && a.name.ends_with(&format!("[{}]", v.index))
                    && a.desired_status == edge_spec::DesiredStatus::Run
                    && !a.client_status.is_terminal()
            });
            emit(g.output, &v, || {
                let mut t = table(&["Field", "Value"]);
                for (k, val) in [
                    ("ID", v.id.clone()),
                    ("Name", v.display_name()),
                    ("Namespace", v.namespace.clone()),
                    ("Node", v.node_id.clone()),
                    ("Created", time(v.create_time)),
                    (
                        "In use by",
                        user.map_or_else(|| "-".to_string(), |a| short(&a.id).to_string()),
                    ),
                ] {
                    t.add_row(vec![k.to_string(), val]);
                }
                t
            })?;
            Ok(0)
        }
        VolumeCommand::Rm { id } => {
            let r = api.volume_delete(&id).await?;
            let what = if r.removed_dir {
                "its data was removed from node"
            } else {
                "no data was left on node"
            };
            println!("volume {} removed; {what} {}", r.name, short(&r.node_id));
            Ok(0)
        }
    }
}
