//! The named networks' cluster assignments: `/v1/networks` lists them
//! (subnet, VXLAN id, each node's slice), and each agent fetches the ones
//! it runs members of, with the nodes it must reach them on, from
//! `/v1/agent/networks/{node}`.

use crate::Server;
use crate::acl::Access;
use crate::auth::{self, Caller};
use crate::error::ServerError;
use crate::extract::{ApiPath, ApiQuery, Blocking, block, json_at};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use edge_api::{AgentNetwork, AgentNetworks};
use edge_spec::acl::Capability;
use edge_spec::{NodeStatus, OverlayNetwork};
use edge_store::State as St;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

type S = State<Arc<Server>>;
type Res = Result<Response, ServerError>;

pub(crate) async fn list(State(sv): S, access: Access, ApiQuery(q): ApiQuery<Blocking>) -> Res {
    block(&sv, &q).await;
    let idx = sv.store.index();
    let list: Vec<OverlayNetwork> = sv.store.read(|s| {
        s.networks
            .values()
            .filter(|n| access.sees(&n.namespace, Capability::ReadJob))
            .cloned()
            .collect()
    });
    Ok(json_at(idx, &list))
}

/// Node `id`'s networks: only for that node's own agent.
pub(crate) async fn agent(
    State(sv): S,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Res {
    auth::node(&sv, &caller, &headers, &id)?;
    let idx = sv.store.index();
    let out = sv.store.read(|s| for_node(s, &id));
    Ok(json_at(idx, &out))
}

/// The networks with a live member on `node`, each with the underlay
/// addresses of the other nodes (up, with an IPv4 address) that run one.
pub(crate) fn for_node(s: &St, node: &str) -> AgentNetworks {
    let mut networks = Vec::new();
    for net in s.networks.values() {
        let Some(slice) = net.slice(node) else {
            continue;
        };
        let job_key = edge_spec::job_key(&net.namespace, &net.job_id);
        let Some(job) = s.jobs.get(&job_key) else {
            continue;
        };
        let members: BTreeSet<&str> = s
            .job_allocs(&job_key)
            .into_iter()
            .filter(|a| !a.is_terminal())
            .filter(|a| {
                job.group(&a.group)
                    .is_some_and(|g| g.network.networks.contains(&net.name))
            })
            .map(|a| a.node_id.as_str())
            .collect();
        if !members.contains(node) {
            continue;
        }
        let peers: Vec<Ipv4Addr> = members
            .iter()
            .filter(|n| **n != node)
            .filter_map(|n| s.nodes.get(*n))
            .filter(|n| n.status != NodeStatus::Down && !n.revoked)
            .filter_map(|n| n.address.parse().ok())
            .collect();
        networks.push(AgentNetwork {
            key: net.key(),
            vni: net.vni,
            subnet: net.subnet,
            slice,
            peers,
        });
    }
    AgentNetworks { networks }
}
