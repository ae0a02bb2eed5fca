//! The built-in autoscaler: agents report what their load balancers saw of
//! each service (`POST /v1/agent/load/{node}`), and once per evaluation
//! interval each group with a `scaling` block gets a decision from
//! `edge_sched::autoscale`, committed as a new job version with its reason.
//! Requests held by a load balancer for a group at zero wake it at once.

use crate::Server;
use crate::acl::Access;
use crate::auth::{self, Caller};
use crate::error::ServerError;
use crate::extract::{ApiJson, ApiPath, json_at};
use crate::ops::{self, Env};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use edge_api::{AllocLoad, GroupScaleStatus, JobScaleStatus, LoadReport, ServiceLoad};
use edge_sched::autoscale::{self, History, Load};
use edge_spec::{ClientStatus, JobType, ScalingRules, TriggeredBy};
use edge_store::{Batch, State as St};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

type S = State<Arc<Server>>;
type Res = Result<Response, ServerError>;

/// How often the autoscaler looks for groups whose interval is up.
const TICK: Duration = Duration::from_secs(1);
/// The longest window a metric is averaged over, whatever the interval:
/// reports older than this are dropped.
const MAX_WINDOW_MS: i64 = 10 * 60 * 1000;
/// The shortest window a metric is averaged over: reports arrive every
/// few seconds, so a shorter one would see none.
const MIN_WINDOW_MS: i64 = 5_000;
/// The short window that lets a load step scale up before the
/// evaluation interval's average catches up (Knative's panic window).
const RECENT_MS: i64 = 6_000;
/// The short window averages over what its reports cover, but never
/// less than this: one report's interval.
const RECENT_FLOOR_MS: u64 = 2_000;
/// A node's last report (held requests, in flight now, memory) counts
/// only while this fresh: a node sends none while its services are idle.
const FRESH_MS: i64 = 5_000;
/// How often the metrics' reports are pruned of services and copies
/// that are gone.
const PRUNE_EVERY_MS: i64 = 10_000;
/// Services one report may name.
const MAX_REPORTED: usize = 10_000;
/// Instances one report may name, over all its services.
const MAX_REPORTED_COPIES: usize = 100_000;
/// Scale decisions `GET /v1/job/{id}/scale` lists per group.
const EVENTS_SHOWN: usize = 10;

#[derive(Default)]
pub(crate) struct Autoscaler {
    inner: Mutex<Inner>,
    /// Rung when a report holds requests, so a group at zero wakes
    /// without waiting for the next tick.
    wake: Notify,
}

#[derive(Default)]
struct Inner {
    /// Service key → node id → its reports, oldest first.
    loads: HashMap<String, HashMap<String, VecDeque<Sample>>>,
    /// (job key, group) → what its decisions remember.
    groups: HashMap<(String, String), Memory>,
    /// Allocation id → its usage reports.
    usage: HashMap<String, Usage>,
    /// Service key → node id → when it last reported and its in flight
    /// then, for every service in the catalog (for `/v1/metrics`).
    in_flight: HashMap<String, HashMap<String, (i64, f64)>>,
    /// (service key, allocation id) → what every node's load balancer
    /// sent to that copy (for `/v1/metrics`).
    instances: HashMap<(String, String), Instance>,
    /// When the last two were last pruned of services and copies the
    /// catalog no longer has.
    pruned: i64,
}

/// One copy's usage reports, oldest first, with what it is a copy of.
struct Usage {
    of: AllocOf,
    samples: VecDeque<(i64, AllocLoad)>,
}

/// The job an allocation belongs to, for its metric labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AllocOf {
    pub(crate) namespace: String,
    pub(crate) job: String,
    pub(crate) group: String,
}

#[derive(Default)]
struct Instance {
    requests: u64,
    /// Node id → when it last reported and its in flight then.
    in_flight: HashMap<String, (i64, f64)>,
}

/// The load and usage `/v1/metrics` shows, as of one moment.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Exported {
    /// (service key, node id, in flight), fresh reports only.
    pub(crate) services: Vec<(String, String, f64)>,
    /// (service key, allocation id, in flight summed over nodes, requests).
    pub(crate) instances: Vec<(String, String, f64, u64)>,
    /// (allocation id, its job, CPU percent, memory bytes), fresh only.
    pub(crate) allocs: Vec<(String, AllocOf, f64, u64)>,
}

struct Sample {
    at: i64,
    load: ServiceLoad,
}

struct Memory {
    hist: History,
    last_eval: i64,
    last: Load,
    /// The running copies' memory, summed, at the last tick.
    memory: Option<u64>,
}

/// A group the autoscaler looks after, read from the store.
struct Target {
    job_key: String,
    namespace: String,
    job_id: String,
    group: String,
    rules: ScalingRules,
    count: u32,
    services: Vec<String>,
    /// Running copies, for their CPU.
    running: Vec<String>,
    /// When the job's current version (and so the count) was registered.
    since: i64,
}

impl Autoscaler {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps node `node`'s report, whose allocations belong to the jobs
    /// `of` says; returns whether it holds requests.
    fn record(
        &self,
        node: &str,
        report: LoadReport,
        of: &HashMap<String, AllocOf>,
        now: i64,
    ) -> bool {
        let mut inner = self.inner();
        for (alloc, l) in report.allocs {
            let Some(of) = of.get(&alloc) else {
                continue;
            };
            let usage = inner.usage.entry(alloc).or_insert_with(|| Usage {
                of: of.clone(),
                samples: VecDeque::new(),
            });
            usage.samples.push_back((now, l));
            while usage
                .samples
                .front()
                .is_some_and(|(at, _)| now.saturating_sub(*at) > MAX_WINDOW_MS)
            {
                usage.samples.pop_front();
            }
        }
        let mut waiting = false;
        for (service, mut load) in report.services {
            waiting |= load.waiting > 0;
            inner
                .in_flight
                .entry(service.clone())
                .or_default()
                .insert(node.to_string(), (now, load.in_flight));
            for (alloc, l) in std::mem::take(&mut load.instances) {
                let i = inner.instances.entry((service.clone(), alloc)).or_default();
                i.requests = i.requests.saturating_add(l.requests);
                i.in_flight.insert(node.to_string(), (now, l.in_flight));
            }
            let samples = inner
                .loads
                .entry(service)
                .or_default()
                .entry(node.to_string())
                .or_default();
            samples.push_back(Sample { at: now, load });
            while samples
                .front()
                .is_some_and(|s| now.saturating_sub(s.at) > MAX_WINDOW_MS)
            {
                samples.pop_front();
            }
        }
        waiting
    }
}

/// What the reports of a group's services say, summed over nodes.
#[derive(Debug, Default)]
struct Measured {
    /// Over the evaluation interval, or the short window when that reads
    /// more, so a load step scales up before the interval's average
    /// catches up.
    load: Load,
    /// Over the short window alone.
    recent: Load,
    /// The newest time any of it was active.
    active: i64,
}

/// Load of `services` over the `window_ms` before `now` (at least
/// [`MIN_WINDOW_MS`]) and over the short window. Held requests count
/// from reports after `since` (the group's count last changed then:
/// earlier ones were for the old count).
fn aggregate(
    inner: &Inner,
    services: &[String],
    (window_ms, since): (i64, i64),
    now: i64,
) -> Measured {
    let window_ms = window_ms.clamp(MIN_WINDOW_MS, MAX_WINDOW_MS);
    let mut m = Measured {
        active: i64::MIN,
        ..Measured::default()
    };
    for svc in services {
        let Some(nodes) = inner.loads.get(svc) else {
            continue;
        };
        for samples in nodes.values() {
            let mut long = Span::default();
            let mut short = Span::default();
            for s in samples {
                let l = &s.load;
                if l.requests > 0 || l.in_flight > 0.0 || l.waiting > 0 {
                    m.active = m.active.max(s.at);
                }
                let age = now.saturating_sub(s.at);
                if age < window_ms {
                    long.add(l);
                }
                if age < RECENT_MS {
                    short.add(l);
                }
            }
            let (f, r) = long.rates(u64::try_from(window_ms).unwrap_or(1));
            m.load.in_flight += f;
            m.load.rps += r;
            // The short window does not pad with silence: a step's first
            // report reads at its full rate.
            let (f, r) = short.rates(RECENT_FLOOR_MS);
            m.recent.in_flight += f;
            m.recent.rps += r;
            if let Some(last) = samples.back()
                && now.saturating_sub(last.at) < FRESH_MS
                && last.at > since
            {
                m.load.waiting = m.load.waiting.saturating_add(last.load.waiting);
            }
        }
    }
    m.recent.waiting = m.load.waiting;
    m.load.in_flight = m.load.in_flight.max(m.recent.in_flight);
    m.load.rps = m.load.rps.max(m.recent.rps);
    m
}

/// One node's reports within a window.
#[derive(Default)]
struct Span {
    in_flight_ms: f64,
    requests: u64,
    covered_ms: u64,
}

impl Span {
    fn add(&mut self, l: &ServiceLoad) {
        // A report covers the interval before its arrival.
        let span = l.interval_ms.clamp(1, 3_600_000);
        self.in_flight_ms += l.in_flight * span as f64;
        self.requests = self.requests.saturating_add(l.requests);
        self.covered_ms += span;
    }

    /// Average in flight and requests per second over what the reports
    /// cover, or over `at_least_ms` when they cover less: a node that
    /// sent nothing for part of that time had no traffic then.
    fn rates(&self, at_least_ms: u64) -> (f64, f64) {
        let over = at_least_ms.max(self.covered_ms).max(1) as f64;
        (
            self.in_flight_ms / over,
            self.requests as f64 * 1000.0 / over,
        )
    }
}

/// The average over `allocs` of each one's average CPU within the
/// window (none when no copy reported in it), and the sum of their
/// memory as last reported (none when no report is fresh).
fn usage(inner: &Inner, allocs: &[String], window_ms: i64, now: i64) -> (Option<f64>, Option<u64>) {
    let window_ms = window_ms.clamp(MIN_WINDOW_MS, MAX_WINDOW_MS);
    let mut per_copy = Vec::new();
    let mut memory: Option<u64> = None;
    for a in allocs {
        let Some(u) = inner.usage.get(a) else {
            continue;
        };
        let (sum, n) = u
            .samples
            .iter()
            .filter(|(at, _)| now.saturating_sub(*at) < window_ms)
            .fold((0.0, 0u32), |(sum, n), (_, l)| (sum + l.cpu_percent, n + 1));
        if n > 0 {
            per_copy.push(sum / f64::from(n));
        }
        if let Some((at, l)) = u.samples.back()
            && now.saturating_sub(*at) < FRESH_MS
        {
            memory = Some(memory.unwrap_or(0).saturating_add(l.memory_bytes));
        }
    }
    let cpu = (!per_copy.is_empty()).then(|| per_copy.iter().sum::<f64>() / per_copy.len() as f64);
    (cpu, memory)
}

impl Autoscaler {
    /// What `/v1/metrics` shows of the load balancers' reports and the
    /// copies' usage at `now`.
    pub(crate) fn exported(&self, now: i64) -> Exported {
        let inner = self.inner();
        let fresh = |at: i64| now.saturating_sub(at) < FRESH_MS;
        let mut out = Exported::default();
        for (svc, nodes) in &inner.in_flight {
            for (node, (at, f)) in nodes {
                if fresh(*at) {
                    out.services.push((svc.clone(), node.clone(), *f));
                }
            }
        }
        for ((svc, alloc), i) in &inner.instances {
            let f = i
                .in_flight
                .values()
                .filter(|(at, _)| fresh(*at))
                .map(|(_, f)| f)
                .sum();
            out.instances
                .push((svc.clone(), alloc.clone(), f, i.requests));
        }
        for (alloc, u) in &inner.usage {
            if let Some((at, l)) = u.samples.back()
                && fresh(*at)
            {
                out.allocs
                    .push((alloc.clone(), u.of.clone(), l.cpu_percent, l.memory_bytes));
            }
        }
        out
    }
}

fn targets(s: &St) -> Vec<Target> {
    let mut out = Vec::new();
    for job in s.jobs.values() {
        if job.stop || job.job_type != JobType::Service || job.launches() {
            continue;
        }
        for g in &job.groups {
            let Some(sc) = g.scaling.as_ref().filter(|sc| sc.enabled) else {
                continue;
            };
            out.push(Target {
                job_key: job.key(),
                namespace: job.namespace.clone(),
                job_id: job.id.clone(),
                group: g.name.clone(),
                rules: sc.resolve(g.count),
                count: g.count,
                services: g
                    .services
                    .iter()
                    .filter(|svc| svc.publish.is_some())
                    .map(|svc| edge_spec::service_key(&job.namespace, &svc.name))
                    .collect(),
                since: job.submit_time,
                running: s
                    .job_allocs(&job.key())
                    .iter()
                    .filter(|a| a.group == g.name && a.client_status == ClientStatus::Running)
                    .map(|a| a.id.clone())
                    .collect(),
            });
        }
    }
    out
}

/// A count change the tick decided, to commit.
struct Change {
    namespace: String,
    job_id: String,
    group: String,
    from: u32,
    to: u32,
    reason: String,
    key: (String, String),
}

/// Decides for every group whose interval is up (or that has requests
/// held at zero).
fn tick(sv: &Server, now: i64) -> Vec<Change> {
    let targets = sv.store.read(targets);
    let mut inner = sv.autoscaler.inner();
    let mut changes = Vec::new();
    let mut live_groups = std::collections::HashSet::new();
    let mut live_services = std::collections::HashSet::new();
    let mut live_allocs = std::collections::HashSet::new();
    for t in targets {
        let key = (t.job_key.clone(), t.group.clone());
        live_groups.insert(key.clone());
        live_services.extend(t.services.iter().cloned());
        let interval = i64::try_from(t.rules.evaluation_interval.as_millis()).unwrap_or(i64::MAX);
        let m = aggregate(&inner, &t.services, (interval, t.since), now);
        let mut load = m.load;
        let (cpu, memory) = usage(&inner, &t.running, interval, now);
        load.cpu = cpu;
        live_allocs.extend(t.running.iter().cloned());
        let mem = inner.groups.entry(key.clone()).or_insert_with(|| Memory {
            // Whatever ran before this server saw it gets a full
            // idle_timeout from now.
            hist: History {
                last_active: now,
                ..History::default()
            },
            last_eval: now,
            last: Load::default(),
            memory: None,
        });
        mem.hist.last_active = mem.hist.last_active.max(m.active);
        mem.last = load;
        mem.memory = memory;
        let waking = load.waiting > 0 && t.count == 0;
        let urgent = autoscale::urgent(&t.rules, t.count, &m.recent);
        if !waking && !urgent && now.saturating_sub(mem.last_eval) < interval {
            continue;
        }
        mem.last_eval = now;
        let d = autoscale::decide(&t.rules, t.count, &load, &mem.hist, now);
        let window = i64::try_from(t.rules.stabilization_window.as_millis()).unwrap_or(i64::MAX);
        mem.hist
            .wanted
            .retain(|(at, _)| now.saturating_sub(*at) < window);
        mem.hist.wanted.push((now, d.wanted));
        if d.count != t.count {
            changes.push(Change {
                namespace: t.namespace,
                job_id: t.job_id,
                group: t.group,
                from: t.count,
                to: d.count,
                reason: d.reason,
                key,
            });
        }
    }
    inner.groups.retain(|k, _| live_groups.contains(k));
    inner.loads.retain(|k, _| live_services.contains(k));
    inner.usage.retain(|k, _| live_allocs.contains(k));
    let prune = now.saturating_sub(inner.pruned) >= PRUNE_EVERY_MS
        && !(inner.in_flight.is_empty() && inner.instances.is_empty());
    if prune {
        inner.pruned = now;
        drop(inner);
        let catalog = sv.catalog.get(sv);
        let mut inner = sv.autoscaler.inner();
        inner.in_flight.retain(|svc, nodes| {
            nodes.retain(|_, (at, _)| now.saturating_sub(*at) < MAX_WINDOW_MS);
            !nodes.is_empty() && catalog.services.contains_key(svc)
        });
        let mut copies: HashMap<String, std::collections::HashSet<&str>> = HashMap::new();
        inner.instances.retain(|(svc, alloc), _| {
            copies
                .entry(svc.clone())
                .or_insert_with(|| {
                    catalog
                        .services
                        .get(svc)
                        .map_or_else(Default::default, |c| {
                            c.instances.iter().map(|i| i.alloc_id.as_str()).collect()
                        })
                })
                .contains(alloc.as_str())
        });
    }
    changes
}

/// Commits one decision, unless the count changed under it.
async fn apply(sv: &Arc<Server>, c: Change, now: i64) {
    let Change {
        namespace,
        job_id,
        group,
        from,
        to,
        reason,
        key,
    } = c;
    tracing::info!(job = %job_id, %group, from, to, %reason, "autoscaler: scaling");
    let res = sv
        .store
        .commit(move |s: &St| {
            let current = s
                .jobs
                .get(&edge_spec::job_key(&namespace, &job_id))
                .and_then(|j| j.group(&group))
                .map(|g| g.count);
            if current != Some(from) {
                return Ok::<_, ServerError>((Batch::default(), false));
            }
            let job = ops::jobs::scaled(s, (&namespace, &job_id), &group, to, reason, now)?;
            let (batch, _) =
                ops::jobs::register(s, &mut Env::live(), job, TriggeredBy::JobScale, None)?;
            Ok((batch, true))
        })
        .await;
    match res {
        Ok((true, _)) => {
            if let Some(m) = sv.autoscaler.inner().groups.get_mut(&key) {
                m.hist.last_change = Some(now);
            }
            sv.evals_ready.notify_one();
        }
        Ok((false, _)) => {}
        Err(e) => tracing::warn!(error = %e, "autoscaler: scaling failed"),
    }
}

/// Runs until the server stops.
pub(crate) async fn run(sv: Arc<Server>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = sv.autoscaler.wake.notified() => {}
        }
        let now = sv.cfg.clock.now_ms();
        for c in tick(&sv, now) {
            apply(&sv, c, now).await;
        }
    }
}

/// `POST /v1/agent/load/{node}`: a node's load balancer counts.
pub(crate) async fn agent_load(
    State(sv): S,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJson(report): ApiJson<LoadReport>,
) -> Res {
    auth::node(&sv, &caller, &headers, &id)?;
    if report.services.len() > MAX_REPORTED || report.allocs.len() > MAX_REPORTED {
        return Err(ServerError::BadRequest(format!(
            "a load report names {} services and {} allocations; the limit is {MAX_REPORTED} each",
            report.services.len(),
            report.allocs.len()
        )));
    }
    let copies: usize = report.services.values().map(|l| l.instances.len()).sum();
    if copies > MAX_REPORTED_COPIES {
        return Err(ServerError::BadRequest(format!(
            "a load report names {copies} instances; the limit is {MAX_REPORTED_COPIES}"
        )));
    }
    for (id, l) in &report.allocs {
        if !l.cpu_percent.is_finite() || !(0.0..=1e6).contains(&l.cpu_percent) {
            return Err(ServerError::BadRequest(format!(
                "allocs.{id}.cpu_percent must be a number from 0 to 1e6"
            )));
        }
    }
    let in_range = |f: f64| f.is_finite() && (0.0..=1e9).contains(&f);
    for (name, l) in &report.services {
        if !in_range(l.in_flight) {
            return Err(ServerError::BadRequest(format!(
                "services.{name}.in_flight must be a number from 0 to 1e9"
            )));
        }
        if l.interval_ms == 0 || l.interval_ms > 3_600_000 {
            return Err(ServerError::BadRequest(format!(
                "services.{name}.interval_ms must be from 1 to 3600000"
            )));
        }
        if let Some((alloc, _)) = l.instances.iter().find(|(_, i)| !in_range(i.in_flight)) {
            return Err(ServerError::BadRequest(format!(
                "services.{name}.instances.{alloc}.in_flight must be a number from 0 to 1e9"
            )));
        }
    }
    // Only services and copies the catalog has are kept: a report cannot
    // grow the server's memory or metrics with made-up names.
    let catalog = sv.catalog.get(&sv);
    let mut report = report;
    report.services.retain(|name, l| {
        let Some(c) = catalog.services.get(name) else {
            return false;
        };
        if !l.instances.is_empty() {
            let known: std::collections::HashSet<&str> =
                c.instances.iter().map(|i| i.alloc_id.as_str()).collect();
            l.instances.retain(|a, _| known.contains(a.as_str()));
        }
        true
    });
    // Likewise only this node's own allocations.
    let mut of = HashMap::new();
    if !report.allocs.is_empty() {
        sv.store.read(|s| {
            for a in report.allocs.keys() {
                if let Some(a) = s.allocs.get(a).filter(|a| a.node_id == id) {
                    let of_job = AllocOf {
                        namespace: a.namespace.clone(),
                        job: a.job_id.clone(),
                        group: a.group.clone(),
                    };
                    of.insert(a.id.clone(), of_job);
                }
            }
        });
    }
    for (name, l) in &report.services {
        sv.metrics.observe_service(&id, name, l.requests);
    }
    let now = sv.cfg.clock.now_ms();
    if sv.autoscaler.record(&id, report, &of, now) {
        sv.autoscaler.wake.notify_one();
    }
    Ok(json_at(sv.store.index(), &serde_json::json!({})))
}

/// `GET /v1/job/{id}/scale`: each scaling group's count, bounds, load
/// and recent decisions (Nomad's scale status, with the metrics).
pub(crate) async fn status(State(sv): S, access: Access, ApiPath(id): ApiPath<String>) -> Res {
    let key = edge_spec::job_key(&access.namespace, &id);
    let now = sv.cfg.clock.now_ms();
    let versions = sv.store.job_versions(&key).await?;
    let (idx, found) = sv.store.read(|s| {
        let Some(job) = s.jobs.get(&key) else {
            return (s.index, None);
        };
        let mut groups = Vec::new();
        for g in &job.groups {
            let Some(sc) = &g.scaling else {
                continue;
            };
            let running = s
                .job_allocs(&key)
                .iter()
                .filter(|a| a.group == g.name && a.client_status == ClientStatus::Running)
                .count();
            let events: Vec<edge_spec::ScaleNote> = versions
                .iter()
                .filter_map(|v| v.scaled.clone())
                .filter(|n| n.group == g.name)
                .take(EVENTS_SHOWN)
                .collect();
            groups.push((
                g.name.clone(),
                sc.resolve(g.count),
                g.count,
                running,
                events,
            ));
        }
        (s.index, Some(groups))
    });
    let Some(groups) = found else {
        return Err(ServerError::no_job(&access.namespace, &id));
    };
    let inner = sv.autoscaler.inner();
    let mut out = JobScaleStatus {
        job_id: id.clone(),
        groups: Default::default(),
    };
    for (name, rules, desired, running, events) in groups {
        let mem = inner.groups.get(&(key.clone(), name.clone()));
        let last = mem.map(|m| m.last).unwrap_or_default();
        out.groups.insert(
            name,
            GroupScaleStatus {
                desired,
                running: u32::try_from(running).unwrap_or(u32::MAX),
                enabled: rules.enabled,
                min: rules.min,
                max: rules.max,
                target_concurrency: rules.target_concurrency,
                target_rps: rules.target_rps,
                target_cpu: rules.target_cpu,
                cpu_percent: last.cpu,
                memory_bytes: mem.and_then(|m| m.memory),
                in_flight: last.in_flight,
                rps: last.rps,
                waiting: last.waiting,
                idle_ms: mem.map_or(0, |m| now.saturating_sub(m.hist.last_active)),
                events,
            },
        );
    }
    Ok(json_at(idx, &out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_api::InstanceLoad;

    fn report(in_flight: f64, requests: u64, waiting: u32) -> LoadReport {
        let mut r = LoadReport::default();
        r.services.insert(
            "web".to_string(),
            ServiceLoad {
                in_flight,
                requests,
                interval_ms: 2_000,
                waiting,
                instances: Default::default(),
            },
        );
        r
    }

    fn of(allocs: &[&str]) -> HashMap<String, AllocOf> {
        allocs
            .iter()
            .map(|a| {
                let of = AllocOf {
                    namespace: "default".into(),
                    job: "api".into(),
                    group: "web".into(),
                };
                (a.to_string(), of)
            })
            .collect()
    }

    fn used(cpu_percent: f64, memory_bytes: u64) -> AllocLoad {
        AllocLoad {
            cpu_percent,
            memory_bytes,
        }
    }

    #[test]
    fn cpu_is_the_mean_of_each_copys_mean_and_memory_the_sum_of_fresh_reports() {
        let a = Autoscaler::default();
        let known = of(&["a1", "a2"]);
        let mut r = LoadReport::default();
        r.allocs.insert("a1".into(), used(80.0, 100));
        r.allocs.insert("a2".into(), used(20.0, 50));
        // Not one of the node's copies: dropped.
        r.allocs.insert("a9".into(), used(99.0, 1));
        a.record("n1", r.clone(), &known, 0);
        r.allocs.insert("a1".into(), used(100.0, 300));
        r.allocs.remove("a2");
        a.record("n1", r, &known, 2_000);
        let copies = ["a1".to_string(), "a2".to_string(), "a3".to_string()];
        // a1 averages 90, a2 20; a3 never reported. a2's memory report is
        // older than FRESH_MS at 5 s.
        assert_eq!(
            usage(&a.inner(), &copies, 10_000, 3_000),
            (Some(55.0), Some(350))
        );
        assert_eq!(
            usage(&a.inner(), &copies, 10_000, 5_500),
            (Some(55.0), Some(300))
        );
        assert_eq!(usage(&a.inner(), &copies, 10_000, 60_000), (None, None));
        assert!(!a.inner().usage.contains_key("a9"));
    }

    #[test]
    fn reports_sum_over_nodes_and_average_over_what_they_cover() {
        let a = Autoscaler::default();
        let now = 1_000_000;
        for at in [now - 4_500, now - 2_500, now - 500] {
            a.record("n1", report(2.0, 10, 0), &of(&[]), at);
            a.record("n2", report(2.0, 10, 0), &of(&[]), at);
        }
        let m = aggregate(&a.inner(), &["web".to_string()], (1_000, 0), now);
        // Three 2 s reports of 10 requests on each node: 5 req/s each.
        assert!((m.load.rps - 10.0).abs() < 1e-9, "{m:?}");
        assert!((m.load.in_flight - 4.0).abs() < 1e-9, "{m:?}");
        assert_eq!((m.load.waiting, m.active), (0, now - 500));
        // Quiet for 30 s since: a 60 s window averages the silence in
        // (60 requests in 60 s).
        let m = aggregate(&a.inner(), &["web".to_string()], (60_000, 0), now + 30_000);
        assert!((m.load.rps - 1.0).abs() < 1e-9, "{m:?}");
        assert_eq!(m.recent.rps, 0.0);
    }

    #[test]
    fn a_load_step_reads_at_its_full_rate_in_the_short_window_at_once() {
        let a = Autoscaler::default();
        let now = 1_000_000;
        // Quiet until one 2 s report of 24 in flight.
        a.record("n1", report(24.0, 400, 0), &of(&[]), now - 100);
        let m = aggregate(&a.inner(), &["web".to_string()], (10_000, 0), now);
        assert!((m.recent.in_flight - 24.0).abs() < 1e-9, "{m:?}");
        assert!((m.recent.rps - 200.0).abs() < 1e-9, "{m:?}");
        // The interval's average pads with silence; the load reads the
        // short window's.
        assert_eq!(m.load.in_flight, m.recent.in_flight);
        // A report sent at once for a held request covers less than the
        // floor: it is not read as a burst.
        let a = Autoscaler::default();
        let mut r = report(1.0, 1, 0);
        if let Some(l) = r.services.get_mut("web") {
            l.interval_ms = 100;
        }
        a.record("n1", r, &of(&[]), now - 100);
        let m = aggregate(&a.inner(), &["web".to_string()], (10_000, 0), now);
        assert!((m.recent.in_flight - 0.05).abs() < 1e-9, "{m:?}");
    }

    #[test]
    fn held_requests_count_only_while_fresh_and_say_so() {
        let a = Autoscaler::default();
        assert!(a.record("n1", report(0.0, 1, 3), &of(&[]), 0));
        assert!(!a.record("n2", report(1.0, 1, 0), &of(&[]), 0));
        let web = ["web".to_string()];
        let waiting = |window, now| aggregate(&a.inner(), &web, window, now).load.waiting;
        assert_eq!(waiting((10_000, -1), 1_000), 3);
        assert_eq!(waiting((10_000, -1), 60_000), 0);
        // Held before the count last changed: for the old count.
        assert_eq!(waiting((10_000, 0), 1_000), 0);
    }

    #[test]
    fn metrics_sum_each_copy_over_nodes_and_drop_stale_readings() {
        let a = Autoscaler::default();
        let copy = |in_flight, requests| InstanceLoad {
            in_flight,
            requests,
        };
        let mut r = report(3.0, 30, 0);
        if let Some(l) = r.services.get_mut("web") {
            l.instances.insert("a1".into(), copy(2.0, 20));
            l.instances.insert("a2".into(), copy(1.0, 10));
        }
        r.allocs.insert("a1".into(), used(50.0, 4096));
        a.record("n1", r.clone(), &of(&["a1"]), 0);
        a.record("n2", r, &of(&[]), 1_000);
        let mut e = a.exported(2_000);
        e.services.sort_by(|x, y| x.1.cmp(&y.1));
        e.instances.sort_by(|x, y| x.1.cmp(&y.1));
        assert_eq!(
            e.services,
            [
                ("web".into(), "n1".into(), 3.0),
                ("web".into(), "n2".into(), 3.0)
            ]
        );
        assert_eq!(
            e.instances,
            [
                ("web".into(), "a1".into(), 4.0, 40),
                ("web".into(), "a2".into(), 2.0, 20)
            ]
        );
        let a1 = of(&["a1"])
            .remove("a1")
            .map(|o| ("a1".to_string(), o, 50.0, 4096));
        assert_eq!(e.allocs, a1.into_iter().collect::<Vec<_>>());
        // n1's reading is stale at 5.5 s, n2's is not: counts stay.
        let e = a.exported(5_500);
        assert_eq!(e.services.len(), 1);
        assert!(e.allocs.is_empty());
        let mut i = e.instances;
        i.sort_by(|x, y| x.1.cmp(&y.1));
        assert_eq!(i[0], ("web".into(), "a1".into(), 2.0, 40));
    }
}
