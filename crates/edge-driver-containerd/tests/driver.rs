//! The containerd driver against a real containerd (gated by
//! `EDGE_TEST_CONTAINERD=1`): import, pull from a local registry, run, logs,
//! limits and OOM, stop/destroy cleanup, recovery by a new driver instance.
//! Each test works in a containerd namespace of its own.

use edge_driver::{Driver, DriverError, EventSink, TaskConfig, TaskHandle};
use edge_driver_containerd::{ContainerdConfig, ContainerdDriver, RegistryConfig};
use edge_spec::Resources;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

const IMAGE: &str = "docker.io/edge/busybox:latest";

fn enabled() -> bool {
    if std::env::var("EDGE_TEST_CONTAINERD").as_deref() == Ok("1") {
        return true;
    }
    println!("skipped: set EDGE_TEST_CONTAINERD=1");
    false
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn build_image(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join("busybox.tar");
    let st = Command::new("bash")
        .arg(repo().join("tests/images/build-busybox.sh"))
        .arg(&out)
        .arg(name)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "building the test image failed");
    out
}

fn ctr(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ctr")
        .arg("-n")
        .arg(ns)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

struct Env {
    dir: tempfile::TempDir,
    ns: String,
    driver: ContainerdDriver,
}

impl Env {
    fn new(registry: RegistryConfig) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let ns = format!("edge-test-{}", &uuid_like()[..8]);
        let driver = ContainerdDriver::new(config(dir.path(), &ns, registry)).unwrap();
        Env { dir, ns, driver }
    }

    fn task(&self, name: &str, config: serde_json::Value, memory: u32) -> TaskConfig {
        let alloc = uuid_like();
        let root = self.dir.path().join(&alloc);
        TaskConfig {
            mounts: Vec::new(),
            alloc_id: alloc.clone(),
            job_id: "job".into(),
            group: "g".into(),
            task: name.into(),
            config: config.as_object().cloned().unwrap(),
            env: BTreeMap::from([("GREETING".to_string(), "hi there".to_string())]),
            resources: Resources { cpu: 100, memory },
            ports: vec![],
            alloc_dir: root.join("alloc"),
            task_dir: root.join(name),
            log_dir: root.join("alloc/logs"),
            log_max_bytes: 1 << 20,
            log_max_files: 2,
            netns: None,
            resolv_conf: None,
        }
    }

    async fn cleanup(&self) {
        for i in self.driver.images().await.unwrap_or_default() {
            let _ = self.driver.remove_image(&i.name).await;
        }
        let _ = Command::new("ctr")
            .args(["namespaces", "rm", &self.ns])
            .output();
    }
}

fn config(dir: &Path, ns: &str, registry: RegistryConfig) -> ContainerdConfig {
    let mut cfg = ContainerdConfig::new(dir.join("state"));
    cfg.namespace = ns.to_string();
    cfg.registry = registry;
    cfg.cgroup_parent = "edge-test".to_string();
    cfg
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let pid = std::process::id();
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{:08x}-{:04x}-4000-8000-{:012x}",
        (nanos & 0xffff_ffff) as u32,
        pid & 0xffff,
        n
    )
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

#[derive(Default)]
struct Events(Mutex<Vec<(String, String)>>);

impl EventSink for Events {
    fn event(&self, kind: &str, message: &str) {
        self.0
            .lock()
            .unwrap()
            .push((kind.to_string(), message.to_string()));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn http_get(port: u16) -> Option<String> {
    let resp = reqwest::get(format!("http://127.0.0.1:{port}/index.html"))
        .await
        .ok()?;
    resp.text().await.ok()
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn logs(cfg: &TaskConfig) -> String {
    String::from_utf8_lossy(
        &edge_driver::logs::read_logs(&cfg.log_dir, &cfg.task, "stdout", None).unwrap(),
    )
    .to_string()
}

#[tokio::test]
async fn fingerprint_reports_presence() {
    if !enabled() {
        return;
    }
    let env = Env::new(RegistryConfig::default());
    let info = env.driver.fingerprint().await;
    assert!(info.detected && info.healthy, "{info:?}");
    assert!(info.attributes.contains_key("containerd.version"));
    let mut cfg = config(env.dir.path(), &env.ns, RegistryConfig::default());
    cfg.socket = env.dir.path().join("missing.sock");
    let info = ContainerdDriver::new(cfg).unwrap().fingerprint().await;
    assert!(!info.detected && !info.healthy, "{info:?}");
}

#[tokio::test]
async fn imported_image_runs_a_web_container_with_limits_and_cleans_up() {
    if !enabled() {
        return;
    }
    let env = Env::new(RegistryConfig::default());
    let tar = build_image(env.dir.path(), IMAGE);
    let names = env.driver.import_archive(&tar).await.unwrap();
    assert_eq!(names, [IMAGE]);
    let listed = env.driver.images().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].size > 100_000, "{listed:?}");

    let port = free_port();
    let cfg = env.task(
        "web",
        serde_json::json!({
            "image": "edge/busybox",
            "args": ["sh", "-c", format!("echo $GREETING from $EDGE_ALLOC_DIR; echo ok > /alloc/mark; exec httpd -f -p {port} -h /www")],
        }),
        32,
    );
    let events = Events::default();
    env.driver.prepare(&cfg, &events).await.unwrap();
    assert!(
        events.0.lock().unwrap().is_empty(),
        "no pull for an imported image"
    );
    let h = env.driver.start(&cfg).await.unwrap();
    eventually("http answer", || async {
        http_get(port).await.as_deref() == Some("hello from edge\n")
    })
    .await;
    assert_eq!(logs(&cfg), "hi there from /alloc\n");
    assert_eq!(
        std::fs::read_to_string(cfg.alloc_dir.join("mark")).unwrap(),
        "ok\n"
    );

    let id = h.state["container_id"].as_str().unwrap().to_string();
    let limit = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/edge-test/{id}/memory.limit_in_bytes"
    ));
    if let Ok(limit) = limit {
        assert_eq!(limit.trim(), (32u64 << 20).to_string());
    }
    let stats = env.driver.stats(&h).await.unwrap();
    assert!(
        stats.memory_rss_bytes > 0 && stats.cpu_total_ns > 0,
        "{stats:?}"
    );

    env.driver.stop(&h, Duration::from_secs(5)).await.unwrap();
    let exit = env.driver.wait(&h).await.unwrap();
    assert!(!exit.successful() && !exit.oom_killed, "{exit:?}");
    env.driver.destroy(&h).await.unwrap();
    assert!(!ctr(&env.ns, &["containers", "ls", "-q"]).contains(&id));
    assert!(!ctr(&env.ns, &["tasks", "ls"]).contains(&id));
    assert!(!ctr(&env.ns, &["snapshots", "ls"]).contains(&id));
    env.driver.destroy(&h).await.unwrap();

    // A `docker save`-style archive (manifest.json + RepoTags) imports too.
    let docker_tar = env.dir.path().join("docker.tar");
    let ok = Command::new("skopeo")
        .args(["copy", "--insecure-policy"])
        .arg(format!("oci-archive:{}", tar.display()))
        .arg(format!(
            "docker-archive:{}:edge/saved:v2",
            docker_tar.display()
        ))
        .stdout(Stdio::null())
        .status()
        .expect("skopeo (apt-get install skopeo)")
        .success();
    assert!(ok);
    let names = env.driver.import_archive(&docker_tar).await.unwrap();
    assert_eq!(names, ["docker.io/edge/saved:v2"]);
    let cfg = env.task(
        "saved",
        serde_json::json!({"image": "edge/saved:v2", "command": "echo", "args": ["saved ok"]}),
        16,
    );
    env.driver.prepare(&cfg, &Events::default()).await.unwrap();
    let h = env.driver.start(&cfg).await.unwrap();
    assert_eq!(env.driver.wait(&h).await.unwrap().exit_code, 0);
    env.driver.destroy(&h).await.unwrap();
    assert_eq!(logs(&cfg), "saved ok\n");
    env.cleanup().await;
}

#[tokio::test]
async fn exit_codes_oom_and_recovery() {
    if !enabled() {
        return;
    }
    let env = Env::new(RegistryConfig::default());
    let tar = build_image(env.dir.path(), IMAGE);
    env.driver.import_archive(&tar).await.unwrap();
    let events = Events::default();

    let cfg = env.task(
        "exit",
        serde_json::json!({"image": IMAGE, "command": "sh", "args": ["-c", "exit 3"]}),
        16,
    );
    env.driver.prepare(&cfg, &events).await.unwrap();
    let h = env.driver.start(&cfg).await.unwrap();
    let exit = env.driver.wait(&h).await.unwrap();
    assert_eq!((exit.exit_code, exit.oom_killed), (3, false));
    env.driver.destroy(&h).await.unwrap();

    let cfg = env.task(
        "hog",
        serde_json::json!({"image": IMAGE, "command": "sh", "args": ["-c", "x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo ${#x}"]}),
        8,
    );
    let h = env.driver.start(&cfg).await.unwrap();
    let exit = env.driver.wait(&h).await.unwrap();
    assert!(exit.oom_killed, "{exit:?}");
    env.driver.destroy(&h).await.unwrap();

    // pid 1 only gets signals it handles, hence the trap.
    let cfg = env.task(
        "sleeper",
        serde_json::json!({"image": IMAGE, "command": "sh", "args": ["-c", "trap 'exit 7' TERM; sleep 300 & wait"], "readonly_rootfs": true}),
        16,
    );
    let h = env.driver.start(&cfg).await.unwrap();
    let fresh =
        ContainerdDriver::new(config(env.dir.path(), &env.ns, RegistryConfig::default())).unwrap();
    fresh.recover(&h).await.unwrap();
    fresh.signal(&h, "TERM").await.unwrap();
    let exit = fresh.wait(&h).await.unwrap();
    assert_eq!(exit.exit_code, 7, "{exit:?}");
    fresh.destroy(&h).await.unwrap();
    let gone = TaskHandle { ..h.clone() };
    assert!(matches!(
        fresh.recover(&gone).await,
        Err(DriverError::NotFound { .. })
    ));
    env.cleanup().await;
}

struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_registry() -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry (apt-get install docker-registry)");
    let reg = Registry {
        child,
        port,
        _dir: dir,
    };
    eventually("registry", || async {
        reqwest::get(format!("http://127.0.0.1:{port}/v2/"))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    reg
}

#[tokio::test]
async fn pulls_from_a_plain_http_registry_and_names_bad_images() {
    if !enabled() {
        return;
    }
    let reg = start_registry().await;
    let host = format!("127.0.0.1:{}", reg.port);
    let env = Env::new(RegistryConfig {
        insecure: vec![host.clone()],
        ..Default::default()
    });
    let tar = build_image(env.dir.path(), IMAGE);
    let pushed = Command::new("skopeo")
        .args(["copy", "--insecure-policy", "--dest-tls-verify=false"])
        .arg(format!("oci-archive:{}", tar.display()))
        .arg(format!("docker://{host}/edge/busybox:v1"))
        .stdout(Stdio::null())
        .status()
        .expect("skopeo (apt-get install skopeo)");
    assert!(pushed.success());

    let image = format!("{host}/edge/busybox:v1");
    let cfg = env.task(
        "pulled",
        serde_json::json!({"image": image, "command": "echo", "args": ["pulled ok"]}),
        16,
    );
    let events = Events::default();
    env.driver.prepare(&cfg, &events).await.unwrap();
    let kinds: Vec<String> = events
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("Downloading Image"),
        "{kinds:?}"
    );
    assert!(
        kinds.iter().any(|k| k == "Downloading Image Progress"),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("Image Pulled"),
        "{kinds:?}"
    );
    let again = Events::default();
    env.driver.prepare(&cfg, &again).await.unwrap();
    assert!(
        again.0.lock().unwrap().is_empty(),
        "second prepare pulls nothing"
    );
    let h = env.driver.start(&cfg).await.unwrap();
    assert_eq!(env.driver.wait(&h).await.unwrap().exit_code, 0);
    eventually("log", || async { logs(&cfg) == "pulled ok\n" }).await;
    env.driver.destroy(&h).await.unwrap();

    let bad = env.task(
        "bad",
        serde_json::json!({"image": format!("{host}/edge/nope:v1")}),
        16,
    );
    let err = env
        .driver
        .prepare(&bad, &Events::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("{host}/edge/nope:v1")) && err.contains("not found"),
        "{err}"
    );
    let no_registry = env.task(
        "unreachable",
        serde_json::json!({"image": format!("127.0.0.1:{}/x:v1", free_port())}),
        16,
    );
    let err = env
        .driver
        .prepare(&no_registry, &Events::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("/x:v1"), "{err}");
    env.cleanup().await;
}
