//! End-to-end behaviour of the load balancer over real sockets on 127.0.0.1:
//! balancing, routing, forwarded headers, retries, health, draining, TLS.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use edge_api::HealthStatus;
use edge_lb::Protocol;
use edge_spec::{Balance, PublishProtocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const NO_DELAY: Duration = Duration::ZERO;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_round_robin_across_three_backends() {
    let b = [
        tcp_backend("b1").await,
        tcp_backend("b2").await,
        tcp_backend("b3").await,
    ];
    let port = free_port();
    let lb = Lb::single(
        "db",
        publish(port, PublishProtocol::Tcp),
        vec![
            up("db", "a1", b[0]),
            up("db", "a2", b[1]),
            up("db", "a3", b[2]),
        ],
    )
    .await;
    assert_eq!(lb.handle.listening(), vec![(port, Protocol::Tcp)]);
    assert!(lb.handle.errors().is_empty(), "{:?}", lb.handle.errors());
    let mut seen = Vec::new();
    for _ in 0..6 {
        let reply = String::from_utf8(tcp_call(port, b"hi").await).expect("utf8");
        seen.push(reply);
    }
    assert_eq!(seen, ["b1:hi", "b2:hi", "b3:hi", "b1:hi", "b2:hi", "b3:hi"]);
    lb.handle.shutdown().await;
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_half_close_still_gets_the_reply() {
    let b = tcp_backend("b1").await;
    let port = free_port();
    let lb = Lb::single(
        "db",
        publish(port, PublishProtocol::Tcp),
        vec![up("db", "a1", b)],
    )
    .await;
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let reply = tcp_call(port, &payload).await;
    assert_eq!(&reply[..3], b"b1:");
    assert_eq!(&reply[3..], &payload[..]);
    lb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_proxy_protocol_v2_carries_client_address() {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let backend = l.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("accept");
        let mut head = [0u8; 16];
        s.read_exact(&mut head).await.expect("header");
        assert_eq!(&head[..12], b"\r\n\r\n\0\r\nQUIT\n");
        assert_eq!(head[12], 0x21, "v2 PROXY command");
        assert_eq!(head[13], 0x11, "TCP over IPv4");
        let len = u16::from_be_bytes([head[14], head[15]]) as usize;
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.expect("addresses");
        let src = std::net::SocketAddr::from((
            [body[0], body[1], body[2], body[3]],
            u16::from_be_bytes([body[8], body[9]]),
        ));
        let dst_port = u16::from_be_bytes([body[10], body[11]]);
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.expect("payload");
        s.write_all(format!("{src} {dst_port} {}", String::from_utf8_lossy(&rest)).as_bytes())
            .await
            .expect("reply");
    });
    let port = free_port();
    let mut p = publish(port, PublishProtocol::Tcp);
    p.proxy_protocol = true;
    let lb = Lb::start(catalog(1, vec![("pp", p, vec![up("pp", "a1", backend)])])).await;
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let me = s.local_addr().expect("local");
    s.write_all(b"payload").await.expect("write");
    s.shutdown().await.expect("shutdown");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    assert_eq!(out, format!("{me} {port} payload"));
    server.await.expect("backend task");
    lb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_least_conn_avoids_the_busy_backend() {
    let b = [tcp_backend("b1").await, tcp_backend("b2").await];
    let port = free_port();
    let mut p = publish(port, PublishProtocol::Tcp);
    p.balance = Balance::LeastConn;
    let lb = Lb::start(catalog(
        1,
        vec![("db", p, vec![up("db", "a1", b[0]), up("db", "a2", b[1])])],
    ))
    .await;
    // An open connection the backend holds until EOF keeps one backend busy.
    let mut held = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    held.write_all(b"x").await.expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut ids = BTreeSet::new();
    for _ in 0..5 {
        let reply = String::from_utf8(tcp_call(port, b"y").await).expect("utf8");
        ids.insert(reply);
        // The balancer counts a connection until both copy directions end,
        // a moment after the client has its reply: let the count settle.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        ids.len(),
        1,
        "all short connections go to the idle backend: {ids:?}"
    );
    held.shutdown().await.expect("shutdown");
    let mut out = String::new();
    held.read_to_string(&mut out).await.expect("read");
    assert!(
        !ids.contains(&out.replace(":x", ":y")),
        "held {out} vs {ids:?}"
    );
    lb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_port_conflict_is_reported_and_first_claimant_serves() {
    let b = [tcp_backend("first").await, tcp_backend("second").await];
    let port = free_port();
    let lb = Lb::start(catalog(
        1,
        vec![
            (
                "a",
                publish(port, PublishProtocol::Tcp),
                vec![up("a", "a1", b[0])],
            ),
            (
                "b",
                publish(port, PublishProtocol::Tcp),
                vec![up("b", "b1", b[1])],
            ),
        ],
    ))
    .await;
    let errors = lb.handle.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains(&format!("tcp port {port} belongs to service a")),
        "{errors:?}"
    );
    assert_eq!(lb.handle.listening(), vec![(port, Protocol::Tcp)]);
    assert_eq!(tcp_call(port, b"z").await, b"first:z");
    lb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_failure_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let b = tcp_backend("b1").await;
    let lb = Lb::single(
        "db",
        publish(port, PublishProtocol::Tcp),
        vec![up("db", "a1", b)],
    )
    .await;
    assert!(lb.handle.listening().is_empty());
    let errors = lb.handle.errors();
    assert!(
        errors
            .iter()
            .any(|e| e.contains(&format!("binding 127.0.0.1:{port}"))),
        "{errors:?}"
    );
    lb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpublished_port_closes_and_in_flight_connection_finishes() {
    let b = tcp_backend("b1").await;
    let port = free_port();
    let lb = Lb::single(
        "db",
        publish(port, PublishProtocol::Tcp),
        vec![up("db", "a1", b)],
    )
    .await;
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(b"before").await.expect("write");
    tokio::time::sleep(Duration::from_millis(50)).await;
    lb.update(catalog(2, vec![])).await;
    assert!(lb.handle.listening().is_empty());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "listener closed"
    );
    s.write_all(b"+after").await.expect("write after close");
    s.shutdown().await.expect("shutdown");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    assert_eq!(out, "b1:before+after");
    lb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_round_robin() {
    let b = [
        http_backend("h1", NO_DELAY).await,
        http_backend("h2", NO_DELAY).await,
        http_backend("h3", NO_DELAY).await,
    ];
    let port = free_port();
    let lb = Lb::single(
        "web",
        publish(port, PublishProtocol::Http),
        vec![
            up("web", "a1", b[0].addr),
            up("web", "a2", b[1].addr),
            up("web", "a3", b[2].addr),
        ],
    )
    .await;
    assert_eq!(lb.handle.listening(), vec![(port, Protocol::Http)]);
    let c = client();
    let mut bodies = Vec::new();
    for _ in 0..6 {
        let (status, body, _) = get(&c, port, "/", None).await;
        assert_eq!(status, 200);
        bodies.push(body);
    }
    assert_eq!(bodies, ["h1", "h2", "h3", "h1", "h2", "h3"]);
    lb.handle.shutdown().await;
}

/// Backend connections are kept alive and pooled per LB worker: client
/// connections one after another, on whichever worker accepted them, reuse
/// at most one backend connection per worker (the fixture runs two).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_backend_connections_are_pooled_per_worker() {
    let b = http_backend("h1", NO_DELAY).await;
    let (lb, port) = Lb::web(b.addr).await;
    for _ in 0..10 {
        let c = client();
        for _ in 0..5 {
            let (status, body, _) = get(&c, port, "/", None).await;
            assert_eq!((status, body.as_str()), (200, "h1"));
        }
    }
    assert_eq!(b.hits(), 50);
    assert!(
        (1..=2).contains(&b.conns()),
        "50 requests over 10 client connections opened {} backend connections",
        b.conns()
    );
    lb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_host_and_path_routing_share_a_port() {
    let a = http_backend("site-a", NO_DELAY).await;
    let w = http_backend("wild", NO_DELAY).await;
    let api = http_backend("api", NO_DELAY).await;
    let port = free_port();
    let mut pa = publish(port, PublishProtocol::Http);
    pa.hosts = vec!["a.example".into()];
    let mut pw = publish(port, PublishProtocol::Http);
    pw.hosts = vec!["*.apps.example".into()];
    let mut papi = publish(port, PublishProtocol::Http);
    papi.path_prefix = Some("/api".into());
    let lb = Lb::start(catalog(
        1,
        vec![
            ("a", pa, vec![up("a", "a1", a.addr)]),
            ("api", papi, vec![up("api", "p1", api.addr)]),
            ("wild", pw, vec![up("wild", "w1", w.addr)]),
        ],
    ))
    .await;
    assert!(lb.handle.errors().is_empty(), "{:?}", lb.handle.errors());
    let c = client();
    assert_eq!(get(&c, port, "/", Some("a.example")).await.1, "site-a");
    assert_eq!(
        get(&c, port, "/api/x", Some("A.Example:80")).await.1,
        "site-a"
    );
    assert_eq!(get(&c, port, "/", Some("x.apps.example")).await.1, "wild");
    let (status, body, headers) = get(&c, port, "/api/v1?q=1", Some("other.example")).await;
    assert_eq!((status, body.as_str()), (200, "api"));
    assert_eq!(headers["x-echo-path"], "/api/v1?q=1");
    let (status, _, _) = get(&c, port, "/apix", Some("other.example")).await;
    assert_eq!(status, 404);
    assert_eq!(get(&c, port, "/", Some("apps.example")).await.0, 404);
    lb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_forwarded_headers() {
    let b = http_backend("h1", NO_DELAY).await;
    let (lb, port) = Lb::web(b.addr).await;
    let c = client();
    let resp = c
        .get(format!("http://127.0.0.1:{port}/p"))
        .header("host", "shop.example")
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .expect("request");
    let h = resp.headers();
    assert_eq!(h["x-echo-xff"], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-echo-proto"], "http");
    assert_eq!(h["x-echo-fhost"], "shop.example");
    assert_eq!(h["x-echo-host"], "shop.example");
    let (_, _, h) = get(&c, port, "/", None).await;
    assert_eq!(h["x-echo-xff"], "127.0.0.1");

    // Absolute-form, as a client configured with a proxy sends it: the
    // backend gets origin-form and the authority as Host.
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(b"GET http://abs.example/q?x=1 HTTP/1.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.expect("read");
    let resp = String::from_utf8_lossy(&resp).to_ascii_lowercase();
    assert!(resp.starts_with("http/1.1 200"), "{resp}");
    assert!(resp.contains("x-echo-path: /q?x=1\r\n"), "{resp}");
    assert!(resp.contains("x-echo-host: abs.example\r\n"), "{resp}");
    lb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_retries_another_instance_when_connect_is_refused() {
    let good = http_backend("good", NO_DELAY).await;
    let port = free_port();
    let lb = Lb::single(
        "web",
        publish(port, PublishProtocol::Http),
        vec![
            up("web", "dead", refused_addr()),
            up("web", "good", good.addr),
        ],
    )
    .await;
    let c = client();
    for _ in 0..6 {
        let (status, body, _) = get(&c, port, "/", None).await;
        assert_eq!((status, body.as_str()), (200, "good"));
    }
    assert_eq!(good.hits(), 6);
    lb.handle.shutdown().await;
}

/// A copy that starts listening moments after the balancer first tried it
/// (it had just started, or a burst filled its accept queue) still gets the
/// request: with no other instance, the same one is tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_tries_its_only_instance_again_when_connect_is_refused() {
    // Bound but not listening: connecting is refused until `listen`.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let port = free_port();
    let lb = Lb::single(
        "web",
        publish(port, PublishProtocol::Http),
        vec![up("web", "late", addr)],
    )
    .await;
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(15)).await;
        let l = socket.listen(16).unwrap();
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = s.read(&mut buf).await.unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nlate")
            .await
            .unwrap();
    });
    let (status, body, _) = get(&client(), port, "/", None).await;
    assert_eq!((status, body.as_str()), (200, "late"));
    late.await.unwrap();
    lb.handle.shutdown().await;
}

/// An HTTP port balancing over an instance that closes every connection
/// unanswered and one that answers "good"; the first's accept counter.
async fn broken_beside_good() -> (Lb, u16, HttpBackend, Arc<AtomicUsize>) {
    let good = http_backend("good", NO_DELAY).await;
    let (broken, accepted) = broken_backend().await;
    let port = free_port();
    let lb = Lb::single(
        "web",
        publish(port, PublishProtocol::Http),
        vec![up("web", "broken", broken), up("web", "good", good.addr)],
    )
    .await;
    (lb, port, good, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_idempotent_request_goes_elsewhere_when_the_backend_closes_unanswered() {
    let (lb, port, good, accepted) = broken_beside_good().await;
    let c = client();
    for i in 0..4 {
        let (status, body, _) = get(&c, port, "/", None).await;
        assert_eq!((status, body.as_str()), (200, "good"), "request {i}");
    }
    assert_eq!(good.hits(), 4);
    assert!(
        accepted.load(Ordering::SeqCst) >= 1,
        "the broken instance was tried"
    );
    lb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_request_with_a_body_is_not_replayed_after_the_backend_accepted() {
    let (lb, port, good, accepted) = broken_beside_good().await;
    let c = client();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let resp = c
            .post(format!("http://127.0.0.1:{port}/"))
            .body("order=1")
            .send()
            .await
            .expect("request");
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [502, 200, 502, 200]);
    assert_eq!(good.hits(), 2, "the failed requests were not replayed");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    lb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_unhealthy_instance_gets_no_traffic() {
    let ok = http_backend("ok", NO_DELAY).await;
    let sick = http_backend("sick", NO_DELAY).await;
    let port = free_port();
    let p = publish(port, PublishProtocol::Http);
    let lb = Lb::single(
        "web",
        p.clone(),
        vec![
            up("web", "ok", ok.addr),
            inst("web", "sick", sick.addr, HealthStatus::Critical),
        ],
    )
    .await;
    let c = client();
    for _ in 0..6 {
        assert_eq!(get(&c, port, "/", None).await.1, "ok");
    }
    assert_eq!(sick.hits(), 0);
    lb.update(catalog(
        2,
        vec![(
            "web",
            p,
            vec![
                inst("web", "ok", ok.addr, HealthStatus::Critical),
                inst("web", "sick", sick.addr, HealthStatus::Pending),
            ],
        )],
    ))
    .await;
    let (status, body, _) = get(&c, port, "/", None).await;
    assert_eq!((status, body.as_str()), (503, "no serving instance\n"));
    assert_eq!(sick.hits(), 0);
    lb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_update_adds_a_backend() {
    let b1 = http_backend("h1", NO_DELAY).await;
    let b2 = http_backend("h2", NO_DELAY).await;
    let port = free_port();
    let p = publish(port, PublishProtocol::Http);
    let lb = Lb::start(catalog(
        1,
        vec![("web", p.clone(), vec![up("web", "a1", b1.addr)])],
    ))
    .await;
    let c = client();
    for _ in 0..3 {
        assert_eq!(get(&c, port, "/", None).await.1, "h1");
    }
    lb.update(catalog(
        2,
        vec![(
            "web",
            p,
            vec![up("web", "a1", b1.addr), up("web", "a2", b2.addr)],
        )],
    ))
    .await;
    let mut seen = BTreeSet::new();
    for _ in 0..4 {
        seen.insert(get(&c, port, "/", None).await.1);
    }
    assert_eq!(seen, BTreeSet::from(["h1".to_string(), "h2".to_string()]));
    lb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_instance_under_load_fails_no_request() {
    let b1 = http_backend("h1", Duration::from_millis(2)).await;
    let b2 = http_backend("h2", Duration::from_millis(2)).await;
    let port = free_port();
    let p = publish(port, PublishProtocol::Http);
    let lb = Lb::single(
        "web",
        p.clone(),
        vec![up("web", "a1", b1.addr), up("web", "a2", b2.addr)],
    )
    .await;
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut loops = Vec::new();
    for _ in 0..4 {
        let (failures, done) = (failures.clone(), done.clone());
        loops.push(tokio::spawn(async move {
            let c = client();
            for _ in 0..150 {
                let ok = match c.get(format!("http://127.0.0.1:{port}/")).send().await {
                    Ok(r) => r.status() == 200 && r.text().await.is_ok(),
                    Err(_) => false,
                };
                if !ok {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    while done.load(Ordering::SeqCst) < 150 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    lb.update(catalog(2, vec![("web", p, vec![up("web", "a1", b1.addr)])]))
        .await;
    let removed_at = b2.hits();
    for l in loops {
        l.await.expect("load loop");
    }
    assert_eq!(failures.load(Ordering::SeqCst), 0);
    assert_eq!(done.load(Ordering::SeqCst), 600);
    assert!(
        b2.hits() <= removed_at + 4,
        "at most the requests in flight reach the removed instance"
    );
    assert!(b1.hits() > 300);
    lb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_p2c_prefers_the_faster_backend() {
    let slow = http_backend("slow", Duration::from_millis(40)).await;
    let fast = http_backend("fast", NO_DELAY).await;
    let port = free_port();
    let mut p = publish(port, PublishProtocol::Http);
    p.balance = Balance::P2c;
    let lb = Lb::single(
        "web",
        p,
        vec![up("web", "s", slow.addr), up("web", "f", fast.addr)],
    )
    .await;
    let c = client();
    for _ in 0..30 {
        assert_eq!(get(&c, port, "/", None).await.0, 200);
    }
    assert!(slow.hits() <= 2, "slow got {} of 30", slow.hits());
    assert!(fast.hits() >= 28);
    lb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_least_conn_avoids_the_busy_backend() {
    let slow = http_backend("slow", Duration::from_millis(500)).await;
    let quick = http_backend("quick", NO_DELAY).await;
    let port = free_port();
    let mut p = publish(port, PublishProtocol::Http);
    p.balance = Balance::LeastConn;
    let lb = Lb::single(
        "web",
        p,
        vec![up("web", "s", slow.addr), up("web", "q", quick.addr)],
    )
    .await;
    let c = client();
    // Round robin would send every other request to the slow one.
    let mut pending = Vec::new();
    while slow.hits() == 0 {
        let c2 = c.clone();
        pending.push(tokio::spawn(
            async move { get(&c2, port, "/", None).await.1 },
        ));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = quick.hits();
    for _ in 0..5 {
        assert_eq!(get(&c, port, "/", None).await.1, "quick");
    }
    assert_eq!(quick.hits(), before + 5);
    for p in pending {
        p.await.expect("request");
    }
    lb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_upgrade_is_tunnelled() {
    let b = http_backend("ws", NO_DELAY).await;
    let port = free_port();
    let lb = Lb::single(
        "ws",
        publish(port, PublishProtocol::Http),
        vec![up("ws", "a1", b.addr)],
    )
    .await;
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(
        b"GET /chat HTTP/1.1\r\nHost: ws.example\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await
    .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.expect("read head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    s.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.expect("echo");
    assert_eq!(&buf, b"ping");
    lb.handle.shutdown().await;
}

/// Answers one request per connection, then closes it a moment later:
/// announcing keep-alive, the proxy's pooled connection is dead when next
/// used; announcing close, the proxy must not pool it.
async fn one_shot_backend(body: Vec<u8>, announce: &'static str) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = l.local_addr().expect("addr");
    let body = Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: {announce}\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
                let _ = s.write_all(&body).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_backend_closing_pooled_connections_fails_no_request() {
    let backend = one_shot_backend(b"fine".to_vec(), "keep-alive").await;
    let (lb, port) = Lb::web(backend).await;
    let c = client();
    for i in 0..8 {
        let (status, body, _) = get(&c, port, "/", None).await;
        assert_eq!((status, body.as_str()), (200, "fine"), "request {i}");
        // Let the backend close the connection the proxy just pooled.
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    lb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_large_response_body_streams_through() {
    let body: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    let backend = one_shot_backend(body.clone(), "close").await;
    let (lb, port) = Lb::web(backend).await;
    let c = client();
    for i in 0..3 {
        let resp = c
            .get(format!("http://127.0.0.1:{port}/big"))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 200, "request {i}");
        let got = resp.bytes().await.expect("body");
        assert!(got == body, "body of {} bytes differs", got.len());
    }
    lb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_a_ports_cap_wait_for_a_free_slot() {
    let backend = http_backend("ok", NO_DELAY).await;
    let port = free_port();
    let lb = Lb::start_capped(
        catalog(
            1,
            vec![(
                "web",
                publish(port, PublishProtocol::Http),
                vec![up("web", "a1", backend.addr)],
            )],
        ),
        2,
    )
    .await;
    let addr = format!("127.0.0.1:{port}");
    let idle1 = TcpStream::connect(&addr).await.expect("connect");
    let _idle2 = TcpStream::connect(&addr).await.expect("connect");
    let mut third = TcpStream::connect(&addr).await.expect("connect");
    third
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    let waiting =
        tokio::time::timeout(Duration::from_millis(500), third.read_to_end(&mut out)).await;
    assert!(waiting.is_err(), "served past the cap: {out:?}");
    drop(idle1);
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut out))
        .await
        .expect("served once a slot is free")
        .expect("read");
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    lb.handle.shutdown().await;
}
