//! Node scores: Nomad's binpack (or spread) fit, lowered for nodes already
//! running copies of the same group.

use crate::Algorithm;
use crate::feasible::GroupReq;
use edge_spec::Node;

/// Feasible candidates scored per placement: enough to find a good node,
/// few enough that placing on a large cluster stays cheap.
pub(crate) fn candidate_limit(nodes: usize) -> usize {
    let log2 = usize::BITS - nodes.saturating_sub(1).leading_zeros();
    (log2 as usize).max(2)
}

/// 0 (worst) to 1 (best) for a node once the copy is on it. Binpack favours
/// nodes left with little free cpu and memory, spread the opposite.
pub(crate) fn fit_score(
    algorithm: Algorithm,
    node: &Node,
    cpu_used: u64,
    memory_used: u64,
    req: &GroupReq<'_>,
) -> f64 {
    let free = |cap: u32, reserved: u32, used: u64, ask: u64| {
        let cap = cap.saturating_sub(reserved);
        if cap == 0 {
            return 0.0;
        }
        (1.0 - used.saturating_add(ask) as f64 / f64::from(cap)).clamp(0.0, 1.0)
    };
    let cpu = free(node.resources.cpu, node.reserved.cpu, cpu_used, req.cpu);
    let mem = free(
        node.resources.memory,
        node.reserved.memory,
        memory_used,
        req.memory,
    );
    let total = 10f64.powf(cpu) + 10f64.powf(mem);
    let raw = match algorithm {
        Algorithm::Binpack => 20.0 - total,
        Algorithm::Spread => total - 2.0,
    };
    (raw / 18.0).clamp(0.0, 1.0)
}

/// Nomad's job anti-affinity: a node already holding `collisions` copies of
/// a group of `count` gets a negative score averaged with its fit.
pub(crate) fn with_anti_affinity(fit: f64, collisions: u32, count: u32) -> f64 {
    if collisions == 0 {
        return fit;
    }
    let penalty = -f64::from(collisions + 1) / f64::from(count.max(1));
    (fit + penalty) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_grows_with_log2_of_nodes() {
        assert_eq!(candidate_limit(1), 2);
        assert_eq!(candidate_limit(2), 2);
        assert_eq!(candidate_limit(5), 3);
        assert_eq!(candidate_limit(1024), 10);
        assert_eq!(candidate_limit(5000), 13);
    }

    #[test]
    fn penalty_lowers_scores() {
        assert!((with_anti_affinity(0.9, 1, 4) - 0.2).abs() < 1e-9);
        assert!(with_anti_affinity(0.9, 2, 4) < with_anti_affinity(0.9, 1, 4));
        assert_eq!(with_anti_affinity(0.4, 0, 4), 0.4);
    }
}
