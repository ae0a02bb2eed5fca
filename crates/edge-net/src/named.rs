//! The node's named networks: each job network an allocation here joined
//! gets a bridge and a /24 of the agent's pool of its own, recorded in the
//! agent's state dir (`networks.json`) so restarts keep bridge, subnet and
//! the leases under it.

use crate::error::NetError;
use crate::subnet::Subnet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The prefix of each named network's subnet within the pool.
pub(crate) const NAMED_PREFIX: u8 = 24;

/// One network allocations attach to: the node's default bridge (`key`
/// empty) or a named network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NetDef {
    pub key: String,
    pub bridge: String,
    pub subnet: Subnet,
    /// The CNI network name, which host-local keeps the leases under.
    pub cni_name: String,
}

#[derive(Debug)]
pub(crate) struct Registry {
    path: PathBuf,
    pool: Subnet,
    /// Named bridges are `<prefix>-<index>`.
    prefix: String,
    /// The default bridge's subnet, which no named one may overlap.
    reserved: Subnet,
    defs: BTreeMap<String, NetDef>,
}

impl Registry {
    pub fn open(
        state_dir: &Path,
        pool: Subnet,
        bridge: &str,
        reserved: Subnet,
    ) -> Result<Registry, NetError> {
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
            pool,
            prefix: bridge.chars().take(9).collect(),
            reserved,
            defs,
        })
    }

    pub fn get(&self, key: &str) -> Option<&NetDef> {
        self.defs.get(key)
    }

    /// The network `key`, made (and saved) on first use.
    pub fn define(&mut self, key: &str) -> Result<NetDef, NetError> {
        if let Some(d) = self.defs.get(key) {
            return Ok(d.clone());
        }
        let taken: Vec<Subnet> = self.defs.values().map(|d| d.subnet).collect();
        // At most 4 digits after a 9-byte prefix keeps the bridge name
        // within the kernel's 15 bytes.
        let slots = (1u32 << NAMED_PREFIX.saturating_sub(self.pool.prefix).min(12)).min(4096);
        let (index, subnet) = (0..slots)
            .filter_map(|i| Some((i, self.pool.split(NAMED_PREFIX, i)?)))
            .find(|(_, s)| !s.overlaps(&self.reserved) && !taken.contains(s))
            .ok_or_else(|| NetError::PoolFull {
                pool: self.pool.to_string(),
            })?;
        let def = NetDef {
            key: key.to_string(),
            bridge: format!("{}-{index}", self.prefix),
            subnet,
            cni_name: format!("edge-{index}"),
        };
        self.defs.insert(key.to_string(), def.clone());
        self.save()?;
        Ok(def)
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

    #[test]
    fn networks_get_distinct_subnets_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let pool: Subnet = "172.27.0.0/23".parse().unwrap();
        let reserved: Subnet = "172.26.64.0/20".parse().unwrap();
        let mut r = Registry::open(dir.path(), pool, "edge0", reserved).unwrap();
        let a = r.define("default/web/front").unwrap();
        let b = r.define("default/web/back").unwrap();
        assert_eq!(a.subnet.to_string(), "172.27.0.0/24");
        assert_eq!(b.subnet.to_string(), "172.27.1.0/24");
        assert_eq!(
            (a.bridge.as_str(), b.bridge.as_str()),
            ("edge0-0", "edge0-1")
        );
        assert_eq!(r.define("default/web/front").unwrap(), a);
        let err = r.define("default/web/third").unwrap_err().to_string();
        assert!(err.contains("172.27.0.0/23"), "{err}");
        let again = Registry::open(dir.path(), pool, "edge0", reserved).unwrap();
        assert_eq!(again.get("default/web/back"), Some(&b));
    }

    #[test]
    fn the_default_subnet_is_never_handed_to_a_named_network() {
        let dir = tempfile::tempdir().unwrap();
        let pool: Subnet = "10.0.0.0/22".parse().unwrap();
        let reserved: Subnet = "10.0.0.0/24".parse().unwrap();
        let mut r = Registry::open(dir.path(), pool, "a-very-long-bridge", reserved).unwrap();
        let d = r.define("x").unwrap();
        assert_eq!(d.subnet.to_string(), "10.0.1.0/24");
        assert!(d.bridge.len() <= 15, "{}", d.bridge);
    }

    #[test]
    fn a_broken_state_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("networks.json"), "{").unwrap();
        let pool: Subnet = "10.0.0.0/16".parse().unwrap();
        let err = Registry::open(dir.path(), pool, "edge0", pool).unwrap_err();
        assert!(err.to_string().contains("networks.json"), "{err}");
    }
}
