//! Nomad-shaped HCL job files. The body becomes the serde form of a [`Job`]
//! (blocks become objects and lists, labels the fields they name), every
//! value keeping its place in the file, and is decoded through the same serde
//! types as JSON: one schema, one set of defaults. serde's path of an error
//! leads back to the value, so each finding still names line, column and
//! dotted field.

mod de;
mod dynamic;
mod expr;
mod funcs;
mod locals;
mod model;
mod nomad;
mod vars;
mod write;

pub use write::job_to_hcl;

use self::de::{De, Kind, Node};
use self::expr::{EvalError, Scope};
use crate::error::{Diagnostic, SpecError};
use crate::job::Job;
use crate::parse::{self, LineIndex, ParseOptions, Parsed, SpanMap};
use ::hcl::Value;
use hcl_edit::Span;
use hcl_edit::expr::Expression;
use hcl_edit::structure::{Block, Structure};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

/// Blocks that may repeat, each one item of a list field of the block around
/// it: (enclosing block, block, list field, field its label fills).
const LISTS: &[(&str, &str, &str, Option<&str>)] = &[
    ("job", "group", "groups", Some("name")),
    ("job", "constraint", "constraints", None),
    ("job", "affinity", "affinities", None),
    ("job", "spread", "spreads", None),
    ("job", "network", "networks", Some("name")),
    ("group", "constraint", "constraints", None),
    ("group", "affinity", "affinities", None),
    ("group", "spread", "spreads", None),
    ("spread", "target", "targets", Some("value")),
    ("group", "task", "tasks", Some("name")),
    ("task", "constraint", "constraints", None),
    ("task", "affinity", "affinities", None),
    ("group", "volume", "volumes", Some("name")),
    ("group", "depends_on", "depends_on", None),
    ("task", "volume_mount", "volume_mounts", None),
    ("task", "secret", "secrets", Some("name")),
    ("task", "template", "templates", None),
    ("task", "artifact", "artifacts", None),
    ("group", "service", "services", None),
    ("network", "port", "ports", Some("label")),
    ("service", "check", "checks", None),
    ("model", "model", "models", Some("name")),
];

/// Fields of [`Job`] the server stamps on a version: not for a job file.
const SERVER_FIELDS: &[&str] = &[
    "version",
    "stop",
    "status",
    "submit_time",
    "create_index",
    "modify_index",
    "parent_id",
    "payload",
    "next_launch",
    "children",
];

/// Parses an HCL job file, resolves its variables, decodes and validates it.
pub fn parse_hcl(src: &str, opts: &ParseOptions) -> Result<Parsed, SpecError> {
    let lines = LineIndex::new(&opts.filename, src);
    let body = lines.parse_body()?;
    let mut d = Decoder {
        lines,
        scope: Scope::without_vars(),
        errors: Vec::new(),
        warnings: Vec::new(),
        spans: SpanMap::default(),
        names: Names::default(),
        hoisted: Vec::new(),
        task_networks: Vec::new(),
        restart_hoisted: false,
        job_defaults: Vec::new(),
        models: Vec::new(),
        unevaluated: BTreeSet::new(),
        files: opts.files.clone(),
    };
    d.scope = d.resolve_vars(&body, opts);
    d.resolve_locals(&body);

    let mut job = None;
    let mut seen = false;
    for s in body.iter() {
        match s {
            Structure::Block(b) if matches!(b.ident.as_str(), "variable" | "locals") => {}
            Structure::Block(b) if b.ident.as_str() == "job" => {
                if seen {
                    d.error(b.span(), "job", "only one job block is allowed per file");
                } else {
                    seen = true;
                    let expanded = d.expand_dynamic(b);
                    job = d.job(expanded.as_ref().unwrap_or(b));
                }
            }
            Structure::Block(b) => d.error(
                b.ident.span(),
                b.ident.as_str(),
                format!(
                    "unknown block `{}`: a job file holds `job`, `variable` and `locals` blocks",
                    b.ident.as_str()
                ),
            ),
            Structure::Attribute(a) => d.error(
                a.key.span(),
                a.key.as_str(),
                format!(
                    "unknown attribute `{}`: a job file holds `job`, `variable` and `locals` blocks",
                    a.key.as_str()
                ),
            ),
        }
    }
    let Decoder {
        lines,
        mut errors,
        mut warnings,
        spans,
        ..
    } = d;
    parse::sort(&mut warnings);
    let Some(job) = job else {
        if !seen {
            errors.push(Diagnostic::new("job", "no `job` block found").at(lines.location(0)));
        }
        parse::sort(&mut errors);
        return Err(SpecError::Invalid { errors, warnings });
    };
    parse::finish(
        job,
        errors,
        warnings,
        &spans,
        &lines.file_only(),
        &opts.driver_configs,
    )
}

/// The labels around the block being read, for the default service names.
#[derive(Default)]
struct Names {
    job: String,
    group: String,
    task: String,
}

struct Decoder<'a> {
    lines: LineIndex<'a>,
    scope: Scope,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    spans: SpanMap,
    names: Names,
    /// `service` blocks written inside a task (Nomad allows both) with the
    /// task's name: they are the group's here.
    hoisted: Vec<(Block, String)>,
    /// `network` blocks in a task's `resources` (Nomad 0.x) with the
    /// task's name: their ports are the group's here.
    task_networks: Vec<(Block, String)>,
    /// The group being read has one task, whose `restart` block is read as
    /// the group's (edge restarts per group; with one task that is the same).
    restart_hoisted: bool,
    /// The job's own `migrate` and `reschedule` blocks: Nomad applies them
    /// to every group, under what a group's own block sets.
    job_defaults: Vec<Block>,
    /// `model` blocks, each expanded into a group once the job is decoded.
    models: Vec<Block>,
    /// Fields whose expression failed: reported already, or using a variable
    /// that was, so their absence is not reported again.
    unevaluated: BTreeSet<String>,
    files: crate::parse::Files,
}

impl Decoder<'_> {
    fn error(&mut self, span: Option<Range<usize>>, field: &str, message: impl Into<String>) {
        let at = self.lines.span(span);
        self.errors.push(Diagnostic::new(field, message).at(at));
    }

    fn warn(&mut self, span: Option<Range<usize>>, field: &str, message: impl Into<String>) {
        let at = self.lines.span(span);
        self.warnings.push(Diagnostic::new(field, message).at(at));
    }

    fn report(&mut self, e: EvalError, fallback: Option<Range<usize>>, field: &str) {
        if let EvalError::Problems(problems) = e {
            for (span, message) in problems {
                self.error(span.or_else(|| fallback.clone()), field, message);
            }
        }
    }

    fn eval(&mut self, expr: &Expression, field: &str) -> Option<Value> {
        match expr::eval(expr, &self.scope) {
            Ok(v) => Some(v),
            Err(e) => {
                self.report(e, expr.span(), field);
                self.unevaluated.insert(field.to_string());
                None
            }
        }
    }

    /// The single label of a `group "web"`-style block.
    fn label(&mut self, block: &Block, kind: &str) -> Option<String> {
        match block.labels.as_slice() {
            [one] if !one.as_str().is_empty() => Some(one.as_str().to_string()),
            _ => {
                self.error(
                    block.span(),
                    kind,
                    format!("`{kind}` block needs exactly one non-empty label, its name"),
                );
                None
            }
        }
    }

    fn job(&mut self, block: &Block) -> Option<Job> {
        let id = self.label(block, "job")?;
        let field = format!("job.{id}");
        self.names.job = id.clone();
        let mut node = self.object("job", block, &field, false);
        for key in SERVER_FIELDS {
            if let Some(n) = node.remove(key) {
                let message = format!("`{key}` is set by the server; ignored");
                self.warnings
                    .push(Diagnostic::new(n.field, message).at(n.key_at));
            }
        }
        self.set_label(&mut node, "id", &id);
        let mut job: Job = self.decode(node)?;
        for b in std::mem::take(&mut self.models) {
            if let Some(g) = self.model(&b, &field) {
                job.groups.push(g);
            }
        }
        Some(job)
    }

    /// Decodes `root` as `T`. Each error drops the value it names, so the
    /// field takes its default, and decoding starts over: every problem is
    /// found in one pass over the file. An unknown field is only a warning.
    fn decode<T: DeserializeOwned>(&mut self, mut root: Node) -> Option<T> {
        let mut reported = self.unevaluated.clone();
        loop {
            let e = match serde_path_to_error::deserialize(De(&root)) {
                Ok(v) => return Some(v),
                Err(e) => e,
            };
            let path: Vec<_> = e.path().iter().cloned().collect();
            let message = e.into_inner().to_string();
            let Some(node) = root.take(&path) else {
                self.errors
                    .push(Diagnostic::new(&root.field, message).at(root.at.clone()));
                return None;
            };
            if message.starts_with("unknown field `") {
                let name = node.field.rsplit('.').next().unwrap_or_default();
                let what = if node.block { "block" } else { "attribute" };
                let hint = nearest(name, &message)
                    .map(|n| format!(": did you mean `{n}`?"))
                    .unwrap_or_default();
                reported.insert(node.field.clone());
                self.errors.push(
                    Diagnostic::new(&node.field, format!("unknown {what} `{name}`{hint}"))
                        .at(node.key_at),
                );
            } else if let Some(missing) = message
                .strip_prefix("missing field `")
                .and_then(|m| m.split('`').next())
            {
                // Unless its value was dropped for a problem of its own.
                let field = format!("{}.{missing}", node.field);
                if reported.insert(field.clone()) {
                    self.errors
                        .push(Diagnostic::new(field, message).at(node.at));
                }
            } else {
                reported.insert(node.field.clone());
                self.errors
                    .push(Diagnostic::new(node.field, message).at(node.at));
            }
        }
    }

    /// The object a block's body stands for. `free` inside a driver `config`,
    /// whose shape only the driver knows: a repeated block becomes a list,
    /// labels become keys, and findings point at the keys.
    fn object(&mut self, kind: &str, block: &Block, field: &str, free: bool) -> Node {
        let at = self.lines.span(block.span());
        let key_at = self.lines.span(block.ident.span());
        self.spans
            .record(field, if free { &key_at } else { &at }.clone());
        let mut node = Node::new(Kind::Map(Vec::new()), &at, &key_at, field);
        node.block = true;
        let mut repeated: BTreeMap<&str, usize> = BTreeMap::new();
        for b in block.body.blocks().filter(|b| b.labels.is_empty()) {
            *repeated.entry(b.ident.as_str()).or_default() += 1;
        }
        let mut merged = BTreeSet::new();
        let mut task_user = None;
        if kind == "job" {
            self.job_defaults.clear();
            for b in block.body.blocks() {
                let ident = b.ident.as_str();
                if !matches!(ident, "migrate" | "reschedule") {
                    continue;
                }
                if self.job_defaults.iter().any(|d| d.ident.as_str() == ident) {
                    let at = format!("{field}.{ident}");
                    self.error(
                        b.ident.span(),
                        &at,
                        format!("only one `{ident}` block is allowed here"),
                    );
                } else {
                    self.job_defaults.push(b.clone());
                }
            }
        }
        if kind == "group" {
            self.restart_hoisted = false;
            if let Some(restart) = lone_task_restart(block) {
                self.child("group", &mut node, restart);
                self.restart_hoisted = true;
            }
            for default in self.job_defaults.clone() {
                let ident = default.ident.as_str();
                let own: Vec<&Block> = block.body.get_blocks(ident).collect();
                let applied = match own.as_slice() {
                    [] => default.clone(),
                    [own] => under(own, &default),
                    _ => continue,
                };
                merged.insert(ident.to_string());
                self.child("group", &mut node, &applied);
            }
        }
        for s in block.body.iter() {
            let (ident, span) = match s {
                Structure::Attribute(a) => (a.key.as_str(), a.key.span()),
                Structure::Block(b) => (b.ident.as_str(), b.ident.span()),
            };
            if let (false, "job", "migrate" | "reschedule", Structure::Block(_)) =
                (free, kind, ident, s)
            {
                continue;
            }
            if kind == "group" && merged.contains(ident) && matches!(s, Structure::Block(_)) {
                continue;
            }
            if kind == "task" && ident == "restart" && self.restart_hoisted {
                continue;
            }
            if let (false, "task", "user", Structure::Attribute(a)) = (free, kind, ident, s) {
                task_user = Some(a);
                continue;
            }
            if let (false, "group", "ephemeral_disk", Structure::Block(b)) = (free, kind, ident, s)
            {
                self.ephemeral_disk(b, &format!("{field}.{ident}"));
                continue;
            }
            if !free && self.nomad_only(kind, ident, span, &format!("{field}.{ident}")) {
                continue;
            }
            match s {
                Structure::Attribute(a) => {
                    let key = a.key.as_str();
                    let field = format!("{field}.{key}");
                    let key_at = self.lines.span(a.key.span());
                    let at = self.lines.span(a.value.span());
                    self.spans
                        .record(&field, if free { &key_at } else { &at }.clone());
                    if node.has(key) {
                        self.error(
                            a.key.span(),
                            &field,
                            format!("`{key}` is set more than once"),
                        );
                    } else if let Some(v) = self.eval(&a.value, &field) {
                        node.insert(key, Node::value(v, &at, &key_at, &field));
                    }
                }
                Structure::Block(b) if free => {
                    let many = repeated.get(b.ident.as_str()).is_some_and(|n| *n > 1);
                    self.free_block(&mut node, b, many);
                }
                Structure::Block(b) => self.child(kind, &mut node, b),
            }
        }
        if let Some(a) = task_user {
            self.task_user(&mut node, a);
        }
        node
    }

    /// Nomad's task-level `user`, read as the driver's `config.user` (the
    /// exec and containerd drivers take one there).
    fn task_user(&mut self, task: &mut Node, a: &hcl_edit::structure::Attribute) {
        let field = format!("{}.config.user", task.field);
        let at = self.lines.span(a.value.span());
        let key_at = self.lines.span(a.key.span());
        self.spans.record(&field, at.clone());
        let Some(v) = self.eval(&a.value, &field) else {
            return;
        };
        match task.get_mut("config") {
            Some(config) if config.has("user") => self.error(
                a.key.span(),
                &format!("{}.user", task.field),
                "the task's `user` and its `config.user` are both set: keep one",
            ),
            Some(config) => config.insert("user", Node::value(v, &at, &key_at, &field)),
            None => self.error(
                a.key.span(),
                &format!("{}.user", task.field),
                "`user` is read as the driver's `config.user`, and the task has no `config` block",
            ),
        }
    }

    /// Nomad's `ephemeral_disk`: its `size` means nothing here (edge does
    /// not reserve disk), while sticky or migrated data is not built, so
    /// `sticky` or `migrate` set to true is refused; false is the default.
    fn ephemeral_disk(&mut self, block: &Block, field: &str) {
        for s in block.body.iter() {
            match s {
                Structure::Attribute(a) => {
                    let key = a.key.as_str();
                    let at = format!("{field}.{key}");
                    let off = matches!(self.eval(&a.value, &at), Some(Value::Bool(false)));
                    if !(off && key != "size") {
                        self.nomad_unknown("ephemeral_disk", key, a.key.span(), &at);
                    }
                }
                Structure::Block(b) => {
                    let at = format!("{field}.{}", b.ident.as_str());
                    self.nomad_unknown("ephemeral_disk", b.ident.as_str(), b.ident.span(), &at);
                }
            }
        }
    }

    /// `nomad_only`, or an unknown-key error when the table has no row.
    fn nomad_unknown(&mut self, kind: &str, key: &str, span: Option<Range<usize>>, field: &str) {
        if !self.nomad_only(kind, key, span.clone(), field) {
            self.error(span, field, format!("unknown attribute `{key}`"));
        }
    }

    /// Reports a Nomad key edge does not decode (`nomad.rs`): an error when
    /// dropping it would change what runs, else a warning saying why it
    /// means nothing here. True when it was one.
    fn nomad_only(
        &mut self,
        kind: &str,
        key: &str,
        span: Option<Range<usize>>,
        field: &str,
    ) -> bool {
        match nomad::treatment(kind, key) {
            Some(nomad::Treatment::Refuse(why)) => {
                self.error(span, field, format!("`{key}` is not supported: {why}"));
                true
            }
            Some(nomad::Treatment::Ignore(why)) => {
                self.warn(span, field, format!("`{key}` is ignored: {why}"));
                true
            }
            None => false,
        }
    }

    /// A block inside a known block: an item of a list, a model, a task's
    /// service, or the one object of its name.
    fn child(&mut self, kind: &str, node: &mut Node, b: &Block) {
        let ident = b.ident.as_str();
        if kind == "task" && ident == "service" {
            self.hoisted.push((b.clone(), self.names.task.clone()));
            return;
        }
        if kind == "job" && ident == "model" {
            self.models.push(b.clone());
            return;
        }
        if kind == "resources" && ident == "network" {
            self.task_networks
                .push((b.clone(), self.names.task.clone()));
            return;
        }
        // `config { ... }` is the driver's; `config "NAME" { ... }` asks
        // for a config object.
        if kind == "task" && ident == "config" && !b.labels.is_empty() {
            self.item(node, b, "configs", Some("name"));
            return;
        }
        if let Some(&(_, _, list, label)) = LISTS.iter().find(|l| l.0 == kind && l.1 == ident) {
            self.item(node, b, list, label);
            return;
        }
        let field = format!("{}.{ident}", node.field);
        if let Some(old) = node.get_mut(ident) {
            let message = if old.block {
                format!("only one `{ident}` block is allowed here")
            } else {
                format!("`{ident}` is given both as attribute and block")
            };
            self.error(b.span(), &field, message);
            return;
        }
        let mut child = self.object(ident, b, &field, ident == "config");
        if kind == "service" && ident == "publish" {
            publish_host(&mut child);
        }
        node.insert(ident, child);
    }

    /// One block of a list: `group "web"`, `check`, ...
    fn item(&mut self, parent: &mut Node, b: &Block, list: &str, label: Option<&str>) {
        let ident = b.ident.as_str();
        let name = match label {
            Some(_) => match self.label(b, ident) {
                Some(name) => name,
                None => return,
            },
            None => String::new(),
        };
        let index = match parent.get_mut(list) {
            Some(Node {
                kind: Kind::List(items),
                block: true,
                ..
            }) => items.len(),
            Some(_) => {
                let field = format!("{}.{ident}", parent.field);
                let message = format!("`{list}` is given both as attribute and `{ident}` blocks");
                self.error(b.span(), &field, message);
                return;
            }
            None => {
                let mut items = Node::new(
                    Kind::List(Vec::new()),
                    &self.lines.span(b.span()),
                    &self.lines.span(b.ident.span()),
                    &format!("{}.{ident}", parent.field),
                );
                items.block = true;
                parent.insert(list, items);
                0
            }
        };
        let field = match label {
            Some(_) => format!("{}.{ident}.{name}", parent.field),
            None => format!("{}.{ident}[{index}]", parent.field),
        };
        match ident {
            "group" => {
                self.names.group = name.clone();
                self.hoisted.clear();
                self.task_networks.clear();
            }
            "task" => self.names.task = name.clone(),
            _ => {}
        }
        let mut node = self.object(ident, b, &field, false);
        if let Some(label) = label {
            self.set_label(&mut node, label, &name);
        }
        match ident {
            "constraint" => {
                self.distinct_hosts(&mut node);
                self.shorthand_operator(&mut node);
            }
            "service" => {
                let mut default = format!("{}-{}", self.names.job, self.names.group);
                if !self.names.task.is_empty() {
                    default = format!("{default}-{}", self.names.task);
                }
                spread_check_restart(&mut node);
                if !node.has("name") {
                    let at = format!("{field}.name");
                    let name = Node::new(Kind::String(default), &node.at, &node.key_at, &at);
                    node.insert("name", name);
                }
            }
            "task" => {
                self.names.task.clear();
                self.env_file(&mut node);
            }
            "template" => self.template_source(&mut node),
            "group" => {
                for (b, task) in std::mem::take(&mut self.hoisted) {
                    self.names.task = task;
                    self.item(&mut node, &b, "services", None);
                }
                self.names.task.clear();
                self.task_networks_to_group(&mut node);
            }
            _ => {}
        }
        if let Some(Node {
            kind: Kind::List(items),
            ..
        }) = parent.get_mut(list)
        {
            items.push(node);
        }
    }

    /// Nomad 0.x's task `resources { network { port ... } }`: the ports
    /// become the group's, with a warning to move the block, as Nomad
    /// itself has read them since 0.12. A group with a `network` block of
    /// its own takes none of them: which one was meant is not for edge to
    /// guess.
    fn task_networks_to_group(&mut self, group: &mut Node) {
        let own = group.has("network");
        let field = format!("{}.network", group.field);
        for (b, task) in std::mem::take(&mut self.task_networks) {
            let at = format!("{}.task.{task}.resources.network", group.field);
            if own {
                self.error(
                    b.span(),
                    &at,
                    "the group has a `network` block of its own: move this task's ports into it (a task's `resources { network }` is Nomad 0.x's form)",
                );
                continue;
            }
            self.warn(
                b.ident.span(),
                &at,
                "`network` in a task's `resources` is Nomad 0.x's form: its ports are the group's; move the block into the group",
            );
            let mut net = self.object("network", &b, &field, false);
            match group.get_mut("network") {
                None => group.insert("network", net),
                Some(first) => {
                    let Some(Node {
                        kind: Kind::List(more),
                        ..
                    }) = net.remove("ports")
                    else {
                        continue;
                    };
                    match first.get_mut("ports") {
                        Some(Node {
                            kind: Kind::List(items),
                            ..
                        }) => items.extend(more),
                        _ => {
                            let mut list =
                                Node::new(Kind::List(more), &net.at, &net.key_at, &field);
                            list.block = true;
                            first.insert("ports", list);
                        }
                    }
                }
            }
        }
    }

    /// A template's `source`: read through the parse's files, beside the
    /// job file, into `data` (Nomad reads it on the node, where edge has
    /// no way to put it).
    fn template_source(&mut self, tpl: &mut Node) {
        let Some(node) = tpl.remove("source") else {
            return;
        };
        let err = |d: &mut Self, message: String| {
            d.errors
                .push(Diagnostic::new(&node.field, message).at(node.at.clone()));
        };
        let Kind::String(name) = &node.kind else {
            return err(
                self,
                format!("source is a file name, not {}", node.describe()),
            );
        };
        if tpl.has("data") {
            return err(
                self,
                "a template takes `data` or `source`, not both".to_string(),
            );
        }
        let text = match self.files.read(name) {
            None => {
                return err(
                    self,
                    format!(
                        "template source {name:?} is read from beside the job file, and this job came without one: run it from a file (edge job run FILE)"
                    ),
                );
            }
            Some(Err(e)) => return err(self, format!("cannot read template source {name:?}: {e}")),
            Some(Ok(text)) => text,
        };
        let field = format!("{}.data", tpl.field);
        let data = Node::new(Kind::String(text), &node.at, &node.key_at, &field);
        tpl.insert("data", data);
    }

    /// Compose's `env_file`: one name or a list, read through the parse's
    /// [`Files`](crate::parse::Files) into the task's `env`, where what
    /// `env` sets itself wins and a later file wins over an earlier one.
    fn env_file(&mut self, task: &mut Node) {
        let Some(node) = task.remove("env_file") else {
            return;
        };
        let err = |d: &mut Self, message: String| {
            d.errors
                .push(Diagnostic::new(&node.field, message).at(node.at.clone()));
        };
        let names: Vec<String> = match &node.kind {
            Kind::String(s) => vec![s.clone()],
            Kind::List(items) => {
                let names: Vec<String> = items
                    .iter()
                    .filter_map(|i| match &i.kind {
                        Kind::String(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect();
                if names.len() != items.len() {
                    return err(
                        self,
                        "env_file is a file name or a list of them".to_string(),
                    );
                }
                names
            }
            _ => {
                return err(
                    self,
                    format!(
                        "env_file is a file name or a list of them, not {}",
                        node.describe()
                    ),
                );
            }
        };
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        for name in names {
            let text = match self.files.read(&name) {
                None => {
                    return err(
                        self,
                        format!(
                            "env_file {name:?} is read from beside the job file, and this job came without one: run it from a file (edge job run FILE)"
                        ),
                    );
                }
                Some(Err(e)) => return err(self, format!("cannot read env_file {name:?}: {e}")),
                Some(Ok(text)) => text,
            };
            match crate::envfile::parse(&text) {
                Ok(pairs) => vars.extend(pairs),
                Err(e) => {
                    return err(self, format!("env_file {name}:{}: {}", e.line, e.message));
                }
            }
        }
        if vars.is_empty() {
            return;
        }
        if !task.has("env") {
            let env = Node::new(
                Kind::Map(Vec::new()),
                &node.at,
                &node.key_at,
                &format!("{}.env", task.field),
            );
            task.insert("env", env);
        }
        let Some(env) = task.get_mut("env") else {
            return;
        };
        if !matches!(env.kind, Kind::Map(_)) {
            return;
        }
        for (k, v) in vars {
            if !env.has(&k) {
                let field = format!("{}.{k}", env.field);
                let value = Node::new(Kind::String(v), &node.at, &node.key_at, &field);
                env.insert(&k, value);
            }
        }
    }

    /// Fills the field a block's label names, which its body may not set too.
    fn set_label(&mut self, node: &mut Node, key: &str, label: &str) {
        if let Some(old) = node.get_mut(key) {
            let (field, at) = (old.field.clone(), old.key_at.clone());
            self.errors
                .push(Diagnostic::new(field, format!("`{key}` is the block's label here")).at(at));
        }
        let field = format!("{}.{key}", node.field);
        let value = Node::new(
            Kind::String(label.to_string()),
            &node.at,
            &node.key_at,
            &field,
        );
        node.insert(key, value);
    }

    /// Nomad's `distinct_hosts = true` inside a `constraint` is its operator.
    fn distinct_hosts(&mut self, node: &mut Node) {
        let Some(flag) = node.remove("distinct_hosts") else {
            return;
        };
        match flag.as_bool() {
            Some(true) => {
                let field = format!("{}.operator", node.field);
                let op = Kind::String("distinct_hosts".to_string());
                node.insert("operator", Node::new(op, &flag.at, &flag.key_at, &field));
            }
            Some(false) => {}
            None => self.errors.push(
                Diagnostic::new(
                    &flag.field,
                    format!("expected true or false, got {}", flag.describe()),
                )
                .at(flag.at.clone()),
            ),
        }
    }

    /// HCL1's shorthand constraints, `regexp = "..."`, `set_contains =
    /// "..."`, `version = "..."` and `semver = "..."`: the key is the
    /// operator and its value the value.
    fn shorthand_operator(&mut self, node: &mut Node) {
        for op in ["regexp", "set_contains", "version", "semver"] {
            let Some(value) = node.remove(op) else {
                continue;
            };
            if let Some(other) = ["operator", "value"].into_iter().find(|k| node.has(k)) {
                self.errors.push(
                    Diagnostic::new(
                        &value.field,
                        format!("both `{other}` and the shorthand `{op}` are given: keep one"),
                    )
                    .at(value.key_at.clone()),
                );
                continue;
            }
            let field = format!("{}.operator", node.field);
            let kind = Kind::String(op.to_string());
            node.insert(
                "operator",
                Node::new(kind, &value.at, &value.key_at, &field),
            );
            let mut value = value;
            value.field = format!("{}.value", node.field);
            node.insert("value", value);
        }
        // `distinct_property = "${meta.rack}"` names the property; a
        // `value` beside it is the count.
        if let Some(mut attr) = node.remove("distinct_property") {
            if node.has("operator") || node.has("attribute") {
                self.errors.push(
                    Diagnostic::new(
                        &attr.field,
                        "`distinct_property = ...` names the attribute: leave out `operator` and `attribute`",
                    )
                    .at(attr.key_at.clone()),
                );
                return;
            }
            let field = format!("{}.operator", node.field);
            let kind = Kind::String("distinct_property".to_string());
            node.insert("operator", Node::new(kind, &attr.at, &attr.key_at, &field));
            attr.field = format!("{}.attribute", node.field);
            node.insert("attribute", attr);
        }
    }

    /// A block inside a driver `config`: its labels become keys, a block
    /// that repeats becomes a list.
    fn free_block(&mut self, node: &mut Node, b: &Block, many: bool) {
        let k = b.ident.as_str();
        let field = format!("{}.{k}", node.field);
        let mut value = self.object(k, b, &field, true);
        for label in b.labels.iter().rev() {
            value = value.wrap(|v| Kind::Map(vec![(label.as_str().to_string(), v)]));
        }
        let Some(old) = node.get_mut(k) else {
            let value = if many {
                value.wrap(|v| Kind::List(vec![v]))
            } else {
                value
            };
            node.insert(k, value);
            return;
        };
        match (&mut old.kind, value.kind) {
            (Kind::List(items), kind) => items.push(Node { kind, ..value }),
            (Kind::Map(into), Kind::Map(from)) => into.extend(from),
            _ => self.error(
                b.span(),
                &field,
                format!("`{k}` is given both as attribute and block"),
            ),
        }
    }

    /// Records a finding of a later check at the place its field was written.
    fn finding(&mut self, field: String, message: String) {
        let at = self
            .spans
            .lookup(&field)
            .cloned()
            .unwrap_or_else(|| self.lines.file_only());
        self.errors.push(Diagnostic::new(field, message).at(at));
    }
}

/// Nomad allows `check_restart` on the service, for each of its checks that
/// has none of its own.
fn spread_check_restart(service: &mut Node) {
    let Some(restart) = service.remove("check_restart") else {
        return;
    };
    if let Some(Node {
        kind: Kind::List(checks),
        ..
    }) = service.get_mut("checks")
    {
        for c in checks.iter_mut().filter(|c| !c.has("check_restart")) {
            c.insert("check_restart", restart.clone());
        }
    }
}

/// `host = "a.example"` in `publish` is one more of its `hosts`.
fn publish_host(publish: &mut Node) {
    let Some(host) = publish.remove("host") else {
        return;
    };
    match publish.get_mut("hosts") {
        Some(Node {
            kind: Kind::List(hosts),
            ..
        }) => hosts.push(host),
        Some(_) => {}
        None => publish.insert("hosts", host.wrap(|h| Kind::List(vec![h]))),
    }
}

/// The expected field closest to a misspelled `name`, from serde's "unknown
/// field `x`, expected one of `a`, `b`" message; none when nothing is close.
fn nearest<'m>(name: &str, message: &'m str) -> Option<&'m str> {
    let expected = message.split_once("expected")?.1;
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|candidate| (strsim::damerau_levenshtein(name, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// The `restart` block of a group's only task, when the group has none of
/// its own: edge restarts per group, which for one task is the same rule.
fn lone_task_restart(group: &Block) -> Option<&Block> {
    if group.body.blocks().any(|b| b.ident.as_str() == "restart") {
        return None;
    }
    let mut tasks = group.body.blocks().filter(|b| b.ident.as_str() == "task");
    let task = tasks.next()?;
    if tasks.next().is_some() {
        return None;
    }
    let mut restarts = task.body.blocks().filter(|b| b.ident.as_str() == "restart");
    let restart = restarts.next()?;
    restarts.next().is_none().then_some(restart)
}

/// A group's own block with the attributes of the job's block of the same
/// kind that it leaves out, as Nomad merges job-level `migrate` and
/// `reschedule` into each group.
fn under(own: &Block, job: &Block) -> Block {
    let mut merged = own.clone();
    for a in job.body.attributes() {
        if !merged.body.has_attribute(a.key.as_str()) {
            merged.body.push(a.clone());
        }
    }
    merged
}
