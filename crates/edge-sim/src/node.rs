//! One fake node: register, heartbeat, watch and report over the shared client.

use crate::{SimConfig, SimError, Stats};
use edge_api::tls::{self, ClusterCa, Credentials, JoinToken};
use edge_api::{AllocUpdate, CsrRequest, CsrResponse, INDEX_HEADER, RegisterRequest, TOKEN_HEADER};
use edge_spec::{ClientStatus, DesiredStatus, DriverInfo, Node, NodeResources, NodeStatus};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long a watch blocks on the server.
const WATCH_WAIT: Duration = Duration::from_secs(30);

/// The agent protocol over one pooled client: shared by every node over
/// plain HTTP; over TLS each node has its own, with its own certificate.
pub(crate) struct Api {
    base: String,
    /// The join token's secret, sent over plain HTTP and to ask for a
    /// node's first certificate; never with a node's certificate.
    token: Option<String>,
    http: reqwest::Client,
    /// The cluster CA, pinned by the join token, when the server is https.
    ca: Option<Arc<ClusterCa>>,
}

fn client(tls: Option<rustls::ClientConfig>, max_idle: usize) -> Result<reqwest::Client, SimError> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(edge_api::client::NODE_POOL_IDLE)
        .pool_max_idle_per_host(max_idle)
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        b = b.use_preconfigured_tls(tls);
    }
    b.build().map_err(|e| SimError::Client(Arc::new(e)))
}

fn tls_err(e: impl std::fmt::Display) -> SimError {
    SimError::Tls(e.to_string())
}

impl Api {
    /// The client `nodes` fake nodes share over plain HTTP. It keeps one
    /// idle connection per four nodes, beside the watches in flight: a
    /// real agent keeps one per node, which for 10,000 nodes would pass
    /// the 20,000 descriptors a process may have on small hosts, and the
    /// server's connection cap, before the jobs' clients get a turn.
    pub fn new(server: &str, token: &str, nodes: usize) -> Result<Api, SimError> {
        let base = server.trim_end_matches('/').to_string();
        let token = JoinToken::parse(token).map_err(tls_err)?;
        let ca = if base.starts_with("https://") {
            let pin = token.ca_pin.as_deref().ok_or_else(|| {
                tls_err("an https:// server needs a join token that pins its CA (K10<sha256>::<secret>)")
            })?;
            Some(ClusterCa::pinned(pin))
        } else if base.starts_with("http://") {
            None
        } else {
            return Err(SimError::Address {
                addr: server.to_string(),
                reason: "must start with http:// or https://".to_string(),
            });
        };
        let tls = match &ca {
            Some(ca) => Some(tls::client_config(ca.clone(), None).map_err(tls_err)?),
            None => None,
        };
        Ok(Api {
            base,
            token: Some(token.secret),
            http: client(tls, (nodes / 4).max(16))?,
            ca,
        })
    }

    /// The client node `node_id` speaks with: this one over plain HTTP;
    /// over TLS a client with the node's own certificate, asked for with
    /// the join token like a real agent's first one.
    async fn for_node(self: &Arc<Self>, node_id: &str) -> Result<Arc<Api>, SimError> {
        let Some(ca) = &self.ca else {
            return Ok(self.clone());
        };
        let csr = tls::node_csr(node_id).map_err(tls_err)?;
        let path = "/v1/agent/csr".to_string();
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(30))
            .json(&CsrRequest { csr: csr.csr_pem });
        let resp: CsrResponse = self
            .send("POST", path.clone(), req)
            .await?
            .json()
            .await
            .map_err(|e| SimError::Request {
                method: "POST",
                path,
                source: Arc::new(e),
            })?;
        let creds = Credentials::from_pem(&resp.cert, &csr.key_pem).map_err(tls_err)?;
        let cfg = tls::client_config(ca.clone(), Some(creds)).map_err(tls_err)?;
        Ok(Arc::new(Api {
            base: self.base.clone(),
            token: None,
            http: client(Some(cfg), usize::MAX)?,
            ca: Some(ca.clone()),
        }))
    }

    /// Sends a request; a non-2xx answer is an error carrying its body.
    async fn send(
        &self,
        method: &'static str,
        path: String,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, SimError> {
        let req = match &self.token {
            Some(t) => req.header(TOKEN_HEADER, t),
            None => req,
        };
        let resp = req.send().await.map_err(|e| SimError::Request {
            method,
            path: path.clone(),
            source: Arc::new(e),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        Err(SimError::Status {
            method,
            path,
            status: status.as_u16(),
            body: resp.text().await.unwrap_or_default(),
        })
    }

    async fn post<B: serde::Serialize>(
        &self,
        path: String,
        body: Option<&B>,
    ) -> Result<(), SimError> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(30));
        if let Some(b) = body {
            req = req.json(b);
        }
        self.send("POST", path, req).await.map(|_| ())
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: String,
        index: u64,
    ) -> Result<(T, u64), SimError> {
        let req = self
            .http
            .get(format!("{}{path}", self.base))
            .query(&[
                ("index", index.to_string()),
                ("wait", format!("{}ms", WATCH_WAIT.as_millis())),
            ])
            .timeout(WATCH_WAIT + Duration::from_secs(15));
        let resp = self.send("GET", path.clone(), req).await?;
        let idx = resp
            .headers()
            .get(INDEX_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body = resp.bytes().await.map_err(|e| SimError::Request {
            method: "GET",
            path: path.clone(),
            source: Arc::new(e),
        })?;
        let v = serde_json::from_slice(&body).map_err(|e| SimError::Status {
            method: "GET",
            path,
            status: 200,
            body: format!("undecodable answer: {e}"),
        })?;
        Ok((v, idx))
    }
}

/// The part of `AgentAllocChanges` a fake node needs.
#[derive(Deserialize)]
struct WatchChanges {
    /// Absent when no allocation left the node after the last answer.
    #[serde(default)]
    ids: Option<Vec<String>>,
    changed: Vec<WatchAlloc>,
}

/// The part of `AgentAlloc` a fake node needs; the job is skipped unread.
#[derive(Deserialize)]
struct WatchAlloc {
    alloc: AllocLite,
}

#[derive(Deserialize)]
struct AllocLite {
    id: String,
    desired_status: DesiredStatus,
    client_status: ClientStatus,
}

#[derive(Deserialize)]
struct TtlAnswer {
    heartbeat_ttl_ms: u64,
}

/// Ends the heartbeat task with the node's task, also when that is aborted.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) struct FakeNode {
    node: Node,
    /// Heartbeats of the nodes are spread over one period by this fraction.
    phase: f64,
    report_after: Duration,
    api: Arc<Api>,
    stats: Arc<Stats>,
}

impl FakeNode {
    pub fn new(cfg: &SimConfig, i: usize, api: Arc<Api>, stats: Arc<Stats>) -> FakeNode {
        let name = format!("{}-{i}", cfg.name_prefix);
        let mut drivers = BTreeMap::new();
        drivers.insert(
            "exec".to_string(),
            DriverInfo {
                detected: true,
                healthy: true,
                description: "simulated".to_string(),
                attributes: BTreeMap::new(),
            },
        );
        let mut attributes = BTreeMap::new();
        attributes.insert("kernel.name".to_string(), "linux".to_string());
        attributes.insert("cpu.arch".to_string(), std::env::consts::ARCH.to_string());
        attributes.insert("unique.hostname".to_string(), name.clone());
        let node = Node {
            id: name.clone(),
            name,
            datacenter: cfg.datacenter.clone(),
            address: "127.0.0.1".to_string(),
            status: NodeStatus::Initializing,
            status_description: String::new(),
            eligible: true,
            drain: false,
            revoked: false,
            attributes,
            meta: BTreeMap::new(),
            resources: NodeResources {
                cpu: cfg.cpu,
                memory: cfg.memory,
                cores: 1,
            },
            reserved: NodeResources::default(),
            drivers,
            last_heartbeat: 0,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            create_index: 0,
            modify_index: 0,
        };
        FakeNode {
            node,
            phase: i as f64 / cfg.nodes.max(1) as f64,
            report_after: cfg.report_running_after,
            api,
            stats,
        }
    }

    async fn register(&self) -> Result<Duration, SimError> {
        let body = RegisterRequest {
            node: self.node.clone(),
            http_addr: None,
        };
        let resp = self
            .api
            .send(
                "POST",
                "/v1/agent/register".to_string(),
                self.api
                    .http
                    .post(format!("{}/v1/agent/register", self.api.base))
                    .timeout(Duration::from_secs(30))
                    .json(&body),
            )
            .await?;
        let ttl: TtlAnswer = resp.json().await.map_err(|e| SimError::Request {
            method: "POST",
            path: "/v1/agent/register".to_string(),
            source: Arc::new(e),
        })?;
        Ok(Duration::from_millis(ttl.heartbeat_ttl_ms.max(300)))
    }

    /// Registers (retrying), then heartbeats and watches until aborted;
    /// registers again whenever the server forgets the node.
    pub async fn run(mut self, gate: Arc<Semaphore>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let res = {
                let _permit = gate.acquire().await;
                self.api.for_node(&self.node.id).await
            };
            match res {
                Ok(api) => {
                    self.api = api;
                    break;
                }
                Err(e) => {
                    Stats::inc(&self.stats.errors, 1);
                    tracing::debug!(node = %self.node.id, error = %e, "no certificate yet");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        let me = Arc::new(self);
        let mut first = true;
        loop {
            let ttl = {
                let _permit = gate.acquire().await;
                me.register_retrying().await
            };
            if first {
                Stats::inc(&me.stats.registered, 1);
                first = false;
            }
            let beat = AbortOnDrop(tokio::spawn(me.clone().heartbeat_loop(ttl)));
            let err = me.watch_loop().await;
            drop(beat);
            tracing::debug!(node = %me.node.id, error = %err, "watch ended; registering again");
        }
    }

    async fn register_retrying(&self) -> Duration {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.register().await {
                Ok(ttl) => return ttl,
                Err(e) => {
                    Stats::inc(&self.stats.errors, 1);
                    tracing::debug!(node = %self.node.id, error = %e, "register failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn heartbeat_loop(self: Arc<Self>, ttl: Duration) {
        let every = ttl / 3;
        tokio::time::sleep(every.mul_f64(self.phase)).await;
        let path = format!("/v1/agent/heartbeat/{}", self.node.id);
        loop {
            match self.api.post::<()>(path.clone(), None).await {
                Ok(()) => Stats::inc(&self.stats.heartbeats, 1),
                Err(e) => {
                    Stats::inc(&self.stats.errors, 1);
                    tracing::debug!(node = %self.node.id, error = %e, "heartbeat failed");
                    if e.status() == Some(404) {
                        // The watch sees the 404 too and registers again.
                        return;
                    }
                }
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Returns only when the node must register again (the reason).
    async fn watch_loop(&self) -> SimError {
        let path = format!("/v1/agent/allocs/{}", self.node.id);
        let mut index = 0;
        // What this node last reported per allocation, so each change is sent once.
        let mut reported: HashMap<String, ClientStatus> = HashMap::new();
        loop {
            // As a real agent: only what changed since the last answer.
            let since = format!("{path}?since={index}&ids=on_removal");
            let (list, idx) = match self.api.get::<WatchChanges>(since, index).await {
                Ok(v) => v,
                Err(e) if e.status() == Some(404) => return e,
                Err(e) => {
                    Stats::inc(&self.stats.errors, 1);
                    tracing::debug!(node = %self.node.id, error = %e, "watch failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            index = idx;
            let updates = changes(&list.changed, list.ids.as_deref(), &mut reported);
            if updates.is_empty() {
                continue;
            }
            if !self.report_after.is_zero() {
                tokio::time::sleep(self.report_after).await;
            }
            if let Err(e) = self.report(&path, &updates).await {
                return e;
            }
        }
    }

    /// Sends the updates, retrying until they land or the node is unknown.
    async fn report(&self, path: &str, updates: &[AllocUpdate]) -> Result<(), SimError> {
        let body = edge_api::AllocUpdateRequest {
            allocs: updates.to_vec(),
        };
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.api.post(path.to_string(), Some(&body)).await {
                Ok(()) => break,
                Err(e) if e.status() == Some(404) => return Err(e),
                Err(e) => {
                    Stats::inc(&self.stats.errors, 1);
                    tracing::debug!(node = %self.node.id, error = %e, "report failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        for u in updates {
            match u.client_status {
                ClientStatus::Running => Stats::inc(&self.stats.running, 1),
                _ => Stats::inc(&self.stats.complete, 1),
            }
        }
        Ok(())
    }
}

/// What a real agent would report for the allocations the server says
/// changed: `running` for new ones it wants run, `complete` for ones it
/// wants stopped; each at most once. Allocations the node no longer holds
/// (not among `ids`, when the answer lists them) are forgotten.
fn changes(
    allocs: &[WatchAlloc],
    ids: Option<&[String]>,
    reported: &mut HashMap<String, ClientStatus>,
) -> Vec<AllocUpdate> {
    let mut out = Vec::new();
    for WatchAlloc { alloc: a } in allocs {
        let want = match (a.desired_status, a.client_status) {
            (_, ClientStatus::Lost | ClientStatus::Complete | ClientStatus::Failed) => continue,
            (DesiredStatus::Run, _) => ClientStatus::Running,
            (DesiredStatus::Stop, _) => ClientStatus::Complete,
        };
        if a.client_status == want || reported.get(&a.id) == Some(&want) {
            continue;
        }
        reported.insert(a.id.clone(), want);
        out.push(AllocUpdate {
            networks: Default::default(),
            address: None,
            id: a.id.clone(),
            client_status: want,
            client_description: "simulated".to_string(),
            task_states: BTreeMap::new(),
            checks: BTreeMap::new(),
            // Simulated copies are healthy as soon as they run, so rolling
            // updates move on.
            health: (want == ClientStatus::Running).then_some(edge_spec::AllocHealth {
                healthy: true,
                timestamp: 0,
            }),
        });
    }
    if let Some(ids) = ids {
        let listed: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
        reported.retain(|id, _| listed.contains(id.as_str()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wa(id: &str, d: DesiredStatus, c: ClientStatus) -> WatchAlloc {
        WatchAlloc {
            alloc: AllocLite {
                id: id.to_string(),
                desired_status: d,
                client_status: c,
            },
        }
    }

    #[test]
    fn reports_each_change_once_and_forgets_unlisted() {
        let mut rep = HashMap::new();
        let list = vec![
            wa("a", DesiredStatus::Run, ClientStatus::Pending),
            wa("b", DesiredStatus::Stop, ClientStatus::Running),
            wa("c", DesiredStatus::Stop, ClientStatus::Lost),
            wa("d", DesiredStatus::Run, ClientStatus::Running),
        ];
        let ids =
            |l: &[WatchAlloc]| -> Vec<String> { l.iter().map(|w| w.alloc.id.clone()).collect() };
        let u = changes(&list, Some(&ids(&list)), &mut rep);
        let got: Vec<(&str, ClientStatus)> =
            u.iter().map(|u| (u.id.as_str(), u.client_status)).collect();
        assert_eq!(
            got,
            vec![("a", ClientStatus::Running), ("b", ClientStatus::Complete)]
        );
        assert!(
            changes(&list, Some(&ids(&list)), &mut rep).is_empty(),
            "sent once"
        );
        // An answer where nothing changed still names what the node holds,
        // or names nothing when nothing left: both keep what it reported.
        assert!(changes(&[], Some(&ids(&list)), &mut rep).is_empty());
        assert!(changes(&[], None, &mut rep).is_empty());
        assert_eq!(rep.len(), 2, "a and b are still held");
        // "a" is now stopped by the server: a new change, reported once.
        let list = vec![wa("a", DesiredStatus::Stop, ClientStatus::Running)];
        let u = changes(&list, Some(&ids(&list)), &mut rep);
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].client_status, ClientStatus::Complete);
        assert_eq!(rep.len(), 1, "b is no longer listed and forgotten");
    }
}
