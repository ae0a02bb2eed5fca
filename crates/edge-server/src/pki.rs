//! The cluster's PKI: a CA made on first start (its key 0600 in the data
//! dir), the server's certificate (made anew at every start, with the SANs of
//! the addresses it is reached at) and node certificates signed from the
//! nodes' requests. Nobody runs a command for any of it.

use crate::ServerError;
use edge_api::tls::{
    self, ApiCertificates, ClusterCa, Credentials, NODE_DNS_SUFFIX, NODE_ORG, SERVER_ORG,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub struct Pki {
    ca_pem: String,
    fingerprint: String,
    issuer: Issuer<'static, KeyPair>,
    server: Arc<Credentials>,
}

fn pki_err(what: &str, e: impl std::fmt::Display) -> ServerError {
    ServerError::Internal(format!("{what}: {e}"))
}

fn io_err(action: &'static str, path: &Path, e: std::io::Error) -> ServerError {
    ServerError::Io {
        action,
        path: path.display().to_string(),
        source: e,
    }
}

/// Writes `text` to `path` through a temporary file and a rename, with
/// `mode`, the directory synced after, so a crash (or a power cut) leaves
/// the old file or the new one, never half a key.
pub(crate) fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), ServerError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io_err("create", &tmp, e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| io_err("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err("rename", path, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("sync", dir, e))
}

fn offset(from_now: Duration, back: bool) -> time::OffsetDateTime {
    let now = time::OffsetDateTime::now_utc();
    let d = time::Duration::try_from(from_now).unwrap_or(time::Duration::days(365));
    if back {
        now.checked_sub(d).unwrap_or(now)
    } else {
        now.checked_add(d).unwrap_or(now)
    }
}

/// Node certificates start a little in the past: a node whose clock runs
/// behind the server's must not get a certificate it cannot use yet.
const CLOCK_SKEW: Duration = Duration::from_secs(tls::CLOCK_SKEW_SECS as u64);

impl Pki {
    /// Loads the CA from `data_dir` (or makes one) and makes the server's
    /// certificate for `sans` plus this host's names and addresses.
    pub fn load_or_create(data_dir: &Path, sans: &[String]) -> Result<Pki, ServerError> {
        let (ca_path, key_path) = (data_dir.join("ca.pem"), data_dir.join("ca-key.pem"));
        let (ca_pem, key) = if key_path.exists() {
            let key_pem =
                std::fs::read_to_string(&key_path).map_err(|e| io_err("read", &key_path, e))?;
            let ca_pem =
                std::fs::read_to_string(&ca_path).map_err(|e| io_err("read", &ca_path, e))?;
            let key = KeyPair::from_pem(&key_pem).map_err(|e| pki_err("cluster CA key", e))?;
            (ca_pem, key)
        } else {
            let key = KeyPair::generate().map_err(|e| pki_err("generate CA key", e))?;
            let mut p = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::OrganizationName, "edge");
            dn.push(DnType::CommonName, "edge cluster CA");
            p.distinguished_name = dn;
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            p.not_before = offset(Duration::from_secs(3600), true);
            p.not_after = offset(Duration::from_secs(10 * 365 * 86400), false);
            let cert = p.self_signed(&key).map_err(|e| pki_err("make CA", e))?;
            // The key first: a CA certificate without its key is useless,
            // a key without its certificate is made again.
            write_file(&key_path, &key.serialize_pem(), 0o600)?;
            write_file(&ca_path, &cert.pem(), 0o644)?;
            tracing::info!(path = %ca_path.display(), "made the cluster CA");
            (cert.pem(), key)
        };
        let ca_der = tls::certs_from_pem(&ca_pem)
            .map_err(|e| pki_err("cluster CA", e))?
            .swap_remove(0);
        let fingerprint = tls::fingerprint(&ca_der);
        let issuer =
            Issuer::from_ca_cert_pem(&ca_pem, key).map_err(|e| pki_err("cluster CA", e))?;
        let mut pki = Pki {
            ca_pem,
            fingerprint,
            issuer,
            server: Arc::new(Credentials::default()),
        };
        let (cert_pem, key_pem) = pki.server_cert(sans)?;
        write_file(&data_dir.join("server.pem"), &cert_pem, 0o644)?;
        write_file(&data_dir.join("server-key.pem"), &key_pem, 0o600)?;
        pki.server = Credentials::from_pem(&format!("{cert_pem}{}", pki.ca_pem), &key_pem)
            .map_err(|e| pki_err("server certificate", e))?;
        Ok(pki)
    }

    fn server_cert(&self, extra: &[String]) -> Result<(String, String), ServerError> {
        let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        if let Ok(h) = nix::unistd::gethostname()
            && let Some(h) = h.to_str()
        {
            names.push(h.to_string());
        }
        names.extend(local_ips().iter().map(IpAddr::to_string));
        names.extend(extra.iter().cloned());
        names.sort();
        names.dedup();
        let mut p = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| pki_err("server certificate", e))?;
        for n in &names {
            let san = match n.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => match n.clone().try_into() {
                    Ok(dns) => SanType::DnsName(dns),
                    Err(e) => {
                        return Err(ServerError::BadRequest(format!(
                            "--tls-san {n:?} is neither an IP address nor a DNS name: {e}"
                        )));
                    }
                },
            };
            p.subject_alt_names.push(san);
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, SERVER_ORG);
        dn.push(DnType::CommonName, SERVER_ORG);
        p.distinguished_name = dn;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.not_before = offset(CLOCK_SKEW, true);
        p.not_after = offset(Duration::from_secs(365 * 86400), false);
        let key = KeyPair::generate().map_err(|e| pki_err("generate server key", e))?;
        let cert = p
            .signed_by(&key, &self.issuer)
            .map_err(|e| pki_err("sign server certificate", e))?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Hex SHA-256 of the CA certificate: what join tokens pin.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The node id a request asks a certificate for (its subject's CN).
    pub fn csr_node(
        csr_pem: &str,
    ) -> Result<(CertificateSigningRequestParams, String), ServerError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| ServerError::BadRequest(format!("invalid certificate request: {e}")))?;
        let text = |t: DnType| match csr.params.distinguished_name.get(&t) {
            Some(DnValue::Utf8String(s)) => Some(s.clone()),
            _ => None,
        };
        let (org, cn) = (text(DnType::OrganizationName), text(DnType::CommonName));
        if org.as_deref() != Some(NODE_ORG) {
            return Err(ServerError::BadRequest(format!(
                "certificate request subject must have O={NODE_ORG}"
            )));
        }
        match cn {
            Some(id) if tls::valid_node_id(&id) => Ok((csr, id)),
            _ => Err(ServerError::BadRequest(
                "certificate request CN must be the node id: 1 to 63 letters, digits and '-'"
                    .to_string(),
            )),
        }
    }

    /// Signs node `node_id`'s certificate, valid for `lifetime`; returns its
    /// PEM and unix `not_after`.
    pub fn sign_node(
        &self,
        mut csr: CertificateSigningRequestParams,
        node_id: &str,
        lifetime: Duration,
    ) -> Result<(String, i64), ServerError> {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, NODE_ORG);
        dn.push(DnType::CommonName, node_id);
        p.distinguished_name = dn;
        let dns = format!("{node_id}.{NODE_DNS_SUFFIX}")
            .try_into()
            .map_err(|e| ServerError::BadRequest(format!("node id {node_id:?}: {e}")))?;
        p.subject_alt_names = vec![SanType::DnsName(dns)];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        p.not_before = offset(CLOCK_SKEW, true);
        p.not_after = offset(lifetime, false);
        let not_after = p.not_after.unix_timestamp();
        csr.params = p;
        let cert = csr
            .signed_by(&self.issuer)
            .map_err(|e| pki_err("sign node certificate", e))?;
        Ok((cert.pem(), not_after))
    }

    /// TLS for the API: the server's certificate, or to users the
    /// operator's `user_cert` (certificate and key PEM files) when given; a
    /// client certificate is checked against the CA when one is sent, and
    /// not required (users send none; node routes check for one per
    /// request).
    pub fn server_config(
        &self,
        user_cert: Option<&(PathBuf, PathBuf)>,
    ) -> Result<Arc<rustls::ServerConfig>, ServerError> {
        let user = user_cert.map(load_user_cert).transpose()?;
        let mut roots = rustls::RootCertStore::empty();
        for c in tls::certs_from_pem(&self.ca_pem).map_err(|e| pki_err("cluster CA", e))? {
            roots.add(c).map_err(|e| pki_err("cluster CA", e))?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.into(),
            tls::provider(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| pki_err("client verifier", e))?;
        let cfg = rustls::ServerConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| pki_err("tls", e))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(ApiCertificates {
                cluster: self.server.clone(),
                user,
            }));
        Ok(Arc::new(cfg))
    }

    /// TLS for the server's calls to agents: trusts the CA, authenticates
    /// as the server.
    pub fn agent_client_config(&self) -> Result<rustls::ClientConfig, ServerError> {
        let ca = ClusterCa::known(&self.ca_pem, None).map_err(|e| pki_err("cluster CA", e))?;
        tls::client_config(ca, Some(self.server.clone())).map_err(|e| pki_err("tls", e))
    }
}

/// The operator's certificate (with its chain) and key for `--tls-cert` and
/// `--tls-key`, each error naming the file.
fn load_user_cert((cert, key): &(PathBuf, PathBuf)) -> Result<Arc<Credentials>, ServerError> {
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p)
            .map_err(|e| ServerError::BadRequest(format!("cannot read {}: {e}", p.display())))
    };
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    if tls::certs_from_pem(&cert_pem).map_or(true, |c| c.is_empty()) {
        return Err(ServerError::BadRequest(format!(
            "--tls-cert {}: no PEM certificate in it",
            cert.display()
        )));
    }
    Credentials::from_pem(&cert_pem, &key_pem).map_err(|e| {
        ServerError::BadRequest(format!(
            "--tls-cert {} / --tls-key {}: {e}",
            cert.display(),
            key.display()
        ))
    })
}

/// This host's addresses, for the server certificate's SANs (a server bound
/// to 0.0.0.0 is reached at any of them).
fn local_ips() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|a| {
            let s = a.address?;
            if let Some(v4) = s.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect()
}
