//! The cluster as one evaluation changes it: node usage from the snapshot plus
//! what the plan has placed and stopped so far, node selection, and building
//! allocations.

use crate::feasible::{
    self, DISTINCT_HOSTS_REASON, DcFilter, Dimension, GroupReq, Operand, Reject,
};
use crate::prefer::Prefs;
use crate::{NodeUsage, Snapshot, ports, rank};
use edge_spec::{
    AllocMetric, AllocResources, Allocation, ClientStatus, DesiredStatus, Evaluation, Job, Node,
    NodeStatus,
};
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use std::collections::{BTreeMap, HashMap};

/// One node's usage: the snapshot's, plus this plan's changes kept apart so
/// that the snapshot's port sets are never cloned.
#[derive(Debug)]
pub(crate) struct NodeState<'a> {
    base: Option<&'a NodeUsage>,
    cpu: i64,
    memory: i64,
    added: Vec<u16>,
    removed: Vec<u16>,
    /// Live allocations of the evaluated job, for `distinct_hosts`.
    pub job_allocs: u32,
}

impl NodeState<'_> {
    pub(crate) fn cpu(&self) -> u64 {
        apply_delta(self.base.map_or(0, |u| u.cpu), self.cpu)
    }

    pub(crate) fn memory(&self) -> u64 {
        apply_delta(self.base.map_or(0, |u| u.memory), self.memory)
    }

    pub(crate) fn port_used(&self, p: u16) -> bool {
        self.added.contains(&p)
            || (self.base.is_some_and(|u| u.ports.contains(&p)) && !self.removed.contains(&p))
    }

    /// At least the number of ports in use.
    pub(crate) fn port_count_upper(&self) -> usize {
        self.base.map_or(0, |u| u.ports.len()) + self.added.len()
    }

    /// Ports in use within `min..=max`.
    pub(crate) fn ports_in(&self, min: u16, max: u16) -> usize {
        let base = self.base.map_or(0, |u| {
            u.ports
                .range(min..=max)
                .filter(|p| !self.removed.contains(p))
                .count()
        });
        base + self
            .added
            .iter()
            .filter(|p| (min..=max).contains(*p))
            .count()
    }
}

/// The snapshot's usage plus this plan's change, floored at zero.
fn apply_delta(base: u64, delta: i64) -> u64 {
    if delta >= 0 {
        base.saturating_add(delta.unsigned_abs())
    } else {
        base.saturating_sub(delta.unsigned_abs())
    }
}

/// Feasible candidates already holding copies that a walk sets aside,
/// scored only when too few fresh ones turn up.
const MAX_SKIP: usize = 3;

pub(crate) struct Cluster<'a> {
    pub snap: &'a Snapshot<'a>,
    pub job: &'a Job,
    pub eval: &'a Evaluation,
    pub rng: SmallRng,
    by_id: HashMap<&'a str, usize>,
    /// Node index to 1 + its index in `states`; 0 until first touched.
    slot: Vec<u32>,
    states: Vec<NodeState<'a>>,
    job_on_node: HashMap<&'a str, u32>,
    /// Live copies per value of each `distinct_property` attribute, by
    /// (group, attribute); the group is `None` for a job-level one.
    props: HashMap<(Option<&'a str>, &'a str), HashMap<&'a str, u32>>,
    /// Nodes that may take new allocations, shuffled once per evaluation.
    order: Vec<u32>,
    cursor: usize,
}

impl<'a> Cluster<'a> {
    pub(crate) fn new(snap: &'a Snapshot<'a>, job: &'a Job, eval: &'a Evaluation) -> Cluster<'a> {
        let mut rng = SmallRng::seed_from_u64(snap.seed);
        let mut dcs = DcFilter::new(job);
        let mut order: Vec<u32> = snap
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.schedulable() && dcs.admits(n))
            .map(|(i, _)| i as u32)
            .collect();
        order.shuffle(&mut rng);
        let mut by_id = HashMap::new();
        let mut job_on_node: HashMap<&str, u32> = HashMap::new();
        if !snap.job_allocs.is_empty() {
            by_id = snap
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.id.as_str(), i))
                .collect();
            for a in snap.job_allocs.iter().filter(|a| a.is_live()) {
                *job_on_node.entry(a.node_id.as_str()).or_default() += 1;
            }
        }
        let mut props: HashMap<(Option<&str>, &str), HashMap<&str, u32>> = HashMap::new();
        for (group, attribute) in feasible::distinct_properties(job) {
            let counts = props.entry((group, attribute)).or_default();
            let operand = Operand::parse(attribute);
            for a in snap.job_allocs.iter().filter(|a| a.is_live()) {
                if group.is_some_and(|g| g != a.group) {
                    continue;
                }
                let node = by_id.get(a.node_id.as_str()).map(|&i| snap.nodes[i]);
                if let Some(v) = node.and_then(|n| operand.resolve(n)) {
                    *counts.entry(v).or_default() += 1;
                }
            }
        }
        Cluster {
            snap,
            job,
            eval,
            rng,
            by_id,
            slot: vec![0; snap.nodes.len()],
            states: Vec::new(),
            job_on_node,
            props,
            order,
            cursor: 0,
        }
    }

    pub(crate) fn node(&self, idx: usize) -> &'a Node {
        self.snap.nodes[idx]
    }

    pub(crate) fn node_count(&self) -> usize {
        self.snap.nodes.len()
    }

    pub(crate) fn node_index(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// Usable nodes in snapshot order.
    pub(crate) fn usable(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.order.iter().map(|&i| i as usize).collect();
        v.sort_unstable();
        v
    }

    /// Where an allocation's node stands: `None` when the node is gone or down.
    pub(crate) fn node_of(&self, a: &Allocation) -> Option<usize> {
        self.node_index(&a.node_id)
            .filter(|&i| self.node(i).status != NodeStatus::Down)
    }

    pub(crate) fn state(&mut self, idx: usize) -> &mut NodeState<'a> {
        if self.slot[idx] == 0 {
            let node = self.snap.nodes[idx];
            self.states.push(NodeState {
                base: self.snap.usage.get(&node.id),
                cpu: 0,
                memory: 0,
                added: Vec::new(),
                removed: Vec::new(),
                job_allocs: self.job_on_node.get(node.id.as_str()).copied().unwrap_or(0),
            });
            self.slot[idx] = self.states.len() as u32;
        }
        let s = self.slot[idx] as usize - 1;
        &mut self.states[s]
    }

    /// Cpu and memory in use on a node, without starting its state: most
    /// nodes a class walk will never visit.
    fn used(&self, idx: usize) -> (u64, u64) {
        match self.slot[idx] {
            0 => self
                .snap
                .usage
                .get(&self.snap.nodes[idx].id)
                .map_or((0, 0), |u| (u.cpu, u.memory)),
            s => {
                let st = &self.states[s as usize - 1];
                (st.cpu(), st.memory())
            }
        }
    }

    /// Frees what a live allocation the plan stops held on its node.
    pub(crate) fn release(&mut self, a: &Allocation) {
        if !a.is_live() {
            return;
        }
        let Some(idx) = self.node_index(&a.node_id) else {
            return;
        };
        let st = self.state(idx);
        st.cpu = st.cpu.saturating_sub(i64::from(a.resources.cpu));
        st.memory = st.memory.saturating_sub(i64::from(a.resources.memory));
        for p in &a.resources.ports {
            if let Some(at) = st.added.iter().position(|x| *x == p.value) {
                st.added.swap_remove(at);
            } else {
                st.removed.push(p.value);
            }
        }
        st.job_allocs = st.job_allocs.saturating_sub(1);
        self.count_property(idx, &a.group, false);
    }

    /// One more (or one fewer) live copy of group `group` on node `idx`,
    /// for the `distinct_property` counts.
    fn count_property(&mut self, idx: usize, group: &str, add: bool) {
        let node = self.snap.nodes[idx];
        for ((scope, attribute), counts) in &mut self.props {
            if scope.is_some_and(|g| g != group) {
                continue;
            }
            let Some(v) = Operand::parse(attribute).resolve(node) else {
                continue;
            };
            let n = counts.entry(v).or_default();
            *n = if add {
                n.saturating_add(1)
            } else {
                n.saturating_sub(1)
            };
        }
    }

    fn commit(&mut self, idx: usize, a: &Allocation) {
        let st = self.state(idx);
        st.cpu = st.cpu.saturating_add(i64::from(a.resources.cpu));
        st.memory = st.memory.saturating_add(i64::from(a.resources.memory));
        for p in &a.resources.ports {
            if let Some(at) = st.removed.iter().position(|x| *x == p.value) {
                st.removed.swap_remove(at);
            } else {
                st.added.push(p.value);
            }
        }
        st.job_allocs += 1;
        self.count_property(idx, &a.group, true);
    }

    /// Every check a new copy of the group must pass on a node.
    pub(crate) fn check(&mut self, req: &mut GroupReq<'_>, idx: usize) -> Result<(), Reject> {
        let node = self.snap.nodes[idx];
        req.static_check(idx, node)?;
        let cfg = self.snap.config;
        for dp in &req.distinct_properties {
            // As in Nomad: a node without the property cannot take a copy.
            let Some(v) = Operand::parse(dp.attribute).resolve(node) else {
                return Err(Reject::Filtered(dp.reason));
            };
            let n = self
                .props
                .get(&(dp.group, dp.attribute))
                .and_then(|m| m.get(v))
                .copied()
                .unwrap_or(0);
            if n >= dp.limit {
                return Err(Reject::Filtered(dp.reason));
            }
        }
        let st = self.state(idx);
        if req.distinct_hosts && st.job_allocs > 0 {
            return Err(Reject::DistinctHosts);
        }
        let cpu_cap = u64::from(node.resources.cpu.saturating_sub(node.reserved.cpu));
        if st.cpu().saturating_add(req.cpu) > cpu_cap {
            return Err(Reject::Exhausted(Dimension::Cpu));
        }
        let mem_cap = u64::from(node.resources.memory.saturating_sub(node.reserved.memory));
        if st.memory().saturating_add(req.memory) > mem_cap {
            return Err(Reject::Exhausted(Dimension::Memory));
        }
        ports::fits(st, req, cfg)
    }

    /// Picks a node for one more copy of a group among a limited number of
    /// feasible candidates, walking the shuffled nodes from where the last
    /// placement stopped (Nomad's limit iterator). `spread[idx]` counts the
    /// group's allocations per node; `avoid` is penalized like one more.
    pub(crate) fn select(
        &mut self,
        req: &mut GroupReq<'_>,
        spread: &[u32],
        avoid: Option<usize>,
    ) -> Option<usize> {
        if let Some(mut prefs) = req.prefs.take() {
            let chosen = self.select_preferred(req, &mut prefs, spread, avoid);
            req.prefs = Some(prefs);
            return chosen;
        }
        let n = self.order.len();
        if n == 0 {
            return None;
        }
        let limit = rank::candidate_limit(n);
        let mut best: Option<(f64, usize)> = None;
        let mut found = 0;
        let mut skipped: [(usize, u32); MAX_SKIP] = [(0, 0); MAX_SKIP];
        let mut nskipped = 0;
        for _ in 0..n {
            let idx = self.order[self.cursor] as usize;
            self.cursor = (self.cursor + 1) % n;
            if self.check(req, idx).is_err() {
                continue;
            }
            let collisions = spread[idx] + u32::from(avoid == Some(idx));
            if collisions > 0 && nskipped < MAX_SKIP {
                skipped[nskipped] = (idx, collisions);
                nskipped += 1;
                continue;
            }
            self.consider(&mut best, req, idx, collisions);
            found += 1;
            if found >= limit {
                break;
            }
        }
        if found < limit {
            for &(idx, collisions) in &skipped[..nskipped] {
                self.consider(&mut best, req, idx, collisions);
            }
        }
        best.map(|(_, idx)| idx)
    }

    /// [`Cluster::select`] for a group with affinities or spreads: the
    /// same walk, within each class of nodes that could still hold the best
    /// one, best class first.
    fn select_preferred(
        &mut self,
        req: &mut GroupReq<'_>,
        prefs: &mut Prefs<'_>,
        spread: &[u32],
        avoid: Option<usize>,
    ) -> Option<usize> {
        if !prefs.is_ready() {
            prefs.begin(self.snap.config.algorithm);
            let mut usable = vec![false; self.snap.nodes.len()];
            for &idx in &self.order {
                usable[idx as usize] = true;
            }
            // Classified in snapshot order, which is the order nodes and
            // their attributes sit in memory, then listed in the walk's.
            for (idx, _) in usable.iter().enumerate().filter(|(_, u)| **u) {
                let node = self.snap.nodes[idx];
                let (cpu, memory) = self.used(idx);
                let free = rank::free_after(node, cpu, memory, req);
                prefs.measure(idx, node, free);
            }
            for &idx in &self.order {
                prefs.enlist(idx as usize);
            }
            prefs.finish();
        }
        let mut best: Option<(f64, usize)> = None;
        for k in 0..prefs.rank() {
            let (bound, c) = prefs.ranked(k);
            if best.is_some_and(|(s, _)| s >= bound) {
                break;
            }
            let class = prefs.class_mut(c);
            let extra = (class.extra, class.extra_n);
            let n = class.nodes.len();
            let limit = rank::candidate_limit(n);
            let mut found = 0;
            let mut skipped: [(usize, u32); MAX_SKIP] = [(0, 0); MAX_SKIP];
            let mut nskipped = 0;
            for _ in 0..n {
                let idx = class.nodes[class.cursor] as usize;
                class.cursor = (class.cursor + 1) % n;
                if self.check(req, idx).is_err() {
                    continue;
                }
                let collisions = spread[idx] + u32::from(avoid == Some(idx));
                if collisions > 0 && nskipped < MAX_SKIP {
                    skipped[nskipped] = (idx, collisions);
                    nskipped += 1;
                    continue;
                }
                self.consider_with(&mut best, req, idx, collisions, extra);
                found += 1;
                if found >= limit {
                    break;
                }
            }
            if found == 0 && nskipped == 0 {
                class.dead = true;
            }
            if found < limit {
                for &(idx, collisions) in &skipped[..nskipped] {
                    self.consider_with(&mut best, req, idx, collisions, extra);
                }
            }
        }
        best.map(|(_, idx)| idx)
    }

    fn consider(
        &mut self,
        best: &mut Option<(f64, usize)>,
        req: &GroupReq<'_>,
        idx: usize,
        collisions: u32,
    ) {
        self.consider_with(best, req, idx, collisions, (0.0, 0));
    }

    /// Scores a feasible node; `extra` is its affinity and spread scores'
    /// sum and number.
    fn consider_with(
        &mut self,
        best: &mut Option<(f64, usize)>,
        req: &GroupReq<'_>,
        idx: usize,
        collisions: u32,
        (extra, extra_n): (f64, u32),
    ) {
        let node = self.snap.nodes[idx];
        let algorithm = self.snap.config.algorithm;
        let st = self.state(idx);
        let fit = rank::fit_score(algorithm, node, st.cpu(), st.memory(), req);
        let score = rank::combine(fit, collisions, req.group.count, extra, extra_n);
        if best.is_none_or(|(s, _)| score > s) {
            *best = Some((score, idx));
        }
    }

    /// One more copy of the group on node `idx`, kept or just placed, for
    /// the spread counts.
    pub(crate) fn count_copy(&mut self, req: &mut GroupReq<'_>, idx: usize) {
        let Some(mut prefs) = req.prefs.take() else {
            return;
        };
        let node = self.snap.nodes[idx];
        let st = self.state(idx);
        let free = rank::free_after(node, st.cpu(), st.memory(), req);
        prefs.count_copy(idx, node, free);
        req.prefs = Some(prefs);
    }

    /// Why no usable node takes a copy of the group: every usable node
    /// checked, reasons tallied in Nomad's terms.
    pub(crate) fn explain(&mut self, req: &mut GroupReq<'_>, nodes: &[usize]) -> AllocMetric {
        let mut m = AllocMetric::default();
        for &idx in nodes {
            let r = self.check(req, idx);
            self.tally(&mut m, req, idx, r);
        }
        m
    }

    /// The node a copy's local volume holds it to, if it has one yet:
    /// `Err` names the volume and why its node cannot take the copy.
    pub(crate) fn pinned(
        &mut self,
        req: &mut GroupReq<'_>,
        index: u32,
    ) -> Option<Result<usize, AllocMetric>> {
        let v = self
            .snap
            .volumes
            .iter()
            .find(|v| v.group == req.group.name && v.index == index)?;
        let name = v.display_name();
        let fail = |why: String| {
            let mut m = AllocMetric {
                nodes_evaluated: 1,
                nodes_filtered: 1,
                ..AllocMetric::default()
            };
            m.constraint_filtered
                .insert(format!("local volume \"{name}\" is on node {why}"), 1);
            m
        };
        let Some(idx) = self.node_index(&v.node_id) else {
            return Some(Err(fail(format!(
                "{} which is gone: `edge volume rm` it to start this copy empty elsewhere",
                v.node_id
            ))));
        };
        let node = self.node(idx);
        let state = if node.status != NodeStatus::Ready {
            Some(node.status.as_str())
        } else if node.drain {
            Some("draining")
        } else if !node.eligible {
            Some("ineligible")
        } else {
            None
        };
        if let Some(state) = state {
            return Some(Err(fail(format!("\"{}\", which is {state}", node.name))));
        }
        let verdict = self.check(req, idx);
        if verdict.is_err() {
            let mut m = AllocMetric::default();
            self.tally(&mut m, req, idx, verdict);
            let reasons: Vec<String> = m
                .constraint_filtered
                .keys()
                .chain(m.dimension_exhausted.keys())
                .cloned()
                .collect();
            let mut m = fail(format!(
                "\"{}\", which cannot take it: {}",
                node.name,
                reasons.join(", ")
            ));
            m.nodes_available.insert(node.datacenter.clone(), 1);
            return Some(Err(m));
        }
        Some(Ok(idx))
    }

    /// Adds one node's verdict to a metric.
    pub(crate) fn tally(
        &self,
        m: &mut AllocMetric,
        req: &GroupReq<'_>,
        idx: usize,
        verdict: Result<(), Reject>,
    ) {
        m.nodes_evaluated += 1;
        *m.nodes_available
            .entry(self.snap.nodes[idx].datacenter.clone())
            .or_default() += 1;
        match verdict {
            Ok(()) => {}
            Err(Reject::Filtered(r)) => {
                m.nodes_filtered += 1;
                let reason = req.reasons.get(r).cloned().unwrap_or_default();
                *m.constraint_filtered.entry(reason).or_default() += 1;
            }
            Err(Reject::DistinctHosts) => {
                m.nodes_filtered += 1;
                *m.constraint_filtered
                    .entry(DISTINCT_HOSTS_REASON.to_string())
                    .or_default() += 1;
            }
            Err(Reject::Exhausted(d)) => {
                m.nodes_exhausted += 1;
                *m.dimension_exhausted.entry(d.label()).or_default() += 1;
            }
        }
    }

    /// Places one copy of the group on a node that passed [`Cluster::check`].
    /// `None` when its ports could not be assigned after all.
    pub(crate) fn place(
        &mut self,
        req: &GroupReq<'_>,
        idx: usize,
        index: u32,
        previous: Option<&Allocation>,
        reschedule_times: Vec<i64>,
    ) -> Option<Allocation> {
        let cfg = self.snap.config;
        let node = self.snap.nodes[idx];
        let slot = {
            self.state(idx);
            self.slot[idx] as usize - 1
        };
        let ports = ports::assign(&self.states[slot], req, cfg, &mut self.rng)?;
        let id = uuid::Builder::from_random_bytes(self.rng.random()).into_uuid();
        let job = self.job;
        let alloc = Allocation {
            networks: Default::default(),
            id: id.to_string(),
            name: format!("{}.{}[{}]", job.id, req.group.name, index),
            index,
            namespace: job.namespace.clone(),
            job_id: job.id.clone(),
            job_version: job.version,
            group: req.group.name.clone(),
            group_hash: req.hash,
            node_id: node.id.clone(),
            node_name: node.name.clone(),
            eval_id: self.eval.id.clone(),
            desired_status: DesiredStatus::Run,
            desired_description: String::new(),
            client_status: ClientStatus::Pending,
            client_description: String::new(),
            task_states: BTreeMap::new(),
            checks: BTreeMap::new(),
            health: None,
            deployment_id: None,
            canary: false,
            migration: false,
            // `check` kept both within the node's u32 capacity.
            resources: AllocResources {
                cpu: u32::try_from(req.cpu).unwrap_or(u32::MAX),
                memory: u32::try_from(req.memory).unwrap_or(u32::MAX),
                ports,
            },
            address: None,
            previous_alloc: previous.map(|p| p.id.clone()),
            reschedule_times,
            next_alloc: None,
            create_time: self.snap.now,
            modify_time: self.snap.now,
            create_index: 0,
            modify_index: 0,
            alloc_modify_index: 0,
        };
        self.commit(idx, &alloc);
        Some(alloc)
    }
}
