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
use edge_api::{GroupScaleStatus, JobScaleStatus, LoadReport, ServiceLoad};
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
/// A node's count of held requests counts only while this fresh.
const WAITING_FRESH_MS: i64 = 5_000;
/// Services one report may name.
const MAX_REPORTED: usize = 10_000;
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
    /// Allocation id → its CPU reports (percent of reserved), oldest first.
    cpu: HashMap<String, VecDeque<(i64, f64)>>,
}

struct Sample {
    at: i64,
    load: ServiceLoad,
}

struct Memory {
    hist: History,
    last_eval: i64,
    last: Load,
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

    /// Keeps node `node`'s report; returns whether it holds requests.
    fn record(&self, node: &str, report: LoadReport, now: i64) -> bool {
        let mut inner = self.inner();
        for (alloc, l) in report.allocs {
            let samples = inner.cpu.entry(alloc).or_default();
            samples.push_back((now, l.cpu_percent));
            while samples
                .front()
                .is_some_and(|(at, _)| now.saturating_sub(*at) > MAX_WINDOW_MS)
            {
                samples.pop_front();
            }
        }
        let mut waiting = false;
        for (service, load) in report.services {
            waiting |= load.waiting > 0;
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

/// Load of `services` over the `window_ms` before `now` (at least
/// [`MIN_WINDOW_MS`]), summed over nodes, and the newest time any of it
/// was active. Held requests count from reports after `since` (the
/// group's count last changed then: earlier ones were for the old count).
fn aggregate(
    inner: &Inner,
    services: &[String],
    (window_ms, since): (i64, i64),
    now: i64,
) -> (Load, i64) {
    let window_ms = window_ms.clamp(MIN_WINDOW_MS, MAX_WINDOW_MS);
    let mut load = Load::default();
    let (mut recent_in_flight, mut recent_rps) = (0.0, 0.0);
    let mut active = i64::MIN;
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
                    active = active.max(s.at);
                }
                let age = now.saturating_sub(s.at);
                if age < window_ms {
                    long.add(l);
                }
                if age < RECENT_MS {
                    short.add(l);
                }
            }
            let (f, r) = long.rates(window_ms);
            load.in_flight += f;
            load.rps += r;
            let (f, r) = short.rates(RECENT_MS);
            recent_in_flight += f;
            recent_rps += r;
            if let Some(last) = samples.back()
                && now.saturating_sub(last.at) < WAITING_FRESH_MS
                && last.at > since
            {
                load.waiting = load.waiting.saturating_add(last.load.waiting);
            }
        }
    }
    // A load step scales up on the short window; the long one keeps a
    // scale-down from following a lull.
    load.in_flight = load.in_flight.max(recent_in_flight);
    load.rps = load.rps.max(recent_rps);
    (load, active)
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

    /// Average in flight and requests per second: over the window, or
    /// over what the reports cover when that is longer (a report that
    /// arrived inside the window may cover time before it). A node that
    /// sent nothing for part of the window had no traffic then.
    fn rates(&self, window_ms: i64) -> (f64, f64) {
        let over = (u64::try_from(window_ms).unwrap_or(1))
            .max(self.covered_ms)
            .max(1) as f64;
        (
            self.in_flight_ms / over,
            self.requests as f64 * 1000.0 / over,
        )
    }
}

/// The average over `allocs` of each one's average CPU within the
/// window; none when no copy reported in it.
fn cpu(inner: &Inner, allocs: &[String], window_ms: i64, now: i64) -> Option<f64> {
    let window_ms = window_ms.clamp(MIN_WINDOW_MS, MAX_WINDOW_MS);
    let per_copy: Vec<f64> = allocs
        .iter()
        .filter_map(|a| {
            let recent: Vec<f64> = inner
                .cpu
                .get(a)?
                .iter()
                .filter(|(at, _)| now.saturating_sub(*at) < window_ms)
                .map(|(_, p)| *p)
                .collect();
            (!recent.is_empty()).then(|| recent.iter().sum::<f64>() / recent.len() as f64)
        })
        .collect();
    (!per_copy.is_empty()).then(|| per_copy.iter().sum::<f64>() / per_copy.len() as f64)
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
        let (mut load, active) = aggregate(&inner, &t.services, (interval, t.since), now);
        if t.rules.target_cpu.is_some() {
            load.cpu = cpu(&inner, &t.running, interval, now);
            live_allocs.extend(t.running.iter().cloned());
        }
        let mem = inner.groups.entry(key.clone()).or_insert_with(|| Memory {
            // Whatever ran before this server saw it gets a full
            // idle_timeout from now.
            hist: History {
                last_active: now,
                ..History::default()
            },
            last_eval: now,
            last: Load::default(),
        });
        mem.hist.last_active = mem.hist.last_active.max(active);
        mem.last = load;
        let waking = load.waiting > 0 && t.count == 0;
        if !waking && now.saturating_sub(mem.last_eval) < interval {
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
    inner.cpu.retain(|k, _| live_allocs.contains(k));
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
    for (id, l) in &report.allocs {
        if !l.cpu_percent.is_finite() || !(0.0..=1e6).contains(&l.cpu_percent) {
            return Err(ServerError::BadRequest(format!(
                "allocs.{id}.cpu_percent must be a number from 0 to 1e6"
            )));
        }
    }
    for (name, l) in &report.services {
        if !l.in_flight.is_finite() || l.in_flight < 0.0 || l.in_flight > 1e9 {
            return Err(ServerError::BadRequest(format!(
                "services.{name}.in_flight must be a number from 0 to 1e9"
            )));
        }
        if l.interval_ms == 0 || l.interval_ms > 3_600_000 {
            return Err(ServerError::BadRequest(format!(
                "services.{name}.interval_ms must be from 1 to 3600000"
            )));
        }
    }
    // Only services the catalog has are kept: a report cannot grow the
    // server's memory or metrics with made-up names.
    let catalog = sv.catalog.get(&sv);
    let mut report = report;
    report
        .services
        .retain(|name, _| catalog.services.contains_key(name));
    // Likewise only this node's own allocations.
    if !report.allocs.is_empty() {
        sv.store.read(|s| {
            report
                .allocs
                .retain(|a, _| s.allocs.get(a).is_some_and(|a| a.node_id == id));
        });
    }
    for (name, l) in &report.services {
        sv.metrics
            .observe_service(&id, name, l.in_flight, l.requests);
    }
    let now = sv.cfg.clock.now_ms();
    if sv.autoscaler.record(&id, report, now) {
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

    fn report(in_flight: f64, requests: u64, waiting: u32) -> LoadReport {
        let mut r = LoadReport::default();
        r.services.insert(
            "web".to_string(),
            ServiceLoad {
                in_flight,
                requests,
                interval_ms: 2_000,
                waiting,
            },
        );
        r
    }

    #[test]
    fn cpu_is_the_mean_of_each_copys_mean_within_the_window() {
        let a = Autoscaler::default();
        let mut r = LoadReport::default();
        r.allocs
            .insert("a1".into(), edge_api::AllocLoad { cpu_percent: 80.0 });
        r.allocs
            .insert("a2".into(), edge_api::AllocLoad { cpu_percent: 20.0 });
        a.record("n1", r.clone(), 0);
        r.allocs
            .insert("a1".into(), edge_api::AllocLoad { cpu_percent: 100.0 });
        a.record("n1", r, 2_000);
        let copies = ["a1".to_string(), "a2".to_string(), "a3".to_string()];
        // a1 averages 90, a2 20; a3 never reported.
        assert_eq!(cpu(&a.inner(), &copies, 10_000, 3_000), Some(55.0));
        assert_eq!(cpu(&a.inner(), &copies, 10_000, 60_000), None);
    }

    #[test]
    fn reports_sum_over_nodes_and_average_over_what_they_cover() {
        let a = Autoscaler::default();
        let now = 1_000_000;
        for at in [now - 4_500, now - 2_500, now - 500] {
            a.record("n1", report(2.0, 10, 0), at);
            a.record("n2", report(2.0, 10, 0), at);
        }
        let (load, active) = aggregate(&a.inner(), &["web".to_string()], (1_000, 0), now);
        // Three 2 s reports of 10 requests on each node: 5 req/s each.
        assert!((load.rps - 10.0).abs() < 1e-9, "{load:?}");
        assert!((load.in_flight - 4.0).abs() < 1e-9, "{load:?}");
        assert_eq!((load.waiting, active), (0, now - 500));
        // Quiet for 30 s since: a 60 s window averages the silence in
        // (60 requests in 60 s).
        let (load, _) = aggregate(&a.inner(), &["web".to_string()], (60_000, 0), now + 30_000);
        assert!((load.rps - 1.0).abs() < 1e-9, "{load:?}");
    }

    #[test]
    fn held_requests_count_only_while_fresh_and_say_so() {
        let a = Autoscaler::default();
        assert!(a.record("n1", report(0.0, 1, 3), 0));
        assert!(!a.record("n2", report(1.0, 1, 0), 0));
        let web = ["web".to_string()];
        assert_eq!(
            aggregate(&a.inner(), &web, (10_000, -1), 1_000).0.waiting,
            3
        );
        assert_eq!(
            aggregate(&a.inner(), &web, (10_000, -1), 60_000).0.waiting,
            0
        );
        // Held before the count last changed: for the old count.
        assert_eq!(aggregate(&a.inner(), &web, (10_000, 0), 1_000).0.waiting, 0);
    }
}
