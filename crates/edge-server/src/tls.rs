//! The API over TLS: one listener for agents and users. Each handshake runs
//! on its own task (`edge_api::tls::accept`); a client certificate is checked
//! against the cluster CA when sent and not required, so users connect
//! without one, and the node routes ask for a node's certificate per request
//! (`auth.rs`). A revoked node's certificate is dropped at the handshake.

use crate::Server;
use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use edge_api::tls::{Accepted, Admit, Identity};
use edge_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is on the other end of a connection: the identity its client
/// certificate proves (none on plain HTTP or without one).
#[derive(Debug, Clone)]
pub struct Peer {
    pub identity: Option<Identity>,
}

pub struct TlsListener {
    incoming: tokio::sync::mpsc::Receiver<Accepted>,
}

impl TlsListener {
    pub fn new(
        listener: tokio::net::TcpListener,
        config: Arc<rustls::ServerConfig>,
        store: Arc<Store>,
    ) -> TlsListener {
        let admit: Admit = Arc::new(move |peer| match peer {
            Some(Identity::Node(id)) => !store.read(|s| Server::is_revoked(s, id)),
            _ => true,
        });
        TlsListener {
            incoming: edge_api::tls::accept(listener, config, HANDSHAKE_TIMEOUT, admit),
        }
    }
}

impl Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(a) => (a.stream, Peer { identity: a.peer }),
            // The accept task only ends with this listener.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer { identity: None })
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}
