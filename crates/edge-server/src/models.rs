//! The model-serving groups (`model` blocks) and one inference through the
//! server: what the dashboard's model form sends, so a browser that reaches
//! only the server can still ask a model that runs on a node.

use crate::Server;
use crate::acl::Access;
use crate::error::ServerError;
use crate::extract::{ApiPath, json_at};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use edge_api::{ModelListStub, ServiceInstance};
use edge_spec::acl::Capability;
use edge_spec::model::{MODEL_PORT, MODEL_TASK, valid_model_name};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

type S = State<Arc<Server>>;
type Res = Result<Response, ServerError>;

/// How long one inference may take before the server gives up on it.
const INFER_TIMEOUT: Duration = Duration::from_secs(30);

/// `GET /v1/models`: every group a `model` block made, in the namespaces the
/// caller may read, with the model names it serves and its instances.
pub(crate) async fn list(State(sv): S, access: Access) -> Res {
    let cat = sv.catalog.get(&sv);
    let idx = sv.store.index();
    let mut out: Vec<ModelListStub> = sv.store.read(|s| {
        let mut out = Vec::new();
        for job in s.jobs.values() {
            if job.stop || !access.sees(&job.namespace, Capability::ReadJob) {
                continue;
            }
            for g in &job.groups {
                let Some(task) = g
                    .tasks
                    .iter()
                    .find(|t| t.driver == "model" && t.name == MODEL_TASK)
                else {
                    continue;
                };
                let Some(service) = g
                    .services
                    .iter()
                    .find(|s| s.port.as_deref() == Some(MODEL_PORT))
                else {
                    continue;
                };
                let mut models: Vec<String> = Vec::new();
                if let Some(n) = task.config.get("name").and_then(|v| v.as_str()) {
                    models.push(n.to_string());
                }
                if let Some(more) = task.config.get("models").and_then(|v| v.as_array()) {
                    models.extend(
                        more.iter()
                            .filter_map(|m| m.get("name").and_then(|n| n.as_str()))
                            .map(str::to_string),
                    );
                }
                models.dedup();
                let key = edge_spec::service_key(&job.namespace, &service.name);
                let instances: Vec<&ServiceInstance> = cat
                    .services
                    .get(&key)
                    .map(|c| c.instances.iter().filter(|i| i.job_id == job.id).collect())
                    .unwrap_or_default();
                out.push(ModelListStub {
                    namespace: job.namespace.clone(),
                    job_id: job.id.clone(),
                    group: g.name.clone(),
                    service: service.name.clone(),
                    models,
                    instances: instances.len() as u32,
                    passing: instances.iter().filter(|i| i.serving()).count() as u32,
                });
            }
        }
        out
    });
    out.sort_by(|a, b| (&a.namespace, &a.service).cmp(&(&b.namespace, &b.service)));
    Ok(json_at(idx, &out))
}

/// `GET /v1/model/{service}/meta/{model}`: the model's KServe V2 metadata
/// (inputs, outputs, shapes), from a passing instance.
pub(crate) async fn meta(
    State(sv): S,
    access: Access,
    ApiPath((service, model)): ApiPath<(String, String)>,
) -> Res {
    let target = instance(&sv, &access, &service, &model)?;
    forward(
        &service,
        reqwest::Method::GET,
        &format!("{target}/v2/models/{model}"),
        None,
    )
    .await
}

/// `POST /v1/model/{service}/infer/{model}`: one KServe V2 inference request
/// (the JSON body as `/v2/models/M/infer` takes it), sent to a passing
/// instance; the model server's answer comes back as it is.
pub(crate) async fn infer(
    State(sv): S,
    access: Access,
    ApiPath((service, model)): ApiPath<(String, String)>,
    body: Bytes,
) -> Res {
    let target = instance(&sv, &access, &service, &model)?;
    forward(
        &service,
        reqwest::Method::POST,
        &format!("{target}/v2/models/{model}/infer"),
        Some(body),
    )
    .await
}

/// `http://ADDR:PORT` of a passing instance of `service` in the caller's
/// namespace, once the model name is known to be a plain one.
fn instance(
    sv: &Server,
    access: &Access,
    service: &str,
    model: &str,
) -> Result<String, ServerError> {
    if !valid_model_name(model) {
        return Err(ServerError::BadRequest(format!(
            "model name {model:?}: expected letters, digits, '.', '-' and '_'"
        )));
    }
    access.require(&access.namespace, Capability::ReadJob)?;
    let cat = sv.catalog.get(sv);
    let key = edge_spec::service_key(&access.namespace, service);
    let svc = cat
        .services
        .get(&key)
        .ok_or_else(|| ServerError::not_found("service", service))?;
    let inst = svc.instances.iter().find(|i| i.serving()).ok_or_else(|| {
        ServerError::ModelUnavailable {
            service: service.to_string(),
            reason: format!("no passing instance ({} listed)", svc.instances.len()),
        }
    })?;
    Ok(format!("http://{}:{}", inst.address, inst.port))
}

async fn forward(service: &str, method: reqwest::Method, url: &str, body: Option<Bytes>) -> Res {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(INFER_TIMEOUT)
            .build()
            .unwrap_or_default()
    });
    let mut req = client.request(method, url);
    if let Some(b) = body {
        req = req.header(header::CONTENT_TYPE, "application/json").body(b);
    }
    let unreachable = |e: reqwest::Error| ServerError::ModelUnavailable {
        service: service.to_string(),
        reason: format!("{url}: {e}"),
    };
    let resp = req.send().await.map_err(unreachable)?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let bytes = resp.bytes().await.map_err(unreachable)?;
    Ok((status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}
