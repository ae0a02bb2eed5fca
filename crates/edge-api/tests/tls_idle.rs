//! The TLS listener's idle deadline on real loopback sockets: a client with
//! a node's certificate keeps its connection between heartbeats, an
//! anonymous one is still cut at the header deadline; tokio's paused clock
//! stands in for the waits.

use axum::Router;
use axum::routing::get;
use edge_api::listen::Limits;
use edge_api::tls::{self, Credentials};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn pki() -> Pki {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "test CA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = p.self_signed(&key).unwrap();
    let ca_pem = ca.pem();
    Pki {
        issuer: Issuer::from_ca_cert_pem(&ca_pem, key).unwrap(),
        ca_pem,
    }
}

/// A certificate and key for `csr`'s subject, signed by the CA.
fn sign(pki: &Pki, csr_pem: &str) -> String {
    let csr = CertificateSigningRequestParams::from_pem(csr_pem).unwrap();
    csr.signed_by(&pki.issuer).unwrap().pem()
}

async fn start(pki: &Pki) -> SocketAddr {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, tls::SERVER_ORG);
    p.distinguished_name = dn;
    let cert = p.signed_by(&key, &pki.issuer).unwrap().pem();
    let creds = Credentials::from_pem(&cert, &key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in tls::certs_from_pem(&pki.ca_pem).unwrap() {
        roots.add(c).unwrap();
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), tls::provider())
            .allow_unauthenticated()
            .build()
            .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(creds);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/", get(|| async { "ok" }));
    tokio::spawn(tls::serve(
        listener,
        Limits::default(),
        Arc::new(config),
        Arc::new(|_| true),
        app,
        std::future::pending(),
    ));
    addr
}

async fn connect(pki: &Pki, addr: SocketAddr, node: Option<&str>) -> TlsStream<TcpStream> {
    let ca = tls::ClusterCa::known(&pki.ca_pem, None).unwrap();
    let creds = node.map(|id| {
        let csr = tls::node_csr(id).unwrap();
        Credentials::from_pem(&sign(pki, &csr.csr_pem), &csr.key_pem).unwrap()
    });
    let config = tls::client_config(ca, creds).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// Sends one request and reads its answer; `None` once the server has
/// closed the connection.
async fn request(s: &mut TlsStream<TcpStream>) -> Option<String> {
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut buf = [0u8; 512];
    match s.read(&mut buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
    }
}

#[tokio::test(start_paused = true)]
async fn a_node_keeps_its_connection_between_heartbeats_an_anonymous_client_does_not() {
    let pki = pki();
    let addr = start(&pki).await;
    let beat = Duration::from_secs(20);
    assert!(beat > Limits::default().header_timeout);
    assert!(beat < Limits::default().node_idle_timeout);

    let mut node = connect(&pki, addr, Some("n1")).await;
    for i in 0..3 {
        let answer = request(&mut node)
            .await
            .expect("node connection still open");
        assert!(answer.starts_with("HTTP/1.1 200"), "beat {i}: {answer}");
        tokio::time::sleep(beat).await;
    }

    let mut user = connect(&pki, addr, None).await;
    let answer = request(&mut user).await.expect("first request answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    tokio::time::sleep(beat).await;
    assert_eq!(
        request(&mut user).await,
        None,
        "an anonymous connection idle past the header deadline is closed"
    );

    // A node that goes quiet longer than the node deadline is let go too.
    tokio::time::sleep(Limits::default().node_idle_timeout).await;
    assert_eq!(request(&mut node).await, None);
}
