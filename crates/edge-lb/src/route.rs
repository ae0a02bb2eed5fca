//! HTTP routing on a shared port: Host (exact or `*.suffix`) first, then the
//! longest path prefix, so several services can publish the same port.

use std::borrow::Cow;

/// What a route's `Host` side matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com` keeps `.example.com`: any non-empty label(s) before it.
    Suffix(String),
}

impl HostPattern {
    /// `None` when the pattern is empty or has a `*` anywhere but in front.
    pub(crate) fn parse(raw: &str) -> Option<Self> {
        let host = normalize_host(raw).into_owned();
        if host.is_empty() {
            return None;
        }
        match host.strip_prefix('*') {
            Some(rest) if rest.starts_with('.') && rest.len() > 1 && !rest.contains('*') => {
                Some(HostPattern::Suffix(rest.to_string()))
            }
            Some(_) => None,
            None if host.contains('*') => None,
            None => Some(HostPattern::Exact(host)),
        }
    }

    pub(crate) fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Exact(h) => h == host,
            HostPattern::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }

    /// Exact beats a wildcard, a longer wildcard beats a shorter one, and both
    /// beat a route that takes any host.
    fn rank(&self) -> (u8, usize) {
        match self {
            HostPattern::Any => (0, 0),
            HostPattern::Suffix(s) => (1, s.len()),
            HostPattern::Exact(h) => (2, h.len()),
        }
    }

    pub(crate) fn display(&self) -> String {
        match self {
            HostPattern::Any => "*".to_string(),
            HostPattern::Exact(h) => h.clone(),
            HostPattern::Suffix(s) => format!("*{s}"),
        }
    }
}

/// Lowercase, without port and trailing dot, as hosts are compared.
pub(crate) fn normalize_host(raw: &str) -> Cow<'_, str> {
    let raw = raw.trim();
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // IPv6 literal: keep the brackets' content, drop the port after them.
        rest.split(']').next().unwrap_or(rest)
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => raw,
        }
    };
    let host = host.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// Whether `path` is under `prefix`, on segment boundaries: `/api` takes
/// `/api` and `/api/x` but not `/apix`.
fn path_matches(prefix: &str, path: &str) -> bool {
    if prefix.is_empty() || prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with(['/', '?']),
        None => false,
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Route<T> {
    pub(crate) host: HostPattern,
    pub(crate) prefix: String,
    pub(crate) target: T,
}

/// Routes kept sorted most specific first, so the first match wins.
#[derive(Debug, Clone)]
pub(crate) struct Router<T> {
    routes: Vec<Route<T>>,
}

impl<T> Router<T> {
    pub(crate) fn new(mut routes: Vec<Route<T>>) -> Self {
        routes.sort_by_key(|r| std::cmp::Reverse((r.host.rank(), r.prefix.len())));
        Router { routes }
    }

    /// `host` must already be normalized.
    pub(crate) fn find(&self, host: &str, path: &str) -> Option<&T> {
        self.routes
            .iter()
            .find(|r| r.host.matches(host) && path_matches(&r.prefix, path))
            .map(|r| &r.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: &str, prefix: &str, target: &'static str) -> Route<&'static str> {
        let host = if host.is_empty() {
            HostPattern::Any
        } else {
            HostPattern::parse(host).expect("valid pattern")
        };
        Route {
            host,
            prefix: prefix.to_string(),
            target,
        }
    }

    #[test]
    fn host_patterns_parse_and_match() {
        assert_eq!(
            HostPattern::parse("Web.Example:8080"),
            Some(HostPattern::Exact("web.example".into()))
        );
        let wild = HostPattern::parse("*.example.com").expect("wildcard");
        assert!(wild.matches("a.example.com"));
        assert!(wild.matches("a.b.example.com"));
        assert!(!wild.matches("example.com"));
        assert!(!wild.matches("badexample.com"));
        assert_eq!(HostPattern::parse("a.*.com"), None);
        assert_eq!(HostPattern::parse("*"), None);
        assert_eq!(HostPattern::parse(""), None);
    }

    #[test]
    fn normalizes_hosts() {
        assert_eq!(normalize_host("Example.COM."), "example.com");
        assert_eq!(normalize_host("example.com:443"), "example.com");
        assert_eq!(normalize_host("[::1]:8080"), "::1");
    }

    #[test]
    fn most_specific_host_then_longest_prefix() {
        let router = Router::new(vec![
            route("", "/", "root"),
            route("", "/api", "api"),
            route("", "/api/v2", "api2"),
            route("*.example.com", "", "wild"),
            route("shop.example.com", "", "shop"),
            route("shop.example.com", "/admin", "admin"),
        ]);
        assert_eq!(router.find("other", "/"), Some(&"root"));
        assert_eq!(router.find("other", "/api"), Some(&"api"));
        assert_eq!(router.find("other", "/api/v2/x"), Some(&"api2"));
        assert_eq!(router.find("other", "/apix"), Some(&"root"));
        assert_eq!(router.find("x.example.com", "/api"), Some(&"wild"));
        assert_eq!(router.find("shop.example.com", "/"), Some(&"shop"));
        assert_eq!(
            router.find("shop.example.com", "/admin/users"),
            Some(&"admin")
        );
    }

    #[test]
    fn no_route_without_catch_all() {
        let router = Router::new(vec![route("a.example", "/x", "a")]);
        assert_eq!(router.find("a.example", "/y"), None);
        assert_eq!(router.find("b.example", "/x"), None);
    }
}
