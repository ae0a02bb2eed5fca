//! The service catalog, derived from allocations: every running allocation's
//! `service` blocks become instances at its node's address and host port,
//! with the health its agent reports. Computed once per store index and
//! shared; its own index moves only when its content changes, so watchers
//! (agents feeding DNS and the load balancer) wake only for real changes.

use crate::Server;
use edge_api::{Catalog, CatalogService, HealthStatus, ServiceInstance};
use edge_spec::{ClientStatus, DesiredStatus};
use edge_store::State;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct CatalogCache {
    inner: Mutex<Option<Cached>>,
}

struct Cached {
    store_index: u64,
    catalog: Arc<Catalog>,
}

impl CatalogCache {
    /// The catalog as of the store's current state.
    pub fn get(&self, server: &Server) -> Arc<Catalog> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = server.store.index();
        if let Some(c) = g.as_ref().filter(|c| c.store_index == now) {
            return c.catalog.clone();
        }
        let (at, mut fresh) = server.store.read(|s| (s.index, build(s)));
        let catalog = match g.as_ref() {
            Some(old) if old.catalog.services == fresh.services => old.catalog.clone(),
            _ => {
                // Never 0: a watcher sending index 0 would not block.
                fresh.index = at.max(1);
                Arc::new(fresh)
            }
        };
        *g = Some(Cached {
            store_index: at,
            catalog: catalog.clone(),
        });
        catalog
    }
}

fn build(s: &State) -> Catalog {
    let mut services: BTreeMap<String, CatalogService> = BTreeMap::new();
    for a in s.allocs.values() {
        if a.client_status != ClientStatus::Running {
            continue;
        }
        let Some(job) = s.jobs.get(&a.job_id) else {
            continue;
        };
        let Some(group) = job.group(&a.group) else {
            continue;
        };
        let Some(node) = s.nodes.get(&a.node_id) else {
            continue;
        };
        for svc in &group.services {
            let Some(port) = svc
                .port
                .as_ref()
                .and_then(|l| a.resources.ports.iter().find(|p| &p.label == l))
            else {
                continue;
            };
            let status = if a.desired_status == DesiredStatus::Stop {
                HealthStatus::Draining
            } else if svc.checks.is_empty() {
                HealthStatus::Passing
            } else {
                a.checks.get(&svc.name).copied().unwrap_or_default()
            };
            let entry = services
                .entry(svc.name.clone())
                .or_insert_with(|| CatalogService {
                    name: svc.name.clone(),
                    tags: Vec::new(),
                    publish: None,
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
                alloc_id: a.id.clone(),
                job_id: a.job_id.clone(),
                group: a.group.clone(),
                node_id: a.node_id.clone(),
                node_name: node.name.clone(),
                address: node.address.clone(),
                port: port.value,
                tags: svc.tags.clone(),
                status,
            });
        }
    }
    for svc in services.values_mut() {
        svc.tags.sort();
        svc.instances.sort_by(|x, y| x.alloc_id.cmp(&y.alloc_id));
    }
    Catalog { index: 0, services }
}
