//! Invariants over many random small clusters: no node is ever over-committed,
//! no host port is handed out twice, and every copy is placed or queued.

use crate::common::{Cluster, dynamic_port, group, job, node, static_port};
use edge_sched::Algorithm;
use edge_spec::JobType;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeSet, HashMap};

fn check_cluster(c: &Cluster, case: u64) {
    let mut cpu: HashMap<&str, u64> = HashMap::new();
    let mut mem: HashMap<&str, u64> = HashMap::new();
    let mut ports: HashMap<&str, BTreeSet<u16>> = HashMap::new();
    for a in c.allocs.iter().filter(|a| a.is_live()) {
        *cpu.entry(&a.node_id).or_default() += u64::from(a.resources.cpu);
        *mem.entry(&a.node_id).or_default() += u64::from(a.resources.memory);
        for p in &a.resources.ports {
            assert!(
                ports.entry(&a.node_id).or_default().insert(p.value),
                "case {case}: port {} twice on {}",
                p.value,
                a.node_id
            );
        }
    }
    for n in &c.nodes {
        let id = n.id.as_str();
        let cap_cpu = u64::from(n.resources.cpu - n.reserved.cpu);
        let cap_mem = u64::from(n.resources.memory - n.reserved.memory);
        assert!(
            cpu.get(id).copied().unwrap_or(0) <= cap_cpu,
            "case {case}: cpu on {id}"
        );
        assert!(
            mem.get(id).copied().unwrap_or(0) <= cap_mem,
            "case {case}: memory on {id}"
        );
    }
}

#[test]
fn random_clusters_are_never_over_committed() {
    let (mut placed_total, mut queued_total) = (0, 0);
    for case in 0..300u64 {
        let mut r = SmallRng::seed_from_u64(case);
        let nodes = (0..r.random_range(1..8))
            .map(|i| {
                let mut n = node(
                    &format!("n{i}"),
                    r.random_range(500..4000),
                    r.random_range(500..4000),
                );
                n.reserved.cpu = r.random_range(0..200);
                n.drain = r.random_ratio(1, 10);
                n
            })
            .collect();
        let mut c = Cluster::new(nodes);
        c.config.algorithm = if r.random() {
            Algorithm::Binpack
        } else {
            Algorithm::Spread
        };
        c.config.port_min = 30000;
        c.config.port_max = 30000 + r.random_range(2..12);
        for j in 0..r.random_range(1..5) {
            let groups = (0..r.random_range(1..3))
                .map(|g| {
                    let mut g = group(
                        &format!("g{g}"),
                        r.random_range(0..10),
                        r.random_range(50..1500),
                        r.random_range(50..1500),
                    );
                    if r.random_ratio(1, 3) {
                        g.network.ports.push(static_port("s", 8080));
                    }
                    for k in 0..r.random_range(0..3) {
                        g.network.ports.push(dynamic_port(&format!("d{k}")));
                    }
                    g
                })
                .collect();
            let mut jb = job(&format!("j{j}"), groups);
            jb.job_type = match r.random_range(0..3) {
                0 => JobType::Service,
                1 => JobType::Batch,
                _ => JobType::System,
            };
            let plan = c.run(&jb, case * 10 + j);
            check_cluster(&c, case);
            placed_total += plan.place.len();
            queued_total += plan.queued.values().sum::<u32>();
            if jb.job_type != JobType::System {
                for g in &jb.groups {
                    let placed = plan.place.iter().filter(|a| a.group == g.name).count() as u32;
                    assert_eq!(placed + plan.queued[&g.name], g.count, "case {case}");
                }
            }
            // Shrink the job and move it along: still never over-committed.
            for g in &mut jb.groups {
                g.count /= 2;
            }
            jb.version = 1;
            jb.groups[0].tasks[0].resources.cpu += 10;
            c.run(&jb, case * 10 + j + 5);
            check_cluster(&c, case);
        }
    }
    // The random cases must both fill nodes and run out of room.
    assert!(
        placed_total > 1000 && queued_total > 100,
        "{placed_total} {queued_total}"
    );
}
