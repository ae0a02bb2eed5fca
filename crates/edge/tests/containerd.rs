//! End-to-end tests of the containerd driver with the real binary, a real
//! containerd and a local registry (gated by `EDGE_TEST_CONTAINERD=1`):
//! `edge image import` then a web container answering on its port, pulls
//! from a plain-HTTP registry, a bad image failing with a clear event, an
//! OOM kill restarted per policy, `edge job stop` removing task, container
//! and snapshot, an agent `kill -9` + restart re-attaching, and
//! `edge alloc exec` in a container.

mod common;

use common::{EDGE, Proc, Server, build_image, cli, free_port, run_cli, until};
use edge_api::{Client, QueryOptions};
use edge_spec::{Allocation, ClientStatus};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn enabled() -> bool {
    common::gated("EDGE_TEST_CONTAINERD")
}

fn ctr(args: &[&str]) -> String {
    let out = Command::new("ctr")
        .args(["-n", "edge"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A one-task service job on the containerd driver.
fn job_file(dir: &Path, name: &str, config: &str, memory: u32, attempts: u32) -> String {
    let path = dir.join(format!("{name}.hcl"));
    std::fs::write(
        &path,
        format!(
            r#"job "{name}" {{
  type = "service"
  group "g" {{
    network {{
      port "http" {{}}
    }}
    restart {{
      attempts = {attempts}
      interval = "10m"
      delay    = "1s"
      mode     = "fail"
    }}
    task "t" {{
      driver = "containerd"
      kill_timeout = "2s"
      config {{
{config}
      }}
      resources {{
        cpu    = 100
        memory = {memory}
      }}
    }}
  }}
}}
"#
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// Waits up to 30 s until no `ctr` listing of `kinds` (`containers`,
/// `tasks`, `snapshots`) names allocation `id`.
async fn until_removed(id: &str, kinds: &[&str]) {
    let what = format!("{} of {id} removed", kinds.join(", "));
    until(30, &what, async || {
        let gone = kinds.iter().all(|k| !ctr(&[k, "ls"]).contains(id));
        gone.then_some(())
    })
    .await;
}

async fn alloc_of(api: &Client, job: &str) -> Allocation {
    let id = until(20, "an allocation", async || {
        let (allocs, _) = api.job_allocs(job, QueryOptions::default()).await.ok()?;
        allocs.last().map(|a| a.id.clone())
    })
    .await;
    api.alloc(&id).await.unwrap()
}

async fn http_body(port: u16) -> Option<String> {
    let r = reqwest::get(format!("http://127.0.0.1:{port}/"))
        .await
        .ok()?;
    r.status().is_success().then_some(())?;
    r.text().await.ok()
}

fn events(a: &Allocation) -> Vec<(String, String)> {
    a.task_states
        .get("t")
        .map(|t| {
            t.events
                .iter()
                .map(|e| (e.kind.clone(), e.message.clone()))
                .collect()
        })
        .unwrap_or_default()
}

struct Registry {
    _proc: Proc,
    host: String,
}

async fn start_registry(dir: &Path) -> Registry {
    let port = free_port();
    let cfg = dir.join("registry.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("registry").display()
        ),
    )
    .unwrap();
    let proc = Proc::spawn(
        "docker-registry",
        dir,
        "registry",
        &["serve", cfg.to_str().unwrap()],
    );
    until(20, "registry up", async || {
        reqwest::get(format!("http://127.0.0.1:{port}/v2/"))
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;
    Registry {
        _proc: proc,
        host: format!("127.0.0.1:{port}"),
    }
}

async fn start_dev(dir: &Path, extra: &[&str]) -> (Proc, String, Client) {
    let port = free_port();
    let addr = format!("http://127.0.0.1:{port}");
    let data = dir.join("data");
    let bind = format!("127.0.0.1:{port}");
    let mut args = vec!["dev", "--data-dir", data.to_str().unwrap(), "--bind", &bind];
    args.extend_from_slice(extra);
    let dev = Proc::spawn(EDGE, dir, "dev", &args);
    let api = Client::new(&addr, None).unwrap();
    until(30, "a ready node", async || {
        (api.health().await.ok()?.nodes_ready == 1).then_some(())
    })
    .await;
    (dev, addr, api)
}

#[tokio::test]
async fn import_run_pull_fail_oom_and_stop() {
    if !enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let reg = start_registry(dir.path()).await;
    let (_dev, addr, api) = start_dev(dir.path(), &["--registry-insecure", &reg.host]).await;

    // Air-gapped: an imported archive makes the job runnable.
    let image = "docker.io/edge/e2e-web:v1";
    let tar = build_image(dir.path(), image);
    let (ok, out) = cli(&addr, &["image", "import", tar.to_str().unwrap()]);
    assert!(ok && out.contains(image), "{out}");
    let (ok, out) = cli(&addr, &["image", "ls"]);
    assert!(ok && out.contains(image), "{out}");
    let web = job_file(
        dir.path(),
        "e2e-web",
        &format!(
            r#"image = "{image}"
        command = "sh"
        args = ["-c", "echo serving on $EDGE_PORT_http; exec httpd -f -p $EDGE_PORT_http -h /www"]"#
        ),
        32,
        1,
    );
    let (ok, out) = cli(&addr, &["job", "run", &web]);
    assert!(ok, "{out}");
    let a = alloc_of(&api, "e2e-web").await;
    let port = a.resources.ports[0].value;
    let body = until(60, "web answers", async || http_body(port).await).await;
    assert_eq!(body, "hello from edge\n");
    let (_, logs) = cli(&addr, &["alloc", "logs", &a.id, "t"]);
    assert!(logs.contains(&format!("serving on {port}")), "{logs}");
    assert!(ctr(&["containers", "ls", "-q"]).contains(&a.id));

    // `edge job stop` removes the task, the container and its snapshot.
    let (ok, out) = cli(&addr, &["job", "stop", "e2e-web"]);
    assert!(ok, "{out}");
    until_removed(&a.id, &["containers", "tasks", "snapshots"]).await;

    // A pull from the local registry, with progress events.
    let pushed = Command::new("skopeo")
        .args(["copy", "--insecure-policy", "--dest-tls-verify=false"])
        .arg(format!("oci-archive:{}", tar.display()))
        .arg(format!("docker://{}/edge/pulled:v1", reg.host))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(pushed.success());
    let pulled = job_file(
        dir.path(),
        "e2e-pull",
        &format!(
            r#"image = "{}/edge/pulled:v1"
        args = ["httpd", "-f", "-p", "${{EDGE_PORT_http}}", "-h", "/www"]"#,
            reg.host
        ),
        32,
        0,
    );
    let (ok, out) = cli(&addr, &["job", "run", &pulled]);
    assert!(ok, "{out}");
    let a = alloc_of(&api, "e2e-pull").await;
    let ev = events(&a);
    assert!(
        ev.iter()
            .any(|(k, m)| k == "Image Pulled" && m.contains("/edge/pulled:v1")),
        "{ev:?}"
    );
    let port = a.resources.ports[0].value;
    until(20, "pulled web answers", async || http_body(port).await).await;
    let (ok, out) = cli(&addr, &["alloc", "status", &a.id]);
    assert!(ok && out.contains("Image Pulled"), "{out}");
    cli(&addr, &["job", "stop", "e2e-pull"]);
    until(30, "pulled container removed", async || {
        (!ctr(&["containers", "ls", "-q"]).contains(&a.id)).then_some(())
    })
    .await;

    // An image that does not exist fails the task, naming image and cause.
    let missing = format!("{}/edge/missing:v1", reg.host);
    let bad = job_file(
        dir.path(),
        "e2e-bad",
        &format!(r#"image = "{missing}""#),
        32,
        0,
    );
    let (ok, out) = cli(&addr, &["job", "run", &bad]);
    assert!(!ok, "{out}");
    let a = alloc_of(&api, "e2e-bad").await;
    let (_, status) = cli(&addr, &["alloc", "status", &a.id]);
    let failure = events(&a)
        .into_iter()
        .find(|(k, _)| k == "Driver Failure")
        .unwrap_or_else(|| panic!("no Driver Failure event: {status}"));
    assert!(
        failure.1.contains(&missing) && failure.1.contains("not found"),
        "{failure:?}"
    );
    assert!(status.contains(&missing), "{status}");

    // Over its memory limit: OOM killed, restarted once, then failed.
    let hog = job_file(
        dir.path(),
        "e2e-oom",
        &format!(
            r#"image = "{image}"
        command = "sh"
        args = ["-c", "x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo $${{#x}}"]"#
        ),
        8,
        1,
    );
    let (_, out) = cli(&addr, &["job", "run", "--detach", &hog]);
    let a = until(60, "OOM-killed task restarted and failed", async || {
        let (allocs, _) = api
            .job_allocs("e2e-oom", QueryOptions::default())
            .await
            .ok()?;
        let a = api.alloc(&allocs.first()?.id).await.ok()?;
        (a.client_status == ClientStatus::Failed).then_some(a)
    })
    .await;
    let ev = events(&a);
    assert_eq!(
        ev.iter().filter(|(k, _)| k == "OOM Killed").count(),
        2,
        "{out}\n{ev:?}"
    );
    assert_eq!(a.task_states["t"].restarts, 1, "{ev:?}");
    cli(&addr, &["job", "stop", "e2e-oom"]);
    cli(&addr, &["image", "rm", image]);
}

#[tokio::test]
async fn agent_kill_9_and_restart_reattaches_to_the_same_container() {
    if !enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let (addr, api, token) = (
        server.addr.clone(),
        server.api.clone(),
        server.token.clone(),
    );
    let adir = dir.path().join("agent");
    let image = "docker.io/edge/e2e-recover:v1";
    // Dropped in the agent's images/ folder: imported when the agent starts.
    std::fs::create_dir_all(adir.join("images")).unwrap();
    let tar = build_image(dir.path(), image);
    std::fs::rename(&tar, adir.join("images/recover.tar")).unwrap();
    let agent_args = [
        "agent",
        "--server",
        &addr,
        "--join-token",
        token.trim(),
        "--data-dir",
        adir.to_str().unwrap(),
    ];
    let mut agent = Proc::spawn(EDGE, dir.path(), "agent", &agent_args);
    until(20, "a ready node", async || {
        (api.health().await.ok()?.nodes_ready == 1).then_some(())
    })
    .await;

    let web = job_file(
        dir.path(),
        "e2e-recover",
        &format!(
            r#"image = "{image}"
        command = "sh"
        args = ["-c", "(i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done) & exec httpd -f -p $EDGE_PORT_http -h /www"]"#
        ),
        32,
        1,
    );
    let (ok, out) = cli(&addr, &["job", "run", &web]);
    assert!(ok, "{out}");
    let a = alloc_of(&api, "e2e-recover").await;
    let port = a.resources.ports[0].value;
    until(20, "web answers", async || http_body(port).await).await;
    let pid = a.task_states["t"].pid.unwrap();
    let ticks = |addr: &str, id: &str| {
        let (_, logs) = cli(addr, &["alloc", "logs", id, "t"]);
        logs.lines().filter(|l| l.starts_with("tick")).count()
    };
    let before = ticks(&addr, &a.id);

    agent.kill9();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        http_body(port).await.is_some(),
        "container runs on without the agent"
    );
    let mut agent = Proc::spawn(EDGE, dir.path(), "agent", &agent_args);
    let a = until(30, "task recovered", async || {
        let a = api.alloc(&a.id).await.ok()?;
        events(&a)
            .iter()
            .any(|(k, _)| k == "Recovered")
            .then_some(a)
    })
    .await;
    assert_eq!(
        a.task_states["t"].pid,
        Some(pid),
        "same task, not restarted"
    );
    assert_eq!(a.task_states["t"].restarts, 0);
    assert_eq!(ctr(&["tasks", "ls"]).matches(&a.id).count(), 1);
    let after = until(10, "logs kept flowing", async || {
        let n = ticks(&addr, &a.id);
        (n >= before + 10).then_some(n)
    })
    .await;
    assert!(after > before);

    let (ok, out) = cli(&addr, &["job", "stop", "e2e-recover"]);
    assert!(ok, "{out}");
    until_removed(&a.id, &["containers"]).await;
    agent.kill9();
    let _ = Command::new(EDGE).args(["image", "rm", image]).output();
}

/// `edge alloc exec` in a container: output, exit codes, stdin, a tty
/// with a resize, a missing command, and the command killed with its
/// session.
#[tokio::test]
async fn exec_runs_commands_in_a_container() {
    if !enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_dev, addr, api) = start_dev(dir.path(), &[]).await;
    let image = "docker.io/edge/e2e-exec:v1";
    let tar = build_image(dir.path(), image);
    let (ok, out) = cli(&addr, &["image", "import", tar.to_str().unwrap()]);
    assert!(ok, "{out}");
    let job = job_file(
        dir.path(),
        "e2e-exec",
        &format!(
            r#"image = "{image}"
        command = "sh"
        args = ["-c", "echo marker > /tmp/here; exec sleep 3600"]"#
        ),
        32,
        0,
    );
    let (ok, out) = cli(&addr, &["job", "run", &job]);
    assert!(ok, "{out}");
    let a = alloc_of(&api, "e2e-exec").await;
    let run = |args: &[&str], stdin: Option<&[u8]>| {
        let out = run_cli(&addr, &[&["alloc", "exec"], args].concat(), stdin);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = run(&[&a.id, "--", "cat", "/tmp/here"], None);
    assert_eq!((code, out.as_str()), (Some(0), "marker\n"), "{err}");
    let (code, _, err) = run(&[&a.id, "--", "sh", "-c", "exit 3"], None);
    assert_eq!(code, Some(3), "{err}");
    let (code, out, err) = run(&["-i", &a.id, "--", "cat"], Some(b"in a box\n"));
    assert_eq!((code, out.as_str()), (Some(0), "in a box\n"), "{err}");
    // A terminal without input stays up while the command runs (closing
    // the input once hung it up).
    let (code, out, err) = run(&["-t", &a.id, "--", "sh", "-c", "sleep 1; tty"], None);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("/dev/pts/"), "{out:?}");
    let (code, _, err) = run(&[&a.id, "--", "no-such-command"], None);
    assert_eq!(code, Some(127), "{err}");
    assert!(err.contains("no-such-command"), "{err}");
    let a2 = api.alloc(&a.id).await.unwrap();
    assert_eq!(a2.client_status, ClientStatus::Running);
    assert_eq!(a2.task_states["t"].restarts, 0);

    // Closing the client kills the command inside the container.
    let mut child = Command::new(EDGE)
        .args(["alloc", "exec", &a.id, "--", "sleep", "4243"])
        .env("EDGE_ADDR", &addr)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sleeping = || {
        let out = Command::new("pgrep")
            .args(["-f", "^sleep 4243$"])
            .output()
            .unwrap();
        !out.stdout.is_empty()
    };
    until(15, "the exec'd sleep in the container", async || {
        sleeping().then_some(())
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    until(15, "the exec'd sleep killed", async || {
        (!sleeping()).then_some(())
    })
    .await;

    // Stopped and removed before the agent ends with the test: a container
    // left running would outlive it.
    let (ok, out) = cli(&addr, &["job", "stop", "e2e-exec"]);
    assert!(ok, "{out}");
    until_removed(&a.id, &["containers", "tasks"]).await;
    cli(&addr, &["image", "rm", image]);
}

/// Root and containerd: a container gets its local volume (kept across
/// stop and run), its config at /configs and its secret at /run/secrets.
#[tokio::test]
async fn a_container_gets_its_volume_config_and_secret() {
    if !enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_dev, addr, api) = start_dev(dir.path(), &[]).await;
    let image = "docker.io/edge/e2e-data:v1";
    let tar = build_image(dir.path(), image);
    let (ok, out) = cli(&addr, &["image", "import", tar.to_str().unwrap()]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&addr, &["config", "put", "app", "conf=from the config"]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&addr, &["secret", "put", "tls", "cert=from the secret"]);
    assert!(ok, "{out}");
    let job = dir.path().join("store.hcl");
    std::fs::write(
        &job,
        format!(
            r#"job "store" {{
  group "g" {{
    volume "data" {{
      type = "local"
    }}
    task "t" {{
      driver = "containerd"
      config {{
        image   = "{image}"
        command = "sh"
        args    = ["-c", "n=$(cat /data/count 2>/dev/null || echo 0); echo $((n+1)) > /data/count; cat /configs/app > /data/config; stat -c %a /run/secrets/tls > /data/secret-mode; touch /run/secrets/x 2>/dev/null && echo rw > /data/secrets-ro || echo ro > /data/secrets-ro; echo $((n+1)) > /data/done; exec sleep 3600"]
      }}
      volume_mount {{
        volume      = "data"
        destination = "/data"
      }}
      config "app" {{}}
      secret "tls" {{}}
      resources {{
        cpu    = 100
        memory = 32
      }}
    }}
  }}
}}
"#
        ),
    )
    .unwrap();
    let vol = dir.path().join("data/agent/volumes/default/store/g/data-0");
    let read = |f: &str| std::fs::read_to_string(vol.join(f)).unwrap_or_default();
    for run in 1..=2 {
        let (ok, out) = cli(&addr, &["job", "run", "--detach", job.to_str().unwrap()]);
        assert!(ok, "{out}");
        until(60, "the container wrote to its volume", async || {
            (read("done").trim() == run.to_string()).then_some(())
        })
        .await;
        assert_eq!(read("config"), "from the config");
        assert_eq!(read("secret-mode").trim(), "400");
        assert_eq!(
            read("secrets-ro").trim(),
            "ro",
            "secrets are mounted read-only"
        );
        let a = alloc_of(&api, "store").await;
        let (ok, out) = cli(&addr, &["job", "stop", "store"]);
        assert!(ok, "{out}");
        until_removed(&a.id, &["containers", "tasks"]).await;
    }
}
