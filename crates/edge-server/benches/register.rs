//! Job registrations per second through the real HTTP API on loopback,
//! plain and over TLS; node registrations per second, plain (join token)
//! and over mutual TLS (each node with its own certificate and connection);
//! and the database size after 10,000 updates of one job with GC.
//! Run: `cargo bench -p edge-server --bench register`

use edge_api::Client;
use edge_api::tls::{ClusterCa, Credentials, client_config};
use edge_spec::{Group, Job, Resources, Task};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn job(id: &str, n: u64) -> Job {
    let mut env = BTreeMap::new();
    env.insert("REVISION".to_string(), n.to_string());
    Job {
        networks: Default::default(),
        periodic: None,
        parameterized: None,
        parent_id: String::new(),
        payload: String::new(),
        next_launch: None,
        children: Vec::new(),
        namespace: "default".to_string(),
        id: id.to_string(),
        name: id.to_string(),
        job_type: Default::default(),
        datacenters: vec!["*".to_string()],
        priority: 50,
        meta: BTreeMap::new(),
        affinities: Vec::new(),
        spreads: Vec::new(),
        constraints: vec![],
        update: None,
        groups: vec![Group {
            volumes: Vec::new(),
            depends_on: Vec::new(),
            system: false,
            batch: false,
            scaling: None,
            meta: Default::default(),
            name: "web".to_string(),
            count: 1,
            affinities: Vec::new(),
            spreads: Vec::new(),
            constraints: vec![],
            network: Default::default(),
            services: vec![],
            restart: Default::default(),
            reschedule: Default::default(),
            update: None,
            migrate: None,
            tasks: vec![Task {
                templates: Vec::new(),
                artifacts: Vec::new(),
                dispatch_payload: None,
                secrets: Vec::new(),
                configs: Vec::new(),
                volume_mounts: Vec::new(),
                lifecycle: None,
                affinities: Vec::new(),
                constraints: Vec::new(),
                meta: Default::default(),
                name: "server".to_string(),
                driver: "exec".to_string(),
                config: serde_json::json!({"command": "/bin/true"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                env,
                resources: Resources {
                    cpu: 100,
                    memory: 64,
                },
                kill_timeout: Duration::from_secs(5),
                kill_signal: None,
            }],
        }],
        version: 0,
        stop: false,
        stable: false,
        status: Default::default(),
        submit_time: 0,
        create_index: 0,
        modify_index: 0,
        scaled: None,
    }
}

fn file_size(dir: &std::path::Path) -> u64 {
    ["edge.db", "edge.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

async fn register_many(api: &Client, concurrency: usize, total: usize, same_job: bool) -> f64 {
    let started = Instant::now();
    let per = total / concurrency;
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let n = (w * per + i) as u64;
                let id = if same_job {
                    "one".to_string()
                } else {
                    format!("job-{n}")
                };
                api.register(&job(&id, n)).await.expect("register");
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    (per * concurrency) as f64 / started.elapsed().as_secs_f64()
}

/// A server on loopback, plain or TLS, and a user client for it.
async fn server(tls: bool) -> (tempfile::TempDir, edge_server::ServerHandle, Client) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = edge_server::ServerConfig::new(
        dir.path().to_path_buf(),
        "127.0.0.1:0".parse().expect("addr"),
    );
    cfg.tls = tls;
    let h = edge_server::start(cfg).await.expect("server");
    let api = if tls {
        let ca = ClusterCa::known(h.server.ca_pem(), None).expect("ca");
        Client::with_tls(&h.url, None, client_config(ca, None).expect("tls")).expect("client")
    } else {
        Client::new(&h.url, None).expect("client")
    };
    (dir, h, api)
}

fn node(id: &str) -> edge_spec::Node {
    serde_json::from_value(serde_json::json!({
        "id": id, "name": id, "address": "127.0.0.1",
        "resources": {"cpu": 4000, "memory": 8192, "cores": 4}
    }))
    .expect("node")
}

/// `n` nodes, each with its own client (and so its own connection; over
/// TLS its own certificate, asked for beforehand), register `concurrency`
/// at a time; registrations per second, connection set-up included.
async fn register_nodes(
    h: &edge_server::ServerHandle,
    tls: bool,
    n: usize,
    concurrency: usize,
) -> f64 {
    let secret = edge_api::tls::JoinToken::parse(&h.token)
        .expect("token")
        .secret;
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("n{i}");
        let c = if tls {
            let ca = ClusterCa::known(h.server.ca_pem(), None).expect("ca");
            let boot = Client::with_tls(
                &h.url,
                Some(secret.clone()),
                client_config(ca.clone(), None).expect("tls"),
            )
            .expect("client");
            let csr = edge_api::tls::node_csr(&id).expect("csr");
            let cert = boot.agent_csr(&csr.csr_pem).await.expect("csr answer");
            let creds = Credentials::from_pem(&cert.cert, &csr.key_pem).expect("creds");
            Client::with_tls(&h.url, None, client_config(ca, Some(creds)).expect("tls"))
                .expect("client")
        } else {
            Client::new(&h.url, Some(secret.clone())).expect("client")
        };
        clients.push((id, c));
    }
    let started = Instant::now();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(id, c)| {
            let gate = gate.clone();
            tokio::spawn(async move {
                let _p = gate.acquire().await.expect("gate");
                let req = edge_api::RegisterRequest {
                    node: node(&id),
                    http_addr: None,
                };
                c.agent_register(&req).await.expect("register");
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("node");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for tls in [false, true] {
            let (_dir, h, api) = server(tls).await;
            let how = if tls { "tls  " } else { "plain" };
            for c in [1usize, 16, 64] {
                let rate = register_many(&api, c, 5_000, false).await;
                println!("{how} register distinct jobs, concurrency {c:>2}: {rate:>8.0} registrations/s");
            }
            h.shutdown().await;
        }
        for tls in [false, true] {
            let (_dir, h, _api) = server(tls).await;
            let how = if tls { "mTLS " } else { "plain" };
            let rate = register_nodes(&h, tls, 2_000, 16).await;
            println!("{how} register 2,000 nodes (own connection each), concurrency 16: {rate:>8.0} nodes/s");
            h.shutdown().await;
        }

        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = edge_server::ServerConfig::new(dir.path().to_path_buf(), "127.0.0.1:0".parse().expect("addr"));
        let gc = cfg.gc.clone();
        let h = edge_server::start(cfg).await.expect("server");
        let api = Client::new(&format!("http://{}", h.addr), None).expect("client");
        let rate = register_many(&api, 16, 10_000, true).await;
        let before = file_size(dir.path());
        let report = h
            .server
            .store()
            .gc(&gc, edge_server::now_ms() + 2 * 3_600_000)
            .await
            .expect("gc");
        let after = file_size(dir.path());
        println!("10,000 updates of one job at {rate:.0}/s: database {:.1} MB before GC, {:.1} MB after ({report:?})",
            before as f64 / 1e6, after as f64 / 1e6);
        h.shutdown().await;
    });
}
