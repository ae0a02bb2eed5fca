//! Store benchmark: commits/s for one caller and for 64 concurrent callers
//! (each commit one job upsert plus one eval), and the database size after
//! 10,000 updates of one job with GC every 1,000. Run with
//! `cargo bench -p edge-store --bench commit`.

use edge_spec::{EvalStatus, Evaluation, Job, TriggeredBy};
use edge_store::{Batch, GcConfig, Store, StoreError};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn job(id: &str, version: u64) -> Job {
    serde_json::from_value(serde_json::json!({
        "id": id,
        "name": id,
        "version": version,
        "groups": [{
            "name": "web",
            "count": 3,
            "network": { "ports": [{ "label": "http", "to": 8080 }] },
            "services": [{ "name": "web", "port": "http", "tags": ["v1"],
                "checks": [{ "type": "http", "path": "/health", "interval": "10s", "timeout": "2s" }] }],
            "tasks": [{ "name": "server", "driver": "exec",
                "config": { "command": "/usr/bin/server", "args": ["--port", "8080"] },
                "env": { "MODE": "production" },
                "resources": { "cpu": 200, "memory": 128 } }]
        }]
    }))
    .expect("bench job is valid")
}

fn eval(id: String, job_id: &str) -> Evaluation {
    Evaluation {
        namespace: "default".to_string(),
        id,
        job_id: job_id.to_string(),
        priority: 50,
        triggered_by: TriggeredBy::JobRegister,
        // Complete and long finished, so GC may take it as it would in a
        // server whose evals were processed.
        status: EvalStatus::Complete,
        status_description: String::new(),
        node_id: None,
        failed_tg_allocs: Default::default(),
        queued_allocations: Default::default(),
        wait_until: 0,
        create_time: 0,
        modify_time: 0,
        create_index: 0,
        modify_index: 0,
    }
}

/// One registration: the job's next version and an eval for it.
async fn register(store: &Store, job_id: String, seq: u64) -> u64 {
    let (_, index) = store
        .commit(move |s| {
            let version = s.jobs.get(&job_id).map_or(0, |j| j.version + 1);
            let batch = Batch {
                jobs: vec![job(&job_id, version)],
                evals: vec![eval(format!("eval-{job_id}-{seq}"), &job_id)],
                ..Batch::default()
            };
            Ok::<_, StoreError>((batch, ()))
        })
        .await
        .expect("commit");
    index
}

fn file_size(path: &Path) -> u64 {
    let wal = path.with_extension("db-wal");
    [path, wal.as_path()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

async fn sequential(dir: &Path, n: u64) {
    let store = Store::open(&dir.join("seq.db")).expect("open");
    let start = Instant::now();
    for i in 0..n {
        register(&store, format!("job-{}", i % 50), i).await;
    }
    let dt = start.elapsed();
    println!(
        "sequential: {n} commits in {:.2?} = {:.0} commits/s ({:.0} us each)",
        dt,
        n as f64 / dt.as_secs_f64(),
        dt.as_micros() as f64 / n as f64
    );
}

async fn concurrent(dir: &Path, callers: u64, per_caller: u64) {
    let store = Arc::new(Store::open(&dir.join("conc.db")).expect("open"));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..callers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_caller {
                register(&store, format!("job-{c}"), i).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("caller task");
    }
    let dt = start.elapsed();
    let n = callers * per_caller;
    println!(
        "{callers} concurrent callers: {n} commits in {:.2?} = {:.0} commits/s",
        dt,
        n as f64 / dt.as_secs_f64()
    );
}

async fn gc_bounded(dir: &Path, cfg: &GcConfig, label: &str) {
    let path = dir.join(format!("gc-{label}.db"));
    let store = Store::open(&path).expect("open");
    let mut peak = 0;
    let start = Instant::now();
    for i in 0..10_000u64 {
        register(&store, "web".to_string(), i).await;
        if (i + 1) % 1_000 == 0 {
            let now = edge_now();
            peak = peak.max(file_size(&path));
            store.gc(cfg, now).await.expect("gc");
        }
    }
    println!(
        "10,000 updates of one job, gc every 1,000 ({label}: keep {} versions, {} events): \
         db+wal {:.2} MB after, peak {:.2} MB before a gc, {:.2?}",
        cfg.keep_versions,
        cfg.keep_events,
        file_size(&path) as f64 / 1e6,
        peak as f64 / 1e6,
        start.elapsed()
    );
}

fn edge_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    rt.block_on(async {
        sequential(dir.path(), 2_000).await;
        concurrent(dir.path(), 64, 100).await;
        gc_bounded(dir.path(), &GcConfig::default(), "defaults").await;
        let tight = GcConfig {
            keep_events: 1_000,
            event_age: Duration::from_secs(3600),
            ..GcConfig::default()
        };
        gc_bounded(dir.path(), &tight, "tight").await;
    });
}
