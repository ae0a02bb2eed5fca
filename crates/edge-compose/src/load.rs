//! A Compose project from its files: which files (`-f`, or the default
//! names and their override file), the variables (`.env`, `--env-file`,
//! the shell), interpolation, `extends`, the merge of several files per the
//! Compose specification, profiles, and the typed model of the result.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use crate::error::{ComposeError, Warning, Where};
use crate::interp::{self, InterpError, Vars};
use crate::locate::Positions;

/// The names `docker compose` looks for, in its order.
pub const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

const OVERRIDE_FILES: [&str; 4] = [
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// What the command line and the shell give the loader.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `-f` files in order; none means the default names in `cwd`.
    pub files: Vec<PathBuf>,
    pub project_name: Option<String>,
    pub project_dir: Option<PathBuf>,
    /// `--env-file`; none means `.env` in the project directory.
    pub env_files: Vec<PathBuf>,
    pub profiles: Vec<String>,
    /// The shell's environment, which wins over `.env` as in Compose.
    pub environ: BTreeMap<String, String>,
    pub cwd: PathBuf,
}

/// One file read: its name as the user gave it and where its values are.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub positions: Positions,
}

/// A loaded project.
#[derive(Debug, Clone)]
pub struct Project {
    pub name: String,
    pub dir: PathBuf,
    /// The merged, interpolated file, as `edge compose config` prints it.
    pub value: Value,
    pub compose: compose_spec::Compose,
    pub vars: Vars,
    pub sources: Vec<Source>,
    pub warnings: Vec<Warning>,
}

impl Project {
    pub fn load(opts: &Options) -> Result<Project, ComposeError> {
        let files = files(opts)?;
        let dir = match &opts.project_dir {
            Some(d) => opts.cwd.join(d),
            None => files[0]
                .parent()
                .map_or_else(|| opts.cwd.clone(), Path::to_path_buf),
        };
        let vars = variables(opts, &dir)?;
        let mut sources = Vec::new();
        let mut merged: Option<Value> = None;
        for file in &files {
            let (value, source) = read(file, &opts.cwd, &vars)?;
            sources.push(source);
            let mut value = value;
            resolve_extends(&mut value, file, &opts.cwd, &vars, &sources)?;
            merged = Some(match merged {
                None => value,
                Some(base) => merge(base, value, ""),
            });
        }
        let mut value = merged.unwrap_or(Value::Null);
        let name = project_name(opts, &value, &dir, &vars)?;
        let project = Project {
            name,
            dir,
            value: Value::Null,
            compose: compose_spec::Compose::default(),
            vars,
            sources,
            warnings: Vec::new(),
        };
        apply_profiles(&mut value, opts, &project)?;
        octal_modes(&mut value);
        let warnings = crate::keys::check(&value, &project)?;
        let compose = typed(&value, &project)?;
        Ok(Project {
            value,
            compose,
            warnings,
            ..project
        })
    }

    /// Where `path` of the merged file was written: the file that writes
    /// the deepest part of it, the later file on a tie (it overrode).
    pub fn locate(&self, path: &str) -> Where {
        let mut best: Option<(usize, &Source, (usize, usize))> = None;
        for s in &self.sources {
            if let Some((depth, at)) = s.positions.nearest(path)
                && best.is_none_or(|(d, _, _)| depth >= d)
            {
                best = Some((depth, s, at));
            }
        }
        match best {
            Some((_, s, at)) => Where {
                file: s.name.clone(),
                line: Some(at),
                path: path.to_string(),
            },
            None => Where {
                file: self
                    .sources
                    .last()
                    .map_or_else(String::new, |s| s.name.clone()),
                line: None,
                path: path.to_string(),
            },
        }
    }

    pub fn error(&self, path: &str, message: impl Into<String>) -> ComposeError {
        ComposeError::at(self.locate(path), message)
    }
}

fn files(opts: &Options) -> Result<Vec<PathBuf>, ComposeError> {
    if !opts.files.is_empty() {
        return Ok(opts.files.iter().map(|f| opts.cwd.join(f)).collect());
    }
    let dir = opts
        .project_dir
        .as_ref()
        .map_or_else(|| opts.cwd.clone(), |d| opts.cwd.join(d));
    let first = DEFAULT_FILES
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| ComposeError::NoFile {
            dir: dir.display().to_string(),
            names: DEFAULT_FILES.join(", "),
        })?;
    let mut out = vec![first];
    if let Some(o) = OVERRIDE_FILES
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
    {
        out.push(o);
    }
    Ok(out)
}

fn shown(file: &Path, cwd: &Path) -> String {
    file.strip_prefix(cwd).unwrap_or(file).display().to_string()
}

fn read_text(file: &Path, cwd: &Path) -> Result<String, ComposeError> {
    std::fs::read_to_string(file).map_err(|source| ComposeError::Read {
        file: shown(file, cwd),
        source,
    })
}

/// `.env` (or the `--env-file`s) under the shell's environment.
fn variables(opts: &Options, dir: &Path) -> Result<Vars, ComposeError> {
    let mut vars = Vars::new();
    let env_files: Vec<PathBuf> = if opts.env_files.is_empty() {
        Some(dir.join(".env"))
            .filter(|p| p.is_file())
            .into_iter()
            .collect()
    } else {
        opts.env_files.iter().map(|f| opts.cwd.join(f)).collect()
    };
    for f in env_files {
        let text = read_text(&f, &opts.cwd)?;
        let pairs = edge_spec::envfile::parse(&text).map_err(|e| {
            ComposeError::at(
                Where {
                    file: shown(&f, &opts.cwd),
                    line: Some((e.line, 1)),
                    path: String::new(),
                },
                e.message,
            )
        })?;
        for (k, v) in pairs {
            // A later line may use an earlier one, as Compose's .env does.
            let v = interp::interpolate(&v, &vars).unwrap_or(v);
            vars.insert(k, v);
        }
    }
    vars.extend(opts.environ.clone());
    Ok(vars)
}

/// One file, parsed and interpolated.
fn read(file: &Path, cwd: &Path, vars: &Vars) -> Result<(Value, Source), ComposeError> {
    let name = shown(file, cwd);
    let text = read_text(file, cwd)?;
    let mut value: Value = serde_yaml::from_str(&text).map_err(|e| {
        ComposeError::at(
            Where {
                file: name.clone(),
                line: e.location().map(|l| (l.line(), l.column())),
                path: String::new(),
            },
            format!("not YAML: {}", strip_location(&e.to_string())),
        )
    })?;
    let source = Source {
        name: name.clone(),
        positions: Positions::of(&text),
    };
    value.apply_merge().map_err(|e| {
        ComposeError::at(
            Where {
                file: name.clone(),
                line: None,
                path: String::new(),
            },
            format!("YAML merge key (`<<`): {e}"),
        )
    })?;
    if !matches!(value, Value::Mapping(_)) {
        return Err(ComposeError::at(
            Where {
                file: name,
                line: Some((1, 1)),
                path: String::new(),
            },
            "a Compose file is a mapping with a `services` key",
        ));
    }
    interpolate_value(&mut value, String::new(), vars).map_err(|(path, e)| {
        let at = Where {
            line: source.positions.find(&path),
            file: name.clone(),
            path,
        };
        ComposeError::at(
            at,
            match e {
                InterpError::Required { message, .. } => message,
                InterpError::Syntax(m) => m,
            },
        )
    })?;
    Ok((value, source))
}

fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(cut) => message[..cut].to_string(),
        None => message.to_string(),
    }
}

fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

pub(crate) fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn interpolate_value(
    v: &mut Value,
    path: String,
    vars: &Vars,
) -> Result<(), (String, InterpError)> {
    match v {
        Value::String(s) => {
            *s = interp::interpolate(s, vars).map_err(|e| (path, e))?;
        }
        Value::Mapping(m) => {
            for (k, item) in m.iter_mut() {
                let key = key_text(k);
                interpolate_value(item, child(&path, &key), vars)?;
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_value(item, format!("{path}[{i}]"), vars)?;
            }
        }
        Value::Tagged(t) => interpolate_value(&mut t.value, path, vars)?,
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

fn services_of(v: &Value) -> Option<&Mapping> {
    v.get("services").and_then(Value::as_mapping)
}

/// Replaces each service's `extends` by the service it names (in this
/// file or in `file:`), merged under the service's own keys.
fn resolve_extends(
    value: &mut Value,
    file: &Path,
    cwd: &Path,
    vars: &Vars,
    sources: &[Source],
) -> Result<(), ComposeError> {
    let name = shown(file, cwd);
    let Some(services) = services_of(value) else {
        return Ok(());
    };
    let names: Vec<String> = services.keys().map(key_text).collect();
    let mut resolved = Mapping::new();
    for svc in &names {
        let mut chain = Vec::new();
        let s = extended(value, file, svc, cwd, vars, &mut chain).map_err(|(path, m)| {
            let positions = sources
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.positions.clone())
                .unwrap_or_else(Positions::default);
            ComposeError::at(
                Where {
                    file: name.clone(),
                    line: positions.find(&path),
                    path,
                },
                m,
            )
        })?;
        resolved.insert(Value::String(svc.clone()), s);
    }
    if let Some(m) = value.as_mapping_mut() {
        m.insert("services".into(), Value::Mapping(resolved));
    }
    Ok(())
}

type ExtendsError = (String, String);

fn extended(
    doc: &Value,
    file: &Path,
    svc: &str,
    cwd: &Path,
    vars: &Vars,
    chain: &mut Vec<String>,
) -> Result<Value, ExtendsError> {
    let path = format!("services.{svc}");
    let link = format!("{}#{svc}", file.display());
    if chain.contains(&link) {
        return Err((
            format!("{path}.extends"),
            format!(
                "`extends` goes round in a circle: {} → {svc}",
                chain.join(" → ")
            ),
        ));
    }
    chain.push(link);
    let Some(own) = services_of(doc).and_then(|s| s.get(svc)) else {
        return Err((
            path,
            format!("no service {svc:?} in {} to extend", shown(file, cwd)),
        ));
    };
    let mut own = own.clone();
    let Some(ext) = own.as_mapping_mut().and_then(|m| m.remove("extends")) else {
        return Ok(own);
    };
    let (base, base_file) = match &ext {
        Value::String(s) => (s.clone(), None),
        Value::Mapping(m) => {
            let base = m.get("service").and_then(Value::as_str).ok_or_else(|| {
                (
                    format!("{path}.extends"),
                    "`extends` needs `service:` (the name of the service to extend)".to_string(),
                )
            })?;
            for k in m.keys() {
                let k = key_text(k);
                if k != "service" && k != "file" {
                    return Err((
                        format!("{path}.extends.{k}"),
                        format!("`extends` takes `service` and `file`, not `{k}`"),
                    ));
                }
            }
            (
                base.to_string(),
                m.get("file").and_then(Value::as_str).map(str::to_string),
            )
        }
        _ => {
            return Err((
                format!("{path}.extends"),
                "`extends` is a service name or a mapping with `service` and `file`".to_string(),
            ));
        }
    };
    let base_value = match base_file {
        None => extended(doc, file, &base, cwd, vars, chain)?,
        Some(f) => {
            let other = file.parent().unwrap_or(cwd).join(&f);
            let (doc, _) = read(&other, cwd, vars)
                .map_err(|e| (format!("{path}.extends.file"), e.to_string()))?;
            extended(&doc, &other, &base, cwd, vars, chain)?
        }
    };
    Ok(merge(base_value, own, "services.x"))
}

/// Keys whose sequences a later file replaces rather than adds to.
const REPLACED: [&str; 3] = ["command", "entrypoint", "test"];

/// Keys written as a list of `K=V` or a mapping, merged as mappings.
const KEY_VALUE: [&str; 5] = [
    "environment",
    "labels",
    "extra_hosts",
    "sysctls",
    "annotations",
];

/// `over` merged onto `base` per the Compose specification's merge rules:
/// mappings key by key, most sequences appended without repeats, volumes
/// by their target, command-like sequences replaced, scalars overridden.
pub fn merge(base: Value, over: Value, path: &str) -> Value {
    let last = path.rsplit('.').next().unwrap_or_default();
    match (base, over) {
        (Value::Mapping(mut b), Value::Mapping(o)) => {
            for (k, v) in o {
                let key = key_text(&k);
                let p = child(path, &key);
                let merged = match b.remove(&k) {
                    Some(old) => merge(old, v, &p),
                    None => v,
                };
                b.insert(k, merged);
            }
            Value::Mapping(b)
        }
        (b, o) if KEY_VALUE.contains(&last) && in_service(path) => {
            merge(key_values(b), key_values(o), &format!("{path}.map"))
        }
        (b, o) if last == "depends_on" || last == "networks" && in_service(path) => {
            merge(named(b), named(o), &format!("{path}.map"))
        }
        (Value::Sequence(b), Value::Sequence(o)) if !REPLACED.contains(&last) => {
            let mut out = b;
            for item in o {
                if last == "volumes" && in_service(path) {
                    let target = volume_target(&item);
                    out.retain(|v| target.is_none() || volume_target(v) != target);
                    out.push(item);
                } else if !out.contains(&item) {
                    out.push(item);
                }
            }
            Value::Sequence(out)
        }
        (_, o) => o,
    }
}

fn in_service(path: &str) -> bool {
    path.starts_with("services.") && path.matches('.').count() == 2
}

/// `["A=1", "B"]` as `{A: "1", B: null}`.
fn key_values(v: Value) -> Value {
    match v {
        Value::Sequence(items) => {
            let mut m = Mapping::new();
            for item in items {
                let text = match item {
                    Value::String(s) => s,
                    other => key_text(&other),
                };
                match text.split_once('=') {
                    Some((k, v)) => m.insert(k.into(), Value::String(v.to_string())),
                    None => m.insert(Value::String(text), Value::Null),
                };
            }
            Value::Mapping(m)
        }
        other => other,
    }
}

/// `[a, b]` (depends_on, networks) as `{a: null, b: null}`: names as keys,
/// so a long form in another file merges with them.
fn named(v: Value) -> Value {
    match v {
        Value::Sequence(items) => {
            Value::Mapping(items.into_iter().map(|i| (i, Value::Null)).collect())
        }
        other => other,
    }
}

fn volume_target(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            match parts.len() {
                1 => Some(parts[0].to_string()),
                _ => Some(parts[1].to_string()),
            }
        }
        Value::Mapping(m) => m.get("target").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

fn project_name(
    opts: &Options,
    value: &Value,
    dir: &Path,
    vars: &Vars,
) -> Result<String, ComposeError> {
    let explicit = opts
        .project_name
        .clone()
        .or_else(|| vars.get("COMPOSE_PROJECT_NAME").cloned())
        .or_else(|| {
            value
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    if let Some(name) = explicit {
        return match name_problem(&name) {
            None => Ok(name),
            Some(why) => Err(ComposeError::ProjectName { name, why }),
        };
    }
    let base = dir
        .canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    // Compose lowercases the directory's name and drops what a project
    // name cannot hold; edge's namespaces do not take `_` or `.` either.
    let mut name: String = base
        .to_lowercase()
        .chars()
        .map(|c| if c == '_' || c == '.' { '-' } else { c })
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
        .collect();
    name = name.trim_matches('-').to_string();
    match name_problem(&name) {
        None => Ok(name),
        Some(why) => Err(ComposeError::ProjectName {
            name: base,
            why: format!("(the directory's name) {why}; give one with -p"),
        }),
    }
}

/// Why `name` cannot be a project: it becomes an edge namespace and job.
pub fn name_problem(name: &str) -> Option<String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if name.is_empty() || name.len() > 63 {
        return Some("must be 1 to 63 characters".to_string());
    }
    if !ok_chars || name.starts_with('-') || name.ends_with('-') {
        return Some(
            "must be lowercase letters, digits and `-`, starting and ending with a letter or digit \
             (it becomes the project's edge namespace)"
                .to_string(),
        );
    }
    if ["canary", "node", "tasks"].contains(&name) {
        return Some("is a word edge's DNS names keep for themselves".to_string());
    }
    None
}

fn apply_profiles(
    value: &mut Value,
    opts: &Options,
    project: &Project,
) -> Result<(), ComposeError> {
    let mut active: BTreeSet<String> = opts.profiles.iter().cloned().collect();
    if let Some(env) = project.vars.get("COMPOSE_PROFILES") {
        active.extend(
            env.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string),
        );
    }
    let all = active.contains("*");
    let Some(services) = value.get_mut("services").and_then(Value::as_mapping_mut) else {
        return Ok(());
    };
    let mut off = BTreeSet::new();
    for (k, s) in services.iter() {
        let profiles: Vec<&str> = s
            .get("profiles")
            .and_then(Value::as_sequence)
            .map(|p| p.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !profiles.is_empty() && !all && !profiles.iter().any(|p| active.contains(*p)) {
            off.insert(key_text(k));
        }
    }
    services.retain(|k, _| !off.contains(&key_text(k)));
    for (k, s) in services.iter() {
        let deps: Vec<String> = match s.get("depends_on") {
            Some(Value::Sequence(d)) => d.iter().map(key_text).collect(),
            Some(Value::Mapping(d)) => d.keys().map(key_text).collect(),
            _ => Vec::new(),
        };
        if let Some(dep) = deps.iter().find(|d| off.contains(*d)) {
            let svc = key_text(k);
            return Err(project.error(
                &format!("services.{svc}.depends_on"),
                format!(
                    "service {svc:?} depends on {dep:?}, whose profiles are not active: \
                     add --profile (or COMPOSE_PROFILES) for it"
                ),
            ));
        }
    }
    Ok(())
}

/// `mode: 0400` is octal in the YAML 1.1 that Docker Compose reads, a
/// string in the YAML 1.2 this parser reads: made the number Compose means.
fn octal_modes(value: &mut Value) {
    let Some(services) = value.get_mut("services").and_then(Value::as_mapping_mut) else {
        return;
    };
    for svc in services.values_mut() {
        for top in ["configs", "secrets"] {
            let Some(items) = svc.get_mut(top).and_then(Value::as_sequence_mut) else {
                continue;
            };
            for item in items.iter_mut().filter_map(Value::as_mapping_mut) {
                if let Some(Value::String(m)) = item.get("mode")
                    && let Ok(n) = u32::from_str_radix(m.trim_start_matches("0o"), 8)
                {
                    item.insert("mode".into(), Value::Number(n.into()));
                }
            }
        }
    }
}

fn typed(value: &Value, project: &Project) -> Result<compose_spec::Compose, ComposeError> {
    let mut value = value.clone();
    // compose_spec 0.3 knows `failure_action` as `continue` or `pause`
    // only; the specification also has `rollback`, which convert reads
    // from the file itself.
    if let Some(services) = value.get_mut("services").and_then(Value::as_mapping_mut) {
        for svc in services.values_mut() {
            if let Some(u) = svc
                .get_mut("deploy")
                .and_then(|d| d.get_mut("update_config"))
                .and_then(Value::as_mapping_mut)
                && u.get("failure_action").and_then(Value::as_str) == Some("rollback")
            {
                u.remove("failure_action");
            }
        }
    }
    let compose: compose_spec::Compose = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        project.error(&path, strip_location(&e.inner().to_string()))
    })?;
    compose
        .validate_all()
        .map_err(|e| project.error("services", e.to_string()))?;
    Ok(compose)
}
