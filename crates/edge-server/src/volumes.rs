//! The `/v1/volume*` handlers: local volumes as recorded when a copy of a
//! group first ran, and removing one (its directory on the node, then the
//! record) once no live copy uses it.

use crate::Server;
use crate::acl::Access;
use crate::error::ServerError;
use crate::extract::{ApiPath, ApiQuery, Blocking, block, json_at};
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use edge_api::{TOKEN_HEADER, VolumeDeleteResponse};
use edge_spec::Volume;
use edge_spec::acl::Capability;
use edge_store::{Batch, State as St};
use std::sync::Arc;
use std::time::Duration;

type S = State<Arc<Server>>;
type Res = Result<Response, ServerError>;

/// The agent's route that removes a local volume's directory.
pub(crate) const AGENT_DELETE: &str = "/v1/client/volume/delete";

pub(crate) async fn list(State(sv): S, access: Access, ApiQuery(q): ApiQuery<Blocking>) -> Res {
    block(&sv, &q).await;
    let idx = sv.store.index();
    let list: Vec<Volume> = sv.store.read(|s| {
        let mut v: Vec<Volume> = s
            .volumes
            .values()
            .filter(|v| access.sees(&v.namespace, Capability::ReadJob))
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            (&a.namespace, &a.job_id, &a.group, &a.name, a.index).cmp(&(
                &b.namespace,
                &b.job_id,
                &b.group,
                &b.name,
                b.index,
            ))
        });
        v
    });
    Ok(json_at(idx, &list))
}

/// The volume with this id, or the one whose id it uniquely starts.
fn find(s: &St, id: &str) -> Result<Volume, ServerError> {
    if id.is_empty() {
        return Err(ServerError::BadRequest("a volume id is needed".to_string()));
    }
    let mut hits = s.volumes.values().filter(|v| v.id.starts_with(id));
    match (hits.next(), hits.next()) {
        (Some(v), None) => Ok(v.clone()),
        (None, _) => Err(ServerError::not_found("volume", id)),
        (Some(_), Some(_)) => Err(ServerError::BadRequest(format!(
            "volume id prefix {id:?} matches several volumes: give more of it"
        ))),
    }
}

pub(crate) async fn read(State(sv): S, access: Access, ApiPath(id): ApiPath<String>) -> Res {
    let idx = sv.store.index();
    let v = sv.store.read(|s| find(s, &id))?;
    // One answer for "absent" and "hidden".
    if !access.allows(&v.namespace, Capability::ReadJob) {
        return Err(ServerError::not_found("volume", id));
    }
    Ok(json_at(idx, &v))
}

/// The live copy using a volume, if any: its data must not go from under it.
fn user(s: &St, v: &Volume) -> Option<String> {
    s.job_allocs(&edge_spec::job_key(&v.namespace, &v.job_id))
        .into_iter()
        .find(|a| a.group == v.group && a.index == v.index && !a.is_terminal())
        .map(|a| a.id.clone())
}

pub(crate) async fn delete(State(sv): S, access: Access, ApiPath(id): ApiPath<String>) -> Res {
    let (v, node_known) = sv.store.read(|s| {
        let v = find(s, &id)?;
        Ok::<_, ServerError>((v.clone(), s.nodes.contains_key(&v.node_id)))
    })?;
    if !access.allows(&v.namespace, Capability::ReadJob) {
        return Err(ServerError::not_found("volume", id));
    }
    access.require(&v.namespace, Capability::SubmitJob)?;
    if let Some(alloc) = sv.store.read(|s| user(s, &v)) {
        return Err(ServerError::Conflict(format!(
            "volume {} is in use by allocation {alloc}: stop the job (or that copy) first",
            v.display_name()
        )));
    }
    // A node that is gone took the directory with it; a known node must
    // remove it first, so no record is dropped while its data stays.
    let removed_dir = if node_known {
        remove_on_node(&sv, &v).await?
    } else {
        false
    };
    let key = v.own_key();
    let batch = Batch {
        delete_volumes: vec![key],
        ..Batch::default()
    };
    let ((), idx) = sv
        .store
        .commit(move |_: &St| Ok::<_, ServerError>((batch, ())))
        .await?;
    Ok(json_at(
        idx,
        &VolumeDeleteResponse {
            id: v.id.clone(),
            name: v.display_name(),
            node_id: v.node_id.clone(),
            removed_dir,
        },
    ))
}

/// Asks the volume's agent to delete its directory; true when it existed.
async fn remove_on_node(sv: &Server, v: &Volume) -> Result<bool, ServerError> {
    let unreachable = |reason: String| ServerError::AgentUnreachable {
        node: v.node_id.clone(),
        reason: format!("{reason}; the volume is kept until its node can remove it"),
    };
    let body = serde_json::to_vec(v).map_err(|e| ServerError::Internal(e.to_string()))?;
    let mut req =
        crate::tunnel::agent_request(sv, Method::POST, AGENT_DELETE, Body::from(body.clone()))?;
    req.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    let (status, bytes) = match sv.tunnels.send(&v.node_id, Duration::ZERO, req).await {
        Some(resp) => {
            let resp = resp?;
            let status = resp.status();
            let bytes = axum::body::to_bytes(Body::new(resp.into_body()), 64 * 1024)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            (status, bytes)
        }
        None => {
            let addr = sv
                .store
                .read(|s| {
                    s.nodes
                        .get(&v.node_id)
                        .and_then(|n| n.attributes.get(crate::ops::nodes::HTTP_ADDR_ATTR).cloned())
                })
                .ok_or_else(|| {
                    unreachable(
                        "the agent has no tunnel open and registered no HTTP address".into(),
                    )
                })?;
            let (client, base) = sv.agent_client(&v.node_id, &addr)?;
            let resp = client
                .post(format!("{base}{AGENT_DELETE}"))
                .header(TOKEN_HEADER, sv.secret())
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let status =
                StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let bytes = resp.bytes().await.map_err(|e| unreachable(e.to_string()))?;
            (status, bytes)
        }
    };
    let answer: edge_api::AgentVolumeDeleted = match serde_json::from_slice(&bytes) {
        Ok(a) if status.is_success() => a,
        _ => {
            let why = serde_json::from_slice::<edge_api::ErrorBody>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            return Err(if status == StatusCode::CONFLICT {
                ServerError::Conflict(why)
            } else {
                unreachable(format!("the agent answered {status}: {why}"))
            });
        }
    };
    Ok(answer.removed)
}
