//! Who may call the user routes: every route's need (one table, checked
//! against `ROUTES` by a test), the middleware that resolves the caller's
//! ACL token and refuses what its policies do not grant (401 without a
//! valid token, 403 without the capability, each naming what is missing),
//! and the `/v1/acl/*` handlers. Node routes keep their own checks
//! (`auth.rs`); the catalog takes either.

use crate::Server;
use crate::auth::Caller;
use crate::error::ServerError;
use crate::extract::{ApiJson, ApiPath, error_response, json_at};
use crate::ops::{self, Env};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use edge_api::tls::Identity;
use edge_api::*;
use edge_spec::acl::{self, Acl, AclToken, Capability, DEFAULT_NAMESPACE, Level, Scope, TokenType};
use edge_spec::namespace::{ALL_NAMESPACES, namespace_problem};
use edge_store::State as St;
use std::sync::Arc;

type S = State<Arc<Server>>;
type Res = Result<Response, ServerError>;

/// What calling a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Anyone (liveness).
    Public,
    /// A node route: its own checks in `auth.rs`, never an ACL token.
    Node,
    /// A node (certificate, or the join token on a plain server), which
    /// reads every namespace's services to feed DNS and the load balancer,
    /// or any ACL token, which reads those of the namespaces where it has
    /// `read-job`.
    Catalog,
    /// No token: the one bootstrap.
    Bootstrap,
    /// Any valid token (its own details, the namespaces it may see).
    AnyToken,
    Management,
    /// A capability in the request's namespace (`?namespace=`, `default`
    /// when absent). On a listing, `*` asks for every namespace and the
    /// handler keeps what the token may see.
    Namespace(Capability),
    /// A capability in the namespace of the object the route names by id
    /// (an allocation, evaluation or deployment): the handler checks it
    /// once it found the object, through [`Access::require`].
    Object(Capability),
    /// At least this level of the node, agent or operator rule.
    Rule(Scope, Level),
    /// Any token: the event stream keeps, event by event, what the token
    /// may read (`read-job` in the event's namespace, node read for nodes).
    Events,
}

/// The need of each route of [`crate::ROUTES`].
pub(crate) fn need(method: &str, path: &str) -> Option<Need> {
    use Capability::*;
    use Need::*;
    let read = Namespace(ReadJob);
    let submit = Namespace(SubmitJob);
    Some(match (method, path) {
        ("GET", "/v1/jobs") => Namespace(ListJobs),
        // The job in the body names its namespace; the handler checks it.
        ("POST", "/v1/jobs" | "/v1/job/{id}" | "/v1/job/{id}/plan") => Object(SubmitJob),
        ("POST", "/v1/job/{id}/revert") => submit,
        ("DELETE", "/v1/job/{id}") => submit,
        ("POST", "/v1/job/{id}/scale") => Namespace(ScaleJob),
        ("GET", "/v1/job/{id}/scale") => read,
        ("POST", "/v1/job/{id}/dispatch") => Namespace(DispatchJob),
        ("POST", "/v1/job/{id}/periodic/force") => submit,
        (
            "GET",
            "/v1/job/{id}"
            | "/v1/job/{id}/versions"
            | "/v1/job/{id}/diff"
            | "/v1/job/{id}/allocations"
            | "/v1/job/{id}/evaluations"
            | "/v1/job/{id}/deployment"
            | "/v1/job/{id}/deployments"
            | "/v1/allocations"
            | "/v1/deployments"
            | "/v1/evaluations"
            | "/v1/volumes"
            | "/v1/networks"
            | "/v1/configs"
            | "/v1/config/{name}"
            | "/v1/secrets"
            | "/v1/secret/{name}"
            | "/v1/services"
            | "/v1/service/{name}"
            | "/v1/model/{service}/meta/{model}",
        ) => read,
        ("GET", "/v1/models") => Namespace(ListJobs),
        ("POST", "/v1/model/{service}/infer/{model}") => read,
        ("POST" | "DELETE", "/v1/config/{name}" | "/v1/secret/{name}") => submit,
        // The volume names its namespace; the handler checks it.
        ("GET" | "DELETE", "/v1/volume/{id}") => Object(ReadJob),
        ("GET", "/v1/allocation/{id}" | "/v1/deployment/{id}" | "/v1/evaluation/{id}") => {
            Object(ReadJob)
        }
        ("GET", "/v1/client/allocation/{id}/logs") => Object(ReadLogs),
        ("GET", "/v1/client/allocation/{id}/exec") => Object(AllocExec),
        (
            "POST",
            "/v1/deployment/{id}/promote"
            | "/v1/deployment/{id}/pause"
            | "/v1/deployment/{id}/resume"
            | "/v1/deployment/{id}/fail"
            | "/v1/deployment/{id}/allocation-health",
        ) => Object(SubmitJob),
        ("GET", "/v1/namespaces" | "/v1/namespace/{name}") => AnyToken,
        ("POST" | "DELETE", "/v1/namespace/{name}") => Management,
        ("GET", "/v1/nodes" | "/v1/node/{id}") => Rule(Scope::Node, Level::Read),
        ("POST", "/v1/node/{id}/drain" | "/v1/node/{id}/eligibility" | "/v1/node/{id}/gc") => {
            Rule(Scope::Node, Level::Write)
        }
        (
            "POST",
            "/v1/node/{id}/revoke" | "/v1/operator/token/rotate" | "/v1/operator/keyring/rotate",
        ) => Rule(Scope::Operator, Level::Write),
        (
            _,
            "/v1/agent/csr"
            | "/v1/agent/renew"
            | "/v1/agent/register"
            | "/v1/agent/heartbeat/{id}"
            | "/v1/agent/load/{id}"
            | "/v1/agent/allocs/{id}"
            | "/v1/agent/data/{id}"
            | "/v1/agent/networks/{id}"
            | "/v1/agent/tls/{id}"
            | "/v1/node/{id}/tunnel",
        ) => Node,
        ("GET", "/v1/catalog") => Catalog,
        ("GET", "/v1/event/stream") => Events,
        ("GET", "/v1/status/health") => Public,
        ("GET", "/v1/metrics") => Rule(Scope::Agent, Level::Read),
        ("POST", "/v1/acl/bootstrap") => Bootstrap,
        ("GET", "/v1/acl/token/self" | "/v1/acl/token/self/grants") => AnyToken,
        (
            _,
            "/v1/acl/policies"
            | "/v1/acl/policy/{name}"
            | "/v1/acl/tokens"
            | "/v1/acl/token/{accessor}",
        ) => Management,
        _ => return None,
    })
}

/// The listings that take `?namespace=*`.
fn lists(method: &str, path: &str) -> bool {
    method == "GET"
        && matches!(
            path,
            "/v1/jobs"
                | "/v1/models"
                | "/v1/allocations"
                | "/v1/evaluations"
                | "/v1/deployments"
                | "/v1/services"
                | "/v1/volumes"
                | "/v1/networks"
                | "/v1/configs"
                | "/v1/secrets"
        )
}

/// The token a request came with, for the handlers that show it.
#[derive(Clone)]
pub(crate) struct CallerToken(pub AclToken);

/// What the middleware learnt of a user request, for its handler: the
/// namespace asked for and what the caller may do where.
#[derive(Clone, Debug)]
pub(crate) struct Access {
    /// `?namespace=`, `default` when absent; `*` only on a listing (or a
    /// route about one object, which ignores it).
    pub namespace: String,
    /// `None` when ACLs are off, or for a node reading the catalog.
    acl: Option<Acl>,
    /// Accessor id and name of the token, for 403 messages.
    token: Option<(String, String)>,
}

impl Access {
    pub(crate) fn all_namespaces(&self) -> bool {
        self.namespace == ALL_NAMESPACES
    }

    /// Whether `cap` is granted in namespace `ns`.
    pub(crate) fn allows(&self, ns: &str, cap: Capability) -> bool {
        self.acl
            .as_ref()
            .is_none_or(|a| a.allows_namespace(ns, cap))
    }

    /// Whether a listing keeps an object of namespace `ns`: one asked for
    /// (the request's namespace, or any with `*`) that the token may see.
    pub(crate) fn sees(&self, ns: &str, cap: Capability) -> bool {
        (self.all_namespaces() || self.namespace == ns) && self.allows(ns, cap)
    }

    /// Whether an event of `topic` goes to this caller: a node's to node
    /// readers, the rest to readers of its namespace (`None` when the event
    /// does not say, as for a deleted evaluation: then only to a caller
    /// who sees every namespace).
    pub(crate) fn sees_event(&self, topic: &str, ns: Option<&str>) -> bool {
        if topic == "node" {
            return self
                .acl
                .as_ref()
                .is_none_or(|a| a.allows(Scope::Node, Level::Read));
        }
        match ns {
            Some(ns) => self.sees(ns, Capability::ReadJob),
            None => {
                self.all_namespaces() && self.acl.as_ref().is_none_or(|a| *a == Acl::Management)
            }
        }
    }

    /// A 403 naming the capability and namespace unless `cap` is granted
    /// in `ns`.
    pub(crate) fn require(&self, ns: &str, cap: Capability) -> Result<(), ServerError> {
        if self.allows(ns, cap) {
            return Ok(());
        }
        Err(self.denied(&format!("capability {cap} in namespace {ns}")))
    }

    fn denied(&self, missing: &str) -> ServerError {
        let (accessor, name) = self
            .token
            .clone()
            .unwrap_or_else(|| ("-".to_string(), String::new()));
        ServerError::Unauthorized(format!(
            "permission denied: token {accessor} ({}) lacks {missing}",
            if name.is_empty() { "unnamed" } else { &name }
        ))
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Access {
    type Rejection = ServerError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        // Fails closed: a user route whose need the middleware did not
        // resolve is a bug, not an open door.
        parts.extensions.get::<Access>().cloned().ok_or_else(|| {
            ServerError::Internal("route has no access check; this is a bug in edge".to_string())
        })
    }
}

/// Resolves the caller's token (when ACLs are on) and the request's
/// namespace, refuses what the token does not grant, and hands the rest
/// to the handler as [`Access`]. Unmatched paths pass through to the 404.
pub(crate) async fn enforce(State(sv): S, mut req: Request, next: Next) -> Response {
    let Some(path) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
    else {
        return next.run(req).await;
    };
    let method = req.method().as_str().to_string();
    let Some(need) = need(&method, &path) else {
        return next.run(req).await;
    };
    if matches!(need, Need::Node | Need::Public) {
        return next.run(req).await;
    }
    if path.starts_with("/v1/acl/") && !sv.cfg.acl {
        return error_response(
            StatusCode::BAD_REQUEST,
            "ACLs are off on this server: start it with --acl on (they are on by default when it binds a non-loopback address)"
                .to_string(),
        );
    }
    let mut access = Access {
        namespace: DEFAULT_NAMESPACE.to_string(),
        acl: None,
        token: None,
    };
    if sv.cfg.acl {
        let caller = req
            .extensions()
            .get::<edge_api::tls::Peer>()
            .and_then(|p| p.0.clone());
        match authenticate(&sv, need, req.headers(), Caller(caller)) {
            Ok(Some((token, acl))) => {
                access.token = Some((token.accessor_id.clone(), token.name.clone()));
                access.acl = Some(acl);
                req.extensions_mut().insert(CallerToken(token));
            }
            Ok(None) => {}
            Err(e) => return e.into_response(),
        }
    }
    // Only routes about jobs and what belongs to them read `?namespace=`;
    // clients send it with every request (as Nomad's do).
    if matches!(need, Need::Namespace(_) | Need::Object(_)) {
        let star = lists(&method, &path) || matches!(need, Need::Object(_));
        match request_namespace(req.uri().query(), star) {
            Ok(Some(ns)) => access.namespace = ns,
            Ok(None) => {}
            Err(e) => return e.into_response(),
        }
    }
    // The stream without `?namespace=` carries every namespace the token
    // may read, as it did before namespaces were filtered.
    if need == Need::Events {
        match request_namespace(req.uri().query(), true) {
            Ok(ns) => access.namespace = ns.unwrap_or_else(|| ALL_NAMESPACES.to_string()),
            Err(e) => return e.into_response(),
        }
    }
    if let Err(e) = permit(&sv, need, &access) {
        return e.into_response();
    }
    req.extensions_mut().insert(access);
    next.run(req).await
}

/// `?namespace=`, checked: a namespace name, or `*` where `star` allows it
/// (listings, and routes about one object, which ignore it).
fn request_namespace(query: Option<&str>, star: bool) -> Result<Option<String>, ServerError> {
    let Some(ns) = namespace_param(query) else {
        return Ok(None);
    };
    if ns == ALL_NAMESPACES {
        return if star {
            Ok(Some(ns))
        } else {
            Err(ServerError::BadRequest(
                "namespace \"*\" only lists jobs, allocations, evaluations, deployments and services; name one namespace here"
                    .to_string(),
            ))
        };
    }
    match namespace_problem(&ns) {
        Some(reason) => Err(ServerError::BadRequest(format!(
            "query parameter namespace: {reason}"
        ))),
        None => Ok(Some(ns)),
    }
}

/// Whether what `access` holds is enough for `need`; a concrete namespace
/// must also exist.
fn permit(sv: &Server, need: Need, access: &Access) -> Result<(), ServerError> {
    let missing = match need {
        // The catalog and the stream are filtered by namespace in their
        // handlers.
        Need::Public
        | Need::Node
        | Need::Bootstrap
        | Need::AnyToken
        | Need::Object(_)
        | Need::Catalog
        | Need::Events => None,
        Need::Management => (access.acl.as_ref().is_some_and(|a| *a != Acl::Management))
            .then(|| "a management token".to_string()),
        Need::Namespace(cap) => {
            if access.all_namespaces() {
                None
            } else {
                access.require(&access.namespace, cap)?;
                if sv.store.read(|s| s.namespace(&access.namespace).is_none()) {
                    return Err(ServerError::NoNamespace(access.namespace.clone()));
                }
                None
            }
        }
        Need::Rule(scope, level) => access
            .acl
            .as_ref()
            .and_then(|a| lacks_rule(a, scope, level)),
    };
    match missing {
        Some(m) => Err(access.denied(&m)),
        None => Ok(()),
    }
}

/// The value of `namespace` in a query string, percent-decoded.
fn namespace_param(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == "namespace").then(|| decode(v))
    })
}

fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The caller's token and what its policies allow; `None` when the route
/// takes no token or a node reads the catalog.
fn authenticate(
    sv: &Server,
    need: Need,
    headers: &HeaderMap,
    caller: Caller,
) -> Result<Option<(AclToken, Acl)>, ServerError> {
    let secret = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok());
    match need {
        Need::Public | Need::Node | Need::Bootstrap => return Ok(None),
        Need::Catalog => {
            let node_ok = match &caller.0 {
                Some(Identity::Node(id)) => !sv.store.read(|s| Server::is_revoked(s, id)),
                _ => !sv.cfg.tls && crate::auth::check_token(sv, headers).is_ok(),
            };
            if node_ok {
                return Ok(None);
            }
        }
        _ => {}
    }
    let Some(secret) = secret else {
        return Err(ServerError::Unauthenticated(format!(
            "ACLs are on: this request needs an ACL token in the {TOKEN_HEADER} header (edge --token or EDGE_TOKEN)"
        )));
    };
    let now = crate::now_ms();
    let (token, acl) = sv.store.read(|s| resolve(s, secret, now))?;
    Ok(Some((token, acl)))
}

fn lacks_rule(acl: &Acl, scope: Scope, level: Level) -> Option<String> {
    (!acl.allows(scope, level)).then(|| {
        let (s, l) = (scope.as_str(), level.as_str());
        format!("{s} {l} (a policy with `{s} {{ policy = \"{l}\" }}`)")
    })
}

/// The token whose secret this is, and what its policies allow. Every
/// stored hash is compared, each in constant time, so the answer's timing
/// does not depend on which token matched or how much of a hash did.
fn resolve(s: &St, secret: &str, now: i64) -> Result<(AclToken, Acl), ServerError> {
    let hash = acl::hash_secret(secret);
    let mut found = None;
    for t in s.acl_tokens.values() {
        if acl::hashes_equal(&t.secret_hash, &hash) {
            found = Some(t);
        }
    }
    let Some(token) = found else {
        return Err(ServerError::Unauthenticated(
            "ACL token not found: it was revoked or never issued".to_string(),
        ));
    };
    if token.expired(now) {
        let ago = now.saturating_sub(token.expiration_time.unwrap_or(now)) / 1000;
        return Err(ServerError::Unauthenticated(format!(
            "ACL token {} expired {ago}s ago",
            token.accessor_id
        )));
    }
    let acl = match token.token_type {
        TokenType::Management => Acl::Management,
        TokenType::Client => Acl::from_policies(
            token
                .policies
                .iter()
                .filter_map(|p| s.acl_policies.get(p))
                .map(|p| &p.parsed),
        ),
    };
    Ok((token.clone(), acl))
}

/// A token secret: two v4 UUIDs, 244 random bits from the OS.
fn new_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Logged at start when ACLs are on but nobody bootstrapped them yet.
pub(crate) fn log_bootstrap_hint(sv: &Server) {
    if sv.cfg.acl && sv.store.read(|s| s.acl_bootstrap.is_none()) {
        tracing::warn!(
            "ACLs are on and not bootstrapped: run `edge acl bootstrap` once to get the management token"
        );
    }
}

pub(crate) async fn bootstrap(State(sv): S) -> Res {
    let secret = new_secret();
    let hash = acl::hash_secret(&secret);
    let (mut token, idx) = sv
        .store
        .commit(move |s: &St| ops::acl::bootstrap(s, &mut Env::live(), hash))
        .await?;
    (token.create_index, token.modify_index) = (idx, idx);
    tracing::info!(accessor = %token.accessor_id, "ACLs bootstrapped");
    Ok(json_at(
        idx,
        &AclTokenCreated {
            secret_id: secret,
            token: AclTokenInfo::from(&token),
        },
    ))
}

pub(crate) async fn list_policies(State(sv): S) -> Res {
    let idx = sv.store.index();
    let list: Vec<AclPolicyListStub> = sv.store.read(|s| {
        s.acl_policies
            .values()
            .map(|p| AclPolicyListStub {
                name: p.name.clone(),
                description: p.description.clone(),
                create_index: p.create_index,
                modify_index: p.modify_index,
            })
            .collect()
    });
    Ok(json_at(idx, &list))
}

pub(crate) async fn read_policy(State(sv): S, ApiPath(name): ApiPath<String>) -> Res {
    let idx = sv.store.index();
    sv.store.read(|s| match s.acl_policies.get(&name) {
        Some(p) => Ok(json_at(idx, p)),
        None => Err(ServerError::not_found("acl policy", &name)),
    })
}

pub(crate) async fn apply_policy(
    State(sv): S,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<AclPolicyApplyRequest>,
) -> Res {
    let batch = ops::acl::apply_policy(&name, req)?;
    let ((), idx) = sv
        .store
        .commit(move |_: &St| Ok::<_, ServerError>((batch, ())))
        .await?;
    Ok(json_at(idx, &AclWriteResponse { index: idx }))
}

pub(crate) async fn delete_policy(State(sv): S, ApiPath(name): ApiPath<String>) -> Res {
    let ((), idx) = sv
        .store
        .commit(move |s: &St| Ok::<_, ServerError>((ops::acl::delete_policy(s, &name)?, ())))
        .await?;
    Ok(json_at(idx, &AclWriteResponse { index: idx }))
}

pub(crate) async fn create_token(
    State(sv): S,
    ApiJson(req): ApiJson<AclTokenCreateRequest>,
) -> Res {
    let secret = new_secret();
    let hash = acl::hash_secret(&secret);
    let (mut token, idx) = sv
        .store
        .commit(move |s: &St| ops::acl::create_token(s, &mut Env::live(), req, hash))
        .await?;
    (token.create_index, token.modify_index) = (idx, idx);
    Ok(json_at(
        idx,
        &AclTokenCreated {
            secret_id: secret,
            token: AclTokenInfo::from(&token),
        },
    ))
}

pub(crate) async fn list_tokens(State(sv): S) -> Res {
    let idx = sv.store.index();
    let list: Vec<AclTokenInfo> = sv
        .store
        .read(|s| s.acl_tokens.values().map(AclTokenInfo::from).collect());
    Ok(json_at(idx, &list))
}

pub(crate) async fn read_token(State(sv): S, ApiPath(accessor): ApiPath<String>) -> Res {
    let idx = sv.store.index();
    sv.store
        .read(|s| ops::acl::find_token(s, &accessor).map(|t| json_at(idx, &AclTokenInfo::from(t))))
}

pub(crate) async fn revoke_token(State(sv): S, ApiPath(accessor): ApiPath<String>) -> Res {
    let (id, idx) = sv
        .store
        .commit(move |s: &St| ops::acl::revoke_token(s, &accessor))
        .await?;
    tracing::info!(accessor = %id, "ACL token revoked");
    Ok(json_at(idx, &AclWriteResponse { index: idx }))
}

pub(crate) async fn token_self(State(sv): S, token: Option<axum::Extension<CallerToken>>) -> Res {
    match token {
        Some(axum::Extension(CallerToken(t))) => {
            Ok(json_at(sv.store.index(), &AclTokenInfo::from(&t)))
        }
        None => Err(ServerError::Unauthenticated(format!(
            "no ACL token in the {TOKEN_HEADER} header"
        ))),
    }
}

/// What the caller's token may do in each namespace and on nodes, so the
/// dashboard shows only the buttons that would work.
pub(crate) async fn token_grants(State(sv): S, access: Access) -> Res {
    let names: Vec<String> = sv.store.read(|s| {
        s.all_namespaces()
            .into_iter()
            .map(|n| n.name.clone())
            .collect()
    });
    let acl = access.acl.as_ref();
    let grants = TokenGrants {
        management: acl.is_none_or(|a| *a == Acl::Management),
        node_write: acl.is_none_or(|a| a.allows(Scope::Node, Level::Write)),
        namespaces: names
            .into_iter()
            .filter_map(|ns| {
                let caps: Vec<Capability> = Capability::ALL
                    .into_iter()
                    .filter(|c| *c != Capability::Deny && access.allows(&ns, *c))
                    .collect();
                (!caps.is_empty()).then_some((ns, caps))
            })
            .collect(),
    };
    Ok(json_at(sv.store.index(), &grants))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_a_need() {
        for (method, path) in crate::ROUTES {
            assert!(
                need(method, path).is_some(),
                "{method} {path} has no ACL need"
            );
        }
    }

    #[test]
    fn namespace_parameter_is_read_and_decoded() {
        assert_eq!(
            namespace_param(Some("a=1&namespace=prod")),
            Some("prod".into())
        );
        assert_eq!(
            namespace_param(Some("namespace=de%66ault")),
            Some("default".into())
        );
        assert_eq!(
            namespace_param(Some("namespace=%zz%4")),
            Some("%zz%4".into())
        );
        assert_eq!(namespace_param(Some("index=3")), None);
        assert_eq!(namespace_param(None), None);
    }
}
