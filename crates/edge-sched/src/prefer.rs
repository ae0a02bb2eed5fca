//! Nomad's affinities and spreads: soft preferences averaged into a node's
//! score. Nomad scores every node when a group has them; here the nodes
//! fall, once per evaluation, into the few classes that match the same
//! affinities and hold the same spread values, and each placement samples
//! nodes only from the classes whose best possible score could still beat
//! the best node found, best class first.

use crate::Algorithm;
use crate::feasible::{Compiled, Operand};
use crate::rank;
use edge_spec::{Group, Job, Node};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// The value index of a node that lacks an attribute.
const MISSING: u32 = u32::MAX;

/// FNV-1a, for the short keys classifying hashes once per node: std's
/// SipHash showed in profiles of large evaluations.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Keys scanned for before an [`Index`] hashes them.
const SCAN: usize = 16;

/// Distinct keys numbered in first-seen order: scanned while they are few
/// (most attributes take a handful of values), hashed past that.
struct Index<K> {
    list: Vec<K>,
    map: HashMap<K, u32, BuildHasherDefault<Fnv>>,
}

impl<K: Eq + Hash + Clone> Index<K> {
    fn new() -> Index<K> {
        Index {
            list: Vec::new(),
            map: HashMap::default(),
        }
    }

    fn get<Q: Eq + Hash + ?Sized>(&self, k: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
    {
        if self.list.len() <= SCAN {
            return self
                .list
                .iter()
                .position(|x| x.borrow() == k)
                .map(|i| i as u32);
        }
        self.map.get(k).copied()
    }

    fn insert(&mut self, k: K) -> u32 {
        let i = self.list.len() as u32;
        self.list.push(k);
        if self.list.len() > SCAN {
            if self.map.is_empty() {
                for (j, x) in self.list.iter().enumerate() {
                    self.map.insert(x.clone(), j as u32);
                }
            } else {
                self.map.insert(self.list[i as usize].clone(), i);
            }
        }
        i
    }
}

struct SpreadRule<'j> {
    /// Index into [`Prefs::operands`].
    operand: usize,
    /// This spread's weight over the sum of every spread's weight.
    share: f64,
    /// Target values with their desired copies; empty for an even spread.
    targets: Vec<(&'j str, f64)>,
    /// Desired copies on values no target names: what the targets leave
    /// of the group's count.
    rest: Option<f64>,
    /// Per value of the operand: its desired copies; `None` when no target gives it any.
    desired: Vec<Option<f64>>,
    /// Per value: live and placed copies of the group.
    counts: Vec<u32>,
    /// Least and most copies over the values holding any, for an even
    /// spread; set by [`Prefs::rank`].
    least: u32,
    most: u32,
}

impl SpreadRule<'_> {
    /// Its operand took a new value `v`, next in index.
    fn add_value(&mut self, v: &str) {
        let desired = match self.targets.iter().find(|(t, _)| *t == v) {
            Some(&(_, d)) => Some(d),
            None if self.targets.is_empty() => None,
            None => self.rest,
        };
        self.desired.push(desired);
        self.counts.push(0);
    }

    /// Nomad's spread boost for one more copy on a node of value `v`.
    fn score(&self, v: u32) -> f64 {
        let Some(i) = (v != MISSING).then_some(v as usize) else {
            return -1.0;
        };
        let used = self.counts[i];
        if self.targets.is_empty() {
            if self.most == 0 {
                return 0.0;
            }
            let least = f64::from(self.least);
            return if used != self.least {
                (least - f64::from(used)) / least
            } else if self.least == self.most {
                -1.0
            } else {
                f64::from(self.most - self.least) / least
            };
        }
        match self.desired[i] {
            Some(d) if d > 0.0 => (d - f64::from(used) - 1.0) / d * self.share,
            _ => -1.0,
        }
    }
}

/// Nodes with the same affinity matches and spread values.
pub(crate) struct Class {
    /// Matched affinity weights over the sum of all weights' sizes.
    affinity: f64,
    /// Per spread: the nodes' value index.
    values: Vec<u32>,
    /// The usable nodes of the class, in the evaluation's shuffled order.
    pub nodes: Vec<u32>,
    /// Where the next placement's walk starts.
    pub cursor: usize,
    /// Set when no node of the class could take a copy: placements only
    /// fill nodes, so none will.
    pub dead: bool,
    /// Least free cpu and memory shares once a copy is on a node (most,
    /// under the spread algorithm): what bounds the class's fit scores.
    cpu_free: f64,
    mem_free: f64,
    /// This placement's affinity and spread scores, and how many they are.
    pub extra: f64,
    pub extra_n: u32,
}

/// A group's affinities and spreads, with the node classes they make.
pub(crate) struct Prefs<'j> {
    /// Every node value the affinities and spreads read, once each.
    operands: Vec<Operand<'j>>,
    /// Per operand: the values seen so far and their index.
    interned: Vec<Index<String>>,
    affinities: Vec<(Compiled<'j>, i64)>,
    affinity_total: f64,
    spreads: Vec<SpreadRule<'j>>,
    algorithm: Algorithm,
    /// Per node index: 1 + its class, 0 until classified.
    class_of: Vec<u32>,
    classes: Vec<Class>,
    /// Per operand value indexes to their class.
    keys: Index<Vec<u32>>,
    key: Vec<u32>,
    ready: bool,
    /// Live classes by the best score a node of theirs could get.
    ranked: Vec<(f64, u32)>,
}

impl<'j> Prefs<'j> {
    /// `None` when the group has neither affinities nor spreads.
    pub(crate) fn new(job: &'j Job, group: &'j Group, node_count: usize) -> Option<Prefs<'j>> {
        let task_affinities = group.tasks.iter().flat_map(|t| &t.affinities);
        // Stored jobs are not validated again: weights are clamped.
        let affinities: Vec<(Compiled<'j>, i64)> = job
            .affinities
            .iter()
            .chain(&group.affinities)
            .chain(task_affinities)
            .filter(|a| edge_spec::Affinity::takes(a.operator))
            .map(|a| {
                let rule = Compiled::new(&a.attribute, a.operator, &a.value);
                (rule, a.weight.clamp(-100, 100))
            })
            .filter(|(_, w)| *w != 0)
            .collect();
        // As in Nomad, a job's spread over an attribute the group spreads
        // over too gives way to the group's.
        let job_spreads = job
            .spreads
            .iter()
            .filter(|s| group.spreads.iter().all(|g| g.attribute != s.attribute));
        let spreads: Vec<&edge_spec::Spread> = group.spreads.iter().chain(job_spreads).collect();
        if affinities.is_empty() && spreads.is_empty() {
            return None;
        }
        let weights: f64 = spreads.iter().map(|s| s.weight.clamp(0, 100) as f64).sum();
        let count = f64::from(group.count);
        let mut operands: Vec<Operand<'j>> = Vec::new();
        let mut operand = |o: Operand<'j>| match operands.iter().position(|x| *x == o) {
            Some(i) => i,
            None => {
                operands.push(o);
                operands.len() - 1
            }
        };
        for (rule, _) in &affinities {
            for o in rule.operands() {
                if !matches!(o, Operand::Literal(_)) {
                    operand(o);
                }
            }
        }
        let spreads = spreads
            .into_iter()
            .map(|s| {
                let targets: Vec<(&str, f64)> = s
                    .targets
                    .iter()
                    .map(|t| {
                        (
                            t.value.as_str(),
                            t.percent.clamp(0, 100) as f64 / 100.0 * count,
                        )
                    })
                    .collect();
                let sum: f64 = targets.iter().map(|(_, d)| d).sum();
                SpreadRule {
                    operand: operand(Operand::parse(&s.attribute)),
                    share: if weights > 0.0 {
                        s.weight.clamp(0, 100) as f64 / weights
                    } else {
                        0.0
                    },
                    rest: (sum > 0.0 && sum < count).then_some(count - sum),
                    targets,
                    desired: Vec::new(),
                    counts: Vec::new(),
                    least: 0,
                    most: 0,
                }
            })
            .collect();
        Some(Prefs {
            interned: operands.iter().map(|_| Index::new()).collect(),
            operands,
            affinity_total: affinities.iter().map(|(_, w)| w.abs() as f64).sum(),
            affinities,
            spreads,
            algorithm: Algorithm::Binpack,
            class_of: vec![0; node_count],
            classes: Vec::new(),
            keys: Index::new(),
            key: Vec::new(),
            ready: false,
            ranked: Vec::new(),
        })
    }

    fn classify(&mut self, idx: usize, node: &Node) -> usize {
        if self.class_of[idx] != 0 {
            return self.class_of[idx] as usize - 1;
        }
        self.key.clear();
        for (o, operand) in self.operands.iter().enumerate() {
            let v = match operand.resolve(node) {
                None => MISSING,
                Some(v) => match self.interned[o].get(v) {
                    Some(i) => i,
                    None => {
                        let i = self.interned[o].insert(v.to_string());
                        for s in self.spreads.iter_mut().filter(|s| s.operand == o) {
                            s.add_value(v);
                        }
                        i
                    }
                },
            };
            self.key.push(v);
        }
        let c = match self.keys.get(self.key.as_slice()) {
            Some(c) => c as usize,
            None => {
                // The affinities read only the operands' values, the same
                // for every node of the class.
                let matched: i64 = self
                    .affinities
                    .iter()
                    .filter(|(rule, _)| rule.holds(node))
                    .map(|(_, w)| w)
                    .sum();
                let c = self.classes.len();
                self.classes.push(Class {
                    affinity: if self.affinity_total > 0.0 {
                        matched as f64 / self.affinity_total
                    } else {
                        0.0
                    },
                    values: self.spreads.iter().map(|s| self.key[s.operand]).collect(),
                    nodes: Vec::new(),
                    cursor: 0,
                    dead: false,
                    cpu_free: 1.0,
                    mem_free: 1.0,
                    extra: 0.0,
                    extra_n: 0,
                });
                if self.algorithm == Algorithm::Spread {
                    self.classes[c].cpu_free = 0.0;
                    self.classes[c].mem_free = 0.0;
                }
                self.keys.insert(self.key.clone());
                c
            }
        };
        self.class_of[idx] = c as u32 + 1;
        c
    }

    fn bound_free(&mut self, c: usize, (cpu, mem): (f64, f64)) {
        let class = &mut self.classes[c];
        if self.algorithm == Algorithm::Spread {
            class.cpu_free = class.cpu_free.max(cpu);
            class.mem_free = class.mem_free.max(mem);
        } else {
            class.cpu_free = class.cpu_free.min(cpu);
            class.mem_free = class.mem_free.min(mem);
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready
    }

    /// Starts classifying the evaluation's usable nodes under `algorithm`.
    pub(crate) fn begin(&mut self, algorithm: Algorithm) {
        self.algorithm = algorithm;
        for c in &mut self.classes {
            let start = if algorithm == Algorithm::Spread {
                0.0
            } else {
                1.0
            };
            c.cpu_free = start;
            c.mem_free = start;
        }
    }

    /// Classifies a usable node, with the free shares it would have with
    /// one more copy.
    pub(crate) fn measure(&mut self, idx: usize, node: &Node, free: (f64, f64)) {
        let c = self.classify(idx, node);
        self.bound_free(c, free);
    }

    /// Adds a measured node to its class's walk.
    pub(crate) fn enlist(&mut self, idx: usize) {
        if let Some(c) = self.class_of[idx].checked_sub(1) {
            self.classes[c as usize].nodes.push(idx as u32);
        }
    }

    pub(crate) fn finish(&mut self) {
        self.ready = true;
    }

    /// One more copy of the group on node `idx`, which is left with `free`
    /// shares for another.
    pub(crate) fn count_copy(&mut self, idx: usize, node: &Node, free: (f64, f64)) {
        let c = self.classify(idx, node);
        for (s, &v) in self.spreads.iter_mut().zip(&self.classes[c].values) {
            if v != MISSING {
                s.counts[v as usize] = s.counts[v as usize].saturating_add(1);
            }
        }
        self.bound_free(c, free);
    }

    /// Scores the live classes for this placement and orders them by the
    /// best score a node of theirs could get; returns how many there are.
    pub(crate) fn rank(&mut self) -> usize {
        for s in &mut self.spreads {
            let held = s.counts.iter().copied().filter(|&n| n > 0);
            s.least = held.clone().min().unwrap_or(0);
            s.most = held.max().unwrap_or(0);
        }
        self.ranked.clear();
        for (i, class) in self.classes.iter_mut().enumerate() {
            if class.dead || class.nodes.is_empty() {
                continue;
            }
            let (mut extra, mut n) = (0.0, 0);
            if class.affinity != 0.0 {
                extra += class.affinity;
                n += 1;
            }
            let spread: f64 = self
                .spreads
                .iter()
                .zip(&class.values)
                .map(|(s, &v)| s.score(v))
                .sum();
            if spread != 0.0 {
                extra += spread;
                n += 1;
            }
            class.extra = extra;
            class.extra_n = n;
            let fit = rank::fit_of_free(self.algorithm, class.cpu_free, class.mem_free);
            self.ranked
                .push((rank::combine_bound(fit, extra, n), i as u32));
        }
        self.ranked
            .sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        self.ranked.len()
    }

    /// The `k`th best class of [`Prefs::rank`] and its bound.
    pub(crate) fn ranked(&self, k: usize) -> (f64, usize) {
        let (bound, c) = self.ranked[k];
        (bound, c as usize)
    }

    pub(crate) fn class_mut(&mut self, c: usize) -> &mut Class {
        &mut self.classes[c]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        targets: &[(&'static str, f64)],
        rest: Option<f64>,
        counts: &[u32],
    ) -> SpreadRule<'static> {
        let mut r = SpreadRule {
            operand: 0,
            share: 1.0,
            targets: targets.to_vec(),
            rest,
            desired: Vec::new(),
            counts: Vec::new(),
            least: 0,
            most: 0,
        };
        for (i, &n) in counts.iter().enumerate() {
            r.add_value(["a", "b", "c"][i]);
            r.counts[i] = n;
        }
        let held = r.counts.iter().copied().filter(|&n| n > 0);
        r.least = held.clone().min().unwrap_or(0);
        r.most = held.max().unwrap_or(0);
        r
    }

    #[test]
    fn an_index_numbers_keys_alike_before_and_after_hashing() {
        let mut ix: Index<String> = Index::new();
        for n in 0..40 {
            assert_eq!(ix.get(n.to_string().as_str()), None);
            assert_eq!(ix.insert(n.to_string()), n);
        }
        for n in 0..40u32 {
            assert_eq!(ix.get(n.to_string().as_str()), Some(n));
        }
    }

    #[test]
    fn an_even_spread_boosts_the_values_behind() {
        // Nothing placed yet: no preference.
        assert_eq!(rule(&[], None, &[0, 0]).score(0), 0.0);
        let r = rule(&[], None, &[2, 0, 1]);
        assert_eq!(r.score(1), 1.0);
        assert_eq!(r.score(0), -1.0);
        assert_eq!(r.score(2), 1.0);
        assert_eq!(rule(&[], None, &[1, 1]).score(0), -1.0);
        assert_eq!(r.score(MISSING), -1.0);
    }

    #[test]
    fn targets_boost_values_under_their_share_and_penalize_the_rest() {
        // 10 copies at 70/30: 7 and 3 desired.
        let r = rule(&[("a", 7.0), ("b", 3.0)], None, &[0, 0, 0]);
        assert!((r.score(0) - 6.0 / 7.0).abs() < 1e-9);
        assert!((r.score(1) - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(r.score(2), -1.0, "no target and nothing left");
        let r = rule(&[("a", 7.0), ("b", 3.0)], None, &[7, 5]);
        assert!(r.score(0) < 0.0 && r.score(1) < 0.0);
        let r = rule(&[("a", 8.0)], Some(2.0), &[0, 0, 0]);
        assert!(
            (r.score(2) - 0.5).abs() < 1e-9,
            "values left out share the rest"
        );
    }
}
