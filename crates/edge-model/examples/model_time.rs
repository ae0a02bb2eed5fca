//! Per-row inference time of one model, with no server in the way: what a
//! batch of 1, 8 and 16 rows costs in `Model::run`, and the throughput of
//! two threads running one-row batches side by side (the server's two
//! workers on a two-core machine). Build it in release.
//!
//! usage: model_time [--glibc-defaults] MODEL.onnx [SECONDS_PER_CASE] [ROWS...]
//! Inputs have the declared shapes, open dimensions 1 (batch: ROWS), and
//! benches/model.sh's pattern: element k is (k % 251) / 251 - 0.5.
//! The allocator is set up as `edge model serve` sets it up
//! ([`edge_model::keep_freed_memory`]) unless `--glibc-defaults` is given.
//! Last, the batch limit a server with one and with two workers would pick.

use edge_model::Model;
use std::path::Path;
use std::time::{Duration, Instant};
use tract_onnx::prelude::Tensor;

fn fail(message: String) -> ! {
    eprintln!("{message}");
    std::process::exit(2)
}

fn inputs(model: &Model, rows: usize) -> Vec<Tensor> {
    model
        .inputs
        .iter()
        .map(|i| {
            let shape: Vec<usize> = i
                .shape
                .iter()
                .enumerate()
                .map(|(axis, d)| usize::try_from(*d).unwrap_or(if axis == 0 { rows } else { 1 }))
                .collect();
            let len: usize = shape.iter().product();
            let values: Vec<f32> = (0..len).map(|k| (k % 251) as f32 / 251.0 - 0.5).collect();
            Tensor::from_shape(&shape, &values).unwrap_or_else(|e| fail(format!("{}: {e}", i.name)))
        })
        .collect()
}

/// Median seconds of runs of `rows` rows over about `secs`.
fn median_run(model: &Model, rows: usize, secs: f64) -> f64 {
    let x = inputs(model, rows);
    model
        .run(x.clone())
        .unwrap_or_else(|e| fail(format!("{e}")));
    let mut times = Vec::new();
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < secs || times.len() < 5 {
        let t = Instant::now();
        model
            .run(x.clone())
            .unwrap_or_else(|e| fail(format!("{e}")));
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Rows per second of `threads` threads each running `rows`-row batches.
fn parallel_rate(model: &Model, threads: usize, rows: usize, secs: f64) -> f64 {
    let x = inputs(model, rows);
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let runs: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0;
                    while Instant::now() < until {
                        model
                            .run(x.clone())
                            .unwrap_or_else(|e| fail(format!("{e}")));
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    (runs * rows) as f64 / started.elapsed().as_secs_f64()
}

/// Median seconds of `model.run` on a worker thread fed inputs another
/// thread made, as the server's batcher runs them.
fn handed_over(model: &Model, secs: f64) -> f64 {
    let (tx, rx) = std::sync::mpsc::channel::<Vec<Tensor>>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<f64>();
    std::thread::scope(|s| {
        s.spawn(move || {
            for x in rx {
                let t = Instant::now();
                model.run(x).unwrap_or_else(|e| fail(format!("{e}")));
                let _ = done_tx.send(t.elapsed().as_secs_f64());
            }
        });
        let mut times = Vec::new();
        let started = Instant::now();
        while started.elapsed().as_secs_f64() < secs || times.len() < 5 {
            let _ = tx.send(inputs(model, 1));
            times.push(done_rx.recv().unwrap_or(f64::NAN));
        }
        drop(tx);
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    })
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let defaults = args.len();
    args.retain(|a| a != "--glibc-defaults");
    if args.len() == defaults {
        edge_model::keep_freed_memory();
    }
    let Some(path) = args.first() else {
        fail(
            "usage: model_time [--glibc-defaults] MODEL.onnx [SECONDS_PER_CASE] [ROWS...]"
                .to_string(),
        )
    };
    let secs: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let mut sizes: Vec<usize> = args.iter().skip(2).filter_map(|s| s.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = vec![1, 8, 16];
    }
    let t = Instant::now();
    let model = Model::load(Path::new(path), "m").unwrap_or_else(|e| fail(format!("{e}")));
    println!("load {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    for rows in sizes {
        let run = median_run(&model, rows, secs);
        println!(
            "batch {rows:>2}: {:>8.3} ms per run, {:.3} ms per row",
            run * 1e3,
            run * 1e3 / rows as f64
        );
    }
    for (threads, rows) in [(1, 1), (2, 1), (2, 2), (2, 4)] {
        let rate = parallel_rate(&model, threads, rows, secs);
        println!("{threads} thread(s) x batch {rows}: {rate:.0} rows/s");
    }
    println!(
        "batch 1 handed to another thread: {:.3} ms per run",
        handed_over(&model, secs) * 1e3
    );
    for workers in [1, 2] {
        let limit = model.batch_limit(32, workers, Duration::from_millis(300));
        println!("batch limit with {workers} worker(s): {limit}");
    }
}
