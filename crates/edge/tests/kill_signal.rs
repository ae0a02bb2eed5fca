//! Nomad's `kill_signal` on a real `edge dev` with an exec task: stopping
//! the job asks the task to stop with its own signal (a graceful SIGQUIT,
//! as nginx takes), not SIGTERM.

mod common;

use common::until;
use edge_api::QueryOptions;
use edge_spec::ClientStatus;

#[tokio::test]
async fn a_stopped_task_gets_its_kill_signal() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::writable_dir(dir.path());
    let (_dev, addr, api) = common::dev(dir.path()).await;

    let o = out.display();
    let job = dir.path().join("graceful.hcl");
    std::fs::write(
        &job,
        format!(
            r#"job "graceful" {{
  group "g" {{
    task "t" {{
      driver       = "exec"
      kill_signal  = "SIGQUIT"
      kill_timeout = "20s"
      config {{
        command = "/bin/sh"
        args    = ["-c", "trap 'echo quit > {o}/signal; exit 0' QUIT; trap 'echo term > {o}/signal; exit 1' TERM; echo up > {o}/up; while :; do sleep 0.1; done"]
      }}
      resources {{
        cpu    = 20
        memory = 16
      }}
    }}
  }}
}}
"#
        ),
    )
    .unwrap();
    let (ok, text) = common::cli(&addr, &["job", "run", "--detach", job.to_str().unwrap()]);
    assert!(ok, "{text}");
    let read = |name: &str| std::fs::read_to_string(out.join(name)).ok();
    until(30, "the task up", async || read("up").map(drop)).await;

    let (ok, text) = common::cli(&addr, &["job", "stop", "graceful"]);
    assert!(ok, "{text}");
    until(30, "the task's signal", async || read("signal").map(drop)).await;
    assert_eq!(read("signal").unwrap().trim(), "quit");
    let alloc = until(30, "the allocation done", async || {
        let (allocs, _) = api
            .job_allocs("graceful", QueryOptions::default())
            .await
            .ok()?;
        let a = api.alloc(&allocs.first()?.id).await.ok()?;
        (a.client_status == ClientStatus::Complete).then_some(a)
    })
    .await;
    let events: Vec<String> = alloc.task_states["t"]
        .events
        .iter()
        .map(|e| e.message.clone())
        .collect();
    assert!(
        events.iter().any(|m| m.contains("sent SIGQUIT")),
        "{events:?}"
    );
}
