//! TLS termination with certificates generated per test: HTTP (with SNI
//! choosing between two services' certificates on one port), raw TCP, and
//! unreadable certificate files.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use edge_lb::Protocol;
use edge_spec::PublishProtocol;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

struct Cert {
    der: CertificateDer<'static>,
    cert: PathBuf,
    key: PathBuf,
}

fn make_cert(dir: &Path, name: &str) -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("generate cert");
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    Cert {
        der: ck.cert.der().clone(),
        cert,
        key,
    }
}

fn connector(trusted: &CertificateDer<'static>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).expect("add root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// One HTTP/1.1 request over TLS with SNI `name`; returns the raw response.
async fn https_get(port: u16, name: &str, trusted: &CertificateDer<'static>) -> String {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let server = ServerName::try_from(name.to_string()).expect("server name");
    let mut tls = connector(trusted)
        .connect(server, tcp)
        .await
        .expect("tls handshake");
    tls.write_all(
        format!("GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut out = String::new();
    tls.read_to_string(&mut out).await.expect("read");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_terminates_and_picks_certificate_by_sni() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = make_cert(dir.path(), "a.example");
    let cb = make_cert(dir.path(), "b.example");
    let ba = http_backend("backend-a", Duration::ZERO).await;
    let bb = http_backend("backend-b", Duration::ZERO).await;
    let port = free_port();
    let mut pa = publish(port, PublishProtocol::Http);
    pa.hosts = vec!["a.example".into()];
    pa.tls = tls(&ca.cert, &ca.key);
    let mut pb = publish(port, PublishProtocol::Http);
    pb.hosts = vec!["b.example".into()];
    pb.tls = tls(&cb.cert, &cb.key);
    let lb = Lb::start(catalog(
        1,
        vec![
            ("a", pa, vec![up("a", "a1", ba.addr)]),
            ("b", pb, vec![up("b", "b1", bb.addr)]),
        ],
    ))
    .await;
    assert!(lb.handle.errors().is_empty(), "{:?}", lb.handle.errors());
    let ra = https_get(port, "a.example", &ca.der).await;
    assert!(ra.starts_with("HTTP/1.1 200"), "{ra}");
    assert!(ra.ends_with("backend-a"), "{ra}");
    assert!(
        ra.to_ascii_lowercase().contains("x-echo-proto: https"),
        "{ra}"
    );
    let rb = https_get(port, "b.example", &cb.der).await;
    assert!(rb.ends_with("backend-b"), "{rb}");
    lb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_over_tcp_reaches_plain_backend() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = make_cert(dir.path(), "db.example");
    let b = tcp_backend("db").await;
    let port = free_port();
    let mut p = publish(port, PublishProtocol::Tcp);
    p.tls = tls(&c.cert, &c.key);
    let lb = Lb::single("db", p, vec![up("db", "a1", b)]).await;
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let server = ServerName::try_from("db.example").expect("server name");
    let mut s = connector(&c.der)
        .connect(server, tcp)
        .await
        .expect("handshake");
    s.write_all(b"secret").await.expect("write");
    s.shutdown().await.expect("close_notify");
    let mut out = Vec::new();
    // The backend answers after EOF; the LB may then close without
    // close_notify, which rustls reports once the data is read.
    let _ = s.read_to_end(&mut out).await;
    assert_eq!(out, b"db:secret");
    lb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificate_is_reported_and_port_not_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = make_cert(dir.path(), "ok.example");
    let other = make_cert(dir.path(), "other.example");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").expect("write");
    let b = http_backend("x", Duration::ZERO).await;
    let (p1, p2, p3, p4) = (free_port(), free_port(), free_port(), free_port());
    let mut missing = publish(p1, PublishProtocol::Http);
    missing.tls = tls(&dir.path().join("nope.crt"), &good.key);
    let mut empty = publish(p2, PublishProtocol::Http);
    empty.tls = tls(&garbage, &good.key);
    let mut mismatched = publish(p3, PublishProtocol::Http);
    mismatched.tls = tls(&good.cert, &other.key);
    let mut fine = publish(p4, PublishProtocol::Http);
    fine.tls = tls(&good.cert, &good.key);
    let lb = Lb::start(catalog(
        1,
        vec![
            ("a", missing, vec![up("a", "1", b.addr)]),
            ("b", empty, vec![up("b", "1", b.addr)]),
            ("c", mismatched, vec![up("c", "1", b.addr)]),
            ("d", fine, vec![up("d", "1", b.addr)]),
        ],
    ))
    .await;
    let errors = lb.handle.errors();
    assert_eq!(errors.len(), 3, "{errors:?}");
    let has = |port: u16, text: &str| {
        errors
            .iter()
            .any(|e| e.starts_with(&format!("port {port}:")) && e.contains(text))
    };
    assert!(has(p1, "nope.crt"), "{errors:?}");
    assert!(has(p2, "no certificate found"), "{errors:?}");
    assert!(has(p3, "does not match key"), "{errors:?}");
    assert_eq!(lb.handle.listening(), vec![(p4, Protocol::Http)]);
    assert!(TcpStream::connect(("127.0.0.1", p1)).await.is_err());
    assert!(https_get(p4, "ok.example", &good.der).await.ends_with('x'));
    lb.handle.shutdown().await;
}
