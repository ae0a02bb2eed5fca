//! Talking to image registries over the distribution HTTP API: endpoints
//! (mirrors first, plain HTTP where configured), token and basic auth,
//! manifests and blobs.

use crate::error::ContainerdError;
use crate::reference::{DEFAULT_REGISTRY, Reference};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// Registry settings of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Registries (`host[:port]`) spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// Registry host → mirror base URLs tried before it, in order
    /// (`docker.io` → `http://10.0.0.2:5000`).
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Registry or mirror host → credentials.
    pub auth: BTreeMap<String, Credentials>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone)]
struct Endpoint {
    /// `https://registry-1.docker.io`.
    base: String,
    /// Key into the credentials map.
    host: String,
}

#[derive(Debug)]
pub(crate) struct Registry {
    http: reqwest::Client,
    cfg: RegistryConfig,
}

/// A fetched manifest or index, as the registry served it.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub body: Vec<u8>,
    pub media_type: String,
    pub digest: String,
}

impl Registry {
    pub(crate) fn new(cfg: RegistryConfig) -> Result<Registry, ContainerdError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("edge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ContainerdError::Io {
                action: "building the registry HTTP client".to_string(),
                source: std::io::Error::other(e),
            })?;
        Ok(Registry { http, cfg })
    }

    fn scheme(&self, host: &str) -> &'static str {
        if self.cfg.insecure.iter().any(|h| h == host) {
            "http"
        } else {
            "https"
        }
    }

    fn endpoints(&self, r: &Reference) -> Vec<Endpoint> {
        let mut out: Vec<Endpoint> = self
            .cfg
            .mirrors
            .get(&r.registry)
            .into_iter()
            .flatten()
            .map(|m| {
                let m = m.trim_end_matches('/');
                match m.split_once("://") {
                    Some((_, host)) => Endpoint {
                        base: m.to_string(),
                        host: host.to_string(),
                    },
                    None => Endpoint {
                        base: format!("{}://{m}", self.scheme(m)),
                        host: m.to_string(),
                    },
                }
            })
            .collect();
        let host = if r.registry == DEFAULT_REGISTRY {
            "registry-1.docker.io"
        } else {
            &r.registry
        };
        out.push(Endpoint {
            base: format!("{}://{host}", self.scheme(&r.registry)),
            host: r.registry.clone(),
        });
        out
    }

    pub(crate) fn session<'a>(&'a self, reference: &'a Reference) -> Session<'a> {
        Session {
            reg: self,
            reference,
            endpoints: self.endpoints(reference),
            chosen: None,
            auth: None,
        }
    }
}

/// One pull: the endpoint that answered first is used for every blob.
#[derive(Debug)]
pub(crate) struct Session<'a> {
    reg: &'a Registry,
    reference: &'a Reference,
    endpoints: Vec<Endpoint>,
    chosen: Option<usize>,
    /// The `Authorization` value that worked.
    auth: Option<String>,
}

impl Session<'_> {
    /// Where the blobs come from, for messages.
    pub(crate) fn source(&self) -> String {
        let i = self
            .chosen
            .unwrap_or(self.endpoints.len().saturating_sub(1));
        self.endpoints
            .get(i)
            .map_or_else(String::new, |e| e.base.clone())
    }

    /// Fetches a manifest or index by tag or digest, trying each endpoint.
    pub(crate) async fn manifest(&mut self, object: &str) -> Result<Fetched, ContainerdError> {
        let accept = [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST].join(", ");
        let path = format!("/v2/{}/manifests/{object}", self.reference.repository);
        let order: Vec<usize> = match self.chosen {
            Some(i) => vec![i],
            None => (0..self.endpoints.len()).collect(),
        };
        let mut failures = Vec::new();
        for i in order {
            match self.get(i, &path, &accept).await {
                Ok(resp) => {
                    let media_type = resp
                        .headers()
                        .get(CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
                    let body = read_limited(resp, MAX_MANIFEST_BYTES)
                        .await
                        .map_err(|m| self.err(format!("reading manifest: {m}")))?;
                    let media_type = match media_type {
                        Some(mt) if mt != "application/json" && !mt.is_empty() => mt,
                        _ => media_type_field(&body).unwrap_or_else(|| OCI_MANIFEST.to_string()),
                    };
                    let digest = crate::sha256_digest(&body);
                    if object.contains(':') && object != digest {
                        return Err(
                            self.err(format!("registry served manifest {digest} for {object}"))
                        );
                    }
                    self.chosen = Some(i);
                    return Ok(Fetched {
                        body,
                        media_type,
                        digest,
                    });
                }
                Err(m) => failures.push(format!("{}: {m}", self.endpoints[i].base)),
            }
        }
        Err(self.err(failures.join("; ")))
    }

    /// Starts downloading a blob from the endpoint that served the manifest.
    pub(crate) async fn blob(
        &mut self,
        digest: &str,
    ) -> Result<reqwest::Response, ContainerdError> {
        let i = self
            .chosen
            .unwrap_or(self.endpoints.len().saturating_sub(1));
        let path = format!("/v2/{}/blobs/{digest}", self.reference.repository);
        self.get(i, &path, "*/*")
            .await
            .map_err(|m| self.err(format!("blob {digest}: {m}")))
    }

    pub(crate) async fn blob_bytes(
        &mut self,
        digest: &str,
        limit: usize,
    ) -> Result<Vec<u8>, ContainerdError> {
        let resp = self.blob(digest).await?;
        let body = read_limited(resp, limit)
            .await
            .map_err(|m| self.err(format!("blob {digest}: {m}")))?;
        if crate::sha256_digest(&body) != digest {
            return Err(self.err(format!("blob {digest}: content does not match its digest")));
        }
        Ok(body)
    }

    fn err(&self, message: String) -> ContainerdError {
        ContainerdError::image(&self.reference.to_string(), message)
    }

    /// GET with auth: on a 401 it answers the challenge (bearer token or
    /// basic) once and retries.
    async fn get(
        &mut self,
        i: usize,
        path: &str,
        accept: &str,
    ) -> Result<reqwest::Response, String> {
        let ep = self.endpoints[i].clone();
        let url = format!("{}{path}", ep.base);
        let send = |auth: Option<&str>| {
            let mut b = self.reg.http.get(&url).header(ACCEPT, accept);
            if let Some(a) = auth {
                b = b.header(AUTHORIZATION, a);
            }
            b.send()
        };
        let resp = send(self.auth.as_deref())
            .await
            .map_err(|e| crate::client::error_chain(&e))?;
        let resp = if resp.status() == StatusCode::UNAUTHORIZED {
            let challenge = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let auth = self.answer(&ep, &challenge).await?;
            let resp = send(Some(&auth))
                .await
                .map_err(|e| crate::client::error_chain(&e))?;
            self.auth = Some(auth);
            resp
        } else {
            resp
        };
        match resp.status() {
            s if s.is_success() => Ok(resp),
            StatusCode::NOT_FOUND => Err("not found (404)".to_string()),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(format!(
                "access denied ({}); set credentials with --registry-auth {}=USER:PASS",
                resp.status().as_u16(),
                ep.host
            )),
            s => Err(format!("HTTP {}", s.as_u16())),
        }
    }

    async fn answer(&self, ep: &Endpoint, challenge: &str) -> Result<String, String> {
        let creds = self.reg.cfg.auth.get(&ep.host);
        let (scheme, params) = parse_challenge(challenge);
        if scheme.eq_ignore_ascii_case("basic") {
            let c = creds.ok_or_else(|| {
                format!(
                    "registry wants a password; set --registry-auth {}=USER:PASS",
                    ep.host
                )
            })?;
            return Ok(format!(
                "Basic {}",
                base64(format!("{}:{}", c.username, c.password).as_bytes())
            ));
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(format!("unsupported auth challenge {challenge:?}"));
        }
        let realm = params
            .get("realm")
            .ok_or_else(|| "auth challenge has no realm".to_string())?;
        let scope = params
            .get("scope")
            .cloned()
            .unwrap_or_else(|| format!("repository:{}:pull", self.reference.repository));
        let mut query = vec![("scope", scope)];
        if let Some(s) = params.get("service") {
            query.push(("service", s.clone()));
        }
        let mut b = self.reg.http.get(realm).query(&query);
        if let Some(c) = creds {
            b = b.basic_auth(&c.username, Some(&c.password));
        }
        let resp = b
            .send()
            .await
            .map_err(|e| format!("token from {realm}: {}", crate::client::error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(format!(
                "token from {realm}: HTTP {}",
                resp.status().as_u16()
            ));
        }
        #[derive(Deserialize)]
        struct Token {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
        }
        let t: Token = resp
            .json()
            .await
            .map_err(|e| format!("token from {realm}: {e}"))?;
        let token = if t.token.is_empty() {
            t.access_token
        } else {
            t.token
        };
        if token.is_empty() {
            return Err(format!("token from {realm}: empty"));
        }
        Ok(format!("Bearer {token}"))
    }
}

async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| crate::client::error_chain(&e))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > limit {
            return Err(format!("larger than {limit} bytes"));
        }
    }
    Ok(body)
}

fn media_type_field(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let p: Probe = serde_json::from_slice(body).ok()?;
    p.media_type
        .or_else(|| p.manifests.map(|_| OCI_INDEX.to_string()))
}

/// `Bearer realm="...",service="...",scope="a:b:pull,push"` → scheme and
/// parameters; commas inside quotes belong to the value.
fn parse_challenge(h: &str) -> (String, BTreeMap<String, String>) {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut escaped = false;
            for c in chars.by_ref() {
                match (escaped, c) {
                    (false, '\\') => escaped = true,
                    (false, '"') => break,
                    _ => {
                        value.push(c);
                        escaped = false;
                    }
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    (scheme.to_string(), params)
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_auth_challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        let (s, p) = parse_challenge(r#"Basic realm="basic-realm""#);
        assert_eq!(s, "Basic");
        assert_eq!(p["realm"], "basic-realm");
    }

    #[test]
    fn encodes_base64() {
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn mirrors_come_first_and_insecure_hosts_use_http() {
        let mut cfg = RegistryConfig {
            insecure: vec!["127.0.0.1:5000".to_string(), "mirror:5000".to_string()],
            ..Default::default()
        };
        cfg.mirrors.insert(
            "docker.io".to_string(),
            vec!["mirror:5000".to_string(), "https://m2.example/".to_string()],
        );
        let reg = Registry::new(cfg).unwrap();
        let eps = reg.endpoints(&Reference::parse("busybox").unwrap());
        let bases: Vec<_> = eps.iter().map(|e| e.base.as_str()).collect();
        assert_eq!(
            bases,
            [
                "http://mirror:5000",
                "https://m2.example",
                "https://registry-1.docker.io"
            ]
        );
        let eps = reg.endpoints(&Reference::parse("127.0.0.1:5000/web").unwrap());
        assert_eq!(eps[0].base, "http://127.0.0.1:5000");
    }
}
