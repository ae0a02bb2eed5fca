//! Node feasibility for one group: datacenters, drivers and constraints,
//! compiled once per group and cached per node for the whole evaluation.

use crate::error::SchedError;
use crate::prefer::Prefs;
use edge_spec::{
    BRIDGE_ATTRIBUTE, Constraint, ConstraintOp, Group, Job, NetworkMode, Node, PortSpec, VolumeType,
};
use regex::Regex;
use std::cmp::Ordering;
use std::collections::HashMap;

/// Why a node cannot take one more copy of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reject {
    /// Index into [`GroupReq::reasons`]: a missing driver or a failed constraint.
    Filtered(usize),
    DistinctHosts,
    Exhausted(Dimension),
}

/// The resource a node ran out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dimension {
    Cpu,
    Memory,
    StaticPort(u16),
    DynamicPorts,
}

impl Dimension {
    pub(crate) fn label(self) -> String {
        match self {
            Dimension::Cpu => "cpu".to_string(),
            Dimension::Memory => "memory".to_string(),
            Dimension::StaticPort(p) => format!("network: reserved port {p} collision"),
            Dimension::DynamicPorts => "network: dynamic port selection failed".to_string(),
        }
    }
}

pub(crate) const DISTINCT_HOSTS_REASON: &str = "constraint distinct_hosts";

/// One side of a constraint: a node field, attribute, meta key or a literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operand<'j> {
    Attr(&'j str),
    Meta(&'j str),
    /// A host volume's access (`rw`, `ro`) on the node.
    HostVolume(&'j str),
    Datacenter,
    Name,
    Id,
    Address,
    /// An interpolation this scheduler does not know: never set.
    Unknown,
    Literal(&'j str),
}

impl<'j> Operand<'j> {
    pub(crate) fn parse(s: &'j str) -> Operand<'j> {
        let Some(inner) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) else {
            return Operand::Literal(s);
        };
        if let Some(k) = inner.strip_prefix("attr.") {
            return Operand::Attr(k);
        }
        if let Some(k) = inner.strip_prefix("meta.") {
            return Operand::Meta(k);
        }
        match inner {
            "node.datacenter" => Operand::Datacenter,
            "node.name" | "node.unique.name" => Operand::Name,
            "node.id" | "node.unique.id" => Operand::Id,
            "node.address" => Operand::Address,
            _ => Operand::Unknown,
        }
    }

    pub(crate) fn resolve<'n>(self, node: &'n Node) -> Option<&'n str>
    where
        'j: 'n,
    {
        match self {
            Operand::Attr(k) => node.attributes.get(k).map(String::as_str),
            Operand::Meta(k) => node.meta.get(k).map(String::as_str),
            Operand::HostVolume(k) => node
                .attributes
                .get(&edge_spec::host_volume_attribute(k))
                .map(String::as_str),
            Operand::Datacenter => Some(&node.datacenter),
            Operand::Name => Some(&node.name),
            Operand::Id => Some(&node.id),
            Operand::Address => Some(&node.address),
            Operand::Unknown => None,
            Operand::Literal(s) => Some(s),
        }
    }
}

pub(crate) struct Compiled<'j> {
    lhs: Operand<'j>,
    rhs: Operand<'j>,
    op: ConstraintOp,
    /// Set for `regexp`; `None` inside when the pattern does not compile,
    /// which filters every node.
    regex: Option<Option<Regex>>,
    reason: usize,
}

impl<'j> Compiled<'j> {
    /// A rule of `attribute`, `op` and `value` as constraints and
    /// affinities write it; a regexp that does not compile matches nothing.
    pub(crate) fn new(attribute: &'j str, op: ConstraintOp, value: &'j str) -> Compiled<'j> {
        Compiled {
            lhs: Operand::parse(attribute),
            rhs: Operand::parse(value),
            op,
            regex: (op == ConstraintOp::Regexp).then(|| Regex::new(value).ok()),
            reason: 0,
        }
    }

    /// The node values the rule reads: whether it holds depends on them only.
    pub(crate) fn operands(&self) -> [Operand<'j>; 2] {
        [self.lhs, self.rhs]
    }

    pub(crate) fn holds(&self, node: &Node) -> bool {
        let l = self.lhs.resolve(node);
        let r = self.rhs.resolve(node);
        match self.op {
            ConstraintOp::IsSet => l.is_some(),
            ConstraintOp::IsNotSet => l.is_none(),
            // As in Nomad: a missing attribute differs from any value.
            ConstraintOp::Ne => l != r,
            ConstraintOp::DistinctHosts | ConstraintOp::DistinctProperty => true,
            op => {
                let (Some(l), Some(r)) = (l, r) else {
                    return false;
                };
                match op {
                    ConstraintOp::Eq => l == r,
                    ConstraintOp::Lt => compare(l, r) == Ordering::Less,
                    ConstraintOp::Le => compare(l, r) != Ordering::Greater,
                    ConstraintOp::Gt => compare(l, r) == Ordering::Greater,
                    ConstraintOp::Ge => compare(l, r) != Ordering::Less,
                    ConstraintOp::Regexp => {
                        matches!(&self.regex, Some(Some(re)) if re.is_match(l))
                    }
                    ConstraintOp::SetContains => set_contains(l, r),
                    ConstraintOp::SetContainsAny => set_contains_any(l, r),
                    ConstraintOp::Version => edge_spec::version::satisfies(l, r, false),
                    ConstraintOp::Semver => edge_spec::version::satisfies(l, r, true),
                    _ => false,
                }
            }
        }
    }
}

/// Numeric when both sides parse as numbers, lexical otherwise.
fn compare(l: &str, r: &str) -> Ordering {
    match (l.trim().parse::<f64>(), r.trim().parse::<f64>()) {
        (Ok(a), Ok(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
        _ => l.cmp(r),
    }
}

/// Every comma separated item of `r` is in the comma separated set `l`.
fn set_contains(l: &str, r: &str) -> bool {
    let have: Vec<&str> = l.split(',').map(str::trim).collect();
    r.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .all(|want| have.contains(&want))
}

/// Some comma separated item of `r` is in the comma separated set `l`.
fn set_contains_any(l: &str, r: &str) -> bool {
    let have: Vec<&str> = l.split(',').map(str::trim).collect();
    r.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .any(|want| have.contains(&want))
}

/// The text a failed constraint is reported under.
pub(crate) fn constraint_reason(c: &Constraint) -> String {
    match c.operator {
        ConstraintOp::IsSet | ConstraintOp::IsNotSet => {
            format!("constraint {} {}", c.attribute, c.operator.as_str())
        }
        ConstraintOp::DistinctHosts => DISTINCT_HOSTS_REASON.to_string(),
        ConstraintOp::DistinctProperty => format!(
            "constraint distinct_property {} (at most {} per value)",
            c.attribute,
            c.distinct_limit().unwrap_or(1)
        ),
        op => format!("constraint {} {} {}", c.attribute, op.as_str(), c.value),
    }
}

/// Whether a datacenter pattern of a job (`*`, `dc1`, `eu-*`) names `dc`.
pub(crate) fn dc_matches(pattern: &str, dc: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut tail) = dc.strip_prefix(first) else {
        return false;
    };
    let mut prev = None;
    for part in parts {
        if let Some(p) = prev {
            match tail.find(p) {
                Some(at) => tail = &tail[at + str::len(p)..],
                None => return false,
            }
        }
        prev = Some(part);
    }
    match prev {
        // No `*`: the whole name must match.
        None => tail.is_empty(),
        // The last piece anchors at the end.
        Some(last) => tail.ends_with(last),
    }
}

pub(crate) fn in_datacenters(job: &Job, node: &Node) -> bool {
    job.datacenters
        .iter()
        .any(|p| dc_matches(p, &node.datacenter))
}

/// [`in_datacenters`] over many nodes: clusters have few datacenters, so
/// each one is matched against the job's patterns once.
pub(crate) struct DcFilter<'j> {
    job: &'j Job,
    any: bool,
    seen: Vec<(String, bool)>,
}

impl<'j> DcFilter<'j> {
    pub(crate) fn new(job: &'j Job) -> DcFilter<'j> {
        DcFilter {
            job,
            any: job.datacenters.iter().any(|p| p == "*"),
            seen: Vec::new(),
        }
    }

    pub(crate) fn admits(&mut self, node: &Node) -> bool {
        if self.any {
            return true;
        }
        if let Some((_, ok)) = self.seen.iter().find(|(dc, _)| *dc == node.datacenter) {
            return *ok;
        }
        let ok = in_datacenters(self.job, node);
        self.seen.push((node.datacenter.clone(), ok));
        ok
    }
}

/// A node's cached verdict on the checks that do not depend on placements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Unknown,
    Pass,
    /// Index into [`GroupReq::reasons`].
    Fail(usize),
}

/// Everything one copy of a group needs from a node, computed once per
/// A `distinct_property` constraint as the cluster counts it: the job's
/// copies (`group` is `None`, a job-level constraint) or the group's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DistinctProperty<'j> {
    pub group: Option<&'j str>,
    pub attribute: &'j str,
    pub limit: u32,
    /// Index into [`GroupReq::reasons`].
    pub reason: usize,
}

/// Every `distinct_property` constraint of a job, with the scope it counts.
pub(crate) fn distinct_properties(job: &Job) -> Vec<(Option<&str>, &str)> {
    let mut out: Vec<(Option<&str>, &str)> = job
        .constraints
        .iter()
        .filter(|c| c.operator == ConstraintOp::DistinctProperty)
        .map(|c| (None, c.attribute.as_str()))
        .collect();
    for g in &job.groups {
        let task_constraints = g.tasks.iter().flat_map(|t| &t.constraints);
        for c in g.constraints.iter().chain(task_constraints) {
            if c.operator == ConstraintOp::DistinctProperty {
                out.push((Some(g.name.as_str()), c.attribute.as_str()));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// evaluation so the per-node checks allocate nothing.
pub(crate) struct GroupReq<'j> {
    pub group: &'j Group,
    pub hash: u64,
    pub cpu: u64,
    pub memory: u64,
    pub static_ports: Vec<u16>,
    pub dynamic_ports: usize,
    pub distinct_hosts: bool,
    pub distinct_properties: Vec<DistinctProperty<'j>>,
    /// The group's affinities and spreads, when it has any.
    pub prefs: Option<Box<Prefs<'j>>>,
    /// Filter reasons, indexed by [`Reject::Filtered`].
    pub reasons: Vec<String>,
    drivers: Vec<(&'j str, usize)>,
    constraints: Vec<Compiled<'j>>,
    /// Per node index.
    cache: Vec<Verdict>,
}

impl<'j> GroupReq<'j> {
    pub(crate) fn new(job: &'j Job, group: &'j Group, node_count: usize) -> GroupReq<'j> {
        let res = group.resources();
        let mut reasons = Reasons::default();
        let mut drivers: Vec<(&str, usize)> = Vec::new();
        for t in &group.tasks {
            if drivers.iter().all(|(d, _)| *d != t.driver) {
                drivers.push((
                    &t.driver,
                    reasons.index(format!("missing driver \"{}\"", t.driver)),
                ));
            }
        }
        let mut constraints = Vec::new();
        if group.network.mode == NetworkMode::Bridge {
            constraints.push(Compiled {
                lhs: Operand::Attr(BRIDGE_ATTRIBUTE),
                rhs: Operand::Literal("true"),
                op: ConstraintOp::Eq,
                regex: None,
                reason: reasons
                    .index("missing bridge networking (network mode \"bridge\")".to_string()),
            });
        }
        // A host volume is a node attribute (`volume.host.NAME` = `rw` or
        // `ro`), so it filters like a constraint and is cached with them.
        for v in &group.volumes {
            if v.kind != VolumeType::Host {
                continue;
            }
            let (op, reason) = if v.read_only {
                (
                    ConstraintOp::IsSet,
                    format!("missing host volume \"{}\"", v.source),
                )
            } else {
                (
                    ConstraintOp::Eq,
                    format!("missing writable host volume \"{}\"", v.source),
                )
            };
            constraints.push(Compiled {
                lhs: Operand::HostVolume(&v.source),
                rhs: Operand::Literal("rw"),
                op,
                regex: None,
                reason: reasons.index(reason),
            });
        }
        let mut distinct_hosts = false;
        let mut distinct_properties = Vec::new();
        let task_constraints = group.tasks.iter().flat_map(|t| &t.constraints);
        let job_level = job.constraints.iter().map(|c| (None, c));
        let group_level = group
            .constraints
            .iter()
            .chain(task_constraints)
            .map(|c| (Some(group.name.as_str()), c));
        for (scope, c) in job_level.chain(group_level) {
            if c.operator == ConstraintOp::DistinctHosts {
                distinct_hosts |= c.value.trim() != "false";
                continue;
            }
            if c.operator == ConstraintOp::DistinctProperty {
                // Validation refused a limit that is not a count; an older
                // stored job with one allows a single copy per value.
                let limit = c.distinct_limit().unwrap_or(1);
                distinct_properties.push(DistinctProperty {
                    group: scope,
                    attribute: &c.attribute,
                    limit,
                    reason: reasons.index(constraint_reason(c)),
                });
                continue;
            }
            let mut reason = constraint_reason(c);
            let regex = (c.operator == ConstraintOp::Regexp).then(|| match Regex::new(&c.value) {
                Ok(re) => Some(re),
                Err(e) => {
                    reason = SchedError::BadRegexp {
                        attribute: c.attribute.clone(),
                        pattern: c.value.clone(),
                        reason: e.to_string(),
                    }
                    .to_string();
                    None
                }
            });
            let idx = reasons.index(reason);
            constraints.push(Compiled {
                lhs: Operand::parse(&c.attribute),
                rhs: Operand::parse(&c.value),
                op: c.operator,
                regex,
                reason: idx,
            });
        }
        let ports: &[PortSpec] = &group.network.ports;
        GroupReq {
            group,
            hash: group.spec_hash(),
            cpu: res.cpu,
            memory: res.memory,
            static_ports: ports.iter().filter_map(|p| p.static_port).collect(),
            dynamic_ports: ports.iter().filter(|p| p.static_port.is_none()).count(),
            distinct_hosts,
            distinct_properties,
            prefs: Prefs::new(job, group, node_count).map(Box::new),
            reasons: reasons.list,
            drivers,
            constraints,
            cache: vec![Verdict::Unknown; node_count],
        }
    }

    /// Drivers and constraints, the checks that do not depend on placements.
    pub(crate) fn static_check(&mut self, idx: usize, node: &Node) -> Result<(), Reject> {
        let verdict = match self.cache[idx] {
            Verdict::Unknown => {
                let v = match self.evaluate(node) {
                    None => Verdict::Pass,
                    Some(r) => Verdict::Fail(r),
                };
                self.cache[idx] = v;
                v
            }
            cached => cached,
        };
        match verdict {
            Verdict::Fail(r) => Err(Reject::Filtered(r)),
            Verdict::Unknown | Verdict::Pass => Ok(()),
        }
    }

    fn evaluate(&self, node: &Node) -> Option<usize> {
        if let Some((_, r)) = self.drivers.iter().find(|(d, _)| !node.driver_healthy(d)) {
            return Some(*r);
        }
        self.constraints
            .iter()
            .find(|c| !c.holds(node))
            .map(|c| c.reason)
    }
}

/// Distinct filter reasons in first-seen order. Many constraints share a
/// reason, and a job may carry thousands of them (one stored before the
/// limit existed), so finding a reason's index is a hash lookup.
#[derive(Default)]
struct Reasons {
    list: Vec<String>,
    seen: HashMap<String, usize>,
}

impl Reasons {
    fn index(&mut self, reason: String) -> usize {
        if let Some(&i) = self.seen.get(&reason) {
            return i;
        }
        let i = self.list.len();
        self.list.push(reason.clone());
        self.seen.insert(reason, i);
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_datacenters() {
        assert!(dc_matches("*", "dc1"));
        assert!(dc_matches("dc*", "dc1"));
        assert!(dc_matches("*-east", "us-east"));
        assert!(dc_matches("us-*-1", "us-east-1"));
        assert!(!dc_matches("us-*-1", "us-east-2"));
        assert!(!dc_matches("dc*", "edc1"));
        assert!(dc_matches("dc1", "dc1"));
        assert!(!dc_matches("dc1", "dc2"));
    }

    #[test]
    fn compares_numbers_numerically_and_text_lexically() {
        assert_eq!(compare("10", "9"), Ordering::Greater);
        assert_eq!(compare("1.5", "1.50"), Ordering::Equal);
        assert_eq!(compare("b", "a"), Ordering::Greater);
        assert_eq!(compare("10", "9x"), Ordering::Less);
    }

    #[test]
    fn set_contains_needs_every_item() {
        assert!(set_contains("a, b,c", "c,a"));
        assert!(!set_contains("a,b", "a,d"));
        assert!(set_contains_any("a,b", "d, b"));
        assert!(!set_contains_any("a,b", "c,d"));
    }

    #[test]
    fn operands_resolve_node_fields() {
        assert!(matches!(
            Operand::parse("${attr.cpu.arch}"),
            Operand::Attr("cpu.arch")
        ));
        assert!(matches!(
            Operand::parse("${meta.rack}"),
            Operand::Meta("rack")
        ));
        assert!(matches!(
            Operand::parse("${node.unique.name}"),
            Operand::Name
        ));
        assert!(matches!(Operand::parse("${node.class}"), Operand::Unknown));
        assert!(matches!(Operand::parse("linux"), Operand::Literal("linux")));
    }
}
