//! Namespaces, Nomad's: every job, allocation, evaluation and deployment
//! lives in one. Job ids and service names are unique per namespace; the
//! rest of the system keys a job by its `job_key`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The namespace of everything that names none; it always exists.
pub const DEFAULT_NAMESPACE: &str = "default";

/// `?namespace=*` on a listing: every namespace the caller may read.
pub const ALL_NAMESPACES: &str = "*";

/// A namespace name as a JSON Schema pattern: a lowercase DNS label, since
/// it is one (`NAME.NAMESPACE.service.edge`), other than the reserved ones.
pub const NAMESPACE_PATTERN: &str = "^(?!(canary|node|tasks)$)[a-z0-9]([a-z0-9-]*[a-z0-9])?$";

/// A DNS label's length.
pub const MAX_NAMESPACE_LEN: usize = 63;

/// Labels with a meaning of their own under `service.edge`
/// (`tasks.NAME`, `canary.NAME`, `NODE.node`): a namespace of that name
/// would make those names ambiguous.
pub const RESERVED_NAMESPACES: &[&str] = &["canary", "node", "tasks"];

/// Longest namespace description, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 1024;

/// A namespace as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Namespace {
    #[schemars(length(min = 1, max = MAX_NAMESPACE_LEN), pattern(NAMESPACE_PATTERN))]
    pub name: String,
    #[serde(default)]
    #[schemars(length(max = MAX_DESCRIPTION_LEN))]
    pub description: String,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub create_index: u64,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub modify_index: u64,
}

impl Namespace {
    /// The namespace that exists without being created.
    pub fn default_namespace() -> Namespace {
        Namespace {
            name: DEFAULT_NAMESPACE.to_string(),
            description: "Default shared namespace".to_string(),
            create_index: 0,
            modify_index: 0,
        }
    }
}

/// Why `name` is not a namespace name, or `None` when it is one.
pub fn namespace_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_NAMESPACE_LEN {
        return Some(format!(
            "a namespace name is 1-{MAX_NAMESPACE_LEN} characters, got {}",
            name.len()
        ));
    }
    let label = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !label {
        return Some(format!(
            "namespace {:?} is not a lowercase DNS label (letters a-z, digits and `-`, not first or last): it becomes NAME.NAMESPACE.service.edge",
            shorten(name)
        ));
    }
    if RESERVED_NAMESPACES.contains(&name) {
        return Some(format!(
            "namespace {name:?} is reserved: `{name}.NAME.service.edge` already means something else"
        ));
    }
    None
}

fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

/// The key the server stores and indexes a job under: its id in the
/// default namespace (so stores from before namespaces keep their keys),
/// `NAMESPACE/ID` elsewhere. A namespace holds no `/` and neither does a
/// submitted job's id; the server's child jobs (`JOB/periodic-<unix>`) do,
/// so theirs is always `NAMESPACE/ID`, `default` included: a key with a
/// `/` starts with its namespace, and no two jobs share one.
pub fn job_key(namespace: &str, id: &str) -> String {
    let default = namespace == DEFAULT_NAMESPACE || namespace.is_empty();
    if default && !id.contains('/') {
        id.to_string()
    } else if default {
        format!("{DEFAULT_NAMESPACE}/{id}")
    } else {
        format!("{namespace}/{id}")
    }
}

/// The catalog's key of service `name` in `namespace`, which is also its
/// name under the DNS zone: `NAME` in the default namespace,
/// `NAME.NAMESPACE` elsewhere. A service name holds no `.`, so the two
/// never meet.
pub fn service_key(namespace: &str, name: &str) -> String {
    if namespace == DEFAULT_NAMESPACE || namespace.is_empty() {
        name.to_string()
    } else {
        format!("{name}.{namespace}")
    }
}

/// The serde default of every object's `namespace`.
pub fn default_namespace() -> String {
    DEFAULT_NAMESPACE.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels_and_not_reserved() {
        for ok in ["default", "prod", "a", "team-1", &"x".repeat(63)] {
            assert_eq!(namespace_problem(ok), None, "{ok}");
        }
        for bad in [
            "", "Prod", "-a", "a-", "a_b", "a.b", "../x", "*", "tasks", "node",
        ] {
            assert!(namespace_problem(bad).is_some(), "{bad}");
        }
        assert!(namespace_problem(&"x".repeat(64)).is_some());
        assert!(
            namespace_problem("../../etc")
                .unwrap()
                .contains("not a lowercase DNS label")
        );
    }

    #[test]
    fn keys_of_the_default_namespace_are_bare_ids() {
        assert_eq!(job_key("default", "web"), "web");
        assert_eq!(job_key("prod", "web"), "prod/web");
        assert_eq!(service_key("default", "web"), "web");
        assert_eq!(service_key("prod", "web"), "web.prod");
    }
}
