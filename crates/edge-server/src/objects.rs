//! The `/v1/config*`, `/v1/secret*` and keyring handlers, and what an
//! agent fetches for one allocation. A secret is sealed before it reaches
//! the store and opened only for the agent of a node running an
//! allocation that asks for it.

use crate::Server;
use crate::acl::Access;
use crate::auth::{self, Caller};
use crate::error::ServerError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, json_at};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use edge_api::{
    AllocData, KeyringRotateResponse, ObjectPutRequest, ObjectValue, ObjectWriteResponse,
};
use edge_spec::acl::Capability;
use edge_spec::objects::{ConfigObject, SecretObject, data_problem, object_key};
use edge_spec::{DEFAULT_NAMESPACE, Job, NameKind};
use edge_store::{Batch, State as St};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

type S = State<Arc<Server>>;
type Res = Result<Response, ServerError>;

/// Which of the two kinds a route is about.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Config,
    Secret,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Config => "config",
            Kind::Secret => "secret",
        }
    }
}

/// The namespace a single-object route works in.
fn namespace(access: &Access) -> String {
    match access.namespace.as_str() {
        edge_spec::namespace::ALL_NAMESPACES => DEFAULT_NAMESPACE.to_string(),
        ns => ns.to_string(),
    }
}

fn check_name(kind: Kind, name: &str) -> Result<(), ServerError> {
    edge_spec::check_name(NameKind::Volume, name)
        .map_err(|e| ServerError::BadRequest(format!("{} name: {e}", kind.as_str())))
}

pub(crate) async fn list_configs(State(sv): S, access: Access) -> Res {
    let idx = sv.store.index();
    let list: Vec<ConfigObject> = sv.store.read(|s| {
        s.configs
            .values()
            .filter(|c| access.sees(&c.namespace, Capability::ReadJob))
            .cloned()
            .collect()
    });
    Ok(json_at(idx, &list))
}

pub(crate) async fn list_secrets(State(sv): S, access: Access) -> Res {
    let idx = sv.store.index();
    let list: Vec<SecretObject> = sv.store.read(|s| {
        s.secrets
            .values()
            .filter(|c| access.sees(&c.namespace, Capability::ReadJob))
            .map(SecretObject::metadata)
            .collect()
    });
    Ok(json_at(idx, &list))
}

pub(crate) async fn read_config(
    State(sv): S,
    access: Access,
    ApiPath(name): ApiPath<String>,
) -> Res {
    let ns = namespace(&access);
    access.require(&ns, Capability::ReadJob)?;
    let idx = sv.store.index();
    let c = sv
        .store
        .read(|s| s.configs.get(&object_key(&ns, &name)).cloned())
        .ok_or_else(|| ServerError::not_found("config", &name))?;
    Ok(json_at(idx, &c))
}

/// A secret's metadata: its values never leave through the API.
pub(crate) async fn read_secret(
    State(sv): S,
    access: Access,
    ApiPath(name): ApiPath<String>,
) -> Res {
    let ns = namespace(&access);
    access.require(&ns, Capability::ReadJob)?;
    let idx = sv.store.index();
    let c = sv
        .store
        .read(|s| {
            s.secrets
                .get(&object_key(&ns, &name))
                .map(SecretObject::metadata)
        })
        .ok_or_else(|| ServerError::not_found("secret", &name))?;
    Ok(json_at(idx, &c))
}

pub(crate) async fn put_config(
    State(sv): S,
    access: Access,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<ObjectPutRequest>,
) -> Res {
    put(sv, access, Kind::Config, name, req).await
}

pub(crate) async fn put_secret(
    State(sv): S,
    access: Access,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<ObjectPutRequest>,
) -> Res {
    put(sv, access, Kind::Secret, name, req).await
}

async fn put(
    sv: Arc<Server>,
    access: Access,
    kind: Kind,
    name: String,
    req: ObjectPutRequest,
) -> Res {
    let ns = namespace(&access);
    access.require(&ns, Capability::SubmitJob)?;
    check_name(kind, &name)?;
    if let Some(p) = data_problem(&req.data) {
        return Err(ServerError::BadRequest(format!(
            "{} {name:?}: {p}",
            kind.as_str()
        )));
    }
    let key = object_key(&ns, &name);
    // Sealed before the commit: the plaintext never reaches the store.
    let sealed = match kind {
        Kind::Secret => Some(sv.keyring.seal(&key, &req.data)?),
        Kind::Config => None,
    };
    let now = crate::now_ms();
    let (version, idx) = sv
        .store
        .commit(move |s: &St| {
            if s.namespace(&ns).is_none() {
                return Err(ServerError::NoNamespace(ns.clone()));
            }
            let mut b = Batch::default();
            let version = match &sealed {
                None => {
                    let v = s.configs.get(&key).map_or(0, |c| c.version) + 1;
                    b.configs.push(ConfigObject {
                        namespace: ns.clone(),
                        name: name.clone(),
                        version: v,
                        data: req.data.clone(),
                        modify_time: now,
                        create_index: 0,
                        modify_index: 0,
                    });
                    v
                }
                Some((key_id, sealed)) => {
                    let v = s.secrets.get(&key).map_or(0, |c| c.version) + 1;
                    b.secrets.push(SecretObject {
                        namespace: ns.clone(),
                        name: name.clone(),
                        version: v,
                        keys: req.data.keys().cloned().collect(),
                        modify_time: now,
                        key_id: key_id.clone(),
                        sealed: sealed.clone(),
                        create_index: 0,
                        modify_index: 0,
                    });
                    v
                }
            };
            Ok::<_, ServerError>((b, version))
        })
        .await?;
    Ok(json_at(
        idx,
        &ObjectWriteResponse {
            version,
            index: idx,
        },
    ))
}

pub(crate) async fn delete_config(
    State(sv): S,
    access: Access,
    ApiPath(name): ApiPath<String>,
) -> Res {
    delete(sv, access, Kind::Config, name).await
}

pub(crate) async fn delete_secret(
    State(sv): S,
    access: Access,
    ApiPath(name): ApiPath<String>,
) -> Res {
    delete(sv, access, Kind::Secret, name).await
}

/// The running jobs of namespace `ns` whose tasks ask for this object.
fn users(s: &St, kind: Kind, ns: &str, name: &str) -> Vec<String> {
    s.jobs
        .values()
        .filter(|j| j.namespace == ns && !j.stop)
        .filter(|j| !refs(j, kind).into_iter().all(|n| n != name))
        .map(|j| j.id.clone())
        .collect()
}

/// The names of the configs or secrets a job's tasks ask for.
fn refs(job: &Job, kind: Kind) -> Vec<&str> {
    job.groups
        .iter()
        .flat_map(|g| &g.tasks)
        .flat_map(|t| match kind {
            Kind::Config => &t.configs,
            Kind::Secret => &t.secrets,
        })
        .map(|r| r.name.as_str())
        .collect()
}

async fn delete(sv: Arc<Server>, access: Access, kind: Kind, name: String) -> Res {
    let ns = namespace(&access);
    access.require(&ns, Capability::SubmitJob)?;
    let key = object_key(&ns, &name);
    let ((), idx) = sv
        .store
        .commit(move |s: &St| {
            let exists = match kind {
                Kind::Config => s.configs.contains_key(&key),
                Kind::Secret => s.secrets.contains_key(&key),
            };
            if !exists {
                return Err(ServerError::not_found(kind.as_str(), &name));
            }
            let users = users(s, kind, &ns, &name);
            if !users.is_empty() {
                return Err(ServerError::Conflict(format!(
                    "{} {name:?} is used by job {}: stop it, or drop the {} block, first",
                    kind.as_str(),
                    users.join(", "),
                    kind.as_str()
                )));
            }
            let mut b = Batch::default();
            match kind {
                Kind::Config => b.delete_configs.push(key),
                Kind::Secret => b.delete_secrets.push(key),
            }
            Ok::<_, ServerError>((b, ()))
        })
        .await?;
    Ok(json_at(
        idx,
        &ObjectWriteResponse {
            version: 0,
            index: idx,
        },
    ))
}

/// Re-seals every secret under a new key, then drops the old keys.
pub(crate) async fn rotate_keyring(State(sv): S) -> Res {
    let _one = sv.keyring_rotation.lock().await;
    let new = sv.keyring.add_key(crate::now_ms())?;
    // Opened and sealed again inside the commit: a put racing the
    // rotation is either re-sealed here or sealed under the new key.
    let (server, active) = (sv.clone(), new.clone());
    let (count, idx) = sv
        .store
        .commit(move |s: &St| {
            let keyring = &server.keyring;
            let mut b = Batch::default();
            for (key, c) in &s.secrets {
                if c.key_id == active {
                    continue;
                }
                let data = keyring.open_sealed(&c.key_id, key, &c.sealed)?;
                let (key_id, sealed) = keyring.seal(key, &data)?;
                b.secrets.push(SecretObject {
                    key_id,
                    sealed,
                    ..c.clone()
                });
            }
            let n = b.secrets.len();
            Ok::<_, ServerError>((b, n))
        })
        .await?;
    let retired = sv.keyring.retire()?;
    tracing::info!(key = %new, resealed = count, retired, "keyring rotated");
    Ok(json_at(
        idx,
        &KeyringRotateResponse {
            key_id: new,
            resealed: count as u64,
            retired_keys: retired as u64,
        },
    ))
}

#[derive(Deserialize)]
pub(crate) struct DataQuery {
    alloc: String,
}

/// What allocation `alloc` of node `id` asks for, opened: only for that
/// node's own agent, and only while the allocation is its and live.
pub(crate) async fn agent_data(
    State(sv): S,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DataQuery>,
) -> Res {
    auth::node(&sv, &caller, &headers, &id)?;
    let idx = sv.store.index();
    let (configs, sealed) = sv.store.read(|s| {
        let a = s
            .allocs
            .get(&q.alloc)
            .filter(|a| a.node_id == id && !a.is_terminal())
            .ok_or_else(|| {
                ServerError::Unauthorized(format!(
                    "allocation {} does not run on node {id}: a node gets only its own allocations' configs and secrets",
                    q.alloc
                ))
            })?;
        let job = s
            .jobs
            .get(&a.job_key())
            .filter(|j| j.version == a.job_version)
            .cloned()
            .or_else(|| s.jobs.get(&a.job_key()).cloned())
            .ok_or_else(|| ServerError::not_found("job", &a.job_id))?;
        let tasks = job.group(&a.group).map(|g| g.tasks.clone()).unwrap_or_default();
        let mut configs = BTreeMap::new();
        let mut sealed = Vec::new();
        for t in &tasks {
            for r in &t.configs {
                let c = s
                    .configs
                    .get(&object_key(&a.namespace, &r.name))
                    .ok_or_else(|| ServerError::not_found("config", &r.name))?;
                configs.insert(
                    r.name.clone(),
                    ObjectValue {
                        version: c.version,
                        data: c.data.clone(),
                    },
                );
            }
            for r in &t.secrets {
                let key = object_key(&a.namespace, &r.name);
                let c = s
                    .secrets
                    .get(&key)
                    .ok_or_else(|| ServerError::not_found("secret", &r.name))?;
                sealed.push((r.name.clone(), key, c.clone()));
            }
        }
        Ok::<_, ServerError>((configs, sealed))
    })?;
    let mut secrets = BTreeMap::new();
    for (name, key, c) in sealed {
        let data = sv.keyring.open_sealed(&c.key_id, &key, &c.sealed)?;
        secrets.insert(
            name,
            ObjectValue {
                version: c.version,
                data,
            },
        );
    }
    Ok(json_at(idx, &AllocData { configs, secrets }))
}

#[derive(Deserialize)]
pub(crate) struct TlsQuery {
    namespace: String,
    name: String,
}

/// A secret a published service terminates TLS with: every node's load
/// balancer serves the service, so every node may fetch it; no other
/// secret goes out this way.
pub(crate) async fn agent_tls(
    State(sv): S,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<TlsQuery>,
) -> Res {
    auth::node(&sv, &caller, &headers, &id)?;
    let idx = sv.store.index();
    let (key, c) = sv.store.read(|s| {
        if !s.nodes.contains_key(&id) {
            return Err(ServerError::not_found("node", &id));
        }
        let published = s
            .jobs
            .values()
            .filter(|j| j.namespace == q.namespace && !j.stop)
            .flat_map(|j| &j.groups)
            .flat_map(|g| &g.services)
            .filter_map(|svc| svc.publish.as_ref()?.tls.as_ref())
            .any(|t| t.secret == q.name);
        if !published {
            return Err(ServerError::Unauthorized(format!(
                "secret {:?} is no published service's TLS secret in namespace {:?}: a node gets only those and its own allocations' secrets",
                q.name, q.namespace
            )));
        }
        let key = object_key(&q.namespace, &q.name);
        let c = s
            .secrets
            .get(&key)
            .cloned()
            .ok_or_else(|| ServerError::not_found("secret", &q.name))?;
        Ok((key, c))
    })?;
    let data = sv.keyring.open_sealed(&c.key_id, &key, &c.sealed)?;
    Ok(json_at(
        idx,
        &ObjectValue {
            version: c.version,
            data,
        },
    ))
}
