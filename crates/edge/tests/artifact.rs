//! Task artifacts and script checks on a real `edge dev` with exec tasks:
//! an archive served over HTTP on 127.0.0.1 is checked against its
//! checksum and unpacked into the task before it starts; a script check
//! runs in the task and sees it. A wrong checksum fails the task's start
//! with the artifact and both digests in its event.

mod common;

use common::until;
use edge_api::QueryOptions;
use edge_spec::{ClientStatus, HealthStatus};
use std::path::Path;

/// Serves `body` to every request on 127.0.0.1 (any path).
async fn serve(body: Vec<u8>) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = l.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    port
}

/// `hello.txt` in a gzipped tar, made by the system's tar.
fn archive(dir: &Path) -> Vec<u8> {
    let src = dir.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("hello.txt"), "hello from the artifact\n").unwrap();
    let out = dir.join("app.tar.gz");
    let st = std::process::Command::new("tar")
        .arg("czf")
        .arg(&out)
        .arg("-C")
        .arg(&src)
        .arg("hello.txt")
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read(out).unwrap()
}

fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

fn job(id: &str, url: &str, sum: &str) -> String {
    format!(
        r#"job "{id}" {{
  group "g" {{
    restart {{
      attempts = 0
      mode     = "fail"
    }}
    service {{
      name = "{id}"
      check {{
        type     = "script"
        command  = "/bin/sh"
        args     = ["-c", "grep -q hello local/app/hello.txt"]
        interval = "1s"
        timeout  = "2s"
      }}
    }}
    task "app" {{
      driver = "exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "test -f local/app/hello.txt || exit 3; exec sleep 600"]
      }}
      artifact {{
        source      = "{url}"
        destination = "local/app"
        options {{
          checksum = "sha256:{sum}"
        }}
      }}
      resources {{
        cpu    = 20
        memory = 16
      }}
    }}
  }}
}}
"#
    )
}

#[tokio::test]
async fn an_artifact_is_unpacked_before_its_task_and_a_bad_checksum_fails_it() {
    let dir = tempfile::tempdir().unwrap();
    let tgz = archive(dir.path());
    let sum = sha256(&dir.path().join("app.tar.gz"));
    let url = format!("http://127.0.0.1:{}/dl/app.tar.gz", serve(tgz).await);
    let (_dev, addr, api) = common::dev(dir.path()).await;

    let file = dir.path().join("good.hcl");
    std::fs::write(&file, job("good", &url, &sum)).unwrap();
    let (ok, text) = common::cli(&addr, &["job", "run", "--detach", file.to_str().unwrap()]);
    assert!(ok, "{text}");
    let alloc = until(
        30,
        "the task runs and its script check passes",
        async || {
            let (a, _) = api.job_allocs("good", QueryOptions::default()).await.ok()?;
            let a = api.alloc(&a.into_iter().next()?.id).await.ok()?;
            (a.client_status == ClientStatus::Running
                && a.checks.get("good") == Some(&HealthStatus::Passing))
            .then_some(a)
        },
    )
    .await;
    let events: Vec<&str> = alloc.task_states["app"]
        .events
        .iter()
        .map(|e| e.kind.as_str())
        .collect();
    assert!(events.contains(&"Downloading Artifacts"), "{events:?}");

    let wrong = "0".repeat(64);
    let file = dir.path().join("bad.hcl");
    std::fs::write(&file, job("bad", &url, &wrong)).unwrap();
    let (ok, text) = common::cli(&addr, &["job", "run", "--detach", file.to_str().unwrap()]);
    assert!(ok, "{text}");
    let alloc = until(30, "the task fails on its checksum", async || {
        let (a, _) = api.job_allocs("bad", QueryOptions::default()).await.ok()?;
        let a = api.alloc(&a.into_iter().next()?.id).await.ok()?;
        (a.client_status == ClientStatus::Failed).then_some(a)
    })
    .await;
    let event = alloc.task_states["app"]
        .events
        .iter()
        .find(|e| e.kind == "Failed Artifact Download")
        .expect("an artifact event");
    assert_eq!(
        event.message,
        format!("artifact {url}: checksum mismatch, expected sha256:{wrong}, got sha256:{sum}")
    );
}
