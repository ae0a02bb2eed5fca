//! Who may call the node routes. Over TLS a node proves who it is with its
//! certificate (`O=edge-node, CN=<node id>`) and may act only as itself;
//! over plain HTTP (a loopback server) the join token is the only check.
//! A revoked node is refused either way.

use crate::error::ServerError;
use crate::{Server, token};
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use edge_api::TOKEN_HEADER;
use edge_api::tls::{Identity, Peer};
use std::sync::Arc;

/// The identity the request's connection proved, if any.
pub struct Caller(pub Option<Identity>);

impl FromRequestParts<Arc<Server>> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &Arc<Server>,
    ) -> Result<Self, Self::Rejection> {
        let id = parts.extensions.get::<Peer>().and_then(|p| p.0.clone());
        Ok(Caller(id))
    }
}

/// The join token's secret from the request, checked in constant time.
pub fn check_token(sv: &Server, headers: &HeaderMap) -> Result<(), ServerError> {
    match headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) {
        Some(t) => {
            let given = edge_api::tls::JoinToken::parse(t)
                .map(|t| t.secret)
                .unwrap_or_default();
            if token::secret_matches(&given, &sv.secret()) {
                Ok(())
            } else {
                Err(ServerError::Unauthorized("invalid join token".to_string()))
            }
        }
        None => Err(ServerError::Unauthorized(format!(
            "missing join token: send it in the {TOKEN_HEADER} header"
        ))),
    }
}

/// The node a request acts for must be the caller.
pub fn node(
    sv: &Server,
    caller: &Caller,
    headers: &HeaderMap,
    id: &str,
) -> Result<(), ServerError> {
    if sv.cfg.tls {
        match &caller.0 {
            Some(Identity::Node(me)) if me == id => {}
            Some(Identity::Node(me)) => {
                return Err(ServerError::Unauthorized(format!(
                    "client certificate is for node {me}, not {id}: a node acts only as itself"
                )));
            }
            _ => {
                return Err(ServerError::Unauthorized(
                    "node routes need a node certificate (mutual TLS); join with the token at /v1/agent/csr first"
                        .to_string(),
                ));
            }
        }
    } else {
        check_token(sv, headers)?;
    }
    if sv.store.read(|s| Server::is_revoked(s, id)) {
        return Err(ServerError::Unauthorized(format!("node {id} is revoked")));
    }
    Ok(())
}
