//! IPv4 subnets as the agent's flags give them (`172.26.64.0/20`).

use crate::error::NetError;
use std::net::Ipv4Addr;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    fn mask(prefix: u8) -> u32 {
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

impl FromStr for Subnet {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Subnet, NetError> {
        let bad = |reason: &str| NetError::Subnet {
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
        // Below /8 the bridge would shadow most of the address space; above
        // /28 a handful of allocations fill it.
        if !(8..=28).contains(&prefix) {
            return Err(bad("the prefix must be between 8 and 28"));
        }
        if u32::from(network) & !Self::mask(prefix) != 0 {
            return Err(bad("host bits are set: give the network's first address"));
        }
        Ok(Subnet { network, prefix })
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
            "10.0.0.0/29",
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

    proptest! {
        #[test]
        fn any_text_parses_or_errs(s in "\\PC{0,40}") {
            let _ = s.parse::<Subnet>();
        }

        #[test]
        fn a_parsed_subnet_prints_back(a in any::<u32>(), prefix in 8u8..=28) {
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
