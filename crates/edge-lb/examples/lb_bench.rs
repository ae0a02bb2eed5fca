//! Benchmark helper for `benches/lb.sh` and `benches/udp.sh`: `backend`
//! serves a tiny fixed HTTP answer; `lb` runs edge's load balancer with a
//! synthetic catalog that publishes one HTTP and one TCP port pointing at
//! that backend; `udp-backend` echoes datagrams, `udp-lb` publishes one UDP
//! port in front of it, and `udp-load` measures round trips through one.

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
        "usage: lb_bench backend PORT THREADS\n       lb_bench lb BACKEND_ADDR HTTP_PORT TCP_PORT THREADS\n       lb_bench udp-backend PORT\n       lb_bench udp-lb BACKEND_ADDR PORT\n       lb_bench udp-load TARGET_ADDR FLOWS SECONDS"
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
        activation: None,
        scaled_by: None,
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

async fn lb(services: Vec<CatalogService>, workers: usize) {
    let mut catalog = Catalog {
        index: 1,
        ..Catalog::default()
    };
    for s in services {
        catalog.services.insert(s.name.clone(), s);
    }
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

async fn udp_backend(port: u16) -> std::io::Result<()> {
    let s = tokio::net::UdpSocket::bind(("127.0.0.1", port)).await?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, from) = s.recv_from(&mut buf).await?;
        s.send_to(&buf[..n], from).await?;
    }
}

/// `flows` client sockets, each sending a 64-byte datagram and waiting for
/// its answer, for `seconds`: "round_trips/s p50_us p99_us lost".
async fn udp_load(target: SocketAddr, flows: usize, seconds: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..flows {
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut lost = 0u64;
            let Ok(s) = tokio::net::UdpSocket::bind("127.0.0.1:0").await else {
                return (lat, lost);
            };
            if s.connect(target).await.is_err() {
                return (lat, lost);
            }
            let payload = [7u8; 64];
            let mut buf = [0u8; 128];
            while tokio::time::Instant::now() < deadline {
                let t = std::time::Instant::now();
                if s.send(&payload).await.is_err() {
                    lost += 1;
                    continue;
                }
                match tokio::time::timeout(Duration::from_millis(200), s.recv(&mut buf)).await {
                    Ok(Ok(_)) => lat.push(t.elapsed().as_micros() as u64),
                    _ => lost += 1,
                }
            }
            (lat, lost)
        }));
    }
    let mut all = Vec::new();
    let mut lost = 0;
    for t in tasks {
        if let Ok((l, n)) = t.await {
            all.extend(l);
            lost += n;
        }
    }
    all.sort_unstable();
    let pick = |q: f64| all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)));
    println!(
        "{:.0} {} {} {lost}",
        all.len() as f64 / seconds as f64,
        pick(0.5).copied().unwrap_or(0),
        pick(0.99).copied().unwrap_or(0)
    );
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
            let services = vec![
                service("web", PublishProtocol::Http, http_port, backend),
                service("raw", PublishProtocol::Tcp, tcp_port, backend),
            ];
            runtime(1).block_on(lb(services, arg(&args, 5)));
        }
        Some("udp-backend") => {
            if let Err(e) = runtime(1).block_on(udp_backend(arg(&args, 2))) {
                eprintln!("udp backend: {e}");
                std::process::exit(1)
            }
        }
        Some("udp-lb") => {
            let services = vec![service(
                "dgram",
                PublishProtocol::Udp,
                arg(&args, 3),
                arg(&args, 2),
            )];
            // UDP flows run on the runtime that follows the catalog, as on
            // the agent's: one thread here.
            runtime(1).block_on(lb(services, 1));
        }
        Some("udp-load") => {
            runtime(1).block_on(udp_load(arg(&args, 2), arg(&args, 3), arg(&args, 4)));
        }
        _ => usage(),
    }
}
