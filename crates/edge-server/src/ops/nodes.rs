//! Node rules: joining, heartbeats after a silence, being marked down,
//! drain and scheduling eligibility.

use super::{Env, evals};
use crate::ServerError;
use edge_spec::{Node, NodeStatus, TriggeredBy};
use edge_store::{Batch, State};

/// Node attribute where the agent's own HTTP address is kept.
pub(crate) const HTTP_ADDR_ATTR: &str = "edge.http_addr";

/// The id of the node named `id`, or whose id starts with it.
pub(crate) fn resolve_id(s: &State, id: &str) -> Result<String, ServerError> {
    if let Some(n) = s.nodes.values().find(|n| n.name == id) {
        return Ok(n.id.clone());
    }
    super::by_prefix("node", id, s.nodes.iter()).map(|n| n.id.clone())
}

/// An agent (re)joining. Drain and eligibility are the operator's and stay;
/// a node that was not ready gets its jobs evaluated again, so that copies
/// replaced while it was away are stopped and blocked work can land.
pub(crate) fn register(
    s: &State,
    env: &mut Env,
    mut node: Node,
    http_addr: Option<String>,
) -> Result<Batch, ServerError> {
    if node.id.is_empty() || node.id.len() > 64 {
        return Err(ServerError::BadRequest(
            "node.id must be 1 to 64 characters".to_string(),
        ));
    }
    if node.name.is_empty() {
        return Err(ServerError::BadRequest("node.name is empty".to_string()));
    }
    if let Some(a) = http_addr {
        node.attributes.insert(HTTP_ADDR_ATTR.to_string(), a);
    }
    let mut batch = Batch::default();
    let was = s.nodes.get(&node.id);
    if was.is_some_and(|n| n.revoked) {
        return Err(ServerError::Unauthorized(format!(
            "node {} is revoked",
            node.id
        )));
    }
    node.revoked = false;
    if let Some(old) = was {
        node.eligible = old.eligible;
        node.drain = old.drain;
        node.create_index = old.create_index;
    }
    node.status = NodeStatus::Ready;
    node.status_description = "registered".to_string();
    node.last_heartbeat = env.now;
    match was.filter(|n| n.status == NodeStatus::Ready) {
        None => {
            batch.evals = evals::node_ready(s, env, &node.id);
            let again = evals::for_node(s, env, &node.id, TriggeredBy::NodeUpdate);
            batch.evals.extend(again);
        }
        // A ready node that now offers something else (a driver healthy
        // again, a library installed) may fit what waits for a node.
        Some(old)
            if old.drivers != node.drivers
                || old.attributes != node.attributes
                || old.meta != node.meta
                || old.resources != node.resources =>
        {
            batch.evals = evals::node_ready(s, env, &node.id);
        }
        Some(_) => {}
    }
    batch.nodes.push(node);
    Ok(batch)
}

/// A heartbeat from a node the server holds as not ready (back from a
/// partition): ready again. Its allocations replaced meanwhile are `lost`
/// already, and the agent stops them when it reads its list.
pub(crate) fn heartbeat(s: &State, env: &mut Env, id: &str) -> Result<Batch, ServerError> {
    let Some(n) = s.nodes.get(id) else {
        return Err(ServerError::not_found("node", id));
    };
    let mut batch = Batch::default();
    if n.status == NodeStatus::Ready {
        return Ok(batch);
    }
    let mut n = n.clone();
    n.status = NodeStatus::Ready;
    n.status_description = "heartbeat resumed".to_string();
    batch.evals = evals::node_ready(s, env, id);
    batch.nodes.push(n);
    Ok(batch)
}

/// A ready node that missed its heartbeat TTL goes down, and every job with
/// allocations there is evaluated (which marks them lost and replaces them).
/// Anything else is left as it is.
pub(crate) fn mark_down(s: &State, env: &mut Env, id: &str) -> Batch {
    let mut batch = Batch::default();
    let Some(n) = s.nodes.get(id).filter(|n| n.status == NodeStatus::Ready) else {
        return batch;
    };
    let mut n = n.clone();
    n.status = NodeStatus::Down;
    n.status_description = "missed heartbeat".to_string();
    batch.evals = evals::for_node(s, env, id, TriggeredBy::NodeUpdate);
    batch.nodes.push(n);
    batch
}

/// A revoked node is down for good: refused at every request from then on,
/// ineligible, and its allocations are replaced elsewhere.
pub(crate) fn revoke(s: &State, env: &mut Env, id: &str) -> Result<(Batch, String), ServerError> {
    let nid = resolve_id(s, id)?;
    let mut n = s.nodes[&nid].clone();
    n.revoked = true;
    n.eligible = false;
    n.status = NodeStatus::Down;
    n.status_description = "revoked".to_string();
    let evals = evals::for_node(s, env, &nid, TriggeredBy::NodeUpdate);
    Ok((
        Batch {
            nodes: vec![n],
            evals,
            ..Batch::default()
        },
        nid,
    ))
}

/// Draining makes a node ineligible and moves its allocations off; ending
/// the drain makes it eligible again.
pub(crate) fn drain(
    s: &State,
    env: &mut Env,
    id: &str,
    enable: bool,
) -> Result<Batch, ServerError> {
    let nid = resolve_id(s, id)?;
    let mut n = s.nodes[&nid].clone();
    n.drain = enable;
    n.eligible = !enable;
    let evals = if enable {
        evals::for_node(s, env, &nid, TriggeredBy::NodeDrain)
    } else {
        evals::node_ready(s, env, &nid)
    };
    Ok(Batch {
        nodes: vec![n],
        evals,
        ..Batch::default()
    })
}

/// An ineligible node gets no new allocations; its running ones stay.
pub(crate) fn eligibility(
    s: &State,
    env: &mut Env,
    id: &str,
    eligible: bool,
) -> Result<Batch, ServerError> {
    let nid = resolve_id(s, id)?;
    let mut n = s.nodes[&nid].clone();
    n.eligible = eligible;
    let mut batch = Batch::default();
    if eligible {
        batch.evals = evals::node_ready(s, env, &nid);
    }
    batch.nodes.push(n);
    Ok(batch)
}
