//! `edge compose ...`: a Compose project read here (files, `.env`, the
//! shell's variables) and run as one edge job in a namespace of its own.

use std::io::Write;

use anyhow::{Context, bail};
use edge_api::{AllocListStub, Client, QueryOptions};
use edge_compose::{Conversion, Options, Project};
use edge_spec::{ClientStatus, DesiredStatus};
use futures_util::StreamExt;

use crate::cli::{ComposeArgs, ComposeCommand, Global, Output};
use crate::output::{emit, short};

/// Group meta `restart` sets so a new job version replaces the replicas.
const RESTARTED: &str = "compose.restarted";

pub async fn run(g: &Global, a: ComposeArgs) -> anyhow::Result<u8> {
    let project = load(&a)?;
    match a.command {
        ComposeCommand::Config => {
            if g.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&project.value)?);
            } else {
                print!("{}", serde_yaml::to_string(&project.value)?);
            }
            Ok(0)
        }
        ComposeCommand::Convert => {
            let c = convert(&project)?;
            if g.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&c.job)?);
            } else {
                print!("{}", edge_spec::job_to_hcl(&c.job));
            }
            Ok(0)
        }
        ComposeCommand::Up { detach, timeout } => up(g, &project, detach, timeout).await,
        ComposeCommand::Down { volumes } => down(g, &project, volumes).await,
        ComposeCommand::Ps { all } => {
            let api = client(g, &project)?;
            let allocs: Vec<AllocListStub> = current(&api, &project)
                .await?
                .into_iter()
                .filter(|a| all || !a.client_status.is_terminal())
                .collect();
            emit(g.output, &allocs, || super::job::alloc_table(&allocs))?;
            Ok(0)
        }
        ComposeCommand::Logs {
            services,
            follow,
            tail,
        } => logs(g, &project, &services, follow, tail).await,
        ComposeCommand::Restart { services } => restart(g, &project, &services).await,
        ComposeCommand::Scale { services } => {
            let api = client(g, &project)?;
            known(&project, services.iter().map(|(name, _)| name))?;
            for (name, n) in services {
                let r = api.scale_job(&project.name, &name, n).await?;
                println!("Service {name:?} scaled to {n} (job version {})", r.version);
            }
            Ok(0)
        }
    }
}

fn load(a: &ComposeArgs) -> anyhow::Result<Project> {
    let opts = Options {
        files: a.files.clone(),
        project_name: a.project_name.clone(),
        project_dir: a.project_directory.clone(),
        env_files: a.env_files.clone(),
        profiles: a.profiles.clone(),
        environ: std::env::vars().collect(),
        cwd: std::env::current_dir().context("the working directory")?,
    };
    Ok(Project::load(&opts)?)
}

fn convert(project: &Project) -> anyhow::Result<Conversion> {
    let c = edge_compose::convert(project)?;
    for w in &c.warnings {
        eprintln!("warning: {w}");
    }
    Ok(c)
}

/// Refuses a service name the project does not have.
fn known<'a>(project: &Project, names: impl IntoIterator<Item = &'a String>) -> anyhow::Result<()> {
    for name in names {
        if !project
            .compose
            .services
            .keys()
            .any(|id| id.as_str() == name)
        {
            bail!("no service {name:?} in project {:?}", project.name);
        }
    }
    Ok(())
}

fn client(g: &Global, project: &Project) -> anyhow::Result<Client> {
    if let Some(ns) = g
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty() && *n != project.name)
    {
        eprintln!(
            "warning: project {:?} runs in namespace {:?}; --namespace {ns} does not apply to it",
            project.name, project.name
        );
    }
    Ok(super::client(g)?.with_namespace(Some(project.name.clone())))
}

/// The project's live replicas: the job's allocations meant to run, or
/// still running.
async fn current(api: &Client, project: &Project) -> anyhow::Result<Vec<AllocListStub>> {
    let (allocs, _) = match api.job_allocs(&project.name, QueryOptions::default()).await {
        Ok(r) => r,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    Ok(allocs
        .into_iter()
        .filter(|a| {
            a.desired_status == DesiredStatus::Run
                || matches!(
                    a.client_status,
                    ClientStatus::Pending | ClientStatus::Running
                )
        })
        .collect())
}

async fn up(
    g: &Global,
    project: &Project,
    detach: bool,
    timeout: std::time::Duration,
) -> anyhow::Result<u8> {
    let mut c = convert(project)?;
    let api = client(g, project)?;
    match api.namespace(&project.name).await {
        Ok(_) => {}
        Err(e) if e.is_not_found() => {
            let req = edge_api::NamespaceApplyRequest {
                description: format!("Compose project {}", project.name),
            };
            api.namespace_apply(&project.name, &req)
                .await
                .with_context(|| format!("create namespace {:?} for the project", project.name))?;
            println!("==> Namespace {:?} created", project.name);
        }
        Err(e) => return Err(e).context("read the project's namespace"),
    }
    for o in &c.objects {
        let kind = if o.secret { "secret" } else { "config" };
        if o.external {
            let found = if o.secret {
                api.secret(&o.name).await.map(drop)
            } else {
                api.config(&o.name).await.map(drop)
            };
            found.with_context(|| {
                format!(
                    "the external {kind} {:?} (create it with `edge {kind} put`)",
                    o.name
                )
            })?;
            continue;
        }
        api.object_put(kind, &o.name, o.data.clone())
            .await
            .with_context(|| format!("write the {kind} {:?}", o.name))?;
    }
    // A replica `restart` replaced stays as it is: carry its mark over.
    if let Ok(stored) = api.job(&project.name).await {
        for group in &mut c.job.groups {
            if let Some(mark) = stored
                .group(&group.name)
                .and_then(|s| s.meta.get(RESTARTED))
            {
                group.meta.insert(RESTARTED.to_string(), mark.clone());
            }
        }
    }
    let resp = api.register(&c.job).await?;
    println!(
        "==> Project {:?}: job version {}{}",
        project.name,
        resp.version,
        if resp.changed { "" } else { " (unchanged)" }
    );
    let Some(eval_id) = resp.eval_id.filter(|_| !detach) else {
        return Ok(0);
    };
    for g in &c.job.groups {
        for d in &g.depends_on {
            println!(
                "    {} starts once {} is {}",
                g.name,
                d.group,
                d.condition.state()
            );
        }
    }
    let code = super::job::monitor(&api, &project.name, &eval_id, resp.version, timeout).await?;
    if code == 0 && g.output == Output::Table {
        let allocs = current(&api, project).await?;
        println!("{}", super::job::alloc_table(&allocs));
    }
    Ok(code)
}

async fn down(g: &Global, project: &Project, volumes: bool) -> anyhow::Result<u8> {
    let api = client(g, project)?;
    match api.stop_job(&project.name, false).await {
        Ok(_) => println!("==> Project {:?} stopping", project.name),
        Err(e) if e.is_not_found() => println!("==> Project {:?} is not running", project.name),
        Err(e) => return Err(e.into()),
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let live: Vec<AllocListStub> = current(&api, project)
            .await?
            .into_iter()
            .filter(|a| {
                matches!(
                    a.client_status,
                    ClientStatus::Pending | ClientStatus::Running
                )
            })
            .collect();
        if live.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "{} replica(s) still running after 2 minutes: `edge compose ps` shows them",
                live.len()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    println!("==> Project {:?} stopped", project.name);
    if !volumes {
        return Ok(0);
    }
    for v in api.volumes().await? {
        if v.namespace == project.name && v.job_id == project.name {
            api.volume_delete(&v.id)
                .await
                .with_context(|| format!("remove volume {}", v.id))?;
            println!("    Volume {} removed", v.id);
        }
    }
    for (secret, name) in edge_compose::written_objects(project) {
        let kind = if secret { "secret" } else { "config" };
        match api.object_delete(kind, &name).await {
            Ok(_) => println!("    {kind} {name} removed"),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e).with_context(|| format!("remove the {kind} {name:?}")),
        }
    }
    Ok(0)
}

/// `service-N`, as Compose names a replica (N from 1).
fn replica(a: &AllocListStub) -> String {
    let index = a
        .name
        .rsplit_once('[')
        .and_then(|(_, i)| i.trim_end_matches(']').parse::<u32>().ok())
        .map_or(0, |i| i + 1);
    format!("{}-{index}", a.group)
}

async fn logs(
    g: &Global,
    project: &Project,
    services: &[String],
    follow: bool,
    tail: Option<u64>,
) -> anyhow::Result<u8> {
    let api = client(g, project)?;
    known(project, services)?;
    let allocs: Vec<AllocListStub> = current(&api, project)
        .await?
        .into_iter()
        .filter(|a| services.is_empty() || services.contains(&a.group))
        .collect();
    let width = allocs.iter().map(|a| replica(a).len()).max().unwrap_or(0);
    let mut streams = Vec::new();
    for a in &allocs {
        for kind in ["stdout", "stderr"] {
            let mut q: Vec<(&str, String)> = vec![
                ("type", kind.to_string()),
                ("follow", follow.to_string()),
                ("task", a.group.clone()),
            ];
            if let Some(t) = tail {
                q.push(("tail", t.to_string()));
            }
            let api = api.clone();
            let path = format!("/v1/client/allocation/{}/logs", a.id);
            let prefix = format!("{:width$} | ", replica(a));
            let id = short(&a.id).to_string();
            streams.push(tokio::spawn(async move {
                let resp = api
                    .stream(&path, &q)
                    .await
                    .with_context(|| format!("logs of {id}"))?;
                let mut body = resp.bytes_stream();
                let mut pending = Vec::new();
                while let Some(chunk) = body.next().await {
                    pending.extend_from_slice(&chunk?);
                    while let Some(n) = pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=n).collect();
                        let mut out = std::io::stdout().lock();
                        out.write_all(prefix.as_bytes())?;
                        out.write_all(&line)?;
                    }
                }
                if !pending.is_empty() {
                    let mut out = std::io::stdout().lock();
                    out.write_all(prefix.as_bytes())?;
                    out.write_all(&pending)?;
                    out.write_all(b"\n")?;
                }
                anyhow::Ok(())
            }));
        }
    }
    for s in streams {
        s.await??;
    }
    Ok(0)
}

async fn restart(g: &Global, project: &Project, services: &[String]) -> anyhow::Result<u8> {
    let api = client(g, project)?;
    let mut job = api
        .job(&project.name)
        .await
        .with_context(|| format!("project {:?} is not up", project.name))?;
    if let Some(s) = services.iter().find(|s| job.group(s).is_none()) {
        bail!("no service {s:?} in project {:?}", project.name);
    }
    let mark = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis().to_string())
        .unwrap_or_default();
    for group in &mut job.groups {
        if services.is_empty() || services.contains(&group.name) {
            group.meta.insert(RESTARTED.to_string(), mark.clone());
        }
    }
    let resp = api.register(&job).await?;
    println!(
        "==> Project {:?}: job version {}: the replicas are being replaced",
        project.name, resp.version
    );
    Ok(0)
}
