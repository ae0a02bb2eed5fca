//! `edge network ...`: the jobs' named networks, joined from the jobs
//! (which declare them and whose groups join them) and their allocations
//! (which carry the address each node gave them on each network).

use crate::cli::{Global, NetworkCommand};
use crate::output::{emit, short, table};
use edge_api::QueryOptions;
use serde::Serialize;
use std::net::Ipv4Addr;

#[derive(Debug, Serialize)]
struct NetworkView {
    namespace: String,
    job: String,
    name: String,
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
    /// The network's subnet on that node (a /24 of the node's pool).
    subnet: String,
}

fn subnet(ip: Ipv4Addr) -> String {
    let [a, b, c, _] = ip.octets();
    format!("{a}.{b}.{c}.0/24")
}

async fn networks(g: &Global) -> anyhow::Result<Vec<NetworkView>> {
    let api = super::client(g)?;
    let (jobs, _) = api.jobs(QueryOptions::default()).await?;
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
                        subnet: subnet(ip),
                    })
                })
                .collect();
            out.push(NetworkView {
                namespace: job.namespace.clone(),
                job: job.id.clone(),
                name: n.name.clone(),
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
                let mut t = table(&["Job", "Network", "Groups", "Allocations", "Subnets"]);
                for n in &list {
                    let mut subnets: Vec<String> = n
                        .allocations
                        .iter()
                        .map(|m| format!("{}={}", m.node, m.subnet))
                        .collect();
                    subnets.sort();
                    subnets.dedup();
                    t.add_row(vec![
                        edge_spec::job_key(&n.namespace, &n.job),
                        n.name.clone(),
                        n.groups.join(","),
                        n.allocations.len().to_string(),
                        if subnets.is_empty() {
                            "-".to_string()
                        } else {
                            subnets.join(", ")
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
                let mut t = table(&["Alloc", "Group", "Node", "Address", "Subnet"]);
                for m in &n.allocations {
                    t.add_row(vec![
                        short(&m.id).to_string(),
                        m.group.clone(),
                        m.node.clone(),
                        m.address.to_string(),
                        m.subnet.clone(),
                    ]);
                }
                t
            })?;
            Ok(0)
        }
    }
}
