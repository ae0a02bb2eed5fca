//! Host ports: whether a node has the ports a group asks for, and picking
//! dynamic ones deterministically from the seeded generator.

use crate::SchedulerConfig;
use crate::cluster::NodeState;
use crate::feasible::{Dimension, GroupReq, Reject};
use edge_spec::AssignedPort;
use rand::Rng;
use rand::rngs::SmallRng;

fn range_len(cfg: &SchedulerConfig) -> usize {
    if cfg.port_min > cfg.port_max {
        0
    } else {
        usize::from(cfg.port_max - cfg.port_min) + 1
    }
}

fn in_range(cfg: &SchedulerConfig, p: u16) -> bool {
    (cfg.port_min..=cfg.port_max).contains(&p)
}

/// Static ports free and enough free ports in the dynamic range.
pub(crate) fn fits(
    st: &NodeState<'_>,
    req: &GroupReq<'_>,
    cfg: &SchedulerConfig,
) -> Result<(), Reject> {
    for (i, &p) in req.static_ports.iter().enumerate() {
        if st.port_used(p) || req.static_ports[..i].contains(&p) {
            return Err(Reject::Exhausted(Dimension::StaticPort(p)));
        }
    }
    if req.dynamic_ports == 0 {
        return Ok(());
    }
    let range = range_len(cfg);
    let reserved_static = req.static_ports.len();
    // Most nodes hold far fewer ports than the range: skip the exact count.
    if range >= st.port_count_upper() + reserved_static + req.dynamic_ports {
        return Ok(());
    }
    let taken = st.ports_in(cfg.port_min, cfg.port_max)
        + req
            .static_ports
            .iter()
            .filter(|p| in_range(cfg, **p))
            .count();
    if range.saturating_sub(taken) >= req.dynamic_ports {
        Ok(())
    } else {
        Err(Reject::Exhausted(Dimension::DynamicPorts))
    }
}

/// The group's ports on a node that passed [`fits`]; `None` only if the
/// node's ports changed in between, which the caller treats as exhaustion.
pub(crate) fn assign(
    st: &NodeState<'_>,
    req: &GroupReq<'_>,
    cfg: &SchedulerConfig,
    rng: &mut SmallRng,
) -> Option<Vec<AssignedPort>> {
    let specs = &req.group.network.ports;
    let mut out: Vec<AssignedPort> = Vec::with_capacity(specs.len());
    let range = range_len(cfg);
    for spec in specs {
        let value = match spec.static_port {
            Some(p) => p,
            None => {
                if range == 0 {
                    return None;
                }
                let start = rng.random_range(0..range);
                (0..range)
                    .map(|k| cfg.port_min + ((start + k) % range) as u16)
                    .find(|&p| {
                        !st.port_used(p)
                            && !req.static_ports.contains(&p)
                            && out.iter().all(|a| a.value != p)
                    })?
            }
        };
        out.push(AssignedPort {
            label: spec.label.clone(),
            value,
            to: spec.to.unwrap_or(value),
        });
    }
    Some(out)
}
