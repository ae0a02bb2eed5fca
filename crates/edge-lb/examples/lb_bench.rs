//! Benchmark helper for `benches/lb.sh`: `backend` serves a tiny fixed HTTP
//! answer; `lb` runs edge's load balancer with a synthetic catalog that
//! publishes one HTTP and one TCP port pointing at that backend.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edge_api::{Catalog, CatalogService, HealthStatus, ServiceInstance};
use edge_spec::{Balance, Publish, PublishProtocol};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

fn usage() -> ! {
    eprintln!(
        "usage: lb_bench backend PORT THREADS\n       lb_bench lb BACKEND_ADDR HTTP_PORT TCP_PORT THREADS"
    );
    std::process::exit(2)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| usage())
}

/// The backend's runtime: current-thread for one thread.
fn runtime(threads: usize) -> tokio::runtime::Runtime {
    let mut b = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    b.enable_all().build().unwrap_or_else(|e| {
        eprintln!("runtime: {e}");
        std::process::exit(1)
    })
}

async fn backend(port: u16) -> std::io::Result<()> {
    let l = TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (s, _) = l.accept().await?;
        s.set_nodelay(true)?;
        tokio::spawn(async move {
            let svc = service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                    Bytes::from_static(b"hello from backend\n"),
                )))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
}

fn service(
    name: &str,
    protocol: PublishProtocol,
    port: u16,
    backend: SocketAddr,
) -> CatalogService {
    CatalogService {
        namespace: "default".to_string(),
        name: name.into(),
        tags: vec![],
        publish: Some(Publish {
            port,
            protocol,
            hosts: vec![],
            path_prefix: None,
            balance: Balance::RoundRobin,
            proxy_protocol: false,
            tls: None,
        }),
        canary_weight: None,
        instances: vec![ServiceInstance {
            namespace: "default".to_string(),
            service: name.into(),
            alloc_id: format!("{name}-1"),
            job_id: name.into(),
            group: "g".into(),
            node_id: "n".into(),
            node_name: "n".into(),
            address: backend.ip().to_string(),
            port: backend.port(),
            tags: vec![],
            status: HealthStatus::Passing,
            canary: false,
            networks: Default::default(),
        }],
    }
}

async fn lb(backend: SocketAddr, http_port: u16, tcp_port: u16, workers: usize) {
    let mut catalog = Catalog {
        index: 1,
        ..Catalog::default()
    };
    catalog.services.insert(
        "web".into(),
        service("web", PublishProtocol::Http, http_port, backend),
    );
    catalog.services.insert(
        "raw".into(),
        service("raw", PublishProtocol::Tcp, tcp_port, backend),
    );
    let (_tx, rx) = tokio::sync::watch::channel(Arc::new(catalog));
    let cfg = edge_lb::LbConfig {
        bind_ip: "127.0.0.1".parse().unwrap_or_else(|_| usage()),
        connect_timeout: Duration::from_secs(2),
        workers,
        max_connections: 10_000,
    };
    let handle = match edge_lb::run(cfg, rx).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("lb: {e}");
            std::process::exit(1)
        }
    };
    for e in handle.errors() {
        eprintln!("lb: {e}");
    }
    println!("listening {:?}", handle.listening());
    let _ = tokio::signal::ctrl_c().await;
    handle.shutdown().await;
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("backend") => {
            let port = arg(&args, 2);
            if let Err(e) = runtime(arg(&args, 3)).block_on(backend(port)) {
                eprintln!("backend: {e}");
                std::process::exit(1)
            }
        }
        Some("lb") => {
            let (backend, http_port, tcp_port) = (arg(&args, 2), arg(&args, 3), arg(&args, 4));
            // The load balancer proxies on worker threads of its own, as in
            // the agent; this runtime only follows the (fixed) catalog.
            runtime(1).block_on(lb(backend, http_port, tcp_port, arg(&args, 5)));
        }
        _ => usage(),
    }
}
