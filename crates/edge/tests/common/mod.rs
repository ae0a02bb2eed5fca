//! Helpers shared by the end-to-end tests that drive the real binary.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub mod webapp;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

pub const EDGE: &str = env!("CARGO_BIN_EXE_edge");

/// The repository root: examples and fixtures are named relative to it.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A child process run from the repository root, SIGKILLed when dropped. Its
/// output is appended to `dir/name.log` (a restarted process keeps one log)
/// and printed when the test fails.
pub struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(program: &str, dir: &Path, name: &str, args: &[impl AsRef<OsStr>]) -> Proc {
        Proc::spawn_env(program, dir, name, args, &[])
    }

    /// As `spawn`, with these environment variables set too.
    pub fn spawn_env(
        program: &str,
        dir: &Path,
        name: &str,
        args: &[impl AsRef<OsStr>],
        env: &[(&str, &str)],
    ) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(program)
            .args(args)
            .env("EDGE_LOG", "info")
            .envs(env.iter().copied())
            .current_dir(repo())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        Proc { child, log }
    }

    /// The `edge` binary under test.
    pub fn edge(dir: &Path, name: &str, args: &[impl AsRef<OsStr>]) -> Proc {
        Proc::spawn(EDGE, dir, name, args)
    }

    /// SIGTERM, then waits for the process to exit (SIGKILL after 10 s).
    pub fn term(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Everything the process has written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- {} ---\n{}",
                self.log.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        self.kill9();
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` until it returns `Some`, failing the test after `secs` seconds.
pub async fn until<T>(secs: u64, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    until_ok(secs, what, async || f().await.ok_or("not yet")).await
}

/// Polls `f` until it returns `Ok`, failing the test after `secs` seconds
/// with the last error.
pub async fn until_ok<T, E: std::fmt::Display>(
    secs: u64,
    what: &str,
    mut f: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {secs}s waiting for: {what}: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One DNS query over UDP, answered within three seconds.
pub async fn dns(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let mut msg = Message::query();
    msg.add_query(Query::query(Name::from_str(name).unwrap(), rtype));
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&msg.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), sock.recv(&mut buf))
        .await
        .expect("dns answer")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

/// True when the environment variable `var` is `1`; otherwise says the test
/// is skipped (root-only and containerd tests, which `.ci/run` turns on).
pub fn gated(var: &str) -> bool {
    if std::env::var(var).as_deref() == Ok("1") {
        return true;
    }
    println!("skipped: set {var}=1");
    false
}

/// An OCI archive of a busybox image named `name`, built without a registry.
pub fn build_image(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(format!("{}.tar", name.replace(['/', ':'], "_")));
    let ok = Command::new("bash")
        .arg(repo().join("tests/images/build-busybox.sh"))
        .arg(&out)
        .arg(name)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "building test image {name}");
    out
}

/// A directory every task can write to: as root the agent runs exec tasks
/// as `nobody`, who cannot enter a private temporary directory.
pub fn writable_dir(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    out
}

/// `edge dev` in `dir` on a free port, once its node is ready: the process,
/// `http://127.0.0.1:PORT` and a client.
pub async fn dev(dir: &Path) -> (Proc, String, edge_api::Client) {
    dev_logging(dir, free_port(), &[], "info").await
}

/// [`dev`] on `port`, with `extra` arguments and `EDGE_LOG=log`.
pub async fn dev_logging(
    dir: &Path,
    port: u16,
    extra: &[&str],
    log: &str,
) -> (Proc, String, edge_api::Client) {
    dev_env(dir, port, extra, &[("EDGE_LOG", log)]).await
}

/// [`dev`] on `port`, with `extra` arguments and these environment
/// variables set too.
pub async fn dev_env(
    dir: &Path,
    port: u16,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Proc, String, edge_api::Client) {
    let addr = format!("http://127.0.0.1:{port}");
    let data = dir.join("data");
    let bind = format!("127.0.0.1:{port}");
    let mut args = vec!["dev", "--data-dir", data.to_str().unwrap(), "--bind", &bind];
    args.extend_from_slice(extra);
    let proc = Proc::spawn_env(EDGE, dir, "dev", &args, env);
    let api = edge_api::Client::new(&addr, None).unwrap();
    until(30, "a ready node", async || {
        (api.health().await.ok()?.nodes_ready == 1).then_some(())
    })
    .await;
    (proc, addr, api)
}

/// A real `edge server` on a free loopback port, data in `dir/server`.
pub struct Server {
    pub proc: Proc,
    /// `http://127.0.0.1:PORT`
    pub addr: String,
    pub api: edge_api::Client,
    /// The join token agents need.
    pub token: String,
    /// The command line, to start it again on the same port and data.
    pub args: Vec<String>,
}

impl Server {
    pub async fn start(dir: &Path) -> Server {
        let port = free_port();
        let addr = format!("http://127.0.0.1:{port}");
        let data = dir.join("server");
        let args: Vec<String> = [
            "server",
            "--data-dir",
            data.to_str().unwrap(),
            "--bind",
            &format!("127.0.0.1:{port}"),
        ]
        .map(String::from)
        .to_vec();
        let proc = Proc::edge(dir, "server", &args);
        let api = edge_api::Client::new(&addr, None).unwrap();
        until(20, "server up", async || api.health().await.ok()).await;
        let token = std::fs::read_to_string(data.join("token")).unwrap();
        Server {
            proc,
            addr,
            api,
            token: token.trim().to_string(),
            args,
        }
    }
}

/// One client per URL asking in a loop until [`Load::finish`]; a request
/// fails unless it is answered 2xx with a body.
pub struct Load {
    stop: std::sync::Arc<tokio::sync::Notify>,
    clients: Vec<tokio::task::JoinHandle<(u32, u32)>>,
}

impl Load {
    pub fn start(urls: &[String]) -> Load {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let stop = std::sync::Arc::new(tokio::sync::Notify::new());
        let clients = urls
            .iter()
            .map(|url| {
                let (http, stop, url) = (http.clone(), stop.clone(), url.clone());
                tokio::spawn(async move {
                    let (mut ok, mut failed) = (0u32, 0u32);
                    let stopped = stop.notified();
                    tokio::pin!(stopped);
                    loop {
                        tokio::select! {
                            _ = &mut stopped => return (ok, failed),
                            r = answered(&http, &url) => match r {
                                Ok(()) => ok += 1,
                                Err(why) => {
                                    // Which answer failed is what tells a
                                    // balancer's fault from a backend's.
                                    eprintln!("load: {url}: {why}");
                                    failed += 1;
                                }
                            },
                        }
                    }
                })
            })
            .collect();
        Load { stop, clients }
    }

    /// Stops the clients; (requests answered, requests failed).
    pub async fn finish(self) -> (u32, u32) {
        self.stop.notify_waiters();
        let (mut ok, mut failed) = (0, 0);
        for c in self.clients {
            let (o, f) = c.await.unwrap();
            ok += o;
            failed += f;
        }
        (ok, failed)
    }
}

async fn answered(http: &reqwest::Client, url: &str) -> Result<(), String> {
    let r = http.get(url).send().await.map_err(|e| format!("{e:#}"))?;
    let status = r.status();
    let body = r
        .text()
        .await
        .map_err(|e| format!("{status}, body: {e:#}"))?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{status}: {}", body.trim()))
    }
}

/// `edge ARGS` against the server at `addr`, with `stdin` written to it
/// (none: stdin is empty); its whole output.
/// `edge ARGS...` against `addr`: whether it succeeded, and its stdout
/// followed by its stderr.
pub fn cli(addr: &str, args: &[&str]) -> (bool, String) {
    let out = run_cli(addr, args, None);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

pub fn run_cli(addr: &str, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
    let mut child = Command::new(EDGE)
        .args(args)
        .env("EDGE_ADDR", addr)
        .current_dir(repo())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// `edge alloc logs -f` prints the `lineN` lines allocation `id`'s task
/// writes after it started; `env` goes to the CLI besides `EDGE_ADDR`
/// (a CA, a token).
pub async fn follow_logs(addr: &str, id: &str, env: &[(&str, &OsStr)]) {
    let mut child = tokio::process::Command::new(EDGE)
        .args(["alloc", "logs", "-f", "--tail", "20", id])
        .env("EDGE_ADDR", addr)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    let now = tokio::time::Instant::now;
    let numbers = read_numbers(
        &mut stdout,
        &mut seen,
        now() + Duration::from_secs(20),
        "logs -f printed only",
        |n| n.len() >= 2,
    )
    .await;
    // Followed: more lines arrive after the first read.
    let first = numbers[0];
    read_numbers(
        &mut stdout,
        &mut seen,
        now() + Duration::from_secs(5),
        "logs -f stopped following:",
        |n| n.last().is_some_and(|l| *l >= first + 5),
    )
    .await;
    let _ = child.kill().await;
}

/// Reads `out` on, into `seen`, until the numbers of the `lineN` lines seen
/// so far satisfy `done`; those numbers. Panics with `what` at `deadline`.
async fn read_numbers(
    out: &mut (impl tokio::io::AsyncRead + Unpin),
    seen: &mut String,
    deadline: tokio::time::Instant,
    what: &str,
    done: impl Fn(&[u64]) -> bool,
) -> Vec<u64> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 4096];
    loop {
        let mut numbers: Vec<u64> = seen
            .lines()
            .filter_map(|l| l.strip_prefix("line")?.parse().ok())
            .collect();
        numbers.dedup();
        if done(&numbers) {
            return numbers;
        }
        let n = tokio::time::timeout_at(deadline, out.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{what} {seen:?}"))
            .unwrap();
        assert!(n > 0, "logs -f ended: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// The host port labelled `label` of job `job`'s first allocation.
pub async fn alloc_port(api: &edge_api::Client, job: &str, label: &str) -> u16 {
    let (allocs, _) = api
        .job_allocs(job, edge_api::QueryOptions::default())
        .await
        .unwrap();
    let alloc = api.alloc(&allocs[0].id).await.unwrap();
    alloc
        .resources
        .ports
        .iter()
        .find(|p| p.label == label)
        .unwrap_or_else(|| panic!("{job} has no port {label:?}"))
        .value
}

/// `edge dev` on a bridge and subnet of its own (tests run at once), with
/// `extra` flags, once its node is ready with bridge networking.
pub struct Dev {
    pub proc: Proc,
    pub addr: String,
    pub api: edge_api::Client,
    pub data: PathBuf,
    pub args: Vec<String>,
}

impl Dev {
    pub async fn start(dir: &Path, bridge: &str, subnet: &str, extra: &[&str]) -> Dev {
        let port = free_port();
        let data = dir.join("data");
        let bind = format!("127.0.0.1:{port}");
        let mut args: Vec<String> = [
            "dev",
            "--data-dir",
            data.to_str().unwrap(),
            "--bind",
            &bind,
            "--bridge-name",
            bridge,
            "--bridge-subnet",
            subnet,
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|a| a.to_string()));
        let addr = format!("http://{bind}");
        let api = edge_api::Client::new(&addr, None).unwrap();
        let proc = start_bridged(dir, &args, &api).await;
        Dev {
            proc,
            addr,
            api,
            data,
            args,
        }
    }
}

/// `edge ARGS` (a `dev`) in `dir`, once its node is ready with bridge
/// networking; also to start it again after a kill.
pub async fn start_bridged(dir: &Path, args: &[String], api: &edge_api::Client) -> Proc {
    let dev = Proc::edge(dir, "dev", args);
    until(30, "a ready node with bridge networking", async || {
        let nodes = api.nodes().await.ok()?;
        let n = nodes.first()?;
        let n = api.node(&n.id).await.ok()?;
        (n.status == edge_spec::NodeStatus::Ready
            && n.attributes.get("network.bridge").map(String::as_str) == Some("true"))
        .then_some(())
    })
    .await;
    dev
}

/// This host's first global IPv4 address: where a node's DNS must listen
/// for its bridge allocations to reach it.
pub fn host_ip() -> String {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .map(str::to_string)
        .expect("a global IPv4 address on this host (ip -4 addr)")
}
