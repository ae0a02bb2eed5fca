//! `edge compose` with the real binary: config and convert of a project
//! (no server), and the seed lecture's webapp (examples/compose/webapp)
//! run on a real `edge dev` with containerd and bridge networking (gated by
//! `EDGE_TEST_ROOT=1` and `EDGE_TEST_CONTAINERD=1`): published on the
//! routing mesh, the frontend reaches `backend` by name, a service outside
//! `back-tier` cannot, a changed file rolls out with no failed request,
//! the backend's rows survive `down` + `up` and a `kill -9` of the agent,
//! and `down -v` removes the volume.

mod common;

use common::{Dev, EDGE, cli, free_port, host_ip, repo, start_bridged, until};
use edge_spec::ClientStatus;
use std::path::Path;
use std::process::Command;

/// `edge compose ARGS` in `dir` against `addr`: success and stdout+stderr.
fn compose(dir: &Path, addr: &str, env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let out = Command::new(EDGE)
        .arg("compose")
        .args(args)
        .current_dir(dir)
        .env("EDGE_ADDR", addr)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn config_and_convert_need_no_server() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("webapp");
    copy_dir(&repo().join("examples/compose/webapp"), &app);
    let nowhere = "http://127.0.0.1:9";
    let (ok, out) = compose(&app, nowhere, &[("WEBAPP_PORT", "8443")], &["config"]);
    assert!(ok, "{out}");
    assert!(out.contains("8443:8043"), "interpolated: {out}");
    let (ok, hcl) = compose(&app, nowhere, &[], &["convert"]);
    assert!(ok, "{hcl}");
    let file = dir.path().join("webapp.hcl");
    std::fs::write(&file, &hcl).unwrap();
    let (ok, out) = cli(nowhere, &["job", "validate", file.to_str().unwrap()]);
    assert!(
        ok && out.contains("Job \"webapp\" is valid: 2 group(s)"),
        "{out}\n{hcl}"
    );

    std::fs::write(
        app.join("compose.yaml"),
        "services:\n  web:\n    image: w\n    build: .\n",
    )
    .unwrap();
    let (ok, out) = compose(&app, nowhere, &[], &["up"]);
    assert!(!ok);
    assert!(
        out.contains("compose.yaml:4:5: services.web.build: `build`: edge does not build images"),
        "{out}"
    );
}

/// The frontend's answer to `wget URL`, run inside allocation `alloc`.
fn fetch_in(addr: &str, alloc: &str, url: &str) -> (bool, String) {
    // busybox wget's own -T crashes (Debian's busybox-static): timeout does it.
    cli(
        addr,
        &[
            "alloc", "exec", alloc, "--", "timeout", "3", "wget", "-q", "-O", "-", url,
        ],
    )
}

async fn allocs(api: &edge_api::Client) -> Vec<edge_spec::Allocation> {
    let api = api.clone().with_namespace(Some("webapp".into()));
    let (list, _) = api.job_allocs("webapp", Default::default()).await.unwrap();
    let mut out = Vec::new();
    for a in list
        .into_iter()
        .filter(|a| a.client_status == ClientStatus::Running)
    {
        out.push(api.alloc(&a.id).await.unwrap());
    }
    out
}

struct Down {
    dir: std::path::PathBuf,
    addr: String,
}

impl Drop for Down {
    fn drop(&mut self) {
        let args = ["-f", "compose.yaml", "-f", "probe.yaml", "down", "-v"];
        compose(&self.dir, &self.addr, &[], &args);
    }
}

async fn rows(addr: &str, api: &edge_api::Client) -> usize {
    until(60, "the frontend reading the backend's rows", async || {
        let all = allocs(api).await;
        let front = all.iter().find(|a| a.group == "frontend")?;
        let (ok, out) = fetch_in(addr, &front.id, "http://backend:5432/rows");
        if !ok {
            eprintln!("rows through the frontend: {}", out.trim());
        }
        ok.then(|| out.lines().filter(|l| !l.trim().is_empty()).count())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webapp_runs_across_its_networks_and_keeps_its_data() {
    if !common::gated("EDGE_TEST_ROOT") || !common::gated("EDGE_TEST_CONTAINERD") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Service names resolve in a container through the node's DNS, which
    // its namespace reaches on a routable address only.
    let ip = host_ip();
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
            "--advertise",
            &ip,
            "--dns-port",
            &dns_port,
        ],
    )
    .await;
    let tar = common::build_image(dir.path(), "docker.io/edge/busybox:latest");
    let (ok, out) = cli(&addr, &["image", "import", tar.to_str().unwrap()]);
    assert!(ok, "{out}");
    let app = dir.path().join("webapp");
    copy_dir(&repo().join("examples/compose/webapp"), &app);
    // A client on front-tier only, added by a second file.
    std::fs::write(
        app.join("probe.yaml"),
        "services:\n  probe:\n    image: docker.io/edge/busybox:latest\n    command: [sleep, \"3600\"]\n    networks: [front-tier]\n",
    )
    .unwrap();
    let port = free_port().to_string();
    let env = [("WEBAPP_PORT", port.as_str())];
    let files = ["-f", "compose.yaml", "-f", "probe.yaml"];
    // Containers outlive the agent: a failed run takes them down too.
    let _down = Down {
        dir: app.clone(),
        addr: addr.clone(),
    };
    let up = [&files[..], &["up", "--timeout", "3m"]].concat();
    let (ok, out) = compose(&app, &addr, &env, &up);
    assert!(ok, "{out}");
    assert!(out.contains("Namespace \"webapp\" created"), "{out}");

    let url = format!("http://{ip}:{port}/");
    let body = until(30, "the frontend on the published port", async || {
        reqwest::get(&url).await.ok().filter(|r| r.status() == 200)
    })
    .await;
    assert!(body.status().is_success());
    assert_eq!(
        rows(&addr, &api).await,
        1,
        "the backend wrote its first row"
    );

    let all = allocs(&api).await;
    let probe = all.iter().find(|a| a.group == "probe").unwrap();
    let back = all.iter().find(|a| a.group == "backend").unwrap();
    let back_ip = back.networks["back-tier"];
    let (ok, out) = fetch_in(&addr, &probe.id, "http://backend:5432/rows");
    assert!(!ok, "a service outside back-tier resolved backend: {out}");
    let (ok, out) = fetch_in(&addr, &probe.id, &format!("http://{back_ip}:5432/rows"));
    assert!(
        !ok,
        "a service outside back-tier reached backend's address: {out}"
    );

    let (ok, out) = compose(
        &app,
        &addr,
        &env,
        &[&files[..], &["ps", "-o", "json"]].concat(),
    );
    assert!(ok, "{out}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.len(), 4, "2 frontends, a backend, a probe: {out}");

    let (ok, out) = compose(
        &app,
        &addr,
        &env,
        &[&files[..], &["logs", "--tail", "4096"]].concat(),
    );
    assert!(ok, "{out}");

    // `up` of a changed file rolls the frontend out per its update_config
    // (one replica at a time) while the published port keeps answering.
    std::fs::write(
        app.join("v2.yaml"),
        "services:\n  frontend:\n    environment:\n      RELEASE: \"2\"\n",
    )
    .unwrap();
    let load = common::Load::start(std::slice::from_ref(&url));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let v2 = [&files[..], &["-f", "v2.yaml", "up", "--timeout", "3m"]].concat();
    let (ok, out) = compose(&app, &addr, &env, &v2);
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

    let (ok, out) = compose(&app, &addr, &env, &[&files[..], &["down"]].concat());
    assert!(ok, "{out}");
    assert!(allocs(&api).await.is_empty());
    let (ok, out) = compose(&app, &addr, &env, &up);
    assert!(ok, "{out}");
    assert_eq!(rows(&addr, &api).await, 2, "the rows outlived down and up");

    // The agent dies; the containers and the volume do not.
    let mut dev = dev;
    dev.kill9();
    let _dev = start_bridged(dir.path(), &args, &api).await;
    let kept = until(
        60,
        "the backend's rows after the agent's restart",
        async || {
            let all = allocs(&api).await;
            let back = all.iter().find(|a| a.group == "backend")?;
            let (ok, out) = cli(
                &addr,
                &["alloc", "exec", &back.id, "--", "cat", "/var/lib/db/rows"],
            );
            if !ok {
                eprintln!("rows in the backend: {}", out.trim());
            }
            ok.then(|| out.lines().filter(|l| !l.trim().is_empty()).count())
        },
    )
    .await;
    assert_eq!(kept, 2, "the same backend kept its rows");
    let again = until(30, "the frontend on the published port again", async || {
        reqwest::get(&url).await.ok().filter(|r| r.status() == 200)
    })
    .await;
    assert!(again.status().is_success());

    let (ok, out) = compose(&app, &addr, &env, &[&files[..], &["down", "-v"]].concat());
    assert!(ok, "{out}");
    assert!(
        out.contains("Volume webapp.backend.db-data[0] removed") || out.contains("removed"),
        "{out}"
    );
    let left: Vec<_> = api
        .volumes()
        .await
        .unwrap()
        .into_iter()
        .filter(|v| v.namespace == "webapp")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
