//! The `model` block of a job file: a model server in a few lines. At parse
//! time it becomes an ordinary group — one task on the `model` driver, an
//! `http` port, a service with a readiness check — so the scheduler, the
//! catalog and `edge job plan` see nothing special.

use crate::job::{Group, Resources, UpdatePolicy};
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

/// The driver that runs model tasks.
pub const MODEL_DRIVER: &str = "model";
/// The port label of a model group.
pub const MODEL_PORT: &str = "http";
/// The port label of a model group's gRPC endpoint, with a `grpc` block.
pub const MODEL_GRPC_PORT: &str = "grpc";
/// The name of the task in a model group.
pub const MODEL_TASK: &str = "server";
/// The Open Inference Protocol readiness route the service check probes.
pub const READY_PATH: &str = "/v2/health/ready";

/// A decoded `model "NAME" { ... }` block.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub name: String,
    /// A path on the node, or an http(s) URL (then `sha256` is required).
    pub source: String,
    pub sha256: Option<String>,
    pub format: String,
    pub count: u32,
    /// A static port; dynamic when `None`.
    pub port: Option<u16>,
    pub resources: Resources,
    pub max_batch_size: u32,
    pub max_delay: Duration,
    /// The catalog name; the model's name by default.
    pub service_name: Option<String>,
    pub tags: Vec<String>,
    /// `service { publish { port } }`, kept for the load balancer in the task config.
    pub publish_port: Option<u16>,
    /// How a new version of the model rolls out (a weighted canary, say).
    pub update: Option<UpdatePolicy>,
    /// Serve gRPC too (`grpc { ... }`).
    pub grpc: Option<ModelGrpc>,
    /// The version number `source` is served as.
    pub version: u64,
    /// More models, or more versions of this one, in the same server.
    pub models: Vec<MoreModel>,
    /// The group's `scaling` (KServe's `minReplicas: 0` is `min = 0`).
    pub scaling: Option<crate::scaling::Scaling>,
    /// What runs the models: `tract` or `onnxruntime`.
    pub backend: ModelBackend,
    /// Model runs at once per model version; one per CPU the server sees
    /// when `None`.
    pub workers: Option<u32>,
}

/// A `model "NAME" { source version sha256 }` block inside a model block:
/// one more model version the same server serves.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MoreModel {
    pub name: String,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default = "first_version")]
    pub version: u64,
}

fn first_version() -> u64 {
    1
}

/// A model name as a URL path segment and a metrics label: letters,
/// digits, `_`, `-` and `.`, not starting with `.` (so never `..`).
pub fn valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl ModelSpec {
    pub fn new(name: impl Into<String>, source: impl Into<String>) -> ModelSpec {
        ModelBlock {
            source: source.into(),
            ..ModelBlock::default()
        }
        .into_spec(name)
    }
}

/// The body of a `model "NAME" { ... }` block as written, with its defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelBlock {
    pub source: String,
    pub sha256: Option<String>,
    pub format: ModelFormat,
    pub count: u32,
    pub port: Option<u16>,
    pub resources: Resources,
    pub batching: Batching,
    pub service: ModelService,
    pub update: Option<UpdatePolicy>,
    pub version: u64,
    /// Nested `model "NAME" { ... }` blocks.
    pub models: Vec<MoreModel>,
    pub grpc: Option<ModelGrpc>,
    pub scaling: Option<crate::scaling::Scaling>,
    pub backend: ModelBackend,
    /// Model runs at once per model version (default: one per CPU). On the
    /// onnxruntime backend each holds its own copy of the weights.
    pub workers: Option<u32>,
}

/// `backend = "onnxruntime"`: ONNX Runtime's shared library on the node runs
/// the models instead of the built-in tract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ModelBackend {
    #[default]
    Tract,
    Onnxruntime,
}

/// Most model runs at once a `workers` may ask for.
pub const MAX_WORKERS: u32 = 256;

/// The node attribute listing the backends a node's model driver found
/// (`tract,onnxruntime`), as a constraint names it. A model block on a
/// backend other than tract is placed only where the list has it.
pub const BACKENDS_ATTRIBUTE: &str = "${attr.driver.model.backends}";

impl ModelBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelBackend::Tract => "tract",
            ModelBackend::Onnxruntime => "onnxruntime",
        }
    }
}

impl Default for ModelBlock {
    fn default() -> Self {
        ModelBlock {
            source: String::new(),
            sha256: None,
            format: ModelFormat::Onnx,
            count: 1,
            port: None,
            resources: Resources::default(),
            batching: Batching::default(),
            service: ModelService::default(),
            update: None,
            version: 1,
            models: Vec::new(),
            grpc: None,
            scaling: None,
            backend: ModelBackend::Tract,
            workers: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ModelFormat {
    #[default]
    Onnx,
}

/// `batching { max_batch_size = 32 max_delay = "2ms" }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Batching {
    pub max_batch_size: u32,
    #[serde(with = "crate::duration")]
    pub max_delay: Duration,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            max_batch_size: 32,
            max_delay: Duration::from_millis(2),
        }
    }
}

/// `service { name = "..." tags = [...] publish { port = 8080 } }`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ModelService {
    pub name: Option<String>,
    pub tags: Vec<String>,
    pub publish: Option<ModelPublish>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPublish {
    pub port: u16,
}

/// `grpc { port = 8501 publish { port = 9001 } }`: the Open Inference
/// Protocol over gRPC on a second port (dynamic unless `port` is given),
/// published through the load balancer as TCP when `publish` is.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ModelGrpc {
    pub port: Option<u16>,
    pub publish: Option<ModelPublish>,
}

impl ModelBlock {
    /// What serde cannot say about the block: (field under the block, message).
    pub fn problems(&self, name: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut push = |field: &str, message: String| out.push((field.to_string(), message));
        if self.source.trim().is_empty() {
            push(
                "source",
                "model needs a `source`: a path on the node or an http(s) URL".to_string(),
            );
        }
        if let Some(message) = sha256_problem(self.sha256.as_deref(), &self.source) {
            push("sha256", message);
        }
        if self.version == 0 {
            push("version", "versions start at 1".to_string());
        }
        let mut seen = vec![(name.to_string(), self.version)];
        for m in &self.models {
            let at = |f: &str| format!("model.{}.{f}", m.name);
            if !valid_model_name(&m.name) {
                push(
                    &at("name"),
                    format!(
                        "{:?} is not a model name (letters, digits, '_', '-' and '.')",
                        m.name
                    ),
                );
            }
            if m.source.trim().is_empty() {
                push(&at("source"), "needs a `source`".to_string());
            }
            if let Some(message) = sha256_problem(m.sha256.as_deref(), &m.source) {
                push(&at("sha256"), message);
            }
            if m.version == 0 {
                push(&at("version"), "versions start at 1".to_string());
            }
            let key = (m.name.clone(), m.version);
            if seen.contains(&key) {
                push(
                    &at("version"),
                    format!("{:?} version {} is given twice", m.name, m.version),
                );
            }
            seen.push(key);
        }
        if !(1..=65_536).contains(&self.batching.max_batch_size) {
            push(
                "batching.max_batch_size",
                format!(
                    "expected a whole number from 1 to 65536, got {}",
                    self.batching.max_batch_size
                ),
            );
        }
        if let Some(w) = self.workers
            && !(1..=MAX_WORKERS).contains(&w)
        {
            push(
                "workers",
                format!("expected a whole number from 1 to {MAX_WORKERS}, got {w}"),
            );
        }
        out
    }

    pub fn into_spec(self, name: impl Into<String>) -> ModelSpec {
        ModelSpec {
            name: name.into(),
            source: self.source,
            sha256: self.sha256.map(|s| s.to_ascii_lowercase()),
            format: match self.format {
                ModelFormat::Onnx => "onnx".to_string(),
            },
            count: self.count,
            port: self.port,
            resources: self.resources,
            max_batch_size: self.batching.max_batch_size,
            max_delay: self.batching.max_delay,
            service_name: self.service.name,
            tags: self.service.tags,
            publish_port: self.service.publish.map(|p| p.port),
            update: self.update,
            version: self.version,
            models: self
                .models
                .into_iter()
                .map(|m| MoreModel {
                    sha256: m.sha256.map(|s| s.to_ascii_lowercase()),
                    ..m
                })
                .collect(),
            grpc: self.grpc,
            scaling: self.scaling,
            backend: self.backend,
            workers: self.workers,
        }
    }
}

/// What is wrong with a model's `sha256` for its `source`, if anything.
fn sha256_problem(sha256: Option<&str>, source: &str) -> Option<String> {
    match sha256 {
        Some(s) if !(s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())) => Some(format!(
            "expected a sha256 of 64 hexadecimal digits, got {s:?}"
        )),
        None if is_url(source.trim()) => {
            Some("is required when the source is a URL, to check the download".to_string())
        }
        _ => None,
    }
}

pub fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// The group a model block stands for. It is built through serde so that
/// fields added to `Group`, `Service` or `Task` later take their defaults.
pub fn expand(spec: &ModelSpec) -> Result<Group, String> {
    let mut config = json!({
        "source": spec.source,
        "format": spec.format,
        "name": spec.name,
        "max_batch_size": spec.max_batch_size,
        "max_delay_ms": u64::try_from(spec.max_delay.as_millis()).unwrap_or(u64::MAX),
        "port": MODEL_PORT,
    });
    if let Some(sha) = &spec.sha256 {
        config["sha256"] = json!(sha);
    }
    if let Some(port) = spec.publish_port {
        config["publish"] = json!({ "port": port });
    }
    // Left out at their defaults, so a job written before them keeps its hash.
    if spec.version != 1 {
        config["version"] = json!(spec.version);
    }
    if !spec.models.is_empty() {
        config["models"] = json!(spec.models);
    }
    if spec.backend != ModelBackend::Tract {
        config["backend"] = json!(spec.backend.as_str());
    }
    if let Some(w) = spec.workers {
        config["workers"] = json!(w);
    }
    let mut port = json!({ "label": MODEL_PORT });
    if let Some(p) = spec.port {
        port["static"] = json!(p);
    }
    // The model server speaks HTTP: the routing mesh serves it as such.
    let publish = spec
        .publish_port
        .map(|p| json!({ "port": p, "protocol": "http" }));
    let service_name = spec
        .service_name
        .clone()
        .unwrap_or_else(|| spec.name.clone());
    let mut ports = vec![port];
    let mut services = vec![json!({
        "name": service_name,
        "port": MODEL_PORT,
        "tags": spec.tags,
        "publish": publish,
        "checks": [{
            "name": "ready",
            "type": "http",
            "path": READY_PATH,
            "interval": "10s",
            "timeout": "2s",
        }],
    })];
    if let Some(grpc) = &spec.grpc {
        config["grpc_port"] = json!(MODEL_GRPC_PORT);
        let mut port = json!({ "label": MODEL_GRPC_PORT });
        if let Some(p) = grpc.port {
            port["static"] = json!(p);
        }
        ports.push(port);
        // gRPC is HTTP/2: the load balancer passes it through as TCP.
        let publish = grpc
            .publish
            .as_ref()
            .map(|p| json!({ "port": p.port, "protocol": "tcp" }));
        services.push(json!({
            "name": format!("{service_name}-grpc"),
            "port": MODEL_GRPC_PORT,
            "tags": spec.tags,
            "publish": publish,
            "checks": [{
                "name": "grpc-health",
                "type": "grpc",
                "interval": "10s",
                "timeout": "2s",
            }],
        }));
    }
    // tract is built into every agent; another backend is on some nodes.
    let constraints = match spec.backend {
        ModelBackend::Tract => json!([]),
        b => json!([{
            "attribute": BACKENDS_ATTRIBUTE,
            "operator": "set_contains",
            "value": b.as_str(),
        }]),
    };
    let group = json!({
        "name": spec.name,
        "count": spec.count,
        "constraints": constraints,
        "network": { "ports": ports },
        "services": services,
        "tasks": [{
            "name": MODEL_TASK,
            "driver": MODEL_DRIVER,
            "config": config,
            "resources": spec.resources,
        }],
    });
    let mut group: Group = serde_json::from_value(group)
        .map_err(|e| format!("expanding model {:?}: {e}", spec.name))?;
    group.update.clone_from(&spec.update);
    group.scaling.clone_from(&spec.scaling);
    Ok(group)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::CheckType;
    use crate::{ParseOptions, SpecError, parse_hcl};

    const JOB: &str = r#"
job "ml" {
  model "iris" {
    source = "models/iris.onnx"
    count  = 2
    resources {
      cpu    = 200
      memory = 64
    }
    batching {
      max_batch_size = 16
      max_delay      = "5ms"
    }
    service {
      name = "iris-api"
      tags = ["ml"]
      publish {
        port = 8080
      }
    }
  }
}
"#;

    fn parse(src: &str, file: &str) -> Result<crate::Parsed, SpecError> {
        parse_hcl(src, &ParseOptions::new(file))
    }

    fn errors(src: &str) -> Vec<String> {
        match parse(src, "job.hcl") {
            Ok(p) => panic!("expected errors, parsed {:?}", p.job),
            Err(e) => e.diagnostics().iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn a_model_block_becomes_an_ordinary_group() {
        let job = parse(JOB, "examples/model.hcl").unwrap().job;
        assert_eq!(job.groups.len(), 1);
        let g = &job.groups[0];
        assert_eq!((g.name.as_str(), g.count), ("iris", 2));
        assert_eq!(g.network.ports.len(), 1);
        assert_eq!(g.network.ports[0].label, "http");
        assert_eq!(g.network.ports[0].static_port, None);
        let s = &g.services[0];
        assert_eq!(s.name, "iris-api");
        assert_eq!(s.port.as_deref(), Some("http"));
        assert_eq!(s.tags, ["ml"]);
        assert_eq!(s.checks[0].check_type, CheckType::Http);
        assert_eq!(s.checks[0].path.as_deref(), Some(READY_PATH));
        let t = &g.tasks[0];
        assert_eq!((t.name.as_str(), t.driver.as_str()), ("server", "model"));
        assert_eq!((t.resources.cpu, t.resources.memory), (200, 64));
        assert_eq!(
            serde_json::Value::Object(t.config.clone()),
            json!({
                "source": "examples/models/iris.onnx",
                "format": "onnx",
                "name": "iris",
                "max_batch_size": 16,
                "max_delay_ms": 5,
                "port": "http",
                "publish": {"port": 8080},
            })
        );
    }

    /// A new model version rolls out as a weighted canary.
    #[test]
    fn a_model_takes_an_update_block() {
        let src = JOB.replace(
            "    count  = 2\n",
            "    count  = 2\n    update {\n      canary        = 1\n      canary_weight = 20\n      min_healthy_time = \"2s\"\n    }\n",
        );
        let job = parse(&src, "/abs/job.hcl").unwrap().job;
        let g = job.group("iris").unwrap();
        let rules = crate::Update::resolve(&job, g);
        assert_eq!((rules.canary, rules.canary_weight), (1, Some(20)));
        assert_eq!(rules.min_healthy_time, Duration::from_secs(2));
        let bad = JOB.replace(
            "    count  = 2\n",
            "    count  = 2\n    update {\n      canary_weight = 20\n    }\n",
        );
        let err = parse(&bad, "/abs/job.hcl").unwrap_err().to_string();
        assert!(err.contains("needs canaries"), "{err}");
        let typo = JOB.replace(
            "    count  = 2\n",
            "    count  = 2\n    update {\n      canari = 1\n    }\n",
        );
        let err = parse(&typo, "/abs/job.hcl").unwrap_err().to_string();
        assert!(
            err.contains("job.ml.model.iris.update.canari: unknown attribute `canari`: did you mean `canary`?"),
            "{err}"
        );
    }

    #[test]
    fn defaults_static_port_urls_and_other_groups() {
        let src = r#"
job "ml" {
  group "web" {
    task "t" {
      driver = "exec"
      config { command = "true" }
    }
  }
  model "mlp" {
    source = "https://models.example/mlp.onnx"
    sha256 = "ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
    port   = 8500
  }
}
"#;
        let job = parse(src, "/abs/job.hcl").unwrap().job;
        assert_eq!(job.groups.len(), 2);
        let g = job.group("mlp").unwrap();
        assert_eq!(g.count, 1);
        assert_eq!(g.services[0].name, "mlp");
        assert_eq!(g.network.ports[0].static_port, Some(8500));
        let c = &g.tasks[0].config;
        assert_eq!(c["source"], "https://models.example/mlp.onnx");
        assert_eq!(
            c["sha256"],
            "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
        );
        assert_eq!(
            (c["max_batch_size"].as_u64(), c["max_delay_ms"].as_u64()),
            (Some(32), Some(2))
        );
        assert!(c.get("publish").is_none());
    }

    #[test]
    fn a_backend_goes_to_the_driver_and_a_wrong_one_names_its_line() {
        let job = parse(
            "job \"j\" {\n  model \"m\" {\n    source = \"m.onnx\"\n    backend = \"onnxruntime\"\n  }\n}\n",
            "job.hcl",
        )
        .unwrap()
        .job;
        assert_eq!(job.groups[0].tasks[0].config["backend"], "onnxruntime");
        // Placed only where the model driver found ONNX Runtime.
        assert_eq!(
            job.groups[0].constraints,
            [crate::Constraint {
                attribute: BACKENDS_ATTRIBUTE.to_string(),
                operator: crate::ConstraintOp::SetContains,
                value: "onnxruntime".to_string(),
            }]
        );
        let job = parse(
            "job \"j\" {\n  model \"m\" {\n    source = \"m.onnx\"\n  }\n}\n",
            "job.hcl",
        )
        .unwrap()
        .job;
        assert!(job.groups[0].tasks[0].config.get("backend").is_none());
        assert!(job.groups[0].constraints.is_empty());
        assert!(job.groups[0].tasks[0].config.get("workers").is_none());
        let e = errors(
            "job \"j\" {\n  model \"m\" {\n    source = \"m.onnx\"\n    backend = \"onnx\"\n  }\n}\n",
        );
        assert!(
            e[0].starts_with("job.hcl:4:") && e[0].contains("onnxruntime"),
            "{e:?}"
        );
    }

    #[test]
    fn workers_go_to_the_driver_and_a_bad_count_names_its_line() {
        let job = parse(
            "job \"j\" {\n  model \"m\" {\n    source  = \"m.onnx\"\n    workers = 2\n  }\n}\n",
            "job.hcl",
        )
        .unwrap()
        .job;
        assert_eq!(job.groups[0].tasks[0].config["workers"], 2);
        for bad in ["0", "257", "-1", "\"two\""] {
            let e = errors(&format!(
                "job \"j\" {{\n  model \"m\" {{\n    source  = \"m.onnx\"\n    workers = {bad}\n  }}\n}}\n"
            ));
            assert!(
                e[0].starts_with("job.hcl:4:") && e[0].contains("workers"),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn bad_model_blocks_name_the_line_and_field() {
        let e = errors("job \"j\" {\n  model \"m\" {\n    count = 1\n  }\n}\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("job.hcl:2:3: job.j.model.m.source:"),
            "{e:?}"
        );
        let e = errors("job \"j\" {\n  model \"m\" {\n    source = \"http://x/m.onnx\"\n  }\n}\n");
        assert!(
            e[0].contains("job.j.model.m.sha256") && e[0].contains("required"),
            "{e:?}"
        );
        let e = errors(
            "job \"j\" {\n  model \"m\" {\n    source = \"m.onnx\"\n    sha256 = \"abc\"\n    format = \"tflite\"\n  }\n}\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("job.hcl:4:14: job.j.model.m.sha256:"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("job.hcl:5:14: job.j.model.m.format:"),
            "{e:?}"
        );
        let e = errors(
            "job \"j\" {\n  model \"m\" {\n    source = \"m.onnx\"\n    batching {\n      max_batch_size = 0\n    }\n  }\n}\n",
        );
        assert!(e[0].contains("max_batch_size"), "{e:?}");
        let e = errors("job \"j\" {\n  model \"Bad_Name\" {\n    source = \"m.onnx\"\n  }\n}\n");
        assert!(e[0].starts_with("job.hcl:2:3:"), "{e:?}");
    }

    /// Several models and versions in one server.
    #[test]
    fn nested_model_blocks_add_models_and_versions() {
        let src = r#"
job "ml" {
  model "iris" {
    source  = "models/iris-1.onnx"
    model "iris" {
      source  = "models/iris-2.onnx"
      version = 2
    }
    model "mlp" {
      source = "https://models.example/mlp.onnx"
      sha256 = "ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
    }
  }
}
"#;
        let job = parse(src, "/jobs/ml.hcl").unwrap().job;
        let c = &job.groups[0].tasks[0].config;
        assert!(c.get("version").is_none());
        assert_eq!(
            c["models"],
            json!([
                {"name": "iris", "source": "/jobs/models/iris-2.onnx", "version": 2},
                {
                    "name": "mlp",
                    "source": "https://models.example/mlp.onnx",
                    "sha256": "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
                    "version": 1
                },
            ])
        );
        let bad = src
            .replace("version = 2", "version = 1")
            .replace("    sha256 = \"ABCDEF", "    sha = \"ABCDEF");
        let e = errors(&bad);
        assert!(
            e.iter()
                .any(|e| e.contains("job.ml.model.iris.model.iris.version")
                    && e.contains("given twice")),
            "{e:?}"
        );
        assert!(e.iter().any(|e| e.contains("`sha`")), "{e:?}");
        let e = errors(&src.replace("model \"mlp\"", "model \"../etc\""));
        assert!(e.iter().any(|e| e.contains("not a model name")), "{e:?}");
    }

    #[test]
    fn a_grpc_block_adds_a_port_a_service_and_the_driver_argument() {
        let src = JOB.replace(
            "    count  = 2\n",
            "    count  = 2\n    grpc {\n      port = 8501\n      publish {\n        port = 9001\n      }\n    }\n",
        );
        let job = parse(&src, "/abs/job.hcl").unwrap().job;
        let g = job.group("iris").unwrap();
        assert_eq!(g.network.ports[1].label, MODEL_GRPC_PORT);
        assert_eq!(g.network.ports[1].static_port, Some(8501));
        let s = &g.services[1];
        assert_eq!(s.name, "iris-api-grpc");
        assert_eq!(s.port.as_deref(), Some(MODEL_GRPC_PORT));
        let publish = s.publish.as_ref().unwrap();
        assert_eq!(
            (publish.port, publish.protocol),
            (9001, crate::job::PublishProtocol::Tcp)
        );
        assert_eq!(s.checks[0].check_type, CheckType::Grpc);
        assert_eq!(g.tasks[0].config["grpc_port"], MODEL_GRPC_PORT);

        let bare = JOB.replace("    count  = 2\n", "    count  = 2\n    grpc {}\n");
        let job = parse(&bare, "/abs/job.hcl").unwrap().job;
        let g = job.group("iris").unwrap();
        assert_eq!(g.network.ports[1].static_port, None);
        assert!(g.services[1].publish.is_none());
        let typo = JOB.replace(
            "    count  = 2\n",
            "    count  = 2\n    grpc {\n      prot = 1\n    }\n",
        );
        let err = parse(&typo, "/abs/job.hcl").unwrap_err().to_string();
        assert!(err.contains("job.ml.model.iris.grpc.prot"), "{err}");
        let job = parse(JOB, "/abs/job.hcl").unwrap().job;
        assert!(job.groups[0].tasks[0].config.get("grpc_port").is_none());
    }

    #[test]
    fn example_model_job_parses() {
        let job = parse(crate::EXAMPLE_MODEL_JOB, "model.hcl").unwrap().job;
        assert_eq!(job.groups[0].tasks[0].driver, MODEL_DRIVER);
    }
}
