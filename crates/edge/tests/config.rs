//! Driver `config` blocks are checked when a job is submitted, against the
//! driver's own config type: `edge job validate` names the misspelled key's
//! line and column, and the server answers 400 naming the field.

mod common;

use common::{EDGE, Server, repo};
use std::path::Path;
use std::process::Command;

/// Per driver: its name, a config block with one misspelled key (on the
/// block's first line), and that key.
const MISSPELLED: &[(&str, &str, &str)] = &[
    ("exec", r#"comand = "/bin/true""#, "comand"),
    ("containerd", r#"imag = "busybox""#, "imag"),
    ("wasm", r#"modul = "examples/wasm/hello.wat""#, "modul"),
    ("model", r#"sorce = "examples/models/iris.onnx""#, "sorce"),
];

fn job_file(dir: &Path, driver: &str, line: &str) -> String {
    let path = dir.join(format!("{driver}.hcl"));
    let src = format!(
        "job \"bad\" {{\n  group \"g\" {{\n    task \"t\" {{\n      driver = \"{driver}\"\n      config {{\n        {line}\n      }}\n    }}\n  }}\n}}\n"
    );
    std::fs::write(&path, src).unwrap();
    path.display().to_string()
}

fn validate(file: &str) -> (bool, String) {
    let out = Command::new(EDGE)
        .args(["job", "validate", file])
        .current_dir(repo())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_names_the_misspelled_key_of_every_driver() {
    let dir = tempfile::tempdir().unwrap();
    for (driver, line, key) in MISSPELLED {
        let file = job_file(dir.path(), driver, line);
        let (ok, stderr) = validate(&file);
        assert!(!ok, "{driver}: a misspelled key validated:\n{stderr}");
        let want =
            format!("{file}:6:9: job.bad.group.g.task.t.config.{key}: unknown field `{key}`");
        assert!(
            stderr.contains(&want),
            "{driver}: expected {want:?} in:\n{stderr}"
        );
    }
}

#[test]
fn every_example_job_validates() {
    let mut seen = 0;
    for entry in std::fs::read_dir(repo().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "hcl") {
            let (ok, stderr) = validate(path.to_str().unwrap());
            assert!(ok, "{}:\n{stderr}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 5, "only {seen} example jobs found");
}

#[tokio::test]
async fn the_server_answers_400_naming_the_misspelled_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let base = &server.addr;
    let http = reqwest::Client::new();
    for (driver, line, key) in MISSPELLED {
        let (k, v) = line.split_once(" = ").unwrap();
        let job = serde_json::json!({"job": {
            "id": "bad",
            "groups": [{"name": "g", "tasks": [{
                "name": "t",
                "driver": driver,
                "config": {k: v.trim_matches('"')},
            }]}],
        }});
        let r = http
            .post(format!("{base}/v1/jobs"))
            .json(&job)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{driver}");
        let body: serde_json::Value = r.json().await.unwrap();
        let error = body["error"].as_str().unwrap_or_default();
        let want = format!("job.bad.group.g.task.t.config.{key}: unknown field `{key}`");
        assert!(
            error.contains(&want),
            "{driver}: expected {want:?} in {error:?}"
        );
    }
}

/// A Nomad file with a key edge ignores and one it refuses: `edge job
/// validate` prints the warning as well as the error, since the ignored key
/// may be why the file fails.
#[test]
fn validate_prints_warnings_beside_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nomad.hcl");
    std::fs::write(
        &path,
        "job \"web\" {\n  region = \"global\"\n  node_pool = \"gpu\"\n  group \"g\" {\n    task \"t\" {\n      driver = \"exec\"\n      config {\n        command = \"/bin/true\"\n      }\n    }\n  }\n}\n",
    )
    .unwrap();
    let (ok, stderr) = validate(path.to_str().unwrap());
    assert!(!ok);
    assert!(
        stderr.contains("warning: ")
            && stderr.contains(":2:3: job.web.region: `region` is ignored"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: ")
            && stderr.contains(":3:3: job.web.node_pool: `node_pool` is not supported"),
        "{stderr}"
    );
}
