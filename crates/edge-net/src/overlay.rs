//! The cross-node half of a named network: a VXLAN device (`vx<vni>`) in
//! the network's bridge, with one all-zero forwarding entry per peer node
//! so broadcasts (ARP) reach every node that runs a member (head-end
//! replication, as flannel's and Swarm's overlays do), and the kernel's
//! learning for the rest. iproute2's `ip` and `bridge` do the netlink
//! work; nothing here is hand-rolled netlink.

use crate::command::{run, run_now};
use crate::error::NetError;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// The IANA VXLAN port.
pub(crate) const VXLAN_PORT: &str = "4789";
/// What VXLAN over IPv4 adds to each frame.
pub(crate) const VXLAN_OVERHEAD: u32 = 50;
/// The all-zero MAC: the forwarding entry for broadcast and unknown
/// destinations.
const FLOOD: &str = "00:00:00:00:00:00";

/// Asked of netlink, not `/sys/class/net`: an agent that joined a network
/// namespace without mounting a sysfs of its own (the lab's) sees the
/// host's devices there.
async fn exists(link: &str) -> bool {
    run("ip", &["link", "show", "dev", link]).await.is_ok()
}

/// The device name of a network's VXLAN id (at most 10 bytes).
pub(crate) fn vxlan_name(vni: u32) -> String {
    format!("vx{vni}")
}

/// The MTU left inside the overlay on the device that holds `underlay`
/// (once, when the agent starts).
pub(crate) fn mtu_for(underlay: Ipv4Addr) -> Result<u32, NetError> {
    let addr = underlay.to_string();
    let out = run_now("ip", &["-o", "addr", "show", "to", &addr])?;
    let dev = out
        .split_whitespace()
        .nth(1)
        .map(|d| d.split('@').next().unwrap_or(d).to_string())
        .ok_or_else(|| NetError::Command {
            command: format!("ip -o addr show to {addr}"),
            message: "no interface of this node holds the address (the agent's --advertise)"
                .to_string(),
        })?;
    let out = run_now("ip", &["-o", "link", "show", "dev", &dev])?;
    let mtu = link_mtu(&out).ok_or_else(|| NetError::Command {
        command: format!("ip -o link show dev {dev}"),
        message: "no MTU in its answer".to_string(),
    })?;
    Ok(mtu.saturating_sub(VXLAN_OVERHEAD).max(576))
}

/// The `mtu N` of `ip -o link show` output.
fn link_mtu(text: &str) -> Option<u32> {
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "mtu" {
            return words.next()?.parse().ok();
        }
    }
    None
}

/// Makes the bridge (when the bridge plugin has not yet) and, with an
/// underlay address, the VXLAN device in it and the peers' flood entries;
/// peers no longer listed lose theirs, and what the kernel learned of
/// them. Safe to repeat.
pub(crate) async fn ensure(
    bridge: &str,
    vni: u32,
    mtu: Option<u32>,
    underlay: Option<Ipv4Addr>,
    peers: &[Ipv4Addr],
) -> Result<(), NetError> {
    if !exists(bridge).await {
        run("ip", &["link", "add", "name", bridge, "type", "bridge"]).await?;
    }
    let mtu_text = mtu.map(|m| m.to_string());
    if let Some(m) = &mtu_text {
        run("ip", &["link", "set", "dev", bridge, "mtu", m]).await?;
    }
    run("ip", &["link", "set", "dev", bridge, "up"]).await?;
    let Some(local) = underlay else {
        return Ok(());
    };
    let vx = vxlan_name(vni);
    if !exists(&vx).await {
        let id = vni.to_string();
        let local = local.to_string();
        run(
            "ip",
            &[
                "link", "add", &vx, "type", "vxlan", "id", &id, "local", &local, "dstport",
                VXLAN_PORT,
            ],
        )
        .await?;
    }
    if let Some(m) = &mtu_text {
        run("ip", &["link", "set", "dev", &vx, "mtu", m]).await?;
    }
    run("ip", &["link", "set", "dev", &vx, "master", bridge, "up"]).await?;
    let want: BTreeSet<Ipv4Addr> = peers.iter().copied().filter(|p| *p != local).collect();
    let fdb = run("bridge", &["fdb", "show", "dev", &vx]).await?;
    let have = entries(&fdb);
    for (mac, dst) in &have {
        if !want.contains(dst) {
            let dst = dst.to_string();
            run(
                "bridge",
                &["fdb", "del", mac, "dev", &vx, "dst", &dst, "self"],
            )
            .await?;
        }
    }
    for peer in &want {
        if !have.iter().any(|(mac, dst)| mac == FLOOD && dst == peer) {
            let dst = peer.to_string();
            run("bridge", &["fdb", "append", FLOOD, "dev", &vx, "dst", &dst]).await?;
        }
    }
    Ok(())
}

/// Removes the network's VXLAN device and bridge, once no allocation here
/// is on it; true when there was a bridge. Missing pieces are no error.
pub(crate) async fn remove(
    bridge: &str,
    vni: u32,
    devices: &tokio::sync::Mutex<()>,
) -> Result<bool, NetError> {
    let _one = devices.lock().await;
    let vx = vxlan_name(vni);
    if exists(&vx).await {
        run("ip", &["link", "delete", &vx]).await?;
    }
    let had = exists(bridge).await;
    if had {
        run("ip", &["link", "delete", bridge]).await?;
    }
    Ok(had)
}

/// The entries of `bridge fdb show dev VX` that send to a remote node:
/// `(mac, dst)`.
pub(crate) fn entries(text: &str) -> Vec<(String, Ipv4Addr)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let mac = words.next()?.to_string();
            let mut dst = None;
            while let Some(w) = words.next() {
                if w == "dst" {
                    dst = words.next()?.parse().ok();
                }
            }
            Some((mac, dst?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_remote_entries_of_a_vxlan_device() {
        let text = "\
00:00:00:00:00:00 dst 10.77.0.12 self permanent
00:00:00:00:00:00 dst 10.77.0.13 self permanent
5a:1c:00:11:22:33 dst 10.77.0.12 self
5a:1c:00:11:22:33 master edge0-0
";
        assert_eq!(
            entries(text),
            vec![
                (FLOOD.to_string(), Ipv4Addr::new(10, 77, 0, 12)),
                (FLOOD.to_string(), Ipv4Addr::new(10, 77, 0, 13)),
                (
                    "5a:1c:00:11:22:33".to_string(),
                    Ipv4Addr::new(10, 77, 0, 12)
                ),
            ]
        );
        assert!(entries("").is_empty());
        assert!(entries("garbage dst not-an-ip\n").is_empty());
    }

    #[test]
    fn reads_a_links_mtu() {
        let text = "2: eth0@if9: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP";
        assert_eq!(link_mtu(text), Some(1500));
        assert_eq!(link_mtu("mtu"), None);
        assert_eq!(link_mtu(""), None);
    }

    #[test]
    fn vxlan_names_fit_an_interface_name() {
        assert_eq!(vxlan_name(edge_spec::network::MAX_VNI), "vx16777215");
        assert!(vxlan_name(edge_spec::network::MAX_VNI).len() <= 15);
    }
}
