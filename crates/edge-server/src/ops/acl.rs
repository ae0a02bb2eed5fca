//! ACL rules: the one bootstrap, applying and removing policies, creating
//! and revoking tokens. Secrets are made by the caller; a rule only ever
//! sees their hashes.

use super::Env;
use crate::ServerError;
use edge_api::{AclPolicyApplyRequest, AclTokenCreateRequest};
use edge_spec::acl::{self, AclPolicy, AclToken, TokenType};
use edge_store::{Batch, State};

/// The first management token; refused once a bootstrap happened, even if
/// that token was revoked since.
pub(crate) fn bootstrap(
    s: &State,
    env: &mut Env,
    secret_hash: String,
) -> Result<(Batch, AclToken), ServerError> {
    if let Some(index) = s.acl_bootstrap {
        return Err(ServerError::Conflict(format!(
            "ACLs were already bootstrapped (at index {index}): ask the holder of a management token for a token (`edge acl token create`)"
        )));
    }
    let token = AclToken {
        accessor_id: env.id(),
        name: "bootstrap token".to_string(),
        token_type: TokenType::Management,
        policies: Vec::new(),
        secret_hash,
        create_time: env.now,
        expiration_time: None,
        create_index: 0,
        modify_index: 0,
    };
    let batch = Batch {
        acl_tokens: vec![token.clone()],
        acl_bootstrap: true,
        ..Batch::default()
    };
    Ok((batch, token))
}

/// Stores a policy (new or replacing the one of that name) once its name
/// and rules are valid.
pub(crate) fn apply_policy(name: &str, req: AclPolicyApplyRequest) -> Result<Batch, ServerError> {
    if !acl::valid_policy_name(name) {
        return Err(ServerError::BadRequest(format!(
            "policy name {name:?} must be 1-128 letters, digits, `-` or `_`"
        )));
    }
    if req.rules.len() > acl::MAX_RULES_BYTES {
        return Err(ServerError::BadRequest(format!(
            "policy rules are {} bytes, at most {} are allowed",
            req.rules.len(),
            acl::MAX_RULES_BYTES
        )));
    }
    if req.description.chars().count() > 1024 {
        return Err(ServerError::BadRequest(
            "description: at most 1024 characters".to_string(),
        ));
    }
    let parsed = acl::parse_policy(name, &req.rules)
        .map_err(|e| ServerError::BadRequest(format!("policy {name:?} is invalid:\n{e}")))?;
    Ok(Batch {
        acl_policies: vec![AclPolicy {
            name: name.to_string(),
            description: req.description,
            rules: req.rules,
            parsed,
            create_index: 0,
            modify_index: 0,
        }],
        ..Batch::default()
    })
}

/// Removes a policy; tokens naming it lose what it granted.
pub(crate) fn delete_policy(s: &State, name: &str) -> Result<Batch, ServerError> {
    if !s.acl_policies.contains_key(name) {
        return Err(ServerError::not_found("acl policy", name));
    }
    Ok(Batch {
        delete_acl_policies: vec![name.to_string()],
        ..Batch::default()
    })
}

/// Longest token lifetime, ten years.
const MAX_TTL_SECS: u64 = 315_360_000;

/// A new token: a client token needs existing policies, a management token
/// takes none.
pub(crate) fn create_token(
    s: &State,
    env: &mut Env,
    req: AclTokenCreateRequest,
    secret_hash: String,
) -> Result<(Batch, AclToken), ServerError> {
    if req.name.chars().count() > 256 {
        return Err(ServerError::BadRequest(
            "name: at most 256 characters".to_string(),
        ));
    }
    match req.token_type {
        TokenType::Management if !req.policies.is_empty() => {
            return Err(ServerError::BadRequest(
                "a management token may do everything and takes no policies".to_string(),
            ));
        }
        TokenType::Client if req.policies.is_empty() => {
            return Err(ServerError::BadRequest(
                "a client token needs at least one policy (--policy NAME)".to_string(),
            ));
        }
        _ => {}
    }
    if let Some(p) = req
        .policies
        .iter()
        .find(|p| !s.acl_policies.contains_key(*p))
    {
        return Err(ServerError::BadRequest(format!(
            "no policy named {p:?} (see `edge acl policy ls`)"
        )));
    }
    let expiration_time = match req.ttl_secs {
        Some(0) => {
            return Err(ServerError::BadRequest(
                "ttl_secs must be at least 1".to_string(),
            ));
        }
        Some(t) if t > MAX_TTL_SECS => {
            return Err(ServerError::BadRequest(format!(
                "ttl_secs {t} is longer than ten years ({MAX_TTL_SECS})"
            )));
        }
        Some(t) => Some(env.now.saturating_add(t as i64 * 1000)),
        None => None,
    };
    let mut policies = req.policies;
    policies.sort();
    policies.dedup();
    let token = AclToken {
        accessor_id: env.id(),
        name: req.name,
        token_type: req.token_type,
        policies,
        secret_hash,
        create_time: env.now,
        expiration_time,
        create_index: 0,
        modify_index: 0,
    };
    let batch = Batch {
        acl_tokens: vec![token.clone()],
        ..Batch::default()
    };
    Ok((batch, token))
}

/// Shortest accessor id prefix taken: what `edge acl token ls` shows. A
/// shorter one could pick the wrong token (a revoke is not undone).
const MIN_PREFIX: usize = 8;

/// The token with this accessor id, or a unique prefix of at least 8
/// characters.
pub(crate) fn find_token<'a>(s: &'a State, accessor: &str) -> Result<&'a AclToken, ServerError> {
    if let Some(t) = s.acl_tokens.get(accessor) {
        return Ok(t);
    }
    if accessor.chars().count() < MIN_PREFIX {
        return Err(ServerError::BadRequest(format!(
            "accessor id {accessor:?}: give the whole id or at least {MIN_PREFIX} characters of it"
        )));
    }
    super::by_prefix("acl token", accessor, s.acl_tokens.iter())
}

/// Deletes the token with this accessor id (see [`find_token`]).
pub(crate) fn revoke_token(s: &State, accessor: &str) -> Result<(Batch, String), ServerError> {
    let t = find_token(s, accessor)?;
    let id = t.accessor_id.clone();
    Ok((
        Batch {
            delete_acl_tokens: vec![id.clone()],
            ..Batch::default()
        },
        id,
    ))
}

/// How long an expired token is kept: its holder is told it expired
/// (and when) rather than that it does not exist.
pub(crate) const EXPIRED_TOKEN_GRACE_MS: i64 = 24 * 60 * 60 * 1000;

/// Deletes the tokens that expired more than [`EXPIRED_TOKEN_GRACE_MS`]
/// before `now_ms`; an empty batch when there are none.
pub(crate) fn expired_tokens(s: &State, now_ms: i64) -> Batch {
    let delete_acl_tokens = s
        .acl_tokens
        .values()
        .filter(|t| {
            t.expiration_time
                .is_some_and(|e| e.saturating_add(EXPIRED_TOKEN_GRACE_MS) <= now_ms)
        })
        .map(|t| t.accessor_id.clone())
        .collect();
    Batch {
        delete_acl_tokens,
        ..Batch::default()
    }
}
