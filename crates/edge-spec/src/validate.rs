//! Semantic checks of a decoded job, shared by the file readers and the
//! server (for jobs submitted through the API, which carry no file location).

use crate::error::{Diagnostic, SpecError};
use crate::job::{
    CheckType, Constraint, ConstraintOp, Group, HealthCheck, Job, Service, Task, UpdatePolicy,
};
use crate::limits::{
    DRIVERS, MAX_CONSTRAINTS, MAX_COUNT, MAX_GROUP_NETWORKS, MAX_GROUPS, MAX_JOB_ID_LEN,
    MAX_MOUNT_PATH, MAX_NAME_LEN, MAX_NETWORKS, MAX_POLICY_WAIT, MAX_TASK_CPU, MAX_TASK_MEMORY,
    MAX_TASK_WAIT, MAX_TASKS, MAX_VOLUMES,
};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Every problem found in `job`, each named by its dotted field path
/// (`job.hello.group.web.count`); locations are left empty. Driver
/// `config` blocks are taken as they are.
pub fn validate(job: &Job) -> Vec<Diagnostic> {
    validate_with(job, &DriverConfigs::default())
}

/// [`validate`], with every task's `config` block also checked by its
/// driver's check in `configs`.
pub fn validate_with(job: &Job, configs: &DriverConfigs) -> Vec<Diagnostic> {
    let mut v = Validator {
        out: Vec::new(),
        configs,
        system: job.job_type == crate::job::JobType::System,
        per_node: false,
    };
    v.job(job);
    v.out
}

/// A driver's check of one task's `config` block: `Err((field, message))`,
/// the field starting at `config` (`config.args[1]`).
pub type ConfigCheck = fn(&Map<String, Value>) -> Result<(), (String, String)>;

/// Driver name → the check of its `config` blocks. edge-spec knows no
/// driver: the binary builds this from the driver crates, whose config
/// types are the schemas, and hands it to validation.
#[derive(Debug, Clone, Default)]
pub struct DriverConfigs {
    checks: BTreeMap<String, ConfigCheck>,
}

impl DriverConfigs {
    pub fn with(mut self, driver: impl Into<String>, check: ConfigCheck) -> DriverConfigs {
        self.checks.insert(driver.into(), check);
        self
    }

    /// A driver with no check takes any config.
    fn check(&self, driver: &str, config: &Map<String, Value>) -> Result<(), (String, String)> {
        self.checks
            .get(driver)
            .map_or(Ok(()), |check| check(config))
    }
}

struct Validator<'a> {
    out: Vec<Diagnostic>,
    configs: &'a DriverConfigs,
    /// The job is a system job (one copy per node).
    system: bool,
    /// The group being checked runs one copy per node: it is a system
    /// job's, or has `system = true`.
    per_node: bool,
}

/// What a checked name names: the three become paths on the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Job,
    Group,
    Task,
    Network,
    Volume,
}

impl NameKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NameKind::Job => "job id",
            NameKind::Group => "group name",
            NameKind::Task => "task name",
            NameKind::Network => "network name",
            NameKind::Volume => "volume name",
        }
    }
}

/// Whether `name` is a valid job id, group name or task name: 1-63 ASCII
/// letters, digits, '-' or '_' (job ids: up to 128, '.' allowed but not
/// first). Validation applies it to every job; the agent applies it again
/// before it joins a name under a directory, for jobs stored before it
/// existed.
pub fn check_name(kind: NameKind, name: &str) -> Result<(), SpecError> {
    match name_problem(kind, name) {
        None => Ok(()),
        Some(reason) => Err(SpecError::InvalidName {
            kind: kind.as_str(),
            name: shorten(name),
            reason,
        }),
    }
}

fn name_problem(kind: NameKind, name: &str) -> Option<String> {
    let max = match kind {
        NameKind::Job => MAX_JOB_ID_LEN,
        NameKind::Group | NameKind::Task | NameKind::Network | NameKind::Volume => MAX_NAME_LEN,
    };
    let dots = kind == NameKind::Job;
    if name.is_empty() {
        return Some("is empty".to_string());
    }
    if name.len() > max {
        return Some(format!("is {} bytes long; the limit is {max}", name.len()));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || (dots && c == '.')))
    {
        let allowed = if dots {
            "ASCII letters, digits, '-', '_' and '.'"
        } else {
            "ASCII letters, digits, '-' and '_'"
        };
        return Some(format!("contains {c:?}: use only {allowed}"));
    }
    if name.starts_with('.') {
        return Some("must not start with '.'".to_string());
    }
    None
}

/// What is wrong with a path inside the task's directory: relative, never
/// climbing out, and naming a file.
fn relative_problem(p: &str) -> Option<String> {
    if p.starts_with('/') {
        return Some(format!(
            "destination {:?} is relative to the task's directory: drop the leading /",
            shorten(p)
        ));
    }
    if p.len() > MAX_MOUNT_PATH || p.contains('\0') {
        return Some("destination is too long or holds a NUL byte".to_string());
    }
    if p.split('/').any(|c| c == "..") {
        return Some(format!(
            "destination {:?} must not contain `..`",
            shorten(p)
        ));
    }
    if p.ends_with('/') || p.split('/').all(|c| c.is_empty() || c == ".") {
        return Some(format!("destination {:?} must name a file", shorten(p)));
    }
    None
}

/// What is wrong with a volume mount's destination: it must be an absolute
/// path inside the task that never climbs (`..`) and is not `/` itself.
fn destination_problem(d: &str) -> Option<String> {
    if !d.starts_with('/') {
        return Some(format!(
            "destination {:?} must be an absolute path, e.g. \"/data\"",
            shorten(d)
        ));
    }
    if d.len() > MAX_MOUNT_PATH {
        return Some(format!(
            "destination is {} bytes long; the limit is {MAX_MOUNT_PATH}",
            d.len()
        ));
    }
    if d.contains('\0') {
        return Some("destination holds a NUL byte".to_string());
    }
    if d.split('/').any(|c| c == "..") {
        return Some(format!(
            "destination {:?} must not contain `..`",
            shorten(d)
        ));
    }
    if d.split('/').all(|c| c.is_empty() || c == ".") {
        return Some("a volume cannot be mounted over `/`".to_string());
    }
    None
}

/// A name as error messages quote it: a hostile one may be megabytes long.
pub(crate) fn shorten(name: &str) -> String {
    const SHOWN: usize = 64;
    match name.char_indices().nth(SHOWN) {
        Some((at, _)) => format!("{}...", &name[..at]),
        None => name.to_string(),
    }
}

/// Service names become DNS labels (`NAME.service.edge`).
fn valid_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl Validator<'_> {
    fn push(&mut self, field: String, message: impl Into<String>) {
        self.out.push(Diagnostic::new(field, message));
    }

    fn job(&mut self, job: &Job) {
        let base = job_base(job);
        if let Some(reason) = name_problem(NameKind::Job, &job.id) {
            self.push(
                format!("{base}.id"),
                format!("job id {:?} {reason}", shorten(&job.id)),
            );
        }
        if let Some(reason) = crate::namespace::namespace_problem(&job.namespace) {
            self.push(format!("{base}.namespace"), reason);
        }
        if !(1..=100).contains(&job.priority) {
            self.push(
                format!("{base}.priority"),
                format!("priority must be between 1 and 100, got {}", job.priority),
            );
        }
        for (i, dc) in job.datacenters.iter().enumerate() {
            if dc.is_empty() {
                self.push(
                    format!("{base}.datacenters[{i}]"),
                    "datacenter name is empty",
                );
            }
        }
        self.constraints(&job.constraints, &base);
        self.out
            .extend(crate::prefer::affinities(&job.affinities, &base));
        self.out.extend(crate::prefer::spreads(&job.spreads, &base));
        self.update(&job.update, &base);
        if job.groups.is_empty() {
            self.push(format!("{base}.group"), "a job needs at least one group");
        }
        if job.groups.len() > MAX_GROUPS {
            self.push(
                format!("{base}.group"),
                format!(
                    "a job has {} groups; the limit is {MAX_GROUPS}",
                    job.groups.len()
                ),
            );
        }
        for (field, message) in crate::periodic::problems(job, &base) {
            self.push(field, message);
        }
        let declared = self.networks(job, &base);
        let mut groups = BTreeSet::new();
        let mut services: BTreeMap<&str, String> = BTreeMap::new();
        for (i, g) in job.groups.iter().enumerate() {
            let path = named(&base, "group", i, &g.name);
            if let Some(reason) = name_problem(NameKind::Group, &g.name) {
                self.push(
                    path.clone(),
                    format!("group name {:?} {reason}", shorten(&g.name)),
                );
            } else if !groups.insert(g.name.as_str()) {
                self.push(path.clone(), format!("duplicate group name {:?}", g.name));
            }
            self.per_node = self.system || g.system;
            self.group(g, &path);
            self.system_group(job, g, &path);
            self.depends_on(job, g, &path);
            self.scaling(job, g, &path);
            self.joined(g, &declared, &path);
            self.rollout(job, g, &path);
            for (i, s) in g.services.iter().enumerate() {
                let at = format!("{path}.service[{i}].name");
                if let Some(first) = services.get(s.name.as_str()) {
                    self.push(
                        at,
                        format!("duplicate service name {:?}, also used at {first}", s.name),
                    );
                } else {
                    services.insert(s.name.as_str(), at);
                }
            }
        }
    }

    /// `system = true`: a service job's group placed on every node;
    /// `batch = true`: one whose copies run to completion.
    fn system_group(&mut self, job: &Job, g: &Group, path: &str) {
        if g.batch && job.job_type != crate::job::JobType::Service {
            self.push(
                format!("{path}.batch"),
                format!(
                    "`batch = true` runs one group of a service job to completion; in a job of type {:?} {}",
                    job.job_type.as_str(),
                    if self.system {
                        "copies run on every node for as long as it runs"
                    } else {
                        "every group already does"
                    }
                ),
            );
        }
        if g.batch && g.system {
            self.push(
                format!("{path}.batch"),
                "a group is either on every node (`system = true`) or run to completion (`batch = true`), not both",
            );
        }
        if !g.system {
            return;
        }
        if job.job_type != crate::job::JobType::Service {
            self.push(
                format!("{path}.system"),
                format!(
                    "`system = true` places one group of a service job on every node; in a job of type {:?} {}",
                    job.job_type.as_str(),
                    if self.system {
                        "every group already runs on every node"
                    } else {
                        "copies run to completion: run a system job"
                    }
                ),
            );
        }
        if g.count != 1 {
            self.push(
                format!("{path}.count"),
                "a group with `system = true` runs one copy on every feasible node: leave `count` out",
            );
        }
    }

    /// A group's `scaling`: bounds around its count, targets the load
    /// balancer measures, and a way to be woken when it may reach zero.
    fn scaling(&mut self, job: &Job, g: &Group, path: &str) {
        let Some(sc) = &g.scaling else {
            return;
        };
        let at = format!("{path}.scaling");
        if self.system || g.system || g.batch || job.job_type != crate::job::JobType::Service {
            self.push(
                at.clone(),
                "scaling changes the count of a service job's long-running group; this group has none to change",
            );
            return;
        }
        let min = sc.min.unwrap_or(g.count);
        if sc.max == 0 || sc.max > MAX_COUNT {
            self.push(
                format!("{at}.max"),
                format!(
                    "max is a number of copies from 1 to {MAX_COUNT}, got {}",
                    sc.max
                ),
            );
        }
        if min > sc.max {
            self.push(
                format!("{at}.min"),
                format!("min ({min}) is more than max ({})", sc.max),
            );
        } else if !(min..=sc.max).contains(&g.count) {
            self.push(
                format!("{path}.count"),
                format!(
                    "count ({}) is outside the scaling bounds {min} to {}",
                    g.count, sc.max
                ),
            );
        }
        if sc.target_cpu.is_some_and(|c| c == 0 || c > 100) {
            self.push(
                format!("{at}.target_cpu"),
                "target_cpu is a percent of the reserved CPU, from 1 to 100",
            );
        }
        for (field, v) in [
            ("target_concurrency", sc.target_concurrency),
            ("target_rps", sc.target_rps),
        ] {
            if v.is_some_and(|v| v == 0 || v > crate::scaling::MAX_TARGET) {
                self.push(
                    format!("{at}.{field}"),
                    format!("{field} is from 1 to {}", crate::scaling::MAX_TARGET),
                );
            }
        }
        for (field, v) in [
            ("scale_up_step", sc.scale_up_step),
            ("scale_down_step", sc.scale_down_step),
        ] {
            if v.is_some_and(|v| v == 0 || v > MAX_COUNT) {
                self.push(
                    format!("{at}.{field}"),
                    format!("{field} is a number of copies from 1 to {MAX_COUNT}"),
                );
            }
        }
        if sc
            .queue
            .is_some_and(|q| q == 0 || q > crate::scaling::MAX_QUEUE)
        {
            self.push(
                format!("{at}.queue"),
                format!(
                    "queue holds from 1 to {} requests",
                    crate::scaling::MAX_QUEUE
                ),
            );
        }
        for (field, d) in [
            ("idle_timeout", sc.idle_timeout),
            ("evaluation_interval", sc.evaluation_interval),
            ("cooldown", sc.cooldown),
            ("stabilization_window", sc.stabilization_window),
            ("queue_timeout", sc.queue_timeout),
        ] {
            if let Some(d) = d {
                self.wait(&format!("{at}.{field}"), d.0, MAX_POLICY_WAIT);
            }
        }
        for (field, d) in [
            ("evaluation_interval", sc.evaluation_interval),
            ("idle_timeout", sc.idle_timeout),
            ("queue_timeout", sc.queue_timeout),
        ] {
            if d.is_some_and(|d| d.0 < Duration::from_secs(1)) {
                self.push(format!("{at}.{field}"), format!("{field} is at least 1s"));
            }
        }
        let measured = sc.target_concurrency.is_some() || sc.target_rps.is_some();
        let published = g.services.iter().any(|s| {
            s.publish
                .as_ref()
                .is_some_and(|p| p.protocol != crate::job::PublishProtocol::Udp)
        });
        if (measured || min == 0) && !published {
            self.push(
                at,
                "scaling by requests (target_concurrency, target_rps, min = 0) needs a service with `publish` over tcp or http: the load balancer counts the requests and wakes a group at zero",
            );
        }
    }

    /// A group's `depends_on`: other groups of the job, each once, and
    /// no cycle through them (a cycle would hold its groups forever).
    fn depends_on(&mut self, job: &Job, g: &Group, path: &str) {
        if g.depends_on.is_empty() {
            return;
        }
        if self.system {
            self.push(
                format!("{path}.depends_on"),
                "`depends_on` orders the groups of a service or batch job; a system job's groups start together on each node",
            );
            return;
        }
        let mut seen = BTreeSet::new();
        for (i, d) in g.depends_on.iter().enumerate() {
            let at = format!("{path}.depends_on[{i}].group");
            if d.group == g.name {
                self.push(at, format!("group {:?} cannot wait for itself", g.name));
            } else if job.group(&d.group).is_none() {
                self.push(at, format!("no group {:?} in the job", shorten(&d.group)));
            } else if !seen.insert(d.group.as_str()) {
                self.push(at, format!("{:?} is named twice", d.group));
            } else if d.condition == crate::job::DependCondition::Completed
                && job
                    .group(&d.group)
                    .is_some_and(|o| o.runs_as(job.job_type) != crate::job::JobType::Batch)
            {
                self.push(
                    format!("{path}.depends_on[{i}].condition"),
                    format!(
                        "group {:?} runs until stopped, so it never completes: give it `batch = true`, or wait for \"started\" or \"healthy\"",
                        d.group
                    ),
                );
            }
        }
        // Walks what `g` waits for, transitively: reaching `g` again is a
        // cycle, reported once at the group where the walk started.
        let mut stack: Vec<&str> = g
            .depends_on
            .iter()
            .map(|d| d.group.as_str())
            .filter(|n| *n != g.name)
            .collect();
        let mut visited = BTreeSet::new();
        while let Some(name) = stack.pop() {
            if name == g.name {
                self.push(
                    format!("{path}.depends_on"),
                    format!(
                        "group {:?} waits for itself through a cycle of `depends_on`",
                        g.name
                    ),
                );
                return;
            }
            if !visited.insert(name) {
                continue;
            }
            if let Some(other) = job.group(name) {
                stack.extend(other.depends_on.iter().map(|d| d.group.as_str()));
            }
        }
    }

    /// The job's named networks; returns the names declared.
    fn networks<'a>(&mut self, job: &'a Job, base: &str) -> BTreeSet<&'a str> {
        if job.networks.len() > MAX_NETWORKS {
            self.push(
                format!("{base}.network"),
                format!(
                    "a job has {} networks; the limit is {MAX_NETWORKS}",
                    job.networks.len()
                ),
            );
        }
        let mut declared = BTreeSet::new();
        for (i, n) in job.networks.iter().enumerate() {
            let path = named(base, "network", i, &n.name);
            if let Some(reason) = name_problem(NameKind::Network, &n.name) {
                self.push(
                    path,
                    format!("network name {:?} {reason}", shorten(&n.name)),
                );
            } else if !declared.insert(n.name.as_str()) {
                self.push(path, format!("duplicate network name {:?}", n.name));
            }
        }
        declared
    }

    /// The named networks group `g` joins: declared in its job, each once,
    /// and only in bridge mode (host networking has no interface to add).
    fn joined(&mut self, g: &Group, declared: &BTreeSet<&str>, path: &str) {
        let joined = &g.network.networks;
        let at = format!("{path}.network.networks");
        if !joined.is_empty() && g.network.mode.is_host() {
            self.push(
                at.clone(),
                "joining named networks needs bridge networking: add `mode = \"bridge\"` to the network block",
            );
        }
        if joined.len() > MAX_GROUP_NETWORKS {
            self.push(
                at.clone(),
                format!(
                    "a group joins {} networks; the limit is {MAX_GROUP_NETWORKS}",
                    joined.len()
                ),
            );
        }
        let mut seen = BTreeSet::new();
        for (k, n) in joined.iter().enumerate() {
            if !declared.contains(n.as_str()) {
                self.push(
                    format!("{at}[{k}]"),
                    format!(
                        "network {:?} is not declared in the job: add `network {:?} {{}}` at job level",
                        shorten(n),
                        shorten(n)
                    ),
                );
            } else if !seen.insert(n.as_str()) {
                self.push(
                    format!("{at}[{k}]"),
                    format!("network {n:?} is joined twice"),
                );
            }
        }
    }

    fn constraints(&mut self, constraints: &[Constraint], base: &str) {
        if constraints.len() > MAX_CONSTRAINTS {
            self.push(
                format!("{base}.constraint"),
                format!(
                    "{} constraints; the limit is {MAX_CONSTRAINTS}",
                    constraints.len()
                ),
            );
            return;
        }
        for (i, c) in constraints.iter().enumerate() {
            let path = format!("{base}.constraint[{i}]");
            if c.attribute.trim().is_empty() && c.operator != ConstraintOp::DistinctHosts {
                self.push(
                    format!("{path}.attribute"),
                    format!(
                        "constraint with operator {:?} needs an attribute",
                        c.operator.as_str()
                    ),
                );
            }
            if c.operator == ConstraintOp::Regexp
                && let Err(e) = regex::Regex::new(&c.value)
            {
                self.push(
                    format!("{path}.value"),
                    format!("invalid regular expression: {e}"),
                );
            }
            if c.operator == ConstraintOp::DistinctProperty && c.distinct_limit().is_none() {
                self.push(
                    format!("{path}.value"),
                    format!(
                        "distinct_property takes how many copies may share a value (1 when left out), not {:?}",
                        c.value
                    ),
                );
            }
            let strict = c.operator == ConstraintOp::Semver;
            if matches!(c.operator, ConstraintOp::Version | ConstraintOp::Semver)
                && !c.value.contains("${")
                && let Err(e) = crate::version::check_constraint(&c.value, strict)
            {
                self.push(
                    format!("{path}.value"),
                    format!("invalid {} constraint: {e}", c.operator.as_str()),
                );
            }
        }
    }

    /// One `update` block's own fields; [`Validator::rollout`] checks how
    /// they combine once the group's block is laid over the job's.
    fn update(&mut self, u: &Option<UpdatePolicy>, path: &str) {
        let Some(u) = u else { return };
        let at = format!("{path}.update");
        for (field, n) in [("max_parallel", u.max_parallel), ("canary", u.canary)] {
            if n.is_some_and(|m| m > MAX_COUNT) {
                self.push(
                    format!("{at}.{field}"),
                    format!("{field} is above the limit of {MAX_COUNT}"),
                );
            }
        }
        if let Some(r) = &u.rollback {
            if r.max_parallel.is_some_and(|m| m == 0 || m > MAX_COUNT) {
                self.push(
                    format!("{at}.rollback.max_parallel"),
                    format!("max_parallel is a number of copies from 1 to {MAX_COUNT}"),
                );
            }
            if let Some(d) = r.min_healthy_time {
                self.wait(
                    &format!("{at}.rollback.min_healthy_time"),
                    d.0,
                    MAX_POLICY_WAIT,
                );
            }
        }
        if let Some(w) = u.canary_weight.filter(|&w| w > 100) {
            self.push(
                format!("{at}.canary_weight"),
                format!("canary_weight is a percentage of traffic (0 to 100), got {w}"),
            );
        }
        for (field, d) in [
            ("min_healthy_time", u.min_healthy_time),
            ("healthy_deadline", u.healthy_deadline),
            ("progress_deadline", u.progress_deadline),
            ("stagger", u.stagger),
        ] {
            if let Some(d) = d {
                self.wait(&format!("{at}.{field}"), d.0, MAX_POLICY_WAIT);
            }
        }
    }

    /// The group's update rules as they resolve: canaries only for
    /// service jobs, and the fields that mean nothing without them.
    fn rollout(&mut self, job: &Job, g: &Group, path: &str) {
        if job.update.is_none() && g.update.is_none() {
            return;
        }
        let at = format!("{path}.update");
        let u = crate::job::Update::resolve(job, g);
        if u.canary > 0 && g.system {
            self.push(
                format!("{at}.canary"),
                "a group with `system = true` rolls node by node, without canaries",
            );
        }
        if u.canary > 0 && job.job_type != crate::job::JobType::Service {
            self.push(
                format!("{at}.canary"),
                format!(
                    "canaries roll out service jobs only; this job is of type {:?}",
                    job.job_type.as_str()
                ),
            );
        }
        if !u.stagger.is_zero() && !self.per_node {
            self.push(
                format!("{at}.stagger"),
                "stagger spaces the batches of a system job's rollout; a service job's \
                 rollout moves on when new copies are healthy (min_healthy_time)",
            );
        }
        if u.canary == 0 {
            for (field, set) in [
                ("canary_weight", u.canary_weight.is_some()),
                ("auto_promote", u.auto_promote),
            ] {
                if set {
                    self.push(
                        format!("{at}.{field}"),
                        format!("{field} needs canaries: set canary to 1 or more"),
                    );
                }
            }
        }
        if !u.progress_deadline.is_zero() && u.progress_deadline <= u.healthy_deadline {
            self.push(
                format!("{at}.progress_deadline"),
                format!(
                    "progress_deadline ({}) must be longer than healthy_deadline ({}), or 0 to disable it",
                    crate::duration::format(u.progress_deadline),
                    crate::duration::format(u.healthy_deadline)
                ),
            );
        }
    }

    /// `meta` keys become environment variable names (`EDGE_META_<key>`).
    fn meta(&mut self, meta: &BTreeMap<String, String>, path: &str) {
        for (k, v) in meta {
            let ok = !k.is_empty()
                && k.len() <= MAX_NAME_LEN
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !ok {
                self.push(
                    format!("{path}.meta"),
                    format!(
                        "meta key {:?} must be 1 to {MAX_NAME_LEN} ASCII letters, digits, '_', '-' or '.': tasks see it as EDGE_META_<key>",
                        shorten(k)
                    ),
                );
            } else if v.contains('\0') {
                self.push(
                    format!("{path}.meta.{k}"),
                    "a meta value cannot hold a NUL byte",
                );
            }
        }
    }

    fn group(&mut self, g: &Group, path: &str) {
        self.meta(&g.meta, path);
        self.update(&g.update, path);
        if let Some(m) = &g.migrate {
            let at = format!("{path}.migrate");
            if m.health_check == Some(HealthCheck::Manual) {
                self.push(
                    format!("{at}.health_check"),
                    "a migration is judged by \"checks\" or \"task_states\"; \"manual\" is for deployments",
                );
            }
            for (field, d) in [
                ("min_healthy_time", m.min_healthy_time),
                ("healthy_deadline", m.healthy_deadline),
            ] {
                if let Some(d) = d {
                    self.wait(&format!("{at}.{field}"), d.0, MAX_POLICY_WAIT);
                }
            }
            if m.max_parallel.is_some_and(|n| n > MAX_COUNT) {
                self.push(
                    format!("{at}.max_parallel"),
                    format!("max_parallel is above the limit of {MAX_COUNT}"),
                );
            }
        }
        if g.count > MAX_COUNT {
            self.push(
                format!("{path}.count"),
                format!("count is {}; the limit is {MAX_COUNT}", g.count),
            );
        }
        self.constraints(&g.constraints, path);
        self.out
            .extend(crate::prefer::affinities(&g.affinities, path));
        self.out.extend(crate::prefer::spreads(&g.spreads, path));
        self.wait(
            &format!("{path}.restart.interval"),
            g.restart.interval,
            MAX_POLICY_WAIT,
        );
        self.wait(
            &format!("{path}.restart.delay"),
            g.restart.delay,
            MAX_POLICY_WAIT,
        );
        self.wait(
            &format!("{path}.reschedule.interval"),
            g.reschedule.interval,
            MAX_POLICY_WAIT,
        );
        self.wait(
            &format!("{path}.reschedule.delay"),
            g.reschedule.delay,
            MAX_POLICY_WAIT,
        );
        let mut labels = BTreeSet::new();
        let mut statics = BTreeSet::new();
        for p in &g.network.ports {
            let at = format!("{path}.network.port.{}", p.label);
            if p.label.is_empty() {
                self.push(at.clone(), "port label is empty");
            } else if !labels.insert(p.label.as_str()) {
                self.push(at.clone(), format!("duplicate port label {:?}", p.label));
            }
            if let Some(s) = p.static_port {
                if s == 0 {
                    self.push(
                        format!("{at}.static"),
                        "static port must be between 1 and 65535",
                    );
                } else if !statics.insert(s) {
                    self.push(
                        format!("{at}.static"),
                        format!("static port {s} is used twice in this group"),
                    );
                }
            }
            if p.to == Some(0) {
                self.push(format!("{at}.to"), "`to` port must be between 1 and 65535");
            } else if p.to.is_some() && g.network.mode.is_host() {
                // Under host networking nothing maps the host port to
                // `to`: the task would listen where no instance points.
                self.push(
                    format!("{at}.to"),
                    "`to` maps the host port into the allocation's own network namespace, which only `mode = \"bridge\"` gives it: add `mode = \"bridge\"` to the network block, or drop `to` and listen on EDGE_PORT_<label>",
                );
            }
        }
        for (i, s) in g.services.iter().enumerate() {
            self.service(s, &labels, &format!("{path}.service[{i}]"));
            self.task_checks(g, s, &format!("{path}.service[{i}]"));
        }
        if g.tasks.is_empty() {
            self.push(format!("{path}.task"), "a group needs at least one task");
        } else if g.tasks.iter().all(|t| t.lifecycle.is_some()) {
            self.push(
                format!("{path}.task"),
                "every task of the group has a `lifecycle` hook: hooks run around main tasks, so at least one task needs none",
            );
        }
        if g.tasks.len() > MAX_TASKS {
            self.push(
                format!("{path}.task"),
                format!(
                    "a group has {} tasks; the limit is {MAX_TASKS}",
                    g.tasks.len()
                ),
            );
        }
        self.volumes(g, path);
        let mut tasks = BTreeSet::new();
        for (i, t) in g.tasks.iter().enumerate() {
            let at = named(path, "task", i, &t.name);
            if let Some(reason) = name_problem(NameKind::Task, &t.name) {
                self.push(
                    at.clone(),
                    format!("task name {:?} {reason}", shorten(&t.name)),
                );
            } else if !tasks.insert(t.name.as_str()) {
                self.push(at.clone(), format!("duplicate task name {:?}", t.name));
            }
            self.task(t, &at);
        }
    }

    fn service(&mut self, s: &Service, labels: &BTreeSet<&str>, path: &str) {
        if !valid_dns_label(&s.name) {
            self.push(
                format!("{path}.name"),
                format!(
                    "service name {:?} must be 1-63 letters, digits or '-', not starting or ending with '-'",
                    s.name
                ),
            );
        }
        // A label of the group, or a port number (the labels' values are
        // not known before placement, hence no assigned ports here).
        let known =
            |port: &str| labels.contains(port) || crate::job::resolve_port(port, &[]).is_some();
        if let Some(port) = &s.port
            && !known(port)
        {
            self.push(format!("{path}.port"), unknown_port(port, labels));
        }
        for (i, c) in s.checks.iter().enumerate() {
            let at = format!("{path}.check[{i}]");
            if let Some(port) = &c.port
                && !known(port)
            {
                self.push(format!("{at}.port"), unknown_port(port, labels));
            }
            if c.port.is_none() && s.port.is_none() && c.check_type.uses_port() {
                self.push(
                    format!("{at}.port"),
                    "check needs a port: set `port` on the service or the check",
                );
            }
            if c.check_type == CheckType::Http {
                match c.path.as_deref() {
                    None | Some("") => self.push(
                        format!("{at}.path"),
                        "http check needs a `path`, e.g. \"/\"",
                    ),
                    // Anything else would let the path name another host
                    // (`@other:80/`) once joined to the instance's address.
                    Some(p) if !p.starts_with('/') => self.push(
                        format!("{at}.path"),
                        format!("check path {:?} must start with '/'", shorten(p)),
                    ),
                    Some(_) => {}
                }
            }
            self.wait(&format!("{at}.interval"), c.interval, MAX_TASK_WAIT);
            self.wait(&format!("{at}.timeout"), c.timeout, MAX_TASK_WAIT);
            if let Some(cr) = c.check_restart {
                self.wait(
                    &format!("{at}.check_restart.grace"),
                    cr.grace,
                    MAX_TASK_WAIT,
                );
            }
            if c.interval == Duration::ZERO {
                self.push(
                    format!("{at}.interval"),
                    "check interval must be greater than 0",
                );
            }
            if c.timeout == Duration::ZERO {
                self.push(
                    format!("{at}.timeout"),
                    "check timeout must be greater than 0",
                );
            }
            if c.check_restart.is_some_and(|r| r.limit == 0) {
                self.push(
                    format!("{at}.check_restart.limit"),
                    "check_restart limit must be at least 1",
                );
            }
        }
        self.wait(
            &format!("{path}.shutdown_delay"),
            s.shutdown_delay,
            MAX_TASK_WAIT,
        );
        if let Some(p) = &s.publish {
            let at = format!("{path}.publish");
            if p.port == 0 {
                self.push(format!("{at}.port"), "publish port must be 1-65535");
            }
            if s.port.is_none() {
                self.push(
                    format!("{path}.port"),
                    "a published service needs a `port` to forward to",
                );
            }
            let http = p.protocol == crate::job::PublishProtocol::Http;
            if !http && (!p.hosts.is_empty() || p.path_prefix.is_some()) {
                self.push(
                    format!("{at}.protocol"),
                    "host and path routing need protocol = \"http\"",
                );
            }
            let udp = p.protocol == crate::job::PublishProtocol::Udp;
            if (http || udp) && p.proxy_protocol {
                self.push(
                    format!("{at}.proxy_protocol"),
                    "proxy_protocol applies to protocol = \"tcp\" only",
                );
            }
            if udp && p.tls.is_some() {
                self.push(
                    format!("{at}.tls"),
                    "tls applies to protocol = \"tcp\" or \"http\", not to datagrams",
                );
            }
            if let Some(prefix) = &p.path_prefix
                && !prefix.starts_with('/')
            {
                self.push(format!("{at}.path"), "path must start with '/'");
            }
            if let Some(tls) = &p.tls {
                let files = !(tls.cert_file.is_empty() && tls.key_file.is_empty());
                if files != tls.secret.is_empty()
                    || (files && (tls.cert_file.is_empty() || tls.key_file.is_empty()))
                {
                    self.push(
                        format!("{at}.tls"),
                        "tls takes cert_file and key_file (PEM files on every node), or secret (a secret with keys cert and key): one of the two",
                    );
                } else if let Some(reason) = (!tls.secret.is_empty())
                    .then(|| name_problem(NameKind::Volume, &tls.secret))
                    .flatten()
                {
                    self.push(
                        format!("{at}.tls.secret"),
                        format!("secret name {:?} {reason}", shorten(&tls.secret)),
                    );
                }
            }
        }
    }

    /// The group's volumes, and every task's mounts of them.
    fn volumes(&mut self, g: &crate::job::Group, path: &str) {
        use crate::job::VolumeType;
        if g.volumes.len() > MAX_VOLUMES {
            self.push(
                format!("{path}.volume"),
                format!(
                    "a group has {} volumes; the limit is {MAX_VOLUMES}",
                    g.volumes.len()
                ),
            );
            return;
        }
        let mut names = BTreeSet::new();
        for (i, v) in g.volumes.iter().enumerate() {
            let at = named(path, "volume", i, &v.name);
            if let Some(reason) = name_problem(NameKind::Volume, &v.name) {
                self.push(
                    at.clone(),
                    format!("volume name {:?} {reason}", shorten(&v.name)),
                );
            } else if !names.insert(v.name.as_str()) {
                self.push(at.clone(), format!("duplicate volume name {:?}", v.name));
            }
            match v.kind {
                VolumeType::Host => {
                    if v.source.is_empty() {
                        self.push(
                            format!("{at}.source"),
                            "a host volume needs `source`: the name the agent gives it (--host-volume NAME=PATH)",
                        );
                    } else if let Some(reason) = name_problem(NameKind::Volume, &v.source) {
                        self.push(
                            format!("{at}.source"),
                            format!("host volume name {:?} {reason}", shorten(&v.source)),
                        );
                    }
                }
                VolumeType::Local if !v.source.is_empty() => self.push(
                    format!("{at}.source"),
                    "a local volume has no `source`: the node makes it, one per copy, named by the block's label",
                ),
                VolumeType::Local if self.per_node => self.push(
                    format!("{at}.type"),
                    "a system job (or group) runs one copy on every node and cannot keep a local volume per copy: use a host volume",
                ),
                VolumeType::Local => {}
            }
            if let Some(size) = &v.size {
                use crate::volume::{MIN_VOLUME_SIZE, parse_size};
                match (v.kind, parse_size(size)) {
                    (VolumeType::Host, _) => self.push(
                        format!("{at}.size"),
                        "a host volume is the operator's directory, of whatever size it has: `size` is for local volumes",
                    ),
                    (_, Err(e)) => self.push(format!("{at}.size"), e),
                    (_, Ok(n)) if n < MIN_VOLUME_SIZE => self.push(
                        format!("{at}.size"),
                        format!("size {size:?} is under the smallest volume, 8MiB"),
                    ),
                    (_, Ok(_)) => {}
                }
            }
        }
        for (ti, t) in g.tasks.iter().enumerate() {
            let task_at = named(path, "task", ti, &t.name);
            if t.volume_mounts.len() > MAX_VOLUMES {
                self.push(
                    format!("{task_at}.volume_mount"),
                    format!(
                        "a task has {} volume mounts; the limit is {MAX_VOLUMES}",
                        t.volume_mounts.len()
                    ),
                );
                continue;
            }
            let mut dests = BTreeSet::new();
            for (i, m) in t.volume_mounts.iter().enumerate() {
                let at = format!("{task_at}.volume_mount[{i}]");
                match g.volumes.iter().find(|v| v.name == m.volume) {
                    None => self.push(
                        format!("{at}.volume"),
                        format!(
                            "the group has no volume {:?}; declare it with `volume {:?} {{ ... }}` in the group",
                            shorten(&m.volume),
                            shorten(&m.volume)
                        ),
                    ),
                    Some(v) if v.read_only && !m.read_only => self.push(
                        format!("{at}.read_only"),
                        format!("volume {:?} is read_only: mount it with `read_only = true`", v.name),
                    ),
                    Some(_) => {}
                }
                if let Some(why) = destination_problem(&m.destination) {
                    self.push(format!("{at}.destination"), why);
                } else if !dests.insert(m.destination.trim_end_matches('/')) {
                    self.push(
                        format!("{at}.destination"),
                        format!("two volumes are mounted at {:?}", m.destination),
                    );
                }
            }
        }
    }

    /// A task's `config "NAME"` and `secret "NAME"` blocks.
    fn data_refs(&mut self, t: &Task, path: &str) {
        let mut files = BTreeSet::new();
        for (secret, refs) in [(false, &t.configs), (true, &t.secrets)] {
            let kind = if secret { "secret" } else { "config" };
            if refs.len() > MAX_VOLUMES {
                self.push(
                    format!("{path}.{kind}"),
                    format!(
                        "a task has {} {kind} blocks; the limit is {MAX_VOLUMES}",
                        refs.len()
                    ),
                );
                continue;
            }
            for r in refs {
                let at = format!("{path}.{kind}.{}", shorten(&r.name));
                if let Some(reason) = name_problem(NameKind::Volume, &r.name) {
                    self.push(
                        at.clone(),
                        format!("{kind} name {:?} {reason}", shorten(&r.name)),
                    );
                    continue;
                }
                let file = r.path(secret);
                if let Some(why) = relative_problem(&file) {
                    self.push(format!("{at}.destination"), why);
                } else if secret && !file.starts_with("secrets/") {
                    self.push(
                        format!("{at}.destination"),
                        format!("a secret is written only under the task's secrets/ dir (a tmpfs): use \"secrets/{}\"", file.rsplit('/').next().unwrap_or_default()),
                    );
                } else if !(secret || file.starts_with("configs/") || file.starts_with("local/")) {
                    // The two dirs every driver shows the task (containers
                    // at /configs and /local).
                    self.push(
                        format!("{at}.destination"),
                        format!("a config is written under the task's configs/ or local/ dir: use \"configs/{}\"", file.rsplit('/').next().unwrap_or_default()),
                    );
                } else if !files.insert(file.clone()) {
                    self.push(
                        format!("{at}.destination"),
                        format!("two files are written at {file:?}"),
                    );
                }
                if !r.key.is_empty()
                    && let Some(p) = crate::objects::key_problem(&r.key)
                {
                    self.push(format!("{at}.key"), p);
                }
                if !r.mode.is_empty() && crate::objects::parse_mode(&r.mode).is_none() {
                    self.push(
                        format!("{at}.mode"),
                        format!(
                            "mode {:?} is not an octal file mode such as \"0400\"",
                            shorten(&r.mode)
                        ),
                    );
                }
                if secret && !r.env.is_empty() {
                    // The drivers keep a task's environment on disk (the
                    // exec driver's spec, containerd's metadata).
                    self.push(
                        format!("{at}.env"),
                        format!("a secret reaches a task only as a file: an env var would be written to the driver's state on disk; read {file:?} instead"),
                    );
                } else if !r.env.is_empty()
                    && crate::envfile::parse(&format!("{}=x", r.env)).is_err()
                {
                    self.push(
                        format!("{at}.env"),
                        format!("{:?} is not an environment variable name", shorten(&r.env)),
                    );
                }
            }
        }
    }

    /// A task's `template` blocks.
    fn templates(&mut self, t: &Task, path: &str) {
        use crate::template::{ChangeMode, SIGNALS, text_problem};
        let mut files: BTreeSet<String> = t
            .configs
            .iter()
            .map(|r| r.path(false))
            .chain(t.secrets.iter().map(|r| r.path(true)))
            .collect();
        if t.templates.len() > MAX_VOLUMES {
            self.push(
                format!("{path}.template"),
                format!(
                    "a task has {} templates; the limit is {MAX_VOLUMES}",
                    t.templates.len()
                ),
            );
            return;
        }
        for (i, tpl) in t.templates.iter().enumerate() {
            let at = format!("{path}.template[{i}]");
            if !tpl.source.is_empty() {
                self.push(
                    format!("{at}.source"),
                    "`source` is read by the CLI from beside an HCL job file; a JSON job carries the template's text in `data`",
                );
            }
            if tpl.data.trim().is_empty() {
                self.push(format!("{at}.data"), "a template needs `data`, its text");
            } else if let Some((line, why)) = text_problem(&tpl.data) {
                let why = match line {
                    Some(l) => format!("line {l} of the template: {why}"),
                    None => why,
                };
                self.push(format!("{at}.data"), why);
            }
            let dest = tpl.destination.trim_start_matches("./").to_string();
            if let Some(why) = relative_problem(&dest) {
                self.push(format!("{at}.destination"), why);
            } else if !(dest.starts_with("local/") || dest.starts_with("secrets/")) {
                self.push(
                    format!("{at}.destination"),
                    "a template is written under the task's local/ dir, or secrets/ when it reads a secret",
                );
            } else if !files.insert(dest.clone()) {
                self.push(
                    format!("{at}.destination"),
                    format!("two files are written at {dest:?}"),
                );
            }
            if tpl.env && dest.starts_with("secrets/") {
                self.push(
                    format!("{at}.env"),
                    "a template under secrets/ may hold secrets, which never become env vars (drivers keep a task's environment on disk)",
                );
            }
            if tpl.env && tpl.change_mode == ChangeMode::Signal {
                self.push(
                    format!("{at}.change_mode"),
                    "env templates take effect when the task starts: use change_mode \"restart\" or \"noop\"",
                );
            }
            match (tpl.change_mode, tpl.change_signal.as_str()) {
                (ChangeMode::Signal, "") => self.push(
                    format!("{at}.change_signal"),
                    format!(
                        "change_mode \"signal\" needs change_signal, one of {}",
                        SIGNALS.join(", ")
                    ),
                ),
                (ChangeMode::Signal, s) if !SIGNALS.contains(&s) => self.push(
                    format!("{at}.change_signal"),
                    format!("{:?} is not one of {}", shorten(s), SIGNALS.join(", ")),
                ),
                (ChangeMode::Signal, _) | (_, "") => {}
                (_, _) => self.push(
                    format!("{at}.change_signal"),
                    "change_signal is read only with change_mode \"signal\"",
                ),
            }
            if !tpl.perms.is_empty() && crate::objects::parse_mode(&tpl.perms).is_none() {
                self.push(
                    format!("{at}.perms"),
                    format!(
                        "perms {:?} is not an octal file mode such as \"0644\"",
                        shorten(&tpl.perms)
                    ),
                );
            }
        }
    }

    /// What a service's script and gRPC checks ask beyond a port: a
    /// command, and a task of the group whose driver can run it.
    fn task_checks(&mut self, g: &Group, s: &Service, path: &str) {
        for (i, c) in s.checks.iter().enumerate() {
            let at = format!("{path}.check[{i}]");
            if c.check_type != CheckType::Script {
                continue;
            }
            if c.command.trim().is_empty() {
                self.push(
                    format!("{at}.command"),
                    "script check needs a `command`, e.g. \"/bin/pg_isready\"",
                );
            }
            let task = if c.task.is_empty() {
                match g.tasks.as_slice() {
                    [only] => only,
                    _ => {
                        self.push(
                            format!("{at}.task"),
                            "script check needs a `task` to run in: the group has several",
                        );
                        continue;
                    }
                }
            } else if let Some(t) = g.tasks.iter().find(|t| t.name == c.task) {
                t
            } else {
                self.push(
                    format!("{at}.task"),
                    format!("task {:?} is not in the group", shorten(&c.task)),
                );
                continue;
            };
            if task.driver == "wasm" {
                self.push(
                    format!("{at}.task"),
                    format!(
                        "task {:?} runs on the wasm driver, which cannot run commands in its tasks (a module has no process to run one in): use a tcp, http or grpc check",
                        task.name
                    ),
                );
            }
        }
    }

    fn task(&mut self, t: &Task, path: &str) {
        self.meta(&t.meta, path);
        if t.artifacts.len() > crate::artifact::MAX_ARTIFACTS {
            self.push(
                format!("{path}.artifact"),
                format!(
                    "a task has {} artifacts; the limit is {}",
                    t.artifacts.len(),
                    crate::artifact::MAX_ARTIFACTS
                ),
            );
        }
        for (i, a) in t.artifacts.iter().enumerate() {
            for (field, message) in a.problems() {
                self.push(format!("{path}.artifact[{i}].{field}"), message);
            }
        }
        self.data_refs(t, path);
        self.templates(t, path);
        if t.driver == "model"
            && !(t.configs.is_empty() && t.secrets.is_empty() && t.templates.is_empty())
        {
            self.push(
                format!("{path}.secret"),
                "the model driver takes no configs, secrets or templates",
            );
        }
        if t.driver == "model" && !t.volume_mounts.is_empty() {
            self.push(
                format!("{path}.volume_mount"),
                "the model driver mounts no volumes: its model comes from `config { model = ... }`",
            );
        }
        if let Some(l) = t.lifecycle
            && l.sidecar
            && l.hook == crate::job::Hook::Poststop
        {
            self.push(
                format!("{path}.lifecycle.sidecar"),
                "a poststop task runs once after the main tasks stopped; it cannot be a sidecar",
            );
        }
        self.constraints(&t.constraints, path);
        self.out
            .extend(crate::prefer::affinities(&t.affinities, path));
        if t.driver.trim().is_empty() {
            self.push(
                format!("{path}.driver"),
                "task needs a `driver`, e.g. \"exec\"",
            );
        } else if let Some(hint) = nomad_driver_hint(&t.driver) {
            self.push(
                format!("{path}.driver"),
                format!("the {:?} driver is not built: {hint}", t.driver),
            );
        } else if !DRIVERS.contains(&t.driver.as_str()) {
            self.push(
                format!("{path}.driver"),
                format!(
                    "unknown driver {:?}; known drivers are {}",
                    shorten(&t.driver),
                    DRIVERS.join(", ")
                ),
            );
        } else if let Err((field, message)) = self.configs.check(&t.driver, &t.config) {
            self.push(format!("{path}.{field}"), message);
        }
        if let Some(signal) = &t.kill_signal {
            let name = signal.trim().to_ascii_uppercase();
            let name = name.strip_prefix("SIG").unwrap_or(&name);
            if !KILL_SIGNALS.contains(&name) {
                self.push(
                    format!("{path}.kill_signal"),
                    format!(
                        "unknown signal {:?}; one of SIG{}",
                        shorten(signal),
                        KILL_SIGNALS.join(", SIG")
                    ),
                );
            } else if matches!(t.driver.as_str(), "wasm" | "model") {
                self.push(
                    format!("{path}.kill_signal"),
                    format!(
                        "the {} driver stops its tasks itself; kill_signal is for exec and containerd tasks",
                        t.driver
                    ),
                );
            }
        }
        if t.resources.cpu == 0 {
            self.push(
                format!("{path}.resources.cpu"),
                "cpu must be greater than 0",
            );
        } else if t.resources.cpu > MAX_TASK_CPU {
            self.push(
                format!("{path}.resources.cpu"),
                format!(
                    "cpu is {} MHz; the limit is {MAX_TASK_CPU}",
                    t.resources.cpu
                ),
            );
        }
        if t.resources.memory == 0 {
            self.push(
                format!("{path}.resources.memory"),
                "memory must be greater than 0",
            );
        } else if t.resources.memory > MAX_TASK_MEMORY {
            self.push(
                format!("{path}.resources.memory"),
                format!(
                    "memory is {} MB; the limit is {MAX_TASK_MEMORY}",
                    t.resources.memory
                ),
            );
        }
        self.wait(
            &format!("{path}.kill_timeout"),
            t.kill_timeout,
            MAX_TASK_WAIT,
        );
    }

    fn wait(&mut self, field: &str, value: Duration, max: Duration) {
        if value > max {
            self.push(
                field.to_string(),
                format!(
                    "{} is longer than the limit of {}",
                    crate::duration::format(value),
                    crate::duration::format(max)
                ),
            );
        }
    }
}

/// The signals a task may be asked to stop with (`kill_signal`).
const KILL_SIGNALS: &[&str] = &[
    "TERM", "INT", "QUIT", "HUP", "USR1", "USR2", "WINCH", "ALRM", "KILL",
];

/// The nearest edge driver to a Nomad driver edge does not have.
fn nomad_driver_hint(driver: &str) -> Option<&'static str> {
    Some(match driver {
        "raw_exec" => {
            "use `driver = \"exec\"`, which runs the command as `nobody` (or `config.user`) in the task's own cgroup"
        }
        "podman" => {
            "use `driver = \"containerd\"` (or `docker`): the same OCI image runs under containerd"
        }
        "java" => "run `java -jar` with `driver = \"exec\"`, or the jar in a container image",
        "qemu" => "virtual machines are not run by edge: use a container image or `exec`",
        _ => return None,
    })
}

/// The path every finding of `job` starts with.
pub(crate) fn job_base(job: &Job) -> String {
    if job.id.is_empty() || job.id.len() > MAX_JOB_ID_LEN {
        "job".to_string()
    } else {
        format!("job.{}", job.id)
    }
}

/// The path of a named block: by name, or by position when the name is too
/// long to repeat in every finding under it.
pub(crate) fn named(base: &str, block: &str, index: usize, name: &str) -> String {
    if name.len() > MAX_NAME_LEN {
        format!("{base}.{block}[{index}]")
    } else {
        format!("{base}.{block}.{name}")
    }
}

fn unknown_port(port: &str, labels: &BTreeSet<&str>) -> String {
    if labels.is_empty() {
        format!(
            "port {port:?} is not defined: the group has no network ports, and it is not a port number (1-65535)"
        )
    } else {
        let known: Vec<String> = labels.iter().map(|l| format!("{l:?}")).collect();
        format!(
            "port {port:?} is neither a port label of the group's network block (known: {}) nor a port number",
            known.join(", ")
        )
    }
}
