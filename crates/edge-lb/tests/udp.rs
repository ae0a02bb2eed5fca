//! UDP through the load balancer over real sockets on 127.0.0.1: each
//! client keeps to one instance while flows spread over them, answers come
//! from the published port, a port carries TCP and UDP of two services, and
//! an unpublished port is released.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use edge_lb::Protocol;
use edge_spec::PublishProtocol;
use tokio::net::UdpSocket;

/// A UDP backend answering `id:payload` to whoever sent it.
async fn udp_backend(id: &'static str) -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = s.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            let mut out = format!("{id}:").into_bytes();
            out.extend_from_slice(&buf[..n]);
            let _ = s.send_to(&out, from).await;
        }
    });
    addr
}

/// A port free for UDP and TCP alike.
fn free_udp_port() -> u16 {
    loop {
        let port = free_port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One datagram from `client` to the published port, and the answer with
/// where it came from.
async fn ask(client: &UdpSocket, port: u16, payload: &[u8]) -> (String, SocketAddr) {
    client
        .send_to(payload, ("127.0.0.1", port))
        .await
        .expect("send");
    let mut buf = vec![0u8; 65_535];
    let (n, from) = tokio::time::timeout(Duration::from_secs(3), client.recv_from(&mut buf))
        .await
        .expect("an answer in time")
        .expect("recv");
    (String::from_utf8_lossy(&buf[..n]).to_string(), from)
}

async fn client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_keeps_to_one_instance_and_clients_spread() {
    let b = [udp_backend("u1").await, udp_backend("u2").await];
    let port = free_udp_port();
    let lb = Lb::single(
        "dns",
        publish(port, PublishProtocol::Udp),
        vec![up("dns", "a1", b[0]), up("dns", "a2", b[1])],
    )
    .await;
    assert_eq!(lb.handle.listening(), vec![(port, Protocol::Udp)]);
    assert!(lb.handle.errors().is_empty(), "{:?}", lb.handle.errors());
    let mut seen = BTreeSet::new();
    for _ in 0..4 {
        let c = client().await;
        let (first, from) = ask(&c, port, b"q1").await;
        assert_eq!(from.port(), port, "answers come from the published port");
        let backend = first.split(':').next().unwrap().to_string();
        for i in 0..3 {
            let (again, _) = ask(&c, port, format!("q{i}").as_bytes()).await;
            assert_eq!(again, format!("{backend}:q{i}"), "one flow, one instance");
        }
        seen.insert(backend);
    }
    assert_eq!(seen, BTreeSet::from(["u1".to_string(), "u2".to_string()]));
    // A large datagram goes through whole.
    let big = vec![b'x'; 60_000];
    let (answer, _) = ask(&client().await, port, &big).await;
    assert_eq!(answer.len(), 60_000 + 3);
    lb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_port_carries_tcp_and_udp_of_two_services() {
    let t = tcp_backend("t1").await;
    let u = udp_backend("u1").await;
    let other = udp_backend("u2").await;
    let port = free_udp_port();
    let lb = Lb::start(catalog(
        1,
        vec![
            (
                "dns-tcp",
                publish(port, PublishProtocol::Tcp),
                vec![up("dns-tcp", "a1", t)],
            ),
            (
                "dns",
                publish(port, PublishProtocol::Udp),
                vec![up("dns", "a2", u)],
            ),
            (
                "late",
                publish(port, PublishProtocol::Udp),
                vec![up("late", "a3", other)],
            ),
        ],
    ))
    .await;
    assert_eq!(
        lb.handle.listening(),
        vec![(port, Protocol::Tcp), (port, Protocol::Udp)]
    );
    assert_eq!(
        lb.handle.errors(),
        vec![format!(
            "udp port {port} belongs to service dns; service late ignored"
        )]
    );
    assert_eq!(tcp_call(port, b"a").await, b"t1:a");
    assert_eq!(ask(&client().await, port, b"b").await.0, "u1:b");

    // Unpublished, the UDP port is released; TCP stays.
    lb.update(catalog(
        2,
        vec![(
            "dns-tcp",
            publish(port, PublishProtocol::Tcp),
            vec![up("dns-tcp", "a1", t)],
        )],
    ))
    .await;
    assert_eq!(lb.handle.listening(), vec![(port, Protocol::Tcp)]);
    assert!(std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok());
    lb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_instances_drops_datagrams_until_one_serves() {
    let port = free_udp_port();
    let lb = Lb::single("dns", publish(port, PublishProtocol::Udp), vec![]).await;
    let c = client().await;
    c.send_to(b"lost", ("127.0.0.1", port)).await.expect("send");
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), c.recv_from(&mut buf))
            .await
            .is_err(),
        "no instance, no answer"
    );
    let b = udp_backend("u1").await;
    lb.update(catalog(
        2,
        vec![(
            "dns",
            publish(port, PublishProtocol::Udp),
            vec![up("dns", "a1", b)],
        )],
    ))
    .await;
    assert_eq!(ask(&c, port, b"now").await.0, "u1:now");
    lb.handle.shutdown().await;
}
