//! Networks as the cluster sees them: IPv4 subnets (`172.26.64.0/20`, as
//! flags give them) and the overlay record of a job's named network, which
//! the server hands out (a VXLAN id, a subnet of the cluster's pool, and
//! a slice of it per node) so that the network is one segment across nodes.

use crate::error::SpecError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn mask(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    /// The bridge's own address, the allocations' gateway and resolver.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask(self.prefix) == u32::from(self.network)
    }

    /// The `index`-th subnet of length `prefix` within this one, if there
    /// is one.
    pub fn split(&self, prefix: u8, index: u32) -> Option<Subnet> {
        if prefix < self.prefix || prefix > 32 {
            return None;
        }
        let bits = u32::from(prefix - self.prefix);
        if bits < 32 && u64::from(index) >= 1u64 << bits {
            return None;
        }
        let size = 1u64 << (32 - u32::from(prefix));
        let start = u64::from(u32::from(self.network)) + u64::from(index) * size;
        Some(Subnet {
            network: Ipv4Addr::from(u32::try_from(start).ok()?),
            prefix,
        })
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let p = self.prefix.min(other.prefix);
        u32::from(self.network) & Self::mask(p) == u32::from(other.network) & Self::mask(p)
    }
}

impl serde::Serialize for Subnet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Subnet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Subnet, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl JsonSchema for Subnet {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Subnet".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "An IPv4 subnet, ADDRESS/PREFIX (prefix 8 to 30).",
            "example": "172.27.0.0/20",
        })
    }
}

impl FromStr for Subnet {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Subnet, SpecError> {
        let bad = |reason: &str| SpecError::Subnet {
            subnet: s.to_string(),
            reason: reason.to_string(),
        };
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| bad("write it as ADDRESS/PREFIX, e.g. 172.26.64.0/20"))?;
        let network: Ipv4Addr = ip.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| bad("the prefix is not a number"))?;
        // Below /8 a bridge would shadow most of the address space; above
        // /30 no allocation fits beside the gateway.
        if !(8..=30).contains(&prefix) {
            return Err(bad("the prefix must be between 8 and 30"));
        }
        if u32::from(network) & !Self::mask(prefix) != 0 {
            return Err(bad("host bits are set: give the network's first address"));
        }
        Ok(Subnet { network, prefix })
    }
}

/// The largest VXLAN id (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// How the server carves the cluster's pool for named networks (server
/// flags `--network-pool`, `--network-prefix`, `--network-node-prefix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverlayPool {
    pub pool: Subnet,
    /// Each network's subnet length.
    pub prefix: u8,
    /// Each node's slice of a network.
    pub node_prefix: u8,
}

impl Default for OverlayPool {
    fn default() -> OverlayPool {
        OverlayPool {
            pool: Subnet {
                network: Ipv4Addr::new(172, 27, 0, 0),
                prefix: 16,
            },
            prefix: 20,
            node_prefix: 26,
        }
    }
}

impl OverlayPool {
    /// Checks the lengths fit: a network inside the pool, at least two
    /// slices per network, and room in a slice for a gateway and an
    /// allocation.
    pub fn new(pool: Subnet, prefix: u8, node_prefix: u8) -> Result<OverlayPool, String> {
        if prefix < pool.prefix {
            return Err(format!(
                "network prefix /{prefix} is larger than the pool {pool}"
            ));
        }
        if node_prefix <= prefix || node_prefix > 29 {
            return Err(format!(
                "node prefix /{node_prefix} must be longer than the network prefix /{prefix} and at most /29"
            ));
        }
        if prefix - pool.prefix > 24 {
            return Err(format!("pool {pool} holds more networks than VXLAN ids"));
        }
        Ok(OverlayPool {
            pool,
            prefix,
            node_prefix,
        })
    }

    /// How many networks the pool holds.
    pub fn networks(&self) -> u32 {
        1 << u32::from(self.prefix - self.pool.prefix)
    }

    /// The first free network of the pool, given those handed out: the
    /// smallest VXLAN id not in use and the first subnet that overlaps
    /// none in use (also after the pool flags changed).
    pub fn next_network<'a>(
        &self,
        taken: impl IntoIterator<Item = &'a OverlayNetwork>,
    ) -> Option<(u32, Subnet)> {
        let (subnets, vnis): (Vec<Subnet>, std::collections::BTreeSet<u32>) =
            taken.into_iter().map(|n| (n.subnet, n.vni)).unzip();
        let subnet = (0..self.networks())
            .filter_map(|i| self.pool.split(self.prefix, i))
            .find(|s| !subnets.iter().any(|u| u.overlaps(s)))?;
        let vni = (1..=MAX_VNI).find(|v| !vnis.contains(v))?;
        Some((vni, subnet))
    }
}

/// A job's named network as the cluster shares it: one VXLAN segment and
/// subnet, a slice of addresses per node that runs a member (so nodes
/// never hand out one address twice), kept until the job is purged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OverlayNetwork {
    pub namespace: String,
    pub job_id: String,
    /// The network's label in the job.
    pub name: String,
    /// The VXLAN id, unique in the cluster.
    pub vni: u32,
    pub subnet: Subnet,
    /// Each node's slice length.
    pub node_prefix: u8,
    /// Node id → the index of its slice.
    #[serde(default)]
    pub nodes: BTreeMap<String, u32>,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

impl OverlayNetwork {
    /// The key the agent and the store know it by (`NamedNetwork::key`).
    pub fn key(&self) -> String {
        crate::NamedNetwork::key(&self.namespace, &self.job_id, &self.name)
    }

    /// Node `node`'s slice: its gateway is the slice's first address, its
    /// allocations get the rest but the last.
    pub fn slice(&self, node: &str) -> Option<Subnet> {
        let i = *self.nodes.get(node)?;
        self.subnet.split(self.node_prefix, i)
    }

    /// Gives `node` a slice unless it has one; false when every slice is
    /// taken.
    pub fn join(&mut self, node: &str) -> bool {
        if self.nodes.contains_key(node) {
            return true;
        }
        let count = 1u32 << u32::from(self.node_prefix.saturating_sub(self.subnet.prefix)).min(16);
        let used: std::collections::BTreeSet<u32> = self.nodes.values().copied().collect();
        match (0..count).find(|i| !used.contains(i)) {
            Some(i) => {
                self.nodes.insert(node.to_string(), i);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_refuses() {
        let s: Subnet = "172.26.64.0/20".parse().unwrap();
        assert_eq!(s.gateway(), Ipv4Addr::new(172, 26, 64, 1));
        assert!(s.contains(Ipv4Addr::new(172, 26, 79, 254)));
        assert!(!s.contains(Ipv4Addr::new(172, 26, 80, 1)));
        for bad in [
            "172.26.64.1/20",
            "10.0.0.0",
            "10.0.0.0/4",
            "10.0.0.0/31",
            "x/8",
            "10.0.0.0/x",
        ] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"172.26.64.0/20\"");
        assert_eq!(serde_json::from_str::<Subnet>(&json).unwrap(), s);
        assert!(serde_json::from_str::<Subnet>("\"10.0.0.1/8\"").is_err());
    }

    fn network(vni: u32, subnet: &str) -> OverlayNetwork {
        OverlayNetwork {
            namespace: "default".into(),
            job_id: "shop".into(),
            name: format!("n{vni}"),
            vni,
            subnet: subnet.parse().unwrap(),
            node_prefix: 26,
            nodes: BTreeMap::new(),
            create_index: 0,
            modify_index: 0,
        }
    }

    #[test]
    fn the_pool_hands_out_each_network_once() {
        let pool = OverlayPool::new("10.9.0.0/22".parse().unwrap(), 24, 26).unwrap();
        assert_eq!(pool.networks(), 4);
        let (vni, subnet) = pool.next_network(&[]).unwrap();
        assert_eq!((vni, subnet.to_string().as_str()), (1, "10.9.0.0/24"));
        let taken = [network(1, "10.9.0.0/24"), network(3, "10.9.2.0/24")];
        let (vni, subnet) = pool.next_network(&taken).unwrap();
        assert_eq!((vni, subnet.to_string().as_str()), (2, "10.9.1.0/24"));
        let moved = [network(1, "10.9.1.0/24"), network(2, "10.9.0.0/24")];
        let (vni, subnet) = pool.next_network(&moved).unwrap();
        assert_eq!((vni, subnet.to_string().as_str()), (3, "10.9.2.0/24"));
        let full: Vec<_> = (0..4)
            .map(|i| network(i + 1, &format!("10.9.{i}.0/24")))
            .collect();
        assert_eq!(pool.next_network(&full), None);
        for (p, np) in [(20, 20), (20, 30), (8, 12)] {
            assert!(
                OverlayPool::new("10.9.0.0/16".parse().unwrap(), p, np).is_err(),
                "{p} {np}"
            );
        }
    }

    #[test]
    fn nodes_get_apart_slices_until_none_is_left() {
        let mut n = network(1, "10.9.0.0/24");
        assert!(n.join("a") && n.join("b") && n.join("a"));
        assert_eq!(n.slice("a").unwrap().to_string(), "10.9.0.0/26");
        assert_eq!(n.slice("b").unwrap().to_string(), "10.9.0.64/26");
        assert!(n.join("c") && n.join("d"));
        assert!(!n.join("e"));
        n.nodes.remove("b");
        assert!(n.join("e"));
        assert_eq!(n.slice("e").unwrap().to_string(), "10.9.0.64/26");
        assert_eq!(n.slice("b"), None);
    }

    proptest! {
        #[test]
        fn any_text_parses_or_errs(s in "\\PC{0,40}") {
            let _ = s.parse::<Subnet>();
        }

        #[test]
        fn a_parsed_subnet_prints_back(a in any::<u32>(), prefix in 8u8..=30) {
            let net = Ipv4Addr::from(a & Subnet::mask(prefix));
            let text = format!("{net}/{prefix}");
            let s: Subnet = text.parse().unwrap();
            prop_assert_eq!(s.to_string(), text);
            prop_assert!(s.contains(s.gateway()));
        }

        #[test]
        fn splits_lie_inside_and_apart(a in any::<u32>(), prefix in 8u8..=24, extra in 0u8..=4, i in 0u32..40) {
            let net: Subnet = format!("{}/{prefix}", Ipv4Addr::from(a & Subnet::mask(prefix))).parse().unwrap();
            let sub = prefix + extra;
            match net.split(sub, i) {
                Some(s) => {
                    prop_assert!(i < 1 << extra);
                    prop_assert_eq!(s.prefix, sub);
                    prop_assert!(net.contains(s.network) && net.overlaps(&s) && s.overlaps(&net));
                    if let Some(next) = net.split(sub, i + 1) {
                        prop_assert!(!s.overlaps(&next) && !next.overlaps(&s));
                    }
                }
                None => prop_assert!(i >= 1 << extra),
            }
        }
    }
}
