//! The `model` driver. A model task runs `edge model serve` as an exec task
//! (a child process of its own executor, under the task's cgroup limits),
//! so a model that crashes or runs out of memory never touches the agent.
//! This driver only checks the config, fetches the model file, turns the
//! config into the exec driver's, and says why a server that exited failed.

use crate::fetch;
use async_trait::async_trait;
use edge_driver::{Driver, DriverError, EventSink, ExitResult, TaskConfig, TaskHandle, TaskStats};
use edge_spec::DriverInfo;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const DRIVER_NAME: &str = "model";
/// How much of the end of stderr is searched for the server's fatal error.
const STDERR_TAIL: u64 = 8 * 1024;

/// One model version of a task: a file, a URL or a repository directory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    name: String,
    version: u64,
    source: String,
    sha256: Option<String>,
    /// Where in the config it was given, for errors: `config` or `config.models[1]`.
    field: String,
}

/// A checked `model` task config.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelTask {
    /// The block's own model first, then its nested ones.
    sources: Vec<Source>,
    max_batch_size: u64,
    max_delay_ms: u64,
    port: String,
    /// The port label to serve gRPC on, if any.
    grpc_port: Option<String>,
    /// `tract` or `onnxruntime`.
    backend: String,
    /// Model runs at once per version; the server's default when `None`.
    workers: Option<u64>,
}

/// The model driver's `config` block as written in a job (or as the `model`
/// block expands): the one schema, checked at submit and again on the agent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelBlock {
    pub source: Option<String>,
    pub sha256: Option<String>,
    pub format: Option<String>,
    pub name: Option<String>,
    pub max_batch_size: Option<u64>,
    pub max_delay_ms: Option<u64>,
    pub port: Option<String>,
    /// The label of the port to serve gRPC on, too.
    pub grpc_port: Option<String>,
    /// The `model` block's `service { publish }`; the driver does not read it.
    pub publish: Option<Value>,
    /// The version `source` is served as (1 when not given).
    pub version: Option<u64>,
    /// More models or versions in the same server.
    pub models: Option<Vec<edge_spec::model::MoreModel>>,
    /// What runs the models: `tract` (the default) or `onnxruntime`.
    pub backend: Option<String>,
    /// Model runs at once per model version (default: one per CPU).
    pub workers: Option<u64>,
}

/// The submit-time check of a model task's `config` block. Values that
/// still hold a `${...}` are checked on the agent, once filled in.
pub fn check_config(config: &Map<String, Value>) -> Result<(), DriverError> {
    checked(
        edge_driver::config::decode(config)?,
        edge_driver::config::is_interpolated,
    )
    .map(drop)
}

fn parse(config: &Map<String, Value>) -> Result<ModelTask, DriverError> {
    checked(edge_driver::config::decode(config)?, |_| false)
}

/// Checks the block's values; one that is `pending` (a `${...}` at submit)
/// is left for the agent to check once filled in.
fn checked(block: ModelBlock, pending: fn(&str) -> bool) -> Result<ModelTask, DriverError> {
    let string = |key: &str, value: Option<String>| match value {
        None => Ok(None),
        Some(s) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
        Some(_) => Err(DriverError::config(
            format!("config.{key}"),
            "must be a non-empty string",
        )),
    };
    let source = string("source", block.source)?
        .ok_or_else(|| DriverError::config("config.source", "is required"))?;
    let name = string("name", block.name)?
        .ok_or_else(|| DriverError::config("config.name", "is required"))?;
    let mut sources = vec![source_of(
        "config",
        name,
        block.version.unwrap_or(1),
        source,
        block.sha256,
        pending,
    )?];
    for (i, m) in block.models.unwrap_or_default().into_iter().enumerate() {
        let field = format!("config.models[{i}]");
        if !edge_spec::model::valid_model_name(&m.name) {
            return Err(DriverError::config(
                format!("{field}.name"),
                format!(
                    "{:?} is not a model name (letters, digits, '_', '-' and '.')",
                    m.name
                ),
            ));
        }
        let src = m.source.trim().to_string();
        if src.is_empty() {
            return Err(DriverError::config(
                format!("{field}.source"),
                "is required",
            ));
        }
        let next = source_of(&field, m.name, m.version, src, m.sha256, pending)?;
        if sources
            .iter()
            .any(|s| s.name == next.name && s.version == next.version)
        {
            return Err(DriverError::config(
                format!("{field}.version"),
                format!("{:?} version {} is given twice", next.name, next.version),
            ));
        }
        sources.push(next);
    }
    if let Some(format) = string("format", block.format)?
        && format != "onnx"
        && !pending(&format)
    {
        return Err(DriverError::config(
            "config.format",
            format!("{format:?} is not supported (only \"onnx\")"),
        ));
    }
    let backend = string("backend", block.backend)?.unwrap_or_else(|| "tract".to_string());
    if !matches!(backend.as_str(), "tract" | "onnxruntime") && !pending(&backend) {
        return Err(DriverError::config(
            "config.backend",
            format!("{backend:?} is not a backend (\"tract\" or \"onnxruntime\")"),
        ));
    }
    let max_batch_size = block.max_batch_size.unwrap_or(32);
    if max_batch_size == 0 {
        return Err(DriverError::config(
            "config.max_batch_size",
            "must be at least 1",
        ));
    }
    if let Some(w) = block.workers
        && !(1..=u64::from(edge_spec::model::MAX_WORKERS)).contains(&w)
    {
        return Err(DriverError::config(
            "config.workers",
            format!(
                "expected a whole number from 1 to {}, got {w}",
                edge_spec::model::MAX_WORKERS
            ),
        ));
    }
    Ok(ModelTask {
        sources,
        max_batch_size,
        max_delay_ms: block.max_delay_ms.unwrap_or(2),
        port: string("port", block.port)?.unwrap_or_else(|| "http".to_string()),
        grpc_port: string("grpc_port", block.grpc_port)?,
        backend,
        workers: block.workers,
    })
}

/// One checked model version; `field` is where the config gives it.
fn source_of(
    field: &str,
    name: String,
    version: u64,
    source: String,
    sha256: Option<String>,
    pending: fn(&str) -> bool,
) -> Result<Source, DriverError> {
    if version == 0 {
        return Err(DriverError::config(
            format!("{field}.version"),
            "versions start at 1",
        ));
    }
    let sha256 = sha256.map(|s| s.trim().to_ascii_lowercase());
    if let Some(s) = &sha256
        && (s.len() != 64 || !s.chars().all(|c| c.is_ascii_hexdigit()))
        && !pending(s)
    {
        return Err(DriverError::config(
            format!("{field}.sha256"),
            "must be 64 hexadecimal digits",
        ));
    }
    if fetch::is_url(&source) && sha256.is_none() {
        return Err(DriverError::config(
            format!("{field}.sha256"),
            "is required when the source is a URL",
        ));
    }
    Ok(Source {
        name,
        version,
        source,
        sha256,
        field: field.to_string(),
    })
}

/// What this driver keeps in a handle: the exec handle it wraps, and where
/// the server's stderr is, to explain a failed exit.
#[derive(Debug, Serialize, Deserialize)]
struct HandleState {
    inner_driver: String,
    inner: Value,
    log_dir: PathBuf,
    task: String,
}

/// Runs model servers through another driver (the exec driver); see the module docs.
pub struct ModelDriver {
    inner: Arc<dyn Driver>,
    /// The edge binary, run as `edge model serve ...`.
    exe: PathBuf,
    /// Downloaded models, one file per sha256.
    cache_dir: PathBuf,
    /// Who model tasks run as under a root agent (the exec driver's default
    /// user): the backends are probed as that user, who must open the
    /// library.
    task_user: String,
    http: reqwest::Client,
    /// The backends' attributes from the last probe, and what the probe
    /// depended on: it reruns only when that changes.
    backends: tokio::sync::Mutex<Option<(ProbeKey, BTreeMap<String, String>)>>,
}

/// What decides which ONNX Runtime a model task would open: the library the
/// agent names, and that file's change time (or, when it names none, the
/// loader cache's, which installing a library updates).
type ProbeKey = (Option<std::ffi::OsString>, Option<std::time::SystemTime>);

/// How long `edge model backends` may take to open ONNX Runtime.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

impl std::fmt::Debug for ModelDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelDriver")
            .field("inner", &self.inner.name())
            .field("exe", &self.exe)
            .field("cache_dir", &self.cache_dir)
            .finish()
    }
}

impl ModelDriver {
    pub fn new(
        inner: Arc<dyn Driver>,
        exe: PathBuf,
        cache_dir: PathBuf,
        task_user: String,
    ) -> ModelDriver {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        ModelDriver {
            inner,
            exe,
            cache_dir,
            task_user,
            http,
            backends: tokio::sync::Mutex::new(None),
        }
    }

    /// The `model.backends` (and ONNX Runtime version) attributes, from
    /// `edge model backends` in a process of its own, started as a model
    /// task is: as the task's user, with a clean environment and the
    /// agent's library as an argument. So a library only root can read is
    /// not offered, a broken one fails that process and not the agent, and
    /// the agent never maps it.
    async fn backend_attributes(&self) -> BTreeMap<String, String> {
        let library = crate::onnxruntime::library_setting();
        let changed = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let stamp = match &library {
            Some(l) => changed(Path::new(l)),
            None => changed(Path::new("/etc/ld.so.cache")),
        };
        let key = (library, stamp);
        let mut last = self.backends.lock().await;
        if let Some((k, attrs)) = last.as_ref()
            && *k == key
        {
            return attrs.clone();
        }
        let attrs = match self.probe_backends().await {
            Ok(statuses) => {
                for s in statuses.iter().filter(|s| !s.available) {
                    tracing::info!(
                        backend = %s.name,
                        reason = s.error.as_deref().unwrap_or_default(),
                        "model backend not available on this node"
                    );
                }
                crate::backends::attributes(&statuses)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell which model backends this node has: only tract is offered");
                crate::backends::attributes(&[crate::backends::tract()])
            }
        };
        *last = Some((key, attrs.clone()));
        attrs
    }

    async fn probe_backends(&self) -> Result<Vec<crate::backends::BackendStatus>, String> {
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.args(["model", "backends", "-o", "json"])
            .env_clear()
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some(lib) = crate::onnxruntime::library_setting() {
            cmd.arg("--onnxruntime-lib").arg(lib);
        }
        if nix::unistd::geteuid().is_root() {
            let found = match self.task_user.parse::<u32>() {
                Ok(uid) => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)),
                Err(_) => nix::unistd::User::from_name(&self.task_user),
            };
            let user = found
                .ok()
                .flatten()
                .ok_or_else(|| format!("no task user {:?} on this node", self.task_user))?;
            // std drops root's supplementary groups along with the uid.
            cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        let run = cmd.output();
        let out = tokio::time::timeout(PROBE_TIMEOUT, run)
            .await
            .map_err(|_| format!("`edge model backends` took over {PROBE_TIMEOUT:?}"))?
            .map_err(|e| format!("running {}: {e}", self.exe.display()))?;
        if !out.status.success() {
            return Err(format!(
                "`edge model backends` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("reading `edge model backends -o json`: {e}"))
    }

    /// The model file (or repository directory) on this node: the cache
    /// entry of a URL, or the local path made absolute against the agent's
    /// working directory.
    fn model_path(&self, m: &Source) -> Result<PathBuf, DriverError> {
        if fetch::is_url(&m.source) {
            let sha = m.sha256.as_deref().unwrap_or_default();
            return Ok(fetch::cached_path(&self.cache_dir, sha));
        }
        std::path::absolute(&m.source)
            .map_err(|e| DriverError::io(format!("resolving model path {:?}", m.source), e))
    }

    /// `edge model serve`'s model arguments. A lone file keeps the old
    /// `--model PATH --name NAME`; a directory (only as the block's own
    /// source) is a repository.
    fn model_args(&self, m: &ModelTask) -> Result<Vec<String>, DriverError> {
        let mut args = Vec::new();
        for (i, s) in m.sources.iter().enumerate() {
            let path = self.model_path(s)?;
            if path.is_dir() {
                if i > 0 {
                    return Err(DriverError::config(
                        format!("{}.source", s.field),
                        format!(
                            "{} is a directory; a nested model is one file (a repository directory goes in the block's own source)",
                            path.display()
                        ),
                    ));
                }
                args.extend(["--repository".to_string(), path.display().to_string()]);
            } else if m.sources.len() == 1 && s.version == 1 {
                args.extend([
                    "--model".to_string(),
                    path.display().to_string(),
                    "--name".to_string(),
                    s.name.clone(),
                ]);
            } else {
                args.extend([
                    "--model".to_string(),
                    format!("{}:{}={}", s.name, s.version, path.display()),
                ]);
            }
        }
        Ok(args)
    }

    fn exec_config(
        &self,
        m: &ModelTask,
        port: u16,
        grpc_port: Option<u16>,
    ) -> Result<Map<String, Value>, DriverError> {
        let mut args = vec!["model".to_string(), "serve".to_string()];
        args.extend(self.model_args(m)?);
        args.extend([
            "--host".to_string(),
            "0.0.0.0".to_string(),
            "--port".to_string(),
            port.to_string(),
            "--max-batch-size".to_string(),
            m.max_batch_size.to_string(),
            "--max-delay".to_string(),
            format!("{}ms", m.max_delay_ms),
        ]);
        if let Some(p) = grpc_port {
            args.extend(["--grpc-port".to_string(), p.to_string()]);
        }
        if let Some(w) = m.workers {
            args.extend(["--workers".to_string(), w.to_string()]);
        }
        if m.backend != "tract" {
            args.extend(["--backend".to_string(), m.backend.clone()]);
            // The task's environment is not the agent's, so the library the
            // node's agent was told of goes along as an argument.
            if let Some(lib) = crate::onnxruntime::library_setting() {
                args.extend([
                    "--onnxruntime-lib".to_string(),
                    PathBuf::from(lib).display().to_string(),
                ]);
            }
        }
        let mut out = Map::new();
        out.insert("command".into(), json!(self.exe.display().to_string()));
        out.insert("args".into(), json!(args));
        Ok(out)
    }

    /// Fetches a URL source, or checks a local one is there (and its digest).
    async fn prepare_source(&self, s: &Source, events: &dyn EventSink) -> Result<(), DriverError> {
        let path = self.model_path(s)?;
        if fetch::is_url(&s.source) {
            let sha = s.sha256.as_deref().unwrap_or_default();
            return fetch::fetch(&self.http, &s.source, sha, &path, events)
                .await
                .map_err(|e| DriverError::Other(e.to_string()));
        }
        if path.is_dir() {
            if s.sha256.is_some() {
                return Err(DriverError::config(
                    format!("{}.sha256", s.field),
                    format!(
                        "{} is a repository directory; a sha256 checks one file",
                        path.display()
                    ),
                ));
            }
            return Ok(());
        }
        if !path.is_file() {
            return Err(DriverError::config(
                format!("{}.source", s.field),
                format!("model file {} not found on this node", path.display()),
            ));
        }
        if let Some(want) = s.sha256.clone() {
            let p = path.clone();
            let got = tokio::task::spawn_blocking(move || fetch::sha256_file(&p))
                .await
                .map_err(|e| DriverError::Other(format!("hashing the model: {e}")))?
                .map_err(|e| DriverError::Other(e.to_string()))?;
            if got != want {
                return Err(DriverError::config(
                    format!("{}.sha256", s.field),
                    format!("{} has sha256 {got}, expected {want}", path.display()),
                ));
            }
        }
        Ok(())
    }

    fn unwrap_handle(&self, h: &TaskHandle) -> Result<(TaskHandle, HandleState), DriverError> {
        if h.driver != DRIVER_NAME {
            return Err(DriverError::Other(format!(
                "task {} belongs to driver {:?}, not {DRIVER_NAME:?}",
                h.task_id, h.driver
            )));
        }
        let state: HandleState = serde_json::from_value(h.state.clone()).map_err(|e| {
            DriverError::Other(format!("invalid model task handle {}: {e}", h.task_id))
        })?;
        let inner = TaskHandle {
            driver: state.inner_driver.clone(),
            task_id: h.task_id.clone(),
            pid: h.pid,
            started_at: h.started_at,
            state: state.inner.clone(),
        };
        Ok((inner, state))
    }
}

/// The last `error: ...` line the server wrote to stderr before exiting.
fn fatal_error(log_dir: &Path, task: &str) -> Option<String> {
    let newest = edge_driver::logs::log_files(log_dir, task, "stderr")
        .ok()?
        .pop()?;
    let mut f = std::fs::File::open(newest).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(STDERR_TAIL)))
        .ok()?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).ok()?;
    String::from_utf8_lossy(&tail)
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("error: ").map(|e| e.trim().to_string()))
}

#[async_trait]
impl Driver for ModelDriver {
    fn name(&self) -> &'static str {
        DRIVER_NAME
    }

    async fn fingerprint(&self) -> DriverInfo {
        let inner = self.inner.fingerprint().await;
        let mut attributes = BTreeMap::from([("model.formats".to_string(), "onnx".to_string())]);
        if self.exe.exists() {
            attributes.extend(self.backend_attributes().await);
        }
        let (healthy, description) = if !self.exe.exists() {
            (
                false,
                format!("edge binary {} not found", self.exe.display()),
            )
        } else if !inner.healthy {
            (
                false,
                format!(
                    "{} driver unhealthy: {}",
                    self.inner.name(),
                    inner.description
                ),
            )
        } else {
            (
                true,
                "ONNX models over the Open Inference Protocol".to_string(),
            )
        };
        DriverInfo {
            detected: true,
            healthy,
            description,
            attributes,
        }
    }

    async fn prepare(&self, cfg: &TaskConfig, events: &dyn EventSink) -> Result<(), DriverError> {
        let m = parse(&cfg.config)?;
        for s in &m.sources {
            self.prepare_source(s, events).await?;
        }
        Ok(())
    }

    async fn start(&self, cfg: &TaskConfig) -> Result<TaskHandle, DriverError> {
        let m = parse(&cfg.config)?;
        let port_of = |field: &str, label: &str| {
            cfg.ports
                .iter()
                .find(|p| p.label == label)
                .map(|p| p.to)
                .ok_or_else(|| {
                    DriverError::config(field, format!("the group has no port labelled {label:?}"))
                })
        };
        let port = port_of("config.port", &m.port)?;
        let grpc_port = match &m.grpc_port {
            Some(label) => Some(port_of("config.grpc_port", label)?),
            None => None,
        };
        let mut exec = cfg.clone();
        exec.config = self.exec_config(&m, port, grpc_port)?;
        let h = self.inner.start(&exec).await?;
        let state = HandleState {
            inner_driver: h.driver.clone(),
            inner: h.state.clone(),
            log_dir: cfg.log_dir.clone(),
            task: cfg.task.clone(),
        };
        Ok(TaskHandle {
            driver: DRIVER_NAME.to_string(),
            task_id: h.task_id,
            pid: h.pid,
            started_at: h.started_at,
            state: serde_json::to_value(state)
                .map_err(|e| DriverError::Other(format!("encoding task handle: {e}")))?,
        })
    }

    async fn recover(&self, handle: &TaskHandle) -> Result<(), DriverError> {
        let (inner, _) = self.unwrap_handle(handle)?;
        self.inner.recover(&inner).await
    }

    async fn wait(&self, handle: &TaskHandle) -> Result<ExitResult, DriverError> {
        let (inner, state) = self.unwrap_handle(handle)?;
        let mut exit = self.inner.wait(&inner).await?;
        if exit.exit_code != 0
            && exit.signal.is_none()
            && !exit.oom_killed
            && exit.error.is_none()
            && let Some(reason) = fatal_error(&state.log_dir, &state.task)
        {
            exit.error = Some(format!("exit code {}: {reason}", exit.exit_code));
        }
        Ok(exit)
    }

    async fn stop(&self, handle: &TaskHandle, timeout: Duration) -> Result<(), DriverError> {
        let (inner, _) = self.unwrap_handle(handle)?;
        self.inner.stop(&inner, timeout).await
    }

    async fn destroy(&self, handle: &TaskHandle) -> Result<(), DriverError> {
        let (inner, _) = self.unwrap_handle(handle)?;
        self.inner.destroy(&inner).await
    }

    async fn signal(&self, handle: &TaskHandle, signal: &str) -> Result<(), DriverError> {
        let (inner, _) = self.unwrap_handle(handle)?;
        self.inner.signal(&inner, signal).await
    }

    async fn stats(&self, handle: &TaskHandle) -> Result<TaskStats, DriverError> {
        let (inner, _) = self.unwrap_handle(handle)?;
        self.inner.stats(&inner).await
    }

    async fn exec(
        &self,
        handle: &TaskHandle,
        req: &edge_driver::ExecRequest,
    ) -> Result<edge_driver::ExecSession, DriverError> {
        let (inner, _) = self.unwrap_handle(handle)?;
        self.inner.exec(&inner, req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_spec::{AssignedPort, Resources};
    use std::sync::Mutex;

    /// Records what it was asked to start and exits with code 1.
    #[derive(Default)]
    struct FakeExec {
        started: Mutex<Option<TaskConfig>>,
    }

    #[async_trait]
    impl Driver for FakeExec {
        fn name(&self) -> &'static str {
            "exec"
        }
        async fn fingerprint(&self) -> DriverInfo {
            DriverInfo {
                detected: true,
                healthy: true,
                description: String::new(),
                attributes: BTreeMap::new(),
            }
        }
        async fn start(&self, cfg: &TaskConfig) -> Result<TaskHandle, DriverError> {
            *self.started.lock().unwrap() = Some(cfg.clone());
            Ok(TaskHandle {
                driver: "exec".into(),
                task_id: format!("{}/{}/1", cfg.alloc_id, cfg.task),
                pid: Some(42),
                started_at: 1,
                state: json!({"executor_pid": 41}),
            })
        }
        async fn recover(&self, h: &TaskHandle) -> Result<(), DriverError> {
            assert_eq!(
                (h.driver.as_str(), &h.state),
                ("exec", &json!({"executor_pid": 41}))
            );
            Ok(())
        }
        async fn wait(&self, h: &TaskHandle) -> Result<ExitResult, DriverError> {
            assert_eq!(h.driver, "exec");
            Ok(ExitResult {
                exit_code: 1,
                ..Default::default()
            })
        }
        async fn stop(&self, _: &TaskHandle, _: Duration) -> Result<(), DriverError> {
            Ok(())
        }
        async fn destroy(&self, _: &TaskHandle) -> Result<(), DriverError> {
            Ok(())
        }
        async fn signal(&self, _: &TaskHandle, _: &str) -> Result<(), DriverError> {
            Ok(())
        }
        async fn stats(&self, _: &TaskHandle) -> Result<TaskStats, DriverError> {
            Ok(TaskStats::default())
        }
    }

    #[derive(Default)]
    struct Events(Mutex<Vec<(String, String)>>);

    impl EventSink for Events {
        fn event(&self, kind: &str, message: &str) {
            self.0
                .lock()
                .unwrap()
                .push((kind.to_string(), message.to_string()));
        }
    }

    fn cfg(dir: &Path, config: Value) -> TaskConfig {
        TaskConfig {
            mounts: Vec::new(),
            alloc_id: "a1".into(),
            job_id: "j".into(),
            group: "iris".into(),
            task: "server".into(),
            config: config.as_object().cloned().unwrap(),
            env: BTreeMap::new(),
            resources: Resources::default(),
            ports: vec![AssignedPort {
                label: "http".into(),
                value: 23456,
                to: 23456,
            }],
            alloc_dir: dir.join("alloc"),
            task_dir: dir.join("server"),
            log_dir: dir.join("logs"),
            log_max_bytes: 1 << 20,
            log_max_files: 2,
            netns: None,
            resolv_conf: None,
        }
    }

    fn driver(dir: &Path) -> (ModelDriver, Arc<FakeExec>) {
        let exec = Arc::new(FakeExec::default());
        let d = ModelDriver::new(
            exec.clone(),
            "/bin/edge".into(),
            dir.join("cache"),
            "nobody".to_string(),
        );
        (d, exec)
    }

    #[test]
    fn submit_check_names_a_misspelled_key_and_passes_the_model_block() {
        match check_config(json!({"sorce": "a.onnx", "name": "m"}).as_object().unwrap()) {
            Err(DriverError::Config { field, message }) => {
                assert_eq!(field, "config.sorce");
                assert!(message.contains("unknown field `sorce`"), "{message}");
            }
            other => panic!("expected a config error, got {other:?}"),
        }
        let mut spec = edge_spec::model::ModelSpec::new("iris", "https://x/iris.onnx");
        spec.sha256 = Some("a".repeat(64));
        spec.publish_port = Some(8080);
        let group = edge_spec::model::expand(&spec).unwrap();
        check_config(&group.tasks[0].config).unwrap();
        check_config(
            json!({"source": "${NOMAD_TASK_DIR}/m.onnx", "name": "m", "sha256": "${SUM}"})
                .as_object()
                .unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn config_errors_name_the_field() {
        let field = |v: Value| match parse(v.as_object().unwrap()) {
            Err(DriverError::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        };
        assert_eq!(field(json!({"name": "m"})), "config.source");
        assert_eq!(field(json!({"source": "a.onnx"})), "config.name");
        assert_eq!(
            field(json!({"source": "a.onnx", "name": "m", "gpu": 1})),
            "config.gpu"
        );
        assert_eq!(
            field(json!({"source": "http://x/a", "name": "m"})),
            "config.sha256"
        );
        assert_eq!(
            field(json!({"source": "a.onnx", "name": "m", "sha256": "xyz"})),
            "config.sha256"
        );
        assert_eq!(
            field(json!({"source": "a.onnx", "name": "m", "backend": "torch"})),
            "config.backend"
        );
        for bad in [json!(0), json!(257), json!("2")] {
            assert_eq!(
                field(json!({"source": "a.onnx", "name": "m", "workers": bad})),
                "config.workers"
            );
        }
        assert_eq!(
            field(json!({"source": "a.onnx", "name": "m", "format": "tflite"})),
            "config.format"
        );
        assert_eq!(
            field(json!({"source": "a.onnx", "name": "m", "max_batch_size": 0})),
            "config.max_batch_size"
        );
        assert_eq!(
            field(json!({"source": "a.onnx", "name": "m", "max_batch_size": "8"})),
            "config.max_batch_size"
        );
        let m = parse(
            json!({"source": "a.onnx", "name": "m"})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (m.max_batch_size, m.max_delay_ms, m.port.as_str()),
            (32, 2, "http")
        );
    }

    #[tokio::test]
    async fn runs_edge_model_serve_through_exec_and_explains_a_failed_exit() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.onnx");
        std::fs::write(&model, b"model bytes").unwrap();
        let (d, exec) = driver(dir.path());
        let c = cfg(
            dir.path(),
            json!({"source": model.display().to_string(), "name": "iris",
                   "max_batch_size": 8, "max_delay_ms": 5, "port": "http",
                   "publish": {"port": 80}}),
        );
        d.prepare(&c, &Events::default()).await.unwrap();
        let h = d.start(&c).await.unwrap();
        assert_eq!((h.driver.as_str(), h.pid), ("model", Some(42)));
        let started = exec.started.lock().unwrap().clone().unwrap();
        assert_eq!(started.config["command"], "/bin/edge");
        let args: Vec<String> = serde_json::from_value(started.config["args"].clone()).unwrap();
        let expected = format!(
            "model serve --model {} --name iris --host 0.0.0.0 --port 23456 --max-batch-size 8 --max-delay 5ms",
            model.display()
        );
        assert_eq!(args.join(" "), expected);
        d.recover(&h).await.unwrap();

        let mut grpc = cfg(
            dir.path(),
            json!({"source": model.display().to_string(), "name": "iris", "grpc_port": "grpc"}),
        );
        match d.start(&grpc).await {
            Err(DriverError::Config { field, message }) => {
                assert_eq!(field, "config.grpc_port");
                assert!(message.contains("no port labelled \"grpc\""), "{message}");
            }
            other => panic!("expected a config error, got {other:?}"),
        }
        grpc.ports.push(AssignedPort {
            label: "grpc".into(),
            value: 23457,
            to: 23457,
        });
        d.start(&grpc).await.unwrap();
        let started = exec.started.lock().unwrap().clone().unwrap();
        let args: Vec<String> = serde_json::from_value(started.config["args"].clone()).unwrap();
        assert_eq!(args[args.len() - 2..], ["--grpc-port", "23457"]);

        let mut ort = grpc.clone();
        ort.config.insert("backend".into(), json!("onnxruntime"));
        d.start(&ort).await.unwrap();
        let started = exec.started.lock().unwrap().clone().unwrap();
        let args: Vec<String> = serde_json::from_value(started.config["args"].clone()).unwrap();
        let at = args.iter().position(|a| a == "--backend").unwrap();
        assert_eq!(args[at + 1], "onnxruntime");
        assert!(!args.iter().any(|a| a == "--workers"), "{args:?}");

        let mut bounded = ort.clone();
        bounded.config.insert("workers".into(), json!(2));
        d.start(&bounded).await.unwrap();
        let started = exec.started.lock().unwrap().clone().unwrap();
        let args: Vec<String> = serde_json::from_value(started.config["args"].clone()).unwrap();
        let at = args.iter().position(|a| a == "--workers").unwrap();
        assert_eq!(args[at + 1], "2");

        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::write(
            edge_driver::logs::log_path(&logs, "server", "stderr", 0),
            "starting\nerror: model failed to load: model m.onnx uses unsupported operator Foo\n",
        )
        .unwrap();
        let exit = d.wait(&h).await.unwrap();
        assert_eq!(
            exit.describe(),
            "exit code 1: model failed to load: model m.onnx uses unsupported operator Foo"
        );
        let mut other = h.clone();
        other.driver = "exec".into();
        assert!(d.wait(&other).await.is_err());
    }

    #[tokio::test]
    async fn several_models_and_a_repository_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.onnx"), dir.path().join("b.onnx"));
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        let (d, exec) = driver(dir.path());
        let c = cfg(
            dir.path(),
            json!({"source": a.display().to_string(), "name": "iris", "version": 3,
            "models": [
                {"name": "iris", "version": 4, "source": b.display().to_string()},
                {"name": "mlp", "source": b.display().to_string()},
            ]}),
        );
        d.prepare(&c, &Events::default()).await.unwrap();
        d.start(&c).await.unwrap();
        let started = exec.started.lock().unwrap().clone().unwrap();
        let args: Vec<String> = serde_json::from_value(started.config["args"].clone()).unwrap();
        let (a, b) = (a.display(), b.display());
        assert!(
            args.join(" ").starts_with(&format!(
                "model serve --model iris:3={a} --model iris:4={b} --model mlp:1={b} --host"
            )),
            "{args:?}"
        );
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        let c = cfg(
            dir.path(),
            json!({"source": repo.display().to_string(), "name": "vision"}),
        );
        d.prepare(&c, &Events::default()).await.unwrap();
        d.start(&c).await.unwrap();
        let started = exec.started.lock().unwrap().clone().unwrap();
        assert_eq!(started.config["args"][2], "--repository");
        let nested_dir = cfg(
            dir.path(),
            json!({"source": a.to_string(), "name": "m",
                   "models": [{"name": "x", "source": repo.display().to_string()}]}),
        );
        let err = d.start(&nested_dir).await.unwrap_err().to_string();
        assert!(err.contains("config.models[0].source"), "{err}");
        let field = |v: Value| match parse(v.as_object().unwrap()) {
            Err(DriverError::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        };
        assert_eq!(
            field(json!({"source": "a", "name": "m", "models": [{"name": "m", "source": "b"}]})),
            "config.models[0].version"
        );
        assert_eq!(
            field(json!({"source": "a", "name": "m", "models": [{"name": "../x", "source": "b"}]})),
            "config.models[0].name"
        );
        assert_eq!(
            field(
                json!({"source": "a", "name": "m", "models": [{"name": "x", "source": "http://h/x"}]})
            ),
            "config.models[0].sha256"
        );
    }

    #[tokio::test]
    async fn a_missing_file_or_wrong_digest_fails_prepare() {
        let dir = tempfile::tempdir().unwrap();
        let (d, _) = driver(dir.path());
        let missing = cfg(
            dir.path(),
            json!({"source": "/no/such/m.onnx", "name": "m"}),
        );
        let err = d.prepare(&missing, &Events::default()).await.unwrap_err();
        assert!(
            err.to_string().contains("/no/such/m.onnx not found"),
            "{err}"
        );
        let model = dir.path().join("m.onnx");
        std::fs::write(&model, b"model bytes").unwrap();
        let wrong = cfg(
            dir.path(),
            json!({"source": model.display().to_string(), "name": "m", "sha256": "0".repeat(64)}),
        );
        let err = d.prepare(&wrong, &Events::default()).await.unwrap_err();
        assert!(err.to_string().contains("config.sha256"), "{err}");
    }

    /// Serves `body` at /m.onnx on loopback.
    async fn http_file(body: &'static [u8]) -> String {
        let app =
            axum::Router::new().route("/m.onnx", axum::routing::get(move || async move { body }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/m.onnx")
    }

    #[tokio::test]
    async fn urls_are_downloaded_once_checked_and_cached() {
        let dir = tempfile::tempdir().unwrap();
        let (d, exec) = driver(dir.path());
        let body: &'static [u8] = b"pretend onnx";
        let url = http_file(body).await;
        let sha = fetch::hex(&<sha2::Sha256 as sha2::Digest>::digest(body));

        let bad = cfg(
            dir.path(),
            json!({"source": url, "name": "m", "sha256": "1".repeat(64)}),
        );
        let err = d.prepare(&bad, &Events::default()).await.unwrap_err();
        assert!(err.to_string().contains("expected 1111"), "{err}");
        assert_eq!(
            std::fs::read_dir(dir.path().join("cache")).unwrap().count(),
            0
        );

        let good = cfg(
            dir.path(),
            json!({"source": url, "name": "m", "sha256": sha}),
        );
        let events = Events::default();
        d.prepare(&good, &events).await.unwrap();
        let kinds: Vec<String> = events
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.0.clone())
            .collect();
        assert_eq!(kinds.first().map(String::as_str), Some("Downloading Model"));
        assert_eq!(kinds.last().map(String::as_str), Some("Model Downloaded"));
        let cached = fetch::cached_path(&dir.path().join("cache"), &sha);
        assert_eq!(std::fs::read(&cached).unwrap(), body);

        let again = Events::default();
        d.prepare(&good, &again).await.unwrap();
        assert!(again.0.lock().unwrap().is_empty(), "downloaded twice");
        d.start(&good).await.unwrap();
        let started = exec.started.lock().unwrap().clone().unwrap();
        assert_eq!(started.config["args"][3], cached.display().to_string());
    }
}
