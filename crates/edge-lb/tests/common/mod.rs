//! Test fixtures: catalogs, a load balancer per test, and tiny TCP and HTTP
//! backends on 127.0.0.1 that answer with their own id.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use edge_api::{Catalog, CatalogService, HealthStatus, ServiceInstance};
use edge_lb::{LbConfig, LbHandle};
use edge_spec::{Balance, Publish, PublishProtocol, PublishTls};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind ephemeral");
    l.local_addr().expect("local addr").port()
}

pub fn publish(port: u16, protocol: PublishProtocol) -> Publish {
    Publish {
        port,
        protocol,
        hosts: vec![],
        path_prefix: None,
        balance: Balance::RoundRobin,
        proxy_protocol: false,
        tls: None,
    }
}

pub fn tls(cert: &std::path::Path, key: &std::path::Path) -> Option<PublishTls> {
    Some(PublishTls {
        secret: String::new(),
        cert_file: cert.display().to_string(),
        key_file: key.display().to_string(),
    })
}

pub fn inst(service: &str, alloc: &str, addr: SocketAddr, status: HealthStatus) -> ServiceInstance {
    ServiceInstance {
        namespace: "default".to_string(),
        service: service.into(),
        alloc_id: alloc.into(),
        job_id: service.into(),
        group: "g".into(),
        node_id: "n1".into(),
        node_name: "node1".into(),
        address: addr.ip().to_string(),
        port: addr.port(),
        tags: vec![],
        status,
        canary: false,
        networks: Default::default(),
    }
}

pub fn up(service: &str, alloc: &str, addr: SocketAddr) -> ServiceInstance {
    inst(service, alloc, addr, HealthStatus::Passing)
}

pub fn catalog(index: u64, services: Vec<(&str, Publish, Vec<ServiceInstance>)>) -> Catalog {
    let mut c = Catalog {
        index,
        ..Catalog::default()
    };
    for (name, p, instances) in services {
        c.services.insert(
            name.to_string(),
            CatalogService {
                namespace: "default".to_string(),
                name: name.to_string(),
                tags: vec![],
                publish: Some(p),
                canary_weight: None,
                activation: None,
                scaled_by: None,
                instances,
            },
        );
    }
    c
}

pub struct Lb {
    pub handle: LbHandle,
    pub tx: watch::Sender<Arc<Catalog>>,
}

impl Lb {
    pub async fn start(c: Catalog) -> Lb {
        Lb::start_capped(c, 10_000).await
    }

    /// A load balancer whose ports each hold at most `max_connections`.
    pub async fn start_capped(c: Catalog, max_connections: usize) -> Lb {
        let (tx, rx) = watch::channel(Arc::new(c));
        let cfg = LbConfig {
            bind_ip: "127.0.0.1".parse().expect("ip"),
            connect_timeout: Duration::from_secs(2),
            // Two, so that connections spread over workers as in production.
            workers: 2,
            max_connections,
        };
        let handle = edge_lb::run(cfg, rx).await.expect("lb starts");
        Lb { handle, tx }
    }

    /// A load balancer for a catalog (index 1) of one published service.
    pub async fn single(name: &str, p: Publish, instances: Vec<ServiceInstance>) -> Lb {
        Lb::start(catalog(1, vec![(name, p, instances)])).await
    }

    /// An HTTP service "web" with one instance, `backend`, on a free port.
    pub async fn web(backend: SocketAddr) -> (Lb, u16) {
        let port = free_port();
        let instances = vec![up("web", "a1", backend)];
        let lb = Lb::single("web", publish(port, PublishProtocol::Http), instances).await;
        (lb, port)
    }

    /// Sends a new catalog and waits until the listeners reflect it.
    pub async fn update(&self, c: Catalog) {
        let index = c.index;
        self.tx.send_replace(Arc::new(c));
        for _ in 0..500 {
            if self.handle.applied_index() == index {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("catalog {index} not applied");
    }
}

/// Reads until EOF, then answers `id:<what it read>`: exercises half-close.
pub async fn tcp_backend(id: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if s.read_to_end(&mut buf).await.is_ok() {
                    let mut out = format!("{id}:").into_bytes();
                    out.extend_from_slice(&buf);
                    let _ = s.write_all(&out).await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    addr
}

/// Client side of a TCP exchange: send, half-close, read the whole reply.
pub async fn tcp_call(port: u16, payload: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect lb");
    s.write_all(payload).await.expect("write");
    s.shutdown().await.expect("shutdown write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read reply");
    out
}

pub struct HttpBackend {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    /// Connections accepted.
    pub conns: Arc<AtomicUsize>,
}

impl HttpBackend {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn conns(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }
}

/// Answers every request with its id, echoing what the proxy sent as
/// `x-echo-*` headers; `Upgrade` requests get a 101 and an echo stream.
pub async fn http_backend(id: &'static str, delay: Duration) -> HttpBackend {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = l.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let conns = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let accepted = conns.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    let counter = counter.clone();
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        if req.headers().contains_key(http::header::UPGRADE) {
                            let on = hyper::upgrade::on(&mut req);
                            tokio::spawn(async move {
                                if let Ok(up) = on.await {
                                    let mut io = TokioIo::new(up);
                                    let mut buf = [0u8; 1024];
                                    while let Ok(n) = io.read(&mut buf).await {
                                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                            break;
                                        }
                                    }
                                }
                            });
                            let resp = hyper::Response::builder()
                                .status(101)
                                .header("connection", "upgrade")
                                .header("upgrade", "echo")
                                .body(Full::new(Bytes::new()))
                                .expect("response");
                            return Ok::<_, std::convert::Infallible>(resp);
                        }
                        tokio::time::sleep(delay).await;
                        let h = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string()
                        };
                        let resp = hyper::Response::builder()
                            .header("x-echo-xff", h("x-forwarded-for"))
                            .header("x-echo-proto", h("x-forwarded-proto"))
                            .header("x-echo-fhost", h("x-forwarded-host"))
                            .header("x-echo-host", h("host"))
                            .header("x-echo-path", req.uri().to_string())
                            .body(Full::new(Bytes::from_static(id.as_bytes())))
                            .expect("response");
                        Ok(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    HttpBackend { addr, hits, conns }
}

/// Accepts, reads the request, then closes without answering.
pub async fn broken_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = l.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            drop(s);
        }
    });
    (addr, accepted)
}

/// An address nothing listens on: connecting is refused.
pub fn refused_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

pub async fn get(
    c: &reqwest::Client,
    port: u16,
    path: &str,
    host: Option<&str>,
) -> (u16, String, reqwest::header::HeaderMap) {
    let mut req = c.get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(h) = host {
        req = req.header("host", h);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.text().await.expect("body"), headers)
}
