//! Dynamic batching. Requests queue for a small pool of workers; a free
//! worker takes the oldest request and everything queued behind it, stacked
//! along dimension 0 up to `max_batch_size` rows. It waits for more (at most
//! `max_delay` after the first was queued) only while other requests are
//! still being decoded, so a lone request never waits and a burst of
//! concurrent ones runs as one execution.

use crate::error::ModelError;
use crate::metrics::ModelMetrics;
use crate::model::Model;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tract_onnx::prelude::Tensor;

#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    pub max_batch_size: usize,
    pub max_delay: Duration,
    /// Model executions that may run at once.
    pub workers: usize,
}

type Reply = Result<Vec<Tensor>, ModelError>;

struct Job {
    inputs: Vec<Tensor>,
    rows: usize,
    reply: oneshot::Sender<Reply>,
    queued: Instant,
}

#[derive(Debug, Clone)]
pub struct Batcher {
    tx: mpsc::UnboundedSender<Job>,
    decoding: Arc<AtomicUsize>,
}

/// A request on its way to the queue; while any exists, a worker holding a
/// partial batch waits for it.
#[derive(Debug)]
pub struct Incoming(Arc<AtomicUsize>);

impl Drop for Incoming {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Batcher {
    /// Starts the dispatch task on the current runtime.
    pub fn start(model: Arc<Model>, cfg: BatchConfig, metrics: ModelMetrics) -> Batcher {
        let (tx, rx) = mpsc::unbounded_channel();
        let decoding = Arc::new(AtomicUsize::new(0));
        tokio::spawn(dispatch(model, cfg, metrics, rx, decoding.clone()));
        Batcher { tx, decoding }
    }

    /// Call when a request arrives, before decoding it.
    pub fn incoming(&self) -> Incoming {
        self.decoding.fetch_add(1, Ordering::AcqRel);
        Incoming(self.decoding.clone())
    }

    /// Queues decoded inputs with `rows` rows along dimension 0 and waits
    /// for their outputs.
    pub async fn infer(
        &self,
        inputs: Vec<Tensor>,
        rows: usize,
        incoming: Incoming,
    ) -> Result<Vec<Tensor>, ModelError> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            inputs,
            rows,
            reply,
            queued: Instant::now(),
        };
        self.tx.send(job).map_err(|_| ModelError::ShuttingDown)?;
        drop(incoming);
        rx.await.map_err(|_| ModelError::ShuttingDown)?
    }
}

async fn dispatch(
    model: Arc<Model>,
    cfg: BatchConfig,
    metrics: ModelMetrics,
    mut rx: mpsc::UnboundedReceiver<Job>,
    decoding: Arc<AtomicUsize>,
) {
    let workers = Arc::new(Semaphore::new(cfg.workers.max(1)));
    let max = cfg.max_batch_size.max(1);
    let mut carry: Option<Job> = None;
    loop {
        let Ok(permit) = workers.clone().acquire_owned().await else {
            return;
        };
        let first = match carry.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let deadline = first.queued + cfg.max_delay;
        let mut rows = first.rows;
        let mut jobs = vec![first];
        if model.batchable {
            let mut take = |job: Job, jobs: &mut Vec<Job>, rows: &mut usize| {
                if *rows + job.rows <= max {
                    *rows += job.rows;
                    jobs.push(job);
                    true
                } else {
                    carry = Some(job);
                    false
                }
            };
            'gather: loop {
                while rows < max {
                    match rx.try_recv() {
                        Ok(job) => {
                            if !take(job, &mut jobs, &mut rows) {
                                break 'gather;
                            }
                        }
                        Err(_) => break,
                    }
                }
                if rows >= max || decoding.load(Ordering::Acquire) == 0 {
                    break;
                }
                tokio::select! {
                    job = rx.recv() => match job {
                        Some(job) => {
                            if !take(job, &mut jobs, &mut rows) {
                                break;
                            }
                        }
                        None => break,
                    },
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        let model = model.clone();
        let metrics = metrics.clone();
        tokio::task::spawn_blocking(move || {
            execute(&model, jobs, &metrics);
            drop(permit);
        });
    }
}

/// Runs one batch and answers each of its requests with its own rows.
fn execute(model: &Model, mut jobs: Vec<Job>, metrics: &ModelMetrics) {
    let rows: usize = jobs.iter().map(|j| j.rows).sum();
    metrics.batch_rows.observe(rows as f64);
    metrics.batch_requests.observe(jobs.len() as f64);
    if jobs.len() == 1
        && let Some(job) = jobs.pop()
    {
        let _ = job.reply.send(model.run(job.inputs));
        return;
    }
    match run_stacked(model, &jobs) {
        Ok(outputs) => {
            let mut start = 0;
            for job in jobs {
                let end = start + job.rows;
                let part = outputs
                    .iter()
                    .map(|o| o.slice(0, start, end))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| ModelError::Inference(format!("splitting a batch: {e:#}")));
                start = end;
                let _ = job.reply.send(part);
            }
        }
        // One request's values can fail a whole batch (an index out of
        // range, say): run each alone so only that one gets the error.
        Err(_) => {
            for job in jobs {
                let _ = job.reply.send(model.run(job.inputs));
            }
        }
    }
}

fn run_stacked(model: &Model, jobs: &[Job]) -> Result<Vec<Tensor>, ModelError> {
    let stacked = (0..model.inputs.len())
        .map(|i| {
            let parts: Vec<&Tensor> = jobs.iter().filter_map(|j| j.inputs.get(i)).collect();
            Tensor::stack_tensors(0, &parts)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ModelError::Inference(format!("stacking a batch: {e:#}")))?;
    model.run(stacked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use std::path::Path;

    fn mlp() -> Arc<Model> {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/model/fixtures/mlp.onnx");
        Arc::new(Model::load(&path, "mlp").unwrap())
    }

    fn row(v: f32) -> Tensor {
        Tensor::from_shape(&[1, 32], &[v; 32]).unwrap()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    /// A sample of the rendered metrics, e.g. `batch_size_sum`.
    fn sample(metrics: &Metrics, name: &str) -> f64 {
        let prefix = format!("edge_model_{name}{{");
        let text = metrics.render();
        text.lines()
            .find(|l| l.starts_with(&prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    }

    fn start(model: &Arc<Model>, max: usize, delay: Duration) -> (Batcher, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new(max));
        let cfg = BatchConfig {
            max_batch_size: max,
            max_delay: delay,
            workers: 1,
        };
        let series = metrics.model("mlp", 1);
        (Batcher::start(model.clone(), cfg, series), metrics)
    }

    #[tokio::test]
    async fn queued_requests_run_as_one_batch_and_each_gets_its_rows() {
        let model = mlp();
        let (b, metrics) = start(&model, 4, Duration::from_secs(3600));
        // A request still being decoded keeps the first batch open until full.
        let decoding = b.incoming();
        let rows: Vec<Tensor> = (0..4).map(|i| row(i as f32 * 0.25 - 0.5)).collect();
        let answers = futures_util::future::join_all(rows.iter().map(|r| {
            let (b, inc, r) = (b.clone(), b.incoming(), r.clone());
            async move { b.infer(vec![r], 1, inc).await }
        }))
        .await;
        drop(decoding);
        for (r, answer) in rows.iter().zip(answers) {
            let alone = model.run(vec![r.clone()]).unwrap();
            let got = answer.unwrap();
            assert_eq!(got[0].shape(), &[1, 10]);
            for (g, w) in values(&got[0]).iter().zip(values(&alone[0])) {
                assert!((g - w).abs() < 1e-5, "{g} vs {w}");
            }
        }
        assert_eq!(sample(&metrics, "batch_requests_count"), 1.0);
        assert_eq!(sample(&metrics, "batch_size_sum"), 4.0);
    }

    #[tokio::test]
    async fn a_lone_request_does_not_wait_for_company() {
        let (b, metrics) = start(&mlp(), 32, Duration::from_secs(3600));
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            b.infer(vec![row(0.1)], 1, b.incoming()),
        )
        .await
        .expect("answered without waiting out max_delay");
        assert_eq!(answer.unwrap()[0].shape(), &[1, 10]);
        assert_eq!(sample(&metrics, "batch_requests_count"), 1.0);
    }

    #[tokio::test]
    async fn a_request_over_the_limit_waits_for_the_next_batch() {
        let model = mlp();
        let (b, metrics) = start(&model, 3, Duration::from_secs(3600));
        let decoding = b.incoming();
        let two = Tensor::stack_tensors(0, &[row(0.1), row(0.2)]).unwrap();
        let first = b.infer(vec![two.clone()], 2, b.incoming());
        let second = b.infer(vec![two], 2, b.incoming());
        let third = b.infer(vec![row(0.3)], 1, b.incoming());
        let (a, c, d) = tokio::join!(first, second, third);
        drop(decoding);
        assert_eq!(a.unwrap()[0].shape(), &[2, 10]);
        assert_eq!(c.unwrap()[0].shape(), &[2, 10]);
        assert_eq!(d.unwrap()[0].shape(), &[1, 10]);
        assert_eq!(sample(&metrics, "batch_size_sum"), 5.0);
        assert_eq!(sample(&metrics, "batch_requests_count"), 2.0);
    }
}
