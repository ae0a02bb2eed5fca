//! Secret round trips through the real HTTP API on loopback: puts per
//! second (sealed, then committed with its fsync), one writer and eight,
//! and agent fetches per second of an allocation's secrets (read, opened
//! and sent only to the node running it).
//! Run: `cargo bench -p edge-server --bench secrets`

use edge_api::Client;
use std::collections::BTreeMap;
use std::time::Instant;

const PUTS: usize = 400;
const GETS: usize = 4000;

fn value(n: usize) -> BTreeMap<String, String> {
    // A 1 KiB value, like a small certificate.
    BTreeMap::from([("cert".to_string(), format!("{n:04}{}", "x".repeat(1020)))])
}

async fn puts(api: &Client, concurrency: usize) -> f64 {
    let started = Instant::now();
    let per = PUTS / concurrency;
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                api.object_put("secret", &format!("s{w}"), value(i))
                    .await
                    .expect("put");
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    (per * concurrency) as f64 / started.elapsed().as_secs_f64()
}

fn job() -> edge_spec::Job {
    let src = r#"job "web" {
  group "g" {
    task "t" {
      driver = "exec"
      config {
        command = "/bin/true"
      }
      secret "s0" {
        key = "cert"
      }
    }
  }
}
"#;
    edge_spec::parse_hcl(src, &edge_spec::ParseOptions::new("web.hcl"))
        .expect("job")
        .job
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = edge_server::ServerConfig::new(
        dir.path().to_path_buf(),
        "127.0.0.1:0".parse().expect("addr"),
    );
    let h = edge_server::start(cfg).await.expect("server");
    let api = Client::new(&h.url, None).expect("client");
    println!("secret puts/s, 1 writer:   {:.0}", puts(&api, 1).await);
    println!("secret puts/s, 8 writers:  {:.0}", puts(&api, 8).await);

    let secret = edge_api::tls::JoinToken::parse(&h.token)
        .expect("token")
        .secret;
    let agent = Client::new(&h.url, Some(secret)).expect("agent client");
    let node: edge_spec::Node = serde_json::from_value(serde_json::json!({
        "id": "n1", "name": "n1", "address": "127.0.0.1",
        "resources": {"cpu": 4000, "memory": 8192, "cores": 4},
        "drivers": {"exec": {"detected": true, "healthy": true}}
    }))
    .expect("node");
    agent
        .agent_register(&edge_api::RegisterRequest {
            node,
            http_addr: None,
        })
        .await
        .expect("register node");
    api.register(&job()).await.expect("register job");
    let alloc = loop {
        let (allocs, _) = agent
            .agent_allocs("n1", edge_api::QueryOptions::default())
            .await
            .expect("allocs");
        if let Some(a) = allocs.into_iter().next() {
            break a.alloc.id;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let started = Instant::now();
    for _ in 0..GETS {
        let d = agent.alloc_data("n1", &alloc).await.expect("fetch");
        assert_eq!(d.secrets["s0"].data["cert"].len(), 1024);
    }
    println!(
        "secret fetches/s (agent, 1 allocation, opened per fetch): {:.0}",
        GETS as f64 / started.elapsed().as_secs_f64()
    );
    h.shutdown().await;
}
