//! The `/v1/deployment*` handlers: reading deployments (blocking queries, so
//! `edge job run` can follow one) and promote, pause, resume and fail.

use crate::Server;
use crate::acl::Access;
use crate::error::ServerError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, Blocking, block, json_at};
use crate::ops::{self, Env};
use axum::extract::State;
use axum::response::Response;
use edge_api::{DeploymentAllocHealthRequest, DeploymentPromoteRequest, DeploymentUpdateResponse};
use edge_spec::Deployment;
use edge_spec::acl::Capability;
use edge_store::State as St;
use std::sync::Arc;

type S = State<Arc<Server>>;
type Res = Result<Response, ServerError>;

fn newest_first(mut v: Vec<Deployment>) -> Vec<Deployment> {
    v.sort_by_key(|d| std::cmp::Reverse((d.create_index, d.create_time)));
    v
}

pub(crate) async fn list(State(sv): S, access: Access, ApiQuery(q): ApiQuery<Blocking>) -> Res {
    block(&sv, &q).await;
    let idx = sv.store.index();
    let list = sv.store.read(|s| {
        newest_first(
            s.deployments
                .values()
                .filter(|d| access.sees(&d.namespace, Capability::ReadJob))
                .cloned()
                .collect(),
        )
    });
    Ok(json_at(idx, &list))
}

pub(crate) async fn read(
    State(sv): S,
    access: Access,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<Blocking>,
) -> Res {
    block(&sv, &q).await;
    let idx = sv.store.index();
    sv.store.read(|s| {
        let d = ops::by_prefix("deployment", &id, s.deployments.iter())?;
        access.require(&d.namespace, Capability::ReadJob)?;
        Ok(json_at(idx, d))
    })
}

pub(crate) async fn of_job(State(sv): S, access: Access, ApiPath(id): ApiPath<String>) -> Res {
    let idx = sv.store.index();
    let key = edge_spec::job_key(&access.namespace, &id);
    sv.store.read(|s| {
        if !s.jobs.contains_key(&key) && !s.deployments_by_job.contains_key(&key) {
            return Err(ServerError::no_job(&access.namespace, &id));
        }
        let list: Vec<Deployment> = s.job_deployments(&key).into_iter().cloned().collect();
        Ok(json_at(idx, &newest_first(list)))
    })
}

pub(crate) async fn latest_of_job(
    State(sv): S,
    access: Access,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<Blocking>,
) -> Res {
    block(&sv, &q).await;
    let idx = sv.store.index();
    let key = edge_spec::job_key(&access.namespace, &id);
    sv.store.read(|s| match s.latest_deployment(&key) {
        Some(d) => Ok(json_at(idx, d)),
        None if s.jobs.contains_key(&key) => Err(ServerError::NotFound {
            kind: "deployment of job",
            id,
        }),
        None => Err(ServerError::no_job(&access.namespace, &id)),
    })
}

/// Commits an operator's action on deployment `id` (by prefix), once the
/// caller may submit jobs in its namespace, and answers with the
/// deployment as changed.
async fn act(
    sv: &Server,
    access: Access,
    id: String,
    f: impl FnOnce(
        &St,
        &mut Env,
    ) -> Result<(edge_store::Batch, Deployment, Option<String>), ServerError>
    + Send
    + 'static,
) -> Res {
    let ((deployment, eval_id), idx) = sv
        .store
        .commit(move |s: &St| {
            let d = ops::by_prefix("deployment", &id, s.deployments.iter())?;
            access.require(&d.namespace, Capability::SubmitJob)?;
            let (batch, d, eval) = f(s, &mut Env::live())?;
            Ok::<_, ServerError>((batch, (d, eval)))
        })
        .await?;
    if eval_id.is_some() {
        sv.evals_ready.notify_one();
    }
    Ok(json_at(
        idx,
        &DeploymentUpdateResponse {
            eval_id,
            deployment,
            index: idx,
        },
    ))
}

pub(crate) async fn promote(
    State(sv): S,
    access: Access,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<DeploymentPromoteRequest>,
) -> Res {
    act(&sv, access, id.clone(), move |s, env| {
        ops::deployments::promote(s, env, &id, &req.groups).map(|(b, d, e)| (b, d, Some(e)))
    })
    .await
}

pub(crate) async fn pause(State(sv): S, access: Access, ApiPath(id): ApiPath<String>) -> Res {
    act(&sv, access, id.clone(), move |s, env| {
        ops::deployments::pause(s, env, &id, true)
    })
    .await
}

pub(crate) async fn resume(State(sv): S, access: Access, ApiPath(id): ApiPath<String>) -> Res {
    act(&sv, access, id.clone(), move |s, env| {
        ops::deployments::pause(s, env, &id, false)
    })
    .await
}

pub(crate) async fn fail(State(sv): S, access: Access, ApiPath(id): ApiPath<String>) -> Res {
    act(&sv, access, id.clone(), move |s, env| {
        ops::deployments::fail(s, env, &id).map(|(b, d, e)| (b, d, Some(e)))
    })
    .await
}

pub(crate) async fn alloc_health(
    State(sv): S,
    access: Access,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<DeploymentAllocHealthRequest>,
) -> Res {
    act(&sv, access, id.clone(), move |s, env| {
        ops::deployments::set_health(s, env, &id, &req.healthy, &req.unhealthy)
    })
    .await
}
