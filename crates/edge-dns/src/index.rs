//! The in-memory zone built from the catalog: every name the zone answers, with its records ready to send,
//! and for callers on a named network the names of that network's members with their in-network addresses.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use edge_api::Catalog;
use hickory_proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

/// SOA timers: the zone is never transferred, so only `minimum` (the negative-answer TTL) matters.
const SOA_REFRESH: i32 = 3600;
const SOA_RETRY: i32 = 600;
const SOA_EXPIRE: i32 = 86400;

/// Records of one name.
#[derive(Debug, Default)]
struct Entry {
    records: Vec<Record>,
    /// Glue for SRV answers: the addresses of their targets.
    additionals: Vec<Record>,
}

/// What the zone says about one question.
#[derive(Debug)]
pub(crate) enum Lookup<'a> {
    /// The name exists; `answers` may be empty (NODATA) when it has no record of the asked type.
    Found {
        answers: Vec<&'a Record>,
        additionals: &'a [Record],
    },
    NxDomain,
    /// The name is not in our zone: forward it.
    Outside,
}

/// A snapshot of the zone at one catalog index.
#[derive(Debug)]
pub(crate) struct Index {
    origin: LowerName,
    soa: Record,
    names: HashMap<LowerName, Entry>,
    /// Named networks' subnets with their keys: a caller's address says
    /// which one it is on.
    networks: Vec<(edge_spec::Subnet, String)>,
    /// Per network key, `NAME` and `tasks.NAME` of the services with
    /// members on it, answered with their addresses on it.
    inside: HashMap<String, HashMap<LowerName, Entry>>,
    /// A member's address on any of its networks → every network it is
    /// on: a caller on two networks asks from one address but reaches
    /// the members of both, as a container on two Docker networks does.
    member_of: HashMap<std::net::Ipv4Addr, Vec<String>>,
}

/// Settings of the zone that do not come from the catalog.
#[derive(Debug, Clone)]
pub(crate) struct ZoneConfig {
    pub origin: Name,
    pub lb_address: IpAddr,
    pub ttl: u32,
}

impl Index {
    pub(crate) fn build(zone: &ZoneConfig, catalog: &Catalog) -> Self {
        let origin = zone.origin.clone();
        let mut b = Builder {
            origin: &origin,
            names: HashMap::new(),
            node_labels: BTreeMap::new(),
        };
        // The apex answers SOA queries and anchors NODATA for its own name.
        b.entry(origin.clone());
        let mut inside: HashMap<String, HashMap<LowerName, Entry>> = HashMap::new();
        let mut member_of: HashMap<std::net::Ipv4Addr, Vec<String>> = HashMap::new();
        for inst in catalog.services.values().flat_map(|s| &s.instances) {
            let keys: Vec<String> = inst.networks.keys().cloned().collect();
            for ip in inst.networks.values() {
                member_of.insert(*ip, keys.clone());
            }
        }
        for svc in catalog.services.values() {
            let serving: Vec<_> = svc.instances.iter().filter(|i| i.serving()).collect();
            // A service at zero keeps its name: the load balancer holds
            // the first request while a copy starts.
            if serving.is_empty() && svc.activation.is_none() {
                continue;
            }
            let Some(label) = dns_label(&svc.name).filter(|l| *l == svc.name.to_ascii_lowercase())
            else {
                tracing::debug!(service = %svc.name, "service name is not a dns label: not in dns");
                continue;
            };
            // Outside the default namespace every name gains the
            // namespace's label: `NAME.NAMESPACE`, `tasks.NAME.NAMESPACE`.
            let ns: Vec<String> = if svc.namespace == edge_spec::DEFAULT_NAMESPACE {
                Vec::new()
            } else {
                match dns_label(&svc.namespace).filter(|l| *l == svc.namespace) {
                    Some(l) => vec![l],
                    None => continue,
                }
            };
            let ns: Vec<&str> = ns.iter().map(String::as_str).collect();
            let Some(name) = b.name(&[&[label.as_str()], &ns[..]].concat()) else {
                continue;
            };
            let lb = address_record(name.clone(), zone.ttl, zone.lb_address);
            b.entry(name.clone()).records.push(lb);
            // On a named network the service's members answer by their
            // addresses there: no load balancer between them, as in
            // Docker's and Swarm's networks.
            let mut on: BTreeMap<&str, BTreeSet<std::net::Ipv4Addr>> = BTreeMap::new();
            for inst in &serving {
                for (key, ip) in &inst.networks {
                    on.entry(key.as_str()).or_default().insert(*ip);
                }
            }
            for (key, addrs) in on {
                let names = inside.entry(key.to_string()).or_default();
                let tasks = b.name(&[&["tasks", label.as_str()], &ns[..]].concat());
                for n in std::iter::once(name.clone()).chain(tasks) {
                    let records = addrs
                        .iter()
                        .map(|a| address_record(n.clone(), zone.ttl, IpAddr::V4(*a)))
                        .collect();
                    names.insert(
                        LowerName::new(&n),
                        Entry {
                            records,
                            additionals: Vec::new(),
                        },
                    );
                }
            }

            let mut task_addrs = BTreeSet::new();
            let mut srv_targets = BTreeSet::new();
            for inst in &serving {
                let Ok(addr) = inst.address.parse::<IpAddr>() else {
                    tracing::debug!(service = %svc.name, address = %inst.address, "instance address is not an ip: not in dns");
                    continue;
                };
                task_addrs.insert(addr);
                // Port 0: a service named on its networks without a port
                // (a Compose service), which has no SRV record.
                if inst.port != 0
                    && let Some(target) = b.node_name(&inst.node_name, addr)
                {
                    srv_targets.insert((target, inst.port));
                }
            }
            // `canary.NAME`: the instances of unpromoted canaries only, to
            // try a new version directly before promoting it.
            let canaries: BTreeSet<IpAddr> = serving
                .iter()
                .filter(|i| i.canary)
                .filter_map(|i| i.address.parse().ok())
                .collect();
            if !canaries.is_empty()
                && let Some(name) = b.name(&[&["canary", label.as_str()], &ns[..]].concat())
            {
                let records = canaries
                    .iter()
                    .map(|a| address_record(name.clone(), zone.ttl, *a))
                    .collect();
                b.entry(name).records = records;
            }
            if let Some(tasks) = b.name(&[&["tasks", label.as_str()], &ns[..]].concat()) {
                let records = task_addrs
                    .iter()
                    .map(|a| address_record(tasks.clone(), zone.ttl, *a))
                    .collect();
                b.entry(tasks).records = records;
            }
            let srv_label = format!("_{label}");
            if let Some(srv) = b.name(&[&[srv_label.as_str(), "_tcp"], &ns[..]].concat()) {
                let mut glue = Vec::new();
                let mut records = Vec::new();
                let mut seen = BTreeSet::new();
                for ((target_name, addr), port) in srv_targets {
                    if seen.insert(target_name.clone()) {
                        glue.push(address_record(target_name.clone(), zone.ttl, addr));
                    }
                    records.push(Record::from_rdata(
                        srv.clone(),
                        zone.ttl,
                        RData::SRV(SRV::new(1, 1, port, target_name)),
                    ));
                }
                let e = b.entry(srv);
                e.records = records;
                e.additionals = glue;
            }
        }
        let node_names: Vec<_> = b.node_labels.values().cloned().collect();
        for (name, addr) in node_names {
            let rec = address_record(name.clone(), zone.ttl, addr);
            b.entry(name).records.push(rec);
        }
        let names = b.names;
        let soa = soa_record(&origin, zone.ttl, catalog.index);
        Index {
            origin: LowerName::new(&origin),
            soa,
            names,
            networks: catalog
                .networks
                .iter()
                .map(|(k, s)| (*s, k.clone()))
                .collect(),
            inside,
            member_of,
        }
    }

    /// The named network `src` is on, if any.
    pub(crate) fn network_of(&self, src: IpAddr) -> Option<&str> {
        let IpAddr::V4(v4) = src else {
            return None;
        };
        self.networks
            .iter()
            .find(|(s, _)| s.contains(v4))
            .map(|(_, k)| k.as_str())
    }

    /// What the zone says to a caller at `src`: a caller on a named
    /// network gets its fellow members' addresses on it for their names.
    pub(crate) fn lookup_from(
        &self,
        name: &LowerName,
        qtype: RecordType,
        src: IpAddr,
    ) -> Lookup<'_> {
        let own: Vec<&str> = match src {
            IpAddr::V4(v4) if self.member_of.contains_key(&v4) => {
                self.member_of[&v4].iter().map(String::as_str).collect()
            }
            _ => self.network_of(src).into_iter().collect(),
        };
        let entry = own
            .iter()
            .filter_map(|k| self.inside.get(*k))
            .find_map(|names| names.get(name));
        match entry {
            Some(e) => Lookup::Found {
                answers: e
                    .records
                    .iter()
                    .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
                    .collect(),
                additionals: &[],
            },
            None => self.lookup(name, qtype),
        }
    }

    pub(crate) fn soa(&self) -> &Record {
        &self.soa
    }

    pub(crate) fn lookup(&self, name: &LowerName, qtype: RecordType) -> Lookup<'_> {
        if !self.origin.zone_of(name) {
            return Lookup::Outside;
        }
        let Some(entry) = self.names.get(name) else {
            return Lookup::NxDomain;
        };
        if *name == self.origin && matches!(qtype, RecordType::SOA | RecordType::ANY) {
            return Lookup::Found {
                answers: vec![&self.soa],
                additionals: &[],
            };
        }
        let answers: Vec<&Record> = entry
            .records
            .iter()
            .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
            .collect();
        let additionals = if answers.is_empty() {
            &[][..]
        } else {
            &entry.additionals[..]
        };
        Lookup::Found {
            answers,
            additionals,
        }
    }
}

type NodeTarget = (Name, IpAddr);

struct Builder<'a> {
    origin: &'a Name,
    names: HashMap<LowerName, Entry>,
    /// SRV target names per label, so two nodes never share one name.
    node_labels: BTreeMap<String, NodeTarget>,
}

impl Builder<'_> {
    fn name(&self, labels: &[&str]) -> Option<Name> {
        let rel = Name::from_labels(labels.iter().map(|l| l.as_bytes())).ok()?;
        rel.append_domain(self.origin).ok()
    }

    fn entry(&mut self, name: Name) -> &mut Entry {
        self.names.entry(LowerName::new(&name)).or_default()
    }

    /// The SRV target of a node: `<node_name>.node.<zone>`, or a name derived from its
    /// address when the node name is not a DNS label or is taken by another address.
    fn node_name(&mut self, node_name: &str, addr: IpAddr) -> Option<(Name, IpAddr)> {
        let by_addr = format!("ip-{}", addr.to_string().replace(['.', ':'], "-"));
        let label = match dns_label(node_name) {
            Some(l) if self.node_labels.get(&l).is_none_or(|(_, a)| *a == addr) => l,
            _ => by_addr,
        };
        if let Some(found) = self.node_labels.get(&label) {
            return Some(found.clone());
        }
        let name = self.name(&[&label, "node"])?;
        self.node_labels.insert(label, (name.clone(), addr));
        Some((name, addr))
    }
}

/// A lowercase DNS label made from `s`: letters, digits and hyphens, other characters
/// turned into hyphens; `None` when nothing usable is left.
pub(crate) fn dns_label(s: &str) -> Option<String> {
    let mapped: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches('-');
    (!trimmed.is_empty() && trimmed.len() <= 63).then(|| trimmed.to_string())
}

fn address_record(name: Name, ttl: u32, addr: IpAddr) -> Record {
    let rdata = match addr {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name, ttl, rdata)
}

fn soa_record(origin: &Name, ttl: u32, serial: u64) -> Record {
    let mname = Name::from_labels([&b"ns"[..]])
        .and_then(|n| n.append_domain(origin))
        .unwrap_or_else(|_| origin.clone());
    let rname = Name::from_labels([&b"hostmaster"[..]])
        .and_then(|n| n.append_domain(origin))
        .unwrap_or_else(|_| origin.clone());
    // The serial wraps: only its changing matters, and it is never compared across a wrap.
    let soa = SOA::new(
        mname,
        rname,
        serial as u32,
        SOA_REFRESH,
        SOA_RETRY,
        SOA_EXPIRE,
        ttl,
    );
    Record::from_rdata(origin.clone(), ttl, RData::SOA(soa))
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_api::{CatalogService, HealthStatus, ServiceInstance};
    use std::str::FromStr;

    fn inst(node: &str, addr: &str, port: u16) -> ServiceInstance {
        ServiceInstance {
            namespace: "default".to_string(),
            service: "web".to_string(),
            alloc_id: format!("{node}-{port}"),
            job_id: "j".to_string(),
            group: "g".to_string(),
            node_id: node.to_string(),
            node_name: node.to_string(),
            address: addr.to_string(),
            port,
            tags: Vec::new(),
            status: HealthStatus::Passing,
            canary: false,
            networks: Default::default(),
        }
    }

    fn index(instances: Vec<ServiceInstance>) -> Index {
        let svc = CatalogService {
            namespace: "default".to_string(),
            name: "web".to_string(),
            tags: Vec::new(),
            publish: None,
            canary_weight: None,
            activation: None,
            scaled_by: None,
            instances,
        };
        let catalog = Catalog {
            index: 3,
            services: [("web".to_string(), svc)].into(),
            networks: Default::default(),
        };
        let zone = ZoneConfig {
            origin: Name::from_str("service.edge.").unwrap(),
            lb_address: "10.0.0.1".parse().unwrap(),
            ttl: 5,
        };
        Index::build(&zone, &catalog)
    }

    fn srv_targets(idx: &Index) -> Vec<String> {
        let name = LowerName::from_str("_web._tcp.service.edge.").unwrap();
        match idx.lookup(&name, RecordType::SRV) {
            Lookup::Found { answers, .. } => answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::SRV(s) => Some(s.target.to_string()),
                    _ => None,
                })
                .collect(),
            other => panic!("no srv: {other:?}"),
        }
    }

    fn addresses(l: Lookup<'_>) -> Vec<String> {
        match l {
            Lookup::Found { answers, .. } => answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0.to_string()),
                    _ => None,
                })
                .collect(),
            other => panic!("not found: {other:?}"),
        }
    }

    #[test]
    fn callers_on_a_named_network_get_its_members_addresses() {
        let key = "default/shop/back";
        let mut on = inst("n1", "10.0.0.5", 20001);
        on.networks
            .insert(key.to_string(), "172.27.16.66".parse().unwrap());
        let mut built = index(vec![on, inst("n2", "10.0.0.6", 20002)]);
        let mut catalog = Catalog::default();
        catalog
            .networks
            .insert(key.to_string(), "172.27.16.0/20".parse().unwrap());
        built.networks = Index::build(
            &ZoneConfig {
                origin: Name::from_str("service.edge.").unwrap(),
                lb_address: "10.0.0.1".parse().unwrap(),
                ttl: 5,
            },
            &catalog,
        )
        .networks;
        let web = LowerName::from_str("web.service.edge.").unwrap();
        let tasks = LowerName::from_str("tasks.web.service.edge.").unwrap();
        let member: IpAddr = "172.27.16.130".parse().unwrap();
        let outsider: IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(built.network_of(member), Some(key));
        assert_eq!(built.network_of(outsider), None);
        assert_eq!(
            addresses(built.lookup_from(&web, RecordType::A, member)),
            ["172.27.16.66"]
        );
        assert_eq!(
            addresses(built.lookup_from(&tasks, RecordType::A, member)),
            ["172.27.16.66"]
        );
        assert_eq!(
            addresses(built.lookup_from(&web, RecordType::A, outsider)),
            ["10.0.0.1"]
        );
        assert_eq!(
            addresses(built.lookup_from(&tasks, RecordType::A, outsider)),
            ["10.0.0.5", "10.0.0.6"]
        );
        assert!(addresses(built.lookup_from(&web, RecordType::AAAA, member)).is_empty());
    }

    /// Docker's rule: a container on two networks reaches the members of
    /// both by name, whichever address its query comes from.
    #[test]
    fn a_caller_on_two_networks_reaches_the_members_of_both() {
        let (front, back) = ("default/shop/front", "default/shop/back");
        let mut web = inst("n1", "10.0.0.5", 20001);
        web.networks
            .insert(front.into(), "172.27.0.2".parse().unwrap());
        web.networks
            .insert(back.into(), "172.27.16.2".parse().unwrap());
        let mut db = inst("n1", "10.0.0.5", 0);
        db.service = "db".into();
        db.networks
            .insert(back.into(), "172.27.16.3".parse().unwrap());
        let mut catalog = Catalog::default();
        for (name, i) in [("web", web), ("db", db)] {
            catalog.services.insert(
                name.to_string(),
                CatalogService {
                    namespace: "default".into(),
                    name: name.into(),
                    tags: Vec::new(),
                    publish: None,
                    canary_weight: None,
                    activation: None,
                    scaled_by: None,
                    instances: vec![i],
                },
            );
        }
        catalog
            .networks
            .insert(front.into(), "172.27.0.0/20".parse().unwrap());
        catalog
            .networks
            .insert(back.into(), "172.27.16.0/20".parse().unwrap());
        let built = Index::build(
            &ZoneConfig {
                origin: Name::from_str("service.edge.").unwrap(),
                lb_address: "10.0.0.1".parse().unwrap(),
                ttl: 5,
            },
            &catalog,
        );
        let db_name = LowerName::from_str("db.service.edge.").unwrap();
        let from_front: IpAddr = "172.27.0.2".parse().unwrap();
        assert_eq!(
            addresses(built.lookup_from(&db_name, RecordType::A, from_front)),
            ["172.27.16.3"]
        );
        let stranger: IpAddr = "172.27.0.9".parse().unwrap();
        assert_eq!(
            addresses(built.lookup_from(&db_name, RecordType::A, stranger)),
            ["10.0.0.1"],
            "a caller on front only gets the zone's answer"
        );
    }

    #[test]
    fn labels_are_made_dns_safe() {
        assert_eq!(dns_label("Node_1.local").as_deref(), Some("node-1-local"));
        assert_eq!(dns_label("--x--").as_deref(), Some("x"));
        assert_eq!(dns_label("__"), None);
        assert_eq!(dns_label(&"a".repeat(64)), None);
    }

    #[test]
    fn clashing_or_odd_node_names_fall_back_to_the_address() {
        // Two nodes named alike with different addresses, and a name with no usable label.
        let idx = index(vec![
            inst("n1", "127.0.0.1", 1),
            inst("N1", "127.0.0.2", 2),
            inst("__", "::1", 3),
        ]);
        let mut targets = srv_targets(&idx);
        targets.sort();
        assert_eq!(
            targets,
            vec![
                "ip---1.node.service.edge.",
                "ip-127-0-0-2.node.service.edge.",
                "n1.node.service.edge.",
            ]
        );
    }

    #[test]
    fn instances_without_an_ip_still_make_the_service_answer() {
        let idx = index(vec![inst("n1", "host.example", 80)]);
        let web = LowerName::from_str("web.service.edge.").unwrap();
        assert!(
            matches!(idx.lookup(&web, RecordType::A), Lookup::Found { answers, .. } if answers.len() == 1)
        );
        let tasks = LowerName::from_str("tasks.web.service.edge.").unwrap();
        assert!(
            matches!(idx.lookup(&tasks, RecordType::A), Lookup::Found { answers, .. } if answers.is_empty())
        );
        let other = LowerName::from_str("web.service.other.").unwrap();
        assert!(matches!(idx.lookup(&other, RecordType::A), Lookup::Outside));
    }

    #[test]
    fn canary_names_answer_only_unpromoted_canaries() {
        let mut canary = inst("n2", "10.0.0.2", 2);
        canary.canary = true;
        let idx = index(vec![inst("n1", "10.0.0.1", 1), canary]);
        let name = LowerName::from_str("canary.web.service.edge.").unwrap();
        let Lookup::Found { answers, .. } = idx.lookup(&name, RecordType::A) else {
            panic!("canary.web answers");
        };
        let addrs: Vec<String> = answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(addrs, ["10.0.0.2"]);
        let idx = index(vec![inst("n1", "10.0.0.1", 1)]);
        assert!(!matches!(
            idx.lookup(&name, RecordType::A),
            Lookup::Found { answers, .. } if !answers.is_empty()
        ));
    }
}
