//! The one-line JSON result both load generators print: latencies of
//! successful requests, errors, and the run's length.

use std::time::Duration;

pub fn print(concurrency: usize, mut latencies: Vec<Duration>, errors: u64, seconds: f64) {
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "{{\"concurrency\": {concurrency}, \"requests\": {}, \"errors\": {errors}, \"rps\": {:.1}, \"p50_ms\": {:.4}, \"p99_ms\": {:.4}}}",
        latencies.len(),
        latencies.len() as f64 / seconds,
        pct(0.5),
        pct(0.99)
    );
}
