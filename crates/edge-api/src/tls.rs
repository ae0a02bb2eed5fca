//! Transport security shared by the CLI, the agent, the simulator and the
//! server: the join token with its CA pin, certificate identities, node
//! certificate requests, swappable credentials and the verifier that trusts
//! the cluster CA (or, before it is known, only the CA the join token pins).

use crate::error::ApiError;
use crate::listen::{Acceptor, GuardedBody, Limits, serve_connection};
use bytes::Bytes;
use hyper::body::Body;
use hyper::{Request, Response};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::Digest;
use std::convert::Infallible;
use std::sync::{Arc, RwLock};

/// What a join token starts with when it carries the CA fingerprint (k3s's
/// format: `K10<sha256 of the CA certificate, hex>::<secret>`).
pub const TOKEN_PREFIX: &str = "K10";
/// Organization of every node certificate; the common name is the node id.
pub const NODE_ORG: &str = "edge-node";
/// Organization and common name of the server's certificate.
pub const SERVER_ORG: &str = "edge-server";
/// A node certificate names its node `<id>.node.edge` (a DNS SAN), so the
/// server reaching an agent checks it talks to that node.
pub const NODE_DNS_SUFFIX: &str = "node.edge";
/// How far back the server dates a certificate's start, so a node whose
/// clock runs behind can use it at once; not part of its useful lifetime.
pub const CLOCK_SKEW_SECS: i64 = 300;

/// When a certificate valid `(not_before, not_after)` should be renewed:
/// after 2/3 of its useful lifetime.
pub fn renew_at((not_before, not_after): (i64, i64)) -> i64 {
    let life = (not_after - not_before - CLOCK_SKEW_SECS).max(0);
    not_after - life / 3
}

/// Header a node's bootstrap request carries its join token secret in.
pub use crate::TOKEN_HEADER;

fn tls_err(reason: impl Into<String>) -> ApiError {
    ApiError::Tls {
        reason: reason.into(),
    }
}

/// The one crypto provider edge uses (ring), named explicitly so no process
/// default has to be installed.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A join token: the secret, and the fingerprint of the CA it pins.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Lowercase hex SHA-256 of the CA certificate's DER.
    pub ca_pin: Option<String>,
    pub secret: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken")
            .field("ca_pin", &self.ca_pin)
            .field("secret", &"<hidden>")
            .finish()
    }
}

impl JoinToken {
    /// `K10<64 hex>::<secret>`, or a bare secret (no pin: plain HTTP only).
    pub fn parse(text: &str) -> Result<JoinToken, ApiError> {
        let text = text.trim();
        let bad = |reason: &str| ApiError::Token {
            reason: reason.to_string(),
        };
        let Some(rest) = text.strip_prefix(TOKEN_PREFIX) else {
            if text.is_empty() || text.contains("::") {
                return Err(bad("expected K10<sha256 of the CA>::<secret>"));
            }
            return Ok(JoinToken {
                ca_pin: None,
                secret: text.to_string(),
            });
        };
        let Some((pin, secret)) = rest.split_once("::") else {
            return Err(bad("no \"::\" between the CA fingerprint and the secret"));
        };
        if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the CA fingerprint must be 64 hex digits (SHA-256)"));
        }
        if secret.is_empty() || secret.contains("::") {
            return Err(bad("the secret after \"::\" is empty or malformed"));
        }
        Ok(JoinToken {
            ca_pin: Some(pin.to_ascii_lowercase()),
            secret: secret.to_string(),
        })
    }

    pub fn format(ca_pin: &str, secret: &str) -> String {
        format!("{TOKEN_PREFIX}{ca_pin}::{secret}")
    }
}

/// Whether `given` is the join token secret `secret`. Digests are compared,
/// so neither the length nor a common prefix shows in the time it takes.
pub fn secret_matches(given: &str, secret: &str) -> bool {
    let (a, b) = (
        sha2::Sha256::digest(given.as_bytes()),
        sha2::Sha256::digest(secret.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Lowercase hex SHA-256 of a certificate's DER: what a join token pins.
pub fn fingerprint(der: &[u8]) -> String {
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, ApiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(format!("bad certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(tls_err("no certificate in PEM"));
    }
    Ok(certs)
}

pub fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, ApiError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| tls_err(format!("bad private key PEM: {e}")))
}

/// Who an edge-issued certificate speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Node(String),
    Server,
}

/// The identity in a certificate's subject (`O=edge-node, CN=<node id>` or
/// `O=edge-server`); `None` for any other certificate.
pub fn identity(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let org = subject.iter_organization().next()?.as_str().ok()?;
    let cn = subject.iter_common_name().next()?.as_str().ok()?;
    match org {
        NODE_ORG if !cn.is_empty() => Some(Identity::Node(cn.to_string())),
        SERVER_ORG => Some(Identity::Server),
        _ => None,
    }
}

/// A certificate's validity as unix seconds `(not_before, not_after)`.
pub fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let v = cert.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// Whether `id` can be a node certificate's common name and DNS label.
pub fn valid_node_id(id: &str) -> bool {
    (1..=63).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

/// A fresh key and the signing request for node `node_id`'s certificate.
pub struct NodeCsr {
    pub key_pem: String,
    pub csr_pem: String,
}

pub fn node_csr(node_id: &str) -> Result<NodeCsr, ApiError> {
    let key = rcgen::KeyPair::generate().map_err(|e| tls_err(format!("generate key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| tls_err(format!("csr: {e}")))?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, NODE_ORG);
    dn.push(rcgen::DnType::CommonName, node_id);
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|e| tls_err(format!("csr: {e}")))?;
    Ok(NodeCsr {
        key_pem: key.serialize_pem(),
        csr_pem: csr,
    })
}

/// A certificate and key that can be replaced while connections use them:
/// new handshakes (client or server side) take the newest.
pub struct Credentials {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("set", &self.is_set())
            .finish()
    }
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials {
            current: RwLock::new(None),
        }
    }
}

impl Credentials {
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Arc<Credentials>, ApiError> {
        let c = Arc::new(Credentials::default());
        c.set(cert_pem, key_pem)?;
        Ok(c)
    }

    pub fn set(&self, cert_pem: &str, key_pem: &str) -> Result<(), ApiError> {
        let certs = certs_from_pem(cert_pem)?;
        let key = provider()
            .key_provider
            .load_private_key(key_from_pem(key_pem)?)
            .map_err(|e| tls_err(format!("unusable private key: {e}")))?;
        let ck = CertifiedKey::new(certs, key);
        // A key that is not the certificate's would fail every handshake.
        // (A provider that cannot tell a key's public half says Unknown.)
        if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
            ck.keys_match()
        {
            return Err(tls_err(
                "the private key does not belong to the certificate".to_string(),
            ));
        }
        let ck = Arc::new(ck);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(ck);
        Ok(())
    }

    pub fn is_set(&self) -> bool {
        self.current().is_some()
    }

    fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The leaf certificate's DER, when one is set.
    pub fn leaf(&self) -> Option<CertificateDer<'static>> {
        self.current().and_then(|c| c.cert.first().cloned())
    }
}

impl rustls::client::ResolvesClientCert for Credentials {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        self.is_set()
    }
}

impl rustls::server::ResolvesServerCert for Credentials {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

/// Trusts the cluster CA once it is known. Before that (an agent's first
/// contact) it accepts only a server whose chain holds the CA the join token
/// pins, and from then on that CA: no trust on first use.
pub struct ClusterCa {
    pin: Option<String>,
    provider: Arc<CryptoProvider>,
    known: RwLock<Option<(CertificateDer<'static>, Arc<WebPkiServerVerifier>)>>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").field("pin", &self.pin).finish()
    }
}

impl ClusterCa {
    /// Trusts only the CA whose fingerprint is `pin`.
    pub fn pinned(pin: &str) -> Arc<ClusterCa> {
        Arc::new(ClusterCa {
            pin: Some(pin.to_ascii_lowercase()),
            provider: provider(),
            known: RwLock::new(None),
        })
    }

    /// Trusts `ca_pem`; with a pin, that CA must be the pinned one.
    pub fn known(ca_pem: &str, pin: Option<&str>) -> Result<Arc<ClusterCa>, ApiError> {
        let der = certs_from_pem(ca_pem)?.swap_remove(0);
        if let Some(pin) = pin {
            let got = fingerprint(&der);
            if !got.eq_ignore_ascii_case(pin) {
                return Err(tls_err(format!(
                    "cluster CA pin did not match: the saved CA has fingerprint {got}, the join token pins {pin}"
                )));
            }
        }
        let ca = Arc::new(ClusterCa {
            pin: pin.map(str::to_ascii_lowercase),
            provider: provider(),
            known: RwLock::new(None),
        });
        ca.learn(der).map_err(|e| tls_err(e.to_string()))?;
        Ok(ca)
    }

    fn learn(
        &self,
        der: CertificateDer<'static>,
    ) -> Result<Arc<WebPkiServerVerifier>, rustls::Error> {
        let mut roots = RootCertStore::empty();
        roots.add(der.clone())?;
        let v = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(format!("cluster CA: {e}")))?;
        *self.known.write().unwrap_or_else(|e| e.into_inner()) = Some((der, v.clone()));
        Ok(v)
    }

    /// The CA certificate, once known, as PEM.
    pub fn ca_pem(&self) -> Option<String> {
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        known.as_ref().map(|(der, _)| der_to_pem(der))
    }

    fn verifier(&self) -> Option<Arc<WebPkiServerVerifier>> {
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        known.as_ref().map(|(_, v)| v.clone())
    }
}

pub fn der_to_pem(der: &[u8]) -> String {
    use std::fmt::Write;
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len() * 4 / 3 + 4);
    for chunk in der.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                b64.push(B64[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        let _ = writeln!(out, "{}", String::from_utf8_lossy(line));
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

impl ServerCertVerifier for ClusterCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let v = match self.verifier() {
            Some(v) => v,
            None => {
                let Some(pin) = &self.pin else {
                    return Err(rustls::Error::General(
                        "no cluster CA to check the server against".to_string(),
                    ));
                };
                let Some(ca) = intermediates.iter().find(|c| fingerprint(c) == *pin) else {
                    let got: Vec<String> = intermediates.iter().map(|c| fingerprint(c)).collect();
                    return Err(rustls::Error::General(format!(
                        "cluster CA pin did not match: the server presented CA fingerprint(s) [{}], the join token pins {pin}",
                        got.join(", ")
                    )));
                };
                self.learn(ca.clone().into_owned())?
            }
        };
        v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The ALPN protocol the cluster's own clients (agents, the server calling
/// agents, the simulator) offer: the server answers it with the cluster
/// certificate even when users get one of their own (`--tls-cert`). The
/// server negotiates no ALPN, so offering it changes nothing else.
pub const CLUSTER_ALPN: &[u8] = b"edge-cluster";

/// A client configuration that trusts `ca` and, when given, authenticates
/// with `creds`; it asks for the cluster certificate ([`CLUSTER_ALPN`]).
pub fn client_config(
    ca: Arc<ClusterCa>,
    creds: Option<Arc<Credentials>>,
) -> Result<rustls::ClientConfig, ApiError> {
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(ca);
    let mut cfg = match creds {
        Some(c) => b.with_client_cert_resolver(c),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![CLUSTER_ALPN.to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The server certificate an API listener presents: the cluster's to the
/// cluster's own clients, and to everyone when the operator gave no
/// certificate of their own; otherwise the operator's to users.
#[derive(Debug)]
pub struct ApiCertificates {
    pub cluster: Arc<Credentials>,
    pub user: Option<Arc<Credentials>>,
}

impl rustls::server::ResolvesServerCert for ApiCertificates {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let cluster_client = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == CLUSTER_ALPN));
        match &self.user {
            Some(user) if !cluster_client => user.current(),
            _ => self.cluster.current(),
        }
    }
}

/// Who the client of a TLS connection proved to be with its certificate
/// (`None` without one); every request of the connection carries it as an
/// extension.
#[derive(Debug, Clone)]
pub struct Peer(pub Option<Identity>);

/// Decides whether a connection may go on once its client is known (a
/// revoked node, a node where only the server may call, is dropped).
pub type Admit = Arc<dyn Fn(Option<&Identity>) -> bool + Send + Sync>;

/// [`crate::listen::serve`] over TLS: the same connection cap, deadlines
/// and body limits, with each handshake on its connection's own task (a
/// slow or silent client holds up nobody) and due within the listener's
/// header deadline. A client `admit` refuses is dropped after the
/// handshake; the others' requests carry their [`Peer`].
pub async fn serve<S, B>(
    listener: tokio::net::TcpListener,
    limits: Limits,
    config: Arc<rustls::ServerConfig>,
    admit: Admit,
    service: S,
    shutdown: impl Future<Output = ()>,
) where
    S: tower::Service<Request<GuardedBody>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let acceptor = Acceptor::new(listener, &limits);
    let limits = Arc::new(limits);
    let tls = tokio_rustls::TlsAcceptor::from(config);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            conn = acceptor.accept() => {
                let (service, limits, stop) = (service.clone(), limits.clone(), stop_rx.clone());
                let (tls, admit) = (tls.clone(), admit.clone());
                tokio::spawn(async move {
                    let crate::listen::Accepted { stream, slot, .. } = conn;
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(limits.header_timeout, tls.accept(stream)).await
                    else {
                        return;
                    };
                    let peer = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| identity(c));
                    if !admit(peer.as_ref()) {
                        return;
                    }
                    let limits = match peer {
                        Some(Identity::Node(_)) => Arc::new(Limits {
                            header_timeout: limits.node_idle_timeout.max(limits.header_timeout),
                            ..Limits::clone(&limits)
                        }),
                        _ => limits,
                    };
                    let peer = Peer(peer);
                    let svc = tower::util::MapRequest::new(service, move |mut req: Request<GuardedBody>| {
                        req.extensions_mut().insert(peer.clone());
                        req
                    });
                    serve_connection(stream, svc, &limits, stop).await;
                    drop(slot);
                });
            }
        }
    }
    let _ = stop_tx.send(true);
    acceptor.drain(limits.max_connections).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn token_round_trips_and_rejects_malformed() {
        let pin = "ab".repeat(32);
        let t = JoinToken::parse(&JoinToken::format(&pin, "s3cret")).unwrap();
        assert_eq!(t.ca_pin.as_deref(), Some(pin.as_str()));
        assert_eq!(t.secret, "s3cret");
        assert_eq!(JoinToken::parse("plain").unwrap().ca_pin, None);
        for bad in [
            "",
            "K10abc::x",
            &format!("K10{pin}::"),
            &format!("K10{pin}"),
            "a::b",
        ] {
            assert!(JoinToken::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn csr_names_the_node_and_pem_round_trips() {
        let csr = node_csr("node-1").unwrap();
        let p = rcgen::CertificateSigningRequestParams::from_pem(&csr.csr_pem).unwrap();
        let cn = p.params.distinguished_name.get(&rcgen::DnType::CommonName);
        assert!(matches!(cn, Some(rcgen::DnValue::Utf8String(s)) if s == "node-1"));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(der_to_pem(cert.der()), cert.pem());
    }

    proptest! {
        #[test]
        fn token_parser_never_panics(s in ".{0,200}") {
            let _ = JoinToken::parse(&s);
        }

        #[test]
        fn node_ids_accepted_are_dns_labels(s in "[a-zA-Z0-9-]{0,70}") {
            if valid_node_id(&s) {
                prop_assert!(s.len() <= 63 && !s.starts_with('-'));
            }
        }
    }
}
