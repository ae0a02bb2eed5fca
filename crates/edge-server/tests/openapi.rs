//! `api/openapi.yaml` and the router must agree: every route of the router is
//! in the spec, every path and method of the spec is served, every error
//! a malformed request gets is JSON and listed for its route, and the body
//! schemas are the ones the Rust types generate.

mod common;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../api/openapi.yaml");

fn spec() -> serde_yaml::Value {
    let text = std::fs::read_to_string(SPEC).expect("api/openapi.yaml exists");
    serde_yaml::from_str(&text).expect("openapi.yaml is valid YAML")
}

/// Where the lines of `components/schemas` start and end in `text`: after
/// the `  schemas:` line, up to the next key of `components` (or the next
/// top-level key).
fn schemas_block(text: &str) -> (usize, usize) {
    let key = "\n  schemas:\n";
    let start = text
        .find(key)
        .expect("components/schemas in api/openapi.yaml")
        + key.len();
    let mut end = start;
    for line in text[start..].split_inclusive('\n') {
        let indent = line.len() - line.trim_start_matches(' ').len();
        if indent < 4 && !line.trim().is_empty() {
            break;
        }
        end += line.len();
    }
    (start, end)
}

/// `components/schemas` as the Rust types generate it, indented to its
/// place in the file.
fn generated_schemas() -> String {
    let mut out = String::new();
    block_yaml(&Value::Object(edge_api::schema::components()), 4, &mut out);
    out
}

/// `v` as block YAML at `indent`, keys sorted whatever order serde_json's
/// features give its maps. Every string is written JSON-quoted: serde_yaml
/// leaves strings such as `=` bare, which YAML 1.1 readers (schemathesis's
/// among them) take for something else.
fn block_yaml(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) if !map.is_empty() => {
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            for (k, item) in sorted {
                let plain = k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_$-".contains(c));
                let key = if plain {
                    k.clone()
                } else {
                    Value::from(k.as_str()).to_string()
                };
                out.push_str(&format!("{pad}{key}:"));
                nested_yaml(item, indent + 2, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                let mut inner = String::new();
                block_yaml(item, indent + 2, &mut inner);
                out.push_str(&format!("{pad}- {}", &inner[indent + 2..]));
            }
        }
        scalar => out.push_str(&format!("{pad}{scalar}\n")),
    }
}

/// The value of a mapping key: on the key's line when it is a scalar or
/// empty, else as a block under it.
fn nested_yaml(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            block_yaml(v, indent, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            block_yaml(v, indent - 2, out);
        }
        scalar => out.push_str(&format!(" {scalar}\n")),
    }
}

#[test]
fn body_schemas_are_the_ones_the_rust_types_generate() {
    let text = std::fs::read_to_string(SPEC).expect("api/openapi.yaml exists");
    let (start, end) = schemas_block(&text);
    let want = generated_schemas();
    let have = &text[start..end];
    if have == want {
        return;
    }
    if std::env::var_os("EDGE_BLESS").is_some_and(|v| v == "1") {
        let updated = format!("{}{want}{}", &text[..start], &text[end..]);
        std::fs::write(SPEC, updated).expect("rewrite api/openapi.yaml");
        return;
    }
    let diff = similar::TextDiff::from_lines(have, want.as_str())
        .unified_diff()
        .context_radius(3)
        .header("api/openapi.yaml", "generated from the Rust types")
        .to_string();
    panic!(
        "components/schemas of api/openapi.yaml differs from what the Rust types \
         generate (EDGE_BLESS=1 cargo test -p edge-server --test openapi rewrites it):\n{diff}"
    );
}

#[test]
fn every_schema_reference_names_a_schema_of_the_file() {
    let doc = spec();
    let schemas = doc["components"]["schemas"]
        .as_mapping()
        .expect("components/schemas");
    let text = std::fs::read_to_string(SPEC).expect("api/openapi.yaml exists");
    let missing: BTreeSet<&str> = text
        .split("#/components/schemas/")
        .skip(1)
        .filter_map(|rest| rest.split(['\'', '"']).next())
        .filter(|name| !schemas.contains_key(*name))
        .collect();
    assert!(
        missing.is_empty(),
        "api/openapi.yaml refers to schemas it does not have: {missing:?} \
         (register their types in edge_api::schema::components)"
    );
}

fn spec_routes() -> BTreeSet<(String, String)> {
    let doc = spec();
    let paths = doc["paths"].as_mapping().expect("paths");
    let mut out = BTreeSet::new();
    for (path, item) in paths {
        for (method, _) in item.as_mapping().expect("path item") {
            let m = method.as_str().unwrap().to_uppercase();
            if ["GET", "POST", "PUT", "DELETE", "PATCH"].contains(&m.as_str()) {
                out.insert((m, path.as_str().unwrap().to_string()));
            }
        }
    }
    out
}

#[test]
fn spec_lists_exactly_the_router_routes() {
    let spec = spec_routes();
    let code: BTreeSet<(String, String)> = edge_server::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let missing: Vec<_> = code.difference(&spec).collect();
    let extra: Vec<_> = spec.difference(&code).collect();
    assert!(
        missing.is_empty(),
        "routes missing from api/openapi.yaml: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "routes in api/openapi.yaml the server does not list: {extra:?}"
    );
}

#[tokio::test]
async fn every_listed_route_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let h = common::start(dir.path()).await;
    let http = reqwest::Client::new();
    for (method, path) in edge_server::ROUTES {
        if *path == "/v1/event/stream" {
            continue;
        }
        let url = format!(
            "http://{}{}",
            h.addr,
            path.replace("{id}", "x").replace("{accessor}", "x")
        );
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = http
            .request(m, &url)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_ne!(status, 405, "{method} {path} is not routed");
        assert!(
            !body.contains("no such route"),
            "{method} {path} is not routed"
        );
    }
    h.shutdown().await;
}

/// The statuses `api/openapi.yaml` lists for each route.
fn spec_statuses() -> BTreeMap<(String, String), BTreeSet<u16>> {
    let doc = spec();
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_mapping().expect("paths") {
        for (method, op) in item.as_mapping().expect("path item") {
            let Some(responses) = op.get("responses").and_then(|r| r.as_mapping()) else {
                continue;
            };
            let statuses = responses
                .keys()
                .map(|k| k.as_str().expect("status").parse().expect("numeric status"))
                .collect();
            let key = (
                method.as_str().unwrap().to_uppercase(),
                path.as_str().unwrap().to_string(),
            );
            out.insert(key, statuses);
        }
    }
    out
}

/// Malformed variants of a request to `path`: a query string every reader
/// refuses, a path parameter that is not UTF-8, and for POST a body that is
/// not JSON, then one sent as something other than JSON.
fn malformed(method: &str, path: &str) -> Vec<(String, Option<&'static str>, &'static str)> {
    let plain = path
        .replace("{id}", "x")
        .replace("{name}", "x")
        .replace("{accessor}", "x");
    let mut out = vec![(
        format!("{plain}?index=abc&wait=zzz&purge=maybe&follow=maybe&tail=x"),
        None,
        "",
    )];
    if path.contains('{') {
        out.push((
            path.replace("{id}", "%FF")
                .replace("{name}", "%FF")
                .replace("{accessor}", "%FF"),
            None,
            "",
        ));
    }
    if method == "POST" {
        out.push((plain.clone(), Some("application/json"), "not json"));
        out.push((plain, Some("text/plain"), "{}"));
    }
    out
}

/// With ACLs off, and on (where a request without a token is a 401).
#[tokio::test]
async fn every_error_a_malformed_request_gets_is_json_and_documented() {
    for acl in [false, true] {
        malformed_requests_get_documented_errors(acl).await;
    }
}

async fn malformed_requests_get_documented_errors(acl: bool) {
    let documented = spec_statuses();
    let dir = tempfile::tempdir().unwrap();
    let h = common::start_with(dir.path(), |c| c.acl = acl).await;
    let http = reqwest::Client::new();
    let mut undocumented = Vec::new();
    for (method, path) in edge_server::ROUTES {
        for (target, content_type, body) in malformed(method, path) {
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let mut req = http
                .request(m, format!("http://{}{target}", h.addr))
                .body(body);
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            if r.status().is_success() {
                continue;
            }
            let ct = r.headers()["content-type"].to_str().unwrap().to_string();
            let text = r.text().await.unwrap();
            assert_eq!(ct, "application/json", "{method} {target}: {text}");
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(v["error"].is_string(), "{method} {target}: {text}");
            let listed = &documented[&(method.to_string(), path.to_string())];
            if !listed.contains(&status) {
                undocumented.push(format!("{method} {path}: {status} ({target})"));
            }
        }
    }
    h.shutdown().await;
    assert!(
        undocumented.is_empty(),
        "statuses missing from api/openapi.yaml (acl {acl}):\n{}",
        undocumented.join("\n")
    );
}
