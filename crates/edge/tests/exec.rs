//! `edge alloc exec` and `edge alloc logs -f` against the real binary: a
//! server and an agent as separate processes, commands run in an exec task
//! through the agent's tunnel, and the tunnel coming back after the server
//! is killed and started again.

mod common;

use common::{EDGE, Proc, Server, follow_logs, run_cli, until};
use edge_api::QueryOptions;
use edge_api::exec::{Decoder, EXEC_PROTOCOL, ExecQuery, Frame};
use edge_spec::ClientStatus;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A job whose task counts on stdout and then sleeps, with an env var and
/// a file in its working directory to find from an exec'd command.
fn job_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("counter.hcl");
    std::fs::write(
        &path,
        r#"job "counter" {
  type = "service"
  group "g" {
    task "count" {
      driver = "exec"
      config {
        command = "/bin/sh"
        args = ["-c", "echo marker > here.txt; i=0; while true; do echo line$i; i=$((i+1)); sleep 0.2; done"]
      }
      env { GREETING = "hello-from-env" }
    }
  }
}
"#,
    )
    .unwrap();
    path
}

fn agent(dir: &Path, srv: &Server) -> Proc {
    Proc::edge(
        dir,
        "agent",
        &[
            "agent",
            "--server",
            &srv.addr,
            "--join-token",
            &srv.token,
            "--data-dir",
            dir.join("agent").to_str().unwrap(),
            "--name",
            "a1",
        ],
    )
}

/// Every live process whose command line is exactly `argv`.
fn processes(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

/// One exec session spoken directly: each step waits until the output
/// holds its text, then sends its frames; answers the output and the exit
/// code.
async fn session(
    api: &edge_api::Client,
    alloc: &str,
    q: &ExecQuery,
    steps: Vec<(&str, Vec<Frame>)>,
) -> (Vec<u8>, i32) {
    let up = api
        .upgrade(
            &format!("/v1/client/allocation/{alloc}/exec"),
            EXEC_PROTOCOL,
            q,
        )
        .await
        .unwrap();
    let (mut rd, mut wr) = tokio::io::split(up);
    let mut steps = steps.into_iter().peekable();
    let mut dec = Decoder::default();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        while let Some((_, frames)) = steps.next_if(|(after, _)| text(&out).contains(after)) {
            for f in frames {
                wr.write_all(&f.encode()).await.unwrap();
                wr.flush().await.unwrap();
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(20), rd.read(&mut buf))
            .await
            .expect("exec output within 20 s")
            .unwrap();
        assert!(
            n > 0,
            "session closed before the exit frame: {}",
            text(&out)
        );
        dec.push(&buf[..n]);
        while let Some(f) = dec.next_frame().unwrap() {
            match f {
                Frame::Stdout(b) | Frame::Stderr(b) => out.extend(b),
                Frame::Exit(c) => return (out, c),
                _ => {}
            }
        }
    }
}

#[tokio::test]
async fn exec_and_logs_go_through_the_tunnel_and_survive_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = Server::start(dir.path()).await;
    let _agent = agent(dir.path(), &srv);
    let api = srv.api.clone();
    until(30, "a ready node", async || {
        (api.health().await.ok()?.nodes_ready == 1).then_some(())
    })
    .await;
    let addr = srv.addr.clone();
    let job = job_file(dir.path());
    let out = run_cli(&addr, &["job", "run", job.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let alloc = until(20, "a running allocation", async || {
        let (allocs, _) = api
            .job_allocs("counter", QueryOptions::default())
            .await
            .ok()?;
        allocs
            .into_iter()
            .find(|a| a.client_status == ClientStatus::Running)
    })
    .await;
    let id = alloc.id.clone();

    let out = run_cli(&addr, &["alloc", "exec", &id, "--", "echo", "hi"], None);
    assert_eq!(text(&out.stdout), "hi\n", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));

    let out = run_cli(
        &addr,
        &["alloc", "exec", &id, "count", "--", "sh", "-c", "exit 3"],
        None,
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));

    // The task's working directory and env.
    let out = run_cli(
        &addr,
        &[
            "alloc",
            "exec",
            &id,
            "--",
            "sh",
            "-c",
            "cat here.txt; echo $GREETING",
        ],
        None,
    );
    assert_eq!(
        text(&out.stdout),
        "marker\nhello-from-env\n",
        "{}",
        text(&out.stderr)
    );

    let out = run_cli(
        &addr,
        &["alloc", "exec", "-i", &id, "--", "cat"],
        Some(b"round\ntrip\n"),
    );
    assert_eq!(text(&out.stdout), "round\ntrip\n", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));

    let out = run_cli(&addr, &["alloc", "exec", "-t", &id, "--", "tty"], None);
    assert!(
        text(&out.stdout).starts_with("/dev/pts/"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(out.status.code(), Some(0));

    // A window size at start, then a resize before the command reads it.
    let (out, code) = session(
        &api,
        &id,
        &ExecQuery {
            task: None,
            command: r#"["sh","-c","stty size; read x; stty size"]"#.to_string(),
            tty: true,
            stdin: true,
            rows: Some(24),
            cols: Some(80),
        },
        vec![(
            "24 80",
            vec![
                Frame::Resize {
                    rows: 40,
                    cols: 100,
                },
                Frame::Stdin(b"\n".to_vec()),
            ],
        )],
    )
    .await;
    let out = text(&out);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("24 80\r\n"), "{out:?}");
    assert!(out.ends_with("40 100\r\n"), "{out:?}");

    // A command that is not there: a message, 127, and the task unharmed.
    let out = run_cli(
        &addr,
        &["alloc", "exec", &id, "--", "no-such-command"],
        None,
    );
    assert_eq!(out.status.code(), Some(127));
    assert!(
        text(&out.stderr).contains("no-such-command"),
        "{}",
        text(&out.stderr)
    );
    let a = api.alloc(&id).await.unwrap();
    assert_eq!(a.client_status, ClientStatus::Running);
    assert_eq!(a.task_states["count"].restarts, 0);

    // Bad input, named.
    let out = run_cli(&addr, &["alloc", "exec", &id, "nosuch", "--", "true"], None);
    assert!(
        text(&out.stderr).contains("404") && text(&out.stderr).contains("\"nosuch\""),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1));
    let out = run_cli(&addr, &["alloc", "exec", "ffffffff", "--", "true"], None);
    assert!(
        text(&out.stderr).contains("404") && text(&out.stderr).contains("ffffffff"),
        "{}",
        text(&out.stderr)
    );

    // A client that goes away takes its command along.
    let mut child = Command::new(EDGE)
        .args(["alloc", "exec", &id, "--", "sleep", "4242"])
        .env("EDGE_ADDR", &addr)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    until(10, "the exec'd sleep", async || {
        (!processes(&["sleep", "4242"]).is_empty()).then_some(())
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    until(10, "the exec'd sleep killed", async || {
        processes(&["sleep", "4242"]).is_empty().then_some(())
    })
    .await;

    // logs -f follows new lines.
    follow_logs(&addr, &id, &[]).await;

    // The server dies and comes back: the agent dials its tunnel again.
    srv.proc.kill9();
    let args: Vec<&str> = srv.args.iter().map(String::as_str).collect();
    srv.proc = Proc::edge(dir.path(), "server", &args);
    until(30, "exec through the new tunnel", async || {
        let out = run_cli(&addr, &["alloc", "exec", &id, "--", "echo", "back"], None);
        (text(&out.stdout) == "back\n").then_some(())
    })
    .await;
    follow_logs(&addr, &id, &[]).await;

    // A stopped allocation is refused with the reason.
    let out = run_cli(&addr, &["job", "stop", "counter"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    until(20, "the allocation stopped", async || {
        let a = api.alloc(&id).await.ok()?;
        (a.client_status != ClientStatus::Running).then_some(())
    })
    .await;
    let out = run_cli(&addr, &["alloc", "exec", &id, "--", "true"], None);
    assert!(
        text(&out.stderr).contains("409") && text(&out.stderr).contains("not running"),
        "{}",
        text(&out.stderr)
    );
}
