//! ACL vocabulary: policies in Nomad's HCL shape, the capabilities they
//! grant, tokens as stored (secret hashed), and the check of a token's
//! merged policies against what a request needs. Pure: the server decides
//! which request needs what and hands in the policies.

use crate::error::{Diagnostic, SpecError};
use crate::parse::LineIndex;
use hcl_edit::Span;
use hcl_edit::expr::Expression;
use hcl_edit::structure::{Attribute, Block, Body, Structure};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub use crate::namespace::DEFAULT_NAMESPACE;

/// Longest policy file the server stores, in bytes.
pub const MAX_RULES_BYTES: usize = 64 * 1024;

/// A coarse level: `policy = "..."` of any rule.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Deny,
    Read,
    Write,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        match s {
            "deny" => Some(Level::Deny),
            "read" => Some(Level::Read),
            "write" => Some(Level::Write),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Deny => "deny",
            Level::Read => "read",
            Level::Write => "write",
        }
    }

    /// Two grants of the same rule: deny wins, then the higher level
    /// (Nomad's merge).
    fn merge(a: Option<Level>, b: Option<Level>) -> Option<Level> {
        match (a, b) {
            (Some(Level::Deny), _) | (_, Some(Level::Deny)) => Some(Level::Deny),
            (a, b) => a.max(b),
        }
    }
}

/// What a namespace rule grants, with Nomad's names.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    Deny,
    ListJobs,
    ParseJob,
    ReadJob,
    SubmitJob,
    DispatchJob,
    ReadLogs,
    ReadFs,
    AllocExec,
    AllocNodeExec,
    AllocLifecycle,
    ReadJobScaling,
    ScaleJob,
}

impl Capability {
    pub const ALL: [Capability; 13] = [
        Capability::Deny,
        Capability::ListJobs,
        Capability::ParseJob,
        Capability::ReadJob,
        Capability::SubmitJob,
        Capability::DispatchJob,
        Capability::ReadLogs,
        Capability::ReadFs,
        Capability::AllocExec,
        Capability::AllocNodeExec,
        Capability::AllocLifecycle,
        Capability::ReadJobScaling,
        Capability::ScaleJob,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Deny => "deny",
            Capability::ListJobs => "list-jobs",
            Capability::ParseJob => "parse-job",
            Capability::ReadJob => "read-job",
            Capability::SubmitJob => "submit-job",
            Capability::DispatchJob => "dispatch-job",
            Capability::ReadLogs => "read-logs",
            Capability::ReadFs => "read-fs",
            Capability::AllocExec => "alloc-exec",
            Capability::AllocNodeExec => "alloc-node-exec",
            Capability::AllocLifecycle => "alloc-lifecycle",
            Capability::ReadJobScaling => "read-job-scaling",
            Capability::ScaleJob => "scale-job",
        }
    }

    fn parse(s: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// What `policy = "read"` or `"write"` of a namespace stands for, as in
    /// Nomad (`write` is `read` plus submitting, logs, exec and lifecycle;
    /// `alloc-node-exec` is only ever granted by name).
    pub fn expand(level: Level) -> &'static [Capability] {
        const READ: &[Capability] = &[
            Capability::ListJobs,
            Capability::ParseJob,
            Capability::ReadJob,
            Capability::ReadJobScaling,
        ];
        const WRITE: &[Capability] = &[
            Capability::ListJobs,
            Capability::ParseJob,
            Capability::ReadJob,
            Capability::ReadJobScaling,
            Capability::SubmitJob,
            Capability::DispatchJob,
            Capability::ReadLogs,
            Capability::ReadFs,
            Capability::AllocExec,
            Capability::AllocLifecycle,
            Capability::ScaleJob,
        ];
        match level {
            Level::Deny => &[Capability::Deny],
            Level::Read => READ,
            Level::Write => WRITE,
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `namespace "NAME" { policy = ... capabilities = [...] }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NamespaceRule {
    /// A namespace name, or a glob with `*`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Level>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<Capability>,
}

impl NamespaceRule {
    fn granted(&self) -> BTreeSet<Capability> {
        let mut caps: BTreeSet<Capability> = self.capabilities.iter().copied().collect();
        if let Some(l) = self.policy {
            caps.extend(Capability::expand(l));
        }
        caps
    }
}

/// The rules of one policy file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Policy {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<NamespaceRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Level>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Level>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<Level>,
}

/// A stored policy: its HCL as given and what it parsed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AclPolicy {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The HCL as applied.
    pub rules: String,
    /// The rules as the server reads them.
    pub parsed: Policy,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    /// Everything, policies or not.
    Management,
    /// What its policies grant.
    #[default]
    Client,
}

impl TokenType {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenType::Management => "management",
            TokenType::Client => "client",
        }
    }
}

/// A token as stored: the secret itself is never kept, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclToken {
    /// The public id: what `ls` shows and `revoke` takes.
    pub accessor_id: String,
    pub name: String,
    pub token_type: TokenType,
    pub policies: Vec<String>,
    /// Hex SHA-256 of the secret.
    pub secret_hash: String,
    /// Unix milliseconds.
    pub create_time: i64,
    /// Unix milliseconds after which the token is refused.
    pub expiration_time: Option<i64>,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

impl AclToken {
    pub fn expired(&self, now_ms: i64) -> bool {
        self.expiration_time.is_some_and(|t| now_ms >= t)
    }
}

/// Hex SHA-256 of a token secret. A secret carries at least 128 random
/// bits, so an unsalted fast hash is enough: the stored hash cannot be
/// turned back into a usable secret.
pub fn hash_secret(secret: &str) -> String {
    let d = Sha256::digest(secret.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two hashes without an early exit, so the time taken says
/// nothing about where they differ.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a token may do: its policies merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acl {
    Management,
    Rules {
        /// Namespace name or glob to the capabilities granted there
        /// (`Deny` among them denies everything there).
        namespaces: BTreeMap<String, BTreeSet<Capability>>,
        node: Option<Level>,
        agent: Option<Level>,
        operator: Option<Level>,
    },
}

/// The non-namespace rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Node,
    Agent,
    Operator,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Node => "node",
            Scope::Agent => "agent",
            Scope::Operator => "operator",
        }
    }
}

impl Acl {
    /// The union of the policies' grants; a deny anywhere wins over any
    /// grant of the same rule.
    pub fn from_policies<'a>(policies: impl IntoIterator<Item = &'a Policy>) -> Acl {
        let mut namespaces: BTreeMap<String, BTreeSet<Capability>> = BTreeMap::new();
        let (mut node, mut agent, mut operator) = (None, None, None);
        for p in policies {
            for r in &p.namespaces {
                namespaces
                    .entry(r.name.clone())
                    .or_default()
                    .extend(r.granted());
            }
            node = Level::merge(node, p.node);
            agent = Level::merge(agent, p.agent);
            operator = Level::merge(operator, p.operator);
        }
        Acl::Rules {
            namespaces,
            node,
            agent,
            operator,
        }
    }

    /// Whether `cap` is granted in namespace `ns`: the rule naming it
    /// exactly, else the most specific glob matching it (most literal
    /// characters, as Nomad's closest match).
    pub fn allows_namespace(&self, ns: &str, cap: Capability) -> bool {
        let Acl::Rules { namespaces, .. } = self else {
            return true;
        };
        let rule = namespaces.get(ns).or_else(|| {
            namespaces
                .iter()
                .filter(|(pat, _)| pat.contains('*') && glob_match(pat, ns))
                .max_by_key(|(pat, _)| (pat.chars().filter(|c| *c != '*').count(), Reverse(*pat)))
                .map(|(_, caps)| caps)
        });
        rule.is_some_and(|caps| !caps.contains(&Capability::Deny) && caps.contains(&cap))
    }

    /// Whether the rule of `scope` grants at least `want`.
    pub fn allows(&self, scope: Scope, want: Level) -> bool {
        let Acl::Rules {
            node,
            agent,
            operator,
            ..
        } = self
        else {
            return true;
        };
        let have = match scope {
            Scope::Node => node,
            Scope::Agent => agent,
            Scope::Operator => operator,
        };
        match have {
            Some(Level::Deny) | None => false,
            Some(l) => *l >= want && want != Level::Deny,
        }
    }
}

/// `*` matches any run of characters, everything else itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Whether a namespace name or glob is acceptable in a rule: 1-128 of
/// letters, digits, `-`, `_` and `*`.
fn valid_namespace(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*'))
}

/// Whether a policy name is acceptable: 1-128 of letters, digits, `-`,
/// `_` (it is a path segment of the API).
pub fn valid_policy_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

/// Parses a policy file. Every problem is reported at once, each with its
/// line, column and field (`namespace.default.policy`); unknown blocks,
/// attributes, levels and capabilities are refused.
pub fn parse_policy(file: &str, src: &str) -> Result<Policy, SpecError> {
    let lines = LineIndex::new(file, src);
    let body = lines.parse_body()?;
    let mut p = PolicyParser {
        lines,
        errors: Vec::new(),
    };
    let policy = p.body(&body);
    if p.errors.is_empty() {
        Ok(policy)
    } else {
        Err(SpecError::invalid(p.errors))
    }
}

struct PolicyParser<'a> {
    lines: LineIndex<'a>,
    errors: Vec<Diagnostic>,
}

impl PolicyParser<'_> {
    fn error(&mut self, span: Option<std::ops::Range<usize>>, field: &str, msg: impl Into<String>) {
        let at = self.lines.span(span);
        self.errors.push(Diagnostic::new(field, msg).at(at));
    }

    fn body(&mut self, body: &Body) -> Policy {
        let mut policy = Policy::default();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for s in body.iter() {
            let b = match s {
                Structure::Attribute(a) => {
                    let key = a.key.as_str();
                    self.error(
                        a.key.span(),
                        key,
                        format!(
                            "unknown attribute `{key}`: a policy holds `namespace`, `node`, `agent` and `operator` blocks"
                        ),
                    );
                    continue;
                }
                Structure::Block(b) => b,
            };
            let kind = b.ident.as_str();
            match kind {
                "namespace" => {
                    if let Some(rule) = self.namespace(b, &mut seen) {
                        policy.namespaces.push(rule);
                    }
                }
                "node" | "agent" | "operator" => {
                    let level = self.scope_rule(b, kind);
                    let slot = match kind {
                        "node" => &mut policy.node,
                        "agent" => &mut policy.agent,
                        _ => &mut policy.operator,
                    };
                    if slot.is_some() {
                        self.error(b.ident.span(), kind, format!("`{kind}` is given twice"));
                    }
                    if level.is_some() {
                        *slot = level;
                    }
                }
                other => self.error(
                    b.ident.span(),
                    other,
                    format!(
                        "unknown block `{other}`: a policy holds `namespace`, `node`, `agent` and `operator` blocks"
                    ),
                ),
            }
        }
        policy
    }

    fn namespace(&mut self, b: &Block, seen: &mut BTreeSet<String>) -> Option<NamespaceRule> {
        let name = match b.labels.as_slice() {
            [one] => one.as_str().to_string(),
            _ => {
                self.error(
                    b.ident.span(),
                    "namespace",
                    "a namespace block takes one label, its name or a glob: namespace \"default\" { ... }",
                );
                return None;
            }
        };
        let field = format!("namespace.{name}");
        if !valid_namespace(&name) {
            self.error(
                b.labels.first().and_then(|l| l.span()),
                &field,
                "a namespace name is 1-128 letters, digits, `-`, `_` or `*`",
            );
            return None;
        }
        if !seen.insert(name.clone()) {
            self.error(b.ident.span(), &field, "this namespace is given twice");
        }
        let mut rule = NamespaceRule {
            name,
            policy: None,
            capabilities: Vec::new(),
        };
        let mut given = BTreeSet::new();
        for s in b.body.iter() {
            match s {
                Structure::Block(inner) => {
                    let k = inner.ident.as_str();
                    self.error(
                        inner.ident.span(),
                        &format!("{field}.{k}"),
                        format!(
                            "unknown block `{k}`: a namespace rule holds `policy` and `capabilities`"
                        ),
                    );
                }
                Structure::Attribute(a) => {
                    let key = a.key.as_str();
                    let f = format!("{field}.{key}");
                    if !given.insert(key.to_string()) {
                        self.error(a.key.span(), &f, format!("`{key}` is given twice"));
                        continue;
                    }
                    match key {
                        "policy" => rule.policy = self.level(a, &f),
                        "capabilities" => rule.capabilities = self.capabilities(a, &f),
                        _ => self.error(
                            a.key.span(),
                            &f,
                            format!(
                                "unknown attribute `{key}`: a namespace rule holds `policy` and `capabilities`"
                            ),
                        ),
                    }
                }
            }
        }
        if given.is_empty() {
            self.error(
                b.ident.span(),
                &field,
                "a namespace rule needs `policy` or `capabilities`",
            );
        }
        Some(rule)
    }

    fn scope_rule(&mut self, b: &Block, kind: &str) -> Option<Level> {
        if !b.labels.is_empty() {
            self.error(
                b.ident.span(),
                kind,
                format!("a `{kind}` block takes no label: {kind} {{ policy = \"read\" }}"),
            );
        }
        let mut level = None;
        let mut given = false;
        for s in b.body.iter() {
            match s {
                Structure::Attribute(a) if a.key.as_str() == "policy" => {
                    let f = format!("{kind}.policy");
                    if given {
                        self.error(a.key.span(), &f, "`policy` is given twice");
                    }
                    given = true;
                    level = self.level(a, &f);
                }
                Structure::Attribute(a) => {
                    let key = a.key.as_str();
                    self.error(
                        a.key.span(),
                        &format!("{kind}.{key}"),
                        format!("unknown attribute `{key}`: a `{kind}` rule holds only `policy`"),
                    );
                }
                Structure::Block(inner) => {
                    let k = inner.ident.as_str();
                    self.error(
                        inner.ident.span(),
                        &format!("{kind}.{k}"),
                        format!("unknown block `{k}`: a `{kind}` rule holds only `policy`"),
                    );
                }
            }
        }
        if !given {
            self.error(
                b.ident.span(),
                kind,
                format!("a `{kind}` rule needs `policy = \"deny\" | \"read\" | \"write\"`"),
            );
        }
        level
    }

    fn level(&mut self, a: &Attribute, field: &str) -> Option<Level> {
        match &a.value {
            Expression::String(s) => {
                let v = s.as_str();
                let l = Level::parse(v);
                if l.is_none() {
                    self.error(
                        a.value.span(),
                        field,
                        format!("unknown policy {v:?}: one of \"deny\", \"read\", \"write\""),
                    );
                }
                l
            }
            _ => {
                self.error(
                    a.value.span(),
                    field,
                    "must be a string: \"deny\", \"read\" or \"write\"",
                );
                None
            }
        }
    }

    fn capabilities(&mut self, a: &Attribute, field: &str) -> Vec<Capability> {
        let Expression::Array(items) = &a.value else {
            self.error(
                a.value.span(),
                field,
                "must be a list of capability names: [\"list-jobs\", \"read-job\"]",
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let f = format!("{field}[{i}]");
            match item {
                Expression::String(s) => match Capability::parse(s.as_str()) {
                    Some(c) => out.push(c),
                    None => {
                        let known: Vec<&str> = Capability::ALL.iter().map(|c| c.as_str()).collect();
                        self.error(
                            item.span(),
                            &f,
                            format!(
                                "unknown capability {:?}; known: {}",
                                s.as_str(),
                                known.join(", ")
                            ),
                        );
                    }
                },
                _ => self.error(item.span(), &f, "must be a capability name string"),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nomad_shaped_policies() {
        let p = parse_policy(
            "p.hcl",
            r#"
namespace "default" {
  policy = "read"
  capabilities = ["read-logs"]
}
namespace "prod-*" { policy = "write" }
node { policy = "read" }
agent { policy = "deny" }
operator { policy = "write" }
"#,
        )
        .unwrap();
        assert_eq!(p.namespaces.len(), 2);
        assert_eq!(p.namespaces[0].policy, Some(Level::Read));
        assert_eq!(p.namespaces[0].capabilities, vec![Capability::ReadLogs]);
        assert_eq!(p.node, Some(Level::Read));
        assert_eq!(p.agent, Some(Level::Deny));
        assert_eq!(p.operator, Some(Level::Write));
        let acl = Acl::from_policies([&p]);
        assert!(acl.allows_namespace("default", Capability::ListJobs));
        assert!(acl.allows_namespace("default", Capability::ReadLogs));
        assert!(!acl.allows_namespace("default", Capability::SubmitJob));
        assert!(acl.allows_namespace("prod-eu", Capability::SubmitJob));
        assert!(!acl.allows_namespace("staging", Capability::ListJobs));
        assert!(acl.allows(Scope::Node, Level::Read));
        assert!(!acl.allows(Scope::Node, Level::Write));
        assert!(!acl.allows(Scope::Agent, Level::Read));
        assert!(acl.allows(Scope::Operator, Level::Write));
    }

    #[test]
    fn errors_name_line_and_field() {
        let err = parse_policy(
            "p.hcl",
            "namespace \"default\" {\n  policy = \"admin\"\n  colour = \"red\"\n}\nnode { policy = \"read\" }\nquota { policy = \"read\" }\nnamespace \"x\" { capabilities = [\"read-job\", \"fly\"] }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("p.hcl:2:12: namespace.default.policy: unknown policy \"admin\""),
            "{err}"
        );
        assert!(
            err.contains("p.hcl:3:3: namespace.default.colour: unknown attribute"),
            "{err}"
        );
        assert!(err.contains("p.hcl:6:1: quota: unknown block"), "{err}");
        assert!(
            err.contains("namespace.x.capabilities[1]: unknown capability \"fly\""),
            "{err}"
        );
        let syntax = parse_policy("p.hcl", "namespace \"a\" {\n  policy = \n}")
            .unwrap_err()
            .to_string();
        assert!(syntax.starts_with("p.hcl:"), "{syntax}");
    }

    #[test]
    fn deny_wins_and_globs_pick_the_closest() {
        let a = parse_policy("a", r#"namespace "*" { policy = "write" }"#).unwrap();
        let b = parse_policy(
            "b",
            r#"namespace "default" { capabilities = ["deny"] }
namespace "prod-*" { policy = "read" }
node { policy = "write" }"#,
        )
        .unwrap();
        let c = parse_policy("c", r#"node { policy = "deny" }"#).unwrap();
        let acl = Acl::from_policies([&a, &b, &c]);
        assert!(!acl.allows_namespace("default", Capability::ListJobs));
        assert!(acl.allows_namespace("other", Capability::SubmitJob));
        assert!(!acl.allows_namespace("prod-eu", Capability::SubmitJob));
        assert!(acl.allows_namespace("prod-eu", Capability::ReadJob));
        assert!(!acl.allows(Scope::Node, Level::Read));
        assert!(Acl::Management.allows_namespace("x", Capability::AllocExec));
    }

    #[test]
    fn globs_and_hashes() {
        assert!(glob_match("*", "default"));
        assert!(glob_match("prod-*", "prod-"));
        assert!(glob_match("a*c*e", "abcde"));
        assert!(!glob_match("a*c", "abcd"));
        assert!(!glob_match("", "a"));
        let h = hash_secret("s3cret");
        assert_eq!(h.len(), 64);
        assert!(hashes_equal(&h, &hash_secret("s3cret")));
        assert!(!hashes_equal(&h, &hash_secret("s3creT")));
        assert!(!hashes_equal(&h, "short"));
    }
}
