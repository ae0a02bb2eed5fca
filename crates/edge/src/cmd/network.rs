//! `edge network ...`: the jobs' named networks, joined from the jobs
//! (which declare them and whose groups join them), their allocations
//! (which carry the address each node gave them on each network) and the
//! cluster's assignments (subnet, VXLAN id, each node's slice).

use crate::cli::{Global, NetworkCommand};
use crate::output::{emit, short, table};
use edge_api::QueryOptions;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

#[derive(Debug, Serialize)]
struct NetworkView {
    namespace: String,
    job: String,
    name: String,
    /// The network's subnet across the cluster, once a member was placed.
    subnet: Option<edge_spec::Subnet>,
    /// Its VXLAN id.
    vni: Option<u32>,
    /// Each node's slice, by node name.
    slices: BTreeMap<String, edge_spec::Subnet>,
    /// The groups that join it.
    groups: Vec<String>,
    /// Its running allocations.
    allocations: Vec<Member>,
}

#[derive(Debug, Serialize)]
struct Member {
    id: String,
    group: String,
    node: String,
    address: Ipv4Addr,
    /// The node's slice of the network.
    slice: Option<edge_spec::Subnet>,
}

async fn networks(g: &Global) -> anyhow::Result<Vec<NetworkView>> {
    let api = super::client(g)?;
    let (jobs, _) = api.jobs(QueryOptions::default()).await?;
    let assigned: BTreeMap<String, edge_spec::OverlayNetwork> = api
        .networks()
        .await?
        .into_iter()
        .map(|n| (n.key(), n))
        .collect();
    let names: BTreeMap<String, String> = api
        .nodes()
        .await?
        .into_iter()
        .map(|n| (n.id, n.name))
        .collect();
    let mut out = Vec::new();
    for stub in jobs {
        // With `-namespace '*'` each job is read in its own namespace.
        let api = api.clone().with_namespace(Some(stub.namespace.clone()));
        let job = api.job(&stub.id).await?;
        if job.networks.is_empty() {
            continue;
        }
        let (allocs, _) = api.job_allocs(&job.id, QueryOptions::default()).await?;
        for n in &job.networks {
            let overlay = assigned.get(&edge_spec::NamedNetwork::key(
                &job.namespace,
                &job.id,
                &n.name,
            ));
            let slices: BTreeMap<String, edge_spec::Subnet> = overlay
                .map(|o| {
                    o.nodes
                        .keys()
                        .filter_map(|id| {
                            let name = names
                                .get(id)
                                .cloned()
                                .unwrap_or_else(|| short(id).to_string());
                            Some((name, o.slice(id)?))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let groups = job
                .groups
                .iter()
                .filter(|grp| grp.network.networks.contains(&n.name))
                .map(|grp| grp.name.clone())
                .collect();
            let allocations = allocs
                .iter()
                .filter(|a| a.client_status == edge_spec::ClientStatus::Running)
                .filter_map(|a| {
                    let ip = *a.networks.get(&n.name)?;
                    Some(Member {
                        id: a.id.clone(),
                        group: a.group.clone(),
                        node: a.node_name.clone(),
                        address: ip,
                        slice: slices.get(&a.node_name).copied(),
                    })
                })
                .collect();
            out.push(NetworkView {
                namespace: job.namespace.clone(),
                job: job.id.clone(),
                name: n.name.clone(),
                subnet: overlay.map(|o| o.subnet),
                vni: overlay.map(|o| o.vni),
                slices,
                groups,
                allocations,
            });
        }
    }
    Ok(out)
}

pub async fn run(g: &Global, c: NetworkCommand) -> anyhow::Result<u8> {
    match c {
        NetworkCommand::Ls => {
            let list = networks(g).await?;
            emit(g.output, &list, || {
                let mut t = table(&[
                    "Job",
                    "Network",
                    "Subnet",
                    "VNI",
                    "Groups",
                    "Allocations",
                    "Node slices",
                ]);
                for n in &list {
                    let slices: Vec<String> = n
                        .slices
                        .iter()
                        .map(|(node, s)| format!("{node}={s}"))
                        .collect();
                    t.add_row(vec![
                        edge_spec::job_key(&n.namespace, &n.job),
                        n.name.clone(),
                        n.subnet.map_or("-".to_string(), |s| s.to_string()),
                        n.vni.map_or("-".to_string(), |v| v.to_string()),
                        n.groups.join(","),
                        n.allocations.len().to_string(),
                        if slices.is_empty() {
                            "-".to_string()
                        } else {
                            slices.join(", ")
                        },
                    ]);
                }
                t
            })?;
            Ok(0)
        }
        NetworkCommand::Status { job, network } => {
            let Some(n) = networks(g)
                .await?
                .into_iter()
                .find(|n| n.job == job && n.name == network)
            else {
                anyhow::bail!(
                    "job {job:?} declares no network {network:?} (see `edge network ls`)"
                );
            };
            emit(g.output, &n, || {
                let mut t = table(&["Alloc", "Group", "Node", "Address", "Node slice"]);
                for m in &n.allocations {
                    t.add_row(vec![
                        short(&m.id).to_string(),
                        m.group.clone(),
                        m.node.clone(),
                        m.address.to_string(),
                        m.slice.map_or("-".to_string(), |s| s.to_string()),
                    ]);
                }
                t
            })?;
            Ok(0)
        }
    }
}
