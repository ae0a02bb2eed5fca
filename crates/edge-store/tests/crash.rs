//! Committed batches survive `kill -9` of the process that committed them.

mod common;

use common::*;
use edge_store::{Batch, Store};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

const CHILD_ENV: &str = "EDGE_STORE_CRASH_CHILD_DB";

/// Only does something when started by `committed_batches_survive_kill_9`:
/// commits forever, printing each index once its commit resolved.
#[test]
fn crash_child_commit_loop() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::open(std::path::Path::new(&path)).unwrap();
        let mut out = std::io::stdout();
        loop {
            let n = store.index() + 1;
            let i = put(
                &store,
                Batch {
                    nodes: vec![node(&format!("n{n}"))],
                    ..Batch::default()
                },
            )
            .await;
            writeln!(out, "committed {i}").unwrap();
            out.flush().unwrap();
        }
    });
}

#[test]
fn committed_batches_survive_kill_9() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_commit_loop",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut last = 0u64;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(i) = line.strip_prefix("committed ") {
            last = i.parse().unwrap();
            if last >= 300 {
                break;
            }
        }
    }
    // `Child::kill` is SIGKILL on unix: no destructor, no clean close.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(last >= 300, "child stopped early at {last}");

    let store = Store::open(&path).unwrap();
    assert!(
        store.index() >= last,
        "index {} < acknowledged {last}",
        store.index()
    );
    store.read(|s| {
        assert_eq!(s.nodes.len() as u64, s.index);
        for n in 1..=last {
            assert!(s.nodes.contains_key(&format!("n{n}")), "node n{n} lost");
        }
    });
}
