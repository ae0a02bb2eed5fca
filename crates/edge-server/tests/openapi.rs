//! `api/openapi.yaml` and the router must agree: every route of the router is
//! in the spec, every path and method of the spec is served.

mod common;

use std::collections::BTreeSet;

fn spec_routes() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../api/openapi.yaml"
    ))
    .expect("api/openapi.yaml exists");
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("openapi.yaml is valid YAML");
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
        let url = format!("http://{}{}", h.addr, path.replace("{id}", "x"));
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
