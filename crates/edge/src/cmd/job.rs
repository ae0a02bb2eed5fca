//! `edge job ...`: parse job files locally, talk to the API, and follow an
//! evaluation until its allocations run (or say why they cannot).

use crate::cli::{Global, JobCommand, JobFileArgs, Output, PeriodicCommand};
use crate::output::{ago, emit, short, table, time};
use anyhow::{Context, bail};
use edge_api::{AllocListStub, Client, QueryOptions};
use edge_spec::{AllocMetric, ClientStatus, DesiredStatus, EvalStatus, Job, ParseOptions};
use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

pub async fn run(g: &Global, c: JobCommand) -> anyhow::Result<u8> {
    match c {
        JobCommand::Validate { file } => {
            let job = load(&file)?;
            println!(
                "Job {:?} is valid: {} group(s), {} task(s)",
                job.id,
                job.groups.len(),
                job.groups.iter().map(|g| g.tasks.len()).sum::<usize>()
            );
            Ok(0)
        }
        JobCommand::Init {
            path,
            force,
            template,
        } => {
            if path.exists() && !force {
                bail!("{} exists; pass --force to overwrite it", path.display());
            }
            let text = match template {
                crate::cli::Template::Job => edge_spec::EXAMPLE_JOB,
                crate::cli::Template::Model => edge_spec::EXAMPLE_MODEL_JOB,
            };
            std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
            println!("Example job file written to {}", path.display());
            Ok(0)
        }
        JobCommand::Run {
            file,
            detach,
            timeout,
        } => {
            let mut job = load(&file)?;
            let api = client_for(g, &mut job)?;
            let resp = api.register(&job).await?;
            if g.output == Output::Json && detach {
                println!("{}", serde_json::to_string_pretty(&resp)?);
                return Ok(0);
            }
            let Some(eval_id) = resp.eval_id else {
                println!("Job {:?} registered (version {})", job.id, resp.version);
                return Ok(0);
            };
            println!(
                "==> Job {:?}{} registered: version {}{}",
                job.id,
                if job.namespace == edge_spec::DEFAULT_NAMESPACE {
                    String::new()
                } else {
                    format!(" in namespace {:?}", job.namespace)
                },
                resp.version,
                if resp.changed { "" } else { " (unchanged)" }
            );
            if job.launches() {
                // Nothing of the job itself is placed: its children are.
                let stored = api.job(&job.id).await?;
                match (&job.periodic, stored.next_launch) {
                    (Some(_), Some(next)) => println!("==> Next periodic launch: {}", time(next)),
                    (Some(_), None) => println!(
                        "==> The job does not launch (disabled, or its schedule never comes)"
                    ),
                    (None, _) => println!("==> Run it with: edge job dispatch {}", job.id),
                }
                return Ok(0);
            }
            println!("==> Evaluation {} submitted", short(&eval_id));
            if detach {
                return Ok(0);
            }
            monitor(&api, &job.id, &eval_id, resp.version, timeout).await
        }
        JobCommand::Dispatch {
            id,
            meta,
            payload,
            detach,
        } => {
            use base64::Engine;
            let bytes = match payload {
                None => Vec::new(),
                Some(p) if p.as_os_str() == "-" => {
                    let mut b = Vec::new();
                    std::io::stdin()
                        .take(edge_spec::periodic::MAX_PAYLOAD as u64 + 1)
                        .read_to_end(&mut b)
                        .context("read the payload from standard input")?;
                    b
                }
                Some(p) => std::fs::read(&p).with_context(|| format!("read {}", p.display()))?,
            };
            if bytes.len() > edge_spec::periodic::MAX_PAYLOAD {
                bail!(
                    "the payload is over {} bytes (Nomad's limit)",
                    edge_spec::periodic::MAX_PAYLOAD
                );
            }
            let req = edge_api::JobDispatchRequest {
                payload: base64::engine::general_purpose::STANDARD.encode(&bytes),
                meta: meta.into_iter().collect(),
            };
            let api = super::client(g)?;
            let r = api.dispatch(&id, &req).await?;
            launched(g, &api, r, detach).await
        }
        JobCommand::Periodic(PeriodicCommand::Force { id, detach }) => {
            let api = super::client(g)?;
            let r = api.periodic_force(&id).await?;
            launched(g, &api, r, detach).await
        }
        JobCommand::Scale {
            id,
            group,
            count,
            detach,
        } => {
            let api = super::client(g)?;
            let resp = api.scale_job(&id, &group, count).await?;
            if g.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&resp)?);
                return Ok(0);
            }
            println!(
                "==> Job {id:?} group {group:?} scaled to {count}: version {}",
                resp.version
            );
            match resp.eval_id {
                Some(eval_id) if !detach => {
                    println!("==> Evaluation {} submitted", short(&eval_id));
                    monitor(&api, &id, &eval_id, resp.version, Duration::from_secs(60)).await
                }
                _ => Ok(0),
            }
        }
        JobCommand::Plan { file } => {
            let mut job = load(&file)?;
            let api = client_for(g, &mut job)?;
            let plan = api.plan(&job).await?;
            if g.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
                return Ok(0);
            }
            match plan.diff_type.as_str() {
                "added" => println!("+ Job: {:?} (new)", job.id),
                "none" => println!("  Job: {:?} (no changes)", job.id),
                _ => println!("+/- Job: {:?}", job.id),
            }
            if plan.diff_type == "edited" {
                for l in &plan.diff {
                    println!("    {l}");
                }
            }
            for (group, c) in &plan.changes {
                let mut parts = Vec::new();
                for (n, what) in [
                    (c.place, "create"),
                    (c.destructive, "create/destroy update"),
                    (c.in_place, "in-place update"),
                    (c.stop, "destroy"),
                    (c.migrate, "migrate"),
                    (c.lost, "replace lost"),
                    (c.ignore, "ignore"),
                ] {
                    if n > 0 {
                        parts.push(format!("{n} {what}"));
                    }
                }
                println!("    Task Group: {group:?} ({})", parts.join(", "));
            }
            println!("\nScheduler dry-run:");
            if plan.failed.is_empty() {
                println!("- All tasks successfully allocated.");
            } else {
                println!("- WARNING: Failed to place all allocations.");
                print_failures(&plan.failed);
            }
            println!(
                "\nTo submit this exact version: edge job run (current modify index {})",
                plan.job_modify_index
            );
            Ok(if plan.failed.is_empty() { 0 } else { 1 })
        }
        JobCommand::Status { id: None } => {
            let api = super::client(g)?;
            let (jobs, _) = api.jobs(QueryOptions::default()).await?;
            // Every namespace at once: each row says which.
            let all = g.namespace.as_deref() == Some(edge_spec::namespace::ALL_NAMESPACES);
            emit(g.output, &jobs, || {
                let mut head = vec!["ID", "Type", "Priority", "Version", "Status", "Submitted"];
                if all {
                    head.insert(1, "Namespace");
                }
                let mut t = table(&head);
                for j in &jobs {
                    let mut row = vec![
                        j.id.clone(),
                        j.job_type.as_str().to_string(),
                        j.priority.to_string(),
                        j.version.to_string(),
                        format!("{:?}", j.status).to_lowercase(),
                        ago(j.submit_time),
                    ];
                    if all {
                        row.insert(1, j.namespace.clone());
                    }
                    t.add_row(row);
                }
                t
            })?;
            Ok(0)
        }
        JobCommand::Status { id: Some(id) } => {
            let api = super::client(g)?;
            let job = api.job(&id).await?;
            let (allocs, _) = api.job_allocs(&id, QueryOptions::default()).await?;
            let deployment = api
                .job_deployment(&id, QueryOptions::default())
                .await
                .ok()
                .map(|(d, _)| d);
            let scaling = if job.groups.iter().any(|g| g.scaling.is_some()) {
                Some(api.job_scale_status(&id).await?)
            } else {
                None
            };
            if g.output == Output::Json {
                let v = serde_json::json!({
                    "job": job,
                    "allocations": allocs,
                    "latest_deployment": deployment,
                    "scaling": scaling,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
            println!("ID            = {}", job.id);
            println!("Name          = {}", job.name);
            println!("Type          = {}", job.job_type.as_str());
            println!("Priority      = {}", job.priority);
            println!("Datacenters   = {}", job.datacenters.join(","));
            println!(
                "Status        = {}",
                format!("{:?}", job.status).to_lowercase()
            );
            println!("Version       = {}", job.version);
            println!("Submitted     = {}", time(job.submit_time));
            if !job.parent_id.is_empty() {
                println!("Parent        = {}", job.parent_id);
            }
            if job.launches() {
                println!("Periodic      = {}", job.periodic.is_some());
                println!("Parameterized = {}", job.parameterized.is_some());
                if job.periodic.is_some() {
                    let next = job.next_launch.map_or("none".to_string(), time);
                    println!("Next Launch   = {next}");
                }
                let (jobs, _) = api.jobs(QueryOptions::default()).await?;
                let mut t = table(&["ID", "Status", "Submitted"]);
                for c in jobs.iter().filter(|c| c.parent_id == job.id) {
                    t.add_row(vec![
                        c.id.clone(),
                        format!("{:?}", c.status).to_lowercase(),
                        ago(c.submit_time),
                    ]);
                }
                println!("\nChildren");
                println!("{t}");
                return Ok(0);
            }
            println!("\nSummary");
            let mut sum = table(&[
                "Task Group",
                "Desired",
                "Pending",
                "Running",
                "Complete",
                "Failed",
                "Lost",
            ]);
            for grp in &job.groups {
                let count = |s: ClientStatus| {
                    allocs
                        .iter()
                        .filter(|a| a.group == grp.name && a.client_status == s)
                        .count()
                        .to_string()
                };
                sum.add_row(vec![
                    grp.name.clone(),
                    if job.stop {
                        "0".to_string()
                    } else {
                        grp.count.to_string()
                    },
                    count(ClientStatus::Pending),
                    count(ClientStatus::Running),
                    count(ClientStatus::Complete),
                    count(ClientStatus::Failed),
                    count(ClientStatus::Lost),
                ]);
            }
            println!("{sum}");
            if let Some(sc) = &scaling {
                print_scaling(sc);
            }
            if let Some(d) = deployment {
                println!("\nLatest Deployment");
                println!("ID          = {}", short(&d.id));
                println!("Version     = {}", d.job_version);
                println!("Status      = {}", d.status.as_str());
                println!("Description = {}", d.status_description);
                println!("{}", super::deployment::groups_table(&d));
            }
            println!("\nAllocations");
            println!("{}", alloc_table(&allocs));
            Ok(0)
        }
        JobCommand::Inspect { id, version } => {
            let api = super::client(g)?;
            let job = match version {
                None => api.job(&id).await?,
                Some(v) => api
                    .job_versions(&id)
                    .await?
                    .into_iter()
                    .find(|j| j.version == v)
                    .with_context(|| format!("job {id:?} has no version {v}"))?,
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "job": job }))?
            );
            Ok(0)
        }
        JobCommand::Stop { id, purge, detach } => {
            let api = super::client(g)?;
            let resp = api.stop_job(&id, purge).await?;
            if g.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&resp)?);
                return Ok(0);
            }
            println!(
                "==> Job {id:?} {}",
                if purge {
                    "stopped and purged"
                } else {
                    "stopped"
                }
            );
            if let (Some(eval), false) = (resp.eval_id, detach) {
                println!("==> Evaluation {} submitted", short(&eval));
                let e = wait_eval(&api, &eval).await?;
                println!("==> Evaluation {} {}", short(&eval), e.status.as_str());
            }
            Ok(0)
        }
        JobCommand::History { id } => {
            let api = super::client(g)?;
            let versions = api.job_versions(&id).await?;
            emit(g.output, &versions, || {
                let mut t = table(&["Version", "Stopped", "Submitted", "Groups"]);
                for j in &versions {
                    t.add_row(vec![
                        j.version.to_string(),
                        j.stop.to_string(),
                        time(j.submit_time),
                        j.groups
                            .iter()
                            .map(|g| format!("{}x{}", g.name, g.count))
                            .collect::<Vec<_>>()
                            .join(", "),
                    ]);
                }
                t
            })?;
            Ok(0)
        }
        JobCommand::Revert { id, version } => {
            let api = super::client(g)?;
            let resp = api.revert_job(&id, version).await?;
            println!("==> Job {id:?} reverted to the spec of version {version}");
            if let Some(e) = resp.eval_id {
                println!("==> Evaluation {} submitted", short(&e));
            }
            Ok(0)
        }
    }
}

/// The autoscaler's view of each scaling group: count against bounds,
/// the load against the targets, and the latest decisions.
pub(crate) fn print_scaling(sc: &edge_api::JobScaleStatus) {
    println!("\nScaling");
    let mut t = table(&[
        "Task Group",
        "Desired",
        "Running",
        "Min",
        "Max",
        "In Flight",
        "Req/s",
        "CPU",
        "Memory",
        "Target",
        "Idle",
    ]);
    for (name, g) in &sc.groups {
        let mut target = Vec::new();
        if let Some(c) = g.target_concurrency {
            target.push(format!("{c} in flight"));
        }
        if let Some(r) = g.target_rps {
            target.push(format!("{r} req/s"));
        }
        if let Some(c) = g.target_cpu {
            target.push(format!("{c}% cpu"));
        }
        if !g.enabled {
            target.push("disabled".to_string());
        }
        t.add_row(vec![
            name.clone(),
            g.desired.to_string(),
            g.running.to_string(),
            g.min.to_string(),
            g.max.to_string(),
            format!("{:.1}", g.in_flight),
            format!("{:.1}", g.rps),
            g.cpu_percent
                .map_or("-".to_string(), |p| format!("{p:.0}%")),
            g.memory_bytes.map_or("-".to_string(), super::image::human),
            if target.is_empty() {
                "-".to_string()
            } else {
                target.join(", ")
            },
            edge_spec::duration::format(std::time::Duration::from_secs(
                u64::try_from(g.idle_ms / 1000).unwrap_or(0),
            )),
        ]);
    }
    println!("{t}");
    let events: Vec<_> = sc.groups.values().flat_map(|g| &g.events).collect();
    if events.is_empty() {
        return;
    }
    println!("\nRecent Scaling Events");
    let mut t = table(&["Time", "Task Group", "Count", "Reason"]);
    for e in events {
        t.add_row(vec![
            ago(e.time),
            e.group.clone(),
            format!("{} -> {}", e.from, e.to),
            e.reason.clone(),
        ]);
    }
    println!("{t}");
}

/// Says which child a dispatch or forced launch made and, unless
/// detached, follows its placement.
async fn launched(
    g: &Global,
    api: &Client,
    r: edge_api::JobLaunchResponse,
    detach: bool,
) -> anyhow::Result<u8> {
    if g.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(0);
    }
    println!("==> Job {:?} launched", r.job_id);
    println!("==> Evaluation {} submitted", short(&r.eval_id));
    if detach {
        return Ok(0);
    }
    monitor(api, &r.job_id, &r.eval_id, 0, Duration::from_secs(60)).await
}

/// The client for a job from a file: the namespace the file names wins
/// over `--namespace` (as in Nomad), and a file naming none takes it.
fn client_for(g: &Global, job: &mut Job) -> anyhow::Result<Client> {
    let flag = g.namespace.as_deref().filter(|n| !n.is_empty());
    if flag == Some(edge_spec::namespace::ALL_NAMESPACES) {
        bail!("--namespace \"*\" lists every namespace; a job runs in one, so name it");
    }
    if job.namespace == edge_spec::DEFAULT_NAMESPACE {
        if let Some(ns) = flag {
            job.namespace = ns.to_string();
        }
    } else if let Some(ns) = flag.filter(|ns| *ns != job.namespace) {
        eprintln!(
            "warning: the job file puts job {:?} in namespace {:?}; --namespace {ns} does not apply to it",
            job.id, job.namespace
        );
    }
    Ok(super::client(g)?.with_namespace(Some(job.namespace.clone())))
}

/// Reads the files a job file names (`env_file`, `file()`), relative to its directory
/// (the working directory for standard input), as Compose does.
fn beside(job_file: &std::path::Path) -> edge_spec::Files {
    let dir = match job_file.parent() {
        Some(p) if job_file.as_os_str() != "-" => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    edge_spec::Files::new(move |name| {
        const MAX: u64 = 1 << 20;
        let path = dir.join(name);
        let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.len() > MAX {
            return Err(format!(
                "{} is {} bytes; a file a job file reads may hold at most {MAX}",
                path.display(),
                meta.len()
            ));
        }
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
    })
}

/// Reads and parses a job file; every diagnostic is printed before failing.
pub fn load(f: &JobFileArgs) -> anyhow::Result<Job> {
    let (name, src) = if f.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("read standard input")?;
        ("<stdin>".to_string(), s)
    } else {
        let s = std::fs::read_to_string(&f.file)
            .with_context(|| format!("cannot read job file {}", f.file.display()))?;
        (f.file.display().to_string(), s)
    };
    let mut var_files = Vec::new();
    for p in &f.var_files {
        let s = std::fs::read_to_string(p)
            .with_context(|| format!("cannot read var file {}", p.display()))?;
        var_files.push((p.display().to_string(), s));
    }
    let opts = ParseOptions {
        filename: name,
        vars: f.vars.iter().cloned().collect(),
        var_files,
        driver_configs: super::daemon::driver_configs(),
        files: beside(&f.file),
    };
    match edge_spec::parse_job_file(&src, &opts) {
        Ok(parsed) => {
            for w in &parsed.warnings {
                eprintln!("warning: {w}");
            }
            Ok(parsed.job)
        }
        Err(e) => {
            // Warnings too: a key edge ignored may be why the file fails.
            for w in e.warnings() {
                eprintln!("warning: {w}");
            }
            for line in e.to_string().lines() {
                eprintln!("error: {line}");
            }
            bail!("job file {} is invalid", f.file.display())
        }
    }
}

async fn wait_eval(api: &Client, eval_id: &str) -> anyhow::Result<edge_spec::Evaluation> {
    let mut index = 0;
    loop {
        let (e, meta) = api
            .eval(
                eval_id,
                QueryOptions::blocking(index, Duration::from_secs(10)),
            )
            .await?;
        if e.status != EvalStatus::Pending {
            return Ok(e);
        }
        index = meta.index;
    }
}

fn print_failures(failed: &BTreeMap<String, AllocMetric>) {
    for (group, m) in failed {
        println!(
            "    Task Group {group:?} (failed to place {} allocation{}):",
            m.coalesced_failures + 1,
            if m.coalesced_failures == 0 { "" } else { "s" }
        );
        if m.nodes_evaluated == 0 {
            println!("      * No nodes were eligible for evaluation");
        }
        for (dc, n) in &m.nodes_available {
            if *n == 0 {
                println!("      * No nodes are available in datacenter {dc:?}");
            }
        }
        for (reason, n) in &m.constraint_filtered {
            println!("      * Constraint \"{reason}\": {n} nodes excluded by filter");
        }
        if m.nodes_exhausted > 0 {
            println!("      * Resources exhausted on {} nodes", m.nodes_exhausted);
        }
        for (dim, n) in &m.dimension_exhausted {
            println!("      * Dimension \"{dim}\" exhausted on {n} nodes");
        }
    }
}

/// Follows an evaluation, then the allocations of `version`, like `nomad job run`.
pub(super) async fn monitor(
    api: &Client,
    job_id: &str,
    eval_id: &str,
    version: u64,
    timeout: Duration,
) -> anyhow::Result<u8> {
    let e = wait_eval(api, eval_id).await?;
    println!(
        "==> Evaluation {} finished: {}",
        short(eval_id),
        e.status_description
    );
    if !e.failed_tg_allocs.is_empty() {
        println!("==> Placement failures:");
        print_failures(&e.failed_tg_allocs);
        println!("==> The job is queued and will be placed when capacity frees up");
        return Ok(2);
    }
    // Copies of a group that waits for another (`depends_on`) are placed
    // by later evaluations: the version is up once they run too.
    let waiting: Vec<(String, usize)> = match api.job(job_id).await {
        Ok(j) if j.version == version => j
            .groups
            .iter()
            .filter(|g| !g.depends_on.is_empty())
            .map(|g| (g.name.clone(), g.count as usize))
            .collect(),
        _ => Vec::new(),
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut index = 0;
    let mut shown: BTreeMap<String, ClientStatus> = BTreeMap::new();
    let mut progress: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let (allocs, meta) = api
            .job_allocs(
                job_id,
                QueryOptions::blocking(index, Duration::from_secs(5)),
            )
            .await?;
        index = meta.index;
        let current: Vec<&AllocListStub> = allocs
            .iter()
            .filter(|a| a.job_version == version && a.desired_status == DesiredStatus::Run)
            .collect();
        for a in &current {
            if shown.get(&a.id) != Some(&a.client_status) {
                println!(
                    "    Allocation {} on node {}: {}",
                    short(&a.id),
                    if a.node_name.is_empty() {
                        short(&a.node_id)
                    } else {
                        &a.node_name
                    },
                    a.client_status.as_str()
                );
                shown.insert(a.id.clone(), a.client_status);
            }
            // Pulls and downloads report "... Progress" events while pending.
            let latest = a
                .task_states
                .values()
                .filter_map(|st| st.events.last())
                .find(|e| e.kind.ends_with("Progress"));
            if let Some(e) = latest.filter(|_| a.client_status == ClientStatus::Pending)
                && progress.get(&a.id) != Some(&e.message)
            {
                println!("    Allocation {} {}: {}", short(&a.id), e.kind, e.message);
                progress.insert(a.id.clone(), e.message.clone());
            }
        }
        let failed = current
            .iter()
            .any(|a| a.client_status == ClientStatus::Failed);
        let done = current.iter().all(|a| {
            matches!(
                a.client_status,
                ClientStatus::Running | ClientStatus::Complete
            )
        }) && waiting
            .iter()
            .all(|(g, n)| current.iter().filter(|a| &a.group == g).count() >= *n);
        if failed {
            for a in current
                .iter()
                .filter(|a| a.client_status == ClientStatus::Failed)
            {
                for (task, st) in &a.task_states {
                    if let Some(ev) = st.events.last() {
                        println!(
                            "    ! {} task {task:?}: {}: {}",
                            short(&a.id),
                            ev.kind,
                            ev.message
                        );
                    }
                }
            }
            println!("==> Some allocations failed; see `edge alloc status <id>`");
            return Ok(1);
        }
        if done {
            let running = current
                .iter()
                .filter(|a| a.client_status == ClientStatus::Running)
                .count();
            // A service version rolls out under a deployment: follow it to
            // its end, as `nomad job run` does.
            if let Some(code) = super::deployment::follow(api, job_id, version, None).await? {
                return Ok(code);
            }
            println!("==> Job {job_id:?} deployed: {running} allocation(s) running");
            return Ok(0);
        }
        if tokio::time::Instant::now() >= deadline {
            println!(
                "==> Timed out waiting for allocations to start; `edge job status {job_id}` shows progress"
            );
            return Ok(1);
        }
    }
}

pub fn alloc_table(allocs: &[AllocListStub]) -> comfy_table::Table {
    let mut t = table(&[
        "ID",
        "Node",
        "Task Group",
        "Version",
        "Desired",
        "Status",
        "Created",
        "Modified",
    ]);
    for a in allocs {
        t.add_row(vec![
            short(&a.id).to_string(),
            if a.node_name.is_empty() {
                short(&a.node_id).to_string()
            } else {
                a.node_name.clone()
            },
            a.group.clone(),
            a.job_version.to_string(),
            a.desired_status.as_str().to_string(),
            a.client_status.as_str().to_string(),
            ago(a.create_time),
            ago(a.modify_time),
        ]);
    }
    t
}
