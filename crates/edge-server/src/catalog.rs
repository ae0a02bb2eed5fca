//! The service catalog, derived from allocations: every running allocation's
//! `service` blocks become instances at its node's address and host port,
//! with the health its agent reports. Computed once per store index and
//! shared; its own index moves only when its content changes, so watchers
//! (agents feeding DNS and the load balancer) wake only for real changes.

use crate::Server;
use edge_api::{Catalog, CatalogService};
use edge_spec::{Allocation, DeploymentGroup};
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

/// The deployment group an allocation is an unpromoted canary of.
fn canary_of<'a>(s: &'a State, a: &Allocation) -> Option<&'a DeploymentGroup> {
    if !a.canary {
        return None;
    }
    let d = s.deployments.get(a.deployment_id.as_ref()?)?;
    let g = d.groups.get(&a.group)?;
    (d.status.is_active() && !g.promoted).then_some(g)
}

fn build(s: &State) -> Catalog {
    let mut services: BTreeMap<String, CatalogService> = BTreeMap::new();
    let mut weights: BTreeMap<String, u32> = BTreeMap::new();
    for a in s.allocs.values() {
        let Some(group) = s.jobs.get(&a.job_key()).and_then(|j| j.group(&a.group)) else {
            continue;
        };
        let Some(node) = s.nodes.get(&a.node_id) else {
            continue;
        };
        let canary = canary_of(s, a);
        if let Some(w) = canary.and_then(DeploymentGroup::weighted_canaries) {
            for svc in &group.services {
                weights.insert(edge_spec::service_key(&a.namespace, &svc.name), w);
            }
        }
        edge_api::catalog::add_alloc(
            &mut services,
            a,
            group,
            &node.name,
            &node.address,
            canary.is_some(),
        );
    }
    for (name, w) in weights {
        if let Some(svc) = services.get_mut(&name) {
            svc.canary_weight = Some(w);
        }
    }
    for job in s.jobs.values() {
        if job.stop || job.job_type != edge_spec::JobType::Service {
            continue;
        }
        for g in &job.groups {
            if let Some(sc) = &g.scaling {
                edge_api::catalog::add_scaling(
                    &mut services,
                    (&job.namespace, &job.id),
                    g,
                    &sc.resolve(g.count),
                );
            }
        }
    }
    edge_api::catalog::finish(&mut services);
    Catalog {
        index: 0,
        services,
        networks: s.networks.values().map(|n| (n.key(), n.subnet)).collect(),
    }
}
