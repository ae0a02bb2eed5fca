//! The node's named networks: each job network the server gave this node
//! a slice of gets a bridge of its own here, recorded in the agent's state
//! dir (`networks.json`) with the server's assignment, so restarts (also
//! while the server is away) keep bridge, subnet, peers and the leases
//! under them.

use crate::OverlayDef;
use crate::Subnet;
use crate::error::NetError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Named bridges are `<prefix>-<index>`: at most 4 digits after a 9-byte
/// prefix keeps the name within the kernel's 15 bytes.
const MAX_INDEX: u32 = 4096;

/// One network allocations attach to: the node's default bridge (`key`
/// empty) or a named network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NetDef {
    pub key: String,
    pub bridge: String,
    pub subnet: Subnet,
    /// The CNI network name, which host-local keeps the leases under.
    pub cni_name: String,
    /// A named network's cluster segment and this node's slice of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<OverlayDef>,
}

impl NetDef {
    /// The bridge's address: the allocations' gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        match &self.overlay {
            Some(o) => o.slice.gateway(),
            None => self.subnet.gateway(),
        }
    }

    /// The addresses host-local hands out: all of the subnet but the
    /// gateway, or on a named network this node's slice but its first
    /// (the gateway), its last and its own network address.
    pub fn range(&self) -> Option<(Ipv4Addr, Ipv4Addr)> {
        let o = self.overlay.as_ref()?;
        let first = u32::from(o.slice.network);
        let size = 1u32 << (32 - u32::from(o.slice.prefix));
        Some((Ipv4Addr::from(first + 2), Ipv4Addr::from(first + size - 2)))
    }
}

#[derive(Debug)]
pub(crate) struct Registry {
    path: PathBuf,
    /// Named bridges are `<prefix>-<index>`.
    prefix: String,
    /// The default bridge's subnet, which no named one may overlap.
    reserved: Subnet,
    defs: BTreeMap<String, NetDef>,
}

impl Registry {
    pub fn open(state_dir: &Path, bridge: &str, reserved: Subnet) -> Result<Registry, NetError> {
        let path = state_dir.join("networks.json");
        let defs = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| NetError::State {
                path: path.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(NetError::io("read", &path, e)),
        };
        Ok(Registry {
            path,
            prefix: bridge.chars().take(9).collect(),
            reserved,
            defs,
        })
    }

    pub fn get(&self, key: &str) -> Option<&NetDef> {
        self.defs.get(key)
    }

    pub fn all(&self) -> impl Iterator<Item = &NetDef> {
        self.defs.values()
    }

    /// Records the server's assignment of network `o.key`: a bridge here
    /// on first sight, the new peers (or subnet) after.
    pub fn set(&mut self, o: &OverlayDef) -> Result<NetDef, NetError> {
        if o.subnet.overlaps(&self.reserved) {
            return Err(NetError::Overlaps {
                network: o.key.clone(),
                subnet: o.subnet.to_string(),
                bridge: self.reserved.to_string(),
            });
        }
        if !o.subnet.contains(o.slice.network) || o.slice.prefix <= o.subnet.prefix {
            return Err(NetError::State {
                path: self.path.clone(),
                message: format!(
                    "network {}: slice {} is not inside {}",
                    o.key, o.slice, o.subnet
                ),
            });
        }
        if let Some(d) = self.defs.get_mut(&o.key) {
            if d.overlay.as_ref() == Some(o) {
                return Ok(d.clone());
            }
            d.subnet = o.subnet;
            d.overlay = Some(o.clone());
            let d = d.clone();
            self.save()?;
            return Ok(d);
        }
        let index = (0..MAX_INDEX)
            .find(|i| {
                let name = format!("{}-{i}", self.prefix);
                !self.defs.values().any(|d| d.bridge == name)
            })
            .ok_or(NetError::TooManyNetworks { max: MAX_INDEX })?;
        let def = NetDef {
            key: o.key.clone(),
            bridge: format!("{}-{index}", self.prefix),
            subnet: o.subnet,
            cni_name: format!("edge-{index}"),
            overlay: Some(o.clone()),
        };
        self.defs.insert(o.key.clone(), def.clone());
        self.save()?;
        Ok(def)
    }

    pub fn remove(&mut self, key: &str) -> Result<(), NetError> {
        if self.defs.remove(key).is_some() {
            self.save()?;
        }
        Ok(())
    }

    fn save(&self) -> Result<(), NetError> {
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(&self.defs).map_err(|e| NetError::State {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&tmp, bytes).map_err(|e| NetError::io("write", &tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| NetError::io("rename", &self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlay(key: &str, vni: u32, subnet: &str, slice: &str) -> OverlayDef {
        OverlayDef {
            key: key.to_string(),
            vni,
            subnet: subnet.parse().unwrap(),
            slice: slice.parse().unwrap(),
            peers: vec![Ipv4Addr::new(10, 0, 0, 2)],
        }
    }

    #[test]
    fn networks_get_bridges_of_their_own_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let reserved: Subnet = "172.26.64.0/20".parse().unwrap();
        let mut r = Registry::open(dir.path(), "edge0", reserved).unwrap();
        let front = overlay("default/web/front", 1, "172.27.0.0/20", "172.27.0.64/26");
        let a = r.set(&front).unwrap();
        let b = r
            .set(&overlay(
                "default/web/back",
                2,
                "172.27.16.0/20",
                "172.27.16.0/26",
            ))
            .unwrap();
        assert_eq!(
            (a.bridge.as_str(), b.bridge.as_str()),
            ("edge0-0", "edge0-1")
        );
        assert_eq!(a.gateway(), Ipv4Addr::new(172, 27, 0, 65));
        assert_eq!(
            a.range(),
            Some((
                Ipv4Addr::new(172, 27, 0, 66),
                Ipv4Addr::new(172, 27, 0, 126)
            ))
        );
        let mut moved = front.clone();
        moved.peers.push(Ipv4Addr::new(10, 0, 0, 3));
        let again = r.set(&moved).unwrap();
        assert_eq!(again.bridge, "edge0-0");
        assert_eq!(again.overlay.as_ref().unwrap().peers.len(), 2);
        let reopened = Registry::open(dir.path(), "edge0", reserved).unwrap();
        assert_eq!(reopened.get("default/web/back"), Some(&b));
        let mut r = reopened;
        r.remove("default/web/front").unwrap();
        let c = r
            .set(&overlay(
                "default/web/third",
                3,
                "172.27.32.0/20",
                "172.27.32.0/26",
            ))
            .unwrap();
        assert_eq!(c.bridge, "edge0-0", "a freed bridge name is used again");
    }

    #[test]
    fn a_network_on_the_default_subnet_or_outside_its_slice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let reserved: Subnet = "10.0.0.0/24".parse().unwrap();
        let mut r = Registry::open(dir.path(), "a-very-long-bridge", reserved).unwrap();
        let err = r
            .set(&overlay("x", 1, "10.0.0.0/20", "10.0.0.0/26"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("10.0.0.0/24"), "{err}");
        assert!(
            r.set(&overlay("y", 1, "10.1.0.0/20", "10.2.0.0/26"))
                .is_err()
        );
        let d = r
            .set(&overlay("z", 2, "10.1.0.0/20", "10.1.0.0/26"))
            .unwrap();
        assert!(d.bridge.len() <= 15, "{}", d.bridge);
    }

    #[test]
    fn a_broken_state_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("networks.json"), "{").unwrap();
        let pool: Subnet = "10.0.0.0/16".parse().unwrap();
        let err = Registry::open(dir.path(), "edge0", pool).unwrap_err();
        assert!(err.to_string().contains("networks.json"), "{err}");
    }
}
