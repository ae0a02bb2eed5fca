//! The embedded wasmtime: one engine per driver with the pooling allocator
//! and epoch interruption, the WASI preview 1 linker, the per-store host state
//! (memory limiter, interruption rule) and the on-disk compiled-module cache.

use crate::capture::{self, Capture, OutputTooLarge};
use crate::environ::{self, Environ};
use crate::error::WasmError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, ResourceLimiter, Store, UpdateDeadline,
};
use wasmtime_wasi::p1::WasiP1Ctx;

/// The wasmtime this driver embeds; part of every compiled-cache key because
/// a compiled artefact only loads into the exact version that wrote it.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// How often the engine epoch advances: the granularity of request deadlines
/// and of stopping a running module.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Instances that may be alive at once across all tasks of one driver. Each
/// reserves address space (not memory) in the pool, so this stays modest.
const POOL_INSTANCES: u32 = 256;

/// Bytes of each pooled memory and table kept mapped between instances.
const KEEP_RESIDENT: usize = 1 << 20;

/// Per-store state seen by WASI host calls, the limiter and the epoch callback.
pub(crate) struct Host {
    pub wasi: WasiP1Ctx,
    /// What the module's `environ_get` returns (see [`crate::environ`]).
    pub environ: Environ,
    /// http mode: where `fd_write` puts stdout and stderr (see
    /// [`crate::capture`]).
    pub capture: Option<Capture>,
    pub limits: MemoryLimiter,
    pub interrupt: Interrupt,
}

/// When a running module must stop, checked at every epoch tick.
pub(crate) struct Interrupt {
    /// Set by `stop`: the module ends at the next tick.
    pub stop: Option<Arc<AtomicBool>>,
    /// A request deadline, or a command's `timeout`: when, and how long
    /// that was after the start.
    pub deadline: Option<(Instant, Duration)>,
}

/// The error a module is interrupted with, recognisable in the trap's chain.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Interrupted {
    #[error("stopped by the agent")]
    Stopped,
    #[error("deadline of {0:?} exceeded")]
    Deadline(Duration),
}

/// The error a module's memory growth past its limit is turned into.
#[derive(Debug, thiserror::Error)]
#[error(
    "memory limit exceeded: the module asked for {desired_mib} MiB of linear memory, resources.memory allows {limit_mib} MiB"
)]
pub(crate) struct MemoryExceeded {
    pub desired_mib: u64,
    pub limit_mib: u64,
}

/// Caps the linear memory of one store at `resources.memory` and keeps a
/// task-wide count of live bytes for `stats`.
pub(crate) struct MemoryLimiter {
    limit: u64,
    used: u64,
    live: Arc<AtomicU64>,
}

impl MemoryLimiter {
    pub(crate) fn new(limit_bytes: u64, live: Arc<AtomicU64>) -> MemoryLimiter {
        MemoryLimiter {
            limit: limit_bytes,
            used: 0,
            live,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|m| desired > m) {
            return Ok(false);
        }
        let grow = (desired as u64).saturating_sub(current as u64);
        let total = self.used.saturating_add(grow);
        if total > self.limit {
            return Err(wasmtime::Error::new(MemoryExceeded {
                desired_mib: total.div_ceil(1 << 20),
                limit_mib: self.limit >> 20,
            }));
        }
        self.used = total;
        self.live.fetch_add(grow, Ordering::Relaxed);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        const MAX_TABLE_ELEMENTS: usize = 1 << 20;
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|m| desired <= m))
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        self.live.fetch_sub(self.used, Ordering::Relaxed);
    }
}

/// A store ready to instantiate into: limiter installed, epoch callback set.
pub(crate) fn new_store(engine: &Engine, host: Host) -> Store<Host> {
    let mut store = Store::new(engine, host);
    store.limiter(|h| &mut h.limits);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|ctx| {
        let rule = &ctx.data().interrupt;
        if rule
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
        {
            return Err(wasmtime::Error::new(Interrupted::Stopped));
        }
        if let Some((at, after)) = rule.deadline
            && Instant::now() >= at
        {
            return Err(wasmtime::Error::new(Interrupted::Deadline(after)));
        }
        // Yielding lets the executor run other tasks and lets a dropped
        // future cancel the module at this point.
        Ok(UpdateDeadline::Yield(1))
    });
    store
}

/// The engine, linker and compiled-module caches of one driver.
pub(crate) struct Runtime {
    pub engine: Engine,
    /// WASI for command modules.
    linker: Linker<Host>,
    /// The same with http mode's own `fd_write`.
    http_linker: Linker<Host>,
    cache_dir: PathBuf,
    modules: Mutex<HashMap<String, Module>>,
    compilations: AtomicU64,
}

impl Runtime {
    pub(crate) fn new(cache_dir: PathBuf) -> Result<Runtime, WasmError> {
        let engine = engine()?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |h: &mut Host| &mut h.wasi)
            .map_err(|e| WasmError::Engine(format!("{e:#}")))?;
        environ::add_to_linker(&mut linker).map_err(|e| WasmError::Engine(format!("{e:#}")))?;
        let mut http_linker = linker.clone();
        capture::add_to_linker(&mut http_linker)
            .map_err(|e| WasmError::Engine(format!("{e:#}")))?;
        start_ticker(&engine)?;
        Ok(Runtime {
            engine,
            linker,
            http_linker,
            cache_dir,
            modules: Mutex::new(HashMap::new()),
            compilations: AtomicU64::new(0),
        })
    }

    pub(crate) fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }

    /// Where the compiled form of a module with this sha256 is kept.
    pub(crate) fn cache_path(&self, sha256: &str) -> PathBuf {
        self.cache_dir
            .join(format!("{sha256}-{WASMTIME_VERSION}.cwasm"))
    }

    /// Loads a module (`.wasm` binary or `.wat` text), compiling it only when
    /// neither memory nor the disk cache has it. Blocking: call it off the
    /// async executor. Returns the module and whether it was compiled now.
    pub(crate) fn load(&self, path: &Path) -> Result<(Module, bool), WasmError> {
        let bytes = std::fs::read(path).map_err(|source| WasmError::ReadModule {
            path: path.to_path_buf(),
            source,
        })?;
        let hash = sha256_hex(&bytes);
        if let Some(m) = self.cached(&hash) {
            return Ok((m, false));
        }
        let cwasm = self.cache_path(&hash);
        if cwasm.exists() {
            // SAFETY: the cache directory is private to this driver and only
            // ever holds artefacts it wrote with `Module::serialize` under a
            // key that includes the wasmtime version; wasmtime still checks
            // the header and engine compatibility before using one.
            match unsafe { Module::deserialize_file(&self.engine, &cwasm) } {
                Ok(m) => return Ok((self.remember(hash, m), false)),
                Err(e) => tracing::warn!(
                    path = %cwasm.display(),
                    error = %e,
                    "compiled module unusable: compiling again"
                ),
            }
        }
        let module = Module::new(&self.engine, &bytes).map_err(|e| WasmError::Compile {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        })?;
        self.compilations.fetch_add(1, Ordering::Relaxed);
        match module.serialize() {
            Ok(artefact) => {
                if let Err(e) = write_atomic(&cwasm, &artefact) {
                    tracing::warn!(path = %cwasm.display(), error = %e, "cannot cache compiled module");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot serialize compiled module"),
        }
        Ok((self.remember(hash, module), true))
    }

    fn cached(&self, hash: &str) -> Option<Module> {
        self.modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(hash)
            .cloned()
    }

    fn remember(&self, hash: String, module: Module) -> Module {
        self.modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(hash)
            .or_insert(module)
            .clone()
    }

    /// Resolves the module's imports once so that every instance after that
    /// only allocates and initialises: with command WASI, or with http
    /// mode's output capture when `http`.
    pub(crate) fn pre(
        &self,
        module: &Module,
        path: &Path,
        http: bool,
    ) -> Result<InstancePre<Host>, WasmError> {
        let linker = if http {
            &self.http_linker
        } else {
            &self.linker
        };
        linker.instantiate_pre(module).map_err(|e| WasmError::Link {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        })
    }
}

fn engine() -> Result<Engine, WasmError> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_core_instances(POOL_INSTANCES)
        .total_memories(POOL_INSTANCES)
        .total_tables(POOL_INSTANCES)
        .total_stacks(POOL_INSTANCES)
        // Resetting a small instance's pages with memset is cheaper than
        // returning them to the kernel and faulting them in again; the
        // PAGEMAP_SCAN ioctl (Linux 6.7+) limits that to the pages the
        // instance dirtied instead of the whole first megabyte.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .pagemap_scan(Enabled::Auto);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&config) {
        Ok(engine) => Ok(engine),
        Err(e) => {
            // A host with little address space (a 32-bit board, a tight
            // `ulimit -v`) cannot reserve the pool; instances then cost more
            // but still run.
            tracing::warn!(error = %e, "pooling allocator unavailable: allocating on demand");
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            Engine::new(&config).map_err(|e| WasmError::Engine(format!("{e:#}")))
        }
    }
}

/// Advances the epoch until the engine is dropped.
fn start_ticker(engine: &Engine) -> Result<(), WasmError> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch".to_string())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        })
        .map(|_| ())
        .map_err(|e| WasmError::io("starting the epoch ticker", e))
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes through a temporary file and a rename, so a crash never leaves a
/// half-written file under the final name.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// A readable reason for a failed instantiation or call.
pub(crate) fn describe(e: &wasmtime::Error) -> String {
    for cause in e.chain() {
        if let Some(m) = cause.downcast_ref::<MemoryExceeded>() {
            return m.to_string();
        }
        if let Some(i) = cause.downcast_ref::<Interrupted>() {
            return i.to_string();
        }
        if let Some(o) = cause.downcast_ref::<OutputTooLarge>() {
            return o.to_string();
        }
    }
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        return format!("wasm trap: {trap}");
    }
    e.root_cause().to_string()
}

pub(crate) fn interrupted(e: &wasmtime::Error) -> Option<&Interrupted> {
    e.chain().find_map(|c| c.downcast_ref::<Interrupted>())
}
