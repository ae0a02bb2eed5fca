//! The listener guard on real loopback sockets: header deadlines
//! (slowloris), stalled bodies, body size and the connection cap, with
//! tokio's paused clock standing in for the waits.

use axum::Router;
use axum::routing::{get, post};
use edge_api::listen::{Limits, serve};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn start(limits: Limits) -> SocketAddr {
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/echo", post(|body: axum::body::Bytes| async move { body }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, limits, app, std::future::pending()));
    addr
}

/// Reads until the peer closes; the bytes read.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    out
}

#[tokio::test(start_paused = true)]
async fn a_slow_header_is_cut_at_the_header_timeout() {
    let addr = start(Limits::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 64];
    // Still open just before the deadline, although headers trickle in.
    for _ in 0..9 {
        let r = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await;
        assert!(r.is_err(), "closed early: {r:?}");
        s.write_all(b"X-Slow: 1\r\n").await.unwrap();
    }
    let n = tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut s))
        .await
        .expect("closed after the header timeout");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
        "{waited:?}"
    );
    // hyper answers 408 or just closes; either way no request ran.
    assert!(!String::from_utf8_lossy(&n).contains("200 OK"));
}

#[tokio::test(start_paused = true)]
async fn an_idle_kept_alive_connection_is_closed() {
    let addr = start(Limits::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(30), read_to_close(&mut s))
        .await
        .expect("idle connection closed");
    assert!(started.elapsed() >= Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn a_stalled_body_fails_its_request() {
    let addr = start(Limits::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(60), read_to_close(&mut s))
        .await
        .expect("stalled body ends the request");
    assert!(started.elapsed() >= Duration::from_secs(30));
    let text = String::from_utf8_lossy(&out);
    assert!(!text.contains("200 OK"), "{text}");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_with_or_without_a_length() {
    let addr = start(Limits {
        max_body_bytes: 1000,
        ..Limits::default()
    })
    .await;
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/echo");
    let r = http.post(&url).body(vec![b'x'; 1001]).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v["error"], "request body too large: the limit is 1000 bytes",
        "{v}"
    );
    // Chunked: no length to check up front, the body is cut while read.
    let chunks = futures_util::stream::iter(
        (0..20).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'y'; 100]))),
    );
    let r = http
        .post(&url)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = http.post(&url).body(vec![b'x'; 1000]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 1000);
}

#[tokio::test]
async fn connections_past_the_cap_wait_for_a_free_slot() {
    let addr = start(Limits {
        max_connections: 2,
        ..Limits::default()
    })
    .await;
    let idle1 = TcpStream::connect(addr).await.unwrap();
    let _idle2 = TcpStream::connect(addr).await.unwrap();
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let waiting = tokio::time::timeout(Duration::from_millis(300), read_to_close(&mut third)).await;
    assert!(waiting.is_err(), "served past the cap");
    drop(idle1);
    let out = tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut third))
        .await
        .expect("served once a slot is free");
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
}
