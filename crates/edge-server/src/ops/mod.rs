//! The cluster's rules as pure functions of the committed state: each takes
//! the store's `State` and an [`Env`] (the time and fresh ids, its only
//! outside inputs) and returns the `Batch` to commit, or an error. The HTTP
//! handlers, the evaluation worker and the heartbeat loop decode their input,
//! call one of these inside a store commit and encode the answer; none of
//! them holds a rule of its own.

pub(crate) mod acl;
pub(crate) mod allocs;
pub(crate) mod deployments;
pub(crate) mod evals;
pub(crate) mod jobs;
pub(crate) mod namespaces;
pub(crate) mod nodes;
pub(crate) mod periodic;
pub(crate) mod plan;
pub(crate) mod schedule;
#[cfg(test)]
mod tests;

use crate::ServerError;

/// Finds an object by full id or by a unique id prefix (as the CLI prints 8 chars).
pub(crate) fn by_prefix<'a, T>(
    kind: &'static str,
    id: &str,
    mut iter: impl Iterator<Item = (&'a String, &'a T)>,
) -> Result<&'a T, ServerError>
where
    T: 'a,
{
    let mut found: Option<&T> = None;
    let mut count = 0;
    for (k, v) in iter.by_ref() {
        if k == id {
            return Ok(v);
        }
        if k.starts_with(id) {
            count += 1;
            found = Some(v);
        }
    }
    match (count, found) {
        (1, Some(v)) if !id.is_empty() => Ok(v),
        (n, _) if n > 1 => Err(ServerError::BadRequest(format!(
            "{kind} id prefix {id:?} matches {n} objects; give more characters"
        ))),
        _ => Err(ServerError::not_found(kind, id)),
    }
}

/// What a rule may not make up itself: the time and new object ids.
pub(crate) struct Env {
    /// Unix milliseconds.
    pub now: i64,
    ids: Box<dyn FnMut() -> String + Send>,
}

impl Env {
    /// The wall clock and random (v4) ids.
    pub fn live() -> Env {
        Env {
            now: crate::now_ms(),
            ids: Box::new(crate::new_id),
        }
    }

    pub fn id(&mut self) -> String {
        (self.ids)()
    }
}
