//! Integration tests of the exec driver against real processes. The test
//! binary doubles as the executor (`<test> executor <spec>`) and as a
//! short-lived "agent" (`<test> start-detached ...`), so it has its own
//! `main` instead of the libtest harness.

use edge_driver::logs::{log_files, read_logs};
use edge_driver::{Driver, DriverError, ExitResult, TaskConfig, TaskHandle};
use edge_driver_exec::{ExecConfig, ExecDriver, executor_main};
use edge_spec::Resources;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const CGROUP_PARENT: &str = "edge-test";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("executor") => std::process::exit(executor_main(&args[2..])),
        Some("start-detached") => std::process::exit(start_detached(&args[2..])),
        _ => {}
    }
    remove_stale_cgroups();
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-')).cloned();
    let tests: &[(&str, fn())] = &[
        ("echo_goes_to_the_stdout_log", echo_goes_to_the_stdout_log),
        ("exit_code_is_reported", exit_code_is_reported),
        (
            "bad_command_fails_start_naming_it",
            bad_command_fails_start_naming_it,
        ),
        ("bad_config_is_a_config_error", bad_config_is_a_config_error),
        ("stop_sends_sigterm", stop_sends_sigterm),
        ("stop_escalates_to_sigkill", stop_escalates_to_sigkill),
        (
            "stop_with_the_tasks_kill_signal",
            stop_with_the_tasks_kill_signal,
        ),
        (
            "stop_with_a_huge_kill_timeout",
            stop_with_a_huge_kill_timeout,
        ),
        ("signal_reaches_the_task", signal_reaches_the_task),
        (
            "recover_after_driver_is_dropped",
            recover_after_driver_is_dropped,
        ),
        (
            "recover_of_a_vanished_task_is_not_found",
            recover_of_a_vanished_task_is_not_found,
        ),
        (
            "task_survives_its_starter_being_killed",
            task_survives_its_starter_being_killed,
        ),
        ("executor_death_is_reported", executor_death_is_reported),
        (
            "chatty_task_logs_rotate_within_caps",
            chatty_task_logs_rotate_within_caps,
        ),
        ("stats_report_memory_and_cpu", stats_report_memory_and_cpu),
        (
            "a_stray_fd_of_the_agent_is_not_inherited",
            a_stray_fd_of_the_agent_is_not_inherited,
        ),
        ("destroy_removes_state", destroy_removes_state),
        ("fingerprint_reports_cgroups", fingerprint_reports_cgroups),
        (
            "root_cgroup_limits_are_applied",
            root_cgroup_limits_are_applied,
        ),
        ("root_oom_kill_is_reported", root_oom_kill_is_reported),
        (
            "root_tasks_run_as_nobody_by_default",
            root_tasks_run_as_nobody_by_default,
        ),
        (
            "root_a_root_task_needs_the_agent_option",
            root_a_root_task_needs_the_agent_option,
        ),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(test);
        let ms = started.elapsed().as_millis();
        match outcome {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok ({ms} ms)");
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED ({ms} ms)");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

/// Task cgroups that failed runs of this test left behind; removing a
/// cgroup directory only succeeds once it is empty.
fn remove_stale_cgroups() {
    for hierarchy in ["memory", "cpu", "cpuacct", "cpu,cpuacct", ""] {
        let parent = Path::new("/sys/fs/cgroup")
            .join(hierarchy)
            .join(CGROUP_PARENT);
        for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                let _ = std::fs::remove_dir(entry.path());
            }
        }
    }
}

fn root_enabled() -> bool {
    if std::env::var("EDGE_TEST_ROOT").as_deref() == Ok("1") {
        true
    } else {
        println!("skipped: set EDGE_TEST_ROOT=1");
        false
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn exec_config(state_dir: &Path) -> ExecConfig {
    let exe = std::env::current_exe().expect("current exe");
    ExecConfig {
        executor: vec![exe.to_string_lossy().into_owned(), "executor".to_string()],
        state_dir: state_dir.to_path_buf(),
        cgroup_parent: CGROUP_PARENT.to_string(),
        ..ExecConfig::new(Vec::new(), PathBuf::new())
    }
}

struct Fixture {
    root: tempfile::TempDir,
    driver: ExecDriver,
}

impl Fixture {
    fn new() -> Fixture {
        let root = tempfile::tempdir().expect("tempdir");
        let driver = ExecDriver::new(exec_config(&root.path().join("state")));
        Fixture { root, driver }
    }

    fn state_dir(&self) -> PathBuf {
        self.root.path().join("state")
    }

    fn log_dir(&self) -> PathBuf {
        self.root.path().join("alloc/logs")
    }

    fn task(&self, name: &str, config: Value) -> TaskConfig {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let alloc_id = format!(
            "t{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        TaskConfig {
            mounts: Vec::new(),
            alloc_id,
            job_id: "job".to_string(),
            group: "group".to_string(),
            task: name.to_string(),
            config: config.as_object().cloned().expect("config object"),
            env: BTreeMap::from([
                ("EDGE_PORT_http".to_string(), "8080".to_string()),
                ("GREETING".to_string(), "hi there".to_string()),
            ]),
            resources: Resources::default(),
            ports: Vec::new(),
            alloc_dir: self.root.path().join("alloc"),
            task_dir: self.root.path().join("alloc").join(name),
            log_dir: self.log_dir(),
            log_max_bytes: 1024 * 1024,
            log_max_files: 3,
            netns: None,
            resolv_conf: None,
        }
    }

    fn stdout(&self, task: &str) -> String {
        String::from_utf8_lossy(&read_logs(&self.log_dir(), task, "stdout", None).unwrap())
            .into_owned()
    }

    /// Polls the task's stdout until it contains `needle`.
    async fn wait_for_output(&self, task: &str, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.stdout(task).contains(needle) {
            assert!(
                Instant::now() < deadline,
                "{needle:?} never appeared in {task}'s stdout"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn sh(script: &str) -> Value {
    json!({"command": "sh", "args": ["-c", script]})
}

async fn wait_with_timeout(driver: &ExecDriver, handle: &TaskHandle) -> ExitResult {
    tokio::time::timeout(Duration::from_secs(20), driver.wait(handle))
        .await
        .expect("task did not exit in time")
        .expect("wait")
}

fn echo_goes_to_the_stdout_log() {
    let f = Fixture::new();
    block_on(async {
        let cfg = f.task(
            "web",
            json!({"command": "sh", "args": [
                "-c", "echo \"$1\"; echo \"$GREETING\"; pwd; echo oops >&2",
                "sh", "port=${EDGE_PORT_http} other=${NOPE}"
            ]}),
        );
        let handle = f.driver.start(&cfg).await.expect("start");
        assert_eq!(handle.driver, "exec");
        assert!(handle.pid.is_some());
        let result = wait_with_timeout(&f.driver, &handle).await;
        assert!(result.successful(), "{result:?}");
        let expected = format!(
            "port=8080 other=${{NOPE}}\nhi there\n{}\n",
            cfg.task_dir.display()
        );
        assert_eq!(f.stdout("web"), expected);
        assert_eq!(
            read_logs(&f.log_dir(), "web", "stderr", None).unwrap(),
            b"oops\n"
        );
        f.driver.destroy(&handle).await.expect("destroy");
    });
}

/// A descriptor the agent's parent left open without close-on-exec (a
/// supervisor's lock, say) would be held by every task for its whole life.
fn a_stray_fd_of_the_agent_is_not_inherited() {
    let f = Fixture::new();
    let lock = f.root.path().join("stray.lock");
    std::fs::write(&lock, "").unwrap();
    let path = std::ffi::CString::new(lock.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; the fd is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
    assert!(fd > 2, "opened without O_CLOEXEC");
    block_on(async {
        // Targets, not numbers: the listing's own directory fd may take the
        // lowest free number, which is the stray's when the test runs alone.
        let cfg = f.task("fds", sh("ls -l /proc/$$/fd"));
        let handle = f.driver.start(&cfg).await.expect("start");
        let result = wait_with_timeout(&f.driver, &handle).await;
        assert!(result.successful(), "{result:?}");
        let listing = f.stdout("fds");
        assert!(listing.contains(" 1 -> "), "listing ran: {listing}");
        assert!(
            !listing.contains("stray.lock"),
            "fd {fd} reached the task: {listing}"
        );
        f.driver.destroy(&handle).await.expect("destroy");
    });
    // SAFETY: the fd opened above, closed once.
    unsafe { libc::close(fd) };
}

fn exit_code_is_reported() {
    let f = Fixture::new();
    block_on(async {
        let handle = f
            .driver
            .start(&f.task("job", sh("exit 3")))
            .await
            .expect("start");
        let result = wait_with_timeout(&f.driver, &handle).await;
        assert_eq!(result.exit_code, 3);
        assert_eq!(result.signal, None);
        assert!(!result.oom_killed);
        assert!(!result.successful());
        // A second wait answers at once with the same result.
        assert_eq!(f.driver.wait(&handle).await.unwrap(), result);
        f.driver.destroy(&handle).await.expect("destroy");
    });
}

fn bad_command_fails_start_naming_it() {
    let f = Fixture::new();
    block_on(async {
        for command in ["/nonexistent/edge-no-such-cmd", "edge-no-such-cmd-on-path"] {
            let err = f
                .driver
                .start(&f.task("bad", json!({"command": command})))
                .await
                .expect_err("start of a missing command");
            let message = err.to_string();
            assert!(message.contains(command), "{message}");
            assert!(
                matches!(&err, DriverError::Config { field, .. } if field == "config.command"),
                "{err:?}"
            );
        }
        // The failed runs leave no state behind.
        let left: Vec<_> = walk(&f.state_dir())
            .into_iter()
            .filter(|p| p.is_file())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    });
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            }
            out.push(path);
        }
    }
    out
}

fn bad_config_is_a_config_error() {
    let f = Fixture::new();
    block_on(async {
        let cases = [
            (json!({"command": "true", "image": "nginx"}), "config.image"),
            (json!({"args": ["x"]}), "config.command"),
            (
                json!({"command": "true", "args": "not a list"}),
                "config.args",
            ),
        ];
        for (config, want) in cases {
            match f.driver.start(&f.task("web", config)).await {
                Err(DriverError::Config { field, .. }) => assert_eq!(field, want),
                other => panic!("expected a config error on {want}, got {other:?}"),
            }
        }
        assert!(walk(&f.state_dir()).iter().all(|p| p.is_dir()));
    });
}

fn stop_sends_sigterm() {
    let f = Fixture::new();
    block_on(async {
        let handle = f
            .driver
            .start(&f.task("web", json!({"command": "sleep", "args": ["30"]})))
            .await
            .unwrap();
        let started = Instant::now();
        f.driver
            .stop(&handle, Duration::from_secs(10))
            .await
            .expect("stop");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        let result = f.driver.wait(&handle).await.unwrap();
        assert_eq!(result.signal, Some(15), "{result:?}");
        assert_eq!(result.exit_code, 128 + 15);
        // Stopping what already stopped is fine.
        f.driver
            .stop(&handle, Duration::from_secs(1))
            .await
            .expect("second stop");
        f.driver.destroy(&handle).await.unwrap();
    });
}

/// Nomad's `kill_signal`: a task that stops gracefully on another signal
/// (nginx on SIGQUIT) gets that one first, and no SIGTERM.
fn stop_with_the_tasks_kill_signal() {
    let f = Fixture::new();
    block_on(async {
        let script = "trap 'echo graceful; exit 0' QUIT; trap 'echo term; exit 3' TERM; echo ready; while :; do sleep 0.1; done";
        let handle = f.driver.start(&f.task("quits", sh(script))).await.unwrap();
        f.wait_for_output("quits", "ready").await;
        f.driver
            .stop_with(&handle, Duration::from_secs(10), "SIGQUIT")
            .await
            .expect("stop");
        let result = f.driver.wait(&handle).await.unwrap();
        assert_eq!(result.exit_code, 0, "{result:?}");
        f.wait_for_output("quits", "graceful").await;
        let bad = f
            .driver
            .stop_with(&handle, Duration::from_secs(1), "SIGNOPE")
            .await;
        assert!(matches!(bad, Err(DriverError::Config { .. })), "{bad:?}");
        f.driver.destroy(&handle).await.unwrap();
    });
}

fn stop_escalates_to_sigkill() {
    let f = Fixture::new();
    block_on(async {
        let script = "trap '' TERM; echo ready; while :; do sleep 0.1; done";
        let handle = f
            .driver
            .start(&f.task("stubborn", sh(script)))
            .await
            .unwrap();
        f.wait_for_output("stubborn", "ready").await;
        let started = Instant::now();
        f.driver
            .stop(&handle, Duration::from_secs(1))
            .await
            .expect("stop");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(1),
            "stopped before the timeout: {took:?}"
        );
        assert!(took < Duration::from_secs(5), "{took:?}");
        let result = f.driver.wait(&handle).await.unwrap();
        assert_eq!(result.signal, Some(9), "{result:?}");
        assert!(!task_is_running(handle.pid.unwrap()));
        f.driver.destroy(&handle).await.unwrap();
    });
}

/// A kill_timeout stored before durations were bounded must not panic the
/// agent when it is added to the clock.
fn stop_with_a_huge_kill_timeout() {
    let f = Fixture::new();
    block_on(async {
        let handle = f
            .driver
            .start(&f.task("web", json!({"command": "sleep", "args": ["30"]})))
            .await
            .unwrap();
        f.driver.stop(&handle, Duration::MAX).await.expect("stop");
        f.driver
            .stop(&handle, Duration::from_secs(100_000_000_000 * 3600))
            .await
            .expect("second stop");
        let result = f.driver.wait(&handle).await.unwrap();
        assert_eq!(result.signal, Some(15), "{result:?}");
        f.driver.destroy(&handle).await.unwrap();
    });
}

/// A zombie still has a /proc entry until its parent reaps it.
fn task_is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn signal_reaches_the_task() {
    let f = Fixture::new();
    block_on(async {
        let script = "trap 'echo got usr1' USR1; echo ready; while :; do sleep 0.1; done";
        let handle = f.driver.start(&f.task("sig", sh(script))).await.unwrap();
        f.wait_for_output("sig", "ready").await;
        f.driver.signal(&handle, "SIGUSR1").await.expect("signal");
        f.wait_for_output("sig", "got usr1").await;
        assert!(matches!(
            f.driver.signal(&handle, "SIGBOGUS").await,
            Err(DriverError::Config { .. })
        ));
        f.driver.signal(&handle, "SIGKILL").await.expect("kill");
        let result = wait_with_timeout(&f.driver, &handle).await;
        assert_eq!(result.signal, Some(9));
        assert!(matches!(
            f.driver.signal(&handle, "SIGHUP").await,
            Err(DriverError::NotFound { .. })
        ));
        f.driver.destroy(&handle).await.unwrap();
    });
}

fn recover_after_driver_is_dropped() {
    let f = Fixture::new();
    let root = f.root.path().to_path_buf();
    let (saved, pid) = block_on(async {
        let handle = f
            .driver
            .start(&f.task("web", sh("sleep 1; exit 7")))
            .await
            .unwrap();
        (serde_json::to_string(&handle).unwrap(), handle.pid.unwrap())
    });
    let Fixture { root: dir, driver } = f;
    drop(driver);
    assert!(task_is_running(pid), "task died with its driver");
    block_on(async {
        let handle: TaskHandle = serde_json::from_str(&saved).unwrap();
        let driver = ExecDriver::new(exec_config(&root.join("state")));
        driver.recover(&handle).await.expect("recover");
        assert_eq!(handle.pid, Some(pid));
        let result = wait_with_timeout(&driver, &handle).await;
        assert_eq!(result.exit_code, 7);
        // Once finished, recover still finds the recorded exit.
        driver.recover(&handle).await.expect("recover after exit");
        driver.destroy(&handle).await.unwrap();
        assert!(matches!(
            driver.recover(&handle).await,
            Err(DriverError::NotFound { .. })
        ));
    });
    drop(dir);
}

fn recover_of_a_vanished_task_is_not_found() {
    let f = Fixture::new();
    block_on(async {
        let handle = f.driver.start(&f.task("web", sh("exit 0"))).await.unwrap();
        wait_with_timeout(&f.driver, &handle).await;
        // As if the state dir were lost and the pids reused by others.
        std::fs::remove_dir_all(f.state_dir()).unwrap();
        let mut stale = handle.clone();
        stale.state["executor_pid"] = json!(1);
        assert!(matches!(
            f.driver.recover(&stale).await,
            Err(DriverError::NotFound { .. })
        ));
        let mut garbage = handle.clone();
        garbage.state = json!("nope");
        assert!(matches!(
            f.driver.recover(&garbage).await,
            Err(DriverError::NotFound { .. })
        ));
        f.driver.destroy(&handle).await.unwrap();
    });
}

/// `start-detached <task config json> <state dir>`: starts the task, prints
/// its handle and then lingers until killed, like an agent that dies.
fn start_detached(args: &[String]) -> i32 {
    let [cfg_path, state_dir] = args else {
        return 2;
    };
    let cfg: TaskConfig = serde_json::from_slice(&std::fs::read(cfg_path).unwrap()).unwrap();
    let driver = ExecDriver::new(exec_config(Path::new(state_dir)));
    let handle = block_on(driver.start(&cfg)).expect("start");
    let mut out = std::io::stdout();
    writeln!(out, "{}", serde_json::to_string(&handle).unwrap()).unwrap();
    out.flush().unwrap();
    std::thread::sleep(Duration::from_secs(60));
    0
}

fn task_survives_its_starter_being_killed() {
    let f = Fixture::new();
    let cfg = f.task("web", sh("sleep 1.5; echo survived; exit 5"));
    let cfg_path = f.root.path().join("task.json");
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let mut starter = Command::new(std::env::current_exe().unwrap())
        .arg("start-detached")
        .arg(&cfg_path)
        .arg(f.state_dir())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(starter.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let handle: TaskHandle = serde_json::from_str(&line).expect("handle from the starter");
    starter.kill().unwrap();
    starter.wait().unwrap();
    let pid = handle.pid.unwrap();
    assert!(task_is_running(pid), "task died with its starter");
    block_on(async {
        f.driver.recover(&handle).await.expect("recover");
        let result = wait_with_timeout(&f.driver, &handle).await;
        assert_eq!(result.exit_code, 5, "{result:?}");
        assert_eq!(f.stdout("web"), "survived\n");
        f.driver.destroy(&handle).await.unwrap();
    });
}

fn executor_death_is_reported() {
    let f = Fixture::new();
    block_on(async {
        let handle = f
            .driver
            .start(&f.task("web", sh("sleep 30")))
            .await
            .unwrap();
        let executor = handle.state["executor_pid"].as_u64().unwrap() as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(executor),
            nix::sys::signal::SIGKILL,
        )
        .unwrap();
        // The orphaned task still runs; stop kills it and wait reports the gap.
        f.driver
            .stop(&handle, Duration::from_secs(2))
            .await
            .expect("stop");
        let result = wait_with_timeout(&f.driver, &handle).await;
        let error = result.error.clone().expect("an error result");
        assert!(error.contains("executor died"), "{error}");
        assert!(!result.successful());
        f.driver.destroy(&handle).await.unwrap();
    });
}

fn chatty_task_logs_rotate_within_caps() {
    let f = Fixture::new();
    block_on(async {
        let mut cfg = f.task(
            "chatty",
            sh("i=0; while [ $i -lt 5000 ]; do echo \"line $i xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"; i=$((i+1)); done"),
        );
        cfg.log_max_bytes = 10_000;
        cfg.log_max_files = 3;
        let handle = f.driver.start(&cfg).await.unwrap();
        let result = wait_with_timeout(&f.driver, &handle).await;
        assert!(result.successful(), "{result:?}");
        let files = log_files(&f.log_dir(), "chatty", "stdout").unwrap();
        assert_eq!(files.len(), 3, "{files:?}");
        for file in &files {
            let len = std::fs::metadata(file).unwrap().len();
            assert!(len <= 10_000, "{} is {len} bytes", file.display());
        }
        let text = f.stdout("chatty");
        assert!(text.ends_with("line 4999 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"));
        assert!(!text.contains("line 0 "));
        assert!(text.len() > 20_000, "{}", text.len());
        let tail = read_logs(&f.log_dir(), "chatty", "stdout", Some(51)).unwrap();
        assert_eq!(
            tail,
            b"line 4999 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
        );
        f.driver.destroy(&handle).await.unwrap();
    });
}

fn stats_report_memory_and_cpu() {
    let f = Fixture::new();
    block_on(async {
        let handle = f
            .driver
            .start(&f.task("busy", sh("echo ready; while :; do :; done")))
            .await
            .unwrap();
        f.wait_for_output("busy", "ready").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stats = f.driver.stats(&handle).await.expect("stats");
        assert!(stats.memory_rss_bytes > 0, "{stats:?}");
        assert!(stats.cpu_total_ns >= 50_000_000, "{stats:?}");
        assert!(stats.timestamp > 0);
        f.driver
            .stop(&handle, Duration::from_secs(2))
            .await
            .unwrap();
        assert!(matches!(
            f.driver.stats(&handle).await,
            Err(DriverError::NotFound { .. })
        ));
        f.driver.destroy(&handle).await.unwrap();
    });
}

fn destroy_removes_state() {
    let f = Fixture::new();
    block_on(async {
        let cfg = f.task("web", sh("sleep 30"));
        let handle = f.driver.start(&cfg).await.unwrap();
        let run_dir = f.state_dir().join(&handle.task_id);
        assert!(run_dir.join("pid.json").exists());
        // Destroying a running task kills it first.
        f.driver.destroy(&handle).await.expect("destroy");
        assert!(!f.state_dir().join(&cfg.alloc_id).exists());
        assert!(!task_is_running(handle.pid.unwrap()));
        // The logs belong to the agent and stay.
        assert!(!log_files(&f.log_dir(), "web", "stdout").unwrap().is_empty());
    });
}

fn fingerprint_reports_cgroups() {
    let f = Fixture::new();
    block_on(async {
        let info = f.driver.fingerprint().await;
        assert!(info.detected && info.healthy, "{info:?}");
        let cgroups = info
            .attributes
            .get("exec.cgroups")
            .cloned()
            .unwrap_or_default();
        assert!(
            ["v1", "v2", "none"].contains(&cgroups.as_str()),
            "{cgroups}"
        );
        if std::env::var("EDGE_TEST_ROOT").as_deref() == Ok("1") {
            assert_ne!(cgroups, "none", "root should manage cgroups: {info:?}");
        }
        let mut cfg = exec_config(&f.state_dir());
        cfg.executor = vec!["/nonexistent/edge".to_string(), "executor".to_string()];
        let info = ExecDriver::new(cfg).fingerprint().await;
        assert!(!info.healthy, "{info:?}");
    });
}

fn cgroup_dir(handle: &TaskHandle, controller: &str) -> PathBuf {
    PathBuf::from(
        handle.state["cgroup"][controller]
            .as_str()
            .expect("task cgroup in handle"),
    )
}

fn root_cgroup_limits_are_applied() {
    if !root_enabled() {
        return;
    }
    let f = Fixture::new();
    block_on(async {
        let mut cfg = f.task("limited", json!({"command": "sleep", "args": ["30"]}));
        cfg.resources = Resources {
            cpu: 500,
            memory: 64,
        };
        let handle = f.driver.start(&cfg).await.unwrap();
        let v1 = handle.state["cgroup"]["version"] == "v1";
        let memory = cgroup_dir(&handle, "memory");
        let cpu = cgroup_dir(&handle, "cpu");
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap().trim().to_string();
        let procs = read(memory.join("cgroup.procs"));
        assert!(
            procs.lines().any(|l| l == handle.pid.unwrap().to_string()),
            "{procs}"
        );
        if v1 {
            assert_eq!(read(memory.join("memory.limit_in_bytes")), "67108864");
            assert_eq!(read(cpu.join("cpu.shares")), "512");
        } else {
            assert_eq!(read(memory.join("memory.max")), "67108864");
        }
        let stats = f.driver.stats(&handle).await.unwrap();
        assert!(stats.memory_rss_bytes > 0, "{stats:?}");
        f.driver
            .stop(&handle, Duration::from_secs(2))
            .await
            .unwrap();
        f.driver.destroy(&handle).await.unwrap();
        assert!(!memory.exists() && !cpu.exists());
    });
}

fn root_oom_kill_is_reported() {
    if !root_enabled() {
        return;
    }
    let f = Fixture::new();
    block_on(async {
        let mut cfg = f.task(
            "hungry",
            json!({"command": "python3", "args": [
                "-c", "x = bytearray(200*1024*1024); import time; time.sleep(5)"
            ]}),
        );
        cfg.resources.memory = 64;
        let handle = f.driver.start(&cfg).await.unwrap();
        let result = wait_with_timeout(&f.driver, &handle).await;
        assert!(result.oom_killed, "{result:?}");
        assert_eq!(result.signal, Some(9));
        assert!(!result.successful());
        let memory = cgroup_dir(&handle, "memory");
        assert!(memory.exists());
        f.driver.destroy(&handle).await.unwrap();
        assert!(!memory.exists(), "destroy left {}", memory.display());
    });
}

/// Nomad's default: a task that names no user runs as `nobody`, with
/// nobody's environment, and can write its own directory.
fn root_tasks_run_as_nobody_by_default() {
    if !root_enabled() {
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("a nobody user");
    let f = Fixture::new();
    block_on(async {
        let cfg = f.task(
            "who",
            sh("id -u; id -g; echo $USER; touch mine && echo wrote"),
        );
        let handle = f.driver.start(&cfg).await.expect("start");
        let result = wait_with_timeout(&f.driver, &handle).await;
        assert!(result.successful(), "{result:?} {}", f.stdout("who"));
        assert_eq!(
            f.stdout("who"),
            format!("{}\n{}\nnobody\nwrote\n", nobody.uid, nobody.gid)
        );
        f.driver.destroy(&handle).await.expect("destroy");
    });
}

fn root_a_root_task_needs_the_agent_option() {
    if !root_enabled() {
        return;
    }
    let f = Fixture::new();
    block_on(async {
        let cfg = f.task(
            "boss",
            json!({"command": "id", "args": ["-u"], "user": "root"}),
        );
        let err = f.driver.start(&cfg).await.expect_err("root refused");
        let text = err.to_string();
        assert!(text.contains("task boss"), "{text}");
        assert!(text.contains("--exec-allow-root"), "{text}");
        assert!(text.contains("config.user"), "{text}");
        let mut allowing = exec_config(&f.state_dir());
        allowing.allow_root = true;
        let driver = ExecDriver::new(allowing);
        let handle = driver.start(&cfg).await.expect("start with the option");
        let result = wait_with_timeout(&driver, &handle).await;
        assert!(result.successful(), "{result:?}");
        assert_eq!(f.stdout("boss"), "0\n");
        driver.destroy(&handle).await.expect("destroy");
    });
}
