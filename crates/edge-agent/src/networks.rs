//! Named networks across nodes: the server's assignments for this node
//! (each network's subnet, VXLAN id, this node's slice, and the nodes
//! with members to reach it on) fetched and applied to the node's
//! bridges: before an allocation joins a network not seen here yet, and
//! every few seconds after, so peers that come and go are followed and a
//! network nothing here uses any more is removed.

use crate::runner::RunCtx;
use std::collections::BTreeSet;
use std::time::Duration;

/// How often the node's networks are brought up to the server's list.
pub(crate) const SYNC_EVERY: Duration = Duration::from_secs(3);

/// Fetches the node's networks and applies them. With `in_use` (the keys
/// of networks this node's allocations join), networks the server no
/// longer lists are removed unless in use; without, none is removed.
pub(crate) async fn sync(ctx: &RunCtx, in_use: Option<&BTreeSet<String>>) -> Result<(), String> {
    let Some(net) = &ctx.bridge else {
        return Ok(());
    };
    let _one = ctx.network_sync.lock().await;
    let list = ctx
        .api
        .agent_networks(&ctx.node_id)
        .await
        .map_err(|e| format!("cannot fetch this node's named networks from the server: {e}"))?;
    let defs: Vec<edge_net::OverlayDef> = list
        .networks
        .into_iter()
        .map(|n| edge_net::OverlayDef {
            key: n.key,
            vni: n.vni,
            subnet: n.subnet,
            slice: n.slice,
            peers: n.peers,
        })
        .collect();
    net.sync(&defs, in_use)
        .await
        .map_err(|e| format!("cannot set up this node's named networks: {e}"))
}
