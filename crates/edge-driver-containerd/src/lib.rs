//! containerd driver: tasks run as OCI containers through containerd's gRPC
//! API, in a containerd namespace of edge's own.
//!
//! Images are pulled by the driver itself (registry HTTP API → content
//! store → snapshots, see [`pull`](crate::pull)) or imported from tar
//! archives, and unpacked into the overlayfs snapshotter. Each task gets a
//! writable snapshot of its image, a container record and a task run by
//! containerd's runc shim. The shim, not the agent, owns the task and its
//! output: stdout and stderr go to a `binary://` log driver (the edge binary's
//! `containerd-logger`) that writes edge's capped rotating log files, so a
//! task and its logs carry on while the agent restarts. Everything the driver
//! needs to find a task again derives from its task id.

mod client;
mod config;
mod error;
mod exec;
mod import;
mod logger;
mod metrics;
mod oci;
mod pull;
mod reference;
mod registry;
mod spec;
mod store;

pub use config::{ContainerdBlock, HostAccess, check_config};
pub use error::ContainerdError;
pub use logger::logger_main;
pub use reference::Reference;
pub use registry::{Credentials, RegistryConfig};
pub use store::ImageSummary;

use async_trait::async_trait;
use client::Conn;
use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteTaskRequest, GetRequest, KillRequest, ListContainersRequest, MetricsRequest,
    StartRequest, WaitRequest,
};
use containerd_client::types::v1::Status as ProcessStatus;
use edge_driver::{
    Driver, DriverError, EventSink, ExitResult, Leftover, TaskConfig, TaskHandle, TaskStats,
};
use edge_spec::DriverInfo;
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use store::Store;

pub(crate) const DRIVER_NAME: &str = "containerd";
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const PING_TIMEOUT: Duration = Duration::from_secs(2);
const KILL_GRACE: Duration = Duration::from_secs(10);
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// Longest task-name part of a container id (ids are capped at 76 chars).
const MAX_TASK_PART: usize = 24;

pub(crate) fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdConfig {
    /// containerd's gRPC socket.
    pub socket: PathBuf,
    /// The containerd namespace every image and container of edge lives in.
    pub namespace: String,
    pub snapshotter: String,
    /// The shim runtime, `io.containerd.runc.v2`.
    pub runtime: String,
    pub registry: RegistryConfig,
    /// An executable that runs `<it> containerd-logger <spec>` as the shim's
    /// log driver (the edge binary). Without one, the shim appends stdout
    /// and stderr together to `<task>.stdout.0`, uncapped.
    pub logger: Option<PathBuf>,
    /// Where per-task logger specs are kept.
    pub state_dir: PathBuf,
    /// Task cgroups are `/<cgroup_parent>/<container id>`.
    pub cgroup_parent: String,
    /// Host paths and capabilities tasks may ask for.
    pub host_access: config::HostAccess,
}

impl ContainerdConfig {
    /// Defaults: `/run/containerd/containerd.sock`, namespace `edge`,
    /// overlayfs, runc v2, cgroup parent `edge`.
    pub fn new(state_dir: PathBuf) -> ContainerdConfig {
        ContainerdConfig {
            socket: PathBuf::from("/run/containerd/containerd.sock"),
            namespace: "edge".to_string(),
            snapshotter: "overlayfs".to_string(),
            runtime: "io.containerd.runc.v2".to_string(),
            registry: RegistryConfig::default(),
            logger: None,
            host_access: config::HostAccess::default(),
            state_dir,
            cgroup_parent: "edge".to_string(),
        }
    }
}

/// What a [`TaskHandle`] of this driver carries in `state`, for people
/// reading the agent's state; the driver derives ids from the task id.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HandleState {
    container_id: String,
    image: String,
}

/// Runs tasks as containers through containerd. See the crate docs.
#[derive(Debug)]
pub struct ContainerdDriver {
    cfg: ContainerdConfig,
    conn: Arc<Conn>,
    registry: registry::Registry,
    /// One lock per image name, so concurrent tasks pull an image once.
    pulls: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Held while the agent-start import of `images/` runs; pulls wait for it.
    import_gate: Arc<tokio::sync::Mutex<()>>,
    /// Containers share the host's network, so they get its hostname too.
    hostname: String,
}

impl ContainerdDriver {
    /// `signal` to the task, SIGKILL once `timeout` passes.
    async fn stop_by(
        &self,
        handle: &TaskHandle,
        timeout: Duration,
        signal: Signal,
    ) -> Result<(), DriverError> {
        let id = check_handle(handle)?;
        self.kill(&id, signal, false).await?;
        if let Ok(r) = tokio::time::timeout(timeout, self.wait_once(&id)).await {
            match r {
                Ok(_) => return Ok(()),
                Err(e) if e.is_not_found() => return Ok(()),
                Err(_) => {}
            }
        }
        self.kill(&id, Signal::SIGKILL, true).await?;
        match tokio::time::timeout(KILL_GRACE, self.wait_once(&id)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.is_not_found() => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(DriverError::Other(format!(
                "container {id} still running {}s after SIGKILL",
                KILL_GRACE.as_secs()
            ))),
        }
    }

    pub fn new(cfg: ContainerdConfig) -> Result<ContainerdDriver, ContainerdError> {
        let conn = Arc::new(Conn::new(&cfg.socket, &cfg.namespace)?);
        let registry = registry::Registry::new(cfg.registry.clone())?;
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "edge".to_string());
        Ok(ContainerdDriver {
            cfg,
            conn,
            registry,
            pulls: Mutex::new(HashMap::new()),
            import_gate: Arc::new(tokio::sync::Mutex::new(())),
            hostname,
        })
    }

    fn store(&self) -> Store<'_> {
        Store::new(&self.conn, &self.cfg.snapshotter)
    }

    /// containerd's version, when it answers.
    pub async fn ping(&self) -> Result<String, ContainerdError> {
        let call = async {
            let v = self
                .conn
                .version()
                .await?
                .version(self.conn.req((), None))
                .await
                .map_err(ContainerdError::rpc("version"))?;
            Ok::<_, ContainerdError>(v.into_inner().version)
        };
        match tokio::time::timeout(PING_TIMEOUT, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.conn.reset().await;
                Err(e)
            }
            Err(_) => {
                self.conn.reset().await;
                Err(ContainerdError::Connect {
                    socket: self.conn.socket().to_path_buf(),
                    message: format!("no answer within {}s", PING_TIMEOUT.as_secs()),
                })
            }
        }
    }

    /// Imports an OCI layout or `docker save` tar; returns the image names.
    pub async fn import_archive(&self, path: &Path) -> Result<Vec<String>, ContainerdError> {
        let mut store = self.store();
        store.begin_lease().await?;
        let result = import::import(&store, path).await;
        store.end_lease().await;
        result
    }

    /// Imports every `*.tar` in `dir` that changed since it was last
    /// imported (by size and mtime, remembered in the state dir).
    pub async fn import_dir(&self, dir: &Path) -> Result<Vec<String>, ContainerdError> {
        let _gate = self.import_gate.lock().await;
        self.import_dir_locked(dir).await
    }

    /// Starts [`ContainerdDriver::import_dir`] in the background; tasks
    /// that need an image wait for it before pulling.
    pub fn import_dir_in_background(self: &Arc<Self>, dir: PathBuf) {
        let Ok(gate) = self.import_gate.clone().try_lock_owned() else {
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            let _gate = gate;
            match me.import_dir_locked(&dir).await {
                Ok(names) if !names.is_empty() => {
                    tracing::info!(images = ?names, dir = %dir.display(), "imported image archives");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "importing image archives failed")
                }
            }
        });
    }

    async fn import_dir_locked(&self, dir: &Path) -> Result<Vec<String>, ContainerdError> {
        let listing = match std::fs::read_dir(dir) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ContainerdError::io(format!("listing {}", dir.display()))(e)),
        };
        let seen_path = self.cfg.state_dir.join("imported.json");
        let mut seen: BTreeMap<String, String> = std::fs::read(&seen_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut files: Vec<PathBuf> = listing
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "tar"))
            .collect();
        files.sort();
        let mut names = Vec::new();
        for f in files {
            let stamp = std::fs::metadata(&f)
                .map(|m| {
                    let mtime = m
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs());
                    format!("{}:{mtime}", m.len())
                })
                .unwrap_or_default();
            let key = f.display().to_string();
            if seen.get(&key) == Some(&stamp) {
                continue;
            }
            match self.import_archive(&f).await {
                Ok(n) => {
                    names.extend(n);
                    seen.insert(key, stamp);
                }
                Err(e) if e.is_unavailable() => return Err(e),
                Err(e) => {
                    tracing::warn!(file = %f.display(), error = %e, "image archive not imported")
                }
            }
        }
        std::fs::create_dir_all(&self.cfg.state_dir)
            .and_then(|()| {
                std::fs::write(
                    &seen_path,
                    serde_json::to_vec_pretty(&seen).unwrap_or_default(),
                )
            })
            .map_err(ContainerdError::io(format!(
                "writing {}",
                seen_path.display()
            )))?;
        Ok(names)
    }

    pub async fn images(&self) -> Result<Vec<ImageSummary>, ContainerdError> {
        self.store().list_images().await
    }

    /// Removes an image record; containerd then collects its unused content
    /// and snapshots.
    pub async fn remove_image(&self, image: &str) -> Result<String, ContainerdError> {
        let name = Reference::parse(image).map_or_else(|_| image.to_string(), |r| r.to_string());
        match self.store().delete_image(&name).await {
            Err(e) if e.is_not_found() => Err(ContainerdError::image(&name, "no such image")),
            other => other.map(|()| name),
        }
    }

    /// Makes `image` ready to run: nothing when it is unpacked already,
    /// else unpacks what is there or pulls it. Returns the stored name.
    pub async fn ensure_image(
        &self,
        image: &str,
        events: &dyn EventSink,
    ) -> Result<String, ContainerdError> {
        let reference = Reference::parse(image)?;
        let name = reference.to_string();
        drop(self.import_gate.lock().await);
        let lock = {
            let mut pulls = self.pulls.lock().unwrap_or_else(|e| e.into_inner());
            pulls.entry(name.clone()).or_default().clone()
        };
        let _pulling = lock.lock().await;
        let mut store = self.store();
        if let Some(target) = store.image_target(&name).await?
            && let Some(img) = store.resolve(&name, &target).await?
        {
            if store.unpacked(&img).await? {
                return Ok(name);
            }
            store.begin_lease().await?;
            let r = store.unpack_image(&img).await;
            store.end_lease().await;
            if r.is_ok() {
                return Ok(name);
            }
        }
        store.begin_lease().await?;
        let r = pull::pull(&store, &self.registry, &reference, events).await;
        store.end_lease().await;
        r.map(|()| name)
    }

    fn logger_uri(&self, cfg: &TaskConfig, container_id: &str) -> Result<String, DriverError> {
        let Some(logger) = &self.cfg.logger else {
            let path = edge_driver::logs::log_path(&cfg.log_dir, &cfg.task, "stdout", 0);
            return Ok(format!("file://{}", path.display()));
        };
        let spec = logger::LoggerSpec {
            log_dir: cfg.log_dir.clone(),
            task: cfg.task.clone(),
            max_bytes: cfg.log_max_bytes,
            max_files: cfg.log_max_files,
        };
        let path = logger::spec_path(&self.cfg.state_dir, container_id);
        let body = serde_json::to_vec(&spec)
            .map_err(|e| DriverError::Other(format!("encoding logger spec: {e}")))?;
        std::fs::create_dir_all(&self.cfg.state_dir)
            .and_then(|()| std::fs::write(&path, body))
            .map_err(|e| DriverError::io(format!("writing {}", path.display()), e))?;
        let mut uri = reqwest::Url::parse("binary:///")
            .map_err(|e| DriverError::Other(format!("building log uri: {e}")))?;
        uri.set_path(&logger.display().to_string());
        uri.query_pairs_mut()
            .append_pair("containerd-logger", &path.display().to_string());
        Ok(uri.to_string())
    }

    async fn create_and_start(
        &self,
        store: &Store<'_>,
        cfg: &TaskConfig,
        container_id: &str,
        image: &store::ResolvedImage,
        spec: serde_json::Value,
    ) -> Result<u32, DriverError> {
        let lease = store.lease.as_deref();
        let mounts = store
            .prepare_snapshot(container_id, &image.chain_id)
            .await?;
        let spec_bytes = serde_json::to_vec(&spec)
            .map_err(|e| DriverError::Other(format!("encoding OCI spec: {e}")))?;
        let container = Container {
            id: container_id.to_string(),
            labels: HashMap::from([
                ("edge.alloc_id".to_string(), cfg.alloc_id.clone()),
                ("edge.job_id".to_string(), cfg.job_id.clone()),
                ("edge.task".to_string(), cfg.task.clone()),
                (AGENT_LABEL.to_string(), self.agent_label()),
            ]),
            image: image.name.clone(),
            runtime: Some(Runtime {
                name: self.cfg.runtime.clone(),
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: SPEC_TYPE_URL.to_string(),
                value: spec_bytes,
            }),
            snapshotter: self.cfg.snapshotter.clone(),
            snapshot_key: container_id.to_string(),
            ..Default::default()
        };
        self.conn
            .containers()
            .await?
            .create(self.conn.req(
                CreateContainerRequest {
                    container: Some(container),
                },
                lease,
            ))
            .await
            .map_err(ContainerdError::rpc("container create"))?;
        let log_uri = self.logger_uri(cfg, container_id)?;
        let mut tasks = self.conn.tasks().await?;
        let created = tasks
            .create(self.conn.req(
                CreateTaskRequest {
                    container_id: container_id.to_string(),
                    rootfs: mounts,
                    stdout: log_uri.clone(),
                    stderr: log_uri,
                    ..Default::default()
                },
                lease,
            ))
            .await
            .map_err(ContainerdError::rpc("task create"))?
            .into_inner();
        tasks
            .start(self.conn.req(
                StartRequest {
                    container_id: container_id.to_string(),
                    exec_id: String::new(),
                },
                None,
            ))
            .await
            .map_err(ContainerdError::rpc("task start"))?;
        Ok(created.pid)
    }

    async fn kill(
        &self,
        container_id: &str,
        signal: Signal,
        all: bool,
    ) -> Result<(), ContainerdError> {
        let r = self
            .conn
            .tasks()
            .await?
            .kill(self.conn.req(
                KillRequest {
                    container_id: container_id.to_string(),
                    exec_id: String::new(),
                    signal: signal as u32,
                    all,
                },
                None,
            ))
            .await
            .map_err(ContainerdError::rpc("task kill"));
        match r {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(drop),
        }
    }

    /// One Tasks.Wait: the exit status once the task has exited.
    async fn wait_once(&self, container_id: &str) -> Result<u32, ContainerdError> {
        Ok(self
            .conn
            .tasks()
            .await?
            .wait(self.conn.req(
                WaitRequest {
                    container_id: container_id.to_string(),
                    exec_id: String::new(),
                },
                None,
            ))
            .await
            .map_err(ContainerdError::rpc("task wait"))?
            .into_inner()
            .exit_status)
    }

    async fn task_status(&self, container_id: &str) -> Result<ProcessStatus, ContainerdError> {
        let p = self
            .conn
            .tasks()
            .await?
            .get(self.conn.req(
                GetRequest {
                    container_id: container_id.to_string(),
                    exec_id: String::new(),
                },
                None,
            ))
            .await
            .map_err(ContainerdError::rpc("task get"))?
            .into_inner()
            .process
            .unwrap_or_default();
        Ok(ProcessStatus::try_from(p.status).unwrap_or(ProcessStatus::Unknown))
    }

    /// Whether the kernel OOM-killed something in the task's cgroup. The
    /// cgroup lives until the task is deleted, so this works after exit.
    fn oom_killed(&self, container_id: &str) -> bool {
        let rel = format!("{}/{container_id}", self.cfg.cgroup_parent);
        let v1 = Path::new("/sys/fs/cgroup/memory")
            .join(&rel)
            .join("memory.oom_control");
        let v2 = Path::new("/sys/fs/cgroup").join(&rel).join("memory.events");
        [v1, v2].iter().any(|p| {
            std::fs::read_to_string(p).is_ok_and(|s| {
                s.lines().any(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .is_some_and(|n| n > 0)
                })
            })
        })
    }

    /// Removes the task, container and snapshot; each may be gone already.
    async fn remove_container(&self, container_id: &str) -> Result<(), ContainerdError> {
        let delete_task = || async {
            let r = self
                .conn
                .tasks()
                .await?
                .delete(self.conn.req(
                    DeleteTaskRequest {
                        container_id: container_id.to_string(),
                    },
                    None,
                ))
                .await
                .map_err(ContainerdError::rpc("task delete"));
            match r {
                Err(e) if e.is_not_found() => Ok(()),
                other => other.map(drop),
            }
        };
        if delete_task().await.is_err() {
            // Still running: kill it and try again.
            self.kill(container_id, Signal::SIGKILL, true).await?;
            let _ = tokio::time::timeout(KILL_GRACE, self.wait_once(container_id)).await;
            delete_task().await?;
        }
        let r = self
            .conn
            .containers()
            .await?
            .delete(self.conn.req(
                DeleteContainerRequest {
                    id: container_id.to_string(),
                },
                None,
            ))
            .await
            .map_err(ContainerdError::rpc("container delete"));
        match r {
            Err(e) if !e.is_not_found() => return Err(e),
            _ => {}
        }
        self.store().remove_snapshot(container_id).await?;
        let spec = logger::spec_path(&self.cfg.state_dir, container_id);
        match std::fs::remove_file(&spec) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ContainerdError::io(
                format!("removing {}", spec.display()),
            )(e)),
            _ => Ok(()),
        }
    }

    fn agent_label(&self) -> String {
        self.cfg.state_dir.display().to_string()
    }

    fn limit_swap() -> bool {
        Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
    }
}

/// Names the agent (by its driver state dir) that created a container, so
/// one agent's garbage collection never takes another's containers.
const AGENT_LABEL: &str = "edge.agent";

/// containerd ids allow letters, digits and single `.`, `_`, `-` between them.
fn id_part(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= max {
            break;
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "task".to_string()
    } else {
        out
    }
}

/// `<alloc_id>/<task>/<run>` → `<alloc_id>-<task>-<run>`, refusing ids that
/// would not map back to what was started.
fn container_id(task_id: &str) -> Result<String, DriverError> {
    let invalid = || DriverError::Other(format!("invalid containerd task id {task_id:?}"));
    let parts: Vec<&str> = task_id.split('/').collect();
    let [alloc, task, run] = parts[..] else {
        return Err(invalid());
    };
    if alloc.is_empty()
        || id_part(alloc, 64) != alloc
        || run.is_empty()
        || !run.chars().all(|c| c.is_ascii_hexdigit())
    {
        return Err(invalid());
    }
    Ok(format!("{alloc}-{}-{run}", id_part(task, MAX_TASK_PART)))
}

fn check_handle(handle: &TaskHandle) -> Result<String, DriverError> {
    if handle.driver != DRIVER_NAME {
        return Err(DriverError::Other(format!(
            "task {} belongs to driver {:?}",
            handle.task_id, handle.driver
        )));
    }
    container_id(&handle.task_id)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn exit_result(status: u32, oom_killed: bool) -> ExitResult {
    let code = i32::try_from(status).unwrap_or(-1);
    // Shells and runc report death by signal N as 128+N.
    let signal = (129..=128 + 64).contains(&status).then(|| code - 128);
    ExitResult {
        exit_code: code,
        signal,
        oom_killed,
        error: None,
    }
}

fn image_error(image: &str, e: ContainerdError) -> DriverError {
    match e {
        ContainerdError::Image { .. } | ContainerdError::Reference { .. } => {
            DriverError::Other(e.to_string())
        }
        other => DriverError::Other(format!("image {image}: {other}")),
    }
}

#[async_trait]
impl Driver for ContainerdDriver {
    fn name(&self) -> &'static str {
        DRIVER_NAME
    }

    async fn fingerprint(&self) -> DriverInfo {
        let mut attributes = BTreeMap::from([
            (
                "containerd.namespace".to_string(),
                self.cfg.namespace.clone(),
            ),
            (
                "containerd.snapshotter".to_string(),
                self.cfg.snapshotter.clone(),
            ),
        ]);
        if !self.cfg.socket.exists() {
            return DriverInfo {
                detected: false,
                healthy: false,
                description: format!("containerd socket {} not found", self.cfg.socket.display()),
                attributes,
            };
        }
        match self.ping().await {
            Ok(version) => {
                attributes.insert("containerd.version".to_string(), version.clone());
                DriverInfo {
                    detected: true,
                    healthy: true,
                    description: format!("containerd {version}"),
                    attributes,
                }
            }
            Err(e) => DriverInfo {
                detected: true,
                healthy: false,
                description: e.to_string(),
                attributes,
            },
        }
    }

    async fn prepare(&self, cfg: &TaskConfig, events: &dyn EventSink) -> Result<(), DriverError> {
        let task = config::parse(&cfg.config)?;
        let alloc_root = cfg.alloc_dir.parent().unwrap_or(&cfg.alloc_dir);
        config::check_host_access(&cfg.task, &task, alloc_root, self.cfg.host_access)?;
        Reference::parse(&task.image)
            .map_err(|e| DriverError::config("config.image", e.to_string()))?;
        self.ensure_image(&task.image, events)
            .await
            .map(drop)
            .map_err(|e| image_error(&task.image, e))
    }

    async fn start(&self, cfg: &TaskConfig) -> Result<TaskHandle, DriverError> {
        let task = config::parse(&cfg.config)?;
        let alloc_root = cfg.alloc_dir.parent().unwrap_or(&cfg.alloc_dir);
        config::check_host_access(&cfg.task, &task, alloc_root, self.cfg.host_access)?;
        let reference = Reference::parse(&task.image)
            .map_err(|e| DriverError::config("config.image", e.to_string()))?;
        let name = reference.to_string();
        let store = self.store();
        let image = match store.image_target(&name).await? {
            Some(target) => store.resolve(&name, &target).await?,
            None => None,
        }
        .ok_or_else(|| {
            DriverError::Other(format!(
                "image {name}: not in containerd; prepare did not pull it"
            ))
        })?;
        let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let task_id = format!("{}/{}/{run}", cfg.alloc_id, cfg.task);
        let container_id = container_id(&task_id).map_err(|_| {
            DriverError::config(
                "alloc_id",
                format!("{:?} cannot name a container", cfg.alloc_id),
            )
        })?;
        for dir in [&cfg.alloc_dir, &cfg.task_dir.join("local"), &cfg.log_dir] {
            std::fs::create_dir_all(dir)
                .map_err(|e| DriverError::io(format!("creating {}", dir.display()), e))?;
        }
        let empty = oci::ContainerConfig::default();
        let spec = spec::build(&spec::SpecInput {
            task: cfg,
            config: &task,
            image: image.config.config.as_ref().unwrap_or(&empty),
            cgroups_path: format!("/{}/{container_id}", self.cfg.cgroup_parent),
            hostname: task
                .hostname
                .clone()
                .unwrap_or_else(|| self.hostname.clone()),
            limit_swap: Self::limit_swap(),
        })?;
        let mut store = self.store();
        store.begin_lease().await?;
        let started = self
            .create_and_start(&store, cfg, &container_id, &image, spec)
            .await;
        store.end_lease().await;
        let pid = match started {
            Ok(pid) => pid,
            Err(e) => {
                if let Err(cleanup) = self.remove_container(&container_id).await {
                    tracing::warn!(container = %container_id, error = %cleanup, "cleanup after failed start");
                }
                return Err(e);
            }
        };
        let state = HandleState {
            container_id,
            image: name,
        };
        Ok(TaskHandle {
            driver: DRIVER_NAME.to_string(),
            task_id,
            pid: Some(pid),
            started_at: now_ms(),
            state: serde_json::to_value(state)
                .map_err(|e| DriverError::Other(format!("encoding task handle: {e}")))?,
        })
    }

    async fn recover(&self, handle: &TaskHandle) -> Result<(), DriverError> {
        let id = check_handle(handle).map_err(|_| DriverError::NotFound {
            task_id: handle.task_id.clone(),
        })?;
        match self.task_status(&id).await {
            Ok(_) => Ok(()),
            // containerd is down: the task most likely runs on under its
            // shim; `wait` re-attaches once containerd answers again.
            Err(e) if e.is_unavailable() => {
                tracing::warn!(container = %id, error = %e, "containerd unavailable during recovery; will re-attach when it is back");
                Ok(())
            }
            Err(e) if e.is_not_found() => {
                if let Err(cleanup) = self.remove_container(&id).await {
                    tracing::warn!(container = %id, error = %cleanup, "removing container whose task is gone");
                }
                Err(DriverError::NotFound {
                    task_id: handle.task_id.clone(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn wait(&self, handle: &TaskHandle) -> Result<ExitResult, DriverError> {
        let id = check_handle(handle)?;
        let status = loop {
            match self.wait_once(&id).await {
                Ok(status) => break status,
                Err(e) if e.is_unavailable() => {
                    tracing::warn!(container = %id, error = %e, "lost containerd while waiting; re-attaching when it is back");
                    self.conn.reset().await;
                    while self.ping().await.is_err() {
                        tokio::time::sleep(RECONNECT_EVERY).await;
                    }
                    tracing::info!(container = %id, "containerd is back; re-attached");
                }
                Err(e) if e.is_not_found() => {
                    return Ok(ExitResult {
                        exit_code: -1,
                        error: Some(format!("container {id} is gone from containerd")),
                        ..Default::default()
                    });
                }
                Err(e) => return Err(e.into()),
            }
        };
        Ok(exit_result(status, self.oom_killed(&id)))
    }

    async fn stop(&self, handle: &TaskHandle, timeout: Duration) -> Result<(), DriverError> {
        self.stop_by(handle, timeout, Signal::SIGTERM).await
    }

    async fn stop_with(
        &self,
        handle: &TaskHandle,
        timeout: Duration,
        signal: &str,
    ) -> Result<(), DriverError> {
        self.stop_by(handle, timeout, edge_driver::config::parse_signal(signal)?)
            .await
    }

    async fn destroy(&self, handle: &TaskHandle) -> Result<(), DriverError> {
        let id = check_handle(handle)?;
        self.remove_container(&id).await.map_err(Into::into)
    }

    async fn signal(&self, handle: &TaskHandle, signal: &str) -> Result<(), DriverError> {
        let id = check_handle(handle)?;
        let sig = edge_driver::config::parse_signal(signal)?;
        match self.task_status(&id).await {
            Err(e) if e.is_not_found() => {
                return Err(DriverError::NotFound {
                    task_id: handle.task_id.clone(),
                });
            }
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        self.kill(&id, sig, false).await.map_err(Into::into)
    }

    async fn leftovers(&self, owned: &BTreeSet<String>) -> Result<Vec<Leftover>, DriverError> {
        if !self.cfg.socket.exists() {
            return Ok(Vec::new());
        }
        let containers = self
            .conn
            .containers()
            .await?
            .list(self.conn.req(ListContainersRequest::default(), None))
            .await
            .map_err(ContainerdError::rpc("container list"))?
            .into_inner()
            .containers;
        let mut out = Vec::new();
        let me = self.agent_label();
        for c in containers {
            let alloc = c.labels.get("edge.alloc_id").cloned();
            // Another agent on this host (its own data dir) shares the
            // namespace; containers from before the label are taken as ours,
            // one agent per host being the norm.
            let other_agent = c.labels.get(AGENT_LABEL).is_some_and(|a| *a != me);
            if other_agent || alloc.as_ref().is_some_and(|a| owned.contains(a)) {
                continue;
            }
            let running = matches!(
                self.task_status(&c.id).await,
                Ok(ProcessStatus::Running | ProcessStatus::Paused | ProcessStatus::Pausing)
            );
            out.push(Leftover {
                driver: DRIVER_NAME.to_string(),
                description: format!(
                    "container {}/{} ({}, image {})",
                    self.cfg.namespace,
                    c.id,
                    if running { "running" } else { "not running" },
                    c.image
                ),
                id: c.id,
                alloc_id: alloc,
            });
        }
        Ok(out)
    }

    async fn reap(&self, leftover: &Leftover) -> Result<(), DriverError> {
        if id_part(&leftover.id, usize::MAX) != leftover.id {
            return Err(DriverError::Other(format!(
                "invalid container id {:?}",
                leftover.id
            )));
        }
        self.remove_container(&leftover.id)
            .await
            .map_err(Into::into)
    }

    async fn stats(&self, handle: &TaskHandle) -> Result<TaskStats, DriverError> {
        let id = check_handle(handle)?;
        let metrics = self
            .conn
            .tasks()
            .await?
            .metrics(self.conn.req(
                MetricsRequest {
                    filters: vec![format!("id=={id}")],
                },
                None,
            ))
            .await
            .map_err(ContainerdError::rpc("task metrics"))?
            .into_inner()
            .metrics;
        let data = metrics
            .into_iter()
            .find(|m| m.id == id)
            .and_then(|m| m.data)
            .ok_or_else(|| DriverError::NotFound {
                task_id: handle.task_id.clone(),
            })?;
        let (memory_rss_bytes, cpu_total_ns) = metrics::decode(&data.type_url, &data.value)
            .ok_or_else(|| DriverError::Other(format!("unknown metrics type {}", data.type_url)))?;
        Ok(TaskStats {
            memory_rss_bytes,
            cpu_total_ns,
            timestamp: now_ms(),
        })
    }

    async fn exec(
        &self,
        handle: &TaskHandle,
        req: &edge_driver::ExecRequest,
    ) -> Result<edge_driver::ExecSession, DriverError> {
        let id = check_handle(handle)?;
        let not_running = || DriverError::NotFound {
            task_id: handle.task_id.clone(),
        };
        match self.task_status(&id).await {
            Ok(ProcessStatus::Running) => {}
            Ok(_) => return Err(not_running()),
            Err(e) if e.is_not_found() => return Err(not_running()),
            Err(e) => return Err(e.into()),
        }
        exec::start(self.conn.clone(), self.cfg.state_dir.join("exec"), &id, req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_are_valid_and_stable() {
        let alloc = "3f2a1b9c-0000-4000-8000-000000000001";
        assert_eq!(
            container_id(&format!("{alloc}/web/0a1b2c3d")).unwrap(),
            format!("{alloc}-web-0a1b2c3d")
        );
        assert_eq!(
            container_id(&format!("{alloc}/my task!!/ab")).unwrap(),
            format!("{alloc}-my-task-ab")
        );
        let long = "x".repeat(100);
        let id = container_id(&format!("{alloc}/{long}/ab")).unwrap();
        assert!(id.len() <= 76, "{id}");
        for bad in ["a/b", "../x/web/ab", "a b/web/ab", "a/web/zz", "/web/ab"] {
            assert!(container_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exit_status_maps_signals() {
        assert_eq!(exit_result(0, false), ExitResult::default());
        let r = exit_result(137, true);
        assert_eq!((r.exit_code, r.signal, r.oom_killed), (137, Some(9), true));
        assert_eq!(exit_result(3, false).signal, None);
    }

    #[test]
    fn handles_of_other_drivers_are_refused() {
        let h = TaskHandle {
            driver: "exec".into(),
            task_id: "a/web/ab".into(),
            pid: None,
            started_at: 0,
            state: serde_json::Value::Null,
        };
        assert!(check_handle(&h).is_err());
    }
}
