//! Starts edge's DNS with a synthetic catalog of 100 services for `benches/dns.sh` to load:
//! prints `udp=ADDR` once listening, serves until stdin closes or a line is read.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use edge_api::{Catalog, CatalogService, HealthStatus, ServiceInstance};
use edge_dns::{DnsConfig, serve};
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;

const SERVICES: usize = 100;
const INSTANCES: usize = 3;
const NODES: usize = 5;

fn synthetic_catalog() -> Catalog {
    let mut services = BTreeMap::new();
    for s in 0..SERVICES {
        let name = format!("svc{s}");
        let instances = (0..INSTANCES)
            .map(|i| {
                let node = (s + i) % NODES;
                ServiceInstance {
                    namespace: "default".to_string(),
                    service: name.clone(),
                    alloc_id: format!("{name}-{i}"),
                    job_id: name.clone(),
                    group: "g".to_string(),
                    node_id: format!("node{node}"),
                    node_name: format!("node{node}"),
                    address: format!("127.0.1.{}", node + 1),
                    port: 20000 + (s * INSTANCES + i) as u16,
                    tags: Vec::new(),
                    status: HealthStatus::Passing,
                    canary: false,
                    networks: Default::default(),
                }
            })
            .collect();
        let svc = CatalogService {
            namespace: "default".to_string(),
            name: name.clone(),
            tags: Vec::new(),
            publish: None,
            canary_weight: None,
            activation: None,
            scaled_by: None,
            instances,
        };
        services.insert(name, svc);
    }
    Catalog {
        index: 1,
        services,
        networks: Default::default(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // EDGE_DNS_THREADS sets the runtime's workers; default: one per core, as in the agent.
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = std::env::var("EDGE_DNS_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        rt.worker_threads(n);
    }
    rt.enable_all().build()?.block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; the only other argument is the listen address.
    let listen: SocketAddr = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_else(|| "127.0.0.1:0".to_string())
        .parse()?;
    let (_tx, rx) = watch::channel(Arc::new(synthetic_catalog()));
    let cfg = DnsConfig {
        listen,
        upstreams: vec!["127.0.0.1:9".parse()?],
        ..DnsConfig::default()
    };
    let dns = serve(cfg, rx).await?;
    println!("udp={}", dns.udp_addr());
    let mut line = String::new();
    tokio::io::BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await?;
    dns.shutdown().await;
    Ok(())
}
