//! Compose projects from files on disk to edge jobs: the webapp example,
//! variables, several files, `extends`, profiles, and every refused key's
//! message.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use edge_compose::keys::{KEYS, Scope, Support};
use edge_compose::{ComposeError, Conversion, Options, Project, convert};
use edge_spec::{DependCondition, PublishProtocol};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn project_in(
    dir: &Path,
    files: &[&str],
    environ: &[(&str, &str)],
) -> Result<Project, ComposeError> {
    Project::load(&Options {
        files: files.iter().map(PathBuf::from).collect(),
        environ: environ
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        cwd: dir.to_path_buf(),
        ..Options::default()
    })
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

fn one(text: &str) -> Result<Conversion, ComposeError> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[("compose.yaml", text)]);
    let p = project_in(dir.path(), &[], &[])?;
    convert(&p)
}

fn error(text: &str) -> String {
    match one(text) {
        Ok(c) => panic!("expected an error, got {:#?}", c.job),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_webapp_example_becomes_one_job() {
    let dir = repo().join("examples/compose/webapp");
    let p = project_in(&dir, &[], &[]).unwrap();
    assert_eq!(p.name, "webapp");
    let c = convert(&p).unwrap();
    let job = &c.job;
    assert_eq!(
        (job.id.as_str(), job.namespace.as_str()),
        ("webapp", "webapp")
    );
    let nets: Vec<&str> = job.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(nets, ["back-tier", "front-tier"]);

    let front = job.group("frontend").unwrap();
    assert_eq!(front.count, 2);
    assert_eq!(front.network.networks, ["front-tier", "back-tier"]);
    assert_eq!(front.network.ports.len(), 1);
    assert_eq!(front.network.ports[0].to, Some(8043));
    let svc = &front.services[0];
    assert_eq!(svc.name, "frontend");
    assert_eq!(svc.publish.as_ref().map(|p| p.port), Some(443));
    assert_eq!(svc.checks[0].command, "wget");
    assert_eq!(svc.checks[0].interval.as_secs(), 2);
    let task = &front.tasks[0];
    assert_eq!(task.driver, "containerd");
    assert_eq!(task.config["image"], "docker.io/edge/busybox:latest");
    assert_eq!(task.config["args"][0], "httpd");
    // A target elsewhere than /configs is written in the task's directory
    // and bind-mounted read-only there.
    assert_eq!(task.configs[0].destination, "local/.compose/httpd-config");
    assert_eq!(
        task.config["volumes"],
        serde_json::json!(["${EDGE_TASK_DIR}/.compose/httpd-config:/etc/httpd.conf:ro"])
    );
    assert_eq!(task.configs[0].name, "webapp-httpd-config");
    assert_eq!(task.secrets[0].destination, "secrets/server-certificate");
    assert_eq!(front.update.as_ref().and_then(|u| u.max_parallel), Some(1));

    let back = job.group("backend").unwrap();
    assert_eq!(back.network.networks, ["back-tier"]);
    assert!(back.services[0].publish.is_none());
    assert_eq!(back.volumes[0].name, "db-data");
    assert_eq!(back.tasks[0].volume_mounts[0].destination, "/var/lib/db");
    assert_eq!(back.services[0].checks[0].args[0], "-c");

    let objects: BTreeMap<&str, bool> = c
        .objects
        .iter()
        .map(|o| (o.name.as_str(), o.secret))
        .collect();
    assert_eq!(
        objects,
        BTreeMap::from([
            ("webapp-httpd-config", false),
            ("webapp-server-certificate", true)
        ])
    );
    assert!(
        c.objects[1]
            .data
            .values()
            .next()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE")
    );
    assert_eq!(edge_spec::validate(job), []);
}

/// `edge compose convert` prints the job as HCL; read back, it is the
/// same job, for every project of the corpus.
#[test]
fn converted_jobs_read_back_from_hcl() {
    for dir in corpus() {
        let c = convert(&project_in(&dir, &[], &[]).unwrap()).unwrap();
        let text = edge_spec::job_to_hcl(&c.job);
        let back = edge_spec::parse_hcl(&text, &edge_spec::ParseOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}\n{text}", dir.display()))
            .job;
        assert!(c.job.spec_eq(&back), "{}:\n{text}", dir.display());
    }
}

fn corpus() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for root in ["examples/compose", "tests/compose"] {
        for d in std::fs::read_dir(repo().join(root)).unwrap() {
            let dir = d.unwrap().path();
            if dir.is_dir() {
                out.push(dir);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn variables_come_from_the_shell_over_dot_env() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                ".env",
                "TAG=1.0\nPORT=8080\nIMAGE=registry.local/web:${TAG}\n",
            ),
            (
                "compose.yaml",
                "services:\n  web:\n    image: $IMAGE\n    ports: [\"${PORT}:80\"]\n    environment:\n      GREETING: ${GREETING:-hello}\n      PRICE: $$5\n      FROM_SHELL:\n",
            ),
        ],
    );
    let p = project_in(dir.path(), &[], &[("PORT", "9090"), ("FROM_SHELL", "yes")]).unwrap();
    let c = convert(&p).unwrap();
    let g = &c.job.groups[0];
    assert_eq!(g.tasks[0].config["image"], "registry.local/web:1.0");
    assert_eq!(
        g.services[0].publish.as_ref().unwrap().port,
        9090,
        "the shell wins over .env"
    );
    let env = &g.tasks[0].env;
    assert_eq!(env["GREETING"], "hello");
    assert_eq!(env["PRICE"], "$5");
    assert_eq!(env["FROM_SHELL"], "yes");
    let base = dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_lowercase();
    assert_eq!(
        p.name,
        base.replace(['_', '.'], "-").trim_matches('-'),
        "the directory names the project"
    );
}

#[test]
fn a_required_variable_names_its_file_and_line() {
    let e = error(
        "services:\n  web:\n    image: web\n    ports:\n      - \"${PORT:?set PORT to the published port}:80\"\n",
    );
    assert_eq!(
        e,
        "compose.yaml:5:9: services.web.ports[0]: set PORT to the published port"
    );
}

#[test]
fn several_files_merge_per_the_specification() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "compose.yaml",
                "services:\n  web:\n    image: web:1\n    command: [serve, --slow]\n    environment: [A=1, B=2]\n    ports: [\"80:80\"]\n    volumes: [\"data:/data\", \"./conf:/etc/conf:ro\"]\nvolumes:\n  data: {}\n",
            ),
            (
                "prod.yaml",
                "services:\n  web:\n    image: web:2\n    command: [serve]\n    environment:\n      B: three\n    ports: [\"443:443\"]\n    volumes: [\"./prod-conf:/etc/conf:ro\"]\n",
            ),
        ],
    );
    let p = project_in(dir.path(), &["compose.yaml", "prod.yaml"], &[]).unwrap();
    let c = convert(&p).unwrap();
    let g = &c.job.groups[0];
    let t = &g.tasks[0];
    assert_eq!(t.config["image"], "web:2");
    assert_eq!(
        t.config["args"],
        serde_json::json!(["serve"]),
        "command is replaced"
    );
    assert_eq!((t.env["A"].as_str(), t.env["B"].as_str()), ("1", "three"));
    let published: Vec<u16> = g
        .services
        .iter()
        .filter_map(|s| s.publish.as_ref().map(|p| p.port))
        .collect();
    assert_eq!(published, [80, 443], "ports add up");
    let binds = t.config["volumes"].as_array().unwrap();
    assert_eq!(
        binds.len(),
        1,
        "a volume with the same target is replaced: {binds:?}"
    );
    assert!(
        binds[0]
            .as_str()
            .unwrap()
            .ends_with("/prod-conf:/etc/conf:ro")
    );
}

#[test]
fn the_override_file_is_read_by_default() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "docker-compose.yml",
                "services:\n  web:\n    image: web:1\n",
            ),
            (
                "docker-compose.override.yml",
                "services:\n  web:\n    image: web:dev\n",
            ),
        ],
    );
    let c = convert(&project_in(dir.path(), &[], &[]).unwrap()).unwrap();
    assert_eq!(c.job.groups[0].tasks[0].config["image"], "web:dev");
}

#[test]
fn extends_takes_a_service_from_this_file_or_another() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "common.yaml",
                "services:\n  base:\n    image: web:1\n    environment:\n      LEVEL: info\n      REGION: eu\n    stop_grace_period: 20s\n",
            ),
            (
                "compose.yaml",
                "services:\n  web:\n    extends:\n      file: common.yaml\n      service: base\n    environment:\n      LEVEL: debug\n  worker:\n    extends: web\n    command: work\n",
            ),
        ],
    );
    let c = convert(&project_in(dir.path(), &[], &[]).unwrap()).unwrap();
    for name in ["web", "worker"] {
        let t = &c.job.group(name).unwrap().tasks[0];
        assert_eq!(t.config["image"], "web:1", "{name}");
        assert_eq!(
            (t.env["LEVEL"].as_str(), t.env["REGION"].as_str()),
            ("debug", "eu")
        );
        assert_eq!(t.kill_timeout.as_secs(), 20);
    }
    assert_eq!(
        c.job.group("worker").unwrap().tasks[0].config["args"],
        serde_json::json!(["work"])
    );

    let e = error(
        "services:\n  a:\n    extends: b\n    image: x\n  b:\n    extends: a\n    image: y\n",
    );
    assert!(e.contains("circle"), "{e}");
    let e = error("services:\n  a:\n    extends: nothing\n    image: x\n");
    assert!(e.contains("no service \"nothing\""), "{e}");
}

#[test]
fn profiles_leave_services_out_until_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[(
            "compose.yaml",
            "services:\n  web:\n    image: web\n  debug:\n    image: tools\n    profiles: [debug]\n",
        )],
    );
    let names = |p: Project| -> Vec<String> {
        convert(&p)
            .unwrap()
            .job
            .groups
            .iter()
            .map(|g| g.name.clone())
            .collect()
    };
    assert_eq!(names(project_in(dir.path(), &[], &[]).unwrap()), ["web"]);
    assert_eq!(
        names(project_in(dir.path(), &[], &[("COMPOSE_PROFILES", "debug")]).unwrap()),
        ["web", "debug"]
    );
    let p = Project::load(&Options {
        profiles: vec!["debug".into()],
        cwd: dir.path().to_path_buf(),
        ..Options::default()
    })
    .unwrap();
    assert_eq!(names(p), ["web", "debug"]);
}

#[test]
fn depends_on_orders_the_groups() {
    let c = one(
        "services:\n  web:\n    image: web\n    depends_on:\n      db:\n        condition: service_healthy\n        restart: true\n      cache:\n        condition: service_healthy\n      gone:\n        condition: service_started\n        required: false\n  db:\n    image: db\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n  cache:\n    image: cache\n  worker:\n    image: w\n    depends_on: [db]\n",
    )
    .unwrap();
    let deps = |g: &str| -> Vec<(String, DependCondition)> {
        c.job
            .group(g)
            .unwrap()
            .depends_on
            .iter()
            .map(|d| (d.group.clone(), d.condition))
            .collect()
    };
    assert_eq!(
        deps("web"),
        [
            ("db".to_string(), DependCondition::Healthy),
            ("cache".to_string(), DependCondition::Healthy)
        ]
    );
    assert_eq!(
        deps("worker"),
        [("db".to_string(), DependCondition::Started)]
    );
    let warned: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
    assert!(
        warned.contains(&"compose.yaml:7:9: services.web.depends_on.db.restart: `restart: true`: \"web\" is not restarted when \"db\" is updated (`edge compose restart web` does it)".to_string()),
        "{warned:#?}"
    );
    assert!(
        warned.contains(&"compose.yaml:9:9: services.web.depends_on.cache.condition: \"cache\" has no `healthcheck` here (an image's own HEALTHCHECK is not read): \"web\" waits for it to run".to_string()),
        "{warned:#?}"
    );
    assert!(
        warned
            .iter()
            .any(|w| w.contains("services.web.depends_on.gone: no service \"gone\"")),
        "{warned:#?}"
    );
    let e = error("services:\n  web:\n    image: web\n    depends_on: [cache]\n");
    assert!(e.contains("no service \"cache\" in the project"), "{e}");
    let c = one(
        "services:\n  app:\n    image: a\n    depends_on:\n      migrate:\n        condition: service_completed_successfully\n  migrate:\n    image: m\n",
    )
    .unwrap();
    assert!(c.job.group("migrate").unwrap().batch);
    assert!(!c.job.group("app").unwrap().batch);
    assert_eq!(
        c.job.group("app").unwrap().depends_on[0].condition,
        DependCondition::Completed
    );
    let e = error(
        "services:\n  web:\n    image: web\n    depends_on: [db]\n  db:\n    image: db\n    depends_on: [web]\n",
    );
    assert!(e.contains("cycle"), "{e}");
}

#[test]
fn a_misspelled_key_is_named_with_a_suggestion() {
    let e = error("services:\n  web:\n    imag: nginx\n");
    assert_eq!(
        e,
        "compose.yaml:3:5: services.web.imag: unknown key `imag` (did you mean `image`?); extension keys start with `x-`"
    );
    assert!(
        one("x-common: &c\n  image: web\nservices:\n  web:\n    <<: *c\n    x-note: kept\n")
            .is_ok()
    );
}

#[test]
fn bad_values_name_their_place() {
    for (text, want) in [
        (
            "services:\n  web:\n    image: w\n    deploy:\n      replicas: 100000\n",
            "compose.yaml:5:7: services.web.deploy.replicas: 100000 is more than 10000 replicas",
        ),
        (
            "services:\n  web:\n    image: w\n    ports: [\"53:53/sctp\"]\n",
            "compose.yaml:4:13: services.web.ports[0]: `sctp` ports",
        ),
        (
            "services:\n  web:\n    image: w\n    mem_limit: 9000000g\n",
            "compose.yaml:4:5: services.web.mem_limit:",
        ),
        (
            "services:\n  web:\n    image: w\n    stop_grace_period: 1000h\n",
            "longer than a day",
        ),
        (
            "services:\n  web:\n    image: w\n    volumes: [\"data:/d\"]\n",
            "volume \"data\" is not defined",
        ),
        (
            "services:\n  web_1:\n    image: w\n",
            "service name \"web_1\"",
        ),
        (
            "services:\n  web:\n    build: .\n",
            "compose.yaml:3:5: services.web.build: `build`: edge does not build images",
        ),
        ("services: [web]\n", "compose.yaml"),
        (
            "services:\n  web:\n    image: w\n   bad: indent\n",
            "compose.yaml:4:",
        ),
        (
            "services:\n  web:\n    image: w\n    secrets: [nope]\n",
            "nope",
        ),
    ] {
        let e = error(text);
        assert!(
            e.starts_with(want) || e.contains(want),
            "{text}\n  got:  {e}\n  want: {want}"
        );
    }
}

#[test]
fn hostile_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[("compose.yaml", "services:\n  web:\n    image: w\n")],
    );
    for name in ["../../etc", "Web", "a_b", "", "node"] {
        let e = Project::load(&Options {
            project_name: Some(name.into()),
            cwd: dir.path().to_path_buf(),
            ..Options::default()
        })
        .unwrap_err();
        assert!(
            e.to_string().starts_with(&format!("project name {name:?}")),
            "{e}"
        );
    }
    let e = error(
        "services:\n  web:\n    image: w\n    secrets: [s]\nsecrets:\n  s:\n    file: ../../../../../../etc/shadow-not-here\n",
    );
    assert!(e.contains("secrets.s.file"), "{e}");
}

/// Each refused key of the table, in a file of its own, is an error that
/// names the key, its service and its line, and says what to do.
#[test]
fn every_refused_key_has_its_message() {
    let mut seen = 0;
    for key in KEYS.iter().filter(|k| k.support == Support::No) {
        let (text, path, line) = match key.scope {
            Scope::Top => (
                format!("services:\n  web:\n    image: w\n{}: x\n", key.name),
                key.name.to_string(),
                4,
            ),
            Scope::Service => (
                format!("services:\n  web:\n    image: w\n    {}: x\n", key.name),
                format!("services.web.{}", key.name),
                4,
            ),
            Scope::Deploy => (
                format!(
                    "services:\n  web:\n    image: w\n    deploy:\n      {}: {{}}\n",
                    key.name
                ),
                format!("services.web.deploy.{}", key.name),
                5,
            ),
            Scope::Network => (
                format!(
                    "services:\n  web:\n    image: w\nnetworks:\n  n:\n    {}: x\n",
                    key.name
                ),
                format!("networks.n.{}", key.name),
                6,
            ),
            Scope::Volume => (
                format!(
                    "services:\n  web:\n    image: w\nvolumes:\n  v:\n    {}: x\n",
                    key.name
                ),
                format!("volumes.v.{}", key.name),
                6,
            ),
            Scope::Config => (
                format!(
                    "services:\n  web:\n    image: w\nconfigs:\n  c:\n    {}: x\n",
                    key.name
                ),
                format!("configs.c.{}", key.name),
                6,
            ),
            Scope::Secret => (
                format!(
                    "services:\n  web:\n    image: w\nsecrets:\n  s:\n    {}: x\n",
                    key.name
                ),
                format!("secrets.s.{}", key.name),
                6,
            ),
        };
        let e = error(&text);
        let col = if key.scope == Scope::Top {
            1
        } else if key.scope == Scope::Deploy {
            7
        } else {
            5
        };
        assert_eq!(
            e,
            format!(
                "compose.yaml:{line}:{col}: {path}: `{}`: {}",
                key.name, key.note
            ),
            "{}",
            key.name
        );
        seen += 1;
    }
    assert!(seen > 50, "{seen}");
}

#[test]
fn ignored_keys_warn() {
    let c =
        one("services:\n  web:\n    image: w\n    container_name: web1\n    tty: true\n").unwrap();
    let w: Vec<String> = c.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].starts_with("compose.yaml:4:5: services.web.container_name: `container_name` ignored"),
        "{w:?}"
    );
}

#[test]
fn ports_volumes_and_placement_map_to_edge() {
    let c = one(
        "services:\n  web:\n    image: w\n    ports:\n      - \"8000-8002:80-82\"\n      - target: 9000\n        published: \"9000\"\n        mode: host\n      - \"7000\"\n    volumes:\n      - type: bind\n        source: /srv/site\n        target: /www\n        read_only: true\n    deploy:\n      placement:\n        constraints: [\"node.labels.zone==eu\", \"node.hostname != old\"]\n        preferences:\n          - spread: node.labels.rack\n      resources:\n        limits: {cpus: \"0.5\", memory: 256M}\n      restart_policy:\n        condition: on-failure\n        max_attempts: 4\n",
    )
    .unwrap();
    let g = &c.job.groups[0];
    let published: Vec<u16> = g
        .services
        .iter()
        .filter_map(|s| s.publish.as_ref().map(|p| p.port))
        .collect();
    assert_eq!(published, [8000, 8001, 8002]);
    let host: Vec<(Option<u16>, Option<u16>)> = g
        .network
        .ports
        .iter()
        .map(|p| (p.static_port, p.to))
        .collect();
    assert_eq!(
        host,
        [
            (None, Some(80)),
            (None, Some(81)),
            (None, Some(82)),
            (Some(9000), Some(9000)),
            (None, Some(7000))
        ]
    );
    assert_eq!(
        g.tasks[0].config["volumes"],
        serde_json::json!(["/srv/site:/www:ro"])
    );
    assert_eq!(g.constraints[0].attribute, "${meta.zone}");
    assert_eq!(g.constraints[1].value, "old");
    assert_eq!(g.spreads[0].attribute, "${meta.rack}");
    assert_eq!(
        (g.tasks[0].resources.cpu, g.tasks[0].resources.memory),
        (500, 256)
    );
    assert_eq!(g.restart.attempts, 4);
    assert_eq!(edge_spec::validate(&c.job), []);
}

/// Every Compose file under `examples/compose/` and `tests/compose/`
/// converts into a job the server would take.
#[test]
fn the_corpus_converts() {
    let dirs = corpus();
    for dir in &dirs {
        let p = project_in(dir, &[], &[]).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let c = convert(&p).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert_eq!(edge_spec::validate(&c.job), [], "{}", dir.display());
    }
    assert!(dirs.len() >= 6, "{} projects", dirs.len());
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("x".to_string()),
            Just("\"80:80\"".to_string()),
            Just("[a, b]".to_string()),
            Just("{a: 1}".to_string()),
            Just("-1".to_string()),
            Just("99999999999999999999".to_string()),
            Just("\"${A:-1}\"".to_string()),
            Just("\"${\"".to_string()),
            Just("null".to_string()),
            Just("\"../../etc\"".to_string()),
            "[a-z0-9:/.-]{0,12}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A service with any known keys holding odd values loads and
        /// converts or says why; it never panics.
        #[test]
        fn odd_values_are_answers_not_panics(
            picks in proptest::collection::vec((0..KEYS.len(), scalar()), 1..6)
        ) {
            let mut text = String::from("services:\n  web:\n    image: w\n");
            for (i, v) in &picks {
                let k = &KEYS[*i];
                if k.scope == Scope::Service && k.name != "image" {
                    text.push_str(&format!("    {}: {v}\n", k.name));
                }
            }
            match one(&text) {
                Ok(c) => prop_assert_eq!(edge_spec::validate(&c.job), vec![]),
                Err(e) => prop_assert!(e.to_string().starts_with("compose.yaml"), "{}", e),
            }
        }

        /// Any text as a Compose file is an error naming the file, or a job.
        #[test]
        fn any_text_is_an_answer(text in "[a-z:{}\\[\\]$ \n-]{0,80}") {
            if let Err(e) = one(&text) {
                prop_assert!(e.to_string().starts_with("compose.yaml"), "{}", e);
            }
        }
    }
}

#[test]
fn global_mode_runs_the_service_on_every_node() {
    let c = one(
        "services:\n  exporter:\n    image: e\n    deploy:\n      mode: global\n  web:\n    image: w\n    depends_on: [exporter]\n",
    )
    .unwrap();
    assert!(c.job.group("exporter").unwrap().system);
    assert!(!c.job.group("web").unwrap().system);
    assert_eq!(c.job.job_type, edge_spec::JobType::Service);
    let e = error(
        "services:\n  exporter:\n    image: e\n    deploy:\n      mode: global\n      replicas: 2\n",
    );
    assert_eq!(
        e,
        "compose.yaml:6:7: services.exporter.deploy.replicas: `replicas` does not apply to `mode: global`: one replica runs on every node"
    );
    let e = error("services:\n  once:\n    image: e\n    deploy:\n      mode: replicated-job\n");
    assert!(
        e.starts_with(
            "compose.yaml:5:7: services.once.deploy.mode: unknown variant `replicated-job`"
        ),
        "{e}"
    );
    let e = error(
        "services:\n  exporter:\n    image: e\n    deploy:\n      mode: global\n    volumes: [\"data:/data\"]\nvolumes:\n  data: {}\n",
    );
    assert!(e.contains("cannot keep a local volume per copy"), "{e}");
}

#[test]
fn a_udp_port_maps_on_the_replicas_node() {
    let c = one(
        "services:\n  dns:\n    image: d\n    ports:\n      - target: 53\n        published: \"5353\"\n        protocol: udp\n        mode: host\n",
    )
    .unwrap();
    let ports = &c.job.group("dns").unwrap().network.ports;
    assert_eq!(ports.len(), 1);
    assert_eq!((ports[0].static_port, ports[0].to), (Some(5353), Some(53)));
    assert!(c.job.group("dns").unwrap().services[0].publish.is_none());

    // On the routing mesh: one port, TCP and UDP, two services.
    let c = one("services:\n  dns:\n    image: d\n    ports: [\"53:53/udp\", \"53:53/tcp\"]\n")
        .unwrap();
    let published: Vec<(String, u16, PublishProtocol)> = c
        .job
        .group("dns")
        .unwrap()
        .services
        .iter()
        .filter_map(|s| {
            Some((
                s.name.clone(),
                s.publish.as_ref()?.port,
                s.publish.as_ref()?.protocol,
            ))
        })
        .collect();
    assert_eq!(
        published,
        [
            ("dns".to_string(), 53, PublishProtocol::Udp),
            ("dns-53".to_string(), 53, PublishProtocol::Tcp)
        ]
    );
}

#[test]
fn rollouts_start_the_new_replica_first() {
    let file = |order: &str| {
        format!(
            "services:\n  web:\n    image: w\n    deploy:\n      update_config:\n        parallelism: 2\n        order: {order}\n"
        )
    };
    let c = one(&file("start-first")).unwrap();
    let u = c.job.group("web").unwrap().update.clone().unwrap();
    assert_eq!(u.max_parallel, Some(2));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let c = one(&file("stop-first")).unwrap();
    let warned: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warned,
        [
            "compose.yaml:7:9: services.web.deploy.update_config.order: `stop-first`: edge rolls out start-first, each new replica healthy before its old one stops (room for `parallelism` more replicas is needed)"
        ]
    );
}

#[test]
fn rollback_config_paces_the_automatic_rollback() {
    let c = one(
        "services:\n  web:\n    image: w\n    deploy:\n      update_config:\n        parallelism: 1\n        failure_action: rollback\n      rollback_config:\n        parallelism: 3\n        monitor: 10s\n",
    )
    .unwrap();
    let u = c.job.group("web").unwrap().update.clone().unwrap();
    assert_eq!((u.max_parallel, u.auto_revert), (Some(1), Some(true)));
    let r = u.rollback.unwrap();
    assert_eq!(r.max_parallel, Some(3));
    assert_eq!(
        r.min_healthy_time.unwrap().0,
        std::time::Duration::from_secs(10)
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let c = one(
        "services:\n  web:\n    image: w\n    deploy:\n      rollback_config:\n        parallelism: 3\n",
    )
    .unwrap();
    assert_eq!(
        c.warnings[0].to_string(),
        "compose.yaml:5:7: services.web.deploy.rollback_config: used only when `update_config` has `failure_action: rollback` (edge rolls back on its own then, not by command)"
    );
    let e = error(
        "services:\n  web:\n    image: w\n    deploy:\n      rollback_config:\n        failure_action: continue\n",
    );
    assert_eq!(
        e,
        "compose.yaml:6:9: services.web.deploy.rollback_config.failure_action: \"continue\": `pause` (`continue` is not supported yet)"
    );
}

#[test]
fn configs_and_secrets_land_on_their_targets() {
    let c = one(
        "services:\n  web:\n    image: w\n    configs:\n      - source: site\n        target: /local/site.conf\n      - site\n    secrets:\n      - source: key\n        target: /etc/ssl/key.pem\n      - source: key\n        target: tls.key\nconfigs:\n  site:\n    content: x\nsecrets:\n  key:\n    external: true\n",
    )
    .unwrap();
    let task = &c.job.group("web").unwrap().tasks[0];
    let dest = |refs: &[edge_spec::DataRef]| -> Vec<String> {
        refs.iter().map(|r| r.destination.clone()).collect()
    };
    assert_eq!(dest(&task.configs), ["local/site.conf", "configs/site"]);
    assert_eq!(
        dest(&task.secrets),
        ["secrets/.compose/key", "secrets/tls.key"]
    );
    assert_eq!(
        task.config["volumes"],
        serde_json::json!(["${EDGE_SECRETS_DIR}/.compose/key:/etc/ssl/key.pem:ro"])
    );
    for (target, want) in [
        ("../etc/passwd", "a path without `..` or `:`"),
        ("/a:/b", "a path without `..` or `:`"),
        ("relative.conf", "a config's target is an absolute path"),
    ] {
        let e = error(&format!(
            "services:\n  web:\n    image: w\n    configs:\n      - source: site\n        target: {target}\nconfigs:\n  site:\n    content: x\n"
        ));
        assert!(e.ends_with(want), "{target}: {e}");
    }
}
