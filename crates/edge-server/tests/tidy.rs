//! Architecture checks run as plain tests: the `ops` rules stay pure, and
//! the server's modules do not depend on each other in a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, with its module name: the file stem, or
/// the directory for files of a module directory.
fn modules(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            for (_, f) in modules(&path) {
                out.push((name.clone(), f));
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            out.push((stem, path));
        }
    }
    out.sort();
    out
}

/// The rules decide; they do not do IO, read the clock, draw random
/// numbers or know about HTTP. Time and ids come in through `Env`, whose
/// `live` constructor is the one place allowed to read them.
#[test]
fn ops_rules_are_pure() {
    let forbidden = [
        "axum",
        "tokio",
        "reqwest",
        "rusqlite",
        "std::fs",
        "std::net",
        "Instant::now",
        "SystemTime",
        "rand::",
        "uuid",
        "now_ms()",
        "new_id",
        "tracing::",
        "crate::http",
        "crate::worker",
        "crate::heartbeat",
        "crate::metrics",
        ".store",
    ];
    let mut found = Vec::new();
    for (_, path) in modules(&src().join("ops")) {
        if path.ends_with("tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let text = match text.find("pub fn live() -> Env {") {
            Some(at) => {
                let end = at + text[at..].find("\n    }\n").unwrap();
                format!("{}{}", &text[..at], &text[end..])
            }
            None => text,
        };
        for f in forbidden {
            for (n, line) in text.lines().enumerate() {
                if line.contains(f) && !line.trim_start().starts_with("//") {
                    found.push(format!("{}:{}: `{f}`", path.display(), n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "impure code in ops:\n{}",
        found.join("\n")
    );
}

#[test]
fn server_modules_have_no_cycles() {
    let root = ["lib", "main"];
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let all = modules(&src());
    let names: BTreeSet<String> = all.iter().map(|(m, _)| m.clone()).collect();
    for (m, path) in &all {
        if root.contains(&m.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let entry = deps.entry(m.clone()).or_default();
        for (at, _) in text.match_indices("crate::") {
            let rest = &text[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name != *m && names.contains(&name) && !root.contains(&name.as_str()) {
                entry.insert(name);
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        deps: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| s == m) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        stack.push(m.to_string());
        for d in deps.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, deps, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in deps.keys() {
        if let Some(cycle) = visit(m, &deps, &mut Vec::new(), &mut done) {
            panic!("module cycle in edge-server: {}", cycle.join(" -> "));
        }
    }
    assert!(
        deps["http"].contains("ops"),
        "the scan sees `use crate::...`"
    );
}
