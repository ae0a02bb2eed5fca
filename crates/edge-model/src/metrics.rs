//! Prometheus metrics of one model server, served at `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::borrow::Cow;

type StatusLabels = Vec<(&'static str, String)>;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Inference requests by HTTP status.
    pub requests: Family<StatusLabels, Counter>,
    /// Inference requests answered with an error, by HTTP status.
    pub errors: Family<StatusLabels, Counter>,
    /// Seconds from receiving an inference request to answering it.
    pub latency: Histogram,
    /// Rows (batch dimension) of each model execution.
    pub batch_rows: Histogram,
    /// Requests merged into each model execution.
    pub batch_requests: Histogram,
}

impl Metrics {
    pub fn new(model: &str, max_batch_size: usize) -> Metrics {
        let labels = [(Cow::Borrowed("model"), Cow::Owned(model.to_string()))];
        let mut registry = Registry::with_prefix_and_labels("edge_model", labels.into_iter());
        let requests = Family::<StatusLabels, Counter>::default();
        let errors = Family::<StatusLabels, Counter>::default();
        // 50µs .. ~1.6s: tiny models answer in tens of microseconds.
        let latency = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        let top = u16::try_from(max_batch_size.max(1).ilog2() + 2).unwrap_or(16);
        let batch_rows = Histogram::new(exponential_buckets(1.0, 2.0, top));
        let batch_requests = Histogram::new(exponential_buckets(1.0, 2.0, top));
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

    pub fn record(&self, status: u16, seconds: f64) {
        let labels = vec![("code", status.to_string())];
        self.requests.get_or_create(&labels).inc();
        if status >= 400 {
            self.errors.get_or_create(&labels).inc();
        }
        self.latency.observe(seconds);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
