//! The wasm driver: WebAssembly modules on an embedded wasmtime, inside the
//! agent process. `mode = "command"` runs a WASI preview 1 command to
//! completion; `mode = "http"` serves the task's port and runs every request
//! in a fresh instance (WAGI). Memory is capped by `resources.memory`, running
//! code is interrupted through epochs, and compiled modules are cached on
//! disk by module hash and wasmtime version.
//!
//! Wasm tasks live in the agent process, so unlike exec tasks they do not
//! survive an agent restart: `recover` answers `NotFound` and the agent starts
//! them again (cheaply: the compiled module is on disk).

mod capture;
mod command;
mod config;
mod environ;
pub mod error;
mod fetch;
mod guest;
mod http;
mod runtime;
mod stdio;

pub use config::{WasmBlock, check_config};
pub use error::WasmError;
pub use runtime::WASMTIME_VERSION;

use async_trait::async_trait;
use bytes::Bytes;
use config::{Mode, Source};
use edge_driver::{Driver, DriverError, EventSink, ExitResult, TaskConfig, TaskHandle, TaskStats};
use edge_spec::DriverInfo;
use runtime::{MemoryLimiter, Runtime};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use stdio::LogStream;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use wasmtime::Module;

const NAME: &str = "wasm";

/// The wasm driver. One wasmtime engine (and epoch ticker thread) per driver.
pub struct WasmDriver {
    rt: Arc<Runtime>,
    modules_dir: PathBuf,
    client: reqwest::Client,
    tasks: Mutex<HashMap<String, Arc<Task>>>,
    seq: AtomicU64,
    /// Started with the first http-mode task.
    serve_pool: Mutex<Option<Arc<http::ServePool>>>,
}

/// One running task, command or http.
struct Task {
    http: bool,
    /// Read at every epoch tick by a command module's store.
    stop: Arc<AtomicBool>,
    /// Tells an http server to stop accepting and drain.
    shutdown: watch::Sender<bool>,
    abort: AbortHandle,
    done: watch::Receiver<Option<ExitResult>>,
    live_memory: Arc<AtomicU64>,
    busy_ns: Arc<AtomicU64>,
    started: Instant,
}

impl Task {
    fn interrupt(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.shutdown.send_replace(true);
    }

    async fn finished(&self) -> ExitResult {
        let mut rx = self.done.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(exit) => exit.clone().unwrap_or_default(),
            Err(_) => ExitResult {
                exit_code: 1,
                error: Some("wasm task ended without a result".to_string()),
                ..ExitResult::default()
            },
        }
    }

    fn is_done(&self) -> bool {
        self.done.borrow().is_some()
    }
}

/// A WAGI handler outside any task: one module, a fresh instance per call.
/// For benchmarks and embedders; tasks use the same code path.
pub struct WagiHandler {
    inner: http::Handler,
}

impl WagiHandler {
    /// Runs the module for one request and returns its raw CGI output.
    pub async fn call(&self, method: &str, uri: &str, body: Bytes) -> Result<Bytes, String> {
        let req = ::http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .map_err(|e| format!("bad request {method} {uri}: {e}"))?;
        let (parts, ()) = req.into_parts();
        let body_len = body.len();
        self.inner
            .invoke(
                |b| http::add_request_env(b, &parts, "127.0.0.1", body_len),
                body,
            )
            .await
            .map_err(|f| format!("{}: {}", f.status.as_u16(), f.reason))
    }
}

struct Silent;

impl EventSink for Silent {
    fn event(&self, _kind: &str, _message: &str) {}
}

impl WasmDriver {
    /// `data_dir` holds downloaded modules (`modules/`) and compiled ones
    /// (`wasm-cache/`).
    pub fn new(data_dir: impl Into<PathBuf>) -> Result<WasmDriver, WasmError> {
        let data_dir = data_dir.into();
        let rt = Runtime::new(data_dir.join("wasm-cache"))?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| WasmError::Download {
                url: String::new(),
                message: format!("building the http client: {e}"),
            })?;
        Ok(WasmDriver {
            rt: Arc::new(rt),
            modules_dir: data_dir.join("modules"),
            client,
            tasks: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            serve_pool: Mutex::new(None),
        })
    }

    fn serve_pool(&self) -> Result<Arc<http::ServePool>, DriverError> {
        let mut pool = self.serve_pool.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = &*pool {
            return Ok(pool.clone());
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let started = Arc::new(
            http::ServePool::new(threads)
                .map_err(|e| DriverError::io("starting the wasm http threads", e))?,
        );
        *pool = Some(started.clone());
        Ok(started)
    }

    /// How many modules this driver compiled (cache misses in memory and on
    /// disk) since it was created.
    pub fn compilations(&self) -> u64 {
        self.rt.compilations()
    }

    /// The compiled-cache file a module's bytes map to (it exists once the
    /// module was compiled on this node).
    pub fn compiled_path(&self, module_bytes: &[u8]) -> PathBuf {
        self.rt.cache_path(&runtime::sha256_hex(module_bytes))
    }

    /// A WAGI handler for a module file, as http mode runs it.
    pub async fn wagi_handler(
        &self,
        module: &Path,
        memory_mb: u32,
        timeout: Duration,
    ) -> Result<WagiHandler, DriverError> {
        let (m, _) = self.load(module).await?;
        let pre = self.rt.pre(&m, module, true)?;
        let start = http::start_export(&m).map_err(|e| DriverError::Config {
            field: "config.module".into(),
            message: format!("{}: {e}", module.display()),
        })?;
        Ok(WagiHandler {
            inner: http::Handler {
                engine: self.rt.engine.clone(),
                start,
                port: 0,
                pre,
                argv: vec![argv0(module)],
                env: http::base_env([], 0),
                stderr: LogStream::sink(),
                memory_limit: u64::from(memory_mb) << 20,
                live_memory: Arc::new(AtomicU64::new(0)),
                busy_ns: Arc::new(AtomicU64::new(0)),
                timeout,
            },
        })
    }

    async fn module_file(
        &self,
        source: &Source,
        events: &dyn EventSink,
    ) -> Result<PathBuf, DriverError> {
        match source {
            Source::Path(p) => Ok(PathBuf::from(p)),
            Source::Url { url, sha256 } => Ok(fetch::fetch(
                &self.client,
                &self.modules_dir,
                url,
                sha256.as_deref(),
                events,
            )
            .await?),
        }
    }

    /// Compiles or loads from cache (off the executor), then pre-links.
    /// The module at `path`, compiled or from the cache, and whether it was
    /// compiled now.
    async fn load(&self, path: &Path) -> Result<(Module, bool), DriverError> {
        let rt = self.rt.clone();
        let file = path.to_path_buf();
        let (module, compiled): (Module, bool) =
            tokio::task::spawn_blocking(move || rt.load(&file))
                .await
                .map_err(|e| {
                    DriverError::Other(format!("loading module {}: {e}", path.display()))
                })??;
        Ok((module, compiled))
    }

    fn task(&self, handle: &TaskHandle) -> Result<Arc<Task>, DriverError> {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&handle.task_id)
            .cloned()
            .ok_or_else(|| DriverError::NotFound {
                task_id: handle.task_id.clone(),
            })
    }
}

fn argv0(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "module.wasm".to_string())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[async_trait]
impl Driver for WasmDriver {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn fingerprint(&self) -> DriverInfo {
        DriverInfo {
            detected: true,
            healthy: true,
            description: format!("embedded wasmtime {WASMTIME_VERSION}"),
            attributes: BTreeMap::from([(
                "driver.wasm.version".to_string(),
                WASMTIME_VERSION.to_string(),
            )]),
        }
    }

    async fn prepare(&self, cfg: &TaskConfig, events: &dyn EventSink) -> Result<(), DriverError> {
        let tc = config::parse(&cfg.config, &cfg.env)?;
        let path = self.module_file(&tc.source, events).await?;
        let (module, compiled) = self.load(&path).await?;
        // Linking here too reports a missing import before the task starts.
        self.rt
            .pre(&module, &path, matches!(tc.mode, Mode::Http { .. }))?;
        if compiled {
            events.event(
                "Compiled module",
                &format!("{} compiled and cached", path.display()),
            );
        }
        Ok(())
    }

    async fn start(&self, cfg: &TaskConfig) -> Result<TaskHandle, DriverError> {
        let tc = config::parse(&cfg.config, &cfg.env)?;
        let path = self.module_file(&tc.source, &Silent).await?;
        let (module, _) = self.load(&path).await?;
        let http = matches!(tc.mode, Mode::Http { .. });
        if http && !cfg.mounts.is_empty() {
            return Err(DriverError::config(
                "volume_mount",
                "an http-mode module runs once per request with no directories: mount volumes into a command-mode task",
            ));
        }
        let pre = self.rt.pre(&module, &path, http)?;
        let stdout = LogStream::open(cfg, "stdout")
            .map_err(|e| DriverError::io("opening the stdout log", e))?;
        let stderr = LogStream::open(cfg, "stderr")
            .map_err(|e| DriverError::io("opening the stderr log", e))?;
        let argv: Vec<String> = std::iter::once(argv0(&path)).chain(tc.args).collect();
        let memory_limit = u64::from(cfg.resources.memory) << 20;
        let live_memory = Arc::new(AtomicU64::new(0));
        let busy_ns = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let limits = MemoryLimiter::new(memory_limit, live_memory.clone());
        let job = match tc.mode {
            Mode::Command { timeout } => {
                let (wasi, environ) = command::context(cfg, &argv, stdout, stderr.clone())?;
                tokio::spawn(
                    command::Command {
                        engine: self.rt.engine.clone(),
                        pre,
                        wasi,
                        environ,
                        limits,
                        stop: stop.clone(),
                        timeout,
                        stderr,
                        busy_ns: busy_ns.clone(),
                    }
                    .run(),
                )
            }
            Mode::Http {
                port_label,
                timeout,
            } => {
                drop(limits);
                let port = cfg
                    .ports
                    .iter()
                    .find(|p| p.label == port_label)
                    .ok_or_else(|| {
                        DriverError::config(
                            "config.port",
                            format!("the group has no port labelled {port_label:?}"),
                        )
                    })?
                    .to;
                let start = http::start_export(&module).map_err(|e| DriverError::Config {
                    field: "config.module".into(),
                    message: format!("{}: {e}", path.display()),
                })?;
                let handler = Arc::new(http::Handler {
                    engine: self.rt.engine.clone(),
                    start,
                    port,
                    pre,
                    argv,
                    env: http::base_env(&cfg.env, port),
                    stderr,
                    memory_limit,
                    live_memory: live_memory.clone(),
                    busy_ns: busy_ns.clone(),
                    timeout,
                });
                drop(stdout);
                let servers = self
                    .serve_pool()?
                    .serve(port, cfg.netns.as_deref(), handler, shutdown_rx)
                    .map_err(|e| DriverError::io(format!("listening on port {port}"), e))?;
                tokio::spawn(async move {
                    match servers.await {
                        Ok(()) => ExitResult::default(),
                        Err(e) => ExitResult {
                            exit_code: 1,
                            error: Some(format!("http server failed: {e}")),
                            ..ExitResult::default()
                        },
                    }
                })
            }
        };
        let abort = job.abort_handle();
        let (done_tx, done) = watch::channel(None);
        tokio::spawn(async move {
            let exit = match job.await {
                Ok(exit) => exit,
                Err(e) if e.is_cancelled() => ExitResult {
                    exit_code: 1,
                    error: Some("killed: the module did not stop within kill_timeout".to_string()),
                    ..ExitResult::default()
                },
                Err(e) => ExitResult {
                    exit_code: 1,
                    error: Some(format!("wasm task failed: {e}")),
                    ..ExitResult::default()
                },
            };
            done_tx.send_replace(Some(exit));
        });
        let started_at = now_ms();
        let task_id = format!(
            "{}/{}/{started_at}-{}",
            cfg.alloc_id,
            cfg.task,
            self.seq.fetch_add(1, Ordering::Relaxed)
        );
        let task = Arc::new(Task {
            http,
            stop,
            shutdown,
            abort,
            done,
            live_memory,
            busy_ns,
            started: Instant::now(),
        });
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(task_id.clone(), task);
        Ok(TaskHandle {
            driver: NAME.to_string(),
            task_id,
            pid: None,
            started_at,
            state: serde_json::json!({ "module": path.display().to_string() }),
        })
    }

    async fn recover(&self, handle: &TaskHandle) -> Result<(), DriverError> {
        // Only a task started by this very driver instance is still running:
        // wasm tasks die with the agent process.
        self.task(handle).map(|_| ())
    }

    async fn wait(&self, handle: &TaskHandle) -> Result<ExitResult, DriverError> {
        Ok(self.task(handle)?.finished().await)
    }

    async fn stop(&self, handle: &TaskHandle, timeout: Duration) -> Result<(), DriverError> {
        let task = self.task(handle)?;
        task.interrupt();
        if tokio::time::timeout(timeout, task.finished())
            .await
            .is_err()
        {
            // Still inside a host call (or an http request) past the grace
            // time: drop the future, which unwinds the instance.
            task.abort.abort();
            task.finished().await;
        }
        Ok(())
    }

    async fn destroy(&self, handle: &TaskHandle) -> Result<(), DriverError> {
        let task = self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&handle.task_id);
        if let Some(task) = task
            && !task.is_done()
        {
            task.interrupt();
            task.abort.abort();
        }
        Ok(())
    }

    async fn signal(&self, handle: &TaskHandle, signal: &str) -> Result<(), DriverError> {
        let task = self.task(handle)?;
        match signal.trim_start_matches("SIG") {
            "TERM" | "INT" | "QUIT" | "HUP" => task.interrupt(),
            "KILL" => {
                task.interrupt();
                task.abort.abort();
            }
            _ => {
                return Err(DriverError::Other(format!(
                    "wasm tasks cannot take signal {signal}: only SIGTERM, SIGINT, SIGQUIT, SIGHUP (stop) and SIGKILL"
                )));
            }
        }
        Ok(())
    }

    async fn stats(&self, handle: &TaskHandle) -> Result<TaskStats, DriverError> {
        let task = self.task(handle)?;
        // wasm runs on one thread per instance while it is busy: a command's
        // busy time is its run time, an http task's the sum of its requests.
        let cpu = if !task.http && !task.is_done() {
            task.started.elapsed().as_nanos() as u64
        } else {
            task.busy_ns.load(Ordering::Relaxed)
        };
        Ok(TaskStats {
            memory_rss_bytes: task.live_memory.load(Ordering::Relaxed),
            cpu_total_ns: cpu,
            timestamp: now_ms(),
        })
    }

    async fn exec(
        &self,
        _: &TaskHandle,
        _: &edge_driver::ExecRequest,
    ) -> Result<edge_driver::ExecSession, DriverError> {
        Err(DriverError::ExecUnsupported {
            driver: "wasm".to_string(),
            reason: "a WebAssembly task is a module inside the agent, with no process or shell to run a command in".to_string(),
        })
    }
}
