//! Node scores: Nomad's binpack (or spread) fit, lowered for nodes already
//! running copies of the same group, averaged with affinity and spread scores.

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
    let (cpu, mem) = free_after(node, cpu_used, memory_used, req);
    fit_of_free(algorithm, cpu, mem)
}

/// The share of a node's cpu and memory left free once the copy is on it.
pub(crate) fn free_after(
    node: &Node,
    cpu_used: u64,
    memory_used: u64,
    req: &GroupReq<'_>,
) -> (f64, f64) {
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
    (cpu, mem)
}

/// [`fit_score`] from the free shares: falls as they grow under binpack,
/// rises under spread.
pub(crate) fn fit_of_free(algorithm: Algorithm, cpu: f64, mem: f64) -> f64 {
    let total = 10f64.powf(cpu) + 10f64.powf(mem);
    let raw = match algorithm {
        Algorithm::Binpack => 20.0 - total,
        Algorithm::Spread => total - 2.0,
    };
    (raw / 18.0).clamp(0.0, 1.0)
}

/// Nomad's normalization: the mean of the node's scores, which are its fit,
/// its job anti-affinity penalty when it holds `collisions` copies of the
/// group of `count` already, and `extra_n` others (affinity, spread)
/// summing to `extra`.
pub(crate) fn combine(fit: f64, collisions: u32, count: u32, extra: f64, extra_n: u32) -> f64 {
    let mut sum = fit + extra;
    let mut n = 1 + extra_n;
    if collisions > 0 {
        sum -= f64::from(collisions + 1) / f64::from(count.max(1));
        n += 1;
    }
    sum / f64::from(n)
}

/// The most [`combine`] gives a node whose fit is at most `fit_max`,
/// whatever its anti-affinity penalty (a negative penalty still raises a
/// mean that is below it).
pub(crate) fn combine_bound(fit_max: f64, extra: f64, extra_n: u32) -> f64 {
    let sum = fit_max + extra;
    let n = f64::from(1 + extra_n);
    (sum / n).max(sum / (n + 1.0))
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
        assert!((combine(0.9, 1, 4, 0.0, 0) - 0.2).abs() < 1e-9);
        assert!(combine(0.9, 2, 4, 0.0, 0) < combine(0.9, 1, 4, 0.0, 0));
        assert_eq!(combine(0.4, 0, 4, 0.0, 0), 0.4);
    }

    #[test]
    fn scores_are_averaged_and_bounded() {
        assert!((combine(0.2, 0, 4, 1.0, 1) - 0.6).abs() < 1e-9);
        for fit in [0.0, 0.5, 1.0] {
            for collisions in 0..3 {
                for (extra, n) in [(0.0, 0), (-1.0, 1), (1.5, 2), (-2.0, 2)] {
                    let s = combine(fit, collisions, 4, extra, n);
                    assert!(s <= combine_bound(fit, extra, n) + 1e-12);
                }
            }
        }
    }
}
