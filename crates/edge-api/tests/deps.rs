//! Tidy check of edge-api's manifest: the CLI, the agent, DNS and LB link
//! edge-api, so whatever it depends on they carry too. Wire types carry data
//! (from edge-spec), never the scheduler or anything above edge-api's layer.

/// Crates edge-api must not link: the scheduler, and the layers above it.
const FORBIDDEN: &[&str] = &["edge-sched", "edge-store", "edge-server", "edge-agent"];

/// Names of the crates linked into edge-api itself, from every
/// `[dependencies]`, `[build-dependencies]` and `[target.*.dependencies]`
/// table of the manifest (dev-dependencies only reach the tests).
fn linked_dependencies(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut linked = false;
    for line in manifest.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let header = header.trim();
            // `[dependencies.edge-sched]` names the dependency in its header.
            let (table, dotted) = match header.split_once("dependencies.") {
                Some((prefix, name)) => (format!("{prefix}dependencies"), Some(name)),
                None => (header.to_string(), None),
            };
            linked = table.ends_with("dependencies") && !table.ends_with("dev-dependencies");
            if let (true, Some(name)) = (linked, dotted) {
                names.push(name.trim_matches('"').to_string());
                linked = false;
            }
            continue;
        }
        if !linked || line.is_empty() || line.starts_with('#') {
            continue;
        }
        // `name = ...` and `name.workspace = true` both start with the name.
        let key = line.split(['=', '.']).next().unwrap_or_default();
        names.push(key.trim().trim_matches('"').to_string());
    }
    names
}

#[test]
fn edge_api_links_no_scheduler_or_upper_layer() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let manifest = std::fs::read_to_string(path).expect("read edge-api's Cargo.toml");
    let deps = linked_dependencies(&manifest);
    assert!(
        deps.iter().any(|d| d == "edge-spec"),
        "the manifest reader found no edge-spec in {deps:?}: it no longer understands Cargo.toml"
    );
    let bad: Vec<_> = deps
        .iter()
        .filter(|d| FORBIDDEN.contains(&d.as_str()))
        .collect();
    assert!(
        bad.is_empty(),
        "edge-api must not depend on {bad:?}: move the data type it needs to edge-spec"
    );
}

#[test]
fn reader_sees_every_way_to_name_a_dependency() {
    let manifest = r#"
[package]
name = "x"

[dependencies]
edge-spec.workspace = true
edge-sched = { path = "../edge-sched" }

[dev-dependencies]
edge-store.workspace = true

[target.'cfg(unix)'.dependencies]
"edge-server" = "1"

[dependencies.edge-agent]
path = "../edge-agent"
"#;
    assert_eq!(
        linked_dependencies(manifest),
        ["edge-spec", "edge-sched", "edge-server", "edge-agent"]
    );
}
