//! `edge compose` with the real binary: config and convert of a project
//! (no server), and the seed lecture's webapp (examples/compose/webapp)
//! run on a real loopback `edge dev` with containerd and bridge networking (gated by
//! `EDGE_TEST_ROOT=1` and `EDGE_TEST_CONTAINERD=1`): published on the
//! routing mesh, the frontend starts once the backend is healthy and
//! reaches it by name, a global service outside `back-tier` cannot, a
//! changed file rolls out with no failed request, the backend's rows
//! survive `down` + `up` and a `kill -9` of the agent, and `down -v`
//! removes the volume.

mod common;

use common::webapp::{self, Webapp};
use common::{Dev, cli, free_port, start_bridged, until};

#[test]
fn config_and_convert_need_no_server() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = "http://127.0.0.1:9";
    let w = Webapp::new(
        dir.path(),
        &[("EDGE_ADDR", nowhere), ("WEBAPP_PORT", "8443")],
    );
    let (ok, out) = w.edge(&["compose", "config"]);
    assert!(ok, "{out}");
    assert!(out.contains("8443:8043"), "interpolated: {out}");
    let (ok, hcl) = w.edge(&["compose", "convert"]);
    assert!(ok, "{hcl}");
    let file = dir.path().join("webapp.hcl");
    std::fs::write(&file, &hcl).unwrap();
    let (ok, out) = cli(nowhere, &["job", "validate", file.to_str().unwrap()]);
    assert!(
        ok && out.contains("Job \"webapp\" is valid: 2 group(s)"),
        "{out}\n{hcl}"
    );

    std::fs::write(
        w.dir.join("compose.yaml"),
        "services:\n  web:\n    image: w\n    build: .\n",
    )
    .unwrap();
    let (ok, out) = w.edge(&["compose", "up"]);
    assert!(!ok);
    assert!(
        out.contains("compose.yaml:4:5: services.web.build: `build`: edge does not build images"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webapp_runs_across_its_networks_and_keeps_its_data() {
    if !common::gated("EDGE_TEST_ROOT") || !common::gated("EDGE_TEST_CONTAINERD") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // `edge dev` as it starts, on loopback: its containers reach the node's
    // DNS on the default bridge's address (the lab test runs on routable
    // ones).
    let ip = "127.0.0.1";
    let dns_port = free_port().to_string();
    let Dev {
        proc: dev,
        addr,
        api,
        args,
        ..
    } = Dev::start(
        dir.path(),
        "edgecmp0",
        "10.215.9.0/24",
        &[
            "--network-pool",
            "10.215.12.0/22",
            "--network-prefix",
            "24",
            "--dns-port",
            &dns_port,
        ],
    )
    .await;
    let tar = common::build_image(dir.path(), "docker.io/edge/busybox:latest");
    let (ok, out) = cli(&addr, &["image", "import", tar.to_str().unwrap()]);
    assert!(ok, "{out}");
    let port = free_port().to_string();
    let w = Webapp::new(
        dir.path(),
        &[("EDGE_ADDR", addr.as_str()), ("WEBAPP_PORT", port.as_str())],
    );
    let up = ["up", "--timeout", "3m"];
    let (ok, out) = w.compose(&up);
    assert!(ok, "{out}");
    assert!(out.contains("Namespace \"webapp\" created"), "{out}");
    assert!(
        out.contains("frontend starts once backend is healthy"),
        "{out}"
    );
    webapp::started_in_order(&api).await;

    let url = format!("http://{ip}:{port}/");
    let body = until(30, "the frontend on the published port", async || {
        reqwest::get(&url).await.ok().filter(|r| r.status() == 200)
    })
    .await;
    assert!(body.status().is_success());
    assert_eq!(w.rows(&api).await, 1, "the backend wrote its first row");
    w.probe_is_kept_out(&api).await;
    w.data_in_place(&api).await;

    let (ok, out) = w.compose(&["ps", "-o", "json"]);
    assert!(ok, "{out}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.len(), 4, "2 frontends, a backend, a probe: {out}");
    let (ok, out) = w.compose(&["ps", "--all", "-o", "json"]);
    assert!(ok, "{out}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.len(), 5, "and the completed migration: {out}");

    let (ok, out) = w.compose(&["logs", "--tail", "4096"]);
    assert!(ok, "{out}");

    // `up` of a changed file rolls the frontend out per its update_config
    // (one replica at a time) while the published port keeps answering.
    std::fs::write(
        w.dir.join("v2.yaml"),
        "services:\n  frontend:\n    environment:\n      RELEASE: \"2\"\n",
    )
    .unwrap();
    let load = common::Load::start(std::slice::from_ref(&url));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (ok, out) = w.compose(&["-f", "v2.yaml", "up", "--timeout", "3m"]);
    assert!(ok, "{out}");
    assert!(out.contains("job version 1"), "{out}");
    let (answered, failed) = load.finish().await;
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during the rollout",
        answered + failed
    );
    assert!(answered > 50, "{answered}");

    let (ok, out) = w.compose(&["down"]);
    assert!(ok, "{out}");
    assert!(webapp::allocs(&api).await.is_empty());
    let (ok, out) = w.compose(&up);
    assert!(ok, "{out}");
    assert_eq!(w.rows(&api).await, 2, "the rows outlived down and up");

    // The agent dies; the containers and the volume do not.
    let (backend, _) = w.rows_in_backend(&api).await;
    let mut dev = dev;
    dev.kill9();
    let _dev = start_bridged(dir.path(), &args, &api).await;
    let (after, kept) = w.rows_in_backend(&api).await;
    assert_eq!(
        (after, kept),
        (backend, 2),
        "the same backend kept its rows"
    );
    let again = until(30, "the frontend on the published port again", async || {
        reqwest::get(&url).await.ok().filter(|r| r.status() == 200)
    })
    .await;
    assert!(again.status().is_success());

    let (ok, out) = w.compose(&["down", "-v"]);
    assert!(ok, "{out}");
    assert!(out.contains("removed"), "{out}");
    let left: Vec<_> = api
        .volumes()
        .await
        .unwrap()
        .into_iter()
        .filter(|v| v.namespace == "webapp")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
