//! ACLs against a real server on loopback: no token is a 401, a token
//! without the capability a 403 naming it, the management token may do
//! everything, expired and revoked tokens are refused, bootstrap works
//! once, secrets never reach the database file or its WAL, and node
//! routes keep their own authentication.

mod common;

use edge_server::ServerHandle;
use serde_json::{Value, json};

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(h: &ServerHandle) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: format!("http://{}", h.addr),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(m, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("x-edge-token", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

impl Api {
    /// The events the stream sends at once from index 0 (`query` is
    /// appended: `&namespace=...`), read until it goes quiet.
    async fn events(&self, token: &str, query: &str) -> Vec<Value> {
        let mut r = self
            .http
            .get(format!("{}/v1/event/stream?index=0{query}", self.base))
            .header("x-edge-token", token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let mut text = String::new();
        while let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(std::time::Duration::from_millis(500), r.chunk()).await
        {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("topic").is_some())
            .collect()
    }
}

fn error(v: &Value) -> &str {
    v["error"].as_str().unwrap_or_default()
}

fn job_body(id: &str) -> Value {
    json!({ "job": serde_json::to_value(common::job(id, 1)).unwrap() })
}

async fn bootstrap(api: &Api) -> String {
    let (status, body) = api.call("POST", "/v1/acl/bootstrap", None, None).await;
    assert_eq!(status, 200, "{body}");
    body["secret_id"].as_str().unwrap().to_string()
}

async fn token_with(api: &Api, mgmt: &str, name: &str, policy: &str, rules: &str) -> Value {
    let (status, body) = api
        .call(
            "POST",
            &format!("/v1/acl/policy/{policy}"),
            Some(mgmt),
            Some(json!({ "rules": rules })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .call(
            "POST",
            "/v1/acl/tokens",
            Some(mgmt),
            Some(json!({ "name": name, "policies": [policy] })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn tokens_and_policies_decide_who_may_call_what() {
    let dir = tempfile::tempdir().unwrap();
    let h = common::start_with(dir.path(), |c| c.acl = true).await;
    let api = Api::new(&h);

    // No token: 401 naming the header; liveness stays public.
    let (status, body) = api.call("GET", "/v1/jobs", None, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(error(&body).contains("x-edge-token"), "{body}");
    let (status, _) = api.call("GET", "/v1/status/health", None, None).await;
    assert_eq!(status, 200);
    let (status, body) = api.call("GET", "/v1/jobs", Some("made-up"), None).await;
    assert_eq!(status, 401, "{body}");
    assert!(error(&body).contains("not found"), "{body}");

    // Bootstrap works once.
    let mgmt = bootstrap(&api).await;
    let (status, body) = api.call("POST", "/v1/acl/bootstrap", None, None).await;
    assert_eq!(status, 409, "{body}");
    assert!(error(&body).contains("already bootstrapped"), "{body}");

    // A bad policy is refused naming line, column and field.
    let (status, body) = api
        .call(
            "POST",
            "/v1/acl/policy/broken",
            Some(&mgmt),
            Some(json!({ "rules": "namespace \"default\" {\n  policy = \"reed\"\n}\n" })),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        error(&body).contains("broken:2:12: namespace.default.policy: unknown policy \"reed\""),
        "{body}"
    );

    let ro = token_with(
        &api,
        &mgmt,
        "reader",
        "readonly",
        "namespace \"default\" { policy = \"read\" }\nnode { policy = \"read\" }\n",
    )
    .await;
    let ro_secret = ro["secret_id"].as_str().unwrap();
    let ro_accessor = ro["token"]["accessor_id"].as_str().unwrap();

    // Read-only: lists jobs and nodes, cannot submit, drain, rotate or manage ACLs.
    let (status, _) = api.call("GET", "/v1/jobs", Some(ro_secret), None).await;
    assert_eq!(status, 200);
    let (status, _) = api.call("GET", "/v1/nodes", Some(ro_secret), None).await;
    assert_eq!(status, 200);
    let (status, body) = api
        .call("POST", "/v1/jobs", Some(ro_secret), Some(job_body("web")))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        error(&body).contains("lacks capability submit-job in namespace default"),
        "{body}"
    );
    // Logs are checked against the allocation's own namespace, once found.
    let (status, body) = api
        .call("GET", "/v1/client/allocation/x/logs", Some(ro_secret), None)
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = api
        .call(
            "POST",
            "/v1/node/x/drain",
            Some(ro_secret),
            Some(json!({ "enable": true })),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(error(&body).contains("node write"), "{body}");
    let (status, body) = api
        .call("POST", "/v1/operator/token/rotate", Some(ro_secret), None)
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(error(&body).contains("operator write"), "{body}");
    let (status, body) = api
        .call("GET", "/v1/acl/tokens", Some(ro_secret), None)
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(error(&body).contains("management token"), "{body}");
    let (status, body) = api.call("GET", "/v1/metrics", Some(ro_secret), None).await;
    assert_eq!(status, 403, "{body}");
    assert!(error(&body).contains("agent read"), "{body}");
    let (status, body) = api
        .call("GET", "/v1/acl/token/self", Some(ro_secret), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "reader");

    // The management token does everything.
    let (status, body) = api
        .call("POST", "/v1/jobs", Some(&mgmt), Some(job_body("web")))
        .await;
    assert_eq!(status, 200, "{body}");
    for path in [
        "/v1/jobs",
        "/v1/acl/tokens",
        "/v1/acl/policies",
        "/v1/metrics",
    ] {
        let (status, body) = api.call("GET", path, Some(&mgmt), None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }

    // A namespace that does not exist is a 404 naming it; a bad name a 400.
    let (status, body) = api
        .call("GET", "/v1/jobs?namespace=prod", Some(&mgmt), None)
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        error(&body).contains("namespace \"prod\" does not exist"),
        "{body}"
    );
    let (status, body) = api
        .call("GET", "/v1/jobs?namespace=..%2F..%2Fetc", Some(&mgmt), None)
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(error(&body).contains("namespace"), "{body}");
    let (status, _) = api
        .call("GET", "/v1/jobs?namespace=default", Some(&mgmt), None)
        .await;
    assert_eq!(status, 200);

    // Node routes keep the join token; the catalog takes it or read-job.
    common::register(&h, common::node("n1", 1000, 1024)).await;
    let agent = common::agent_client(&h);
    agent
        .catalog(edge_api::QueryOptions::default())
        .await
        .expect("a node reads the catalog with the join token");
    let (status, _) = api.call("GET", "/v1/catalog", None, None).await;
    assert_eq!(status, 401);
    let (status, _) = api.call("GET", "/v1/catalog", Some(ro_secret), None).await;
    assert_eq!(status, 200);

    // A revoked token is a 401 from then on.
    let (status, body) = api
        .call(
            "DELETE",
            &format!("/v1/acl/token/{ro_accessor}"),
            Some(&mgmt),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api.call("GET", "/v1/jobs", Some(ro_secret), None).await;
    assert_eq!(status, 401, "{body}");
    h.shutdown().await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    use edge_spec::acl::{AclToken, TokenType, hash_secret};
    let dir = tempfile::tempdir().unwrap();
    let h = common::start_with(dir.path(), |c| c.acl = true).await;
    let api = Api::new(&h);
    let now = edge_server::now_ms();
    let token = |id: &str, secret: &str, expiration_time| AclToken {
        accessor_id: id.to_string(),
        name: id.to_string(),
        token_type: TokenType::Management,
        policies: Vec::new(),
        secret_hash: hash_secret(secret),
        create_time: now - 60_000,
        expiration_time,
        create_index: 0,
        modify_index: 0,
    };
    let (expired, live) = (
        token("old", "old-secret", Some(now - 1_000)),
        token("live", "new-secret", Some(now + 3_600_000)),
    );
    h.server
        .store()
        .commit(move |_| {
            Ok::<_, edge_store::StoreError>((
                edge_store::Batch {
                    acl_tokens: vec![expired, live],
                    ..Default::default()
                },
                (),
            ))
        })
        .await
        .unwrap();
    let (status, body) = api.call("GET", "/v1/jobs", Some("old-secret"), None).await;
    assert_eq!(status, 401, "{body}");
    assert!(error(&body).contains("ACL token old expired"), "{body}");
    let (status, body) = api.call("GET", "/v1/jobs", Some("new-secret"), None).await;
    assert_eq!(status, 200, "{body}");

    // A token made with a ttl carries its expiry.
    let (status, body) = api
        .call(
            "POST",
            "/v1/acl/tokens",
            Some("new-secret"),
            Some(json!({ "name": "short", "token_type": "management", "ttl_secs": 60 })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let exp = body["token"]["expiration_time"].as_i64().unwrap();
    let created = body["token"]["create_time"].as_i64().unwrap();
    assert_eq!(exp - created, 60_000);
    h.shutdown().await;
}

#[tokio::test]
async fn token_secrets_never_reach_the_database_or_its_wal() {
    let dir = tempfile::tempdir().unwrap();
    let h = common::start_with(dir.path(), |c| c.acl = true).await;
    let api = Api::new(&h);
    let mgmt = bootstrap(&api).await;
    let client = token_with(
        &api,
        &mgmt,
        "ci",
        "jobs",
        "namespace \"*\" { policy = \"write\" }",
    )
    .await;
    let secrets = [
        mgmt.clone(),
        client["secret_id"].as_str().unwrap().to_string(),
    ];
    let db = std::fs::read(dir.path().join("edge.db")).unwrap();
    let wal = std::fs::read(dir.path().join("edge.db-wal")).unwrap_or_default();
    let both: Vec<u8> = db.iter().chain(wal.iter()).copied().collect();
    let contains = |needle: &[u8]| both.windows(needle.len()).any(|w| w == needle);
    for s in &secrets {
        assert!(
            !contains(s.as_bytes()),
            "a token secret is stored in plaintext"
        );
        // The hash is there: the files read are the ones holding the tokens.
        let hash = edge_spec::acl::hash_secret(s);
        assert!(contains(hash.as_bytes()), "the token's hash is not stored");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn acl_routes_answer_400_while_acls_are_off() {
    let dir = tempfile::tempdir().unwrap();
    let h = common::start(dir.path()).await;
    let api = Api::new(&h);
    let (status, body) = api.call("POST", "/v1/acl/bootstrap", None, None).await;
    assert_eq!(status, 400, "{body}");
    assert!(error(&body).contains("--acl on"), "{body}");
    let (status, _) = api.call("GET", "/v1/jobs", None, None).await;
    assert_eq!(status, 200);
    let (status, body) = api.call("GET", "/v1/jobs?namespace=x", None, None).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = api.call("GET", "/v1/jobs?namespace=X!", None, None).await;
    assert_eq!(status, 400, "{body}");
    h.shutdown().await;
}

/// Namespaces with ACLs: a token scoped to one namespace sees and changes
/// only that namespace's jobs, allocations and services, even by id and
/// with `?namespace=*`; the same job id lives in two namespaces.
#[tokio::test]
async fn a_namespace_scoped_token_sees_only_its_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let h = common::start_with(dir.path(), |c| c.acl = true).await;
    let api = Api::new(&h);
    let mgmt = bootstrap(&api).await;
    common::register(&h, common::node("n1", 4000, 4096)).await;

    let (status, body) = api
        .call(
            "POST",
            "/v1/jobs?namespace=prod",
            Some(&mgmt),
            Some(job_body("web")),
        )
        .await;
    assert_eq!(status, 404, "no such namespace yet: {body}");
    assert!(error(&body).contains("edge namespace apply prod"), "{body}");
    let (status, body) = api
        .call(
            "POST",
            "/v1/namespace/prod",
            Some(&mgmt),
            Some(json!({ "description": "p" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "prod");
    for ns in ["default", "prod"] {
        let (status, body) = api
            .call(
                "POST",
                &format!("/v1/jobs?namespace={ns}"),
                Some(&mgmt),
                Some(job_body("web")),
            )
            .await;
        assert_eq!(status, 200, "{ns}: {body}");
    }
    let dev = token_with(
        &api,
        &mgmt,
        "prod-dev",
        "prod-dev",
        "namespace \"prod\" { policy = \"write\" }\n",
    )
    .await;
    let dev = dev["secret_id"].as_str().unwrap();

    let (status, body) = api
        .call("GET", "/v1/jobs?namespace=prod", Some(dev), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["namespace"], "prod");
    let (status, body) = api.call("GET", "/v1/jobs", Some(dev), None).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        error(&body).contains("list-jobs in namespace default"),
        "{body}"
    );
    let (status, body) = api
        .call("GET", "/v1/jobs?namespace=*", Some(dev), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let seen: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(seen, ["prod"], "only its namespace: {body}");
    let (status, body) = api
        .call("GET", "/v1/jobs?namespace=*", Some(&mgmt), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 2, "{body}");
    let (status, body) = api.call("GET", "/v1/job/web", Some(dev), None).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = api
        .call("GET", "/v1/job/web?namespace=prod", Some(dev), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["namespace"], "prod");

    // Allocations by id answer to their own namespace.
    let allocs = common::eventually(10, async || {
        let (_, body) = api
            .call("GET", "/v1/allocations?namespace=*", Some(&mgmt), None)
            .await;
        let list = body.as_array().cloned().unwrap_or_default();
        (list.len() == 2).then_some(list)
    })
    .await;
    let id_in = |ns: &str| {
        allocs
            .iter()
            .find(|a| a["namespace"] == ns)
            .and_then(|a| a["id"].as_str())
            .unwrap()
            .to_string()
    };
    let (status, body) = api
        .call("GET", "/v1/allocations?namespace=*", Some(dev), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 1, "{body}");
    let (status, _) = api
        .call(
            "GET",
            &format!("/v1/allocation/{}", id_in("prod")),
            Some(dev),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = api
        .call(
            "GET",
            &format!("/v1/allocation/{}", id_in("default")),
            Some(dev),
            None,
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        error(&body).contains("read-job in namespace default"),
        "{body}"
    );
    let (status, body) = api
        .call(
            "GET",
            &format!("/v1/client/allocation/{}/logs", id_in("default")),
            Some(dev),
            None,
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        error(&body).contains("read-logs in namespace default"),
        "{body}"
    );

    // Stopping in its namespace leaves the other job of that id alone.
    let (status, body) = api
        .call("DELETE", "/v1/job/web?namespace=prod", Some(dev), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api.call("DELETE", "/v1/job/web", Some(dev), None).await;
    assert_eq!(status, 403, "{body}");
    let (_, body) = api.call("GET", "/v1/job/web", Some(&mgmt), None).await;
    assert_eq!(body["stop"], false, "default's web runs on: {body}");

    // The event stream keeps what the token may read: prod's objects,
    // not default's, and no node events without node read.
    let events = api.events(dev, "").await;
    let seen = |topic: &str, ns: &str| {
        events
            .iter()
            .any(|e| e["topic"] == topic && e["payload"]["namespace"] == ns)
    };
    assert!(
        seen("job", "prod") && seen("evaluation", "prod"),
        "{events:?}"
    );
    assert!(!seen("job", "default") && !seen("evaluation", "default"));
    assert!(events.iter().all(|e| e["topic"] != "node"), "{events:?}");
    let all = api.events(&mgmt, "").await;
    assert!(
        all.iter()
            .any(|e| e["topic"] == "job" && e["payload"]["namespace"] == "default")
            && all
                .iter()
                .any(|e| e["topic"] == "job" && e["payload"]["namespace"] == "prod"),
        "{all:?}"
    );
    let only_prod = api.events(&mgmt, "&namespace=prod").await;
    assert!(
        only_prod
            .iter()
            .filter(|e| e["topic"] == "job")
            .all(|e| e["payload"]["namespace"] == "prod"),
        "{only_prod:?}"
    );
    // The catalog likewise: prod's services only.
    let (status, body) = api.call("GET", "/v1/catalog", Some(dev), None).await;
    assert_eq!(status, 200, "{body}");
    let services = body["services"].as_object().unwrap();
    assert!(
        services.values().all(|s| s["namespace"] == "prod"),
        "{body}"
    );
    // What spans every namespace needs every namespace.
    let (status, body) = api.call("GET", "/v1/namespaces", Some(dev), None).await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body[0]["name"], "prod");
    let (status, body) = api
        .call("GET", "/v1/namespace/default", Some(dev), None)
        .await;
    assert_eq!(status, 404, "hidden like absent: {body}");
    let (status, body) = api
        .call("DELETE", "/v1/namespace/prod", Some(dev), None)
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = api
        .call("DELETE", "/v1/namespace/prod", Some(&mgmt), None)
        .await;
    assert_eq!(status, 409, "it still holds web: {body}");
    h.shutdown().await;
}

/// What the dashboard asks to decide which buttons to show: a read-only
/// token's grants name read capabilities in its namespace and no node
/// write; a management token's say management.
#[tokio::test]
async fn token_grants_say_what_the_token_may_do() {
    let dir = tempfile::tempdir().unwrap();
    let h = common::start_with(dir.path(), |c| c.acl = true).await;
    let api = Api::new(&h);
    let mgmt = bootstrap(&api).await;
    let ro = token_with(
        &api,
        &mgmt,
        "viewer",
        "ro",
        "namespace \"default\" { policy = \"read\" }\nnode { policy = \"read\" }",
    )
    .await;
    let ro = ro["secret_id"].as_str().unwrap();
    let (status, g) = api
        .call("GET", "/v1/acl/token/self/grants", Some(ro), None)
        .await;
    assert_eq!(status, 200, "{g}");
    assert_eq!(g["management"], false);
    assert_eq!(g["node_write"], false);
    let caps = g["namespaces"]["default"].as_array().unwrap();
    assert!(
        caps.contains(&json!("read-job")) && caps.contains(&json!("list-jobs")),
        "{g}"
    );
    assert!(!caps.contains(&json!("submit-job")), "{g}");

    let (status, g) = api
        .call("GET", "/v1/acl/token/self/grants", Some(&mgmt), None)
        .await;
    assert_eq!(status, 200, "{g}");
    assert_eq!(
        (g["management"].clone(), g["node_write"].clone()),
        (json!(true), json!(true))
    );

    let (status, body) = api
        .call("GET", "/v1/acl/token/self/grants", None, None)
        .await;
    assert_eq!(status, 401, "{body}");
    // The dashboard's files need no token; its data does.
    let r = reqwest::get(format!("{}/ui/", api.base)).await.unwrap();
    assert_eq!(r.status(), 200);
    let (status, _) = api.call("GET", "/v1/models", None, None).await;
    assert_eq!(status, 401);
    h.shutdown().await;
}
