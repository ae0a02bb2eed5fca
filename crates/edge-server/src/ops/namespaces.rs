//! Namespace rules: creating or describing one, and deleting one that
//! holds nothing. `default` always exists and is never deleted.

use crate::ServerError;
use edge_api::NamespaceApplyRequest;
use edge_spec::namespace::{MAX_DESCRIPTION_LEN, namespace_problem};
use edge_spec::{DEFAULT_NAMESPACE, Namespace};
use edge_store::{Batch, State};

/// Creates namespace `name`, or sets the description of the one there is.
pub(crate) fn apply(name: &str, req: NamespaceApplyRequest) -> Result<Batch, ServerError> {
    if let Some(reason) = namespace_problem(name) {
        return Err(ServerError::BadRequest(reason));
    }
    let chars = req.description.chars().count();
    if chars > MAX_DESCRIPTION_LEN {
        return Err(ServerError::BadRequest(format!(
            "description: {chars} characters, at most {MAX_DESCRIPTION_LEN} are allowed"
        )));
    }
    Ok(Batch {
        namespaces: vec![Namespace {
            name: name.to_string(),
            description: req.description,
            create_index: 0,
            modify_index: 0,
        }],
        ..Batch::default()
    })
}

/// Deletes namespace `name` once no job, allocation, evaluation or
/// deployment is left in it: its objects would otherwise be orphaned.
pub(crate) fn delete(s: &State, name: &str) -> Result<Batch, ServerError> {
    if name == DEFAULT_NAMESPACE {
        return Err(ServerError::Conflict(
            "namespace \"default\" always exists and cannot be deleted".to_string(),
        ));
    }
    if !s.namespaces.contains_key(name) {
        return Err(ServerError::NoNamespace(name.to_string()));
    }
    let jobs: Vec<&str> = s
        .jobs
        .values()
        .filter(|j| j.namespace == name)
        .map(|j| j.id.as_str())
        .take(5)
        .collect();
    if !jobs.is_empty() {
        return Err(ServerError::Conflict(format!(
            "namespace {name:?} still holds jobs ({}): purge them first (`edge job stop --purge -namespace {name} JOB`)",
            jobs.join(", ")
        )));
    }
    let live = s
        .allocs
        .values()
        .filter(|a| a.namespace == name && !a.is_terminal())
        .count();
    if live > 0 {
        return Err(ServerError::Conflict(format!(
            "namespace {name:?} still has {live} allocation(s) stopping; try again once they stopped"
        )));
    }
    Ok(Batch {
        delete_namespaces: vec![name.to_string()],
        ..Batch::default()
    })
}
