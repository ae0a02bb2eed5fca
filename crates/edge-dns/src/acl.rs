//! Who may use the forwarder: 127.0.0.1 and ::1, this node's own addresses
//! and the operator's allow-list (other loopback addresses only through
//! it, e.g. `127.0.0.0/8`). Everyone else still gets answers inside the zone
//! but REFUSED for other names, so a DNS port exposed by mistake is not an
//! open resolver for the internet.

use crate::error::DnsError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address block, `10.0.0.0/8`, `fd00::/8`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = DnsError;

    fn from_str(s: &str) -> Result<Cidr, DnsError> {
        let invalid = |reason: &str| DnsError::InvalidCidr {
            cidr: s.to_string(),
            reason: reason.to_string(),
        };
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr = canonical(
            addr.parse::<IpAddr>()
                .map_err(|_| invalid("not an IP address"))?,
        );
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| invalid(&format!("prefix must be 0-{max}")))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

/// IPv4 clients of a dual-stack socket arrive as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The forwarder's clients.
#[derive(Debug, Clone, Default)]
pub(crate) struct ForwardAcl {
    own: Vec<IpAddr>,
    allow: Vec<Cidr>,
}

impl ForwardAcl {
    pub(crate) fn new(own: impl IntoIterator<Item = IpAddr>, allow: Vec<Cidr>) -> ForwardAcl {
        ForwardAcl {
            own: own.into_iter().map(canonical).collect(),
            allow,
        }
    }

    pub(crate) fn may_forward(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip == IpAddr::V4(Ipv4Addr::LOCALHOST)
            || ip == IpAddr::V6(Ipv6Addr::LOCALHOST)
            || self.own.contains(&ip)
            || self.allow.iter().any(|c| c.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_contain_their_addresses_only() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains(ip("10.1.200.3")));
        assert!(c.contains(ip("::ffff:10.1.0.1")));
        assert!(!c.contains(ip("10.2.0.1")));
        assert!(!c.contains(ip("fd00::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        let one: Cidr = "192.168.1.7".parse().unwrap();
        assert!(one.contains(ip("192.168.1.7")) && !one.contains(ip("192.168.1.8")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::5")) && !v6.contains(ip("fe80::1")));
        for bad in [
            "10.0.0.0/33",
            "fd00::/129",
            "nope/8",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "",
        ] {
            let err = bad.parse::<Cidr>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn loopback_own_and_listed_clients_may_forward() {
        let acl = ForwardAcl::new([ip("192.168.5.10")], vec!["10.0.0.0/8".parse().unwrap()]);
        assert!(acl.may_forward(ip("127.0.0.1")));
        assert!(!acl.may_forward(ip("127.0.0.2")));
        assert!(acl.may_forward(ip("::1")));
        assert!(acl.may_forward(ip("192.168.5.10")));
        assert!(acl.may_forward(ip("10.9.9.9")));
        assert!(!acl.may_forward(ip("192.168.5.11")));
        assert!(!acl.may_forward(ip("8.8.8.8")));
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_accepts_what_it_prints(s in ".{0,48}", a in any::<u32>(), p in 0u8..=32) {
            let _ = s.parse::<Cidr>();
            let text = format!("{}/{p}", std::net::Ipv4Addr::from(a));
            let c: Cidr = text.parse().unwrap();
            prop_assert!(c.contains(IpAddr::V4(a.into())));
        }
    }
}
