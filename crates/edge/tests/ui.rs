//! The dashboard in a real browser: headless Chromium over WebDriver against
//! a real `edge dev`. It opens the overview, sees a job run through the API
//! appear without a reload, reads a line the task printed in the
//! allocation's live log, drains the node from the page and sees the API
//! say so, reads a broken job's placement failure, asks a model, and hides
//! write buttons from a read-only token. Screenshots of the main pages go to
//! `$EDGE_UI_SCREENSHOTS` (default `target/ui-screenshots`).
//!
//! Needs `chromium` and `chromium-driver`: set `EDGE_TEST_BROWSER=1`
//! (`deploy/test.sh` installs both and sets it when it has root).

#[path = "common/browser.rs"]
mod browser;
mod common;

use browser::Browser;
use common::{cli, dev, dev_logging, free_port, gated, repo, until};
use std::path::{Path, PathBuf};

fn shots() -> PathBuf {
    std::env::var_os("EDGE_UI_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/ui-screenshots"))
}

fn job_file(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

const TALKER: &str = r#"job "talker" {
  group "app" {
    task "say" {
      driver = "exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "echo hello-from-the-dashboard-test; echo '<img src=x onerror=window.pwned=1>'; exec sleep 600"]
      }
      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
"#;

/// Asks for more memory than any machine has: it cannot be placed.
const TOO_BIG: &str = r#"job "toobig" {
  group "huge" {
    task "t" {
      driver = "exec"
      config {
        command = "/bin/sleep"
        args    = ["600"]
      }
      resources {
        memory = 4000000
      }
    }
  }
}
"#;

/// The big number of the overview's card titled `title`.
fn card(title: &str) -> String {
    format!(
        "[...document.querySelectorAll('.card')].find((c) => c.firstChild.textContent === '{title}')?.querySelector('.big').textContent"
    )
}

#[tokio::test]
async fn the_dashboard_follows_the_cluster_and_acts_on_it() {
    if !gated("EDGE_TEST_BROWSER") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_dev, addr, api) = dev(dir.path()).await;
    let b = Browser::start(dir.path(), 1280).await;
    let shots = shots();

    // The overview: one ready node, no jobs yet.
    b.client.goto(&format!("{addr}/ui/")).await.unwrap();
    b.until(
        20,
        "the overview",
        "document.body.dataset.ready === 'overview'",
    )
    .await;
    let text = b.main_text().await;
    assert!(text.contains("Cluster overview"), "{text}");
    assert_eq!(b.eval(&card("Nodes")).await, "1", "{text}");

    // Jobs: a job run through the API appears without a reload.
    b.client.goto(&format!("{addr}/ui/#/jobs")).await.unwrap();
    b.until(
        20,
        "the jobs page",
        "document.querySelector('main .section')?.textContent.includes('No jobs')",
    )
    .await;
    b.eval("window.edgeTestMarker = 'not reloaded'").await;
    let talker = job_file(dir.path(), "talker.hcl", TALKER);
    let (ok, out) = cli(&addr, &["job", "run", "-d", &talker]);
    assert!(ok, "{out}");
    b.until(
        30,
        "the new job in the list",
        "document.querySelector('a[href=\"#/job/default/talker\"]')",
    )
    .await;
    assert_eq!(b.eval("window.edgeTestMarker").await, "not reloaded");
    b.screenshot(&shots, "jobs").await;

    // The job, its allocation, and the line the task printed, live.
    b.click("a[href=\"#/job/default/talker\"]").await;
    b.until(
        30,
        "the job's allocation",
        "document.querySelector('main a[href^=\"#/alloc/\"]')",
    )
    .await;
    b.until(
        30,
        "the allocation running",
        "document.querySelector('main .s-running')",
    )
    .await;
    b.screenshot(&shots, "job").await;
    b.click("main a[href^=\"#/alloc/\"]").await;
    b.until(
        30,
        "the task's log line",
        "(document.querySelector('pre.logs') || {}).textContent?.includes('hello-from-the-dashboard-test')",
    )
    .await;
    let text = b.main_text().await;
    assert!(text.contains("Started"), "task events are shown: {text}");
    // A log line with markup in it stays text.
    b.until(
        10,
        "the markup line",
        "document.querySelector('pre.logs').textContent.includes('<img src=x')",
    )
    .await;
    assert_eq!(
        b.eval("document.querySelector('pre.logs img') === null && window.pwned === undefined")
            .await,
        true
    );
    b.screenshot(&shots, "allocation").await;
    assert_eq!(b.eval("window.edgeTestMarker").await, "not reloaded");

    // A job that cannot be placed says why.
    let big = job_file(dir.path(), "toobig.hcl", TOO_BIG);
    let (_, out) = cli(&addr, &["job", "run", "-d", &big]);
    assert!(out.contains("registered"), "{out}");
    b.client
        .goto(&format!("{addr}/ui/#/job/default/toobig"))
        .await
        .unwrap();
    let why = b
        .until(
            30,
            "the placement failure",
            "document.querySelector('.failures')?.innerText",
        )
        .await;
    let why = why.as_str().unwrap();
    assert!(why.contains("Task group \"huge\""), "{why}");
    assert!(
        why.contains("Dimension \"memory\" exhausted on 1 nodes"),
        "{why}"
    );
    b.screenshot(&shots, "placement-failure").await;

    // Versions: a second version and the diff between the two.
    let talker2 = job_file(
        dir.path(),
        "talker.hcl",
        &TALKER.replace("memory = 32", "memory = 48"),
    );
    let (ok, out) = cli(&addr, &["job", "run", "-d", &talker2]);
    assert!(ok, "{out}");
    b.client
        .goto(&format!("{addr}/ui/#/job/default/talker"))
        .await
        .unwrap();
    b.until(
        30,
        "two versions to compare",
        "document.querySelector('#diff-from')",
    )
    .await;
    b.click("button[data-key=\"show-diff\"]").await;
    let diff = b
        .until(
            20,
            "the diff",
            "document.querySelector('pre.diff')?.textContent",
        )
        .await;
    let diff = diff.as_str().unwrap();
    let changed = |sign: char, value: &str| {
        diff.lines()
            .any(|l| l.starts_with(sign) && l.contains("\"memory\"") && l.contains(value))
    };
    assert!(changed('-', "32") && changed('+', "48"), "{diff}");
    // Revert to the older version, confirmed in the browser's dialog.
    b.click("button[data-key=\"revert\"]").await;
    b.client.accept_alert().await.unwrap();
    let reverted = until(20, "the revert to register version 2", async || {
        api.job("talker").await.ok().filter(|j| j.version == 2)
    })
    .await;
    assert_eq!(reverted.groups[0].tasks[0].resources.memory, 32);

    // Nodes: drain from the page, and the API says the node drains.
    b.client.goto(&format!("{addr}/ui/#/nodes")).await.unwrap();
    b.until(
        20,
        "the drain button",
        "document.querySelector('button[data-key^=\"drain-\"]')",
    )
    .await;
    b.screenshot(&shots, "nodes").await;
    b.click("button[data-key^=\"drain-\"]").await;
    until(20, "the API to show the drain", async || {
        let nodes = api.nodes().await.ok()?;
        nodes.first().filter(|n| n.drain).map(|_| ())
    })
    .await;
    b.until(
        20,
        "the page to show the drain",
        "document.querySelector('button[data-key^=\"drain-\"]')?.textContent === 'Stop drain'",
    )
    .await;

    // A hostile or broken address: the name stays text, the API's refusal
    // is shown, a malformed escape is a "Not found" page.
    b.client
        .goto(&format!(
            "{addr}/ui/#/job/default/%3Cimg%20src%3Dx%20onerror%3Dwindow.pwned%3D1%3E"
        ))
        .await
        .unwrap();
    let alert = b
        .until(
            20,
            "the 404 of an unknown job",
            "document.querySelector('main .alert')?.textContent",
        )
        .await;
    assert!(alert.as_str().unwrap().starts_with("40"), "{alert}");
    assert_eq!(
        b.eval("document.querySelector('main h1').textContent")
            .await,
        "Job <img src=x onerror=window.pwned=1>"
    );
    assert_eq!(
        b.eval("document.querySelector('main img') === null && window.pwned === undefined")
            .await,
        true
    );
    b.client
        .goto(&format!("{addr}/ui/#/alloc/%E0%A4%A"))
        .await
        .unwrap();
    b.until(
        20,
        "a Not found page",
        "document.querySelector('main h1')?.textContent === 'Not found'",
    )
    .await;

    // Services: the hello example's service with its DNS name.
    b.client
        .goto(&format!("{addr}/ui/#/services"))
        .await
        .unwrap();
    b.until(
        20,
        "the services page",
        "document.querySelector('main h1')?.textContent === 'Services'",
    )
    .await;

    // The overview has the jobs and their allocations now.
    b.client.goto(&format!("{addr}/ui/")).await.unwrap();
    b.until(
        20,
        "the overview with two jobs",
        &format!("{} === '2'", card("Jobs")),
    )
    .await;
    b.screenshot(&shots, "overview").await;
    b.close().await;
    // Exec tasks outlive their agent by design: stop them with their job.
    for job in ["talker", "toobig"] {
        let (ok, out) = cli(&addr, &["job", "stop", job]);
        assert!(ok, "{out}");
    }
}

#[tokio::test]
async fn a_model_answers_from_the_dashboard_form() {
    if !gated("EDGE_TEST_BROWSER") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_dev, addr, _api) = dev(dir.path()).await;
    let (ok, out) = cli(&addr, &["job", "run", "examples/model.hcl"]);
    assert!(ok, "{out}");
    let b = Browser::start(dir.path(), 1280).await;
    b.client.goto(&format!("{addr}/ui/#/models")).await.unwrap();
    b.until(
        60,
        "the iris model passing",
        "document.getElementById('main').innerText.includes('1 / 1 passing')",
    )
    .await;
    b.click("button[data-key=\"ask-iris-iris\"]").await;
    b.until(
        20,
        "a request built from the model's inputs",
        "document.querySelector('#infer-body')?.value.includes('\"shape\"')",
    )
    .await;
    b.eval(r#"(() => { const t = document.querySelector('#infer-body'); t.value = JSON.stringify({inputs: [{name: 'X', datatype: 'FP32', shape: [1, 4], data: [5.1, 3.5, 1.4, 0.2]}]}); return true; })()"#)
        .await;
    b.click("#main form button[type=submit]").await;
    let answer = b
        .until(30, "the model's answer", "document.querySelector('#infer-answer')?.textContent.includes('outputs') && document.querySelector('#infer-answer').textContent")
        .await;
    let answer = answer.as_str().unwrap();
    assert!(answer.contains("\"model_name\": \"iris\""), "{answer}");
    b.screenshot(&shots(), "models").await;
    b.close().await;
}

#[tokio::test]
async fn a_read_only_token_sees_the_cluster_without_write_buttons() {
    if !gated("EDGE_TEST_BROWSER") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_dev, addr, _) = dev_logging(dir.path(), free_port(), &["--acl", "on"], "info").await;
    let boot = common::run_cli(&addr, &["acl", "bootstrap", "-o", "json"], None);
    let v: serde_json::Value = serde_json::from_slice(&boot.stdout).unwrap();
    let mgmt = v["secret_id"].as_str().unwrap().to_string();
    let policy = dir.path().join("ro.hcl");
    std::fs::write(
        &policy,
        "namespace \"default\" { policy = \"read\" }\nnode { policy = \"read\" }\n",
    )
    .unwrap();
    let with = |args: &[&str]| {
        let mut a = vec!["--token", &mgmt];
        a.extend_from_slice(args);
        common::run_cli(&addr, &a, None)
    };
    assert!(
        with(&["acl", "policy", "apply", "ro", policy.to_str().unwrap()])
            .status
            .success()
    );
    let out = with(&[
        "acl", "token", "create", "--name", "viewer", "--policy", "ro", "-o", "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ro = v["secret_id"].as_str().unwrap().to_string();

    let b = Browser::start(dir.path(), 400).await;
    b.client.goto(&format!("{addr}/ui/#/nodes")).await.unwrap();
    b.until(
        20,
        "the page to ask for a token",
        "document.getElementById('who').textContent === 'no token'",
    )
    .await;
    let enter = async |token: &str| {
        let input = b
            .client
            .find(fantoccini::Locator::Css("#token"))
            .await
            .unwrap();
        input.send_keys(token).await.unwrap();
        b.click("#token-form button").await;
    };
    enter(&ro).await;
    b.until(
        20,
        "the read-only token in use",
        "document.getElementById('who').textContent.startsWith('viewer')",
    )
    .await;
    b.until(
        20,
        "the node listed read-only",
        "document.getElementById('main').innerText.includes('read-only')",
    )
    .await;
    assert_eq!(
        b.eval("document.querySelectorAll('button[data-key^=\"drain-\"]').length")
            .await,
        0
    );
    assert_eq!(
        b.eval("sessionStorage.getItem('edge-token') !== null")
            .await,
        true,
        "the token is kept for the browser session"
    );
    b.screenshot(&shots(), "read-only-phone").await;
    enter(&mgmt).await;
    b.until(
        20,
        "the drain button for a management token",
        "document.querySelector('button[data-key^=\"drain-\"]')",
    )
    .await;
    b.close().await;
}
