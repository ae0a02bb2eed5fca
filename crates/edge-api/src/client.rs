//! A small typed client over reqwest: blocking queries, token header, and
//! errors that keep the server's message.

use crate::error::ApiError;
use crate::types::*;
use crate::{INDEX_HEADER, TOKEN_HEADER};
use edge_spec::{Allocation, Deployment, Evaluation, Job, Node};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// How long a node's client keeps an idle connection: past an agent's
/// 20 s between heartbeats, under the server's `listen::NODE_IDLE_TIMEOUT`,
/// so a pooled connection is never reused just as the server closes it.
pub const NODE_POOL_IDLE: Duration = Duration::from_secs(60);

/// The same for every other client, under the servers' 10 s
/// `listen::Limits::header_timeout`.
const ANON_POOL_IDLE: Duration = Duration::from_secs(5);

/// `?index=N&wait=D`: answer once the state passes index N, or after D.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryOptions {
    pub index: u64,
    pub wait: Option<Duration>,
}

impl QueryOptions {
    pub fn blocking(index: u64, wait: Duration) -> QueryOptions {
        QueryOptions {
            index,
            wait: Some(wait),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct QueryMeta {
    pub index: u64,
}

#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    /// Sent as `?namespace=` with every request; routes about one object
    /// by id or about nodes ignore it.
    namespace: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(addr: &str, token: Option<String>) -> Result<Client, ApiError> {
        Client::build(addr, token, None, ANON_POOL_IDLE)
    }

    /// A client speaking TLS with `tls` (the cluster CA, and perhaps a
    /// certificate of the user's).
    pub fn with_tls(
        addr: &str,
        token: Option<String>,
        tls: rustls::ClientConfig,
    ) -> Result<Client, ApiError> {
        Client::build(addr, token, Some(tls), ANON_POOL_IDLE)
    }

    /// A node's client: mutual TLS with the node's certificate in `tls`,
    /// keeping its connection between heartbeats.
    pub fn for_node(addr: &str, tls: rustls::ClientConfig) -> Result<Client, ApiError> {
        Client::build(addr, None, Some(tls), NODE_POOL_IDLE)
    }

    fn build(
        addr: &str,
        token: Option<String>,
        tls: Option<rustls::ClientConfig>,
        idle: Duration,
    ) -> Result<Client, ApiError> {
        let base = addr.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ApiError::Address {
                addr: addr.to_string(),
                reason: "must start with http:// or https://".to_string(),
            });
        }
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(idle)
            .tcp_nodelay(true);
        if let Some(tls) = tls {
            b = b.use_preconfigured_tls(tls);
        }
        let http = b.build().map_err(|e| ApiError::Connect {
            addr: addr.to_string(),
            source: e,
        })?;
        Ok(Client {
            base,
            token,
            namespace: None,
            http,
        })
    }

    /// The same client asking about namespace `ns` (`*`: every namespace,
    /// on listings); `None` for the server's default, `default`.
    pub fn with_namespace(mut self, ns: Option<String>) -> Client {
        self.namespace = ns.filter(|n| !n.is_empty());
        self
    }

    pub fn address(&self) -> &str {
        &self.base
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        q: QueryOptions,
    ) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            req = req.header(TOKEN_HEADER, t);
        }
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(ns) = &self.namespace {
            params.push(("namespace", ns.clone()));
        }
        if q.index > 0 {
            params.push(("index", q.index.to_string()));
        }
        if let Some(w) = q.wait {
            params.push(("wait", format!("{}ms", w.as_millis())));
            // The server caps waits; the client must outlast the longest one.
            req = req.timeout(w + Duration::from_secs(15));
        } else {
            req = req.timeout(Duration::from_secs(60));
        }
        if !params.is_empty() {
            req = req.query(&params);
        }
        req
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiError> {
        let resp = req.send().await.map_err(|e| ApiError::Connect {
            addr: self.base.clone(),
            source: e,
        })?;
        let status = resp.status();
        if status.is_success() || status == reqwest::StatusCode::SWITCHING_PROTOCOLS {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error)
            .unwrap_or_else(|_| text.trim().to_string());
        Err(ApiError::Status {
            method: method.to_string(),
            path: path.to_string(),
            status: status.as_u16(),
            message,
        })
    }

    async fn decode<T: DeserializeOwned>(
        method: &reqwest::Method,
        path: &str,
        resp: reqwest::Response,
    ) -> Result<(T, QueryMeta), ApiError> {
        let index = resp
            .headers()
            .get(INDEX_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body = resp.json::<T>().await.map_err(|e| ApiError::Decode {
            method: method.to_string(),
            path: path.to_string(),
            source: e,
        })?;
        Ok((body, QueryMeta { index }))
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        q: QueryOptions,
    ) -> Result<(T, QueryMeta), ApiError> {
        let m = reqwest::Method::GET;
        let resp = self
            .send(m.clone(), path, self.request(m.clone(), path, q))
            .await?;
        Self::decode(&m, path, resp).await
    }

    pub async fn write<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ApiError> {
        let mut req = self.request(method.clone(), path, QueryOptions::default());
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = self.send(method.clone(), path, req).await?;
        Ok(Self::decode(&method, path, resp).await?.0)
    }

    /// A raw streaming GET (logs, event stream).
    pub async fn stream(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<reqwest::Response, ApiError> {
        let m = reqwest::Method::GET;
        let mut req = self.http.get(format!("{}{}", self.base, path)).query(query);
        if let Some(t) = &self.token {
            req = req.header(TOKEN_HEADER, t);
        }
        self.send(m, path, req).await
    }

    /// Opens an upgraded connection (`Connection: upgrade`, `Upgrade:
    /// protocol`) on `path`: the agent's tunnel and exec sessions. No
    /// overall timeout: the stream lives as long as its user keeps it.
    pub async fn upgrade<Q: Serialize + ?Sized>(
        &self,
        path: &str,
        protocol: &str,
        query: &Q,
    ) -> Result<reqwest::Upgraded, ApiError> {
        let m = reqwest::Method::GET;
        let mut req = self
            .http
            .get(format!("{}{}", self.base, path))
            .query(query)
            .header(reqwest::header::CONNECTION, "upgrade")
            .header(reqwest::header::UPGRADE, protocol);
        if let Some(t) = &self.token {
            req = req.header(TOKEN_HEADER, t);
        }
        let resp = self.send(m.clone(), path, req).await?;
        if resp.status() != reqwest::StatusCode::SWITCHING_PROTOCOLS {
            return Err(ApiError::Status {
                method: m.to_string(),
                path: path.to_string(),
                status: resp.status().as_u16(),
                message: format!("expected 101 Switching Protocols to {protocol}"),
            });
        }
        resp.upgrade().await.map_err(|e| ApiError::Connect {
            addr: self.base.clone(),
            source: e,
        })
    }

    pub async fn jobs(&self, q: QueryOptions) -> Result<(Vec<JobListStub>, QueryMeta), ApiError> {
        self.get("/v1/jobs", q).await
    }

    pub async fn job(&self, id: &str) -> Result<Job, ApiError> {
        Ok(self
            .get(&format!("/v1/job/{}", enc(id)), QueryOptions::default())
            .await?
            .0)
    }

    pub async fn register(&self, job: &Job) -> Result<JobRegisterResponse, ApiError> {
        let body = JobRegisterRequest {
            job: job.clone(),
            enforce_index: None,
        };
        self.write(reqwest::Method::POST, "/v1/jobs", Some(&body))
            .await
    }

    pub async fn plan(&self, job: &Job) -> Result<JobPlanResponse, ApiError> {
        let body = JobPlanRequest { job: job.clone() };
        self.write(
            reqwest::Method::POST,
            &format!("/v1/job/{}/plan", enc(&job.id)),
            Some(&body),
        )
        .await
    }

    pub async fn stop_job(&self, id: &str, purge: bool) -> Result<EvalResponse, ApiError> {
        let path = format!("/v1/job/{}?purge={purge}", enc(id));
        self.write::<(), _>(reqwest::Method::DELETE, &path, None)
            .await
    }

    pub async fn job_versions(&self, id: &str) -> Result<Vec<Job>, ApiError> {
        Ok(self
            .get(
                &format!("/v1/job/{}/versions", enc(id)),
                QueryOptions::default(),
            )
            .await?
            .0)
    }

    pub async fn revert_job(&self, id: &str, version: u64) -> Result<EvalResponse, ApiError> {
        let body = JobRevertRequest { version };
        self.write(
            reqwest::Method::POST,
            &format!("/v1/job/{}/revert", enc(id)),
            Some(&body),
        )
        .await
    }

    pub async fn scale_job(
        &self,
        id: &str,
        group: &str,
        count: u32,
    ) -> Result<JobRegisterResponse, ApiError> {
        let body = JobScaleRequest {
            group: group.to_string(),
            count,
        };
        self.write(
            reqwest::Method::POST,
            &format!("/v1/job/{}/scale", enc(id)),
            Some(&body),
        )
        .await
    }

    /// Each scaling group's count, bounds, load and recent decisions.
    pub async fn job_scale_status(&self, id: &str) -> Result<JobScaleStatus, ApiError> {
        Ok(self
            .get(
                &format!("/v1/job/{}/scale", enc(id)),
                QueryOptions::default(),
            )
            .await?
            .0)
    }

    /// Dispatches a child of parameterized job `id`.
    pub async fn dispatch(
        &self,
        id: &str,
        req: &JobDispatchRequest,
    ) -> Result<JobLaunchResponse, ApiError> {
        self.write(
            reqwest::Method::POST,
            &format!("/v1/job/{}/dispatch", enc(id)),
            Some(req),
        )
        .await
    }

    /// Launches a child of periodic job `id` now.
    pub async fn periodic_force(&self, id: &str) -> Result<JobLaunchResponse, ApiError> {
        self.write::<(), _>(
            reqwest::Method::POST,
            &format!("/v1/job/{}/periodic/force", enc(id)),
            None,
        )
        .await
    }

    pub async fn job_allocs(
        &self,
        id: &str,
        q: QueryOptions,
    ) -> Result<(Vec<AllocListStub>, QueryMeta), ApiError> {
        self.get(&format!("/v1/job/{}/allocations", enc(id)), q)
            .await
    }

    pub async fn job_evals(&self, id: &str) -> Result<Vec<Evaluation>, ApiError> {
        Ok(self
            .get(
                &format!("/v1/job/{}/evaluations", enc(id)),
                QueryOptions::default(),
            )
            .await?
            .0)
    }

    pub async fn allocs(
        &self,
        q: QueryOptions,
    ) -> Result<(Vec<AllocListStub>, QueryMeta), ApiError> {
        self.get("/v1/allocations", q).await
    }

    pub async fn alloc(&self, id: &str) -> Result<Allocation, ApiError> {
        Ok(self
            .get(
                &format!("/v1/allocation/{}", enc(id)),
                QueryOptions::default(),
            )
            .await?
            .0)
    }

    pub async fn evals(&self) -> Result<Vec<Evaluation>, ApiError> {
        Ok(self
            .get("/v1/evaluations", QueryOptions::default())
            .await?
            .0)
    }

    pub async fn eval(
        &self,
        id: &str,
        q: QueryOptions,
    ) -> Result<(Evaluation, QueryMeta), ApiError> {
        self.get(&format!("/v1/evaluation/{}", enc(id)), q).await
    }

    /// Every deployment, newest first; of one job with `job`.
    pub async fn deployments(&self, job: Option<&str>) -> Result<Vec<Deployment>, ApiError> {
        let path = match job {
            Some(j) => format!("/v1/job/{}/deployments", enc(j)),
            None => "/v1/deployments".to_string(),
        };
        Ok(self.get(&path, QueryOptions::default()).await?.0)
    }

    pub async fn deployment(
        &self,
        id: &str,
        q: QueryOptions,
    ) -> Result<(Deployment, QueryMeta), ApiError> {
        self.get(&format!("/v1/deployment/{}", enc(id)), q).await
    }

    /// The job's newest deployment.
    pub async fn job_deployment(
        &self,
        job: &str,
        q: QueryOptions,
    ) -> Result<(Deployment, QueryMeta), ApiError> {
        self.get(&format!("/v1/job/{}/deployment", enc(job)), q)
            .await
    }

    /// `action` is `promote`, `pause`, `resume` or `fail`.
    pub async fn deployment_action(
        &self,
        id: &str,
        action: &str,
        groups: Vec<String>,
    ) -> Result<DeploymentUpdateResponse, ApiError> {
        let path = format!("/v1/deployment/{}/{action}", enc(id));
        let m = reqwest::Method::POST;
        if action == "promote" {
            let body = DeploymentPromoteRequest { groups };
            self.write(m, &path, Some(&body)).await
        } else {
            self.write::<(), _>(m, &path, None).await
        }
    }

    /// Verdicts by hand on copies of groups with `health_check = "manual"`.
    pub async fn deployment_alloc_health(
        &self,
        id: &str,
        healthy: Vec<String>,
        unhealthy: Vec<String>,
    ) -> Result<DeploymentUpdateResponse, ApiError> {
        let body = DeploymentAllocHealthRequest { healthy, unhealthy };
        self.write(
            reqwest::Method::POST,
            &format!("/v1/deployment/{}/allocation-health", enc(id)),
            Some(&body),
        )
        .await
    }

    pub async fn nodes(&self) -> Result<Vec<NodeListStub>, ApiError> {
        Ok(self.get("/v1/nodes", QueryOptions::default()).await?.0)
    }

    pub async fn node(&self, id: &str) -> Result<Node, ApiError> {
        Ok(self
            .get(&format!("/v1/node/{}", enc(id)), QueryOptions::default())
            .await?
            .0)
    }

    pub async fn drain_node(&self, id: &str, enable: bool) -> Result<EvalResponse, ApiError> {
        let body = NodeDrainRequest { enable };
        self.write(
            reqwest::Method::POST,
            &format!("/v1/node/{}/drain", enc(id)),
            Some(&body),
        )
        .await
    }

    pub async fn node_eligibility(
        &self,
        id: &str,
        eligible: bool,
    ) -> Result<EvalResponse, ApiError> {
        let body = NodeEligibilityRequest { eligible };
        self.write(
            reqwest::Method::POST,
            &format!("/v1/node/{}/eligibility", enc(id)),
            Some(&body),
        )
        .await
    }

    /// Removes what no allocation owns on the node (containers, executors,
    /// cgroups, run state) now, without the periodic pass's grace period.
    pub async fn node_gc(&self, id: &str) -> Result<GcResponse, ApiError> {
        self.write::<(), _>(
            reqwest::Method::POST,
            &format!("/v1/node/{}/gc", enc(id)),
            None,
        )
        .await
    }

    pub async fn catalog(&self, q: QueryOptions) -> Result<(Catalog, QueryMeta), ApiError> {
        self.get("/v1/catalog", q).await
    }

    pub async fn services(&self) -> Result<Vec<ServiceListStub>, ApiError> {
        Ok(self.get("/v1/services", QueryOptions::default()).await?.0)
    }

    pub async fn service(&self, name: &str) -> Result<Vec<ServiceInstance>, ApiError> {
        Ok(self
            .get(
                &format!("/v1/service/{}", enc(name)),
                QueryOptions::default(),
            )
            .await?
            .0)
    }

    pub async fn health(&self) -> Result<HealthResponse, ApiError> {
        Ok(self
            .get("/v1/status/health", QueryOptions::default())
            .await?
            .0)
    }

    pub async fn agent_register(
        &self,
        req: &RegisterRequest,
    ) -> Result<RegisterResponse, ApiError> {
        self.write(reqwest::Method::POST, "/v1/agent/register", Some(req))
            .await
    }

    /// Asks for a node certificate with the join token (first contact).
    pub async fn agent_csr(&self, csr: &str) -> Result<CsrResponse, ApiError> {
        let body = CsrRequest {
            csr: csr.to_string(),
        };
        self.write(reqwest::Method::POST, "/v1/agent/csr", Some(&body))
            .await
    }

    /// Renews the node certificate this client authenticates with.
    pub async fn agent_renew(&self, csr: &str) -> Result<CsrResponse, ApiError> {
        let body = CsrRequest {
            csr: csr.to_string(),
        };
        self.write(reqwest::Method::POST, "/v1/agent/renew", Some(&body))
            .await
    }

    pub async fn revoke_node(&self, id: &str) -> Result<NodeRevokeResponse, ApiError> {
        self.write::<(), _>(
            reqwest::Method::POST,
            &format!("/v1/node/{}/revoke", enc(id)),
            None,
        )
        .await
    }

    pub async fn rotate_token(&self) -> Result<TokenRotateResponse, ApiError> {
        self.write::<(), _>(reqwest::Method::POST, "/v1/operator/token/rotate", None)
            .await
    }

    pub async fn namespaces(&self) -> Result<Vec<edge_spec::Namespace>, ApiError> {
        Ok(self.get("/v1/namespaces", QueryOptions::default()).await?.0)
    }

    pub async fn namespace(&self, name: &str) -> Result<edge_spec::Namespace, ApiError> {
        Ok(self
            .get(
                &format!("/v1/namespace/{}", enc(name)),
                QueryOptions::default(),
            )
            .await?
            .0)
    }

    pub async fn namespace_apply(
        &self,
        name: &str,
        req: &NamespaceApplyRequest,
    ) -> Result<edge_spec::Namespace, ApiError> {
        let path = format!("/v1/namespace/{}", enc(name));
        self.write(reqwest::Method::POST, &path, Some(req)).await
    }

    pub async fn namespace_delete(&self, name: &str) -> Result<NamespaceDeleteResponse, ApiError> {
        let path = format!("/v1/namespace/{}", enc(name));
        self.write::<(), _>(reqwest::Method::DELETE, &path, None)
            .await
    }

    /// `kind` is `config` or `secret`.
    pub async fn object_put(
        &self,
        kind: &str,
        name: &str,
        data: std::collections::BTreeMap<String, String>,
    ) -> Result<ObjectWriteResponse, ApiError> {
        let path = format!("/v1/{kind}/{}", enc(name));
        self.write(
            reqwest::Method::POST,
            &path,
            Some(&ObjectPutRequest { data }),
        )
        .await
    }

    pub async fn object_delete(
        &self,
        kind: &str,
        name: &str,
    ) -> Result<ObjectWriteResponse, ApiError> {
        let path = format!("/v1/{kind}/{}", enc(name));
        self.write::<(), _>(reqwest::Method::DELETE, &path, None)
            .await
    }

    pub async fn configs(&self) -> Result<Vec<edge_spec::ConfigObject>, ApiError> {
        Ok(self.get("/v1/configs", QueryOptions::default()).await?.0)
    }

    pub async fn config(&self, name: &str) -> Result<edge_spec::ConfigObject, ApiError> {
        let path = format!("/v1/config/{}", enc(name));
        Ok(self.get(&path, QueryOptions::default()).await?.0)
    }

    pub async fn secrets(&self) -> Result<Vec<edge_spec::SecretObject>, ApiError> {
        Ok(self.get("/v1/secrets", QueryOptions::default()).await?.0)
    }

    pub async fn secret(&self, name: &str) -> Result<edge_spec::SecretObject, ApiError> {
        let path = format!("/v1/secret/{}", enc(name));
        Ok(self.get(&path, QueryOptions::default()).await?.0)
    }

    pub async fn keyring_rotate(&self) -> Result<KeyringRotateResponse, ApiError> {
        self.write::<(), _>(reqwest::Method::POST, "/v1/operator/keyring/rotate", None)
            .await
    }

    /// An agent's fetch of what allocation `alloc` on node `node` asks for.
    pub async fn alloc_data(&self, node: &str, alloc: &str) -> Result<AllocData, ApiError> {
        let path = format!("/v1/agent/data/{}?alloc={}", enc(node), enc(alloc));
        Ok(self.get(&path, QueryOptions::default()).await?.0)
    }

    /// An agent's fetch of its node's named networks.
    pub async fn agent_networks(&self, node: &str) -> Result<AgentNetworks, ApiError> {
        let path = format!("/v1/agent/networks/{}", enc(node));
        Ok(self.get(&path, QueryOptions::default()).await?.0)
    }

    /// The named networks' cluster assignments.
    pub async fn networks(&self) -> Result<Vec<edge_spec::OverlayNetwork>, ApiError> {
        Ok(self.get("/v1/networks", QueryOptions::default()).await?.0)
    }

    /// An agent's fetch of a published service's TLS secret.
    pub async fn agent_tls(
        &self,
        node: &str,
        namespace: &str,
        name: &str,
    ) -> Result<ObjectValue, ApiError> {
        let path = format!(
            "/v1/agent/tls/{}?namespace={}&name={}",
            enc(node),
            enc(namespace),
            enc(name)
        );
        Ok(self.get(&path, QueryOptions::default()).await?.0)
    }

    pub async fn volumes(&self) -> Result<Vec<edge_spec::Volume>, ApiError> {
        Ok(self.get("/v1/volumes", QueryOptions::default()).await?.0)
    }

    pub async fn volume(&self, id: &str) -> Result<edge_spec::Volume, ApiError> {
        let path = format!("/v1/volume/{}", enc(id));
        Ok(self.get(&path, QueryOptions::default()).await?.0)
    }

    pub async fn volume_delete(&self, id: &str) -> Result<VolumeDeleteResponse, ApiError> {
        let path = format!("/v1/volume/{}", enc(id));
        self.write::<(), _>(reqwest::Method::DELETE, &path, None)
            .await
    }

    pub async fn acl_bootstrap(&self) -> Result<AclTokenCreated, ApiError> {
        self.write::<(), _>(reqwest::Method::POST, "/v1/acl/bootstrap", None)
            .await
    }

    pub async fn acl_policy_apply(
        &self,
        name: &str,
        req: &AclPolicyApplyRequest,
    ) -> Result<AclWriteResponse, ApiError> {
        let path = format!("/v1/acl/policy/{}", enc(name));
        self.write(reqwest::Method::POST, &path, Some(req)).await
    }

    pub async fn acl_policies(&self) -> Result<Vec<AclPolicyListStub>, ApiError> {
        Ok(self
            .get("/v1/acl/policies", QueryOptions::default())
            .await?
            .0)
    }

    pub async fn acl_policy(&self, name: &str) -> Result<edge_spec::acl::AclPolicy, ApiError> {
        let path = format!("/v1/acl/policy/{}", enc(name));
        Ok(self.get(&path, QueryOptions::default()).await?.0)
    }

    pub async fn acl_policy_delete(&self, name: &str) -> Result<AclWriteResponse, ApiError> {
        let path = format!("/v1/acl/policy/{}", enc(name));
        self.write::<(), _>(reqwest::Method::DELETE, &path, None)
            .await
    }

    pub async fn acl_token_create(
        &self,
        req: &AclTokenCreateRequest,
    ) -> Result<AclTokenCreated, ApiError> {
        self.write(reqwest::Method::POST, "/v1/acl/tokens", Some(req))
            .await
    }

    pub async fn acl_tokens(&self) -> Result<Vec<AclTokenInfo>, ApiError> {
        Ok(self.get("/v1/acl/tokens", QueryOptions::default()).await?.0)
    }

    pub async fn acl_token_revoke(&self, accessor: &str) -> Result<AclWriteResponse, ApiError> {
        let path = format!("/v1/acl/token/{}", enc(accessor));
        self.write::<(), _>(reqwest::Method::DELETE, &path, None)
            .await
    }

    pub async fn acl_token_self(&self) -> Result<AclTokenInfo, ApiError> {
        Ok(self
            .get("/v1/acl/token/self", QueryOptions::default())
            .await?
            .0)
    }

    pub async fn agent_heartbeat(&self, node_id: &str) -> Result<HeartbeatResponse, ApiError> {
        self.write::<(), _>(
            reqwest::Method::POST,
            &format!("/v1/agent/heartbeat/{}", enc(node_id)),
            None,
        )
        .await
    }

    pub async fn agent_load(&self, node_id: &str, report: &LoadReport) -> Result<(), ApiError> {
        self.write::<_, serde_json::Value>(
            reqwest::Method::POST,
            &format!("/v1/agent/load/{}", enc(node_id)),
            Some(report),
        )
        .await
        .map(|_| ())
    }

    pub async fn agent_allocs(
        &self,
        node_id: &str,
        q: QueryOptions,
    ) -> Result<(Vec<AgentAlloc>, QueryMeta), ApiError> {
        self.get(&format!("/v1/agent/allocs/{}", enc(node_id)), q)
            .await
    }

    /// The node's allocations that changed after index `since` (all of
    /// them at 0), with the ids of every one it holds when one left its
    /// list after `since` (always at 0). A server that does not know
    /// `since` answers the whole list, taken as all changed; one that does
    /// not know `ids=on_removal` sends the ids every time.
    pub async fn agent_alloc_changes(
        &self,
        node_id: &str,
        since: u64,
        q: QueryOptions,
    ) -> Result<(AgentAllocChanges, QueryMeta), ApiError> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Answer {
            Changes(AgentAllocChanges),
            Whole(Vec<AgentAlloc>),
        }
        let path = format!(
            "/v1/agent/allocs/{}?since={since}&ids=on_removal",
            enc(node_id)
        );
        let (answer, meta) = self.get::<Answer>(&path, q).await?;
        let changes = match answer {
            Answer::Changes(c) => c,
            Answer::Whole(changed) => AgentAllocChanges {
                ids: Some(changed.iter().map(|a| a.alloc.id.clone()).collect()),
                changed,
            },
        };
        Ok((changes, meta))
    }

    pub async fn agent_update_allocs(
        &self,
        node_id: &str,
        allocs: Vec<AllocUpdate>,
    ) -> Result<AllocUpdateResponse, ApiError> {
        let body = AllocUpdateRequest { allocs };
        self.write(
            reqwest::Method::POST,
            &format!("/v1/agent/allocs/{}", enc(node_id)),
            Some(&body),
        )
        .await
    }
}

/// Percent-encodes a path segment (ids are plain, but names come from users).
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
