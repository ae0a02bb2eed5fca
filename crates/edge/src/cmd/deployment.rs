//! `edge deployment ...`: list and show deployments, act on them, and the
//! live view `edge job run` follows a new version's rollout with.

use crate::cli::{DeploymentCommand, Global, Output};
use crate::output::{ago, emit, short, table, time};
use edge_api::{Client, QueryOptions};
use edge_spec::{Deployment, DeploymentStatus};
use std::time::Duration;

pub async fn run(g: &Global, c: DeploymentCommand) -> anyhow::Result<u8> {
    let api = super::client(g)?;
    match c {
        DeploymentCommand::Ls { job } => {
            let list = api.deployments(job.as_deref()).await?;
            emit(g.output, &list, || {
                let mut t = table(&["ID", "Job", "Version", "Status", "Description", "Modified"]);
                for d in &list {
                    t.add_row(vec![
                        short(&d.id).to_string(),
                        d.job_id.clone(),
                        d.job_version.to_string(),
                        d.status.as_str().to_string(),
                        d.status_description.clone(),
                        ago(d.modify_time),
                    ]);
                }
                t
            })?;
            Ok(0)
        }
        DeploymentCommand::Status { id, job } => {
            let d = match (id, job) {
                (Some(id), _) => api.deployment(&id, QueryOptions::default()).await?.0,
                (None, Some(job)) => api.job_deployment(&job, QueryOptions::default()).await?.0,
                (None, None) => anyhow::bail!("name a deployment id, or a job with --job"),
            };
            if g.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&d)?);
                return Ok(0);
            }
            print_status(&d);
            Ok(0)
        }
        DeploymentCommand::Promote { id, groups } => act(g, &api, &id, "promote", groups).await,
        DeploymentCommand::Pause { id } => act(g, &api, &id, "pause", Vec::new()).await,
        DeploymentCommand::Resume { id } => act(g, &api, &id, "resume", Vec::new()).await,
        DeploymentCommand::Fail { id } => act(g, &api, &id, "fail", Vec::new()).await,
        DeploymentCommand::Health {
            id,
            healthy,
            unhealthy,
        } => {
            let resp = api.deployment_alloc_health(&id, healthy, unhealthy).await?;
            show(g, resp)
        }
    }
}

async fn act(
    g: &Global,
    api: &Client,
    id: &str,
    action: &str,
    groups: Vec<String>,
) -> anyhow::Result<u8> {
    let resp = api.deployment_action(id, action, groups).await?;
    show(g, resp)
}

fn show(g: &Global, resp: edge_api::DeploymentUpdateResponse) -> anyhow::Result<u8> {
    if g.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&resp)?);
        return Ok(0);
    }
    let d = &resp.deployment;
    println!(
        "==> Deployment {} of job {:?} version {}: {} ({})",
        d.short_id(),
        d.job_id,
        d.job_version,
        d.status.as_str(),
        d.status_description
    );
    if let Some(e) = resp.eval_id {
        println!("==> Evaluation {} submitted", short(&e));
    }
    Ok(0)
}

fn print_status(d: &Deployment) {
    println!("ID          = {}", d.id);
    println!("Job ID      = {}", d.job_id);
    println!("Job Version = {}", d.job_version);
    println!("Status      = {}", d.status.as_str());
    println!("Description = {}", d.status_description);
    println!("Created     = {}", time(d.create_time));
    println!("\nDeployed");
    println!("{}", groups_table(d));
}

pub fn groups_table(d: &Deployment) -> comfy_table::Table {
    let mut t = table(&[
        "Task Group",
        "Promoted",
        "Desired",
        "Canaries",
        "Placed",
        "Healthy",
        "Unhealthy",
        "Progress Deadline",
    ]);
    for (name, g) in &d.groups {
        t.add_row(vec![
            name.clone(),
            if g.desired_canaries == 0 {
                "n/a".to_string()
            } else {
                g.promoted.to_string()
            },
            g.desired_total.to_string(),
            g.desired_canaries.to_string(),
            g.placed.to_string(),
            g.healthy.to_string(),
            g.unhealthy.to_string(),
            if g.require_progress_by == 0 {
                "none".to_string()
            } else {
                time(g.require_progress_by)
            },
        ]);
    }
    t
}

/// Follows the job's deployment of `version` until it ends (or awaits
/// promotion), printing each change of a group's counts: `Some(0)` when it
/// succeeded or awaits promotion, `Some(1)` when it failed or was
/// cancelled, `None` when the version has no deployment. Without a
/// timeout, the server's progress deadline is what ends a stuck one.
pub async fn follow(
    api: &Client,
    job_id: &str,
    version: u64,
    timeout: Option<Duration>,
) -> anyhow::Result<Option<u8>> {
    let deadline = timeout.and_then(|t| tokio::time::Instant::now().checked_add(t));
    let mut index = 0;
    let mut shown: Option<Deployment> = None;
    let wait = |index| QueryOptions::blocking(index, Duration::from_secs(5));
    loop {
        // Found through the job once, then followed by its id: a revert
        // makes a newer deployment the job's latest before this one's end
        // is shown.
        let found = match &shown {
            None => api.job_deployment(job_id, wait(index)).await,
            Some(d) => api.deployment(&d.id, wait(index)).await,
        };
        let (d, meta) = match found {
            Ok(x) => x,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        index = meta.index;
        if d.job_version != version {
            return Ok(None);
        }
        if shown.is_none() {
            println!("==> Deployment {} started", d.short_id());
        }
        let before = shown.as_ref();
        for (name, g) in &d.groups {
            let was = before.and_then(|b| b.groups.get(name));
            let counts =
                |g: &edge_spec::DeploymentGroup| (g.placed, g.healthy, g.unhealthy, g.promoted);
            if was.map(counts) != Some(counts(g)) {
                let canaries = if g.desired_canaries > 0 {
                    format!(
                        ", {} canaries{}",
                        g.desired_canaries,
                        if g.promoted { " promoted" } else { "" }
                    )
                } else {
                    String::new()
                };
                println!(
                    "    {name}: {} placed, {} healthy, {} unhealthy of {}{canaries}",
                    g.placed, g.healthy, g.unhealthy, g.desired_total
                );
            }
        }
        if before.map(|b| b.status) != Some(d.status) && d.status != DeploymentStatus::Running {
            println!(
                "==> Deployment {} {}: {}",
                d.short_id(),
                d.status.as_str(),
                d.status_description
            );
        }
        match d.status {
            DeploymentStatus::Successful => return Ok(Some(0)),
            DeploymentStatus::Failed | DeploymentStatus::Cancelled => return Ok(Some(1)),
            DeploymentStatus::AwaitingPromotion => {
                println!(
                    "    Promote it with: edge deployment promote {}",
                    d.short_id()
                );
                return Ok(Some(0));
            }
            DeploymentStatus::Running | DeploymentStatus::Paused => {}
        }
        shown = Some(d);
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            println!(
                "==> Timed out following the deployment; `edge deployment status --job {job_id}` shows progress"
            );
            return Ok(Some(1));
        }
    }
}
