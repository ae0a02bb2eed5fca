//! How allocations become catalog instances. The server builds the whole
//! catalog this way; an agent cut off from the server rebuilds its own
//! node's part of the last catalog it saw the same way, from local state.

use crate::types::{Catalog, CatalogService, ServiceInstance};
use edge_spec::{Allocation, ClientStatus, DesiredStatus, Group, HealthStatus};
use std::collections::BTreeMap;

/// The tag of an unpromoted canary's instances.
pub const CANARY_TAG: &str = "canary";

/// Names the job and group that scale `group`'s services (by its
/// `scaling` `rules`), and when the group may be at zero marks its
/// published services as held there, adding those that have no instance
/// now so their listeners and names stay.
pub fn add_scaling(
    services: &mut BTreeMap<String, CatalogService>,
    (namespace, job_id): (&str, &str),
    group: &Group,
    rules: &edge_spec::ScalingRules,
) {
    for svc in &group.services {
        let key = edge_spec::service_key(namespace, &svc.name);
        let publish = svc
            .publish
            .as_ref()
            .filter(|p| p.protocol != edge_spec::PublishProtocol::Udp);
        let wakes = rules.enabled && rules.min == 0 && publish.is_some();
        if wakes && !services.contains_key(&key) {
            services.insert(
                key.clone(),
                CatalogService {
                    name: svc.name.clone(),
                    namespace: namespace.to_string(),
                    tags: svc.tags.clone(),
                    publish: publish.cloned(),
                    canary_weight: None,
                    activation: None,
                    scaled_by: None,
                    instances: Vec::new(),
                },
            );
        }
        let Some(entry) = services.get_mut(&key) else {
            continue;
        };
        entry.scaled_by = Some(crate::types::ScaledBy {
            job_id: job_id.to_string(),
            group: group.name.clone(),
        });
        if wakes {
            entry.activation = Some(crate::types::Activation {
                queue: rules.queue,
                timeout_ms: u64::try_from(rules.queue_timeout.as_millis()).unwrap_or(u64::MAX),
            });
        }
    }
}

/// Adds the instances of `alloc`'s services (those with a port, and on
/// named networks also those without, at port 0), under
/// their `service_key`, on a node
/// named `node_name` at `address`; `canary` when the allocation is an
/// unpromoted canary. Only running allocations serve.
pub fn add_alloc(
    services: &mut BTreeMap<String, CatalogService>,
    alloc: &Allocation,
    group: &Group,
    node_name: &str,
    address: &str,
    canary: bool,
) {
    if alloc.client_status != ClientStatus::Running {
        return;
    }
    for svc in &group.services {
        let port = match svc.port.as_ref() {
            Some(l) => match edge_spec::resolve_port(l, &alloc.resources.ports) {
                Some(p) => p,
                None => continue,
            },
            // A service without a port is still a name on the allocation's
            // networks, as a Compose service is on its project's: its
            // members reach it at any port they know.
            None if !alloc.networks.is_empty() => 0,
            None => continue,
        };
        let status = if alloc.desired_status == DesiredStatus::Stop {
            HealthStatus::Draining
        } else if svc.checks.is_empty() {
            HealthStatus::Passing
        } else {
            alloc.checks.get(&svc.name).copied().unwrap_or_default()
        };
        let entry = services
            .entry(edge_spec::service_key(&alloc.namespace, &svc.name))
            .or_insert_with(|| CatalogService {
                name: svc.name.clone(),
                namespace: alloc.namespace.clone(),
                tags: Vec::new(),
                publish: None,
                canary_weight: None,
                activation: None,
                scaled_by: None,
                instances: Vec::new(),
            });
        if entry.publish.is_none() {
            entry.publish = svc.publish.clone();
        }
        for t in &svc.tags {
            if !entry.tags.contains(t) {
                entry.tags.push(t.clone());
            }
        }
        entry.instances.push(ServiceInstance {
            service: svc.name.clone(),
            alloc_id: alloc.id.clone(),
            namespace: alloc.namespace.clone(),
            job_id: alloc.job_id.clone(),
            group: alloc.group.clone(),
            node_id: alloc.node_id.clone(),
            node_name: node_name.to_string(),
            address: address.to_string(),
            port,
            tags: if canary {
                let mut t = svc.tags.clone();
                t.push(CANARY_TAG.to_string());
                t
            } else {
                svc.tags.clone()
            },
            status,
            canary,
            networks: alloc
                .networks
                .iter()
                .map(|(name, ip)| {
                    (
                        edge_spec::NamedNetwork::key(&alloc.namespace, &alloc.job_id, name),
                        *ip,
                    )
                })
                .collect(),
        });
    }
}

/// Puts tags and instances in a stable order (catalogs are compared for
/// changes) and drops services left without instances, except those a
/// request wakes from zero.
pub fn finish(services: &mut BTreeMap<String, CatalogService>) {
    services.retain(|_, s| !s.instances.is_empty() || s.activation.is_some());
    for svc in services.values_mut() {
        svc.tags.sort();
        svc.instances.sort_by(|x, y| x.alloc_id.cmp(&y.alloc_id));
    }
}

/// The local allocations an agent runs, as it knows them without the
/// server: their allocation and the group they were made from.
pub struct LocalInstance<'a> {
    pub alloc: &'a Allocation,
    pub group: &'a Group,
}

/// `last` with this node's instances replaced by what local state says:
/// an allocation that stopped or whose checks fail no longer serves, and one
/// started since `last` was seen appears. Other nodes' instances stay as
/// last seen.
pub fn with_local_view<'a>(
    last: &Catalog,
    node_id: &str,
    node_name: &str,
    address: &str,
    local: impl IntoIterator<Item = LocalInstance<'a>>,
) -> Catalog {
    let mut services = last.services.clone();
    // Whether a copy is a canary is the server's to say; the last word
    // stands while it cannot be asked.
    let mut canaries = std::collections::BTreeSet::new();
    for svc in services.values_mut() {
        for i in svc
            .instances
            .iter()
            .filter(|i| i.node_id == node_id && i.canary)
        {
            canaries.insert(i.alloc_id.clone());
        }
        svc.instances.retain(|i| i.node_id != node_id);
    }
    for l in local {
        let canary = canaries.contains(&l.alloc.id);
        add_alloc(&mut services, l.alloc, l.group, node_name, address, canary);
    }
    finish(&mut services);
    Catalog {
        index: last.index,
        services,
        networks: last.networks.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_spec::{ParseOptions, parse_hcl};

    fn group() -> Group {
        let src = r#"job "web" {
  group "g" {
    network {
      port "http" {}
    }
    service {
      name = "web"
      port = "http"
      check {
        type     = "http"
        path     = "/"
        interval = "1s"
        timeout  = "1s"
      }
    }
    task "t" {
      driver = "exec"
      config {
        command = "x"
      }
    }
  }
}"#;
        parse_hcl(src, &ParseOptions::default()).unwrap().job.groups[0].clone()
    }

    fn alloc(id: &str, node: &str, status: &str, check: &str, port: u16) -> Allocation {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": "web.g[0]", "index": 0, "job_id": "web", "job_version": 0,
            "group": "g", "group_hash": 0, "node_id": node, "eval_id": "e",
            "client_status": status, "checks": {"web": check},
            "resources": {"cpu": 1, "memory": 1, "ports": [{"label": "http", "value": port, "to": port}]}
        }))
        .unwrap()
    }

    #[test]
    fn local_view_replaces_only_this_nodes_instances() {
        let g = group();
        let mut services = BTreeMap::new();
        for a in [
            alloc("a-remote", "other", "running", "passing", 2000),
            alloc("b-stopped", "me", "running", "passing", 2001),
            alloc("c-failing", "me", "running", "passing", 2002),
        ] {
            add_alloc(&mut services, &a, &g, "n", "10.0.0.1", a.id == "c-failing");
        }
        finish(&mut services);
        let last = Catalog {
            index: 7,
            services,
            networks: Default::default(),
        };
        let failing = alloc("c-failing", "me", "running", "critical", 2002);
        let stopped = alloc("b-stopped", "me", "complete", "passing", 2001);
        let new = alloc("d-new", "me", "running", "passing", 2003);
        let local = [&failing, &stopped, &new].map(|alloc| LocalInstance { alloc, group: &g });
        let view = with_local_view(&last, "me", "me-node", "10.0.0.2", local);
        let inst: Vec<(&str, &str, HealthStatus)> = view.services["web"]
            .instances
            .iter()
            .map(|i| (i.alloc_id.as_str(), i.address.as_str(), i.status))
            .collect();
        assert_eq!(
            inst,
            [
                ("a-remote", "10.0.0.1", HealthStatus::Passing),
                ("c-failing", "10.0.0.2", HealthStatus::Critical),
                ("d-new", "10.0.0.2", HealthStatus::Passing),
            ]
        );
        assert_eq!(view.index, 7);
        let canary = &view.services["web"].instances[1];
        assert!(canary.canary, "the server's canary flag stays");
        assert!(canary.tags.iter().any(|t| t == CANARY_TAG));
        assert!(!view.services["web"].instances[1].serving());
    }

    /// A service without a port is in the catalog only when its
    /// allocation is on named networks, where its name is what the
    /// members reach it by.
    #[test]
    fn a_portless_service_is_a_name_on_its_networks() {
        let mut g = group();
        g.services[0].port = None;
        g.services[0].checks.clear();
        let mut on_net = alloc("a", "n", "running", "passing", 2000);
        on_net
            .networks
            .insert("back".into(), "172.27.16.3".parse().unwrap());
        let off_net = alloc("b", "n", "running", "passing", 2001);
        let mut services = BTreeMap::new();
        for a in [&on_net, &off_net] {
            add_alloc(&mut services, a, &g, "n", "10.0.0.1", false);
        }
        finish(&mut services);
        let inst = &services["web"].instances;
        assert_eq!(inst.len(), 1);
        assert_eq!((inst[0].alloc_id.as_str(), inst[0].port), ("a", 0));
        assert_eq!(
            inst[0]
                .networks
                .values()
                .next()
                .map(|ip| ip.to_string())
                .as_deref(),
            Some("172.27.16.3")
        );
    }
}
