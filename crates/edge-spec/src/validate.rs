//! Semantic checks of a decoded job, shared by the file readers and the
//! server (for jobs submitted through the API, which carry no file location).

use crate::error::Diagnostic;
use crate::job::{CheckType, Constraint, ConstraintOp, Group, Job, Service, Task};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Every problem found in `job`, each named by its dotted field path
/// (`job.hello.group.web.count`); locations are left empty.
pub fn validate(job: &Job) -> Vec<Diagnostic> {
    let mut v = Validator { out: Vec::new() };
    v.job(job);
    v.out
}

struct Validator {
    out: Vec<Diagnostic>,
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Service names become DNS labels (`NAME.service.edge`).
fn valid_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl Validator {
    fn push(&mut self, field: String, message: impl Into<String>) {
        self.out.push(Diagnostic::new(field, message));
    }

    fn job(&mut self, job: &Job) {
        let base = if job.id.is_empty() {
            "job".to_string()
        } else {
            format!("job.{}", job.id)
        };
        if !valid_id(&job.id) {
            self.push(
                format!("{base}.id"),
                format!(
                    "job id {:?} must be non-empty and use only letters, digits, '_', '.' and '-'",
                    job.id
                ),
            );
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
        if job.groups.is_empty() {
            self.push(format!("{base}.group"), "a job needs at least one group");
        }
        let mut groups = BTreeSet::new();
        let mut services: BTreeMap<&str, String> = BTreeMap::new();
        for g in &job.groups {
            let path = format!("{base}.group.{}", g.name);
            if g.name.is_empty() {
                self.push(path.clone(), "group name is empty");
            } else if !groups.insert(g.name.as_str()) {
                self.push(path.clone(), format!("duplicate group name {:?}", g.name));
            }
            self.group(g, &path);
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

    fn constraints(&mut self, constraints: &[Constraint], base: &str) {
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
        }
    }

    fn group(&mut self, g: &Group, path: &str) {
        self.constraints(&g.constraints, path);
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
            }
        }
        for (i, s) in g.services.iter().enumerate() {
            self.service(s, &labels, &format!("{path}.service[{i}]"));
        }
        if g.tasks.is_empty() {
            self.push(format!("{path}.task"), "a group needs at least one task");
        }
        let mut tasks = BTreeSet::new();
        for t in &g.tasks {
            let at = format!("{path}.task.{}", t.name);
            if t.name.is_empty() {
                self.push(at.clone(), "task name is empty");
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
        let known = |label: &str| labels.contains(label);
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
            if c.port.is_none() && s.port.is_none() {
                self.push(
                    format!("{at}.port"),
                    "check needs a port: set `port` on the service or the check",
                );
            }
            if c.check_type == CheckType::Http && c.path.as_deref().is_none_or(str::is_empty) {
                self.push(
                    format!("{at}.path"),
                    "http check needs a `path`, e.g. \"/\"",
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
            if http && p.proxy_protocol {
                self.push(
                    format!("{at}.proxy_protocol"),
                    "proxy_protocol applies to protocol = \"tcp\" only",
                );
            }
            if let Some(prefix) = &p.path_prefix
                && !prefix.starts_with('/')
            {
                self.push(format!("{at}.path"), "path must start with '/'");
            }
        }
    }

    fn task(&mut self, t: &Task, path: &str) {
        if t.driver.trim().is_empty() {
            self.push(
                format!("{path}.driver"),
                "task needs a `driver`, e.g. \"exec\"",
            );
        }
        if t.resources.cpu == 0 {
            self.push(
                format!("{path}.resources.cpu"),
                "cpu must be greater than 0",
            );
        }
        if t.resources.memory == 0 {
            self.push(
                format!("{path}.resources.memory"),
                "memory must be greater than 0",
            );
        }
    }
}

fn unknown_port(port: &str, labels: &BTreeSet<&str>) -> String {
    if labels.is_empty() {
        format!("port {port:?} is not defined: the group has no network ports")
    } else {
        let known: Vec<String> = labels.iter().map(|l| format!("{l:?}")).collect();
        format!(
            "port {port:?} is not a port label of the group's network block (known: {})",
            known.join(", ")
        )
    }
}
