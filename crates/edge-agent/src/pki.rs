//! The node's identity when the server speaks TLS: the cluster CA (pinned by
//! the join token on first contact, saved after), the node's key and
//! certificate in `data_dir/tls` (key 0600), bootstrap with the join token,
//! and renewal at 2/3 of the certificate's lifetime through mutual TLS.
//! Tasks never wait on any of it.

use crate::error::AgentError;
use crate::state::write_atomic_mode;
use edge_api::tls::{self, ClusterCa, Credentials, JoinToken};
use edge_api::{Client, CsrResponse};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub(crate) struct NodeTls {
    dir: PathBuf,
    node_id: String,
    pub ca: Arc<ClusterCa>,
    pub creds: Arc<Credentials>,
    /// Speaks to the server with the join token and no certificate: only
    /// for the first certificate.
    bootstrap: Client,
    /// True once the node holds a certificate and knows the CA.
    ready: watch::Sender<bool>,
}

fn tls_err(reason: String) -> AgentError {
    AgentError::Api(edge_api::ApiError::Tls { reason })
}

fn now() -> i64 {
    crate::now_ms() / 1000
}

impl NodeTls {
    /// `None` for a plain `http://` server.
    pub fn open(
        server: &str,
        token: &str,
        data_dir: &std::path::Path,
        node_id: &str,
    ) -> Result<Option<NodeTls>, AgentError> {
        if !server.starts_with("https://") {
            return Ok(None);
        }
        let token = JoinToken::parse(token)?;
        let dir = data_dir.join("tls");
        std::fs::create_dir_all(&dir).map_err(|e| AgentError::io("create", &dir, e))?;
        let ca = match std::fs::read_to_string(dir.join("ca.pem")) {
            Ok(pem) => ClusterCa::known(&pem, token.ca_pin.as_deref())?,
            Err(_) => match &token.ca_pin {
                Some(pin) => ClusterCa::pinned(pin),
                None => {
                    return Err(tls_err(
                        "an https:// server needs a join token that pins its CA (K10<sha256>::<secret>, as the server writes it)".to_string(),
                    ));
                }
            },
        };
        let creds = Arc::new(Credentials::default());
        if let (Ok(cert), Ok(key)) = (
            std::fs::read_to_string(dir.join("node.pem")),
            std::fs::read_to_string(dir.join("node-key.pem")),
        ) && let Err(e) = creds.set(&cert, &key)
        {
            tracing::warn!(error = %e, "unusable node certificate; asking for a new one");
        }
        let bootstrap = Client::with_tls(
            server,
            Some(token.secret.clone()),
            tls::client_config(ca.clone(), None)?,
        )?;
        let ok = creds.is_set() && ca.ca_pem().is_some();
        Ok(Some(NodeTls {
            dir,
            node_id: node_id.to_string(),
            ca,
            creds,
            bootstrap,
            ready: watch::channel(ok).0,
        }))
    }

    /// The client every other request goes through: mutual TLS.
    pub fn client(&self, server: &str) -> Result<Client, AgentError> {
        Ok(Client::for_node(
            server,
            tls::client_config(self.ca.clone(), Some(self.creds.clone()))?,
        )?)
    }

    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    fn validity(&self) -> Option<(i64, i64)> {
        self.creds.leaf().and_then(|c| tls::validity(&c))
    }

    /// Makes sure the node holds a certificate it can use: the first one, or
    /// a new one when it expired (a node that was away too long).
    pub async fn ensure(&self) -> Result<(), AgentError> {
        if self.validity().is_some_and(|(_, na)| na > now() + 1) {
            return Ok(());
        }
        let csr = tls::node_csr(&self.node_id)?;
        let resp = self.bootstrap.agent_csr(&csr.csr_pem).await?;
        self.save(&resp, &csr.key_pem)?;
        tracing::info!(
            not_after = resp.not_after,
            "joined the cluster: node certificate issued"
        );
        Ok(())
    }

    fn save(&self, resp: &CsrResponse, key_pem: &str) -> Result<(), AgentError> {
        let got = tls::certs_from_pem(&resp.ca)?;
        let pinned = self.ca.ca_pem().and_then(|p| tls::certs_from_pem(&p).ok());
        if pinned.as_ref().and_then(|p| p.first()) != got.first() {
            return Err(tls_err(
                "the server sent a CA other than the one it proved".to_string(),
            ));
        }
        self.creds.set(&resp.cert, key_pem)?;
        write_atomic_mode(&self.dir.join("ca.pem"), resp.ca.as_bytes(), 0o644)?;
        write_atomic_mode(&self.dir.join("node-key.pem"), key_pem.as_bytes(), 0o600)?;
        write_atomic_mode(&self.dir.join("node.pem"), resp.cert.as_bytes(), 0o644)?;
        self.ready.send_replace(true);
        Ok(())
    }

    /// Renews the certificate at 2/3 of its lifetime, forever; a failure is
    /// retried, and running tasks are never touched.
    pub async fn renew_loop(self: Arc<Self>, client: Client) {
        let mut ready = self.ready();
        let _ = ready.wait_for(|r| *r).await;
        let mut retry = Duration::from_secs(1);
        loop {
            let Some(v) = self.validity() else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            let life = (v.1 - v.0 - tls::CLOCK_SKEW_SECS).max(1);
            let wait = (tls::renew_at(v) - now()).max(0) as u64;
            if wait > 0 {
                tokio::time::sleep(Duration::from_secs(wait.min(60))).await;
                continue;
            }
            match self.renew(&client).await {
                Ok(na) => {
                    tracing::info!(not_after = na, "node certificate renewed");
                    retry = Duration::from_secs(1);
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?retry, "cannot renew the node certificate");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(Duration::from_secs((life as u64 / 10).clamp(1, 60)));
                }
            }
        }
    }

    async fn renew(&self, client: &Client) -> Result<i64, AgentError> {
        let csr = tls::node_csr(&self.node_id)?;
        let resp = client.agent_renew(&csr.csr_pem).await?;
        self.save(&resp, &csr.key_pem)?;
        Ok(resp.not_after)
    }

    /// TLS for the agent's own listener: its node certificate, and a client
    /// certificate from the cluster CA required (the server's, checked by
    /// the caller).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, AgentError> {
        let pem = self
            .ca
            .ca_pem()
            .ok_or_else(|| tls_err("the cluster CA is not known yet".to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in tls::certs_from_pem(&pem)? {
            roots.add(c).map_err(|e| tls_err(e.to_string()))?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.into(),
            tls::provider(),
        )
        .build()
        .map_err(|e| tls_err(e.to_string()))?;
        let cfg = rustls::ServerConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.creds.clone());
        Ok(Arc::new(cfg))
    }
}
