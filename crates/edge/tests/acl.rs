//! ACLs from the command line, as the README shows them: `edge acl
//! bootstrap`, a policy, `edge acl token create`, and `edge job run` with
//! the token, against a real `edge server --acl on`.

mod common;

use common::{EDGE, Proc, free_port, repo, until};
use std::process::{Command, Output};

fn edge(addr: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(EDGE);
    c.args(args)
        .current_dir(repo())
        .env("EDGE_ADDR", addr)
        .env_remove("EDGE_TOKEN");
    if let Some(t) = token {
        c.env("EDGE_TOKEN", t);
    }
    c.output().unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn secret(out: &Output, what: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&ok(out, what)).unwrap();
    v["secret_id"].as_str().unwrap().to_string()
}

/// `edge acl token create --name NAME --policy POLICY [extra]`: its secret.
fn create_token(addr: &str, mgmt: &str, name: &str, policy: &str, extra: &[&str]) -> String {
    let mut args = vec!["acl", "token", "create", "--name", name, "--policy", policy];
    args.extend_from_slice(extra);
    args.extend(["-o", "json"]);
    secret(&edge(addr, Some(mgmt), &args), "token create")
}

#[tokio::test]
async fn bootstrap_create_a_token_and_run_a_job_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("http://127.0.0.1:{port}");
    let data = dir.path().join("server");
    let mut server = Proc::edge(
        dir.path(),
        "server",
        &[
            "server",
            "--data-dir",
            data.to_str().unwrap(),
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--acl",
            "on",
        ],
    );
    let api = edge_api::Client::new(&addr, None).unwrap();
    until(20, "server up", async || api.health().await.ok()).await;
    assert!(
        server.log().contains("edge acl bootstrap"),
        "the server says how to bootstrap:\n{}",
        server.log()
    );

    // Without a token the CLI gets the 401 and says so.
    let out = edge(&addr, None, &["job", "status"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("401") && stderr.contains("x-edge-token"),
        "{stderr}"
    );

    let mgmt = secret(
        &edge(&addr, None, &["acl", "bootstrap", "-o", "json"]),
        "bootstrap",
    );
    let again = edge(&addr, None, &["acl", "bootstrap"]);
    assert!(!again.status.success(), "a second bootstrap is refused");

    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let ro = policies.join("readonly.hcl");
    std::fs::write(&ro, "namespace \"default\" {\n  policy = \"read\"\n}\n").unwrap();
    let rw = policies.join("deployer.hcl");
    std::fs::write(&rw, "namespace \"default\" {\n  policy = \"write\"\n}\n").unwrap();
    let bad = policies.join("bad.hcl");
    std::fs::write(
        &bad,
        "namespace \"default\" {\n  policy = \"read\"\n  colour = 1\n}\n",
    )
    .unwrap();
    for (name, file) in [("readonly", &ro), ("deployer", &rw)] {
        ok(
            &edge(
                &addr,
                Some(&mgmt),
                &["acl", "policy", "apply", name, file.to_str().unwrap()],
            ),
            "policy apply",
        );
    }
    let out = edge(
        &addr,
        Some(&mgmt),
        &["acl", "policy", "apply", "bad", bad.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.hcl:3:3: namespace.default.colour: unknown attribute"),
        "{stderr}"
    );
    let listed = ok(
        &edge(&addr, Some(&mgmt), &["acl", "policy", "ls"]),
        "policy ls",
    );
    assert!(
        listed.contains("readonly") && listed.contains("deployer"),
        "{listed}"
    );

    let reader = create_token(&addr, &mgmt, "reader", "readonly", &[]);
    let deployer = create_token(&addr, &mgmt, "deployer", "deployer", &["--ttl", "1h"]);

    // The reader lists jobs but cannot run one.
    ok(
        &edge(&addr, Some(&reader), &["job", "status"]),
        "job status",
    );
    let out = edge(
        &addr,
        Some(&reader),
        &["job", "run", "--detach", "examples/hello.hcl"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("403")
            && stderr.contains("lacks capability submit-job in namespace default"),
        "{stderr}"
    );

    // The deployer runs it, through --token as well as EDGE_TOKEN.
    let out = edge(
        &addr,
        None,
        &[
            "--token",
            &deployer,
            "job",
            "run",
            "--detach",
            "examples/hello.hcl",
        ],
    );
    let stdout = ok(&out, "job run");
    assert!(stdout.contains("registered"), "{stdout}");
    let status = ok(
        &edge(&addr, Some(&reader), &["job", "status"]),
        "job status",
    );
    assert!(status.contains("hello"), "{status}");

    let me = ok(
        &edge(&addr, Some(&deployer), &["acl", "token", "self"]),
        "token self",
    );
    assert!(me.contains("deployer") && !me.contains(&deployer), "{me}");
    let tokens = ok(
        &edge(&addr, Some(&mgmt), &["acl", "token", "ls"]),
        "token ls",
    );
    assert!(
        tokens.contains("reader") && tokens.contains("deployer"),
        "{tokens}"
    );
    assert!(!tokens.contains(&reader), "listings never show secrets");

    // Namespaces: a token of `prod` runs the same job id there, Nomad's
    // single-dash `-namespace` and EDGE_NAMESPACE both name it, and the
    // default namespace stays out of its reach.
    ok(
        &edge(
            &addr,
            Some(&mgmt),
            &["namespace", "apply", "prod", "--description", "production"],
        ),
        "namespace apply",
    );
    let prod_rules = policies.join("prod.hcl");
    std::fs::write(
        &prod_rules,
        "namespace \"prod\" {\n  policy = \"write\"\n}\n",
    )
    .unwrap();
    ok(
        &edge(
            &addr,
            Some(&mgmt),
            &[
                "acl",
                "policy",
                "apply",
                "prod-dev",
                prod_rules.to_str().unwrap(),
            ],
        ),
        "policy apply",
    );
    let prod = create_token(&addr, &mgmt, "prod", "prod-dev", &[]);
    let out = ok(
        &edge(
            &addr,
            Some(&prod),
            &[
                "job",
                "run",
                "-namespace",
                "prod",
                "--detach",
                "examples/hello.hcl",
            ],
        ),
        "job run -namespace prod",
    );
    assert!(out.contains("registered"), "{out}");
    let mut c = Command::new(EDGE);
    c.args(["job", "status", "-o", "json"])
        .current_dir(repo())
        .env("EDGE_ADDR", &addr)
        .env("EDGE_TOKEN", &prod)
        .env("EDGE_NAMESPACE", "prod");
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&c.output().unwrap(), "job status in prod")).unwrap();
    assert_eq!(listed[0]["id"], "hello");
    assert_eq!(listed[0]["namespace"], "prod");
    let out = edge(&addr, Some(&prod), &["job", "status"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lacks capability list-jobs in namespace default"),
        "{stderr}"
    );
    let all = ok(
        &edge(&addr, Some(&mgmt), &["job", "status", "-namespace", "*"]),
        "job status -namespace *",
    );
    assert!(
        all.contains("Namespace") && all.contains("default") && all.contains("prod"),
        "{all}"
    );
    let out = edge(
        &addr,
        Some(&mgmt),
        &["job", "run", "--namespace", "*", "examples/hello.hcl"],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("a job runs in one"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = edge(&addr, Some(&mgmt), &["job", "status", "-namespace", "prdo"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("namespace \"prdo\" does not exist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ns = ok(
        &edge(&addr, Some(&prod), &["namespace", "ls"]),
        "namespace ls",
    );
    assert!(ns.contains("prod") && !ns.contains("default"), "{ns}");
    let out = edge(&addr, Some(&mgmt), &["namespace", "delete", "prod"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("still holds jobs (hello)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.term();
}
