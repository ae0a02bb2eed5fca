//! The seed lecture's webapp (examples/compose/webapp) as the compose tests
//! drive it, on `edge dev` and on the three-node lab: a copy of the
//! project with a probe service on front-tier only, on every node, and a
//! one-shot migration the backend waits for.

use super::{EDGE, repo, until};
use edge_spec::{Allocation, ClientStatus};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Added by a second file: a client on front-tier only, on every node
/// (`mode: global`), and a one-shot `migrate` the backend waits for.
const EXTRA: &str = "services:
  probe:
    image: docker.io/edge/busybox:latest
    command: [sleep, \"3600\"]
    networks: [front-tier]
    deploy:
      mode: global
  migrate:
    image: docker.io/edge/busybox:latest
    command: [sh, -c, \"echo schema ready\"]
    networks: [back-tier]
  backend:
    depends_on:
      migrate:
        condition: service_completed_successfully
";

/// The project's copy and how to reach its server; `down -v` on drop, as
/// the containers outlive a failed test's agents.
pub struct Webapp {
    pub dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Webapp {
    /// The example copied under `root`, driven with `env` (`EDGE_ADDR`,
    /// and for the lab `EDGE_CACERT` and `EDGE_TOKEN`; `WEBAPP_PORT`).
    pub fn new(root: &Path, env: &[(&str, &str)]) -> Webapp {
        let dir = root.join("webapp");
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(repo().join("examples/compose/webapp")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
        std::fs::write(dir.join("extra.yaml"), EXTRA).unwrap();
        Webapp {
            dir,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// `edge ARGS` in the project's directory: success and stdout+stderr.
    pub fn edge(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(EDGE)
            .args(args)
            .current_dir(&self.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// `edge compose -f compose.yaml -f extra.yaml ARGS`.
    pub fn compose(&self, args: &[&str]) -> (bool, String) {
        let base = ["compose", "-f", "compose.yaml", "-f", "extra.yaml"];
        self.edge(&[&base[..], args].concat())
    }

    /// `url` fetched from inside allocation `alloc`.
    pub fn fetch_in(&self, alloc: &str, url: &str) -> (bool, String) {
        // busybox wget's own -T crashes (Debian's busybox-static): timeout does it.
        self.edge(&[
            "alloc", "exec", alloc, "--", "timeout", "3", "wget", "-q", "-O", "-", url,
        ])
    }

    /// The rows the backend wrote, read by a frontend through the name
    /// `backend`.
    pub async fn rows(&self, api: &edge_api::Client) -> usize {
        until(60, "the frontend reading the backend's rows", async || {
            let all = allocs(api).await;
            let front = all.iter().find(|a| a.group == "frontend")?;
            let (ok, out) = self.fetch_in(&front.id, "http://backend:5432/rows");
            if !ok {
                // Which step failed: the name, or the connection.
                let (_, dns) = self.edge(&[
                    "alloc", "exec", &front.id, "--", "timeout", "3", "nslookup", "backend",
                ]);
                eprintln!(
                    "rows through frontend {} on {}: {}; nslookup backend: {}",
                    front.id,
                    front.node_name,
                    out.trim(),
                    dns.trim()
                );
            }
            ok.then(|| out.lines().filter(|l| !l.trim().is_empty()).count())
        })
        .await
    }

    /// The rows on the backend's volume, read in the backend itself.
    pub async fn rows_in_backend(&self, api: &edge_api::Client) -> (String, usize) {
        until(60, "the backend's rows in the backend", async || {
            let all = allocs(api).await;
            let back = all.iter().find(|a| a.group == "backend")?;
            let (ok, out) =
                self.edge(&["alloc", "exec", &back.id, "--", "cat", "/var/lib/db/rows"]);
            if !ok {
                eprintln!("rows in the backend: {}", out.trim());
            }
            ok.then(|| {
                let n = out.lines().filter(|l| !l.trim().is_empty()).count();
                (back.id.clone(), n)
            })
        })
        .await
    }

    /// The frontend's httpd config on its target (`/etc/httpd.conf`),
    /// read-only, and its certificate under /run/secrets.
    pub async fn data_in_place(&self, api: &edge_api::Client) {
        let all = allocs(api).await;
        let front = all.iter().find(|a| a.group == "frontend").unwrap();
        let (ok, out) = self.edge(&["alloc", "exec", &front.id, "--", "cat", "/etc/httpd.conf"]);
        assert!(ok && out.contains(".html:text/html"), "{out}");
        let (ok, out) = self.edge(&[
            "alloc",
            "exec",
            &front.id,
            "--",
            "sh",
            "-c",
            "echo x >> /etc/httpd.conf",
        ]);
        assert!(!ok, "the config is read-only: {out}");
        let (ok, out) = self.edge(&[
            "alloc",
            "exec",
            &front.id,
            "--",
            "cat",
            "/run/secrets/server-certificate",
        ]);
        assert!(ok && !out.trim().is_empty(), "{out}");
    }

    /// A service outside back-tier neither resolves `backend` nor reaches
    /// its address.
    pub async fn probe_is_kept_out(&self, api: &edge_api::Client) {
        let all = allocs(api).await;
        let back = all.iter().find(|a| a.group == "backend").unwrap();
        let back_ip = back.networks["back-tier"];
        let probes: Vec<&Allocation> = all.iter().filter(|a| a.group == "probe").collect();
        assert!(!probes.is_empty());
        for probe in probes {
            let (ok, out) = self.fetch_in(&probe.id, "http://backend:5432/rows");
            assert!(!ok, "a service outside back-tier resolved backend: {out}");
            let (ok, out) = self.fetch_in(&probe.id, &format!("http://{back_ip}:5432/rows"));
            assert!(
                !ok,
                "a service outside back-tier reached backend's address: {out}"
            );
        }
    }
}

impl Drop for Webapp {
    fn drop(&mut self) {
        self.compose(&["down", "-v"]);
    }
}

/// The project's running replicas, whole.
pub async fn allocs(api: &edge_api::Client) -> Vec<Allocation> {
    let api = api.clone().with_namespace(Some("webapp".into()));
    let Ok((list, _)) = api.job_allocs("webapp", Default::default()).await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for a in list
        .into_iter()
        .filter(|a| a.client_status == ClientStatus::Running)
    {
        if let Ok(a) = api.alloc(&a.id).await {
            out.push(a);
        }
    }
    out
}

/// The `depends_on` order: `migrate` ran to completion before the
/// backend was placed, and every frontend replica was placed after the
/// backend's task started (placed together, they would share a creation
/// time before it).
pub async fn started_in_order(api: &edge_api::Client) {
    let api = api.clone().with_namespace(Some("webapp".into()));
    let (list, _) = api.job_allocs("webapp", Default::default()).await.unwrap();
    let mut all = Vec::new();
    for a in list
        .iter()
        .filter(|a| a.desired_status == edge_spec::DesiredStatus::Run)
    {
        all.push(api.alloc(&a.id).await.unwrap());
    }
    let one = |group: &str| -> &Allocation {
        let mut of = all.iter().filter(|a| a.group == group);
        let first = of.next().unwrap_or_else(|| panic!("no {group} replica"));
        assert!(of.next().is_none(), "one {group} replica");
        first
    };
    let migrate = one("migrate");
    assert_eq!(migrate.client_status, ClientStatus::Complete);
    let finished = migrate.task_states["migrate"].finished_at;
    let back = one("backend");
    assert!(
        back.create_time >= finished,
        "backend placed at {}, before migrate finished at {finished}",
        back.create_time
    );
    let started = back.task_states["backend"].started_at;
    assert!(started > 0);
    let fronts: Vec<&Allocation> = all.iter().filter(|a| a.group == "frontend").collect();
    assert!(!fronts.is_empty());
    for front in fronts {
        assert!(
            front.create_time > started,
            "frontend {} placed at {}, before the backend started at {started}",
            front.id,
            front.create_time
        );
    }
}
