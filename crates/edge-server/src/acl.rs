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
    /// A node (certificate, or the join token on a plain server) or an ACL
    /// token with `read-job`: agents feed DNS and the load balancer from it.
    Catalog,
    /// No token: the one bootstrap.
    Bootstrap,
    /// Any valid token (its own details).
    AnyToken,
    Management,
    /// A capability in the namespace `default`.
    Namespace(Capability),
    /// At least this level of the node, agent or operator rule.
    Rule(Scope, Level),
    /// `read-job` in `default` and node read: the event stream carries both.
    JobsAndNodes,
}

/// The need of each route of [`crate::ROUTES`].
pub(crate) fn need(method: &str, path: &str) -> Option<Need> {
    use Capability::*;
    use Need::*;
    let read = Namespace(ReadJob);
    let submit = Namespace(SubmitJob);
    Some(match (method, path) {
        ("GET", "/v1/jobs") => Namespace(ListJobs),
        ("POST", "/v1/jobs" | "/v1/job/{id}" | "/v1/job/{id}/plan" | "/v1/job/{id}/revert") => {
            submit
        }
        ("DELETE", "/v1/job/{id}") => submit,
        ("POST", "/v1/job/{id}/scale") => Namespace(ScaleJob),
        (
            "GET",
            "/v1/job/{id}"
            | "/v1/job/{id}/versions"
            | "/v1/job/{id}/allocations"
            | "/v1/job/{id}/evaluations"
            | "/v1/job/{id}/deployment"
            | "/v1/job/{id}/deployments"
            | "/v1/allocations"
            | "/v1/allocation/{id}"
            | "/v1/deployments"
            | "/v1/deployment/{id}"
            | "/v1/evaluations"
            | "/v1/evaluation/{id}"
            | "/v1/services"
            | "/v1/service/{name}",
        ) => read,
        ("GET", "/v1/client/allocation/{id}/logs") => Namespace(ReadLogs),
        ("GET", "/v1/client/allocation/{id}/exec") => Namespace(AllocExec),
        (
            "POST",
            "/v1/deployment/{id}/promote"
            | "/v1/deployment/{id}/pause"
            | "/v1/deployment/{id}/resume"
            | "/v1/deployment/{id}/fail"
            | "/v1/deployment/{id}/allocation-health",
        ) => submit,
        ("GET", "/v1/nodes" | "/v1/node/{id}") => Rule(Scope::Node, Level::Read),
        ("POST", "/v1/node/{id}/drain" | "/v1/node/{id}/eligibility" | "/v1/node/{id}/gc") => {
            Rule(Scope::Node, Level::Write)
        }
        ("POST", "/v1/node/{id}/revoke" | "/v1/operator/token/rotate") => {
            Rule(Scope::Operator, Level::Write)
        }
        (
            _,
            "/v1/agent/csr"
            | "/v1/agent/renew"
            | "/v1/agent/register"
            | "/v1/agent/heartbeat/{id}"
            | "/v1/agent/allocs/{id}"
            | "/v1/node/{id}/tunnel",
        ) => Node,
        ("GET", "/v1/catalog") => Catalog,
        ("GET", "/v1/event/stream") => JobsAndNodes,
        ("GET", "/v1/status/health") => Public,
        ("GET", "/v1/metrics") => Rule(Scope::Agent, Level::Read),
        ("POST", "/v1/acl/bootstrap") => Bootstrap,
        ("GET", "/v1/acl/token/self") => AnyToken,
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

/// The token a request came with, for the handlers that show it.
#[derive(Clone)]
pub(crate) struct CallerToken(pub AclToken);

/// Refuses `?namespace=` other than `default` (namespaces are not built
/// yet), then, when ACLs are on, whatever the caller's token does not
/// allow. Unmatched paths pass through to the 404.
pub(crate) async fn enforce(State(sv): S, mut req: Request, next: Next) -> Response {
    let Some(path) = req.extensions().get::<MatchedPath>().map(|m| m.as_str()) else {
        return next.run(req).await;
    };
    let Some(need) = need(req.method().as_str(), path) else {
        return next.run(req).await;
    };
    if path.starts_with("/v1/acl/") && !sv.cfg.acl {
        return error_response(
            StatusCode::BAD_REQUEST,
            "ACLs are off on this server: start it with --acl on (they are on by default when it binds a non-loopback address)"
                .to_string(),
        );
    }
    if sv.cfg.acl {
        let caller = req
            .extensions()
            .get::<edge_api::tls::Peer>()
            .and_then(|p| p.0.clone());
        match check(&sv, need, req.headers(), Caller(caller)) {
            Ok(Some(token)) => {
                req.extensions_mut().insert(CallerToken(token));
            }
            Ok(None) => {}
            Err(e) => return e.into_response(),
        }
    }
    if !matches!(need, Need::Node | Need::Public)
        && let Some(ns) = namespace_param(req.uri().query())
        && ns != DEFAULT_NAMESPACE
    {
        return error_response(
            StatusCode::BAD_REQUEST,
            format!(
                "namespace {ns:?}: namespaces are not there yet; every object is in namespace \"default\""
            ),
        );
    }
    next.run(req).await
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

/// Whether the caller may do what `need` says; the token it used, if any.
fn check(
    sv: &Server,
    need: Need,
    headers: &HeaderMap,
    caller: Caller,
) -> Result<Option<AclToken>, ServerError> {
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
    let missing = match need {
        Need::Public | Need::Node | Need::Bootstrap | Need::AnyToken => None,
        Need::Management => (acl != Acl::Management).then(|| "a management token".to_string()),
        Need::Catalog => lacks_cap(&acl, Capability::ReadJob),
        Need::Namespace(cap) => lacks_cap(&acl, cap),
        Need::Rule(scope, level) => lacks_rule(&acl, scope, level),
        Need::JobsAndNodes => lacks_cap(&acl, Capability::ReadJob)
            .or_else(|| lacks_rule(&acl, Scope::Node, Level::Read)),
    };
    match missing {
        Some(m) => Err(ServerError::Unauthorized(format!(
            "permission denied: token {} ({}) lacks {m}",
            token.accessor_id,
            if token.name.is_empty() {
                "unnamed"
            } else {
                &token.name
            }
        ))),
        None => Ok(Some(token)),
    }
}

fn lacks_cap(acl: &Acl, cap: Capability) -> Option<String> {
    (!acl.allows_namespace(DEFAULT_NAMESPACE, cap))
        .then(|| format!("capability {cap} in namespace {DEFAULT_NAMESPACE}"))
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
