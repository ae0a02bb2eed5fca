//! Prometheus metrics of one model server, served at `/metrics`: every
//! series carries the model and version it counts.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;

type Labels = Vec<(&'static str, String)>;

/// Histogram buckets `start * 2^i`, `count` of them.
#[derive(Debug, Clone, Copy)]
struct Buckets {
    start: f64,
    count: u16,
}

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(self.start, 2.0, self.count))
    }
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Inference requests by model, version and status.
    requests: Family<Labels, Counter>,
    /// Inference requests answered with an error, by model, version and status.
    errors: Family<Labels, Counter>,
    /// Seconds from receiving an inference request to answering it.
    latency: Family<Labels, Histogram, Buckets>,
    /// Rows (batch dimension) of each model execution.
    batch_rows: Family<Labels, Histogram, Buckets>,
    /// Requests merged into each model execution.
    batch_requests: Family<Labels, Histogram, Buckets>,
}

/// One model version's series.
#[derive(Debug, Clone)]
pub struct ModelMetrics {
    metrics: Arc<Metrics>,
    labels: Labels,
    latency: Histogram,
    pub batch_rows: Histogram,
    pub batch_requests: Histogram,
}

impl Metrics {
    pub fn new(max_batch_size: usize) -> Metrics {
        let mut registry = Registry::with_prefix("edge_model");
        let requests = Family::<Labels, Counter>::default();
        let errors = Family::<Labels, Counter>::default();
        // 50µs .. ~1.6s: tiny models answer in tens of microseconds.
        let latency = Family::new_with_constructor(Buckets {
            start: 0.000_05,
            count: 16,
        });
        let top = u16::try_from(max_batch_size.max(1).ilog2() + 2).unwrap_or(16);
        let batches = Buckets {
            start: 1.0,
            count: top,
        };
        let batch_rows = Family::new_with_constructor(batches);
        let batch_requests = Family::new_with_constructor(batches);
        registry.register(
            "inference_requests",
            "Inference requests, by HTTP status",
            requests.clone(),
        );
        registry.register(
            "inference_errors",
            "Inference requests answered with an error, by HTTP status",
            errors.clone(),
        );
        registry.register(
            "inference_duration_seconds",
            "Time from receiving an inference request to answering it",
            latency.clone(),
        );
        registry.register(
            "batch_size",
            "Rows of the batch dimension in each model execution",
            batch_rows.clone(),
        );
        registry.register(
            "batch_requests",
            "Requests merged into each model execution",
            batch_requests.clone(),
        );
        Metrics {
            registry,
            requests,
            errors,
            latency,
            batch_rows,
            batch_requests,
        }
    }

    /// The series of one model version.
    pub fn model(self: &Arc<Self>, name: &str, version: u64) -> ModelMetrics {
        let labels = vec![
            ("model", name.to_string()),
            ("version", version.to_string()),
        ];
        ModelMetrics {
            metrics: self.clone(),
            latency: self.latency.get_or_create(&labels).clone(),
            batch_rows: self.batch_rows.get_or_create(&labels).clone(),
            batch_requests: self.batch_requests.get_or_create(&labels).clone(),
            labels,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl ModelMetrics {
    pub fn record(&self, status: u16, seconds: f64) {
        let mut labels = self.labels.clone();
        labels.push(("code", status.to_string()));
        self.metrics.requests.get_or_create(&labels).inc();
        if status >= 400 {
            self.metrics.errors.get_or_create(&labels).inc();
        }
        self.latency.observe(seconds);
    }
}
