//! Data into tasks on a real `edge dev` with exec tasks. Lifecycle hooks:
//! prestart tasks finish and sidecars run before the main task starts,
//! poststart runs once it does, poststop runs after a stop; a failed
//! prestart keeps the main task from ever starting. Env files: read beside
//! the job file by the CLI, under the task's own `env`. Volumes: local
//! ones keep their data across stops, runs and agent kills; host ones are
//! placed on and mounted read-only when asked. Configs and secrets: files
//! (secrets on a tmpfs, with their mode) and env vars in the task, the
//! secret's plaintext nowhere else.

mod common;

use common::{Proc, dev, dev_logging, free_port, until, writable_dir};
use edge_api::{Client, QueryOptions};
use edge_spec::{ClientStatus, TaskStatus};
use std::path::Path;

fn cli(addr: &str, args: &[&str]) -> (bool, String) {
    common::cli(addr, args)
}

async fn dev_with(dir: &Path, port: u16, extra: &[&str]) -> (Proc, String, Client) {
    dev_logging(dir, port, extra, "info").await
}

fn sh_task(name: &str, lifecycle: &str, script: &str) -> String {
    format!(
        r#"
    task "{name}" {{
      driver = "exec"
      {lifecycle}
      config {{
        command = "/bin/sh"
        args    = ["-c", "{script}"]
      }}
      resources {{
        cpu    = 20
        memory = 16
      }}
    }}"#
    )
}

#[tokio::test]
async fn hooks_run_in_order_around_the_main_task() {
    let dir = tempfile::tempdir().unwrap();
    let out = writable_dir(dir.path());
    let o = out.display();
    let (_dev, addr, api) = dev(dir.path()).await;
    let tasks = [
        sh_task(
            "init",
            "lifecycle { hook = \"prestart\" }",
            &format!("sleep 0.3; echo done > {o}/init"),
        ),
        sh_task(
            "side",
            "lifecycle {\n hook = \"prestart\"\n sidecar = true\n }",
            &format!("echo up > {o}/side; exec sleep 600"),
        ),
        // The main task refuses to run unless both prestart tasks did.
        sh_task(
            "app",
            "",
            &format!(
                "test -f {o}/init && test -f {o}/side || exit 3; echo ran > {o}/app; exec sleep 600"
            ),
        ),
        sh_task(
            "after",
            "lifecycle { hook = \"poststart\" }",
            &format!("test -f {o}/app && echo seen > {o}/after"),
        ),
        sh_task(
            "cleanup",
            "lifecycle { hook = \"poststop\" }",
            &format!("echo bye > {o}/cleanup"),
        ),
    ];
    let job = dir.path().join("hooks.hcl");
    std::fs::write(
        &job,
        format!(
            "job \"hooks\" {{\n  group \"g\" {{\n    restart {{\n      attempts = 0\n      mode = \"fail\"\n    }}\n{}\n  }}\n}}\n",
            tasks.join("\n")
        ),
    )
    .unwrap();
    let (ok, text) = cli(&addr, &["job", "run", "--detach", job.to_str().unwrap()]);
    assert!(ok, "{text}");
    let alloc = until(30, "the main task and the poststart hook ran", async || {
        let (a, _) = api
            .job_allocs("hooks", QueryOptions::default())
            .await
            .ok()?;
        let a = a.into_iter().next()?;
        (a.client_status == ClientStatus::Running && out.join("after").exists()).then_some(a)
    })
    .await;
    let st = |n: &str| alloc.task_states[n].clone();
    assert_eq!(st("init").state, TaskStatus::Dead);
    assert!(!st("init").failed, "{:?}", st("init"));
    assert_eq!(st("side").state, TaskStatus::Running);
    assert_eq!(st("app").state, TaskStatus::Running);
    assert_eq!(st("cleanup").state, TaskStatus::Pending);
    assert!(!out.join("cleanup").exists());
    // The sidecar was up before the main task, which started once: no restart.
    assert_eq!(st("app").restarts, 0);
    assert!(st("side").started_at <= st("app").started_at);

    let (ok, text) = cli(&addr, &["job", "stop", "hooks"]);
    assert!(ok, "{text}");
    let alloc = until(
        30,
        "the allocation completes after its poststop",
        async || {
            let (a, _) = api
                .job_allocs("hooks", QueryOptions::default())
                .await
                .ok()?;
            let a = a.into_iter().next()?;
            (a.client_status == ClientStatus::Complete).then_some(a)
        },
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(out.join("cleanup")).unwrap().trim(),
        "bye"
    );
    for (name, t) in &alloc.task_states {
        assert_eq!(t.state, TaskStatus::Dead, "{name}");
        assert!(!t.failed, "{name}: {t:?}");
    }
}

#[tokio::test]
async fn a_failed_prestart_keeps_the_main_task_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    let out = writable_dir(dir.path());
    let o = out.display();
    let (_dev, addr, api) = dev(dir.path()).await;
    let tasks = [
        sh_task("migrate", "lifecycle { hook = \"prestart\" }", "exit 7"),
        sh_task("app", "", &format!("echo ran > {o}/app; exec sleep 600")),
    ];
    let job = dir.path().join("fails.hcl");
    std::fs::write(
        &job,
        format!(
            "job \"fails\" {{\n  type = \"batch\"\n  group \"g\" {{\n    restart {{\n      attempts = 0\n      mode = \"fail\"\n    }}\n    reschedule {{\n      attempts = 0\n      unlimited = false\n    }}\n{}\n  }}\n}}\n",
            tasks.join("\n")
        ),
    )
    .unwrap();
    let (ok, text) = cli(&addr, &["job", "run", "--detach", job.to_str().unwrap()]);
    assert!(ok, "{text}");
    let alloc = until(30, "the allocation fails", async || {
        let (a, _) = api
            .job_allocs("fails", QueryOptions::default())
            .await
            .ok()?;
        let a = a.into_iter().next()?;
        (a.client_status == ClientStatus::Failed
            && a.task_states.values().all(|t| t.state == TaskStatus::Dead))
        .then_some(a)
    })
    .await;
    let migrate = &alloc.task_states["migrate"];
    assert!(migrate.failed);
    assert_eq!(migrate.exit_code, Some(7));
    let app = &alloc.task_states["app"];
    assert!(app.pid.is_none() && app.started_at == 0, "{app:?}");
    let why = app.events.last().unwrap();
    assert_eq!(why.kind, "Not Started");
    assert!(why.message.contains("\"migrate\""), "{why:?}");
    assert!(!out.join("app").exists());
}

#[tokio::test]
async fn env_files_are_read_beside_the_job_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = writable_dir(dir.path());
    let o = out.display();
    let (_dev, addr, api) = dev(dir.path()).await;
    let jobs = dir.path().join("jobs");
    std::fs::create_dir(&jobs).unwrap();
    std::fs::write(
        jobs.join("app.env"),
        "# settings\nGREETING=\"hello there\"\nMODE=from-file\nPORTREF=${EDGE_ALLOC_INDEX}\n",
    )
    .unwrap();
    let task = sh_task(
        "app",
        "env_file = \"app.env\"\n      env {\n        MODE = \"from-env\"\n      }",
        &format!("echo \\\"$GREETING|$MODE|$PORTREF\\\" > {o}/env; exec sleep 600"),
    );
    let job = jobs.join("envs.hcl");
    std::fs::write(
        &job,
        format!("job \"envs\" {{\n  group \"g\" {{\n{task}\n  }}\n}}\n"),
    )
    .unwrap();
    // Run from elsewhere: the name resolves beside the job file.
    let (ok, text) = cli(&addr, &["job", "run", "--detach", job.to_str().unwrap()]);
    assert!(ok, "{text}");
    until(30, "the task wrote its environment", async || {
        let got = std::fs::read_to_string(out.join("env")).ok()?;
        got.ends_with('\n').then_some(())
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(out.join("env")).unwrap(),
        "hello there|from-env|0\n"
    );
    let stored = api.job("envs").await.unwrap();
    assert_eq!(stored.groups[0].tasks[0].env["GREETING"], "hello there");

    std::fs::write(
        &job,
        "job \"envs\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"exec\"\n      env_file = [\"app.env\", \"missing.env\"]\n      config {\n        command = \"/bin/true\"\n      }\n    }\n  }\n}\n",
    )
    .unwrap();
    let (ok, text) = cli(&addr, &["job", "run", "--detach", job.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        text.contains("envs.hcl:5:") && text.contains("missing.env"),
        "names the line and the file: {text}"
    );
    let (ok, text) = cli(&addr, &["job", "stop", "envs"]);
    assert!(ok, "{text}");
    until(30, "the task stopped", async || {
        let (a, _) = api.job_allocs("envs", QueryOptions::default()).await.ok()?;
        a.iter()
            .all(|a| a.client_status == ClientStatus::Complete)
            .then_some(())
    })
    .await;
}

async fn running_alloc(api: &Client, job: &str) -> edge_api::AllocListStub {
    until(30, "a running allocation", async || {
        let (a, _) = api.job_allocs(job, QueryOptions::default()).await.ok()?;
        a.into_iter().find(|a| {
            a.client_status == ClientStatus::Running
                && a.desired_status == edge_spec::DesiredStatus::Run
        })
    })
    .await
}

async fn all_complete(api: &Client, job: &str) {
    until(30, "every allocation done", async || {
        let (a, _) = api.job_allocs(job, QueryOptions::default()).await.ok()?;
        a.iter()
            .all(|a| a.client_status.is_terminal())
            .then_some(())
    })
    .await;
}

/// Root only (exec tasks mount volumes in their own mount namespace).
#[tokio::test]
async fn a_local_volume_keeps_its_data_and_a_host_volume_is_read_only() {
    if !common::gated("EDGE_TEST_ROOT") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pics = dir.path().join("pics");
    std::fs::create_dir(&pics).unwrap();
    std::fs::write(pics.join("hello"), "from the host\n").unwrap();
    let mnt = dir.path().join("mnt");
    let port = free_port();
    let host_volume = format!("pics={}:ro", pics.display());
    let extra = ["--host-volume", host_volume.as_str()];
    let (mut dev, addr, api) = dev_with(dir.path(), port, &extra).await;
    let data = format!("{}/data", mnt.display());
    let pics_in = format!("{}/pics", mnt.display());
    // Counts its runs in the volume, copies the host file, and records
    // whether writing to the read-only volume failed.
    let script = format!(
        "n=$(cat {data}/count 2>/dev/null || echo 0); echo $((n+1)) > {data}/count; cat {pics_in}/hello > {data}/seen; touch {pics_in}/x 2>/dev/null && echo wrote > {data}/ro || echo refused > {data}/ro; exec sleep 600"
    );
    let job = dir.path().join("db.hcl");
    std::fs::write(
        &job,
        format!(
            r#"job "db" {{
  group "g" {{
    volume "db" {{
      type = "local"
    }}
    volume "pics" {{
      type      = "host"
      source    = "pics"
      read_only = true
    }}
    task "db" {{
      driver = "exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "{script}"]
      }}
      volume_mount {{
        volume      = "db"
        destination = "{data}"
      }}
      volume_mount {{
        volume      = "pics"
        destination = "{pics_in}"
        read_only   = true
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
    let run = |addr: &str| cli(addr, &["job", "run", "--detach", job.to_str().unwrap()]);
    let (ok, text) = run(&addr);
    assert!(ok, "{text}");
    running_alloc(&api, "db").await;
    let vols = api.volumes().await.unwrap();
    assert_eq!(vols.len(), 1, "{vols:?}");
    let vol = vols[0].clone();
    assert_eq!(vol.display_name(), "db.g.db[0]");
    let on_node = dir.path().join("data/agent/volumes/default/db/g/db-0");
    assert!(on_node.is_dir());
    let read = |f: &str| std::fs::read_to_string(on_node.join(f)).unwrap_or_default();
    until(20, "the task wrote to its volume", async || {
        (read("ro").trim() == "refused").then_some(())
    })
    .await;
    assert_eq!(read("count").trim(), "1");
    assert_eq!(read("seen"), "from the host\n");
    assert!(!pics.join("x").exists(), "the read-only volume was written");
    // The mounts live in the task's own namespace: the host's mount
    // points stay empty.
    assert!(std::fs::read_dir(&data).unwrap().next().is_none());

    let (ok, text) = cli(&addr, &["volume", "rm", &vol.id[..8]]);
    assert!(!ok && text.contains("in use"), "{text}");

    // Stop and run again: the data is still there.
    let (ok, text) = cli(&addr, &["job", "stop", "db"]);
    assert!(ok, "{text}");
    all_complete(&api, "db").await;
    let (ok, text) = run(&addr);
    assert!(ok, "{text}");
    running_alloc(&api, "db").await;
    until(20, "the second run counted", async || {
        (read("count").trim() == "2").then_some(())
    })
    .await;
    // A job update that replaces the copy: the new one finds the data.
    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(
        &job,
        text.replace(
            "driver = \"exec\"",
            "driver = \"exec\"\n      env {\n        VERSION = \"2\"\n      }",
        ),
    )
    .unwrap();
    let (ok, text) = run(&addr);
    assert!(ok, "{text}");
    until(30, "the updated copy counted", async || {
        (read("count").trim() == "3").then_some(())
    })
    .await;

    // The agent killed with -9 and started again: the task is re-attached,
    // not started a third time, and the data is untouched.
    dev.kill9();
    let (_dev, addr, api) = dev_with(dir.path(), port, &extra).await;
    let a = running_alloc(&api, "db").await;
    let task = &a.task_states["db"];
    until(20, "the task re-attached", async || {
        let a = api.alloc(&a.id).await.ok()?;
        a.task_states["db"]
            .events
            .iter()
            .any(|e| e.kind == "Recovered")
            .then_some(())
    })
    .await;
    assert_eq!(task.restarts, 0);
    assert_eq!(read("count").trim(), "3");

    let (ok, text) = cli(&addr, &["job", "stop", "db"]);
    assert!(ok, "{text}");
    all_complete(&api, "db").await;
    let (ok, text) = cli(&addr, &["volume", "rm", &vol.id[..8]]);
    assert!(ok, "{text}");
    assert!(text.contains("db.g.db[0]"), "{text}");
    assert!(!on_node.exists());
    assert!(api.volumes().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_missing_host_volume_is_a_placement_failure_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_dev, addr, api) = dev(dir.path()).await;
    let job = dir.path().join("pics.hcl");
    std::fs::write(
        &job,
        "job \"pics\" {\n  group \"g\" {\n    volume \"p\" {\n      type = \"host\"\n      source = \"photos\"\n    }\n    task \"t\" {\n      driver = \"exec\"\n      config {\n        command = \"/bin/true\"\n      }\n      volume_mount {\n        volume = \"p\"\n        destination = \"/photos\"\n      }\n    }\n  }\n}\n",
    )
    .unwrap();
    let (_, text) = cli(&addr, &["job", "run", job.to_str().unwrap()]);
    assert!(
        text.contains("missing writable host volume \"photos\""),
        "{text}"
    );
    let evals = api.job_evals("pics").await.unwrap();
    assert!(evals.iter().any(|e| {
        e.failed_tg_allocs.get("g").is_some_and(|m| {
            m.constraint_filtered
                .contains_key("missing writable host volume \"photos\"")
        })
    }));
}

/// Every file under `dir` (symlinks not followed) whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file()
                && std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                out.push(p);
            }
        }
    }
    out
}

/// Root only (secrets live on a tmpfs the agent mounts).
#[tokio::test]
async fn configs_and_secrets_reach_the_task_and_the_plaintext_nowhere_else() {
    if !common::gated("EDGE_TEST_ROOT") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = writable_dir(dir.path());
    let o = out.display();
    let port = free_port();
    let (mut dev, addr, api) = dev_logging(dir.path(), port, &[], "debug").await;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let plain = format!("PLAINTEXT-{nanos}");
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, &plain).unwrap();
    let (ok, text) = cli(
        &addr,
        &[
            "secret",
            "put",
            "tls",
            &format!("cert=@{}", cert.display()),
            "other=x",
        ],
    );
    assert!(ok, "{text}");
    let (ok, text) = cli(&addr, &["config", "put", "httpd", "conf=listen 8080"]);
    assert!(ok, "{text}");

    // A job asking for a secret that is not there is refused, naming it.
    let job = dir.path().join("web.hcl");
    let write_job = |secret: &str| {
        std::fs::write(
            &job,
            format!(
                r#"job "web" {{
  group "g" {{
    task "web" {{
      driver = "exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "stat -c %a secrets/cert.pem > {o}/mode; cat secrets/cert.pem > {o}/secret; cat local/httpd.conf > {o}/config; echo $CONF > {o}/env; exec sleep 600"]
      }}
      secret "{secret}" {{
        key         = "cert"
        destination = "secrets/cert.pem"
      }}
      config "httpd" {{
        destination = "local/httpd.conf"
        env         = "CONF"
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
    };
    write_job("nope");
    let (ok, text) = cli(&addr, &["job", "run", "--detach", job.to_str().unwrap()]);
    assert!(!ok && text.contains("secret \"nope\""), "{text}");
    assert!(api.job("web").await.is_err(), "nothing stored");

    write_job("tls");
    let (ok, text) = cli(&addr, &["job", "run", "--detach", job.to_str().unwrap()]);
    assert!(ok, "{text}");
    let a = running_alloc(&api, "web").await;
    until(20, "the task read its files", async || {
        std::fs::read_to_string(out.join("env"))
            .ok()
            .filter(|s| s.ends_with('\n'))
    })
    .await;
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    assert_eq!(read("secret"), plain);
    assert_eq!(read("mode").trim(), "400");
    assert_eq!(read("config"), "listen 8080");
    assert_eq!(read("env").trim(), "listen 8080");
    let secrets = dir
        .path()
        .join("data/agent/allocs")
        .join(&a.id)
        .join("web/secrets");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mountinfo.contains(&format!(" {} ", secrets.display())) && mountinfo.contains("tmpfs"),
        "the secrets dir is a tmpfs"
    );

    // Nowhere else: the API, the event stream, the logs, the agent's and
    // the server's files (SQLite and WAL included), the tmpfs aside.
    for path in [
        "/v1/job/web",
        "/v1/secret/tls",
        "/v1/secrets",
        "/v1/allocations",
    ] {
        let body = reqwest::get(format!("{addr}{path}"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!body.contains(&plain), "{path} shows the secret");
    }
    let events = reqwest::Client::new()
        .get(format!("{addr}/v1/event/stream?index=0"))
        .timeout(std::time::Duration::from_secs(2))
        .send()
        .await
        .unwrap();
    let mut stream = events.bytes_stream();
    let mut seen = Vec::new();
    use futures_util::StreamExt;
    while let Ok(Some(Ok(chunk))) =
        tokio::time::timeout(std::time::Duration::from_millis(500), stream.next()).await
    {
        seen.extend_from_slice(&chunk);
    }
    assert!(!seen.is_empty(), "the event stream answered");
    assert!(
        !String::from_utf8_lossy(&seen).contains(&plain),
        "an event shows the secret"
    );
    let (ok, text) = cli(&addr, &["job", "inspect", "web"]);
    assert!(ok && !text.contains(&plain), "{text}");
    let leaks: Vec<_> = files_holding(&dir.path().join("data"), plain.as_bytes())
        .into_iter()
        .filter(|p| !p.starts_with(&secrets))
        .collect();
    assert!(leaks.is_empty(), "plaintext in {leaks:?}");
    assert!(
        !dev.log().contains(&plain),
        "the debug log shows the secret"
    );

    // Only the node running an allocation that asks for it gets it.
    let token = std::fs::read_to_string(dir.path().join("data/server/token")).unwrap();
    let secret = edge_api::tls::JoinToken::parse(token.trim())
        .unwrap()
        .secret;
    let node = api.alloc(&a.id).await.unwrap().node_id;
    let agent = Client::new(&addr, Some(secret)).unwrap();
    let got = agent.alloc_data(&node, &a.id).await.unwrap();
    assert_eq!(got.secrets["tls"].data["cert"], plain);
    let refused = agent.alloc_data(&node, "no-such-alloc").await.unwrap_err();
    assert!(
        refused.to_string().contains("does not run on node"),
        "{refused}"
    );

    // Rotation: every secret opens under the new key, the old one is gone.
    let (ok, text) = cli(&addr, &["operator", "keyring", "rotate"]);
    assert!(ok && text.contains("1 secrets sealed again"), "{text}");
    let ring = std::fs::read_to_string(dir.path().join("data/server/keyring.json")).unwrap();
    assert_eq!(ring.matches("\"id\"").count(), 1, "{ring}");
    let got = agent.alloc_data(&node, &a.id).await.unwrap();
    assert_eq!(got.secrets["tls"].data["cert"], plain);
    // And after a restart of the whole dev node, from disk.
    dev.kill9();
    let (_dev, addr, api) = dev_logging(dir.path(), port, &[], "debug").await;
    let got = agent.alloc_data(&node, &a.id).await.unwrap();
    assert_eq!(got.secrets["tls"].data["cert"], plain);

    let (ok, text) = cli(&addr, &["secret", "rm", "tls"]);
    assert!(!ok && text.contains("used by job web"), "{text}");
    let (ok, text) = cli(&addr, &["job", "stop", "web"]);
    assert!(ok, "{text}");
    all_complete(&api, "web").await;
    until(20, "the tmpfs is unmounted", async || {
        let m = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        (!m.contains(&format!(" {} ", secrets.display()))).then_some(())
    })
    .await;
    let (ok, text) = cli(&addr, &["secret", "rm", "tls"]);
    assert!(ok, "{text}");
}

#[tokio::test]
async fn a_template_renders_the_catalog_again_and_restarts_or_signals_its_task() {
    let dir = tempfile::tempdir().unwrap();
    let out = writable_dir(dir.path());
    let o = out.display();
    let (_dev, addr, api) = dev(dir.path()).await;
    let db = dir.path().join("db.hcl");
    let write_db = |count: u32| {
        std::fs::write(
            &db,
            format!(
                "job \"db\" {{\n  group \"db\" {{\n    count = {count}\n    network {{\n      port \"pg\" {{}}\n    }}\n    service {{\n      name = \"db\"\n      port = \"pg\"\n    }}\n{}\n  }}\n}}\n",
                sh_task("pg", "", "exec sleep 600")
            ),
        )
        .unwrap();
    };
    write_db(1);
    let (ok, text) = cli(&addr, &["job", "run", "--detach", db.to_str().unwrap()]);
    assert!(ok, "{text}");
    running_alloc(&api, "db").await;

    let list = r#"{% for s in service(\"db\") %}{{ s.Address }}:{{ s.Port }}\n{% endfor %}"#;
    let web = dir.path().join("web.hcl");
    std::fs::write(
        &web,
        format!(
            r#"job "web" {{
  group "web" {{
    task "restarter" {{
      driver = "exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "cat local/db.txt >> {o}/restarts; echo --- >> {o}/restarts; exec sleep 600"]
      }}
      template {{
        data        = "{list}"
        destination = "local/db.txt"
      }}
      resources {{
        cpu    = 20
        memory = 16
      }}
    }}
    task "hupper" {{
      driver = "exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "trap 'cat local/db.txt >> {o}/hups; echo --- >> {o}/hups' HUP; echo up > {o}/hupper; while true; do sleep 0.2; done"]
      }}
      template {{
        data          = "{list}"
        destination   = "local/db.txt"
        change_mode   = "signal"
        change_signal = "SIGHUP"
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
    let (ok, text) = cli(&addr, &["job", "run", "--detach", web.to_str().unwrap()]);
    assert!(ok, "{text}");
    let blocks = |f: &str| -> Vec<Vec<String>> {
        std::fs::read_to_string(out.join(f))
            .unwrap_or_default()
            .split("---\n")
            .filter(|b| !b.is_empty())
            .map(|b| b.lines().map(String::from).collect())
            .collect()
    };
    until(30, "the first render", async || {
        (blocks("restarts").len() == 1 && out.join("hupper").exists()).then_some(())
    })
    .await;
    assert_eq!(blocks("restarts")[0].len(), 1, "one db instance");
    assert!(blocks("restarts")[0][0].starts_with("127.0.0.1:"));

    // A second instance of db: both files are rendered again; one task is
    // restarted, the other signalled.
    write_db(2);
    let (ok, text) = cli(&addr, &["job", "run", "--detach", db.to_str().unwrap()]);
    assert!(ok, "{text}");
    until(30, "the restart with two instances", async || {
        let b = blocks("restarts");
        (b.len() == 2 && b[1].len() == 2).then_some(())
    })
    .await;
    until(30, "the signal with two instances", async || {
        let b = blocks("hups");
        b.last().is_some_and(|l| l.len() == 2).then_some(())
    })
    .await;
    let a = running_alloc(&api, "web").await;
    let a = api.alloc(&a.id).await.unwrap();
    let restarter = &a.task_states["restarter"];
    assert!(
        restarter
            .events
            .iter()
            .any(|e| e.kind == "Restart Signaled"
                && e.message.contains("template local/db.txt changed")),
        "{restarter:?}"
    );
    assert_eq!(
        a.task_states["hupper"].restarts, 0,
        "signalled, not restarted"
    );

    for job in ["web", "db"] {
        let (ok, text) = cli(&addr, &["job", "stop", job]);
        assert!(ok, "{text}");
        all_complete(&api, job).await;
    }
}

/// Root only (the load balancer's keys live on a tmpfs).
#[tokio::test]
async fn a_published_service_terminates_tls_with_a_secret() {
    if !common::gated("EDGE_TEST_ROOT") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = writable_dir(dir.path());
    std::fs::write(out.join("index.html"), "hello over tls\n").unwrap();
    let (_dev, addr, api) = dev(dir.path()).await;
    let ck = rcgen::generate_simple_self_signed(vec!["web.example".to_string()]).unwrap();
    let key_pem = ck.signing_key.serialize_pem();
    std::fs::write(dir.path().join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), &key_pem).unwrap();
    let lb = free_port();
    let job = dir.path().join("site.hcl");
    let write_job = |secret: &str| {
        std::fs::write(
            &job,
            format!(
                r#"job "site" {{
  group "g" {{
    network {{
      port "http" {{}}
    }}
    service {{
      name = "site"
      port = "http"
      publish {{
        port     = {lb}
        protocol = "http"
        hosts    = ["web.example"]
        tls {{
          secret = "{secret}"
        }}
      }}
    }}
    task "web" {{
      driver = "exec"
      config {{
        command = "/usr/bin/python3"
        args    = ["-m", "http.server", "--bind", "127.0.0.1", "--directory", "{}", "${{EDGE_PORT_http}}"]
      }}
      resources {{
        cpu    = 50
        memory = 64
      }}
    }}
  }}
}}
"#,
                out.display()
            ),
        )
        .unwrap();
    };
    // The secret must exist, with both keys.
    write_job("site");
    let (ok, text) = cli(&addr, &["job", "run", "--detach", job.to_str().unwrap()]);
    assert!(!ok && text.contains("TLS secret \"site\""), "{text}");
    let (ok, text) = cli(&addr, &["secret", "put", "site", "cert=@"]);
    assert!(!ok, "an empty file name is refused: {text}");
    let cert_arg = format!("cert=@{}", dir.path().join("cert.pem").display());
    let key_arg = format!("key=@{}", dir.path().join("key.pem").display());
    let (ok, text) = cli(&addr, &["secret", "put", "site", &cert_arg]);
    assert!(ok, "{text}");
    let (ok, text) = cli(&addr, &["job", "run", "--detach", job.to_str().unwrap()]);
    assert!(!ok && text.contains("no key key"), "{text}");
    let (ok, text) = cli(&addr, &["secret", "put", "site", &cert_arg, &key_arg]);
    assert!(ok, "{text}");
    let (ok, text) = cli(&addr, &["job", "run", "--detach", job.to_str().unwrap()]);
    assert!(ok, "{text}");
    running_alloc(&api, "site").await;

    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).unwrap())
        .resolve("web.example", ([127, 0, 0, 1], lb).into())
        .timeout(std::time::Duration::from_secs(2))
        .build()
        .unwrap();
    let body = until(30, "the load balancer answers over TLS", async || {
        let r = https
            .get(format!("https://web.example:{lb}/index.html"))
            .send()
            .await
            .ok()?;
        r.status().is_success().then_some(())?;
        r.text().await.ok()
    })
    .await;
    assert_eq!(body, "hello over tls\n");
    let tls_dir = dir.path().join("data/agent/lb-tls");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mountinfo.contains(&format!(" {} ", tls_dir.display())),
        "a tmpfs"
    );
    let leaks: Vec<_> = files_holding(&dir.path().join("data"), key_pem.as_bytes())
        .into_iter()
        .filter(|p| !p.starts_with(&tls_dir))
        .collect();
    assert!(leaks.is_empty(), "the private key in {leaks:?}");

    let (ok, text) = cli(&addr, &["job", "stop", "site"]);
    assert!(ok, "{text}");
    all_complete(&api, "site").await;
    let _ = nix_umount(&tls_dir);
}

/// The test's tmpfs goes with its directory.
fn nix_umount(dir: &Path) -> std::io::Result<std::process::ExitStatus> {
    std::process::Command::new("umount")
        .arg("-l")
        .arg(dir)
        .status()
}

/// Root only (a sized volume is a loop-mounted file system).
#[tokio::test]
async fn a_sized_local_volume_is_full_at_its_size() {
    if !common::gated("EDGE_TEST_ROOT") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = writable_dir(dir.path());
    let o = out.display();
    let (_dev, addr, api) = dev(dir.path()).await;
    let mnt = dir.path().join("small");
    let m = mnt.display();
    let job = dir.path().join("small.hcl");
    let write_job = |size: &str| {
        std::fs::write(
            &job,
            format!(
                r#"job "small" {{
  group "g" {{
    volume "s" {{
      type = "local"
      size = "{size}"
    }}
    task "t" {{
      driver = "exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "dd if=/dev/zero of={m}/f bs=1M count=32 2>/dev/null; echo $? > {o}/rc; df -k {m} | tail -1 > {o}/df; exec sleep 600"]
      }}
      volume_mount {{
        volume      = "s"
        destination = "{m}"
      }}
      resources {{
        cpu    = 20
        memory = 32
      }}
    }}
  }}
}}
"#
            ),
        )
        .unwrap();
    };
    write_job("16MiB");
    let (ok, text) = cli(&addr, &["job", "run", "--detach", job.to_str().unwrap()]);
    assert!(ok, "{text}");
    until(30, "the task filled its volume", async || {
        std::fs::read_to_string(out.join("df"))
            .ok()
            .filter(|s| s.ends_with('\n'))
    })
    .await;
    assert_ne!(
        std::fs::read_to_string(out.join("rc")).unwrap().trim(),
        "0",
        "32MiB do not fit"
    );
    let df = std::fs::read_to_string(out.join("df")).unwrap();
    let total_kib: u64 = df.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        (10_000..=16_384).contains(&total_kib),
        "a 16MiB file system: {df}"
    );
    let img = dir
        .path()
        .join("data/agent/volumes/default/small/g/s-0.img");
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 16 << 20);

    // Another size for the same volume is refused, naming both.
    let (ok, text) = cli(&addr, &["job", "stop", "small"]);
    assert!(ok, "{text}");
    all_complete(&api, "small").await;
    write_job("32MiB");
    let (ok, text) = cli(&addr, &["job", "run", "--detach", job.to_str().unwrap()]);
    assert!(ok, "{text}");
    let failed = until(30, "the copy fails to start", async || {
        let (a, _) = api
            .job_allocs("small", QueryOptions::default())
            .await
            .ok()?;
        a.into_iter()
            .find(|a| a.client_status == ClientStatus::Failed)
    })
    .await;
    let why = &failed.task_states["t"].events.last().unwrap().message;
    assert!(
        why.contains("16777216") && why.contains("33554432"),
        "{why}"
    );
    let (ok, text) = cli(&addr, &["job", "stop", "small"]);
    assert!(ok, "{text}");
    all_complete(&api, "small").await;
    let vols = api.volumes().await.unwrap();
    let (ok, text) = cli(&addr, &["volume", "rm", &vols[0].id]);
    assert!(ok, "{text}");
    assert!(!img.exists(), "the image goes with the volume");
}
