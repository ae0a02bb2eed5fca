//! The cluster PKI against real processes over real TLS: agents join with
//! the join token's CA pin and a CSR, node routes take only the node the
//! certificate names, revocation and token rotation, renewal of short-lived
//! certificates under running tasks, and the CLI over TLS.

mod common;

use common::*;
use edge_api::tls::{ClusterCa, Credentials, client_config, node_csr};
use edge_api::{Client, QueryOptions};
use edge_spec::{ClientStatus, DesiredStatus};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

fn cli(addr: &str, ca: &Path, args: &[&str]) -> std::process::Output {
    Command::new(EDGE)
        .args(args)
        .env("EDGE_ADDR", addr)
        .env("EDGE_CACERT", ca)
        .current_dir(repo())
        .output()
        .unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

struct Cluster {
    url: String,
    ca: Arc<ClusterCa>,
    ca_path: std::path::PathBuf,
}

impl Cluster {
    fn client(&self, token: Option<&str>, creds: Option<Arc<Credentials>>) -> Client {
        let tls = client_config(self.ca.clone(), creds).unwrap();
        Client::with_tls(&self.url, token.map(String::from), tls).unwrap()
    }

    /// A client holding the certificate of the node whose data dir is `dir`.
    fn as_node(&self, dir: &Path) -> Client {
        let creds = Credentials::from_pem(
            &read(&dir.join("tls/node.pem")),
            &read(&dir.join("tls/node-key.pem")),
        )
        .unwrap();
        self.client(None, Some(creds))
    }
}

fn agent(dir: &Path, name: &str, url: &str, token: &str) -> Proc {
    Proc::edge(
        dir,
        name,
        &[
            "agent",
            "--server",
            url,
            "--join-token",
            token,
            "--data-dir",
            dir.join(name).to_str().unwrap(),
            "--name",
            name,
        ],
    )
}

/// `edge server --tls` on a free loopback port with data dir `d/server`
/// and `extra` flags: the process, its URL and its data dir.
fn tls_server(d: &Path, extra: &[&str]) -> (Proc, String, std::path::PathBuf) {
    let port = free_port();
    let sdir = d.join("server");
    let bind = format!("127.0.0.1:{port}");
    let mut args = vec!["server", "--tls", "--data-dir", sdir.to_str().unwrap()];
    args.extend(["--bind", &bind]);
    args.extend(extra);
    let server = Proc::edge(d, "server", &args);
    (server, format!("https://{bind}"), sdir)
}

#[tokio::test]
async fn agents_join_by_pin_act_only_as_themselves_renew_and_can_be_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_server, url, sdir) = tls_server(d, &["--node-cert-ttl", "9s"]);
    until(20, "server CA and token", async || {
        (sdir.join("token").exists() && sdir.join("ca.pem").exists()).then_some(())
    })
    .await;
    let token = read(&sdir.join("token")).trim().to_string();
    assert!(token.starts_with("K10"), "token pins the CA: {token}");
    let c = Cluster {
        url: url.clone(),
        ca: ClusterCa::known(&read(&sdir.join("ca.pem")), None).unwrap(),
        ca_path: sdir.join("ca.pem"),
    };
    let user = c.client(None, None);
    until(20, "server up over TLS", async || user.health().await.ok()).await;
    use std::os::unix::fs::PermissionsExt;
    for key in ["ca-key.pem", "server-key.pem", "token"] {
        let mode = std::fs::metadata(sdir.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }

    let _a = agent(d, "a", &url, &token);
    let mut b = agent(d, "b", &url, &token);
    // A token that pins another CA: the agent refuses the server.
    let secret = token.split("::").nth(1).unwrap();
    let wrong = format!("K10{}::{secret}", "0".repeat(64));
    let mut impostor = agent(d, "impostor", &url, &wrong);
    until(30, "a and b ready", async || {
        (user.health().await.ok()?.nodes_ready == 2).then_some(())
    })
    .await;
    until(20, "impostor refuses the server's CA", async || {
        impostor.log().contains("pin did not match").then_some(())
    })
    .await;
    assert!(!d.join("impostor/tls/node.pem").exists());
    impostor.kill9();
    let mode = std::fs::metadata(d.join("a/tls/node-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "node key");

    // No token, a wrong token: no certificate.
    let csr = node_csr("newcomer").unwrap();
    for (t, why) in [
        (None, "missing join token"),
        (Some("wrong"), "invalid join token"),
    ] {
        let e = c.client(t, None).agent_csr(&csr.csr_pem).await.unwrap_err();
        assert_eq!(e.status(), Some(403), "{e}");
        assert!(e.to_string().contains(why), "{e}");
    }
    // The token cannot take over the id of a node that is up.
    let (a_id, b_id) = (read(&d.join("a/node-id")), read(&d.join("b/node-id")));
    let (a_id, b_id) = (a_id.trim(), b_id.trim());
    let taken = node_csr(b_id).unwrap();
    let e = c
        .client(Some(&token), None)
        .agent_csr(&taken.csr_pem)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");

    // Node a's certificate acts as a, never as b.
    let as_a = c.as_node(&d.join("a"));
    as_a.agent_heartbeat(a_id).await.unwrap();
    let mismatch = format!("client certificate is for node {a_id}, not {b_id}");
    let e = as_a.agent_heartbeat(b_id).await.unwrap_err();
    assert!(
        e.status() == Some(403) && e.to_string().contains(&mismatch),
        "{e}"
    );
    let e = as_a
        .agent_allocs(b_id, QueryOptions::default())
        .await
        .unwrap_err();
    assert!(
        e.status() == Some(403) && e.to_string().contains(&mismatch),
        "{e}"
    );
    let e = as_a.agent_update_allocs(b_id, vec![]).await.unwrap_err();
    assert!(
        e.status() == Some(403) && e.to_string().contains(&mismatch),
        "{e}"
    );
    // Without a certificate, the join token is no way in to the node routes.
    let e = c
        .client(Some(&token), None)
        .agent_heartbeat(a_id)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");

    // Tasks keep running while certificates (9s) are renewed under them.
    let job = d.join("sleep.hcl");
    std::fs::write(
        &job,
        r#"job "sleepers" {
  group "s" {
    count = 2
    task "sleep" {
      driver = "exec"
      config {
        command = "/bin/sleep"
        args    = ["600"]
      }
      resources {
        cpu    = 10
        memory = 16
      }
    }
  }
}
"#,
    )
    .unwrap();
    let out = cli(&url, &c.ca_path, &["job", "run", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let running = async || {
        let (allocs, _) = user
            .job_allocs("sleepers", QueryOptions::default())
            .await
            .ok()?;
        let mut ids: Vec<String> = allocs
            .into_iter()
            .filter(|a| {
                a.desired_status == DesiredStatus::Run && a.client_status == ClientStatus::Running
            })
            .map(|a| a.id)
            .collect();
        ids.sort();
        Some(ids)
    };
    let before = until(30, "2 running", async || {
        running().await.filter(|v| v.len() == 2)
    })
    .await;
    let first_cert = read(&d.join("a/tls/node.pem"));
    let first_key = read(&d.join("a/tls/node-key.pem"));
    tokio::time::sleep(std::time::Duration::from_secs(16)).await;
    assert_ne!(
        read(&d.join("a/tls/node.pem")),
        first_cert,
        "a renewed its certificate"
    );
    assert!(_a.log().contains("node certificate renewed"));
    assert_eq!(
        running().await.unwrap(),
        before,
        "same allocations, still running"
    );
    assert_eq!(user.health().await.unwrap().nodes_ready, 2);
    // The first certificate has expired: a new connection with it fails.
    let stale = Credentials::from_pem(&first_cert, &first_key).unwrap();
    let e = c
        .client(None, Some(stale))
        .agent_heartbeat(a_id)
        .await
        .unwrap_err();
    assert!(e.status().is_none(), "refused at the handshake: {e}");

    // Revoked: b's certificate is refused, and the token cannot bring b back.
    let out = cli(&url, &c.ca_path, &["node", "revoke", "b"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let as_b = c.as_node(&d.join("b"));
    let e = as_b.agent_heartbeat(b_id).await.unwrap_err();
    assert!(e.status().is_none_or(|s| s == 403), "{e}");
    let again = node_csr(b_id).unwrap();
    let e = c
        .client(Some(&token), None)
        .agent_csr(&again.csr_pem)
        .await
        .unwrap_err();
    assert!(
        e.status() == Some(403) && e.to_string().contains("revoked"),
        "{e}"
    );
    let node = user.node(b_id).await.unwrap();
    assert!(node.revoked);
    assert_eq!(node.status, edge_spec::NodeStatus::Down);
    b.kill9();

    // Rotation: the old token no longer joins, the new one does, and nodes
    // keep their certificates.
    let out = cli(&url, &c.ca_path, &["operator", "token", "rotate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_ne!(new_token, token);
    assert_eq!(read(&sdir.join("token")).trim(), new_token);
    let fresh = node_csr("fresh-1").unwrap();
    let e = c
        .client(Some(&token), None)
        .agent_csr(&fresh.csr_pem)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");
    c.client(Some(&new_token), None)
        .agent_csr(&fresh.csr_pem)
        .await
        .unwrap();
    c.as_node(&d.join("a")).agent_heartbeat(a_id).await.unwrap();

    // The CLI over TLS: with the CA it works, with another certificate as
    // its CA it refuses the server.
    let out = cli(&url, &c.ca_path, &["node", "ls", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(a_id));
    let out = cli(&url, &d.join("a/tls/node.pem"), &["node", "ls"]);
    assert!(!out.status.success());
    // The secret never reaches the server's log.
    assert!(!_server.log().contains(secret));
    assert!(
        !_server
            .log()
            .contains(new_token.split("::").nth(1).unwrap())
    );
}

/// A CA of the operator's and a certificate it signed for `127.0.0.1`, as
/// (CA PEM, certificate PEM, key PEM).
fn operator_pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = p.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_pem, cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn users_get_the_operators_certificate_and_agents_still_the_pinned_cluster_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca_pem, cert_pem, key_pem) = operator_pki();
    let (op_ca, op_cert, op_key) = (d.join("op-ca.pem"), d.join("op.pem"), d.join("op-key.pem"));
    std::fs::write(&op_ca, &ca_pem).unwrap();
    std::fs::write(&op_cert, &cert_pem).unwrap();
    std::fs::write(&op_key, &key_pem).unwrap();

    // A key that is not the certificate's stops the server at start.
    let (_, _, other_key) = operator_pki();
    std::fs::write(d.join("other-key.pem"), other_key).unwrap();
    let out = Command::new(EDGE)
        .args(["server", "--tls", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(d.join("bad"))
        .arg("--tls-cert")
        .arg(&op_cert)
        .arg("--tls-key")
        .arg(d.join("other-key.pem"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("does not belong to the certificate") && err.contains("other-key.pem"),
        "{err}"
    );

    let (server, url, sdir) = tls_server(
        d,
        &[
            "--tls-cert",
            op_cert.to_str().unwrap(),
            "--tls-key",
            op_key.to_str().unwrap(),
        ],
    );
    until(20, "server token", async || {
        sdir.join("token").exists().then_some(())
    })
    .await;
    let token = read(&sdir.join("token")).trim().to_string();
    // Agents pin the cluster CA and still join.
    let _a = agent(d, "a", &url, &token);
    let c = Cluster {
        url: url.clone(),
        ca: ClusterCa::known(&read(&sdir.join("ca.pem")), None).unwrap(),
        ca_path: sdir.join("ca.pem"),
    };
    let cluster_client = c.client(None, None);
    until(30, "the agent ready", async || {
        (cluster_client.health().await.ok()?.nodes_ready == 1).then_some(())
    })
    .await;
    // Users get the operator's certificate: its CA works, the cluster's
    // does not, and the CLI says what to do about it.
    let out = cli(&url, &op_ca, &["node", "ls", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"a\""));
    let out = cli(&url, &c.ca_path, &["node", "ls"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("UnknownIssuer") && err.contains("--ca-cert"),
        "{err}"
    );
}
