//! Task templates: rendered with minijinja before the task starts, from
//! the service catalog (`service("db")`), the task's configs and secrets
//! (`config("app").KEY`, `secret("tls").cert`), the node (`node.name`,
//! `node.attr["cpu.arch"]`) and the task's env (`env("EDGE_ALLOC_ID")`),
//! and again whenever what they read changes; a changed file restarts or
//! signals its task as its `change_mode` says.

use crate::checks::RestartRequest;
use crate::runner::RunCtx;
use crate::state::LocalAlloc;
use edge_api::{AllocData, Catalog};
use edge_spec::template::{MAX_RENDERED, TEMPLATE_FUEL};
use edge_spec::{ChangeMode, Task, Template};
use minijinja::value::Value;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How often configs and secrets are fetched again for templates that
/// read them (the catalog is watched instead).
const REFRESH: Duration = Duration::from_secs(10);

/// A service instance as templates see it, with Nomad's field names.
#[derive(Serialize)]
struct InstanceView {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Address")]
    address: String,
    #[serde(rename = "Port")]
    port: u16,
    #[serde(rename = "Node")]
    node: String,
    #[serde(rename = "Tags")]
    tags: Vec<String>,
}

#[derive(Serialize, Clone)]
struct NodeView {
    id: String,
    name: String,
    datacenter: String,
    address: String,
    attr: BTreeMap<String, String>,
    meta: BTreeMap<String, String>,
}

/// What one render reads.
pub(crate) struct Inputs {
    pub catalog: Arc<Catalog>,
    pub namespace: String,
    pub data: AllocData,
    pub env: BTreeMap<String, String>,
}

/// A rendered template: its text, and whether it read a secret.
pub(crate) struct Rendered {
    pub text: String,
    pub read_secret: bool,
}

fn node_view(ctx: &RunCtx) -> NodeView {
    NodeView {
        id: ctx.node_id.clone(),
        name: ctx.node_name.clone(),
        datacenter: ctx.datacenter.clone(),
        address: ctx.address.clone(),
        attr: ctx.node_attributes.clone(),
        meta: ctx.node_meta.clone(),
    }
}

/// Renders one template. Only passing instances are listed, as Nomad's
/// `service` does; a config or secret must be one the task declares.
pub(crate) fn render(
    ctx: &RunCtx,
    task: &Task,
    tpl: &Template,
    inputs: &Inputs,
) -> Result<Rendered, String> {
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(TEMPLATE_FUEL));
    let catalog = inputs.catalog.clone();
    let ns = inputs.namespace.clone();
    env.add_function("service", move |name: String| -> Vec<Value> {
        let key = edge_spec::service_key(&ns, &name);
        catalog
            .services
            .get(&key)
            .map(|s| {
                s.instances
                    .iter()
                    .filter(|i| i.serving())
                    .map(|i| {
                        Value::from_serialize(InstanceView {
                            name: i.service.clone(),
                            id: i.alloc_id.clone(),
                            address: i.address.clone(),
                            port: i.port,
                            node: i.node_name.clone(),
                            tags: i.tags.clone(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    });
    let declared = |refs: &[edge_spec::DataRef]| -> Vec<String> {
        refs.iter().map(|r| r.name.clone()).collect()
    };
    let (configs, config_names) = (inputs.data.configs.clone(), declared(&task.configs));
    env.add_function("config", move |name: String| {
        lookup("config", &configs, &config_names, &name)
    });
    let read_secret = Arc::new(AtomicBool::new(false));
    let (secrets, secret_names, flag) = (
        inputs.data.secrets.clone(),
        declared(&task.secrets),
        read_secret.clone(),
    );
    env.add_function("secret", move |name: String| {
        flag.store(true, Ordering::Relaxed);
        lookup("secret", &secrets, &secret_names, &name)
    });
    let task_env = inputs.env.clone();
    env.add_function("env", move |name: String| -> String {
        task_env.get(&name).cloned().unwrap_or_default()
    });
    env.add_global("node", Value::from_serialize(node_view(ctx)));
    let text = env
        .render_str(&tpl.data, ())
        .map_err(|e| format!("template {}: {e}", tpl.destination))?;
    if text.len() > MAX_RENDERED {
        return Err(format!(
            "template {} renders {} bytes; the limit is {MAX_RENDERED}",
            tpl.destination,
            text.len()
        ));
    }
    let read_secret = read_secret.load(Ordering::Relaxed);
    if read_secret
        && !tpl
            .destination
            .trim_start_matches("./")
            .starts_with("secrets/")
    {
        return Err(format!(
            "template {} reads a secret: write it under secrets/ (a tmpfs), not to disk",
            tpl.destination
        ));
    }
    Ok(Rendered { text, read_secret })
}

fn lookup(
    kind: &str,
    have: &BTreeMap<String, edge_api::ObjectValue>,
    declared: &[String],
    name: &str,
) -> Result<BTreeMap<String, String>, minijinja::Error> {
    if !declared.iter().any(|d| d == name) {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!(
                "the task does not declare {kind} {name:?}: add `{kind} \"{name}\" {{}}` to it"
            ),
        ));
    }
    have.get(name).map(|o| o.data.clone()).ok_or_else(|| {
        minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("{kind} {name:?} does not exist"),
        )
    })
}

/// Writes a rendered file if its text changed (never through a link the
/// task left); true when it did.
fn write_if_changed(root: &Path, rel: &Path, text: &str, mode: u32) -> Result<bool, String> {
    let path = root.join(rel);
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file())
        && std::fs::read(&path).is_ok_and(|old| old == text.as_bytes())
    {
        return Ok(false);
    }
    crate::beneath::write(root, rel, text.as_bytes(), mode)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(true)
}

fn mode(tpl: &Template) -> u32 {
    edge_spec::objects::parse_mode(&tpl.perms).unwrap_or(0o644)
}

/// Renders every template of every task into its file; returns the
/// templates whose file changed, as (task, template index).
pub(crate) fn render_all(
    ctx: &RunCtx,
    g: &Mutex<LocalAlloc>,
    tasks: &[Task],
    catalog: Arc<Catalog>,
) -> Result<Vec<(String, usize)>, String> {
    let (alloc, job) = {
        let g = g.lock().unwrap_or_else(|e| e.into_inner());
        (g.alloc.clone(), g.job.clone())
    };
    let data = ctx
        .alloc_data
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&alloc.id)
        .cloned()
        .unwrap_or_default();
    let (root, _) = crate::runner::alloc_dirs(ctx, &alloc.id);
    let mut changed = Vec::new();
    let mut envs = BTreeMap::new();
    for t in tasks.iter().filter(|t| !t.templates.is_empty()) {
        let env = crate::runner::task_env(ctx, &alloc, &job, t, &root, None);
        let inputs = Inputs {
            catalog: catalog.clone(),
            namespace: alloc.namespace.clone(),
            data: data.clone(),
            env,
        };
        let mut task_env = BTreeMap::new();
        for (i, tpl) in t.templates.iter().enumerate() {
            let out = render(ctx, t, tpl, &inputs)?;
            let rel = Path::new(&t.name).join(tpl.destination.trim_start_matches("./"));
            if write_if_changed(&root, &rel, &out.text, mode(tpl))? {
                changed.push((t.name.clone(), i));
            }
            if tpl.env && !out.read_secret {
                let pairs = edge_spec::envfile::parse(&out.text).map_err(|e| {
                    format!(
                        "template {} line {}: {}",
                        tpl.destination, e.line, e.message
                    )
                })?;
                task_env.extend(pairs);
            }
        }
        envs.insert(t.name.clone(), task_env);
    }
    ctx.template_env
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(alloc.id.clone(), envs);
    Ok(changed)
}

/// The env vars a task's `env = true` templates rendered.
pub(crate) fn env(ctx: &RunCtx, alloc_id: &str, task: &str) -> BTreeMap<String, String> {
    ctx.template_env
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(alloc_id)
        .and_then(|m| m.get(task).cloned())
        .unwrap_or_default()
}

/// Renders again on every catalog change (and, for what configs and
/// secrets hold, every [`REFRESH`]), and applies each changed file's
/// `change_mode`, until the allocation stops.
pub(crate) async fn watch(
    ctx: Arc<RunCtx>,
    g: Arc<Mutex<LocalAlloc>>,
    tasks: Vec<Task>,
    restart: watch::Sender<Option<RestartRequest>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut catalog = ctx.catalog.clone();
    let alloc_id = g.lock().unwrap_or_else(|e| e.into_inner()).alloc.id.clone();
    let reads_objects = tasks
        .iter()
        .any(|t| !(t.configs.is_empty() && t.secrets.is_empty()));
    loop {
        let refresh = tokio::select! {
            r = catalog.changed() => {
                if r.is_err() {
                    return;
                }
                false
            }
            () = tokio::time::sleep(REFRESH), if reads_objects => true,
            _ = stop.wait_for(|s| *s) => return,
        };
        if refresh {
            match ctx.api.alloc_data(&ctx.node_id, &alloc_id).await {
                Ok(d) => {
                    ctx.alloc_data
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(alloc_id.clone(), d);
                }
                Err(e) => {
                    tracing::debug!(alloc = %alloc_id, error = %e, "templates keep the configs and secrets they have");
                    continue;
                }
            }
        }
        let snapshot = catalog.borrow_and_update().clone();
        let changed = match render_all(&ctx, &g, &tasks, snapshot) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(alloc = %alloc_id, error = %e, "cannot render a template again: the file keeps its last text");
                continue;
            }
        };
        for (task, i) in changed {
            let Some(tpl) = tasks
                .iter()
                .find(|t| t.name == task)
                .and_then(|t| t.templates.get(i))
            else {
                continue;
            };
            let reason = format!("template {} changed", tpl.destination);
            match tpl.change_mode {
                ChangeMode::Noop => {}
                ChangeMode::Restart => {
                    restart.send_replace(Some(RestartRequest {
                        reason,
                        task: Some(task.clone()),
                    }));
                }
                ChangeMode::Signal => {
                    signal(&ctx, &g, &tasks, &task, &tpl.change_signal, &reason).await
                }
            }
        }
    }
}

async fn signal(
    ctx: &RunCtx,
    g: &Mutex<LocalAlloc>,
    tasks: &[Task],
    task: &str,
    sig: &str,
    reason: &str,
) {
    let handle = g
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .tasks
        .get(task)
        .and_then(|t| t.handle.clone());
    let driver = tasks
        .iter()
        .find(|t| t.name == task)
        .and_then(|t| ctx.drivers.get(&t.driver));
    if let (Some(h), Some(d)) = (handle, driver) {
        match d.signal(&h, sig).await {
            Ok(()) => tracing::info!(task, signal = sig, reason, "task signalled"),
            Err(e) => tracing::warn!(task, signal = sig, error = %e, "cannot signal the task"),
        }
    }
}
