//! The API over TLS: one listener for agents and users, under the same
//! guard as the plain one (`edge_api::tls::serve`). A client certificate is
//! checked against the cluster CA when sent and not required, so users
//! connect without one, and the node routes ask for a node's certificate per
//! request (`auth.rs`). A revoked node's certificate is dropped right after
//! the handshake.

use crate::Server;
use axum::Router;
use edge_api::listen::Limits;
use edge_api::tls::{Admit, Identity};
use edge_store::Store;
use std::sync::Arc;

pub async fn serve(
    listener: tokio::net::TcpListener,
    limits: Limits,
    config: Arc<rustls::ServerConfig>,
    store: Arc<Store>,
    app: Router,
    shutdown: impl Future<Output = ()>,
) {
    let admit: Admit = Arc::new(move |peer| match peer {
        Some(Identity::Node(id)) => !store.read(|s| Server::is_revoked(s, id)),
        _ => true,
    });
    edge_api::tls::serve(listener, limits, config, admit, app, shutdown).await;
}
