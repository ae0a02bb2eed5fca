//! Turns a catalog into the wanted listeners: which service owns which port,
//! the HTTP routes of shared ports, and the conflicts to report.

use std::collections::BTreeMap;

use edge_api::Catalog;
use edge_spec::{PublishProtocol, PublishTls};

use crate::error::LbError;
use crate::route::{HostPattern, Route};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PortPlan {
    Tcp {
        service: String,
        proxy_protocol: bool,
        tls: Option<PublishTls>,
    },
    Http {
        routes: Vec<Route<String>>,
        /// `Some` on a TLS port: each service's hosts with its certificate.
        tls: Option<Vec<(Vec<HostPattern>, PublishTls)>>,
    },
}

impl PortPlan {
    pub(crate) fn protocol(&self) -> PublishProtocol {
        match self {
            PortPlan::Tcp { .. } => PublishProtocol::Tcp,
            PortPlan::Http { .. } => PublishProtocol::Http,
        }
    }

    fn tls_label(&self) -> &'static str {
        let on = match self {
            PortPlan::Tcp { tls, .. } => tls.is_some(),
            PortPlan::Http { tls, .. } => tls.is_some(),
        };
        if on { "on" } else { "off" }
    }
}

impl<T: PartialEq> PartialEq for Route<T> {
    fn eq(&self, other: &Self) -> bool {
        self.host == other.host && self.prefix == other.prefix && self.target == other.target
    }
}

#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) ports: BTreeMap<u16, PortPlan>,
    /// UDP ports, apart from the stream ones: a port number may carry both.
    pub(crate) udp: BTreeMap<u16, String>,
    pub(crate) errors: Vec<LbError>,
}

/// Services are visited by name, so the first claimant of a port is stable
/// across catalog updates and later ones are the ones reported.
pub(crate) fn build(catalog: &Catalog) -> Plan {
    let mut plan = Plan::default();
    for (name, svc) in &catalog.services {
        let Some(publish) = &svc.publish else {
            continue;
        };
        let port = publish.port;
        match (plan.ports.get_mut(&port), publish.protocol) {
            (_, PublishProtocol::Udp) => match plan.udp.get(&port) {
                Some(owner) => plan.errors.push(LbError::UdpConflict {
                    port,
                    owner: owner.clone(),
                    service: name.clone(),
                }),
                None => {
                    plan.udp.insert(port, name.clone());
                }
            },
            (None, PublishProtocol::Tcp) => {
                plan.ports.insert(
                    port,
                    PortPlan::Tcp {
                        service: name.clone(),
                        proxy_protocol: publish.proxy_protocol,
                        tls: publish.tls.clone(),
                    },
                );
            }
            (None, PublishProtocol::Http) => {
                let Some(hosts) = host_patterns(name, &publish.hosts, &mut plan.errors) else {
                    continue;
                };
                let mut routes = Vec::new();
                add_routes(
                    port,
                    name,
                    &hosts,
                    publish.path_prefix.as_deref(),
                    &mut routes,
                    &mut plan.errors,
                );
                let tls = publish.tls.clone().map(|t| vec![(hosts, t)]);
                plan.ports.insert(port, PortPlan::Http { routes, tls });
            }
            (Some(PortPlan::Tcp { service: owner, .. }), PublishProtocol::Tcp) => {
                plan.errors.push(LbError::TcpConflict {
                    port,
                    owner: owner.clone(),
                    service: name.clone(),
                });
            }
            (Some(existing), protocol) if existing.protocol() != protocol => {
                plan.errors.push(LbError::ProtocolConflict {
                    port,
                    owner: owner_of(existing),
                    owner_protocol: existing.protocol().as_str(),
                    service: name.clone(),
                    protocol: protocol.as_str(),
                });
            }
            (Some(existing), _) => {
                let label = existing.tls_label();
                let PortPlan::Http { routes, tls } = existing else {
                    continue;
                };
                if tls.is_some() != publish.tls.is_some() {
                    plan.errors.push(LbError::TlsMismatch {
                        port,
                        owner: routes.first().map(|r| r.target.clone()).unwrap_or_default(),
                        owner_tls: label,
                        service: name.clone(),
                    });
                    continue;
                }
                let Some(hosts) = host_patterns(name, &publish.hosts, &mut plan.errors) else {
                    continue;
                };
                add_routes(
                    port,
                    name,
                    &hosts,
                    publish.path_prefix.as_deref(),
                    routes,
                    &mut plan.errors,
                );
                if let (Some(list), Some(t)) = (tls.as_mut(), &publish.tls) {
                    list.push((hosts, t.clone()));
                }
            }
        }
    }
    plan
}

fn owner_of(plan: &PortPlan) -> String {
    match plan {
        PortPlan::Tcp { service, .. } => service.clone(),
        PortPlan::Http { routes, .. } => {
            routes.first().map(|r| r.target.clone()).unwrap_or_default()
        }
    }
}

/// `None` (and an error) when any pattern is bad: half a service's hosts
/// would route surprisingly, so none are taken.
fn host_patterns(
    service: &str,
    hosts: &[String],
    errors: &mut Vec<LbError>,
) -> Option<Vec<HostPattern>> {
    if hosts.is_empty() {
        return Some(vec![HostPattern::Any]);
    }
    let mut out = Vec::with_capacity(hosts.len());
    for h in hosts {
        match HostPattern::parse(h) {
            Some(p) => out.push(p),
            None => {
                errors.push(LbError::HostPattern {
                    service: service.to_string(),
                    host: h.clone(),
                });
                return None;
            }
        }
    }
    Some(out)
}

fn add_routes(
    port: u16,
    service: &str,
    hosts: &[HostPattern],
    prefix: Option<&str>,
    routes: &mut Vec<Route<String>>,
    errors: &mut Vec<LbError>,
) {
    let prefix = prefix.unwrap_or("").trim_end_matches('/').to_string();
    for host in hosts {
        if let Some(owner) = routes
            .iter()
            .find(|r| r.host == *host && r.prefix == prefix)
        {
            errors.push(LbError::RouteConflict {
                port,
                owner: owner.target.clone(),
                service: service.to_string(),
                host: host.display(),
                prefix: prefix.clone(),
            });
            continue;
        }
        routes.push(Route {
            host: host.clone(),
            prefix: prefix.clone(),
            target: service.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_api::CatalogService;
    use edge_spec::{Balance, Publish};

    fn publish(
        port: u16,
        protocol: PublishProtocol,
        hosts: &[&str],
        prefix: Option<&str>,
    ) -> Publish {
        Publish {
            port,
            protocol,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            path_prefix: prefix.map(str::to_string),
            balance: Balance::RoundRobin,
            proxy_protocol: false,
            tls: None,
        }
    }

    fn catalog(services: Vec<(&str, Publish)>) -> Catalog {
        let mut c = Catalog::default();
        for (name, p) in services {
            c.services.insert(
                name.to_string(),
                CatalogService {
                    namespace: "default".to_string(),
                    name: name.to_string(),
                    tags: vec![],
                    publish: Some(p),
                    canary_weight: None,
                    activation: None,
                    scaled_by: None,
                    instances: vec![],
                },
            );
        }
        c
    }

    #[test]
    fn second_tcp_claimant_is_reported() {
        let plan = build(&catalog(vec![
            ("a", publish(9000, PublishProtocol::Tcp, &[], None)),
            ("b", publish(9000, PublishProtocol::Tcp, &[], None)),
            ("c", publish(9000, PublishProtocol::Http, &[], None)),
        ]));
        assert!(matches!(&plan.ports[&9000], PortPlan::Tcp { service, .. } if service == "a"));
        assert_eq!(plan.errors.len(), 2);
        assert!(plan.errors[0].to_string().contains("service b ignored"));
        assert!(
            plan.errors[1]
                .to_string()
                .contains("service c (http) ignored")
        );
    }

    #[test]
    fn http_services_share_a_port() {
        let plan = build(&catalog(vec![
            (
                "a",
                publish(
                    80,
                    PublishProtocol::Http,
                    &["a.example", "*.a.example"],
                    None,
                ),
            ),
            ("b", publish(80, PublishProtocol::Http, &[], Some("/api/"))),
            (
                "c",
                publish(80, PublishProtocol::Http, &["a.example"], None),
            ),
        ]));
        let PortPlan::Http { routes, tls } = &plan.ports[&80] else {
            panic!("http port expected");
        };
        assert!(tls.is_none());
        assert_eq!(routes.len(), 3);
        assert_eq!(routes[2].prefix, "/api");
        assert_eq!(plan.errors.len(), 1);
        assert!(plan.errors[0].to_string().contains("service c"));
    }

    #[test]
    fn tls_mismatch_and_bad_hosts_are_reported() {
        let mut with_tls = publish(443, PublishProtocol::Http, &["a.example"], None);
        with_tls.tls = Some(PublishTls {
            secret: String::new(),
            cert_file: "c.pem".into(),
            key_file: "k.pem".into(),
        });
        let plan = build(&catalog(vec![
            ("a", with_tls),
            (
                "b",
                publish(443, PublishProtocol::Http, &["b.example"], None),
            ),
            (
                "c",
                publish(80, PublishProtocol::Http, &["x.*.example"], None),
            ),
        ]));
        assert_eq!(plan.ports.len(), 1);
        assert!(
            plan.errors[0]
                .to_string()
                .contains("tls is on for service a")
        );
        assert!(plan.errors[1].to_string().contains("bad host pattern"));
    }
}
