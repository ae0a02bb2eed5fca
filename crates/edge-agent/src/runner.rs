//! Allocation and task runners: start each task through its driver, wait
//! for it, apply the restart policy, stop it when the server says so, and
//! keep the local state and the server informed at every step.

use crate::restart::{self, Decision};
use crate::state::{LocalAlloc, LocalStore, LocalTask};
use crate::{AbortOnDrop, Reporter, now_ms};
use edge_api::AllocUpdate;
use edge_driver::config::{interpolate, interpolate_value};
use edge_driver::{Driver, DriverError, ExitResult, TaskConfig, TaskHandle};
use edge_spec::{
    Allocation, ClientStatus, Hook, Job, JobType, RestartPolicy, Task, TaskEvent, TaskState,
    TaskStatus,
};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, watch};

/// What every runner needs from the agent.
pub struct RunCtx {
    pub drivers: HashMap<String, Arc<dyn Driver>>,
    pub local: LocalStore,
    pub reporter: Arc<Reporter>,
    pub node_id: String,
    pub node_name: String,
    pub datacenter: String,
    pub address: String,
    pub log_max_bytes: u64,
    pub log_max_files: u32,
    pub dns_addr: Option<std::net::SocketAddr>,
    /// The node's bridge network, when it has one.
    pub bridge: Option<Arc<edge_net::BridgeNetwork>>,
    pub host_volumes: BTreeMap<String, crate::HostVolume>,
    /// Where `file://` artifacts may come from.
    pub artifact_dirs: Vec<PathBuf>,
    /// The client artifacts are downloaded with.
    pub artifact_http: reqwest::Client,
    /// Where local volumes live, one directory per copy of a group.
    pub volumes_dir: PathBuf,
    /// The server, for what allocations fetch (configs, secrets).
    pub api: edge_api::Client,
    /// Configs and secrets of running allocations, in memory only: what
    /// tasks get as env vars when they (re)start.
    pub alloc_data: Mutex<HashMap<String, edge_api::AllocData>>,
    /// The service catalog, as DNS and the load balancer see it.
    pub catalog: watch::Receiver<Arc<edge_api::Catalog>>,
    pub node_attributes: BTreeMap<String, String>,
    pub node_meta: BTreeMap<String, String>,
    /// By allocation id: what its tasks' `env = true` templates rendered.
    pub template_env: Mutex<HashMap<String, TaskEnvs>>,
    /// Held across fetching and applying the node's named networks, so a
    /// list fetched before a placement is never applied after one fetched
    /// since (it would remove the network the new copy joins).
    pub network_sync: tokio::sync::Mutex<()>,
}

/// Task name to env vars.
pub type TaskEnvs = BTreeMap<String, BTreeMap<String, String>>;

pub struct AllocRunner {
    stop_tx: watch::Sender<bool>,
    shared: Arc<Mutex<LocalAlloc>>,
    join: tokio::task::JoinHandle<()>,
}

impl AllocRunner {
    /// The keys of the named networks the allocation is on, or is about
    /// to join (a task still to run); none once it is done and detached.
    pub fn network_keys(&self) -> Vec<String> {
        let g = lock(&self.shared);
        let live =
            g.network.is_some() || g.tasks.values().any(|t| t.state.state != TaskStatus::Dead);
        if !live {
            return Vec::new();
        }
        network_keys(&g)
    }

    pub fn spawn(ctx: Arc<RunCtx>, local: LocalAlloc) -> AllocRunner {
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Mutex::new(local));
        let join = tokio::spawn(run_alloc(ctx, shared.clone(), stop_rx));
        AllocRunner {
            stop_tx,
            shared,
            join,
        }
    }

    /// Asks every task to stop (kill_timeout applies); idempotent.
    pub fn stop(&self) {
        self.stop_tx.send_replace(true);
    }

    /// The server moved the allocation forward in place (a new job version
    /// that changes nothing the tasks run with).
    pub fn update(&self, ctx: &RunCtx, alloc: Allocation, job: Job) {
        let mut g = lock(&self.shared);
        // What the agent reports stays the agent's. Checks above all: a
        // copy whose checks pass again after a restart, while the server
        // still holds the previous agent's "passing", would otherwise take
        // that as its own and never report the change from the "pending"
        // it sent first.
        g.alloc = alloc.with_reports_of(&g.alloc);
        g.job = job;
        if let Err(e) = ctx.local.save(&g) {
            tracing::warn!(alloc = %g.alloc.id, error = %e, "cannot save allocation state");
        }
    }

    pub async fn join(self) {
        let _ = self.join.await;
    }

    /// Stops driving the allocation and leaves its tasks running, as after a
    /// crash: the next agent re-attaches to them from local state.
    pub async fn detach(self) {
        self.join.abort();
        let _ = self.join.await;
    }

    /// What `edge alloc exec` needs of task `name`: whether it exists, its
    /// driver, and its handle while it runs.
    pub fn task(&self, name: &str) -> Option<(String, Option<TaskHandle>)> {
        let g = lock(&self.shared);
        let task = g
            .job
            .group(&g.alloc.group)?
            .tasks
            .iter()
            .find(|t| t.name == name)?;
        let running = g
            .tasks
            .get(name)
            .filter(|t| t.state.state == TaskStatus::Running)
            .and_then(|t| t.handle.clone());
        Some((task.driver.clone(), running))
    }

    /// For a group with an enabled `scaling` block: its running tasks'
    /// handles and the MHz its tasks reserved.
    pub(crate) fn usage_watch(&self) -> Option<(Vec<TaskHandle>, u64)> {
        let g = lock(&self.shared);
        let group = g.job.group(&g.alloc.group)?;
        group.scaling.as_ref().filter(|s| s.enabled)?;
        let reserved = group.tasks.iter().map(|t| u64::from(t.resources.cpu)).sum();
        let handles = g
            .tasks
            .values()
            .filter(|t| t.state.state == TaskStatus::Running)
            .filter_map(|t| t.handle.clone())
            .collect();
        Some((handles, reserved))
    }

    /// The allocation as this node last saw it, with its group.
    pub fn view(&self) -> Option<(Allocation, edge_spec::Group)> {
        let g = lock(&self.shared);
        let group = g.job.group(&g.alloc.group)?.clone();
        Some((g.alloc.clone(), group))
    }
}

fn lock(m: &Mutex<LocalAlloc>) -> std::sync::MutexGuard<'_, LocalAlloc> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn alloc_dirs(ctx: &RunCtx, alloc_id: &str) -> (PathBuf, PathBuf) {
    let root = ctx.local.alloc_dir(alloc_id);
    let logs = root.join("alloc").join("logs");
    (root, logs)
}

async fn run_alloc(
    ctx: Arc<RunCtx>,
    shared: Arc<Mutex<LocalAlloc>>,
    mut outer_stop: watch::Receiver<bool>,
) {
    let (alloc_id, group, policy, job_type, rules) = {
        let g = lock(&shared);
        let group = g.job.group(&g.alloc.group).cloned();
        match group {
            Some(group) => (
                g.alloc.id.clone(),
                group.clone(),
                group.restart.clone(),
                group.runs_as(g.job.job_type),
                if g.alloc.migration {
                    edge_spec::Update::for_migration(&g.job, &group)
                } else {
                    edge_spec::Update::resolve(&g.job, &group)
                },
            ),
            None => {
                drop(g);
                let mut g = lock(&shared);
                let msg = format!(
                    "group {:?} is not in job version {}",
                    g.alloc.group, g.job.version
                );
                g.alloc.client_status = ClientStatus::Failed;
                g.alloc.client_description = msg;
                publish(&ctx, &g);
                return;
            }
        }
    };
    let (root, logs) = alloc_dirs(&ctx, &alloc_id);
    for dir in [root.join("alloc").join("data"), logs.clone()] {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::warn!(path = %dir.display(), error = %e, "cannot create allocation dir");
        }
    }
    let tasks = group.tasks.clone();
    // Tasks stop only after the instances were withdrawn and the services'
    // shutdown_delay let connections drain.
    let (stop_tx, stop_rx) = watch::channel(*outer_stop.borrow());
    let delay = group
        .services
        .iter()
        .map(|s| s.shutdown_delay)
        .max()
        .unwrap_or_default();
    let gate = {
        let ctx = ctx.clone();
        let shared = shared.clone();
        AbortOnDrop(tokio::spawn(async move {
            if outer_stop.wait_for(|s| *s).await.is_err() {
                return;
            }
            if !delay.is_zero() {
                {
                    let mut g = lock(&shared);
                    for st in g.alloc.checks.values_mut() {
                        *st = edge_spec::HealthStatus::Draining;
                    }
                    publish(&ctx, &g);
                }
                tokio::time::sleep(delay).await;
            }
            stop_tx.send_replace(true);
        }))
    };
    let (restart_tx, restart_rx) = watch::channel(None);
    let template_restart = restart_tx.clone();
    let checks = {
        let ctx = ctx.clone();
        let shared = shared.clone();
        let alloc = lock(&shared).alloc.clone();
        let group = group.clone();
        let stop = stop_rx.clone();
        let address = ctx.address.clone();
        let exec = script_exec(ctx.clone(), shared.clone());
        AbortOnDrop(tokio::spawn(async move {
            let on_status = move |st: BTreeMap<String, edge_spec::HealthStatus>| {
                let mut g = lock(&shared);
                if g.alloc.checks != st {
                    g.alloc.checks = st;
                    publish(&ctx, &g);
                }
            };
            crate::checks::run(
                alloc,
                group,
                crate::checks::Reach { address, exec },
                tokio::time::Instant::now(),
                stop,
                on_status,
                restart_tx,
            )
            .await
        }))
    };
    // Service and system copies roll out on their verdicts; with
    // `health_check = "manual"` an operator gives them instead.
    let judged = matches!(
        job_type,
        edge_spec::JobType::Service | edge_spec::JobType::System
    ) && rules.health_check != edge_spec::HealthCheck::Manual;
    let health = judged.then(|| {
        let ctx = ctx.clone();
        let report = move |g: &LocalAlloc| publish(&ctx, g);
        let watch = crate::health::run(
            shared.clone(),
            group.clone(),
            rules,
            stop_rx.clone(),
            report,
        );
        AbortOnDrop(tokio::spawn(watch))
    });
    {
        let mut g = lock(&shared);
        for t in &tasks {
            g.tasks.entry(t.name.clone()).or_insert_with(|| LocalTask {
                handle: None,
                state: TaskState::default(),
                restart_times: Vec::new(),
            });
        }
        refresh(&mut g);
        publish(&ctx, &g);
    }
    if group.network.mode == edge_spec::NetworkMode::Bridge
        && let Err(why) = network_up(&ctx, &shared).await
    {
        fail_setup(&ctx, &shared, &why);
        drop((gate, checks, health));
        network_down(&ctx, &shared).await;
        return;
    }
    let setup = match volumes_up(&ctx, &shared) {
        Ok(()) => crate::data::up(&ctx, &shared).await,
        Err(e) => Err(e),
    };
    let setup = setup.and_then(|()| crate::data::payload_up(&ctx, &shared));
    let templated = tasks.iter().any(|t| !t.templates.is_empty());
    let setup = setup.and_then(|()| {
        if !templated {
            return Ok(());
        }
        let catalog = ctx.catalog.borrow().clone();
        crate::template::render_all(&ctx, &shared, &tasks, catalog).map(drop)
    });
    if let Err(why) = setup {
        fail_setup(&ctx, &shared, &why);
        drop((gate, checks, health));
        crate::data::down(&ctx, &alloc_id, &tasks);
        network_down(&ctx, &shared).await;
        return;
    }
    let templates = templated.then(|| {
        AbortOnDrop(tokio::spawn(crate::template::watch(
            ctx.clone(),
            shared.clone(),
            tasks.clone(),
            template_restart,
            stop_rx.clone(),
        )))
    });
    let spawn = |t: Task, stop: watch::Receiver<bool>, started: Option<oneshot::Sender<()>>| {
        AbortOnDrop(tokio::spawn(run_task(
            ctx.clone(),
            shared.clone(),
            t,
            policy.clone(),
            job_type,
            Signals {
                stop,
                restart: restart_rx.clone(),
                started,
            },
        )))
    };
    let hooks = |hook: Option<Hook>, sidecar: bool| {
        tasks
            .iter()
            .filter(move |t| t.hook() == hook && (hook.is_none() || t.is_ephemeral() != sidecar))
            .cloned()
    };
    // Sidecars outlive the main tasks' stop: they go once those are done.
    let (side_tx, side_rx) = watch::channel(false);
    let mut sidecars = Vec::new();
    let mut ready = Vec::new();
    for t in hooks(Some(Hook::Prestart), true) {
        let (tx, rx) = oneshot::channel();
        sidecars.push(spawn(t, side_rx.clone(), Some(tx)));
        ready.push(rx);
    }
    let mut prestart: Vec<AbortOnDrop> = hooks(Some(Hook::Prestart), false)
        .map(|t| spawn(t, stop_rx.clone(), None))
        .collect();
    let prestarted = {
        let mut stop = stop_rx.clone();
        let wait = async {
            join_tasks(&mut prestart).await;
            started_all(ready).await
        };
        tokio::select! {
            ok = wait => ok,
            Ok(_) = stop.wait_for(|s| *s) => false,
        }
    };
    let mut main = Vec::new();
    let mut poststart = Vec::new();
    match (prestarted, first_failed(&shared)) {
        (true, None) => {
            let mut ready = Vec::new();
            for t in hooks(None, false) {
                let (tx, rx) = oneshot::channel();
                main.push(spawn(t, stop_rx.clone(), Some(tx)));
                ready.push(rx);
            }
            let mut stop = stop_rx.clone();
            let all_running = tokio::select! {
                ok = started_all(ready) => ok,
                Ok(_) = stop.wait_for(|s| *s) => false,
            };
            if all_running {
                for t in hooks(Some(Hook::Poststart), false) {
                    poststart.push(spawn(t, stop_rx.clone(), None));
                }
                for t in hooks(Some(Hook::Poststart), true) {
                    sidecars.push(spawn(t, side_rx.clone(), None));
                }
            }
        }
        (_, failed) => {
            let why = match failed {
                Some(name) => format!("prestart task {name:?} failed"),
                None => "the allocation was stopped before its prestart tasks finished".to_string(),
            };
            let skipped: Vec<String> = tasks
                .iter()
                .filter(|t| matches!(t.hook(), None | Some(Hook::Poststart)))
                .map(|t| t.name.clone())
                .collect();
            not_started(&ctx, &shared, &skipped, &why);
        }
    }
    join_tasks(&mut prestart).await;
    join_tasks(&mut main).await;
    side_tx.send_replace(true);
    join_tasks(&mut poststart).await;
    join_tasks(&mut sidecars).await;
    // Poststop tasks run once the main tasks are gone, also when the
    // server stopped the allocation: a stop does not cut them short.
    let (_never_tx, never) = watch::channel(false);
    let mut poststop: Vec<AbortOnDrop> = hooks(Some(Hook::Poststop), false)
        .map(|t| spawn(t, never.clone(), None))
        .collect();
    join_tasks(&mut poststop).await;
    drop(templates);
    crate::data::down(&ctx, &alloc_id, &tasks);
    drop((gate, checks, health));
    // Only once every task is done: an agent that stops driving the
    // allocation aborts this future before here and leaves the tasks, and
    // their network, to the next agent.
    network_down(&ctx, &shared).await;
    let g = lock(&shared);
    publish(&ctx, &g);
}

/// How script checks run their command: in the named task while it runs,
/// through its driver, as `edge alloc exec` does.
fn script_exec(ctx: Arc<RunCtx>, shared: Arc<Mutex<LocalAlloc>>) -> crate::checks::Exec {
    Arc::new(move |task: String, argv: Vec<String>| {
        let handle = lock(&shared)
            .tasks
            .get(&task)
            .filter(|t| t.state.state == TaskStatus::Running)
            .and_then(|t| t.handle.clone());
        let ctx = ctx.clone();
        Box::pin(async move {
            let h = handle.ok_or_else(|| format!("task {task:?} is not running"))?;
            let driver = ctx
                .drivers
                .get(&h.driver)
                .ok_or_else(|| format!("driver {:?} is not on this node", h.driver))?;
            let req = edge_driver::ExecRequest {
                argv,
                tty: false,
                size: None,
                stdin: false,
            };
            driver.exec(&h, &req).await.map_err(|e| e.to_string())
        })
    })
}

/// Waits for every task of a phase to be done for good. Each one leaves
/// the list when it is (a join handle must not be polled again), so a wait
/// cut short can be taken up later.
async fn join_tasks(tasks: &mut Vec<AbortOnDrop>) {
    while let Some(t) = tasks.first_mut() {
        let _ = (&mut t.0).await;
        tasks.remove(0);
    }
}

/// True once every task behind `ready` runs; false when one of them ended
/// without ever running.
async fn started_all(ready: Vec<oneshot::Receiver<()>>) -> bool {
    for r in ready {
        if r.await.is_err() {
            return false;
        }
    }
    true
}

/// The first task that failed for good, if any.
fn first_failed(shared: &Mutex<LocalAlloc>) -> Option<String> {
    let g = lock(shared);
    g.tasks
        .iter()
        .find(|(_, t)| t.state.failed)
        .map(|(name, _)| name.clone())
}

/// Marks tasks that will not run now (a prestart task failed, or a stop
/// came first) as done, with the reason.
fn not_started(ctx: &RunCtx, shared: &Mutex<LocalAlloc>, names: &[String], why: &str) {
    let mut g = lock(shared);
    for name in names {
        if let Some(t) = g.tasks.get_mut(name)
            && t.state.state != TaskStatus::Dead
        {
            t.state.push_event(event("Not Started", why));
            t.state.state = TaskStatus::Dead;
        }
    }
    refresh(&mut g);
    publish(ctx, &g);
}

/// The keys of the named networks the allocation's group joins.
fn network_keys(g: &LocalAlloc) -> Vec<String> {
    g.job
        .group(&g.alloc.group)
        .map(|grp| {
            grp.network
                .networks
                .iter()
                .map(|n| edge_spec::NamedNetwork::key(&g.job.namespace, &g.job.id, n))
                .collect()
        })
        .unwrap_or_default()
}

/// Gives a bridge-mode allocation its namespace before any task starts:
/// the one in local state while it still exists (the agent restarted),
/// else a new one (a reboot took the old one: its lease goes first).
async fn network_up(ctx: &RunCtx, shared: &Mutex<LocalAlloc>) -> Result<(), String> {
    let Some(net) = ctx.bridge.clone() else {
        return Err(
            "bridge networking is not available on this node (the agent's log says why)"
                .to_string(),
        );
    };
    let (id, saved, ports, runs, keys, namespace) = {
        let g = lock(shared);
        let keys = network_keys(&g);
        let ports: Vec<edge_net::PortMapping> = g
            .alloc
            .resources
            .ports
            .iter()
            .map(|p| edge_net::PortMapping {
                host: p.value,
                container: p.to,
            })
            .collect();
        let runs = g.tasks.values().any(|t| t.state.state != TaskStatus::Dead);
        (
            g.alloc.id.clone(),
            g.network.clone(),
            ports,
            runs,
            keys,
            g.job.namespace.clone(),
        )
    };
    if !runs {
        return Ok(());
    }
    if keys.iter().any(|k| !net.knows(k)) {
        crate::networks::sync(ctx, None).await?;
    }
    if let Some(att) = &saved {
        if edge_net::BridgeNetwork::is_live(att) {
            return Ok(());
        }
        if let Err(e) = net.detach(&id, Some(att)).await {
            tracing::warn!(alloc = %id, error = %e, "cannot clear the allocation's old network");
        }
    }
    let att = match net.attach(&id, &ports, &keys).await {
        // Removed as unused between the check above and the attach (a
        // project taken down and up again at once): the server's list has
        // it again, since it placed this allocation on it.
        Err(edge_net::NetError::UnknownNetwork { .. }) => {
            crate::networks::sync(ctx, None).await?;
            net.attach(&id, &ports, &keys).await
        }
        attached => attached,
    }
    .map_err(|e| format!("cannot set up the allocation's network: {e}"))?;
    tracing::info!(alloc = %id, address = %att.address, "allocation attached to the bridge");
    if let Some(resolver) = att.resolver {
        // Names under service.edge resolve short (`web`), as in Docker's
        // and Kubernetes' networks, those of the allocation's own namespace
        // first (a Compose project's services are `web`, not
        // `web.shop`); other names go on upstream.
        let search = if namespace == edge_spec::DEFAULT_NAMESPACE {
            "service.edge".to_string()
        } else {
            format!("{namespace}.service.edge service.edge")
        };
        let text = format!("nameserver {resolver}\nsearch {search}\n");
        let root = ctx.local.alloc_dir(&id);
        let path = resolv_conf_path(&root);
        let written = std::fs::create_dir_all(&root).and_then(|()| std::fs::write(&path, text));
        if let Err(e) = written {
            tracing::warn!(alloc = %id, path = %path.display(), error = %e, "cannot write the allocation's resolv.conf");
        }
    }
    {
        let mut g = lock(shared);
        g.network = Some(att);
        if let Err(e) = ctx.local.save(&g) {
            tracing::warn!(alloc = %id, error = %e, "cannot save allocation state");
        }
    }
    // On disk before a task runs in it, so a crash from here on finds it.
    ctx.local.flush_async().await;
    Ok(())
}

/// Where volume `v` of the allocation's group is on this node: the host
/// volume the agent was given, or the copy's local volume directory.
fn volume_dir(
    ctx: &RunCtx,
    alloc: &Allocation,
    v: &edge_spec::VolumeRequest,
) -> Result<(PathBuf, bool), String> {
    match v.kind {
        edge_spec::VolumeType::Host => ctx
            .host_volumes
            .get(&v.source)
            .map(|h| (h.path.clone(), h.read_only))
            .ok_or_else(|| {
                format!(
                    "host volume {:?} is not on this node (agent flag --host-volume)",
                    v.source
                )
            }),
        edge_spec::VolumeType::Local => {
            let dir = local_volume_dir(
                ctx,
                &alloc.namespace,
                &alloc.job_id,
                &alloc.group,
                &v.name,
                alloc.index,
            )?;
            Ok((dir, false))
        }
    }
}

/// A local volume's directory on this node.
pub(crate) fn local_volume_dir(
    ctx: &RunCtx,
    namespace: &str,
    job: &str,
    group: &str,
    name: &str,
    index: u32,
) -> Result<PathBuf, String> {
    // Joined under the agent's dir: checked again for jobs stored before
    // names were validated, and for what the server sends.
    if let Some(why) = edge_spec::namespace::namespace_problem(namespace) {
        return Err(format!("namespace {namespace:?} {why}"));
    }
    for (kind, n) in [
        (edge_spec::NameKind::Job, job),
        (edge_spec::NameKind::Group, group),
        (edge_spec::NameKind::Volume, name),
    ] {
        edge_spec::check_name(kind, n).map_err(|e| e.to_string())?;
    }
    Ok(ctx
        .volumes_dir
        .join(namespace)
        .join(job)
        .join(group)
        .join(format!("{name}-{index}")))
}

/// Makes sure every volume of the group is there before a task runs:
/// host volumes exist, local ones are created on first use (and kept).
fn volumes_up(ctx: &RunCtx, shared: &Mutex<LocalAlloc>) -> Result<(), String> {
    let (alloc, volumes) = {
        let g = lock(shared);
        let volumes = g
            .job
            .group(&g.alloc.group)
            .map(|grp| grp.volumes.clone())
            .unwrap_or_default();
        (g.alloc.clone(), volumes)
    };
    for v in &volumes {
        let (dir, host_ro) = volume_dir(ctx, &alloc, v)?;
        if v.kind == edge_spec::VolumeType::Host {
            if host_ro && !v.read_only {
                return Err(format!(
                    "host volume {:?} is read-only on this node; the group asks to write to it",
                    v.source
                ));
            }
            if !dir.is_dir() {
                return Err(format!(
                    "host volume {:?} ({}) is gone",
                    v.source,
                    dir.display()
                ));
            }
            continue;
        }
        let size = v
            .size
            .as_deref()
            .map(edge_spec::volume::parse_size)
            .transpose()?;
        if !dir.exists() {
            create_local_volume(&ctx.volumes_dir, &dir)
                .map_err(|e| format!("cannot create local volume {}: {e}", dir.display()))?;
            tracing::info!(alloc = %alloc.id, volume = %v.name, path = %dir.display(), "local volume created");
        }
        if let Some(bytes) = size {
            sized_volume_up(&dir, bytes)?;
        }
    }
    Ok(())
}

/// Makes a local volume's directory. Whoever runs the task may write to
/// it (mode 0777, as an allocation dir), while nobody else on the host
/// reaches it: the volumes dir above it is the agent's alone (0700).
fn create_local_volume(root: &std::path::Path, dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))?;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
}

/// A sized local volume's image, beside its directory.
pub(crate) fn volume_image(dir: &std::path::Path) -> PathBuf {
    dir.with_extension("img")
}

/// Mounts a sized local volume's file system at its directory: an ext4
/// image of exactly that size, made on first use and kept; a job asking
/// for another size than the image has is refused rather than handed one
/// it did not ask for.
fn sized_volume_up(dir: &std::path::Path, bytes: u64) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::Uid::effective().is_root() {
        return Err(
            "a local volume with a size is a loop-mounted file system of its own, which needs the agent to run as root"
                .to_string(),
        );
    }
    let img = volume_image(dir);
    let run = |cmd: &mut std::process::Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    match std::fs::metadata(&img) {
        Ok(m) if m.len() != bytes => {
            return Err(format!(
                "local volume {} was made with {} bytes, and the job asks for {bytes}: a volume keeps its size (`edge volume rm` it to make it anew)",
                dir.display(),
                m.len()
            ));
        }
        Ok(_) => {}
        Err(_) => {
            let f = std::fs::File::create(&img)
                .map_err(|e| format!("cannot create {}: {e}", img.display()))?;
            f.set_len(bytes)
                .map_err(|e| format!("cannot size {}: {e}", img.display()))?;
            run(std::process::Command::new("mkfs.ext4")
                .args(["-q", "-F"])
                .arg(&img))?;
        }
    }
    if !crate::data::mounted(dir) {
        run(std::process::Command::new("mount")
            .args(["-o", "loop,nosuid,nodev"])
            .arg(&img)
            .arg(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| format!("cannot open {} to tasks: {e}", dir.display()))?;
    }
    Ok(())
}

/// The task's mounts, resolved to this node's directories.
fn task_mounts(ctx: &RunCtx, g: &LocalAlloc, task: &Task) -> Vec<edge_driver::Mount> {
    let Some(group) = g.job.group(&g.alloc.group) else {
        return Vec::new();
    };
    task.volume_mounts
        .iter()
        .filter_map(|m| {
            let v = group.volumes.iter().find(|v| v.name == m.volume)?;
            let (source, _) = volume_dir(ctx, &g.alloc, v).ok()?;
            Some(edge_driver::Mount {
                source,
                destination: m.destination.clone(),
                read_only: m.read_only || v.read_only,
            })
        })
        .collect()
}

/// Removes the allocation's namespace, address and port mappings; what
/// fails here is left to the node's GC.
async fn network_down(ctx: &RunCtx, shared: &Mutex<LocalAlloc>) {
    let (id, att) = {
        let g = lock(shared);
        (g.alloc.id.clone(), g.network.clone())
    };
    let (Some(net), Some(att)) = (ctx.bridge.clone(), att) else {
        return;
    };
    match net.detach(&id, Some(&att)).await {
        Ok(()) => {
            let mut g = lock(shared);
            g.network = None;
            if let Err(e) = ctx.local.save(&g) {
                tracing::warn!(alloc = %id, error = %e, "cannot save allocation state");
            }
        }
        Err(e) => {
            tracing::warn!(alloc = %id, error = %e, "cannot remove the allocation's network")
        }
    }
}

/// Fails every task that has not run: the allocation cannot start.
fn fail_setup(ctx: &RunCtx, shared: &Mutex<LocalAlloc>, why: &str) {
    let mut g = lock(shared);
    for t in g.tasks.values_mut() {
        if t.state.state != TaskStatus::Dead {
            t.state.push_event(event("Setup Failure", why));
            t.state.state = TaskStatus::Dead;
            t.state.failed = true;
        }
    }
    refresh(&mut g);
    publish(ctx, &g);
}

/// Recomputes the allocation's client status from its tasks: it runs
/// while its main tasks do (hook tasks come and go around them).
fn refresh(g: &mut LocalAlloc) {
    let main: Vec<&str> = g
        .job
        .group(&g.alloc.group)
        .map(|grp| {
            grp.tasks
                .iter()
                .filter(|t| t.lifecycle.is_none())
                .map(|t| t.name.as_str())
                .collect()
        })
        .unwrap_or_default();
    let is_main = |name: &str| main.is_empty() || main.contains(&name);
    let states: Vec<(&String, &TaskState)> = g.tasks.iter().map(|(k, t)| (k, &t.state)).collect();
    let mains = || states.iter().filter(|(k, _)| is_main(k));
    let status = if states.iter().any(|(_, s)| s.failed) {
        ClientStatus::Failed
    } else if !states.is_empty() && states.iter().all(|(_, s)| s.state == TaskStatus::Dead) {
        ClientStatus::Complete
    } else if mains().count() > 0 && mains().all(|(_, s)| s.state == TaskStatus::Running) {
        ClientStatus::Running
    } else if mains().all(|(_, s)| s.state == TaskStatus::Dead)
        && states.iter().any(|(_, s)| s.state == TaskStatus::Running)
    {
        // Sidecars and poststop tasks finishing after the main tasks.
        ClientStatus::Running
    } else {
        ClientStatus::Pending
    };
    if g.alloc.client_status != ClientStatus::Lost {
        g.alloc.client_status = status;
    }
    g.alloc.client_description = match status {
        ClientStatus::Failed => "failed tasks".to_string(),
        ClientStatus::Complete => "all tasks have completed".to_string(),
        ClientStatus::Running => "tasks are running".to_string(),
        _ => "no tasks have started".to_string(),
    };
    g.alloc.task_states = g
        .tasks
        .iter()
        .map(|(k, v)| (k.clone(), v.state.clone()))
        .collect::<BTreeMap<_, _>>();
}

/// Saves the local state and queues a report to the server.
fn publish(ctx: &RunCtx, g: &LocalAlloc) {
    if let Err(e) = ctx.local.save(g) {
        tracing::warn!(alloc = %g.alloc.id, error = %e, "cannot save allocation state");
    }
    ctx.reporter.push(AllocUpdate {
        id: g.alloc.id.clone(),
        client_status: g.alloc.client_status,
        client_description: g.alloc.client_description.clone(),
        task_states: g.alloc.task_states.clone(),
        checks: g.alloc.checks.clone(),
        health: g.alloc.health,
        address: g.network.as_ref().map(|n| n.address),
        networks: g
            .network
            .as_ref()
            .map(|n| {
                n.interfaces
                    .iter()
                    .filter_map(|f| {
                        let name = f.network.rsplit('/').next().filter(|s| !s.is_empty())?;
                        Some((name.to_string(), f.address))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    });
}

fn event(kind: &str, message: impl Into<String>) -> TaskEvent {
    TaskEvent {
        time: now_ms(),
        kind: kind.to_string(),
        message: message.into(),
    }
}

/// Applies `f` to the task's slot, then refreshes, saves and reports.
fn with_task(ctx: &RunCtx, shared: &Mutex<LocalAlloc>, task: &str, f: impl FnOnce(&mut LocalTask)) {
    let mut g = lock(shared);
    if let Some(t) = g.tasks.get_mut(task) {
        f(t);
    }
    refresh(&mut g);
    publish(ctx, &g);
}

/// Stops a task with its `kill_signal` (SIGTERM when unset), then SIGKILL
/// after its `kill_timeout`.
async fn stop_task(driver: &dyn Driver, h: &TaskHandle, task: &Task) -> Result<(), DriverError> {
    match &task.kill_signal {
        Some(signal) => driver.stop_with(h, task.kill_timeout, signal).await,
        None => driver.stop(h, task.kill_timeout).await,
    }
}

/// The environment a task sees: its own `env` (with `${...}` resolved) plus
/// edge's variables.
pub fn task_env(
    ctx: &RunCtx,
    alloc: &Allocation,
    job: &Job,
    task: &Task,
    root: &std::path::Path,
    network: Option<&edge_net::Attachment>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    put("EDGE_ALLOC_ID", alloc.id.clone());
    put("EDGE_ALLOC_NAME", alloc.name.clone());
    put("EDGE_ALLOC_INDEX", alloc.index.to_string());
    put("EDGE_JOB_ID", job.id.clone());
    put("EDGE_JOB_NAME", job.name.clone());
    if !job.parent_id.is_empty() {
        put("EDGE_JOB_PARENT_ID", job.parent_id.clone());
    }
    put("EDGE_NAMESPACE", job.namespace.clone());
    put("EDGE_GROUP_NAME", alloc.group.clone());
    put("EDGE_TASK_NAME", task.name.clone());
    put("EDGE_ALLOC_DIR", root.join("alloc").display().to_string());
    put(
        "EDGE_TASK_DIR",
        root.join(&task.name).join("local").display().to_string(),
    );
    if !task.secrets.is_empty() {
        put(
            "EDGE_SECRETS_DIR",
            crate::data::secrets_dir(root, &task.name)
                .display()
                .to_string(),
        );
    }
    put("EDGE_CPU_LIMIT", task.resources.cpu.to_string());
    put("EDGE_MEMORY_LIMIT", task.resources.memory.to_string());
    put("EDGE_NODE_ID", ctx.node_id.clone());
    put("EDGE_NODE_NAME", ctx.node_name.clone());
    put("EDGE_DC", ctx.datacenter.clone());
    // In its own namespace a task reaches the node's DNS at its gateway
    // (port 53, sent on by a rule in the namespace); the host's loopback
    // is not the allocation's, so without that there is none to give.
    match network {
        Some(att) => {
            put("EDGE_ALLOC_IP", att.address.to_string());
            if let Some(r) = att.resolver {
                put("EDGE_DNS_ADDR", format!("{r}:53"));
            }
        }
        None => {
            if let Some(dns) = ctx.dns_addr {
                put("EDGE_DNS_ADDR", dns.to_string());
            }
        }
    }
    // EDGE_IP/PORT/ADDR are where the task listens, EDGE_HOST_* where the
    // node exposes it; they differ only in a bridge-mode allocation, whose
    // task binding EDGE_IP_<label> must bind its own address, not the
    // node's (unreachable from inside its namespace).
    let own_ip = network.map_or_else(|| ctx.address.clone(), |n| n.address.to_string());
    for p in &alloc.resources.ports {
        put(&format!("EDGE_PORT_{}", p.label), p.to.to_string());
        put(&format!("EDGE_IP_{}", p.label), own_ip.clone());
        put(
            &format!("EDGE_ADDR_{}", p.label),
            format!("{own_ip}:{}", p.to),
        );
        put(&format!("EDGE_HOST_PORT_{}", p.label), p.value.to_string());
        put(&format!("EDGE_HOST_IP_{}", p.label), ctx.address.clone());
        put(
            &format!("EDGE_HOST_ADDR_{}", p.label),
            format!("{}:{}", ctx.address, p.value),
        );
    }
    if let Some(group) = job.group(&alloc.group) {
        for (k, v) in group.task_meta(task) {
            put(&format!("EDGE_META_{k}"), v);
        }
    }
    // Programs written for Nomad read its names (`NOMAD_PORT_http`,
    // `NOMAD_ALLOC_DIR`, `NOMAD_META_tier`); each of edge's variables is
    // also there under Nomad's prefix.
    let nomad: Vec<(String, String)> = env
        .iter()
        .filter_map(|(k, v)| Some((format!("NOMAD_{}", k.strip_prefix("EDGE_")?), v.clone())))
        .collect();
    env.extend(nomad);
    let base = env.clone();
    for (k, v) in &task.env {
        env.insert(k.clone(), interpolate(v, &base));
    }
    env
}

fn task_config(ctx: &RunCtx, g: &LocalAlloc, task: &Task) -> TaskConfig {
    let (root, logs) = alloc_dirs(ctx, &g.alloc.id);
    let mut env = task_env(ctx, &g.alloc, &g.job, task, &root, g.network.as_ref());
    env.extend(crate::data::env(ctx, &g.alloc.id, task));
    env.extend(crate::template::env(ctx, &g.alloc.id, &task.name));
    let config = task
        .config
        .iter()
        .map(|(k, v)| (k.clone(), interpolate_value(v, &env)))
        .collect();
    let task_dir = root.join(&task.name);
    let _ = std::fs::create_dir_all(task_dir.join("local"));
    TaskConfig {
        alloc_id: g.alloc.id.clone(),
        job_id: g.job.id.clone(),
        group: g.alloc.group.clone(),
        task: task.name.clone(),
        config,
        env,
        resources: task.resources,
        ports: g.alloc.resources.ports.clone(),
        alloc_dir: root.join("alloc"),
        task_dir,
        log_dir: logs,
        log_max_bytes: ctx.log_max_bytes,
        log_max_files: ctx.log_max_files,
        netns: g.network.as_ref().map(|a| a.netns.clone()),
        resolv_conf: g
            .network
            .as_ref()
            .and_then(|a| a.resolver)
            .map(|_| resolv_conf_path(&root)),
        mounts: task_mounts(ctx, g, task),
    }
}

/// Where a bridge-mode allocation's resolver configuration is written:
/// beside its directories, not in the `alloc/` dir its tasks share.
fn resolv_conf_path(root: &std::path::Path) -> PathBuf {
    root.join("resolv.conf")
}

/// Driver events during `prepare`, recorded on the task and reported.
struct TaskEvents<'a> {
    ctx: &'a RunCtx,
    shared: &'a Mutex<LocalAlloc>,
    task: &'a str,
}

impl edge_driver::EventSink for TaskEvents<'_> {
    fn event(&self, kind: &str, message: &str) {
        with_task(self.ctx, self.shared, self.task, |t| {
            // Progress updates replace each other instead of filling the list.
            if t.state
                .events
                .last()
                .is_some_and(|e| e.kind == kind && kind.ends_with("Progress"))
            {
                t.state.events.pop();
            }
            t.state.push_event(event(kind, message));
        });
    }
}

enum Outcome {
    Exited(ExitResult),
    Stopped,
    /// A check_restart (every task) or a changed template (this task, when
    /// true) asked for it.
    Restart(String, bool),
    /// A restart asked for another task.
    NotMine,
}

/// What a task runner listens to, and tells.
struct Signals {
    /// True once the task is to stop.
    stop: watch::Receiver<bool>,
    /// A check asks for a restart.
    restart: watch::Receiver<Option<crate::checks::RestartRequest>>,
    /// Told once the task runs; dropped unsent if it ends without running.
    started: Option<oneshot::Sender<()>>,
}

async fn run_task(
    ctx: Arc<RunCtx>,
    shared: Arc<Mutex<LocalAlloc>>,
    task: Task,
    policy: RestartPolicy,
    job_type: JobType,
    signals: Signals,
) {
    let Signals {
        stop: mut stop_rx,
        restart: mut restart_rx,
        mut started,
    } = signals;
    let name = task.name.clone();
    let mut running = move || {
        if let Some(tx) = started.take() {
            let _ = tx.send(());
        }
    };
    // Task names become directory and log file names under the allocation
    // dir: checked here too, for jobs stored before names were validated.
    if let Err(e) = edge_spec::check_name(edge_spec::NameKind::Task, &name) {
        with_task(&ctx, &shared, &name, |t| {
            t.state.push_event(event("Setup Failure", e.to_string()));
            t.state.state = TaskStatus::Dead;
            t.state.failed = true;
        });
        return;
    }
    let Some(driver) = ctx.drivers.get(&task.driver).cloned() else {
        with_task(&ctx, &shared, &name, |t| {
            t.state.push_event(event(
                "Driver Failure",
                format!("driver {:?} is not available on this node", task.driver),
            ));
            t.state.state = TaskStatus::Dead;
            t.state.failed = true;
        });
        return;
    };
    if lock(&shared)
        .tasks
        .get(&name)
        .is_some_and(|t| t.state.state == TaskStatus::Dead)
    {
        return;
    }
    let mut handle: Option<TaskHandle> = lock(&shared)
        .tasks
        .get(&name)
        .and_then(|t| t.handle.clone());
    if let Some(h) = handle.take() {
        match driver.recover(&h).await {
            Ok(()) => {
                with_task(&ctx, &shared, &name, |t| {
                    t.state.state = TaskStatus::Running;
                    t.state
                        .push_event(event("Recovered", "re-attached to the running task"));
                });
                running();
                handle = Some(h);
            }
            Err(e) => {
                tracing::info!(task = %name, error = %e, "task not running any more: starting it again");
                // What the dead run still holds (a stopped container, a
                // cgroup) would otherwise wait for the node's GC.
                if let Err(e) = driver.destroy(&h).await {
                    tracing::debug!(task = %name, error = %e, "cleanup of the dead run failed");
                }
                with_task(&ctx, &shared, &name, |t| {
                    t.handle = None;
                    t.state.push_event(event(
                        "Restarting",
                        format!("not found after agent restart: {e}"),
                    ));
                });
            }
        }
    }
    // Fetched once per run of the allocation on this agent: a restart of
    // the task finds its artifacts where they were put.
    let mut fetched = task.artifacts.is_empty();
    loop {
        if *stop_rx.borrow() {
            with_task(&ctx, &shared, &name, |t| {
                t.state.state = TaskStatus::Dead;
                t.handle = None;
            });
            return;
        }
        let h = match handle.take() {
            Some(h) => h,
            None => {
                if !fetched {
                    match artifacts(&ctx, &shared, &task).await {
                        Ok(()) => fetched = true,
                        Err(msg) => {
                            with_task(&ctx, &shared, &name, |t| {
                                t.state
                                    .push_event(event("Failed Artifact Download", msg.clone()));
                            });
                            match after_exit(&ctx, &shared, &name, &policy, &mut stop_rx).await {
                                true => continue,
                                false => return,
                            }
                        }
                    }
                }
                let cfg = {
                    let g = lock(&shared);
                    task_config(&ctx, &g, &task)
                };
                let sink = TaskEvents {
                    ctx: &ctx,
                    shared: &shared,
                    task: &name,
                };
                let started = match driver.prepare(&cfg, &sink).await {
                    Ok(()) => driver.start(&cfg).await,
                    Err(e) => Err(e),
                };
                match started {
                    Ok(h) => {
                        let hc = h.clone();
                        with_task(&ctx, &shared, &name, |t| {
                            t.state.state = TaskStatus::Running;
                            t.state.pid = hc.pid;
                            t.state.started_at = hc.started_at;
                            t.state.exit_code = None;
                            t.state
                                .push_event(event("Started", "task started by the driver"));
                            t.handle = Some(hc);
                        });
                        // The handle on disk is what keeps an agent crash
                        // from starting this task a second time.
                        ctx.local.flush_async().await;
                        running();
                        h
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        with_task(&ctx, &shared, &name, |t| {
                            t.state.push_event(event("Driver Failure", msg.clone()));
                        });
                        match after_exit(&ctx, &shared, &name, &policy, &mut stop_rx).await {
                            true => continue,
                            false => return,
                        }
                    }
                }
            }
        };
        let outcome = tokio::select! {
            r = driver.wait(&h) => Outcome::Exited(r.unwrap_or_else(|e| ExitResult {
                exit_code: -1,
                error: Some(e.to_string()),
                ..Default::default()
            })),
            // Only an explicit stop ends the task: a dropped sender (the agent
            // shutting down) must leave it running for the next agent.
            Ok(_) = stop_rx.wait_for(|s| *s) => Outcome::Stopped,
            Ok(()) = restart_rx.changed() => {
                let asked = restart_rx.borrow_and_update().clone();
                match asked {
                    Some(r) if r.task.as_ref().is_some_and(|t| *t != name) => Outcome::NotMine,
                    Some(r) => Outcome::Restart(r.reason, r.task.is_some()),
                    None => Outcome::NotMine,
                }
            }
        };
        match outcome {
            Outcome::NotMine => {
                handle = Some(h);
                continue;
            }
            Outcome::Restart(reason, own) => {
                with_task(&ctx, &shared, &name, |t| {
                    t.state
                        .push_event(event("Restart Signaled", reason.clone()));
                });
                if let Err(e) = stop_task(driver.as_ref(), &h, &task).await {
                    tracing::warn!(task = %name, error = %e, "stop failed");
                }
                let exit = driver.wait(&h).await.ok();
                if let Err(e) = driver.destroy(&h).await {
                    tracing::warn!(task = %name, error = %e, "cleanup failed");
                }
                with_task(&ctx, &shared, &name, |t| {
                    t.state.exit_code = exit.map(|x| x.exit_code);
                    t.state.finished_at = now_ms();
                    t.handle = None;
                    if own {
                        t.state.restarts += 1;
                    }
                });
                // A template's restart is asked for, not a failure: the
                // restart policy does not count it.
                if !own && !after_exit(&ctx, &shared, &name, &policy, &mut stop_rx).await {
                    return;
                }
            }
            Outcome::Stopped => {
                with_task(&ctx, &shared, &name, |t| {
                    t.state.push_event(event(
                        "Killing",
                        format!(
                            "sent {}, waiting {} before force kill",
                            task.kill_signal.as_deref().unwrap_or("SIGTERM"),
                            edge_spec::duration::format(task.kill_timeout)
                        ),
                    ));
                });
                if let Err(e) = stop_task(driver.as_ref(), &h, &task).await {
                    tracing::warn!(task = %name, error = %e, "stop failed");
                }
                let exit = driver.wait(&h).await.ok();
                if let Err(e) = driver.destroy(&h).await {
                    tracing::warn!(task = %name, error = %e, "cleanup failed");
                }
                with_task(&ctx, &shared, &name, |t| {
                    t.state.state = TaskStatus::Dead;
                    t.state.exit_code = exit.map(|x| x.exit_code);
                    t.state.finished_at = now_ms();
                    t.state.push_event(event("Killed", "task was stopped"));
                    t.handle = None;
                });
                return;
            }
            Outcome::Exited(exit) => {
                if let Err(e) = driver.destroy(&h).await {
                    tracing::warn!(task = %name, error = %e, "cleanup failed");
                }
                let ok = exit.successful();
                with_task(&ctx, &shared, &name, |t| {
                    t.state.exit_code = Some(exit.exit_code);
                    t.state.finished_at = now_ms();
                    let kind = if exit.oom_killed {
                        "OOM Killed"
                    } else {
                        "Terminated"
                    };
                    t.state.push_event(event(kind, exit.describe()));
                    t.handle = None;
                });
                if ok && (job_type == JobType::Batch || task.is_ephemeral()) {
                    with_task(&ctx, &shared, &name, |t| {
                        t.state.state = TaskStatus::Dead;
                    });
                    return;
                }
                if !after_exit(&ctx, &shared, &name, &policy, &mut stop_rx).await {
                    return;
                }
            }
        }
    }
}

/// Fetches the task's artifacts into its directory, with a task event
/// before; the error names the artifact and what went wrong.
async fn artifacts(ctx: &RunCtx, shared: &Mutex<LocalAlloc>, task: &Task) -> Result<(), String> {
    let root = {
        let g = lock(shared);
        alloc_dirs(ctx, &g.alloc.id).0
    };
    with_task(ctx, shared, &task.name, |t| {
        t.state.push_event(event(
            "Downloading Artifacts",
            format!("fetching {} artifact(s)", task.artifacts.len()),
        ));
    });
    let f = crate::artifact::Fetcher {
        http: &ctx.artifact_http,
        dirs: &ctx.artifact_dirs,
    };
    crate::artifact::fetch_all(&f, &root, &task.name, &task.artifacts).await
}

/// Decides, after an exit or a failed start, whether to run again; waits out
/// the restart delay (a stop cuts it short). False means the task is done.
async fn after_exit(
    ctx: &RunCtx,
    shared: &Mutex<LocalAlloc>,
    name: &str,
    policy: &RestartPolicy,
    stop_rx: &mut watch::Receiver<bool>,
) -> bool {
    let decision = {
        let mut g = lock(shared);
        match g.tasks.get_mut(name) {
            Some(t) => restart::decide(policy, &mut t.restart_times, now_ms()),
            None => Decision::Fail("task vanished from local state".to_string()),
        }
    };
    match decision {
        Decision::Restart(delay) => {
            with_task(ctx, shared, name, |t| {
                t.state.restarts += 1;
                t.state.state = TaskStatus::Pending;
                t.state.push_event(event(
                    "Restarting",
                    format!("task restarting in {}", edge_spec::duration::format(delay)),
                ));
            });
            tokio::select! {
                _ = tokio::time::sleep(delay) => true,
                Ok(_) = stop_rx.wait_for(|s| *s) => {
                    with_task(ctx, shared, name, |t| t.state.state = TaskStatus::Dead);
                    false
                }
            }
        }
        Decision::Fail(why) => {
            with_task(ctx, shared, name, |t| {
                t.state.state = TaskStatus::Dead;
                t.state.failed = true;
                t.state.push_event(event("Not Restarting", why));
            });
            false
        }
    }
}

pub fn new_local(alloc: Allocation, job: Job) -> LocalAlloc {
    LocalAlloc {
        alloc,
        job,
        tasks: BTreeMap::new(),
        network: None,
    }
}
