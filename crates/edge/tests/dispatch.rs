//! Parameterized jobs on a real `edge dev` with an exec task: `edge job
//! dispatch -meta k=v FILE` makes a child job whose task finds the payload
//! at `local/<dispatch_payload.file>` and the meta and its parent in its
//! environment, and the parent lists the child.

mod common;

use common::until;
use edge_api::QueryOptions;

#[tokio::test]
async fn a_dispatched_task_reads_its_payload_and_meta() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::writable_dir(dir.path());
    let (_dev, addr, api) = common::dev(dir.path()).await;

    let o = out.display();
    let job = dir.path().join("render.hcl");
    std::fs::write(
        &job,
        format!(
            r#"job "render" {{
  type = "batch"
  parameterized {{
    payload       = "required"
    meta_required = ["scene"]
  }}
  group "g" {{
    restart {{
      attempts = 0
      mode     = "fail"
    }}
    task "t" {{
      driver = "exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "cat local/input.txt > {o}/payload; echo $EDGE_META_scene $EDGE_JOB_PARENT_ID $NOMAD_META_scene $NOMAD_JOB_PARENT_ID > {o}/scene"]
      }}
      dispatch_payload {{
        file = "input.txt"
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
    let (ok, text) = common::cli(&addr, &["job", "run", job.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains("edge job dispatch render"), "{text}");
    let (allocs, _) = api
        .job_allocs("render", QueryOptions::default())
        .await
        .unwrap();
    assert!(
        allocs.is_empty(),
        "the parameterized job itself runs nothing"
    );

    let input = dir.path().join("input.txt");
    std::fs::write(&input, "hello from the payload\n").unwrap();
    // Nomad's spelling, one dash.
    let (ok, text) = common::cli(
        &addr,
        &[
            "job",
            "dispatch",
            "-meta",
            "scene=intro",
            "render",
            input.to_str().unwrap(),
        ],
    );
    assert!(ok, "{text}");
    assert!(text.contains("render/dispatch-"), "{text}");

    let read = |name: &str| std::fs::read_to_string(out.join(name)).ok();
    until(30, "the task's output", async || {
        (!read("payload")?.is_empty() && !read("scene")?.is_empty()).then_some(())
    })
    .await;
    assert_eq!(read("payload").unwrap(), "hello from the payload\n");
    // Nomad's names too, for programs written for it.
    assert_eq!(read("scene").unwrap().trim(), "intro render intro render");

    let (ok, text) = common::cli(
        &addr,
        &["job", "dispatch", "render", input.to_str().unwrap()],
    );
    assert!(
        !ok && text.contains("scene"),
        "a missing required meta key: {text}"
    );
    let (ok, text) = common::cli(&addr, &["job", "status", "render"]);
    assert!(ok && text.contains("render/dispatch-"), "{text}");
}
