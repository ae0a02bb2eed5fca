//! TLS termination: loads each service's PEM chain and key when its listener
//! is (re)configured and picks the certificate by SNI on shared ports.

use std::path::Path;
use std::sync::Arc;

use edge_spec::PublishTls;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::error::LbError;
use crate::route::{HostPattern, normalize_host};

/// Certificates by the hosts they serve; a client without SNI, or with a
/// name no entry claims, gets the first.
#[derive(Debug)]
struct SniResolver {
    entries: Vec<(Vec<HostPattern>, Arc<CertifiedKey>)>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = hello.server_name() {
            let name = normalize_host(name);
            let exact = self.entries.iter().find(|(hosts, _)| {
                hosts
                    .iter()
                    .any(|h| matches!(h, HostPattern::Exact(_)) && h.matches(&name))
            });
            let any = || {
                self.entries.iter().find(|(hosts, _)| {
                    hosts
                        .iter()
                        .any(|h| !matches!(h, HostPattern::Any) && h.matches(&name))
                })
            };
            if let Some((_, key)) = exact.or_else(any) {
                return Some(key.clone());
            }
        }
        self.entries.first().map(|(_, key)| key.clone())
    }
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load(
    port: u16,
    tls: &PublishTls,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, LbError> {
    let file_err = |path: &str, message: String| LbError::TlsFile {
        port,
        path: Path::new(path).to_path_buf(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(&tls.cert_file)
        .map_err(|e| file_err(&tls.cert_file, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(&tls.cert_file, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_err(&tls.cert_file, "no certificate found".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .map_err(|e| file_err(&tls.key_file, e.to_string()))?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| LbError::TlsKey {
        port,
        cert: tls.cert_file.clone().into(),
        key: tls.key_file.clone().into(),
        message: e.to_string(),
    })?;
    Ok(Arc::new(certified))
}

/// `http` advertises HTTP/1.1 by ALPN; raw TCP ports advertise nothing.
pub(crate) fn acceptor(
    port: u16,
    certs: &[(Vec<HostPattern>, PublishTls)],
    http: bool,
) -> Result<TlsAcceptor, LbError> {
    let provider = provider();
    let mut entries = Vec::with_capacity(certs.len());
    for (hosts, tls) in certs {
        entries.push((hosts.clone(), load(port, tls, &provider)?));
    }
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| LbError::TlsConfig { port, source })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { entries }));
    if http {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
    }
    Ok(TlsAcceptor::from(Arc::new(config)))
}
