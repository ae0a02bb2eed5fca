//! The `/v1/namespace*` handlers: listing the namespaces a token may see,
//! and creating, describing and deleting them (management tokens only).

use crate::Server;
use crate::acl::Access;
use crate::error::ServerError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, Blocking, block, json_at};
use crate::ops;
use axum::extract::State;
use axum::response::Response;
use edge_api::{NamespaceApplyRequest, NamespaceDeleteResponse};
use edge_spec::Namespace;
use edge_spec::acl::Capability;
use edge_store::State as St;
use std::sync::Arc;

type S = State<Arc<Server>>;
type Res = Result<Response, ServerError>;

/// Whether the caller may see namespace `ns` at all: it may list or read
/// jobs there.
fn visible(access: &Access, ns: &str) -> bool {
    access.allows(ns, Capability::ListJobs) || access.allows(ns, Capability::ReadJob)
}

/// A blocking query like the other listings: the dashboard waits on this
/// small one to learn that anything changed.
pub(crate) async fn list(State(sv): S, access: Access, ApiQuery(q): ApiQuery<Blocking>) -> Res {
    block(&sv, &q).await;
    let idx = sv.store.index();
    let list: Vec<Namespace> = sv.store.read(|s| {
        s.all_namespaces()
            .into_iter()
            .filter(|n| visible(&access, &n.name))
            .collect()
    });
    Ok(json_at(idx, &list))
}

pub(crate) async fn read(State(sv): S, access: Access, ApiPath(name): ApiPath<String>) -> Res {
    let idx = sv.store.index();
    // One answer for "absent" and "hidden", so a token cannot probe names.
    match sv.store.read(|s| s.namespace(&name)) {
        Some(ns) if visible(&access, &name) => Ok(json_at(idx, &ns)),
        _ => Err(ServerError::NoNamespace(name)),
    }
}

pub(crate) async fn apply(
    State(sv): S,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<NamespaceApplyRequest>,
) -> Res {
    let batch = ops::namespaces::apply(&name, req)?;
    let ((), idx) = sv
        .store
        .commit(move |_: &St| Ok::<_, ServerError>((batch, ())))
        .await?;
    let ns = sv
        .store
        .read(|s| s.namespace(&name))
        .ok_or(ServerError::NoNamespace(name))?;
    Ok(json_at(idx, &ns))
}

pub(crate) async fn delete(State(sv): S, ApiPath(name): ApiPath<String>) -> Res {
    let ((), idx) = sv
        .store
        .commit(move |s: &St| ops::namespaces::delete(s, &name).map(|b| (b, ())))
        .await?;
    Ok(json_at(idx, &NamespaceDeleteResponse { index: idx }))
}
