//! The `/v1` router and its handlers. Handlers are thin: reads come from the
//! in-memory state, writes go through `Store::commit` and answer only after
//! the transaction is on disk.

use crate::Server;
use crate::acl::{self, Access};
use crate::auth::{self, Caller};
use crate::error::ServerError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, Blocking, block, error_response, json_at};
use crate::ops::{self, Env};
use crate::pki::Pki;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use edge_api::*;
use edge_spec::acl::Capability;
use edge_spec::{
    Allocation, ClientStatus, DEFAULT_NAMESPACE, Evaluation, Job, Node, NodeStatus, TriggeredBy,
};
use edge_store::State as St;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

type S = State<Arc<Server>>;
type Res = Result<Response, ServerError>;

pub fn router(server: Arc<Server>) -> Router {
    let limit = server.cfg.listen.max_body_bytes;
    Router::new()
        .route("/v1/jobs", get(list_jobs).post(register_job))
        .route(
            "/v1/job/{id}",
            get(read_job).post(register_job_at).delete(stop_job),
        )
        .route("/v1/job/{id}/plan", post(plan_job))
        .route("/v1/job/{id}/versions", get(job_versions))
        .route("/v1/job/{id}/diff", get(job_diff))
        .route("/v1/job/{id}/revert", post(revert_job))
        .route(
            "/v1/job/{id}/scale",
            post(scale_job).get(crate::autoscale::status),
        )
        .route("/v1/job/{id}/dispatch", post(dispatch_job))
        .route("/v1/job/{id}/periodic/force", post(periodic_force))
        .route("/v1/job/{id}/allocations", get(job_allocs))
        .route("/v1/job/{id}/evaluations", get(job_evals))
        .route("/v1/allocations", get(list_allocs))
        .route("/v1/allocation/{id}", get(read_alloc))
        .route("/v1/client/allocation/{id}/logs", get(alloc_logs))
        .route(
            "/v1/client/allocation/{id}/exec",
            get(crate::tunnel::alloc_exec),
        )
        .route(
            "/v1/job/{id}/deployment",
            get(crate::deployments::latest_of_job),
        )
        .route("/v1/job/{id}/deployments", get(crate::deployments::of_job))
        .route("/v1/deployments", get(crate::deployments::list))
        .route("/v1/deployment/{id}", get(crate::deployments::read))
        .route(
            "/v1/deployment/{id}/promote",
            post(crate::deployments::promote),
        )
        .route("/v1/deployment/{id}/pause", post(crate::deployments::pause))
        .route(
            "/v1/deployment/{id}/resume",
            post(crate::deployments::resume),
        )
        .route("/v1/deployment/{id}/fail", post(crate::deployments::fail))
        .route(
            "/v1/deployment/{id}/allocation-health",
            post(crate::deployments::alloc_health),
        )
        .route("/v1/namespaces", get(crate::namespaces::list))
        .route(
            "/v1/namespace/{name}",
            get(crate::namespaces::read)
                .post(crate::namespaces::apply)
                .delete(crate::namespaces::delete),
        )
        .route("/v1/configs", get(crate::objects::list_configs))
        .route(
            "/v1/config/{name}",
            get(crate::objects::read_config)
                .post(crate::objects::put_config)
                .delete(crate::objects::delete_config),
        )
        .route("/v1/secrets", get(crate::objects::list_secrets))
        .route(
            "/v1/secret/{name}",
            get(crate::objects::read_secret)
                .post(crate::objects::put_secret)
                .delete(crate::objects::delete_secret),
        )
        .route(
            "/v1/operator/keyring/rotate",
            post(crate::objects::rotate_keyring),
        )
        .route("/v1/agent/data/{id}", get(crate::objects::agent_data))
        .route("/v1/agent/networks/{id}", get(crate::networks::agent))
        .route("/v1/networks", get(crate::networks::list))
        .route("/v1/agent/tls/{id}", get(crate::objects::agent_tls))
        .route("/v1/volumes", get(crate::volumes::list))
        .route(
            "/v1/volume/{id}",
            get(crate::volumes::read).delete(crate::volumes::delete),
        )
        .route("/v1/evaluations", get(list_evals))
        .route("/v1/evaluation/{id}", get(read_eval))
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/node/{id}", get(read_node))
        .route("/v1/node/{id}/drain", post(drain_node))
        .route("/v1/node/{id}/eligibility", post(node_eligibility))
        .route("/v1/node/{id}/gc", post(node_gc))
        .route("/v1/node/{id}/revoke", post(revoke_node))
        .route("/v1/node/{id}/tunnel", get(crate::tunnel::node_tunnel))
        .route("/v1/operator/token/rotate", post(rotate_token))
        .route("/v1/agent/csr", post(agent_csr))
        .route("/v1/agent/renew", post(agent_renew))
        .route("/v1/agent/register", post(agent_register))
        .route("/v1/agent/heartbeat/{id}", post(agent_heartbeat))
        .route("/v1/agent/load/{id}", post(crate::autoscale::agent_load))
        .route(
            "/v1/agent/allocs/{id}",
            get(agent_allocs).post(agent_update),
        )
        .route("/v1/services", get(list_services))
        .route("/v1/models", get(crate::models::list))
        .route("/v1/model/{service}/meta/{model}", get(crate::models::meta))
        .route(
            "/v1/model/{service}/infer/{model}",
            post(crate::models::infer),
        )
        .route("/v1/service/{name}", get(read_service))
        .route("/v1/catalog", get(read_catalog))
        .route("/v1/event/stream", get(crate::metrics::event_stream))
        .route("/v1/status/health", get(health))
        .route("/v1/metrics", get(crate::metrics::metrics))
        .route("/v1/acl/bootstrap", post(acl::bootstrap))
        .route("/v1/acl/policies", get(acl::list_policies))
        .route(
            "/v1/acl/policy/{name}",
            get(acl::read_policy)
                .post(acl::apply_policy)
                .delete(acl::delete_policy),
        )
        .route(
            "/v1/acl/tokens",
            get(acl::list_tokens).post(acl::create_token),
        )
        .route("/v1/acl/token/self", get(acl::token_self))
        .route("/v1/acl/token/self/grants", get(acl::token_grants))
        .route(
            "/v1/acl/token/{accessor}",
            get(acl::read_token).delete(acl::revoke_token),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .layer(DefaultBodyLimit::max(limit))
        .route_layer(axum::middleware::from_fn_with_state(
            server.clone(),
            acl::enforce,
        ))
        // The dashboard's files are public; what it shows comes from the
        // routes above, with the token the user gives it.
        .merge(edge_ui::router())
        .layer(axum::middleware::from_fn_with_state(
            server.clone(),
            crate::metrics::count_requests,
        ))
        .with_state(server)
}

async fn no_route() -> Response {
    error_response(StatusCode::NOT_FOUND, "no such route".to_string())
}

async fn no_method() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route".to_string(),
    )
}

fn job_stub(s: &St, job: &Job) -> JobListStub {
    let mut summary: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
    for g in &job.groups {
        summary.entry(g.name.clone()).or_default();
    }
    for a in s.job_allocs(&job.key()) {
        *summary
            .entry(a.group.clone())
            .or_default()
            .entry(a.client_status.as_str().to_string())
            .or_default() += 1;
    }
    JobListStub {
        id: job.id.clone(),
        namespace: job.namespace.clone(),
        name: job.name.clone(),
        job_type: job.job_type,
        priority: job.priority,
        status: ops::jobs::status(s, job),
        stop: job.stop,
        version: job.version,
        submit_time: job.submit_time,
        summary,
        modify_index: job.modify_index,
        parent_id: job.parent_id.clone(),
    }
}

async fn list_jobs(State(sv): S, access: Access, ApiQuery(q): ApiQuery<Blocking>) -> Res {
    block(&sv, &q).await;
    let (idx, list) = sv.store.read(|s| {
        let mut list: Vec<JobListStub> = s
            .jobs
            .values()
            .filter(|j| access.sees(&j.namespace, Capability::ListJobs))
            .map(|j| job_stub(s, j))
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id).then_with(|| a.namespace.cmp(&b.namespace)));
        (sv.store.index(), list)
    });
    Ok(json_at(idx, &list))
}

async fn read_job(
    State(sv): S,
    access: Access,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<Blocking>,
) -> Res {
    block(&sv, &q).await;
    let idx = sv.store.index();
    let key = edge_spec::job_key(&access.namespace, &id);
    sv.store.read(|s| match s.jobs.get(&key) {
        Some(j) => {
            let mut j = j.clone();
            j.status = ops::jobs::status(s, &j);
            if j.launches() {
                j.next_launch = ops::periodic::next_launch(s, &j);
                j.children = ops::periodic::children(s, &j)
                    .map(|c| c.id.clone())
                    .collect();
            }
            Ok(json_at(idx, &j))
        }
        None => Err(ServerError::no_job(&access.namespace, &id)),
    })
}

/// Puts a submitted job in its namespace: the one its spec names, else the
/// request's (`?namespace=`, where `*` names none); both named and
/// different is an error. The caller must be allowed to submit jobs there.
fn place_in_namespace(access: &Access, job: &mut Job) -> Result<(), ServerError> {
    let asked = match access.namespace.as_str() {
        edge_spec::namespace::ALL_NAMESPACES => DEFAULT_NAMESPACE,
        ns => ns,
    };
    if job.namespace == DEFAULT_NAMESPACE {
        job.namespace = asked.to_string();
    } else if asked != DEFAULT_NAMESPACE && asked != job.namespace {
        return Err(ServerError::BadRequest(format!(
            "job {:?} names namespace {:?} but the request asks for namespace {asked:?}",
            job.id, job.namespace
        )));
    }
    access.require(&job.namespace, Capability::SubmitJob)
}

/// Registers `job` as a new version (or the same one when nothing changed)
/// and queues an evaluation.
async fn register(
    sv: &Server,
    job: Job,
    trigger: TriggeredBy,
    enforce_index: Option<u64>,
) -> Result<JobRegisterResponse, ServerError> {
    let job = ops::jobs::prepare(job, &sv.cfg.driver_configs)?;
    let (mut resp, idx) = sv
        .store
        .commit(move |s: &St| ops::jobs::register(s, &mut Env::live(), job, trigger, enforce_index))
        .await?;
    resp.job_modify_index = idx;
    sv.evals_ready.notify_one();
    sv.periodic_changed.notify_one();
    Ok(resp)
}

async fn register_job(
    State(sv): S,
    access: Access,
    ApiJson(mut req): ApiJson<JobRegisterRequest>,
) -> Res {
    place_in_namespace(&access, &mut req.job)?;
    // Only the server makes children: a submitted job is nobody's.
    req.job.parent_id.clear();
    req.job.payload.clear();
    req.job.next_launch = None;
    req.job.children.clear();
    req.job.scaled = None;
    let resp = register(&sv, req.job, TriggeredBy::JobRegister, req.enforce_index).await?;
    Ok(json_at(resp.job_modify_index, &resp))
}

async fn register_job_at(
    State(sv): S,
    access: Access,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<JobRegisterRequest>,
) -> Res {
    if req.job.id != id {
        return Err(ServerError::BadRequest(format!(
            "job id {:?} in the body does not match {id:?} in the path",
            req.job.id
        )));
    }
    register_job(State(sv), access, ApiJson(req)).await
}

async fn scale_job(
    State(sv): S,
    access: Access,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<JobScaleRequest>,
) -> Res {
    // Read and registered in one commit, so a registration in between is
    // not overwritten with the older spec.
    let now = sv.cfg.clock.now_ms();
    let (mut resp, idx) = sv
        .store
        .commit(move |s: &St| {
            let job = ops::jobs::scaled(
                s,
                (&access.namespace, &id),
                &req.group,
                req.count,
                "edge job scale".to_string(),
                now,
            )?;
            ops::jobs::register(s, &mut Env::live(), job, TriggeredBy::JobScale, None)
        })
        .await?;
    resp.job_modify_index = idx;
    sv.evals_ready.notify_one();
    Ok(json_at(idx, &resp))
}

/// `POST /v1/job/{id}/dispatch`: a child of a parameterized job.
async fn dispatch_job(
    State(sv): S,
    access: Access,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<JobDispatchRequest>,
) -> Res {
    let (mut resp, idx) = sv
        .store
        .commit(move |s: &St| {
            ops::periodic::dispatch(s, &mut Env::live(), (&access.namespace, &id), &req)
        })
        .await?;
    resp.index = idx;
    sv.evals_ready.notify_one();
    Ok(json_at(idx, &resp))
}

/// `POST /v1/job/{id}/periodic/force`: a child of a periodic job, now.
async fn periodic_force(State(sv): S, access: Access, ApiPath(id): ApiPath<String>) -> Res {
    let now = sv.cfg.clock.now_ms();
    let (mut resp, idx) = sv
        .store
        .commit(move |s: &St| {
            let mut env = Env::live();
            env.now = now;
            ops::periodic::launch(s, &mut env, (&access.namespace, &id))
        })
        .await?;
    resp.index = idx;
    sv.evals_ready.notify_one();
    sv.periodic_changed.notify_one();
    Ok(json_at(idx, &resp))
}

#[derive(Deserialize)]
struct StopQuery {
    #[serde(default)]
    purge: bool,
}

async fn stop_job(
    State(sv): S,
    access: Access,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<StopQuery>,
) -> Res {
    let (eval_id, idx) = sv
        .store
        .commit(move |s: &St| {
            ops::jobs::stop(s, &mut Env::live(), (&access.namespace, &id), q.purge)
        })
        .await?;
    sv.evals_ready.notify_one();
    Ok(json_at(
        idx,
        &EvalResponse {
            eval_id: Some(eval_id),
            index: idx,
        },
    ))
}

async fn plan_job(
    State(sv): S,
    access: Access,
    ApiPath(id): ApiPath<String>,
    ApiJson(mut req): ApiJson<JobPlanRequest>,
) -> Res {
    if req.job.id != id {
        return Err(ServerError::BadRequest(format!(
            "job id {:?} in the body does not match {id:?} in the path",
            req.job.id
        )));
    }
    place_in_namespace(&access, &mut req.job)?;
    let job = ops::jobs::prepare(req.job, &sv.cfg.driver_configs)?;
    if sv.store.read(|s| s.namespace(&job.namespace).is_none()) {
        return Err(ServerError::NoNamespace(job.namespace));
    }
    // The scheduler is CPU-bound and a plan may be large: it runs off the
    // async workers so that blocking queries and heartbeats keep flowing.
    let server = sv.clone();
    let resp = tokio::task::spawn_blocking(move || {
        let cfg = &server.cfg.scheduler;
        server
            .store
            .read(|s| ops::plan::dry_run(s, &mut Env::live(), cfg, job))
    })
    .await
    .map_err(|e| ServerError::Internal(format!("job plan: {e}")))?;
    Ok(json_at(resp.job_modify_index, &resp))
}

async fn job_versions(State(sv): S, access: Access, ApiPath(id): ApiPath<String>) -> Res {
    let versions = sv
        .store
        .job_versions(&edge_spec::job_key(&access.namespace, &id))
        .await?;
    if versions.is_empty() {
        return Err(ServerError::no_job(&access.namespace, &id));
    }
    Ok(json_at(sv.store.index(), &versions))
}

#[derive(Deserialize)]
struct DiffQuery {
    from: u64,
    to: u64,
}

/// How version `to` of a job differs from version `from`, as the dashboard
/// shows it (the same line diff as `edge job plan`).
async fn job_diff(
    State(sv): S,
    access: Access,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DiffQuery>,
) -> Res {
    let key = edge_spec::job_key(&access.namespace, &id);
    let mut pair = Vec::with_capacity(2);
    for version in [q.from, q.to] {
        match sv.store.job_version(&key, version).await? {
            Some(j) => pair.push(j),
            None if sv.store.read(|s| !s.jobs.contains_key(&key)) => {
                return Err(ServerError::no_job(&access.namespace, &id));
            }
            None => return Err(ServerError::NoSuchVersion { job: id, version }),
        }
    }
    let (diff_type, diff) = ops::plan::diff(Some(&pair[0]), &pair[1]);
    Ok(json_at(
        sv.store.index(),
        &JobVersionDiff {
            from: q.from,
            to: q.to,
            diff_type,
            diff,
        },
    ))
}

async fn revert_job(
    State(sv): S,
    access: Access,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<JobRevertRequest>,
) -> Res {
    let key = edge_spec::job_key(&access.namespace, &id);
    let Some(old) = sv.store.job_version(&key, req.version).await? else {
        return Err(ServerError::NoSuchVersion {
            job: id,
            version: req.version,
        });
    };
    let resp = register(&sv, old, TriggeredBy::JobRevert, None).await?;
    Ok(json_at(
        resp.job_modify_index,
        &EvalResponse {
            eval_id: resp.eval_id,
            index: resp.job_modify_index,
        },
    ))
}

async fn job_allocs(
    State(sv): S,
    access: Access,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<Blocking>,
) -> Res {
    block(&sv, &q).await;
    let idx = sv.store.index();
    let key = edge_spec::job_key(&access.namespace, &id);
    let list: Vec<AllocListStub> = sv.store.read(|s| {
        let mut v: Vec<AllocListStub> = s
            .job_allocs(&key)
            .into_iter()
            .map(AllocListStub::from)
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name).then(b.create_time.cmp(&a.create_time)));
        v
    });
    Ok(json_at(idx, &list))
}

async fn job_evals(State(sv): S, access: Access, ApiPath(id): ApiPath<String>) -> Res {
    let idx = sv.store.index();
    let key = edge_spec::job_key(&access.namespace, &id);
    let list: Vec<Evaluation> = sv.store.read(|s| {
        let mut v: Vec<Evaluation> = s.job_evals(&key).into_iter().cloned().collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.create_index));
        v
    });
    Ok(json_at(idx, &list))
}

#[derive(Deserialize)]
struct AllocQuery {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, deserialize_with = "crate::extract::duration")]
    wait: Option<Duration>,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    job: Option<String>,
}

async fn list_allocs(State(sv): S, access: Access, ApiQuery(q): ApiQuery<AllocQuery>) -> Res {
    let b = Blocking {
        index: q.index,
        wait: q.wait,
    };
    block(&sv, &b).await;
    let idx = sv.store.index();
    let list: Vec<AllocListStub> = sv.store.read(|s| {
        let mut v: Vec<AllocListStub> = s
            .allocs
            .values()
            .filter(|a| {
                q.node
                    .as_ref()
                    .is_none_or(|n| a.node_id.starts_with(n.as_str()))
            })
            .filter(|a| q.job.as_ref().is_none_or(|j| &a.job_id == j))
            .filter(|a| access.sees(&a.namespace, Capability::ReadJob))
            .map(|a| AllocListStub::from(a.as_ref()))
            .collect();
        v.sort_by(|a, b| b.create_time.cmp(&a.create_time).then(a.id.cmp(&b.id)));
        v
    });
    Ok(json_at(idx, &list))
}

async fn read_alloc(
    State(sv): S,
    access: Access,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<Blocking>,
) -> Res {
    block(&sv, &q).await;
    let idx = sv.store.index();
    sv.store.read(|s| {
        let a = ops::by_prefix("allocation", &id, s.allocs.iter())?;
        access.require(&a.namespace, Capability::ReadJob)?;
        Ok(json_at(idx, a.as_ref()))
    })
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    task: Option<String>,
    #[serde(rename = "type", default)]
    stream: Option<String>,
    #[serde(default)]
    follow: bool,
    #[serde(default)]
    tail: Option<u64>,
}

/// Logs live on the node; the server relays the agent's answer.
async fn alloc_logs(
    State(sv): S,
    access: Access,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Res {
    let (alloc, addr) = sv.store.read(|s| {
        let a = ops::by_prefix("allocation", &id, s.allocs.iter())?.clone();
        access.require(&a.namespace, Capability::ReadLogs)?;
        let addr = s
            .nodes
            .get(&a.node_id)
            .and_then(|n| n.attributes.get(ops::nodes::HTTP_ADDR_ATTR).cloned());
        Ok::<_, ServerError>((a, addr))
    })?;
    let task = match q.task {
        Some(t) => t,
        None => match alloc.task_states.keys().next() {
            Some(t) if alloc.task_states.len() == 1 => t.clone(),
            _ => {
                return Err(ServerError::BadRequest(format!(
                    "allocation {} has several tasks; name one with ?task=",
                    alloc.short_id()
                )));
            }
        },
    };
    let mut query: Vec<(&str, String)> = vec![
        ("task", task),
        ("type", q.stream.unwrap_or_else(|| "stdout".to_string())),
        ("follow", q.follow.to_string()),
    ];
    if let Some(t) = q.tail {
        query.push(("tail", t.to_string()));
    }
    let path = format!("/v1/client/allocation/{}/logs", alloc.id);
    let query_string = serde_urlencoded::to_string(&query)
        .map_err(|e| ServerError::Internal(format!("logs query: {e}")))?;
    let req = crate::tunnel::agent_request(
        &sv,
        axum::http::Method::GET,
        &format!("{path}?{query_string}"),
        Body::empty(),
    )?;
    if let Some(resp) = sv.tunnels.send(&alloc.node_id, Duration::ZERO, req).await {
        return Ok(resp?.map(Body::new).into_response());
    }
    let Some(addr) = addr else {
        return Err(ServerError::AgentUnreachable {
            node: alloc.node_id.clone(),
            reason: "the agent has no tunnel open and registered no HTTP address".to_string(),
        });
    };
    let (client, base) = sv.agent_client(&alloc.node_id, &addr)?;
    let url = format!("{base}{path}");
    let resp = client
        .get(&url)
        .header(TOKEN_HEADER, sv.secret())
        .query(&query)
        .send()
        .await
        .map_err(|e| ServerError::AgentUnreachable {
            node: alloc.node_id.clone(),
            reason: e.to_string(),
        })?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = Body::from_stream(resp.bytes_stream());
    Ok((status, body).into_response())
}

/// Leftovers live on the node; the server relays the agent's answer.
async fn node_gc(State(sv): S, ApiPath(id): ApiPath<String>) -> Res {
    let (node_id, addr) = sv.store.read(|s| {
        let id = ops::nodes::resolve_id(s, &id)?;
        let addr = s
            .nodes
            .get(&id)
            .and_then(|n| n.attributes.get(ops::nodes::HTTP_ADDR_ATTR).cloned());
        Ok::<_, ServerError>((id, addr))
    })?;
    let unreachable = |reason: String| ServerError::AgentUnreachable {
        node: node_id.clone(),
        reason,
    };
    let req = crate::tunnel::agent_request(
        &sv,
        axum::http::Method::POST,
        "/v1/client/gc",
        Body::empty(),
    )?;
    if let Some(resp) = sv.tunnels.send(&node_id, Duration::ZERO, req).await {
        return Ok(resp?.map(Body::new).into_response());
    }
    let addr = addr.ok_or_else(|| {
        unreachable("the agent has no tunnel open and registered no HTTP address".into())
    })?;
    let (client, base) = sv.agent_client(&node_id, &addr)?;
    let resp = client
        .post(format!("{base}/v1/client/gc"))
        .header(TOKEN_HEADER, sv.secret())
        .send()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = resp.bytes().await.map_err(|e| unreachable(e.to_string()))?;
    Ok((
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

async fn list_evals(State(sv): S, access: Access, ApiQuery(q): ApiQuery<Blocking>) -> Res {
    block(&sv, &q).await;
    let idx = sv.store.index();
    let list: Vec<Evaluation> = sv.store.read(|s| {
        let mut v: Vec<Evaluation> = s
            .evals
            .values()
            .filter(|e| access.sees(&e.namespace, Capability::ReadJob))
            .cloned()
            .collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.create_index));
        v
    });
    Ok(json_at(idx, &list))
}

async fn read_eval(
    State(sv): S,
    access: Access,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<Blocking>,
) -> Res {
    block(&sv, &q).await;
    let idx = sv.store.index();
    sv.store.read(|s| {
        let e = ops::by_prefix("evaluation", &id, s.evals.iter())?;
        access.require(&e.namespace, Capability::ReadJob)?;
        Ok(json_at(idx, e))
    })
}

fn node_stub(sv: &Server, s: &St, n: &Node) -> NodeListStub {
    NodeListStub {
        id: n.id.clone(),
        name: n.name.clone(),
        datacenter: n.datacenter.clone(),
        address: n.address.clone(),
        status: n.status,
        eligible: n.eligible,
        drain: n.drain,
        drivers: n
            .drivers
            .iter()
            .filter(|(_, d)| d.detected && d.healthy)
            .map(|(k, _)| k.clone())
            .collect(),
        resources: n.resources,
        allocs_running: s
            .node_allocs(&n.id)
            .iter()
            .filter(|a| a.client_status == ClientStatus::Running)
            .count() as u32,
        // The store keeps what each node's live allocations hold.
        allocated: s
            .usage
            .get(&n.id)
            .map_or_else(NodeAllocated::default, |u| NodeAllocated {
                cpu: u.cpu,
                memory: u.memory,
            }),
        agent_version: n.agent_version.clone(),
        last_heartbeat: sv.heartbeats.last_seen(&n.id).unwrap_or(n.last_heartbeat),
        modify_index: n.modify_index,
    }
}

async fn list_nodes(State(sv): S, ApiQuery(q): ApiQuery<Blocking>) -> Res {
    block(&sv, &q).await;
    let idx = sv.store.index();
    let list: Vec<NodeListStub> = sv
        .store
        .read(|s| s.nodes.values().map(|n| node_stub(&sv, s, n)).collect());
    Ok(json_at(idx, &list))
}

async fn read_node(
    State(sv): S,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<Blocking>,
) -> Res {
    block(&sv, &q).await;
    let idx = sv.store.index();
    sv.store.read(|s| {
        let n = match s.nodes.values().find(|n| n.name == id) {
            Some(n) => n,
            None => ops::by_prefix("node", &id, s.nodes.iter())?,
        };
        let mut n = n.clone();
        if let Some(t) = sv.heartbeats.last_seen(&n.id) {
            n.last_heartbeat = t;
        }
        Ok(json_at(idx, &n))
    })
}

async fn drain_node(
    State(sv): S,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<NodeDrainRequest>,
) -> Res {
    let (_, idx) = sv
        .store
        .commit(move |s: &St| {
            let batch = ops::nodes::drain(s, &mut Env::live(), &id, req.enable)?;
            Ok::<_, ServerError>((batch, ()))
        })
        .await?;
    sv.evals_ready.notify_one();
    Ok(json_at(
        idx,
        &EvalResponse {
            eval_id: None,
            index: idx,
        },
    ))
}

async fn node_eligibility(
    State(sv): S,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<NodeEligibilityRequest>,
) -> Res {
    let (_, idx) = sv
        .store
        .commit(move |s: &St| {
            let batch = ops::nodes::eligibility(s, &mut Env::live(), &id, req.eligible)?;
            Ok::<_, ServerError>((batch, ()))
        })
        .await?;
    sv.evals_ready.notify_one();
    Ok(json_at(
        idx,
        &EvalResponse {
            eval_id: None,
            index: idx,
        },
    ))
}

async fn agent_register(
    State(sv): S,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Res {
    auth::node(&sv, &caller, &headers, &req.node.id)?;
    let node_id = req.node.id.clone();
    let (_, idx) = sv
        .store
        .commit(move |s: &St| {
            let batch = ops::nodes::register(s, &mut Env::live(), req.node, req.http_addr)?;
            Ok::<_, ServerError>((batch, ()))
        })
        .await?;
    sv.heartbeats.beat(&node_id, sv.cfg.heartbeat_ttl);
    sv.evals_ready.notify_one();
    tracing::info!(node = %node_id, "node registered");
    Ok(json_at(
        idx,
        &RegisterResponse {
            node_id,
            heartbeat_ttl_ms: sv.cfg.heartbeat_ttl.as_millis() as u64,
            index: idx,
        },
    ))
}

async fn agent_heartbeat(
    State(sv): S,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Res {
    auth::node(&sv, &caller, &headers, &id)?;
    let status = sv.store.read(|s| s.nodes.get(&id).map(|n| n.status));
    match status {
        None => return Err(ServerError::not_found("node", &id)),
        Some(NodeStatus::Ready) => {}
        Some(_) => {
            let nid = id.clone();
            sv.store
                .commit(move |s: &St| {
                    let batch = ops::nodes::heartbeat(s, &mut Env::live(), &nid)?;
                    Ok::<_, ServerError>((batch, ()))
                })
                .await?;
            sv.evals_ready.notify_one();
        }
    }
    sv.heartbeats.beat(&id, sv.cfg.heartbeat_ttl);
    let idx = sv.store.index();
    Ok(json_at(
        idx,
        &HeartbeatResponse {
            heartbeat_ttl_ms: sv.cfg.heartbeat_ttl.as_millis() as u64,
            index: idx,
        },
    ))
}

/// `?since=N&ids=on_removal` of an agent's allocation watch.
#[derive(Debug, Default, serde::Deserialize)]
struct Since {
    #[serde(default)]
    since: Option<u64>,
    #[serde(default)]
    ids: IdsMode,
}

/// When a `since` answer lists every allocation id the node holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum IdsMode {
    /// In every answer (what agents before `on_removal` expect).
    #[default]
    Always,
    /// Only when one left the node's list after `since`.
    OnRemoval,
}

async fn agent_allocs(
    State(sv): S,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<Blocking>,
    ApiQuery(Since { since, ids }): ApiQuery<Since>,
) -> Res {
    auth::node(&sv, &caller, &headers, &id)?;
    if sv.store.read(|s| !s.nodes.contains_key(&id)) {
        return Err(ServerError::not_found("node", &id));
    }
    let want = q.index.unwrap_or(0);
    if want != 0 {
        sv.store.wait_for_node(&id, want, q.wait()).await;
    }
    // The answer's index is the state's: any later change to this node's
    // allocations has a higher modify index, so the agent's next watch
    // blocks until there is one (a node without allocations included).
    // Written by hand so each job is serialized once for all its nodes.
    //
    // The agent stops every allocation the answer leaves out, so one whose
    // job version cannot be read fails the whole answer (the agent retries)
    // instead of being dropped. Only a purged job's allocations are left
    // out: the server is stopping them anyway.
    //
    // A version older than its job's current one is only on disk. The state
    // lock is not held while it is read (every commit would wait for the
    // read), so the answer leaves a gap for it, filled once read.
    //
    // With `since`, only allocations the server changed after it are
    // written (their `alloc_modify_index`, so the agent's own reports do
    // not come back to it, or their current job's), with every id the node
    // holds (with `ids=on_removal`, only when one left the list after
    // `since`): thousands of nodes each watching a list of hundreds would
    // otherwise be sent the whole list, or all its ids, at every change.
    let (idx, out, gaps, failed) = sv.store.read(|s| {
        let mut out = Vec::with_capacity(1024);
        let mut gaps = Vec::new();
        let mut failed = None;
        let node_allocs = s.node_allocs(&id);
        // The jobs changed after `since` (a few, on a busy cluster): an
        // allocation whose current job version was rewritten is sent
        // again. Finding them once spares a job lookup per allocation.
        let recent: Vec<&Job> = since.map_or_else(Vec::new, |n| s.jobs_modified_after(n).collect());
        let changed = |a: &Allocation| {
            since.is_none_or(|n| {
                a.alloc_modify_index > n
                    || recent.iter().any(|j| {
                        j.version == a.job_version && j.id == a.job_id && j.namespace == a.namespace
                    })
            })
        };
        // Every id, with `since`, unless the agent asked for them only
        // when one left the node's list after its last answer: with
        // nothing gone, what it holds plus what changed is the list.
        let all_ids =
            since.is_some_and(|n| ids == IdsMode::Always || s.node_removed_index(&id) > n);
        if since.is_some() {
            out.push(b'{');
        }
        if all_ids {
            // A purged job's allocations are left out.
            let listed = node_allocs
                .iter()
                .filter(|a| s.jobs.contains_key(&a.job_key()))
                .map(|a| a.id.as_str());
            out.extend_from_slice(b"\"ids\":");
            if let Err(e) = serde_json::to_writer(&mut out, &listed.collect::<Vec<_>>()) {
                failed = Some(ServerError::Internal(format!("encoding the ids: {e}")));
            }
            out.push(b',');
        }
        if since.is_some() {
            out.extend_from_slice(b"\"changed\":");
        }
        out.push(b'[');
        let mut first = true;
        for a in node_allocs.into_iter().filter(|a| changed(a)) {
            if failed.is_some() {
                break;
            }
            let Some(job) = s.jobs.get(&a.job_key()) else {
                continue;
            };
            if !first {
                out.push(b',');
            }
            first = false;
            if let Err(e) = write_alloc(&sv, a, job, &mut out, &mut gaps) {
                failed = Some(e);
            }
        }
        out.push(b']');
        if since.is_some() {
            out.push(b'}');
        }
        (s.index.max(1), out, gaps, failed)
    });
    // Gaps before the failed allocation come first, as they came first in
    // the list.
    let body = fill_gaps(&sv, out, &gaps).await?;
    if let Some(e) = failed {
        return Err(e);
    }
    let mut resp = (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&idx.to_string()) {
        resp.headers_mut().insert(INDEX_HEADER, v);
    }
    Ok(resp)
}

/// Where an allocation's job goes in an agent's list, for a version that
/// is not its job's current one.
struct Gap {
    at: usize,
    alloc: String,
    job: String,
    version: u64,
}

impl Gap {
    fn unavailable(&self, reason: String) -> ServerError {
        ServerError::AllocUnavailable {
            alloc: self.alloc.clone(),
            job: self.job.clone(),
            version: self.version,
            reason,
        }
    }
}

/// Appends `a` and its job to an agent's list, given the job's `current`
/// version; a job version the state does not hold becomes a [`Gap`].
fn write_alloc(
    sv: &Server,
    a: &Allocation,
    current: &Job,
    out: &mut Vec<u8>,
    gaps: &mut Vec<Gap>,
) -> Result<(), ServerError> {
    let unavailable = |reason: String| ServerError::AllocUnavailable {
        alloc: a.id.clone(),
        job: a.job_id.clone(),
        version: a.job_version,
        reason,
    };
    let job = if current.version == a.job_version {
        let j = sv
            .job_json
            .get(current)
            .map_err(|e| unavailable(format!("encoding the job: {e}")))?;
        Some(j)
    } else {
        None
    };
    out.extend_from_slice(b"{\"alloc\":");
    serde_json::to_writer(&mut *out, a)
        .map_err(|e| unavailable(format!("encoding the allocation: {e}")))?;
    out.extend_from_slice(b",\"job\":");
    match job {
        Some(j) => out.extend_from_slice(j.as_bytes()),
        None => gaps.push(Gap {
            at: out.len(),
            alloc: a.id.clone(),
            job: a.job_key(),
            version: a.job_version,
        }),
    }
    out.push(b'}');
    Ok(())
}

/// Reads the job version of every gap (each distinct one once, on the
/// store's reader) and writes it in; the first gap whose version cannot be
/// read fails the whole list.
async fn fill_gaps(sv: &Server, out: Vec<u8>, gaps: &[Gap]) -> Result<Vec<u8>, ServerError> {
    if gaps.is_empty() {
        return Ok(out);
    }
    let mut read: HashMap<(&str, u64), Result<Arc<str>, String>> = HashMap::new();
    for g in gaps {
        if read.contains_key(&(g.job.as_str(), g.version)) {
            continue;
        }
        let json = match sv.store.job_version(&g.job, g.version).await {
            Ok(Some(j)) => sv
                .job_json
                .get(&j)
                .map_err(|e| format!("encoding the job: {e}")),
            Ok(None) => Err("job version not found".to_string()),
            Err(e) => Err(e.to_string()),
        };
        read.insert((g.job.as_str(), g.version), json);
    }
    let mut body = Vec::with_capacity(out.len() + gaps.len() * 1024);
    let mut from = 0;
    for g in gaps {
        let json = match &read[&(g.job.as_str(), g.version)] {
            Ok(j) => j,
            Err(reason) => return Err(g.unavailable(reason.clone())),
        };
        body.extend_from_slice(&out[from..g.at]);
        body.extend_from_slice(json.as_bytes());
        from = g.at;
    }
    body.extend_from_slice(&out[from..]);
    Ok(body)
}

/// Jobs as JSON by job key (the same id may be two jobs in two namespaces),
/// version and modify index: every watch answer carries
/// the job of each allocation, and thousands of nodes run the same jobs.
#[derive(Default)]
pub(crate) struct JobJsonCache(
    std::sync::Mutex<std::collections::HashMap<(String, u64, u64), Arc<str>>>,
);

/// Entries kept before the cache starts over.
const JOB_JSON_CACHE_MAX: usize = 4096;

impl JobJsonCache {
    fn get(&self, job: &Job) -> Result<Arc<str>, serde_json::Error> {
        let key = (job.key(), job.version, job.modify_index);
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = m.get(&key) {
            return Ok(v.clone());
        }
        let text: Arc<str> = serde_json::to_string(job)?.into();
        if m.len() >= JOB_JSON_CACHE_MAX {
            m.clear();
        }
        m.insert(key, text.clone());
        Ok(text)
    }
}

async fn agent_update(
    State(sv): S,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<AllocUpdateRequest>,
) -> Res {
    auth::node(&sv, &caller, &headers, &id)?;
    let node_id = id.clone();
    let (_, idx) = sv
        .store
        .commit(move |s: &St| {
            let batch = ops::allocs::update(s, &mut Env::live(), &node_id, req.allocs)?;
            Ok::<_, ServerError>((batch, ()))
        })
        .await?;
    sv.evals_ready.notify_one();
    Ok(json_at(idx, &AllocUpdateResponse { index: idx }))
}

impl Server {
    /// The client and base URL to reach node `node`'s agent at `addr`. Over
    /// TLS the agent is reached by its certificate's name
    /// (`<node>.node.edge`, resolved to the registered address), so the
    /// server checks it talks to that node and the agent that it is the
    /// server; plain HTTP carries the join token instead.
    pub(crate) fn agent_client(
        &self,
        node: &str,
        addr: &str,
    ) -> Result<(reqwest::Client, String), ServerError> {
        let Some(tls) = &self.agent_tls else {
            return Ok((self.http.clone(), addr.to_string()));
        };
        let unreachable = |reason: String| ServerError::AgentUnreachable {
            node: node.to_string(),
            reason,
        };
        let sock: std::net::SocketAddr = addr
            .strip_prefix("https://")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| {
                unreachable(format!(
                    "registered address {addr:?} is not https://IP:PORT"
                ))
            })?;
        let name = format!("{node}.{}", edge_api::tls::NODE_DNS_SUFFIX);
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .use_preconfigured_tls(tls.clone())
            .resolve(&name, sock)
            .build()
            .map_err(|e| unreachable(format!("http client: {e}")))?;
        Ok((client, format!("https://{name}:{}", sock.port())))
    }
}

/// A node's first certificate, asked for with the join token. A node id
/// that is up, or revoked, cannot be taken by another token holder.
async fn agent_csr(State(sv): S, headers: HeaderMap, ApiJson(req): ApiJson<CsrRequest>) -> Res {
    auth::check_token(&sv, &headers)?;
    let (csr, node) = Pki::csr_node(&req.csr)?;
    sv.store.read(|s| match s.nodes.get(&node) {
        Some(n) if n.revoked => Err(ServerError::Unauthorized(format!("node {node} is revoked"))),
        Some(n) if n.status == NodeStatus::Ready => Err(ServerError::Conflict(format!(
            "node {node} is already joined and up: it renews its certificate with that certificate; a node that lost its data dir joins under a new id"
        ))),
        _ => Ok(()),
    })?;
    sign(&sv, csr, &node)
}

fn sign(sv: &Server, csr: rcgen::CertificateSigningRequestParams, node: &str) -> Res {
    let (cert, not_after) = sv.pki.sign_node(csr, node, sv.cfg.node_cert_ttl)?;
    tracing::info!(%node, not_after, "node certificate issued");
    Ok(json_at(
        sv.store.index(),
        &CsrResponse {
            cert,
            ca: sv.pki.ca_pem().to_string(),
            not_after,
        },
    ))
}

/// A node renews its certificate with its current one.
async fn agent_renew(
    State(sv): S,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CsrRequest>,
) -> Res {
    if !sv.cfg.tls {
        return Err(ServerError::BadRequest(
            "this server speaks plain HTTP: there are no certificates to renew".to_string(),
        ));
    }
    let (csr, node) = Pki::csr_node(&req.csr)?;
    auth::node(&sv, &caller, &headers, &node)?;
    sign(&sv, csr, &node)
}

async fn revoke_node(State(sv): S, ApiPath(id): ApiPath<String>) -> Res {
    let (node_id, idx) = sv
        .store
        .commit(move |s: &St| ops::nodes::revoke(s, &mut Env::live(), &id))
        .await?;
    sv.evals_ready.notify_one();
    sv.tunnels.drop_node(&node_id);
    tracing::info!(node = %node_id, "node revoked");
    Ok(json_at(
        idx,
        &NodeRevokeResponse {
            node_id,
            index: idx,
        },
    ))
}

async fn rotate_token(State(sv): S) -> Res {
    let token = sv.rotate_token()?;
    Ok(json_at(sv.store.index(), &TokenRotateResponse { token }))
}

async fn health(State(sv): S) -> Res {
    let nodes_ready = sv.store.read(|s| {
        s.nodes
            .values()
            .filter(|n| n.status == NodeStatus::Ready)
            .count() as u32
    });
    let idx = sv.store.index();
    Ok(json_at(
        idx,
        &HealthResponse {
            status: "ok".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            index: idx,
            nodes_ready,
        },
    ))
}

/// Waits until the catalog's own index passes `?index=`, then returns it.
async fn catalog_after(sv: &Server, q: &Blocking) -> Result<Arc<Catalog>, ServerError> {
    let want = q.index.unwrap_or(0);
    let deadline = tokio::time::Instant::now() + q.wait();
    let mut seen = sv.store.index();
    loop {
        let cat = sv.catalog.get(sv);
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if want == 0 || cat.index > want || left.is_zero() {
            return Ok(cat);
        }
        seen = sv.store.wait_for(seen, left).await;
    }
}

async fn list_services(State(sv): S, access: Access, ApiQuery(q): ApiQuery<Blocking>) -> Res {
    let cat = catalog_after(&sv, &q).await?;
    let list: Vec<ServiceListStub> = cat
        .services
        .values()
        .filter(|s| access.sees(&s.namespace, Capability::ReadJob))
        .map(|s| ServiceListStub {
            name: s.name.clone(),
            namespace: s.namespace.clone(),
            tags: s.tags.clone(),
            instances: s.instances.len() as u32,
            passing: s.instances.iter().filter(|i| i.serving()).count() as u32,
            publish: s.publish.clone(),
        })
        .collect();
    Ok(json_at(cat.index, &list))
}

async fn read_service(
    State(sv): S,
    access: Access,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<Blocking>,
) -> Res {
    let cat = catalog_after(&sv, &q).await?;
    match cat
        .services
        .get(&edge_spec::service_key(&access.namespace, &name))
    {
        Some(s) => Ok(json_at(cat.index, &s.instances)),
        None => Err(ServerError::not_found("service", &name)),
    }
}

/// The whole catalog: what agents feed their DNS and load balancer from.
async fn read_catalog(
    State(sv): S,
    access: crate::acl::Access,
    ApiQuery(q): ApiQuery<Blocking>,
) -> Res {
    let cat = catalog_after(&sv, &q).await?;
    let cap = Capability::ReadJob;
    if cat
        .services
        .values()
        .all(|s| access.allows(&s.namespace, cap))
    {
        return Ok(json_at(cat.index, &*cat));
    }
    let visible = Catalog {
        index: cat.index,
        services: cat
            .services
            .iter()
            .filter(|(_, s)| access.allows(&s.namespace, cap))
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect(),
        // Network keys start with their namespace.
        networks: cat
            .networks
            .iter()
            .filter(|(k, _)| k.split('/').next().is_some_and(|ns| access.allows(ns, cap)))
            .map(|(k, s)| (k.clone(), *s))
            .collect(),
    };
    Ok(json_at(visible.index, &visible))
}
