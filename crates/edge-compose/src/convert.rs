//! A loaded Compose project as the edge job it becomes: one group per
//! service with one containerd task, its ports published through every
//! node's load balancer, its networks, volumes, configs and secrets.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use compose_spec::ShortOrLong;
use compose_spec::service::ports::{Mode, Protocol};
use edge_spec::{
    Check, CheckRestart, CheckType, Constraint, ConstraintOp, DataRef, DependCondition, Group,
    GroupDependency, Job, JobStatus, JobType, NamedNetwork, Network, NetworkMode, PortSpec,
    Publish, PublishProtocol, ReschedulePolicy, Resources, RestartMode, RestartPolicy,
    RollbackPolicy, Service, Spread, Task, UpdatePolicy, VolumeMount, VolumeRequest, VolumeType,
};
use serde_json::json;
use serde_yaml::Value;

use crate::error::{ComposeError, Warning};
use crate::load::Project;

/// A config or secret the project makes at `up` (from `file:`, `content:`
/// or `environment:`) or expects to exist (`external: true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataObject {
    pub secret: bool,
    /// The edge object's name (`PROJECT-NAME` unless `name:` says).
    pub name: String,
    /// Empty for an external object.
    pub data: BTreeMap<String, String>,
    pub external: bool,
}

/// The project as edge objects.
#[derive(Debug, Clone)]
pub struct Conversion {
    pub job: Job,
    pub objects: Vec<DataObject>,
    pub warnings: Vec<Warning>,
}

/// CPU shares per Compose CPU: edge counts CPU in MHz.
const MHZ_PER_CPU: f64 = 1000.0;
/// More ports than this from one range are refused rather than made into
/// that many listeners.
const MAX_RANGE: u32 = 100;

pub fn convert(project: &Project) -> Result<Conversion, ComposeError> {
    let mut c = Converter {
        project,
        warnings: project.warnings.clone(),
        objects: Vec::new(),
        networks: BTreeSet::new(),
        volume_users: BTreeMap::new(),
        one_shot: one_shot(project),
    };
    c.objects()?;
    let mut groups = Vec::new();
    let services = project
        .value
        .get("services")
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    if services.is_empty() {
        return Err(project.error("services", "the project has no services to run"));
    }
    for (name, svc) in &services {
        let Some(name) = name.as_str() else {
            return Err(project.error("services", "a service name must be a string"));
        };
        groups.push(c.group(name, svc)?);
    }
    let networks = c
        .networks
        .iter()
        .map(|n| NamedNetwork { name: n.clone() })
        .collect();
    let job = Job {
        id: project.name.clone(),
        namespace: project.name.clone(),
        name: project.name.clone(),
        job_type: JobType::Service,
        datacenters: edge_spec::default_datacenters(),
        priority: edge_spec::default_priority(),
        meta: BTreeMap::from([("compose.project".to_string(), project.name.clone())]),
        constraints: Vec::new(),
        affinities: Vec::new(),
        spreads: Vec::new(),
        update: None,
        groups,
        networks,
        periodic: None,
        parameterized: None,
        parent_id: String::new(),
        payload: String::new(),
        next_launch: None,
        children: Vec::new(),
        version: 0,
        stop: false,
        status: JobStatus::Pending,
        stable: false,
        submit_time: 0,
        create_index: 0,
        modify_index: 0,
        scaled: None,
    };
    // What edge's own rules refuse (a name too long for a DNS label, say)
    // is named by the service it came from.
    if let Some(d) = edge_spec::validate(&job).first() {
        let service = d
            .field
            .split(".group.")
            .nth(1)
            .and_then(|rest| rest.split('.').next())
            .map_or_else(|| "services".to_string(), |g| format!("services.{g}"));
        return Err(project.error(&service, format!("{}: {}", d.field, d.message)));
    }
    Ok(Conversion {
        job,
        objects: c.objects,
        warnings: c.warnings,
    })
}

struct Converter<'a> {
    project: &'a Project,
    warnings: Vec<Warning>,
    objects: Vec<DataObject>,
    networks: BTreeSet<String>,
    volume_users: BTreeMap<String, String>,
    /// Services another waits for with `service_completed_successfully`:
    /// their replicas run to completion (`batch = true`).
    one_shot: BTreeSet<String>,
}

fn one_shot(project: &Project) -> BTreeSet<String> {
    let services = project.value.get("services").and_then(Value::as_mapping);
    services
        .into_iter()
        .flat_map(|m| m.values())
        .filter_map(|svc| svc.get("depends_on")?.as_mapping())
        .flat_map(|deps| deps.iter())
        .filter(|(_, opts)| {
            opts.get("condition").and_then(Value::as_str) == Some("service_completed_successfully")
        })
        .filter_map(|(name, _)| s(name))
        .collect()
}

fn s(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(items) => items.iter().filter_map(s).collect(),
        other => s(other).into_iter().collect(),
    }
}

impl Converter<'_> {
    fn err(&self, path: &str, message: impl Into<String>) -> ComposeError {
        self.project.error(path, message)
    }

    fn warn(&mut self, path: &str, message: impl Into<String>) {
        self.warnings.push(Warning {
            at: self.project.locate(path),
            message: message.into(),
        });
    }

    fn duration(&self, path: &str, v: &Value) -> Result<Duration, ComposeError> {
        let text = s(v).unwrap_or_default();
        let d = humantime::parse_duration(text.trim()).map_err(|e| {
            self.err(
                path,
                format!("{text:?} is not a duration (like 10s, 1m30s): {e}"),
            )
        })?;
        if d > Duration::from_secs(24 * 3600) {
            return Err(self.err(path, format!("{text:?} is longer than a day")));
        }
        Ok(d)
    }

    /// Top-level configs and secrets as the objects `up` makes.
    fn objects(&mut self) -> Result<(), ComposeError> {
        for (top, secret) in [("configs", false), ("secrets", true)] {
            let Some(items) = self.project.value.get(top).and_then(Value::as_mapping) else {
                continue;
            };
            for (name, def) in items {
                let name = s(name).unwrap_or_default();
                let path = format!("{top}.{name}");
                let external = def
                    .get("external")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let object_name = object_name(self.project, top, &name);
                if !object_name_ok(&object_name) {
                    return Err(self.err(
                        &path,
                        format!("{object_name:?} cannot name an edge {top:?} object: 1-63 letters, digits, `-`, `_` or `.`"),
                    ));
                }
                let mut data = BTreeMap::new();
                if !external {
                    let value = if let Some(f) = def.get("file").and_then(s) {
                        let file = self.project.dir.join(&f);
                        std::fs::read_to_string(&file).map_err(|e| {
                            self.err(&format!("{path}.file"), format!("{}: {e}", file.display()))
                        })?
                    } else if let Some(c) = def.get("content").and_then(s) {
                        c
                    } else if let Some(var) = def.get("environment").and_then(s) {
                        self.project.vars.get(&var).cloned().ok_or_else(|| {
                            self.err(
                                &format!("{path}.environment"),
                                format!("the variable {var} is not set"),
                            )
                        })?
                    } else {
                        return Err(self.err(
                            &path,
                            format!("give {name:?} a `file`, `content` or `environment`, or mark it `external: true`"),
                        ));
                    };
                    data.insert(name.clone(), value);
                }
                self.objects.push(DataObject {
                    secret,
                    name: object_name,
                    data,
                    external,
                });
            }
        }
        Ok(())
    }

    fn group(&mut self, name: &str, svc: &Value) -> Result<Group, ComposeError> {
        let path = format!("services.{name}");
        if let Some(problem) = service_name_problem(name) {
            return Err(self.err(&path, format!("service name {name:?} {problem}")));
        }
        let deploy = svc.get("deploy").cloned().unwrap_or(Value::Null);
        // The typed parse took only `replicated` and `global`.
        let global = deploy.get("mode").and_then(s).as_deref() == Some("global");
        let count = match (deploy.get("replicas"), svc.get("scale")) {
            (Some(_), _) if global => {
                return Err(self.err(
                    &format!("{path}.deploy.replicas"),
                    "`replicas` does not apply to `mode: global`: one replica runs on every node",
                ));
            }
            (Some(r), _) => self.count(&format!("{path}.deploy.replicas"), r)?,
            (None, Some(r)) => self.count(&format!("{path}.scale"), r)?,
            (None, None) => 1,
        };
        let (ports, services) = self.ports(name)?;
        let networks = self.service_networks(name, svc)?;
        let mut services = services;
        if let Some(check) = self.healthcheck(name, svc)? {
            services[0].checks.push(check);
        }
        for alias in self.aliases(name, svc) {
            services.push(Service {
                checks: services[0].checks.clone(),
                ..service(alias, services[0].port.clone())
            });
        }
        let depends_on = self.depends_on(name, svc)?;
        let (volumes, mounts, binds) = self.volumes(name, svc)?;
        let task = self.task(name, svc, mounts, binds)?;
        let (restart, reschedule) = self.restart(name, svc, &deploy)?;
        let mut meta = BTreeMap::new();
        if let Some(labels) = deploy.get("labels") {
            meta.extend(self.key_values(&format!("{path}.deploy.labels"), labels)?);
        }
        let (constraints, spreads) = self.placement(name, &deploy)?;
        Ok(Group {
            name: name.to_string(),
            count,
            constraints,
            affinities: Vec::new(),
            spreads,
            network: Network {
                mode: NetworkMode::Bridge,
                ports,
                networks,
            },
            services,
            restart,
            reschedule,
            update: self.update(name, &deploy)?,
            migrate: None,
            tasks: vec![task],
            meta,
            volumes,
            depends_on,
            system: global,
            batch: self.one_shot.contains(name),
            scaling: None,
        })
    }

    fn count(&self, path: &str, v: &Value) -> Result<u32, ComposeError> {
        let n = v
            .as_u64()
            .ok_or_else(|| self.err(path, "must be a whole number"))?;
        if n > u64::from(edge_spec::limits::MAX_COUNT) {
            return Err(self.err(
                path,
                format!("{n} is more than {} replicas", edge_spec::limits::MAX_COUNT),
            ));
        }
        Ok(n as u32)
    }

    /// The group's ports and its services: the first carries the
    /// service's name (its DNS name), each further published port one more.
    fn ports(&mut self, name: &str) -> Result<(Vec<PortSpec>, Vec<Service>), ComposeError> {
        let path = format!("services.{name}.ports");
        let typed = self
            .project
            .compose
            .services
            .iter()
            .find(|(id, _)| id.as_str() == name)
            .map(|(_, s)| s.ports.clone())
            .unwrap_or_default();
        let mut ports: Vec<PortSpec> = Vec::new();
        let mut published: Vec<(String, u16, PublishProtocol)> = Vec::new();
        for (i, entry) in typed.into_iter().enumerate() {
            let at = format!("{path}[{i}]");
            let long: Vec<compose_spec::service::ports::Port> = match entry {
                ShortOrLong::Short(p) => p.into_long_iter().collect(),
                ShortOrLong::Long(p) => vec![p],
            };
            if long.len() as u32 > MAX_RANGE {
                return Err(self.err(
                    &at,
                    format!("{} ports in one range: at most {MAX_RANGE}", long.len()),
                ));
            }
            for p in long {
                let host = p.mode == Some(Mode::Host);
                // A host port maps TCP and UDP alike to the replica.
                let protocol = match &p.protocol {
                    None | Some(Protocol::Tcp) => PublishProtocol::Tcp,
                    Some(Protocol::Udp) => PublishProtocol::Udp,
                    Some(other) => {
                        return Err(self.err(
                            &at,
                            format!("`{other}` ports: only TCP and UDP are published (not supported yet)"),
                        ));
                    }
                };
                if p.host_ip.is_some() {
                    return Err(self.err(
                        &at,
                        "a host address (`IP:published:target`) is not supported yet: a published \
                         port listens on every address of every node",
                    ));
                }
                let targets: Vec<u16> = match &p.published {
                    Some(r) if r.size() > 1 => {
                        let start = r.start();
                        (0..r.size()).map(|o| start.saturating_add(o)).collect()
                    }
                    Some(r) => vec![r.start()],
                    None => Vec::new(),
                };
                let label = unique_label(&ports, p.target);
                ports.push(PortSpec {
                    label: label.clone(),
                    static_port: if host { targets.first().copied() } else { None },
                    to: Some(p.target),
                });
                if !host {
                    for published_port in targets {
                        if published_port == 0 {
                            return Err(self.err(&at, "published port 0 is not a port"));
                        }
                        published.push((label.clone(), published_port, protocol));
                    }
                }
            }
        }
        let first_port = ports.first().map(|p| p.label.clone());
        let mut services = vec![service(
            name.to_string(),
            published.first().map(|(l, _, _)| l.clone()).or(first_port),
        )];
        let mut names = BTreeSet::from([name.to_string()]);
        for (i, (label, port, protocol)) in published.into_iter().enumerate() {
            let publish = Some(Publish {
                port,
                protocol,
                hosts: Vec::new(),
                path_prefix: None,
                balance: edge_spec::Balance::RoundRobin,
                proxy_protocol: false,
                tls: None,
            });
            if i == 0 {
                services[0].publish = publish;
            } else {
                // `53:53/tcp` and `53:53/udp` are two services on one port.
                let mut extra = format!("{name}-{port}");
                if !names.insert(extra.clone()) {
                    extra = format!("{name}-{port}-{}", protocol.as_str());
                    names.insert(extra.clone());
                }
                services.push(Service {
                    publish,
                    ..service(extra, Some(label))
                });
            }
        }
        Ok((ports, services))
    }

    fn service_networks(&mut self, name: &str, svc: &Value) -> Result<Vec<String>, ComposeError> {
        let path = format!("services.{name}.networks");
        let mut out = Vec::new();
        match svc.get("networks") {
            None => out.push("default".to_string()),
            Some(Value::Sequence(items)) => out.extend(items.iter().filter_map(s)),
            Some(Value::Mapping(m)) => {
                for (net, opts) in m {
                    let net = s(net).unwrap_or_default();
                    if let Some(o) = opts.as_mapping() {
                        for k in o.keys().filter_map(Value::as_str) {
                            if k != "aliases" {
                                return Err(self.err(
                                    &format!("{path}.{net}.{k}"),
                                    format!(
                                        "`{k}`: not supported yet (the server hands out addresses)"
                                    ),
                                ));
                            }
                        }
                    }
                    out.push(net);
                }
            }
            Some(_) => return Err(self.err(&path, "a list or mapping of network names")),
        }
        for net in &out {
            let defined = self
                .project
                .value
                .get("networks")
                .and_then(|n| n.get(net.as_str()));
            if net != "default" && defined.is_none() {
                return Err(self.err(
                    &path,
                    format!("network {net:?} is not defined under the top-level `networks`"),
                ));
            }
            if let Some(driver) = defined.and_then(|d| d.get("driver")).and_then(s)
                && driver != "bridge"
                && driver != "overlay"
            {
                return Err(self.err(
                    &format!("networks.{net}.driver"),
                    format!("driver {driver:?}: edge's networks are `bridge` or `overlay`"),
                ));
            }
            if let Err(e) = edge_spec::check_name(edge_spec::NameKind::Network, net) {
                return Err(self.err(&path, e.to_string()));
            }
            self.networks.insert(net.clone());
        }
        Ok(out)
    }

    fn aliases(&self, name: &str, svc: &Value) -> Vec<String> {
        let mut out = BTreeSet::new();
        if let Some(Value::Mapping(m)) = svc.get("networks") {
            for opts in m.values() {
                if let Some(a) = opts.get("aliases") {
                    out.extend(strings(a));
                }
            }
        }
        out.remove(name);
        out.into_iter().collect()
    }

    fn healthcheck(&self, name: &str, svc: &Value) -> Result<Option<Check>, ComposeError> {
        let path = format!("services.{name}.healthcheck");
        let Some(h) = svc.get("healthcheck") else {
            return Ok(None);
        };
        if h.get("disable").and_then(Value::as_bool) == Some(true) {
            return Ok(None);
        }
        let test = h.get("test").map(strings).unwrap_or_default();
        let (command, args) = match test.first().map(String::as_str) {
            None => return Ok(None),
            Some("NONE") => return Ok(None),
            Some("CMD") if test.len() > 1 => (test[1].clone(), test[2..].to_vec()),
            Some("CMD-SHELL") if test.len() == 2 => (
                "/bin/sh".to_string(),
                vec!["-c".to_string(), test[1].clone()],
            ),
            Some(_) if matches!(h.get("test"), Some(Value::String(_))) => (
                "/bin/sh".to_string(),
                vec!["-c".to_string(), test[0].clone()],
            ),
            Some(_) => {
                return Err(self.err(
                    &format!("{path}.test"),
                    "write [\"CMD\", program, args...], [\"CMD-SHELL\", \"command\"], a string or [\"NONE\"]",
                ));
            }
        };
        let get = |k: &str, default: Duration| -> Result<Duration, ComposeError> {
            h.get(k)
                .map_or(Ok(default), |v| self.duration(&format!("{path}.{k}"), v))
        };
        let retries = match h.get("retries") {
            None => 3,
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| self.err(&format!("{path}.retries"), "a number from 1 to 100"))?
                as u32,
        };
        if h.get("start_interval").is_some() {
            return Err(self.err(
                &format!("{path}.start_interval"),
                "`start_interval`: not supported yet",
            ));
        }
        Ok(Some(Check {
            name: format!("{name}-health"),
            check_type: CheckType::Script,
            path: None,
            port: None,
            interval: get("interval", Duration::from_secs(30))?.max(Duration::from_secs(1)),
            timeout: get("timeout", Duration::from_secs(30))?.max(Duration::from_secs(1)),
            check_restart: Some(CheckRestart {
                limit: retries,
                grace: get("start_period", Duration::ZERO)?.max(Duration::from_secs(1)),
            }),
            command,
            args,
            task: name.to_string(),
            grpc_service: String::new(),
            grpc_use_tls: false,
        }))
    }

    /// `depends_on` as the group's: the server places the service's first
    /// replicas once those it names run (`service_started`), pass their
    /// checks (`service_healthy`) or ran to completion
    /// (`service_completed_successfully`).
    fn depends_on(
        &mut self,
        name: &str,
        svc: &Value,
    ) -> Result<Vec<GroupDependency>, ComposeError> {
        let path = format!("services.{name}.depends_on");
        let services = self.project.value.get("services");
        let entries: Vec<(String, Value)> = match svc.get("depends_on") {
            None => Vec::new(),
            Some(Value::Sequence(items)) => items
                .iter()
                .filter_map(s)
                .map(|d| (d, Value::Null))
                .collect(),
            Some(Value::Mapping(m)) => m
                .iter()
                .map(|(k, v)| (s(k).unwrap_or_default(), v.clone()))
                .collect(),
            Some(_) => return Err(self.err(&path, "a list or mapping of service names")),
        };
        let mut out = Vec::new();
        for (on, opts) in entries {
            let at = format!("{path}.{on}");
            let target = services.and_then(|m| m.get(on.as_str()));
            let required = opts.get("required").and_then(Value::as_bool) != Some(false);
            match target {
                None if required => {
                    return Err(self.err(&at, format!("no service {on:?} in the project")));
                }
                None => {
                    self.warn(
                        &at,
                        format!(
                            "no service {on:?} in the project (`required: false`: not waited for)"
                        ),
                    );
                    continue;
                }
                Some(_) => {}
            }
            if opts.get("restart").and_then(Value::as_bool) == Some(true) {
                self.warn(
                    &format!("{at}.restart"),
                    format!("`restart: true`: {name:?} is not restarted when {on:?} is updated (`edge compose restart {name}` does it)"),
                );
            }
            let condition = opts
                .get("condition")
                .and_then(s)
                .unwrap_or_else(|| "service_started".to_string());
            let condition = match condition.as_str() {
                "service_started" => DependCondition::Started,
                "service_healthy" => {
                    let checked = target
                        .and_then(|t| t.get("healthcheck"))
                        .is_some_and(|h| h.get("disable").and_then(Value::as_bool) != Some(true));
                    if !checked {
                        self.warn(
                            &format!("{at}.condition"),
                            format!("{on:?} has no `healthcheck` here (an image's own HEALTHCHECK is not read): {name:?} waits for it to run"),
                        );
                    }
                    DependCondition::Healthy
                }
                "service_completed_successfully" => DependCondition::Completed,
                other => {
                    return Err(self.err(
                        &format!("{at}.condition"),
                        format!("{other:?}: expected service_started, service_healthy or service_completed_successfully"),
                    ));
                }
            };
            out.push(GroupDependency {
                group: on,
                condition,
            });
        }
        Ok(out)
    }

    #[allow(clippy::type_complexity)]
    fn volumes(
        &mut self,
        name: &str,
        svc: &Value,
    ) -> Result<(Vec<VolumeRequest>, Vec<VolumeMount>, Vec<String>), ComposeError> {
        let path = format!("services.{name}.volumes");
        let mut requests = Vec::new();
        let mut mounts = Vec::new();
        let mut binds = Vec::new();
        let items = svc
            .get("volumes")
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        for (i, v) in items.iter().enumerate() {
            let at = format!("{path}[{i}]");
            let (kind, source, target, read_only) = match v {
                Value::String(text) => {
                    let parts: Vec<&str> = text.split(':').collect();
                    let (source, target, mode) = match parts[..] {
                        [t] => ("", t, ""),
                        [src, t] => (src, t, ""),
                        [src, t, m] => (src, t, m),
                        _ => {
                            return Err(
                                self.err(&at, format!("{text:?}: expected SOURCE:TARGET[:ro]"))
                            );
                        }
                    };
                    let mut read_only = false;
                    for opt in mode.split(',').filter(|o| !o.is_empty()) {
                        match opt {
                            "ro" => read_only = true,
                            // Docker on Linux takes these and does nothing.
                            "rw" | "cached" | "delegated" | "consistent" => {}
                            "z" | "Z" => self.warn(
                                &at,
                                format!(
                                    "`:{opt}` ignored: edge does not relabel mounts for SELinux"
                                ),
                            ),
                            other => {
                                return Err(self.err(
                                    &at,
                                    format!("mount option {other:?}: `ro`, `rw` (others are not supported yet)"),
                                ));
                            }
                        }
                    }
                    let kind = if source.is_empty() {
                        "anonymous"
                    } else if source.starts_with(['.', '/', '~']) {
                        "bind"
                    } else {
                        "volume"
                    };
                    (
                        kind.to_string(),
                        source.to_string(),
                        target.to_string(),
                        read_only,
                    )
                }
                Value::Mapping(_) => {
                    for k in v
                        .as_mapping()
                        .into_iter()
                        .flat_map(|m| m.keys())
                        .filter_map(Value::as_str)
                    {
                        if !["type", "source", "target", "read_only", "bind", "volume"].contains(&k)
                        {
                            return Err(
                                self.err(&format!("{at}.{k}"), format!("`{k}`: not supported yet"))
                            );
                        }
                    }
                    if let Some(b) = v.get("bind")
                        && b.get("create_host_path").and_then(Value::as_bool) == Some(false)
                    {
                        return Err(
                            self.err(&format!("{at}.bind"), "`bind` options: not supported yet")
                        );
                    }
                    (
                        v.get("type")
                            .and_then(s)
                            .unwrap_or_else(|| "volume".to_string()),
                        v.get("source").and_then(s).unwrap_or_default(),
                        v.get("target").and_then(s).unwrap_or_default(),
                        v.get("read_only").and_then(Value::as_bool).unwrap_or(false),
                    )
                }
                _ => return Err(self.err(&at, "a volume is a string or a mapping")),
            };
            if !target.starts_with('/') || target.split('/').any(|c| c == "..") {
                return Err(self.err(
                    &at,
                    format!("target {target:?} must be an absolute path without `..`"),
                ));
            }
            match kind.as_str() {
                "volume" => {
                    let defined = self
                        .project
                        .value
                        .get("volumes")
                        .and_then(|m| m.get(source.as_str()));
                    if defined.is_none() {
                        return Err(self.err(
                            &at,
                            format!(
                                "volume {source:?} is not defined under the top-level `volumes`"
                            ),
                        ));
                    }
                    if let Some(driver) = defined.and_then(|d| d.get("driver")).and_then(s)
                        && driver != "local"
                    {
                        return Err(self.err(
                            &format!("volumes.{source}.driver"),
                            format!("driver {driver:?}: only `local`"),
                        ));
                    }
                    if let Some(other) = self.volume_users.get(&source)
                        && other != name
                    {
                        return Err(self.err(
                            &at,
                            format!("volume {source:?} is also used by service {other:?}: sharing a named volume between services is not supported yet (each replica's volume lives on its node)"),
                        ));
                    }
                    self.volume_users.insert(source.clone(), name.to_string());
                    if let Err(e) = edge_spec::check_name(edge_spec::NameKind::Volume, &source) {
                        return Err(self.err(&at, e.to_string()));
                    }
                    if !requests.iter().any(|r: &VolumeRequest| r.name == source) {
                        requests.push(VolumeRequest {
                            name: source.clone(),
                            kind: VolumeType::Local,
                            source: String::new(),
                            read_only: false,
                            size: None,
                        });
                    }
                    mounts.push(VolumeMount {
                        volume: source,
                        destination: target,
                        read_only,
                    });
                }
                "bind" => {
                    let host = if let Some(rest) = source.strip_prefix('~') {
                        let home = self.project.vars.get("HOME").cloned().unwrap_or_default();
                        format!("{home}{rest}")
                    } else {
                        self.project.dir.join(&source).display().to_string()
                    };
                    let host = normalize(&host);
                    binds.push(format!(
                        "{host}:{target}{}",
                        if read_only { ":ro" } else { "" }
                    ));
                }
                "anonymous" => {
                    return Err(self.err(&at, "an anonymous volume (no source): not supported yet; name it and define it under `volumes`"));
                }
                other => {
                    return Err(self.err(
                        &at,
                        format!(
                            "volume type {other:?}: not supported yet (`volume` and `bind` are)"
                        ),
                    ));
                }
            }
        }
        Ok((requests, mounts, binds))
    }

    fn task(
        &mut self,
        name: &str,
        svc: &Value,
        mounts: Vec<VolumeMount>,
        binds: Vec<String>,
    ) -> Result<Task, ComposeError> {
        let path = format!("services.{name}");
        let image = svc.get("image").and_then(s).ok_or_else(|| {
            self.err(
                &path,
                "a service needs an `image` (edge does not build images)",
            )
        })?;
        let mut config = serde_json::Map::new();
        config.insert("image".into(), json!(image));
        if let Some(c) = svc.get("command") {
            config.insert(
                "args".into(),
                json!(self.words(&format!("{path}.command"), c)?),
            );
        }
        if let Some(e) = svc.get("entrypoint") {
            config.insert(
                "entrypoint".into(),
                json!(self.words(&format!("{path}.entrypoint"), e)?),
            );
        }
        for (key, to) in [
            ("working_dir", "work_dir"),
            ("user", "user"),
            ("hostname", "hostname"),
        ] {
            if let Some(v) = svc.get(key).and_then(s) {
                config.insert(to.into(), json!(v));
            }
        }
        if svc.get("read_only").and_then(Value::as_bool) == Some(true) {
            config.insert("readonly_rootfs".into(), json!(true));
        }
        for key in ["cap_add", "cap_drop"] {
            if let Some(v) = svc.get(key) {
                config.insert(key.into(), json!(strings(v)));
            }
        }
        let (configs, config_binds) = self.data_refs(name, svc, false)?;
        let (secrets, secret_binds) = self.data_refs(name, svc, true)?;
        let binds: Vec<String> = binds
            .into_iter()
            .chain(config_binds)
            .chain(secret_binds)
            .collect();
        if !binds.is_empty() {
            config.insert("volumes".into(), json!(binds));
        }
        let mut env = BTreeMap::new();
        if let Some(files) = svc.get("env_file") {
            env.extend(self.env_files(&format!("{path}.env_file"), files)?);
        }
        if let Some(e) = svc.get("environment") {
            for (k, v) in self.environment(&format!("{path}.environment"), e)? {
                env.insert(k, v);
            }
        }
        let meta = match svc.get("labels") {
            Some(l) => self.key_values(&format!("{path}.labels"), l)?,
            None => BTreeMap::new(),
        };
        let resources = self.resources(name, svc)?;
        let kill_timeout = match svc.get("stop_grace_period") {
            Some(v) => self.duration(&format!("{path}.stop_grace_period"), v)?,
            None => Duration::from_secs(10),
        };
        Ok(Task {
            name: name.to_string(),
            driver: "containerd".to_string(),
            config,
            env,
            resources,
            kill_timeout,
            kill_signal: svc.get("stop_signal").and_then(s),
            constraints: Vec::new(),
            affinities: Vec::new(),
            meta,
            lifecycle: None,
            volume_mounts: mounts,
            configs,
            secrets,
            templates: Vec::new(),
            artifacts: Vec::new(),
            dispatch_payload: None,
        })
    }

    /// `command`/`entrypoint`: a list as is, a string split as a shell would.
    fn words(&self, path: &str, v: &Value) -> Result<Vec<String>, ComposeError> {
        match v {
            Value::Sequence(_) => Ok(strings(v)),
            Value::String(text) => shlex::split(text)
                .ok_or_else(|| self.err(path, format!("{text:?} has an unclosed quote"))),
            Value::Null => Ok(Vec::new()),
            _ => Err(self.err(path, "a string or a list of strings")),
        }
    }

    fn key_values(&self, path: &str, v: &Value) -> Result<BTreeMap<String, String>, ComposeError> {
        let mut out = BTreeMap::new();
        match v {
            Value::Mapping(m) => {
                for (k, val) in m {
                    out.insert(s(k).unwrap_or_default(), s(val).unwrap_or_default());
                }
            }
            Value::Sequence(items) => {
                for item in items.iter().filter_map(s) {
                    let (k, val) = item.split_once('=').unwrap_or((item.as_str(), ""));
                    out.insert(k.to_string(), val.to_string());
                }
            }
            Value::Null => {}
            _ => return Err(self.err(path, "a mapping or a list of KEY=VALUE")),
        }
        Ok(out)
    }

    /// A variable without a value takes the shell's (or is left out), as in
    /// Compose.
    fn environment(&self, path: &str, v: &Value) -> Result<Vec<(String, String)>, ComposeError> {
        let mut out = Vec::new();
        let mut put = |k: String, val: Option<String>| {
            let val = val.or_else(|| self.project.vars.get(&k).cloned());
            if let Some(val) = val {
                out.push((k, val));
            }
        };
        match v {
            Value::Mapping(m) => {
                for (k, val) in m {
                    put(s(k).unwrap_or_default(), s(val));
                }
            }
            Value::Sequence(items) => {
                for item in items.iter().filter_map(s) {
                    match item.split_once('=') {
                        Some((k, val)) => put(k.to_string(), Some(val.to_string())),
                        None => put(item, None),
                    }
                }
            }
            Value::Null => {}
            _ => return Err(self.err(path, "a mapping or a list of KEY=VALUE")),
        }
        Ok(out)
    }

    fn env_files(&self, path: &str, v: &Value) -> Result<Vec<(String, String)>, ComposeError> {
        let entries: Vec<(String, bool)> = match v {
            Value::Sequence(items) => items
                .iter()
                .map(|i| match i {
                    Value::Mapping(_) => (
                        i.get("path").and_then(s).unwrap_or_default(),
                        i.get("required").and_then(Value::as_bool).unwrap_or(true),
                    ),
                    other => (s(other).unwrap_or_default(), true),
                })
                .collect(),
            other => vec![(s(other).unwrap_or_default(), true)],
        };
        let mut out = Vec::new();
        for (i, (file, required)) in entries.into_iter().enumerate() {
            let at = format!("{path}[{i}]");
            let full = self.project.dir.join(&file);
            let text = match std::fs::read_to_string(&full) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => continue,
                Err(e) => return Err(self.err(&at, format!("{}: {e}", full.display()))),
            };
            let pairs = edge_spec::envfile::parse(&text)
                .map_err(|e| self.err(&at, format!("{file} line {}: {}", e.line, e.message)))?;
            out.extend(pairs);
        }
        Ok(out)
    }

    fn resources(&self, name: &str, svc: &Value) -> Result<Resources, ComposeError> {
        let path = format!("services.{name}");
        let mut r = Resources::default();
        let res = svc.get("deploy").and_then(|d| d.get("resources"));
        let from = |k: &str| {
            res.and_then(|r| r.get("limits"))
                .and_then(|l| l.get(k))
                .map(|v| ("limits", v))
                .or_else(|| {
                    res.and_then(|r| r.get("reservations"))
                        .and_then(|l| l.get(k))
                        .map(|v| ("reservations", v))
                })
        };
        for part in ["limits", "reservations"] {
            if let Some(m) = res.and_then(|r| r.get(part)).and_then(Value::as_mapping) {
                for k in m.keys().filter_map(Value::as_str) {
                    if k != "cpus" && k != "memory" {
                        return Err(self.err(
                            &format!("{path}.deploy.resources.{part}.{k}"),
                            format!("`{k}`: not supported yet"),
                        ));
                    }
                }
            }
        }
        let cpus = svc
            .get("cpus")
            .map(|v| (format!("{path}.cpus"), v))
            .or_else(|| {
                from("cpus").map(|(p, v)| (format!("{path}.deploy.resources.{p}.cpus"), v))
            });
        if let Some((at, v)) = cpus {
            let n: f64 = s(v)
                .and_then(|t| t.parse().ok())
                .filter(|n: &f64| n.is_finite() && *n > 0.0 && *n <= 1024.0)
                .ok_or_else(|| self.err(&at, "a number of CPUs above 0, like 0.5"))?;
            r.cpu = ((n * MHZ_PER_CPU).round() as u32).max(1);
        }
        let memory = svc
            .get("mem_limit")
            .map(|v| (format!("{path}.mem_limit"), v))
            .or_else(|| {
                from("memory").map(|(p, v)| (format!("{path}.deploy.resources.{p}.memory"), v))
            });
        if let Some((at, v)) = memory {
            let bytes = bytes(v).ok_or_else(|| self.err(&at, "a size like 512m or 1g"))?;
            let mb = bytes.div_ceil(1024 * 1024);
            if mb == 0 || mb > u64::from(edge_spec::limits::MAX_TASK_MEMORY) {
                return Err(self.err(
                    &at,
                    format!(
                        "{mb} MB: between 1 MB and {} MB",
                        edge_spec::limits::MAX_TASK_MEMORY
                    ),
                ));
            }
            r.memory = mb as u32;
        }
        Ok(r)
    }

    /// The service's configs or secrets, and the bind mounts that put
    /// those with a target elsewhere than where edge mounts them in place.
    fn data_refs(
        &self,
        name: &str,
        svc: &Value,
        secret: bool,
    ) -> Result<(Vec<DataRef>, Vec<String>), ComposeError> {
        let top = if secret { "secrets" } else { "configs" };
        let path = format!("services.{name}.{top}");
        let mut out = Vec::new();
        let mut binds = Vec::new();
        let items = svc
            .get(top)
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        for (i, item) in items.iter().enumerate() {
            let at = format!("{path}[{i}]");
            let (source, target, mode) = match item {
                Value::Mapping(_) => {
                    for k in item
                        .as_mapping()
                        .into_iter()
                        .flat_map(|m| m.keys())
                        .filter_map(Value::as_str)
                    {
                        if !["source", "target", "mode", "uid", "gid"].contains(&k) {
                            return Err(
                                self.err(&format!("{at}.{k}"), format!("unknown key `{k}`"))
                            );
                        }
                        if k == "uid" || k == "gid" {
                            return Err(
                                self.err(&format!("{at}.{k}"), format!("`{k}`: not supported yet"))
                            );
                        }
                    }
                    (
                        item.get("source").and_then(s).unwrap_or_default(),
                        item.get("target").and_then(s),
                        item.get("mode").map(|m| match m {
                            Value::Number(n) => format!("{:o}", n.as_u64().unwrap_or(0o444)),
                            other => s(other).unwrap_or_default(),
                        }),
                    )
                }
                other => (s(other).unwrap_or_default(), None, None),
            };
            if self
                .project
                .value
                .get(top)
                .and_then(|m| m.get(source.as_str()))
                .is_none()
            {
                return Err(self.err(
                    &at,
                    format!("{source:?} is not defined under the top-level `{top}`"),
                ));
            }
            let t = target.unwrap_or_else(|| {
                if secret {
                    source.clone()
                } else {
                    format!("/configs/{source}")
                }
            });
            if t.is_empty() || t.split('/').any(|c| c == "..") || t.contains(':') {
                return Err(self.err(&at, format!("target {t:?}: a path without `..` or `:`")));
            }
            // Where edge mounts them (/run/secrets, /configs, /local) they
            // are written in place; anywhere else the file is written in
            // the task's directory and bind-mounted read-only on the target.
            let within = |dirs: &[&'static str]| {
                dirs.iter().find_map(|d| {
                    t.strip_prefix(d)
                        .filter(|r| !r.is_empty())
                        .map(|r| (d.trim_matches('/'), r))
                })
            };
            let destination = match (secret, t.starts_with('/')) {
                (true, false) => format!("secrets/{t}"),
                (true, true) => match within(&["/run/secrets/"]) {
                    Some((_, r)) => format!("secrets/{r}"),
                    None => {
                        binds.push(format!("${{EDGE_SECRETS_DIR}}/.compose/{source}:{t}:ro"));
                        format!("secrets/.compose/{source}")
                    }
                },
                (false, false) => {
                    return Err(self.err(
                        &at,
                        format!("target {t:?}: a config's target is an absolute path"),
                    ));
                }
                (false, true) => match within(&["/configs/", "/local/"]) {
                    Some((dir, r)) => format!("{dir}/{r}"),
                    None => {
                        binds.push(format!("${{EDGE_TASK_DIR}}/.compose/{source}:{t}:ro"));
                        format!("local/.compose/{source}")
                    }
                },
            };
            out.push(DataRef {
                name: object_name(self.project, top, &source),
                destination,
                key: String::new(),
                env: String::new(),
                mode: mode
                    .map(|m| {
                        if m.starts_with('0') {
                            m
                        } else {
                            format!("0{m}")
                        }
                    })
                    .unwrap_or_default(),
            });
        }
        Ok((out, binds))
    }

    fn restart(
        &self,
        name: &str,
        svc: &Value,
        deploy: &Value,
    ) -> Result<(RestartPolicy, ReschedulePolicy), ComposeError> {
        let path = format!("services.{name}");
        let forever = RestartPolicy {
            attempts: 10,
            interval: Duration::from_secs(60),
            delay: Duration::from_secs(1),
            mode: RestartMode::Delay,
        };
        let never = (
            RestartPolicy {
                attempts: 0,
                interval: Duration::from_secs(60),
                delay: Duration::from_secs(1),
                mode: RestartMode::Fail,
            },
            ReschedulePolicy {
                attempts: 0,
                unlimited: false,
                ..ReschedulePolicy::default()
            },
        );
        if let Some(p) = deploy.get("restart_policy") {
            let at = format!("{path}.deploy.restart_policy");
            let condition = p
                .get("condition")
                .and_then(s)
                .unwrap_or_else(|| "any".into());
            if condition == "none" {
                return Ok(never);
            }
            if condition != "any" && condition != "on-failure" {
                return Err(self.err(
                    &format!("{at}.condition"),
                    format!("{condition:?}: none, on-failure or any"),
                ));
            }
            let mut r = forever;
            if let Some(d) = p.get("delay") {
                r.delay = self.duration(&format!("{at}.delay"), d)?;
            }
            if let Some(w) = p.get("window") {
                r.interval = self
                    .duration(&format!("{at}.window"), w)?
                    .max(Duration::from_secs(1));
            }
            if let Some(n) = p.get("max_attempts") {
                r.attempts =
                    n.as_u64().filter(|n| *n <= 1000).ok_or_else(|| {
                        self.err(&format!("{at}.max_attempts"), "a number up to 1000")
                    })? as u32;
                r.mode = RestartMode::Fail;
            }
            return Ok((r, ReschedulePolicy::default()));
        }
        match svc.get("restart").and_then(s).as_deref() {
            None | Some("always") | Some("unless-stopped") => {
                Ok((forever, ReschedulePolicy::default()))
            }
            Some("no") | Some("false") => Ok(never),
            Some(other) => match other.strip_prefix("on-failure") {
                Some("") => Ok((forever, ReschedulePolicy::default())),
                Some(n) => {
                    let n: u32 = n
                        .strip_prefix(':')
                        .and_then(|n| n.parse().ok())
                        .filter(|n| *n <= 1000)
                        .ok_or_else(|| {
                            self.err(
                                &format!("{path}.restart"),
                                format!("{other:?}: on-failure[:N] with N up to 1000"),
                            )
                        })?;
                    Ok((
                        RestartPolicy {
                            attempts: n,
                            mode: RestartMode::Fail,
                            ..forever
                        },
                        ReschedulePolicy::default(),
                    ))
                }
                None => Err(self.err(
                    &format!("{path}.restart"),
                    format!("{other:?}: no, always, on-failure[:N] or unless-stopped"),
                )),
            },
        }
    }

    /// `update_config` as the group's update rules, with `rollback_config`
    /// as the pace of an `auto_revert`.
    fn update(&mut self, name: &str, deploy: &Value) -> Result<Option<UpdatePolicy>, ComposeError> {
        let base = format!("services.{name}.deploy");
        let mut p = match deploy.get("update_config") {
            None => UpdatePolicy::default(),
            Some(u) => {
                let at = format!("{base}.update_config");
                let (max_parallel, wait) = self.pace(&at, u)?;
                let mut p = UpdatePolicy {
                    max_parallel,
                    min_healthy_time: wait,
                    ..UpdatePolicy::default()
                };
                if u.get("failure_action").and_then(s).as_deref() == Some("rollback") {
                    p.auto_revert = Some(true);
                }
                p
            }
        };
        if let Some(r) = deploy.get("rollback_config") {
            let at = format!("{base}.rollback_config");
            let (max_parallel, min_healthy_time) = self.pace(&at, r)?;
            p.rollback = Some(RollbackPolicy {
                max_parallel,
                min_healthy_time,
            });
            if p.auto_revert != Some(true) {
                self.warn(
                    &at,
                    "used only when `update_config` has `failure_action: rollback` (edge rolls back on its own then, not by command)",
                );
            }
        }
        Ok((p != UpdatePolicy::default()).then_some(p))
    }

    /// What `update_config` and `rollback_config` share: `parallelism`, the
    /// longer of `delay` and `monitor`, `failure_action`, `order`.
    fn pace(
        &mut self,
        at: &str,
        u: &Value,
    ) -> Result<(Option<u32>, Option<edge_spec::duration::PolicyWait>), ComposeError> {
        if let Some(m) = u.as_mapping() {
            for k in m.keys().filter_map(Value::as_str) {
                if !["parallelism", "delay", "monitor", "failure_action", "order"].contains(&k) {
                    return Err(self.err(&format!("{at}.{k}"), format!("`{k}`: not supported yet")));
                }
            }
        }
        let max_parallel = match u.get("parallelism") {
            None => None,
            Some(n) => Some(
                n.as_u64()
                    .filter(|n| (1..=u64::from(edge_spec::limits::MAX_COUNT)).contains(n))
                    .ok_or_else(|| {
                        self.err(&format!("{at}.parallelism"), "a number of replicas from 1")
                    })? as u32,
            ),
        };
        // Swarm waits `delay` between batches and watches each for
        // `monitor`; an edge rollout moves on once the new copies have been
        // healthy for min_healthy_time, which covers both.
        let mut wait = None;
        for k in ["delay", "monitor"] {
            if let Some(d) = u.get(k) {
                let d = self.duration(&format!("{at}.{k}"), d)?;
                wait = Some(wait.map_or(d, |w: Duration| w.max(d)));
            }
        }
        let rollback = at.ends_with("rollback_config");
        match u.get("failure_action").and_then(s).as_deref() {
            None | Some("pause") => {}
            Some("rollback") if !rollback => {}
            Some(other) => {
                return Err(self.err(
                    &format!("{at}.failure_action"),
                    if rollback {
                        format!("{other:?}: `pause` (`continue` is not supported yet)")
                    } else {
                        format!(
                            "{other:?}: `pause` or `rollback` (`continue` is not supported yet)"
                        )
                    },
                ));
            }
        }
        // An edge rollout starts each new replica beside the old one and
        // stops the old one once the new one passed its checks.
        match u.get("order").and_then(s).as_deref() {
            None | Some("start-first") => {}
            Some("stop-first") => self.warn(
                &format!("{at}.order"),
                "`stop-first`: edge rolls out start-first, each new replica healthy before its old one stops (room for `parallelism` more replicas is needed)",
            ),
            Some(other) => {
                return Err(self.err(
                    &format!("{at}.order"),
                    format!("{other:?}: `start-first` or `stop-first`"),
                ));
            }
        }
        Ok((max_parallel, wait.map(edge_spec::duration::PolicyWait)))
    }

    fn placement(
        &self,
        name: &str,
        deploy: &Value,
    ) -> Result<(Vec<Constraint>, Vec<Spread>), ComposeError> {
        let at = format!("services.{name}.deploy.placement");
        let Some(p) = deploy.get("placement") else {
            return Ok((Vec::new(), Vec::new()));
        };
        if let Some(m) = p.as_mapping() {
            for k in m.keys().filter_map(Value::as_str) {
                if k != "constraints" && k != "preferences" {
                    return Err(self.err(&format!("{at}.{k}"), format!("`{k}`: not supported yet")));
                }
            }
        }
        let mut constraints = Vec::new();
        for (i, c) in p
            .get("constraints")
            .map(strings)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let here = format!("{at}.constraints[{i}]");
            let (lhs, op, rhs) = if let Some((l, r)) = c.split_once("!=") {
                (l, ConstraintOp::Ne, r)
            } else if let Some((l, r)) = c.split_once("==") {
                (l, ConstraintOp::Eq, r)
            } else {
                return Err(self.err(
                    &here,
                    format!("{c:?}: write ATTRIBUTE==VALUE or ATTRIBUTE!=VALUE"),
                ));
            };
            let attribute = node_attribute(lhs.trim()).ok_or_else(|| {
                self.err(
                    &here,
                    format!("{:?}: node.hostname, node.id, node.labels.NAME, node.platform.os or node.platform.arch", lhs.trim()),
                )
            })?;
            constraints.push(Constraint {
                attribute,
                operator: op,
                value: rhs.trim().to_string(),
            });
        }
        let mut spreads = Vec::new();
        if let Some(Value::Sequence(prefs)) = p.get("preferences") {
            for (i, pref) in prefs.iter().enumerate() {
                let here = format!("{at}.preferences[{i}]");
                let attr = pref
                    .get("spread")
                    .and_then(s)
                    .and_then(|a| node_attribute(&a))
                    .ok_or_else(|| {
                        self.err(
                            &here,
                            "`spread: node.labels.NAME` (or another node attribute)",
                        )
                    })?;
                spreads.push(Spread {
                    attribute: attr,
                    weight: 50,
                    targets: Vec::new(),
                });
            }
        }
        Ok((constraints, spreads))
    }
}

/// Swarm's node attributes as edge's constraint targets.
fn node_attribute(lhs: &str) -> Option<String> {
    match lhs {
        "node.hostname" => Some("${node.unique.name}".into()),
        "node.id" => Some("${node.unique.id}".into()),
        "node.platform.os" => Some("${attr.kernel.name}".into()),
        "node.platform.arch" => Some("${attr.cpu.arch}".into()),
        other => other
            .strip_prefix("node.labels.")
            .or_else(|| other.strip_prefix("engine.labels."))
            .filter(|l| !l.is_empty())
            .map(|l| format!("${{meta.{l}}}")),
    }
}

/// A service with edge's defaults: no tags, checks or publication.
fn service(name: String, port: Option<String>) -> Service {
    Service {
        name,
        port,
        tags: Vec::new(),
        checks: Vec::new(),
        publish: None,
        shutdown_delay: edge_spec::default_shutdown_delay(),
    }
}

/// The edge object the top-level config or secret `name` (`top` is
/// `configs` or `secrets`) becomes: its `name:`, else `PROJECT-NAME`.
fn object_name(project: &Project, top: &str, name: &str) -> String {
    project
        .value
        .get(top)
        .and_then(|m| m.get(name))
        .and_then(|d| d.get("name"))
        .and_then(s)
        .unwrap_or_else(|| format!("{}-{name}", project.name))
}

/// The configs and secrets `up` writes (the external ones are not its),
/// as (secret, edge name): what `down -v` removes, found without reading
/// their files.
pub fn written_objects(project: &Project) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    for (top, secret) in [("configs", false), ("secrets", true)] {
        let Some(items) = project.value.get(top).and_then(Value::as_mapping) else {
            continue;
        };
        for (name, def) in items {
            if def.get("external").and_then(Value::as_bool) != Some(true) {
                let name = s(name).unwrap_or_default();
                out.push((secret, object_name(project, top, &name)));
            }
        }
    }
    out
}

fn object_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn unique_label(ports: &[PortSpec], target: u16) -> String {
    let base = format!("p{target}");
    if !ports.iter().any(|p| p.label == base) {
        return base;
    }
    (2..)
        .map(|i| format!("{base}-{i}"))
        .find(|l| !ports.iter().any(|p| &p.label == l))
        .unwrap_or(base)
}

fn service_name_problem(name: &str) -> Option<&'static str> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    (!ok).then_some(
        "must be letters, digits and `-` (it is the service's DNS name), at most 63 characters",
    )
}

/// `512m`, `1g`, `1024` (bytes), as Compose writes sizes.
fn bytes(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let text = s(v)?.trim().to_lowercase();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// `a/./b/../c` as `a/c`, without touching the filesystem (the path is
/// the node's, not this machine's).
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}
