//! Image references the way Docker spells them: `busybox` is
//! `docker.io/library/busybox:latest`, a first component with a dot, a
//! colon or `localhost` names the registry, `@sha256:...` pins a digest.

use crate::error::ContainerdError;
use std::fmt;

pub(crate) const DEFAULT_REGISTRY: &str = "docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io`, `ghcr.io`, `127.0.0.1:5000`...
    pub registry: String,
    /// `library/busybox`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, ContainerdError> {
        let bad = |message: &str| ContainerdError::Reference {
            reference: s.to_string(),
            message: message.to_string(),
        };
        let s = s.trim();
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("must not contain whitespace"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let Some((alg, hex)) = d.split_once(':') else {
                    return Err(bad("digest must be algorithm:hex"));
                };
                if alg.is_empty() || hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(bad("digest must be algorithm:hex"));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag is after the last colon that follows the last slash, so a
        // registry port is never taken for one.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                if tag.is_empty() || tag.len() > 128 {
                    return Err(bad("tag must be 1 to 128 characters"));
                }
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let valid_component = |c: &str| {
            !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
        };
        if !repository.split('/').all(valid_component) {
            return Err(bad(
                "repository must be lowercase letters, digits and . _ - separated by /",
            ));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// What the registry's manifest endpoint is asked for: the digest when
    /// pinned, else the tag.
    pub(crate) fn object(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

/// The full name images are stored under, e.g. `docker.io/library/busybox:latest`.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(full("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full("nginx:1.25"), "docker.io/library/nginx:1.25");
        assert_eq!(full("bitnami/redis"), "docker.io/bitnami/redis:latest");
        assert_eq!(full("ghcr.io/a/b:v1"), "ghcr.io/a/b:v1");
        assert_eq!(full("127.0.0.1:5000/web"), "127.0.0.1:5000/web:latest");
        assert_eq!(full("localhost/web:2"), "localhost/web:2");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.object(), d);
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{d}"));
    }

    #[test]
    fn rejects_malformed_references() {
        for bad in [
            "",
            "Busybox",
            "a b",
            "web:",
            "web@sha256",
            "web@sha256:xyz",
            "a//b",
        ] {
            assert!(
                matches!(
                    Reference::parse(bad),
                    Err(ContainerdError::Reference { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
