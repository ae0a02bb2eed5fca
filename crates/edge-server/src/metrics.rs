//! Prometheus metrics (`/v1/metrics`) and the NDJSON event stream
//! (`/v1/event/stream`), both read-only views on the server.

use crate::Server;
use crate::error::ServerError;
use crate::extract::ApiQuery;
use crate::routes::ROUTES;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use edge_api::StreamEvent;
use edge_spec::NodeStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// Every label value comes from a closed set (known methods, the router's
/// route templates, status codes): a client must not be able to grow the
/// metrics by sending made-up methods or paths.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: &'static str,
    code: u16,
}

fn method_label(m: &Method) -> &'static str {
    const KNOWN: &[Method] = &[
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::TRACE,
        Method::CONNECT,
    ];
    KNOWN
        .iter()
        .find(|k| *k == m)
        .map_or("OTHER", |k| k.as_str())
}

/// The route template the router matched, as listed in [`ROUTES`]; never
/// the raw path.
fn route_label(req: &Request) -> &'static str {
    let Some(matched) = req.extensions().get::<MatchedPath>() else {
        return "unmatched";
    };
    ROUTES
        .iter()
        .find(|(_, path)| *path == matched.as_str())
        .map_or("unmatched", |(_, path)| path)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

pub struct Metrics {
    registry: Registry,
    http: Family<HttpLabels, Counter>,
    pub evals_processed: Counter,
    placements: Counter,
    schedule_seconds: Histogram,
    index: Gauge,
    jobs: Gauge,
    nodes: Family<StatusLabel, Gauge>,
    allocs: Family<StatusLabel, Gauge>,
    service_in_flight: Family<ServiceLabel, Gauge<f64, AtomicU64>>,
    service_requests: Family<ServiceLabel, Counter>,
    instance_in_flight: Family<InstanceLabel, Gauge<f64, AtomicU64>>,
    instance_requests: Family<InstanceLabel, Counter>,
    alloc_cpu: Family<AllocLabel, Gauge<f64, AtomicU64>>,
    alloc_memory: Family<AllocLabel, Gauge>,
    /// Held while the families above are rebuilt from the autoscaler's
    /// reports and encoded, so two scrapes do not interleave.
    exporting: std::sync::Mutex<()>,
}

/// A service's key: a name the cluster's jobs declare, reported only by
/// authenticated agents.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
    node: String,
}

/// A copy of a service the catalog lists.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabel {
    service: String,
    alloc: String,
}

/// A running allocation of a group with a `scaling` block, on the node
/// that reported it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AllocLabel {
    namespace: String,
    job: String,
    group: String,
    alloc: String,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("edge");
        let http = Family::<HttpLabels, Counter>::default();
        let evals_processed = Counter::default();
        let placements = Counter::default();
        let schedule_seconds = Histogram::new(exponential_buckets(0.00005, 2.0, 16));
        let index = Gauge::default();
        let jobs = Gauge::default();
        let nodes = Family::<StatusLabel, Gauge>::default();
        let allocs = Family::<StatusLabel, Gauge>::default();
        let service_in_flight = Family::<ServiceLabel, Gauge<f64, AtomicU64>>::default();
        let service_requests = Family::<ServiceLabel, Counter>::default();
        let instance_in_flight = Family::<InstanceLabel, Gauge<f64, AtomicU64>>::default();
        let instance_requests = Family::<InstanceLabel, Counter>::default();
        let alloc_cpu = Family::<AllocLabel, Gauge<f64, AtomicU64>>::default();
        let alloc_memory = Family::<AllocLabel, Gauge>::default();
        registry.register(
            "service_instance_in_flight",
            "Requests in flight to one copy of a service, summed over the load balancers that reported in the last 5 s",
            instance_in_flight.clone(),
        );
        registry.register(
            "service_instance_requests",
            "Requests the load balancers sent to one copy of a service, retries included",
            instance_requests.clone(),
        );
        registry.register(
            "alloc_cpu_percent",
            "CPU of a copy of a group with a scaling block, in percent of what its tasks reserved",
            alloc_cpu.clone(),
        );
        registry.register(
            "alloc_memory_bytes",
            "Resident memory of a copy of a group with a scaling block",
            alloc_memory.clone(),
        );
        registry.register(
            "service_in_flight",
            "Requests in flight through a node's load balancer, by service, averaged over its last report in the last 5 s",
            service_in_flight.clone(),
        );
        registry.register(
            "service_requests",
            "Requests a node's load balancer answered, by service",
            service_requests.clone(),
        );
        registry.register(
            "http_requests",
            "API requests by method, route template and status code",
            http.clone(),
        );
        registry.register(
            "evals_processed",
            "Evaluations the scheduler ran",
            evals_processed.clone(),
        );
        registry.register(
            "placements",
            "Allocations placed by the scheduler",
            placements.clone(),
        );
        registry.register(
            "schedule_seconds",
            "Time to compute one plan",
            schedule_seconds.clone(),
        );
        registry.register("store_index", "The store's current index", index.clone());
        registry.register("jobs", "Registered jobs", jobs.clone());
        registry.register("nodes", "Nodes by status", nodes.clone());
        registry.register(
            "allocations",
            "Allocations by client status",
            allocs.clone(),
        );
        Metrics {
            registry,
            http,
            evals_processed,
            placements,
            schedule_seconds,
            index,
            jobs,
            nodes,
            allocs,
            service_in_flight,
            service_requests,
            instance_in_flight,
            instance_requests,
            alloc_cpu,
            alloc_memory,
            exporting: std::sync::Mutex::new(()),
        }
    }

    /// Node `node`'s load report for `service`.
    pub fn observe_service(&self, node: &str, service: &str, requests: u64) {
        let label = ServiceLabel {
            service: service.to_string(),
            node: node.to_string(),
        };
        self.service_requests.get_or_create(&label).inc_by(requests);
    }

    /// Sets the load and usage families to what the reports say now: a
    /// reading that is stale or of a copy that is gone disappears.
    fn load(&self, e: crate::autoscale::Exported) {
        self.service_in_flight.clear();
        for (service, node, f) in e.services {
            let label = ServiceLabel { service, node };
            self.service_in_flight.get_or_create(&label).set(f);
        }
        self.instance_in_flight.clear();
        self.instance_requests.clear();
        for (service, alloc, f, requests) in e.instances {
            let label = InstanceLabel { service, alloc };
            self.instance_in_flight.get_or_create(&label).set(f);
            self.instance_requests
                .get_or_create(&label)
                .inc_by(requests);
        }
        self.alloc_cpu.clear();
        self.alloc_memory.clear();
        for (alloc, of, cpu, memory) in e.allocs {
            let label = AllocLabel {
                namespace: of.namespace,
                job: of.job,
                group: of.group,
                alloc,
            };
            self.alloc_cpu.get_or_create(&label).set(cpu);
            self.alloc_memory
                .get_or_create(&label)
                .set(i64::try_from(memory).unwrap_or(i64::MAX));
        }
    }

    pub fn observe_schedule(&self, took: Duration, placed: usize) {
        self.schedule_seconds.observe(took.as_secs_f64());
        self.placements.inc_by(placed as u64);
    }
}

pub async fn count_requests(State(sv): State<Arc<Server>>, req: Request, next: Next) -> Response {
    let method = method_label(req.method());
    let route = route_label(&req);
    let resp = next.run(req).await;
    sv.metrics
        .http
        .get_or_create(&HttpLabels {
            method,
            route,
            code: resp.status().as_u16(),
        })
        .inc();
    resp
}

pub async fn metrics(State(sv): State<Arc<Server>>) -> Result<Response, ServerError> {
    let m = &sv.metrics;
    let _exporting = m.exporting.lock().unwrap_or_else(|e| e.into_inner());
    m.load(sv.autoscaler.exported(sv.cfg.clock.now_ms()));
    m.index.set(sv.store.index() as i64);
    sv.store.read(|s| {
        m.jobs.set(s.jobs.len() as i64);
        let mut nodes: BTreeMap<&str, i64> = BTreeMap::new();
        for st in [
            NodeStatus::Initializing,
            NodeStatus::Ready,
            NodeStatus::Down,
        ] {
            nodes.insert(st.as_str(), 0);
        }
        for n in s.nodes.values() {
            *nodes.entry(n.status.as_str()).or_default() += 1;
        }
        for (k, v) in nodes {
            m.nodes
                .get_or_create(&StatusLabel {
                    status: k.to_string(),
                })
                .set(v);
        }
        let mut allocs: BTreeMap<&str, i64> = BTreeMap::new();
        for a in s.allocs.values() {
            *allocs.entry(a.client_status.as_str()).or_default() += 1;
        }
        for (k, v) in allocs {
            m.allocs
                .get_or_create(&StatusLabel {
                    status: k.to_string(),
                })
                .set(v);
        }
    });
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &m.registry)
        .map_err(|e| ServerError::BadRequest(format!("encode metrics: {e}")))?;
    let mut resp = out.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(resp)
}

/// The namespace an event belongs to, when it says: its object's, a
/// namespace's own name, or a deleted job's (its key is `NAMESPACE/ID`
/// outside the default namespace).
fn event_namespace(e: &edge_store::Event) -> Option<String> {
    if e.topic == "namespace" {
        return Some(e.key.clone());
    }
    if let Some(obj) = e.payload.as_object() {
        return Some(
            obj.get("namespace")
                .and_then(|v| v.as_str())
                .unwrap_or(edge_spec::DEFAULT_NAMESPACE)
                .to_string(),
        );
    }
    (e.topic == "job").then(|| match e.key.split_once('/') {
        Some((ns, _)) => ns.to_string(),
        None => edge_spec::DEFAULT_NAMESPACE.to_string(),
    })
}

#[derive(Deserialize)]
pub struct StreamQuery {
    #[serde(default)]
    index: u64,
    /// Comma-separated topics to keep (`job,allocation`); all when absent.
    #[serde(default)]
    topic: Option<String>,
}

/// Streams every event after `?index=` as one JSON object per line, then
/// follows new ones as they commit. A `{}` line every 20 s keeps idle
/// connections open through proxies.
pub async fn event_stream(
    State(sv): State<Arc<Server>>,
    access: crate::acl::Access,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<Response, ServerError> {
    let topics: Option<Vec<String>> = q
        .topic
        .map(|t| t.split(',').map(|s| s.trim().to_string()).collect());
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let mut after = q.index;
        loop {
            let events = match sv.store.events_after(after, 500).await {
                Ok(e) => e,
                Err(e) => {
                    let _ = tx
                        .send(Ok(bytes::Bytes::from(format!(
                            "{}\n",
                            serde_json::json!({"error": e.to_string()})
                        ))))
                        .await;
                    return;
                }
            };
            let mut out = String::new();
            for e in &events {
                after = after.max(e.index);
                if topics
                    .as_ref()
                    .is_some_and(|t| !t.iter().any(|x| x == &e.topic))
                    || !access.sees_event(&e.topic, event_namespace(e).as_deref())
                {
                    continue;
                }
                let line = StreamEvent {
                    index: e.index,
                    topic: e.topic.clone(),
                    kind: e.kind.clone(),
                    key: e.key.clone(),
                    time: e.time,
                    payload: e.payload.clone(),
                };
                if let Ok(text) = serde_json::to_string(&line) {
                    out.push_str(&text);
                    out.push('\n');
                }
            }
            if !out.is_empty() && tx.send(Ok(bytes::Bytes::from(out))).await.is_err() {
                return;
            }
            if events.len() == 500 {
                continue;
            }
            let idx = sv.store.wait_for(after, Duration::from_secs(20)).await;
            if idx <= after
                && tx
                    .send(Ok(bytes::Bytes::from_static(b"{}\n")))
                    .await
                    .is_err()
            {
                return;
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(resp)
}
