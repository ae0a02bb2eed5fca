//! The binary as a command-line tool next to the daemons: `EDGE_ADDR`, the
//! CLI's API URL, never becomes an agent's own address, and output into a
//! pipe whose reader has gone ends quietly.

mod common;

use common::{EDGE, Proc, Server, until};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs edge with its standard output a pipe nobody reads any more, as in
/// `edge ... | head -c 10` once head has exited: the CLI must end killed by
/// SIGPIPE or with status 0, never panic.
fn assert_quiet_on_closed_stdout(args: &[&str], env: &[(&str, &str)]) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(EDGE)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "edge {args:?} panicked on a closed stdout:\n{stderr}"
    );
    assert!(
        out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
        "edge {args:?} on a closed stdout ended with {:?}:\n{stderr}",
        out.status
    );
}

#[test]
fn local_commands_end_quietly_on_a_closed_stdout() {
    for args in [
        &["--help"][..],
        &["job", "run", "--help"],
        &["version"],
        &["completions", "bash"],
    ] {
        assert_quiet_on_closed_stdout(args, &[]);
    }
}

#[tokio::test]
async fn api_commands_end_quietly_on_a_closed_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let addr = &server.addr;
    for args in [
        &["job", "status", "-o", "json"][..],
        &["node", "ls"],
        &["eval", "ls", "-o", "json"],
    ] {
        assert_quiet_on_closed_stdout(args, &[("EDGE_ADDR", addr)]);
    }
}

/// With `EDGE_ADDR` exported for the CLI, as the README says, an agent
/// registers with the advertise default (127.0.0.1) and keeps running: the
/// URL once became the node's address, and the agent then exited with
/// "is not an IP address".
#[tokio::test]
async fn agent_does_not_take_its_address_from_edge_addr() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let (addr, token) = (&server.addr, &server.token);
    let data = dir.path().join("agent");
    let mut agent = Proc::spawn_env(
        EDGE,
        dir.path(),
        "agent",
        &[
            "agent",
            "--server",
            addr,
            "--join-token",
            token,
            "--data-dir",
            data.to_str().unwrap(),
            "--name",
            "n1",
            "--dns-port",
            "0",
            "--no-lb",
        ],
        &[("EDGE_ADDR", addr)],
    );
    let api = &server.api;
    let node = until(20, "the agent's node", async || {
        if let Some(status) = agent.exited() {
            panic!("the agent exited with {status}:\n{}", agent.log());
        }
        api.nodes().await.ok()?.into_iter().find(|n| n.name == "n1")
    })
    .await;
    assert_eq!(node.address, "127.0.0.1");
    // The mesh starts after registration; it is what rejected the URL.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(agent.exited(), None, "the agent exited:\n{}", agent.log());
    assert!(!agent.log().contains("is not an IP address"));
}
