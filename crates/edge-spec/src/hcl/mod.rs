//! Nomad-shaped HCL job files decoded into a [`Job`], with every error and
//! warning placed at a line and column and named by its dotted field path.

mod expr;
mod model;
mod vars;

use self::expr::{EvalError, Scope, describe};
use crate::duration;
use crate::error::{Diagnostic, SpecError};
use crate::job::{
    Balance, Check, CheckRestart, CheckType, Constraint, ConstraintOp, Group, Job, JobType,
    Network, PortSpec, Publish, PublishProtocol, PublishTls, ReschedulePolicy, Resources,
    RestartMode, RestartPolicy, Service, Task, default_datacenters, default_priority,
};
use crate::parse::{self, LineIndex, ParseOptions, Parsed, SpanMap};
use ::hcl::Value;
use hcl_edit::Span;
use hcl_edit::structure::{Attribute, Block, Body, Structure};
use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

/// Parses an HCL job file, resolves its variables, decodes and validates it.
pub fn parse_hcl(src: &str, opts: &ParseOptions) -> Result<Parsed, SpecError> {
    let lines = LineIndex::new(&opts.filename, src);
    let body = match hcl_edit::parser::parse_body(src) {
        Ok(b) => b,
        Err(e) => {
            let loc = e.location();
            let mut at = lines.location(loc.offset());
            at.line = loc.line();
            at.column = loc.column();
            return Err(SpecError::Invalid(vec![
                Diagnostic::new(
                    "",
                    format!("syntax error: {} (in `{}`)", e.message(), e.line().trim()),
                )
                .at(at),
            ]));
        }
    };
    let mut d = Decoder {
        lines,
        scope: Scope::without_vars(),
        errors: Vec::new(),
        warnings: Vec::new(),
        spans: SpanMap::default(),
    };
    d.scope = d.resolve_vars(&body, opts);

    let mut job = None;
    for s in body.iter() {
        match s {
            Structure::Block(b) if b.ident.as_str() == "variable" => {}
            Structure::Block(b) if b.ident.as_str() == "job" => {
                if job.is_some() {
                    d.error(b.span(), "job", "only one job block is allowed per file");
                } else {
                    job = d.job(b);
                }
            }
            Structure::Block(b) => d.warn(
                b.ident.span(),
                b.ident.as_str(),
                format!("unknown block `{}` is ignored", b.ident.as_str()),
            ),
            Structure::Attribute(a) => d.warn(
                a.key.span(),
                a.key.as_str(),
                format!("unknown attribute `{}` is ignored", a.key.as_str()),
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
        if !body.blocks().any(|b| b.ident.as_str() == "job") {
            errors.push(Diagnostic::new("job", "no `job` block found").at(lines.location(0)));
        }
        parse::sort(&mut errors);
        return Err(SpecError::Invalid(errors));
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

struct Decoder<'a> {
    lines: LineIndex<'a>,
    scope: Scope,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    spans: SpanMap,
}

/// The attributes and blocks of one body that the decoder knows about.
struct Fields<'b> {
    path: String,
    attrs: BTreeMap<&'b str, &'b Attribute>,
    blocks: Vec<&'b Block>,
}

impl<'b> Fields<'b> {
    fn attr(&self, key: &str) -> Option<&'b Attribute> {
        self.attrs.get(key).copied()
    }

    fn blocks<'s>(&'s self, ident: &'s str) -> impl Iterator<Item = &'b Block> + 's {
        self.blocks
            .iter()
            .copied()
            .filter(move |b| b.ident.as_str() == ident)
    }

    fn child(&self, segment: &str) -> String {
        format!("{}.{segment}", self.path)
    }
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

    /// Sorts a body into known attributes and blocks; anything else is a warning.
    fn fields<'b>(
        &mut self,
        body: &'b Body,
        path: &str,
        attrs: &[&str],
        blocks: &[&str],
    ) -> Fields<'b> {
        let mut f = Fields {
            path: path.to_string(),
            attrs: BTreeMap::new(),
            blocks: Vec::new(),
        };
        for s in body.iter() {
            match s {
                Structure::Attribute(a) => {
                    let key = a.key.as_str();
                    let field = f.child(key);
                    if !attrs.contains(&key) {
                        let hint = if blocks.contains(&key) {
                            format!("`{key}` is a block here, not an attribute; ignored")
                        } else {
                            format!("unknown attribute `{key}` is ignored")
                        };
                        self.warn(a.key.span(), &field, hint);
                    } else {
                        let at = self.lines.span(a.value.span());
                        self.spans.record(&field, at);
                        f.attrs.insert(key, a);
                    }
                }
                Structure::Block(b) => {
                    let ident = b.ident.as_str();
                    if blocks.contains(&ident) {
                        f.blocks.push(b);
                    } else {
                        let hint = if attrs.contains(&ident) {
                            format!("`{ident}` is an attribute here, not a block; ignored")
                        } else {
                            format!("unknown block `{ident}` is ignored")
                        };
                        self.warn(b.ident.span(), &f.child(ident), hint);
                    }
                }
            }
        }
        f
    }

    /// Records where a block starts, so findings on its path land there.
    fn enter(&mut self, block: &Block, path: &str) {
        let at = self.lines.span(block.span());
        self.spans.record(path, at);
    }

    /// At most one block named `ident`; a second one is an error.
    fn single<'b>(&mut self, f: &Fields<'b>, ident: &str) -> Option<&'b Block> {
        let mut it = f.blocks(ident);
        let first = it.next();
        for extra in it {
            self.error(
                extra.span(),
                &f.child(ident),
                format!("only one `{ident}` block is allowed here"),
            );
        }
        first
    }

    fn eval_attr(&mut self, attr: &Attribute, field: &str) -> Option<Value> {
        match expr::eval(&attr.value, &self.scope) {
            Ok(v) => Some(v),
            Err(e) => {
                self.report(e, attr.value.span(), field);
                None
            }
        }
    }

    fn value<'b>(&mut self, f: &Fields<'b>, key: &str) -> Option<(Value, &'b Attribute, String)> {
        let attr = f.attr(key)?;
        let field = f.child(key);
        let v = self.eval_attr(attr, &field)?;
        Some((v, attr, field))
    }

    fn type_error(&mut self, attr: &Attribute, field: &str, expected: &str, got: &Value) {
        self.error(
            attr.value.span(),
            field,
            format!("expected {expected}, got {}", describe(got)),
        );
    }

    fn string(&mut self, f: &Fields, key: &str) -> Option<String> {
        let (v, attr, field) = self.value(f, key)?;
        let s = expr::as_string(&v);
        if s.is_none() {
            self.type_error(attr, &field, "a string", &v);
        }
        s
    }

    fn uint(&mut self, f: &Fields, key: &str, lo: u64, hi: u64) -> Option<u64> {
        let (v, attr, field) = self.value(f, key)?;
        match expr::as_u64(&v) {
            Some(n) if (lo..=hi).contains(&n) => Some(n),
            _ => {
                let expected = if hi >= u64::from(u32::MAX) {
                    format!("a whole number of at least {lo}")
                } else {
                    format!("a whole number from {lo} to {hi}")
                };
                self.type_error(attr, &field, &expected, &v);
                None
            }
        }
    }

    fn u32(&mut self, f: &Fields, key: &str) -> Option<u32> {
        self.uint(f, key, 0, u64::from(u32::MAX))
            .and_then(|n| u32::try_from(n).ok())
    }

    fn port(&mut self, f: &Fields, key: &str) -> Option<u16> {
        self.uint(f, key, 1, u64::from(u16::MAX))
            .and_then(|n| u16::try_from(n).ok())
    }

    fn boolean(&mut self, f: &Fields, key: &str) -> Option<bool> {
        let (v, attr, field) = self.value(f, key)?;
        let b = expr::as_bool(&v);
        if b.is_none() {
            self.type_error(attr, &field, "true or false", &v);
        }
        b
    }

    fn duration(&mut self, f: &Fields, key: &str) -> Option<Duration> {
        let (v, attr, field) = self.value(f, key)?;
        let text = match &v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => {
                self.type_error(attr, &field, "a duration such as \"10s\"", &v);
                return None;
            }
        };
        match duration::parse(&text) {
            Ok(d) => Some(d),
            Err(m) => {
                self.error(attr.value.span(), &field, m);
                None
            }
        }
    }

    /// One of `choices`, by its name in the file.
    fn choice<T: Copy>(&mut self, f: &Fields, key: &str, choices: &[(&str, T)]) -> Option<T> {
        let (v, attr, field) = self.value(f, key)?;
        let found = expr::as_string(&v)
            .and_then(|s| choices.iter().find(|(name, _)| *name == s).map(|c| c.1));
        if found.is_none() {
            let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
            let expected = format!("one of {}", names.join(", "));
            self.type_error(attr, &field, &expected, &v);
        }
        found
    }

    fn string_list(&mut self, f: &Fields, key: &str) -> Option<Vec<String>> {
        let (v, attr, field) = self.value(f, key)?;
        let list = match &v {
            Value::Array(items) => items.iter().map(expr::as_string).collect(),
            _ => None,
        };
        if list.is_none() {
            self.type_error(attr, &field, "a list of strings", &v);
        }
        list
    }

    /// `meta = { k = "v" }` or `meta { k = "v" }`.
    fn string_map(&mut self, f: &Fields, key: &str) -> Option<BTreeMap<String, String>> {
        let field = f.child(key);
        let blocks: Vec<&Block> = f.blocks(key).collect();
        if let Some(attr) = f.attr(key) {
            if let Some(b) = blocks.first() {
                self.error(
                    b.span(),
                    &field,
                    format!("`{key}` is given both as attribute and block"),
                );
            }
            let v = self.eval_attr(attr, &field)?;
            let Value::Object(obj) = &v else {
                self.type_error(attr, &field, "a map of strings", &v);
                return None;
            };
            let mut out = BTreeMap::new();
            for (k, item) in obj {
                match expr::as_string(item) {
                    Some(s) => {
                        out.insert(k.clone(), s);
                    }
                    None => self.type_error(attr, &format!("{field}.{k}"), "a string", item),
                }
            }
            return Some(out);
        }
        if blocks.is_empty() {
            return None;
        }
        let mut out = BTreeMap::new();
        for b in blocks {
            for s in b.body.iter() {
                match s {
                    Structure::Attribute(a) => {
                        let k = a.key.as_str();
                        let item_field = format!("{field}.{k}");
                        let at = self.lines.span(a.value.span());
                        self.spans.record(&item_field, at);
                        if let Some(v) = self.eval_attr(a, &item_field) {
                            match expr::as_string(&v) {
                                Some(s) => {
                                    out.insert(k.to_string(), s);
                                }
                                None => self.type_error(a, &item_field, "a string", &v),
                            }
                        }
                    }
                    Structure::Block(inner) => self.warn(
                        inner.ident.span(),
                        &format!("{field}.{}", inner.ident.as_str()),
                        format!("`{key}` holds only `name = value` pairs; block ignored"),
                    ),
                }
            }
        }
        Some(out)
    }

    /// A driver `config`: attributes as values, nested blocks as objects
    /// (a repeated unlabeled block becomes a list, labels become keys).
    fn json_map(
        &mut self,
        f: &Fields,
        key: &str,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        let field = f.child(key);
        let blocks: Vec<&Block> = f.blocks(key).collect();
        if let Some(attr) = f.attr(key) {
            if let Some(b) = blocks.first() {
                self.error(
                    b.span(),
                    &field,
                    format!("`{key}` is given both as attribute and block"),
                );
            }
            let v = self.eval_attr(attr, &field)?;
            return match expr::to_json(v) {
                serde_json::Value::Object(m) => Some(m),
                other => {
                    self.error(
                        attr.value.span(),
                        &field,
                        format!("expected an object, got {other}"),
                    );
                    None
                }
            };
        }
        let mut blocks = blocks.into_iter();
        let first = blocks.next()?;
        self.enter(first, &field);
        for extra in blocks {
            self.error(
                extra.span(),
                &field,
                format!("only one `{key}` block is allowed here"),
            );
        }
        Some(self.json_body(&first.body, &field))
    }

    fn json_body(&mut self, body: &Body, path: &str) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        let mut repeated: BTreeMap<String, usize> = BTreeMap::new();
        for b in body.blocks().filter(|b| b.labels.is_empty()) {
            *repeated.entry(b.ident.as_str().to_string()).or_default() += 1;
        }
        for s in body.iter() {
            match s {
                Structure::Attribute(a) => {
                    let k = a.key.as_str();
                    let field = format!("{path}.{k}");
                    // A driver's finding about this key points at the key.
                    let at = self.lines.span(a.key.span());
                    self.spans.record(&field, at);
                    if out.contains_key(k) {
                        self.error(a.key.span(), &field, format!("`{k}` is set more than once"));
                        continue;
                    }
                    if let Some(v) = self.eval_attr(a, &field) {
                        out.insert(k.to_string(), expr::to_json(v));
                    }
                }
                Structure::Block(b) => {
                    let k = b.ident.as_str();
                    let field = format!("{path}.{k}");
                    let at = self.lines.span(b.ident.span());
                    self.spans.record(&field, at);
                    let mut value = serde_json::Value::Object(self.json_body(&b.body, &field));
                    for label in b.labels.iter().rev() {
                        let mut m = serde_json::Map::new();
                        m.insert(label.as_str().to_string(), value);
                        value = serde_json::Value::Object(m);
                    }
                    let slot = out.entry(k.to_string());
                    match (slot, value) {
                        (serde_json::map::Entry::Vacant(e), value) => {
                            let many = repeated.get(k).is_some_and(|n| *n > 1);
                            if many {
                                e.insert(serde_json::Value::Array(vec![value]));
                            } else {
                                e.insert(value);
                            }
                        }
                        (serde_json::map::Entry::Occupied(mut e), value) => {
                            match (e.get_mut(), value) {
                                (serde_json::Value::Array(items), value) => items.push(value),
                                (
                                    serde_json::Value::Object(into),
                                    serde_json::Value::Object(from),
                                ) => into.extend(from),
                                _ => self.error(
                                    b.span(),
                                    &field,
                                    format!("`{k}` is given both as attribute and block"),
                                ),
                            }
                        }
                    }
                }
            }
        }
        out
    }

    fn job(&mut self, block: &Block) -> Option<Job> {
        let id = self.label(block, "job")?;
        let path = format!("job.{id}");
        self.enter(block, &path);
        let f = self.fields(
            &block.body,
            &path,
            &["name", "type", "datacenters", "priority", "meta"],
            &["meta", "constraint", "group", "model"],
        );
        let job_type = self.choice(
            &f,
            "type",
            &[
                ("service", JobType::Service),
                ("batch", JobType::Batch),
                ("system", JobType::System),
            ],
        );
        let mut job = Job {
            name: self.string(&f, "name").unwrap_or_else(|| id.clone()),
            id: id.clone(),
            job_type: job_type.unwrap_or_default(),
            datacenters: self
                .string_list(&f, "datacenters")
                .unwrap_or_else(default_datacenters),
            priority: self
                .uint(&f, "priority", 1, 100)
                .and_then(|p| u8::try_from(p).ok())
                .unwrap_or_else(default_priority),
            meta: self.string_map(&f, "meta").unwrap_or_default(),
            constraints: self.constraints(&f),
            update: None,
            groups: Vec::new(),
            version: 0,
            stop: false,
            status: Default::default(),
            submit_time: 0,
            create_index: 0,
            modify_index: 0,
        };
        for b in f.blocks("group") {
            if let Some(g) = self.group(b, &path, &id) {
                job.groups.push(g);
            }
        }
        for b in f.blocks("model") {
            if let Some(g) = self.model(b, &path) {
                job.groups.push(g);
            }
        }
        Some(job)
    }

    fn constraints(&mut self, f: &Fields) -> Vec<Constraint> {
        let blocks: Vec<&Block> = f.blocks("constraint").collect();
        blocks
            .into_iter()
            .enumerate()
            .filter_map(|(i, b)| self.constraint(b, &format!("{}.constraint[{i}]", f.path)))
            .collect()
    }

    fn constraint(&mut self, block: &Block, path: &str) -> Option<Constraint> {
        self.enter(block, path);
        let f = self.fields(
            &block.body,
            path,
            &["attribute", "operator", "value", "distinct_hosts"],
            &[],
        );
        let mut operator = ConstraintOp::Eq;
        if let Some((v, attr, field)) = self.value(&f, "operator") {
            match expr::as_string(&v).and_then(|s| ConstraintOp::parse(&s)) {
                Some(op) => operator = op,
                None => self.type_error(
                    attr,
                    &field,
                    "an operator (=, !=, <, <=, >, >=, regexp, set_contains, is_set, is_not_set, distinct_hosts)",
                    &v,
                ),
            }
        }
        if self.boolean(&f, "distinct_hosts") == Some(true) {
            operator = ConstraintOp::DistinctHosts;
        }
        Some(Constraint {
            attribute: self.string(&f, "attribute").unwrap_or_default(),
            operator,
            value: self.string(&f, "value").unwrap_or_default(),
        })
    }

    fn group(&mut self, block: &Block, job_path: &str, job_id: &str) -> Option<Group> {
        let name = self.label(block, "group")?;
        let path = format!("{job_path}.group.{name}");
        self.enter(block, &path);
        let f = self.fields(
            &block.body,
            &path,
            &["count"],
            &[
                "constraint",
                "network",
                "service",
                "restart",
                "reschedule",
                "task",
            ],
        );
        let mut group = Group {
            count: self.u32(&f, "count").unwrap_or(1),
            constraints: self.constraints(&f),
            network: Network::default(),
            services: Vec::new(),
            restart: RestartPolicy::default(),
            reschedule: ReschedulePolicy::default(),
            update: None,
            tasks: Vec::new(),
            name: name.clone(),
        };
        if let Some(b) = self.single(&f, "network") {
            group.network = self.network(b, &f.child("network"));
        }
        if let Some(b) = self.single(&f, "restart") {
            group.restart = self.restart(b, &f.child("restart"));
        }
        if let Some(b) = self.single(&f, "reschedule") {
            group.reschedule = self.reschedule(b, &f.child("reschedule"));
        }
        let default_service = format!("{job_id}-{name}");
        for b in f.blocks("service") {
            let at = format!("{path}.service[{}]", group.services.len());
            let s = self.service(b, &at, &default_service);
            group.services.push(s);
        }
        for b in f.blocks("task") {
            let Some((task, services)) = self.task(b, &path) else {
                continue;
            };
            // Services written inside a task (Nomad allows both) are the group's here.
            let default_service = format!("{job_id}-{name}-{}", task.name);
            for s in services {
                let at = format!("{path}.service[{}]", group.services.len());
                let s = self.service(s, &at, &default_service);
                group.services.push(s);
            }
            group.tasks.push(task);
        }
        Some(group)
    }

    fn network(&mut self, block: &Block, path: &str) -> Network {
        self.enter(block, path);
        let f = self.fields(&block.body, path, &[], &["port"]);
        let mut network = Network::default();
        for b in f.blocks("port") {
            let Some(label) = self.label(b, "port") else {
                continue;
            };
            let at = format!("{path}.port.{label}");
            self.enter(b, &at);
            let pf = self.fields(&b.body, &at, &["static", "to"], &[]);
            network.ports.push(PortSpec {
                static_port: self.port(&pf, "static"),
                to: self.port(&pf, "to"),
                label,
            });
        }
        network
    }

    fn service(&mut self, block: &Block, path: &str, default_name: &str) -> Service {
        self.enter(block, path);
        let f = self.fields(
            &block.body,
            path,
            &["name", "port", "tags", "shutdown_delay"],
            &["check", "publish", "check_restart"],
        );
        let publish = match self.single(&f, "publish") {
            Some(b) => self.publish(b, &f.child("publish")),
            None => None,
        };
        let service_restart = match self.single(&f, "check_restart") {
            Some(b) => self.check_restart(b, &f.child("check_restart")),
            None => None,
        };
        let mut service = Service {
            name: self
                .string(&f, "name")
                .unwrap_or_else(|| default_name.to_string()),
            port: self.string(&f, "port"),
            tags: self.string_list(&f, "tags").unwrap_or_default(),
            checks: Vec::new(),
            publish,
            shutdown_delay: self
                .duration(&f, "shutdown_delay")
                .unwrap_or(Duration::ZERO),
        };
        for (i, b) in f.blocks("check").enumerate() {
            if let Some(mut c) = self.check(b, &format!("{path}.check[{i}]")) {
                // Nomad allows `check_restart` on the service for all its checks.
                if c.check_restart.is_none() {
                    c.check_restart = service_restart;
                }
                service.checks.push(c);
            }
        }
        service
    }

    fn publish(&mut self, block: &Block, path: &str) -> Option<Publish> {
        self.enter(block, path);
        let f = self.fields(
            &block.body,
            path,
            &[
                "port",
                "protocol",
                "host",
                "hosts",
                "path",
                "balance",
                "proxy_protocol",
            ],
            &["tls"],
        );
        let Some(port) = self.port(&f, "port") else {
            self.error(block.span(), &f.child("port"), "publish needs a `port`");
            return None;
        };
        let mut hosts = self.string_list(&f, "hosts").unwrap_or_default();
        if let Some(h) = self.string(&f, "host") {
            hosts.push(h);
        }
        let tls = match self.single(&f, "tls") {
            Some(b) => {
                let at = f.child("tls");
                self.enter(b, &at);
                let tf = self.fields(&b.body, &at, &["cert_file", "key_file"], &[]);
                match (self.string(&tf, "cert_file"), self.string(&tf, "key_file")) {
                    (Some(cert_file), Some(key_file)) => Some(PublishTls {
                        cert_file,
                        key_file,
                    }),
                    _ => {
                        self.error(b.span(), &at, "tls needs `cert_file` and `key_file`");
                        None
                    }
                }
            }
            None => None,
        };
        Some(Publish {
            port,
            protocol: self
                .choice(
                    &f,
                    "protocol",
                    &[
                        ("tcp", PublishProtocol::Tcp),
                        ("http", PublishProtocol::Http),
                    ],
                )
                .unwrap_or_default(),
            hosts,
            path_prefix: self.string(&f, "path"),
            balance: self
                .choice(
                    &f,
                    "balance",
                    &[
                        ("round_robin", Balance::RoundRobin),
                        ("least_conn", Balance::LeastConn),
                        ("p2c", Balance::P2c),
                    ],
                )
                .unwrap_or_default(),
            proxy_protocol: self.boolean(&f, "proxy_protocol").unwrap_or(false),
            tls,
        })
    }

    fn check_restart(&mut self, block: &Block, path: &str) -> Option<CheckRestart> {
        self.enter(block, path);
        let f = self.fields(&block.body, path, &["limit", "grace"], &[]);
        Some(CheckRestart {
            limit: self.u32(&f, "limit").unwrap_or(3),
            grace: self.duration(&f, "grace").unwrap_or(Duration::from_secs(1)),
        })
    }

    fn check(&mut self, block: &Block, path: &str) -> Option<Check> {
        self.enter(block, path);
        let f = self.fields(
            &block.body,
            path,
            &["name", "type", "path", "port", "interval", "timeout"],
            &["check_restart"],
        );
        let check_restart = match self.single(&f, "check_restart") {
            Some(b) => self.check_restart(b, &f.child("check_restart")),
            None => None,
        };
        let check_type = if f.attr("type").is_some() {
            self.choice(
                &f,
                "type",
                &[("http", CheckType::Http), ("tcp", CheckType::Tcp)],
            )
        } else {
            self.error(
                block.span(),
                &f.child("type"),
                "check needs a `type` (\"http\" or \"tcp\")",
            );
            None
        };
        let check = Check {
            name: self.string(&f, "name").unwrap_or_default(),
            check_type: check_type.unwrap_or(CheckType::Tcp),
            path: self.string(&f, "path"),
            port: self.string(&f, "port"),
            interval: self
                .duration(&f, "interval")
                .unwrap_or(Duration::from_secs(10)),
            timeout: self
                .duration(&f, "timeout")
                .unwrap_or(Duration::from_secs(2)),
            check_restart,
        };
        check_type.map(|_| check)
    }

    fn restart(&mut self, block: &Block, path: &str) -> RestartPolicy {
        self.enter(block, path);
        let f = self.fields(
            &block.body,
            path,
            &["attempts", "interval", "delay", "mode"],
            &[],
        );
        let d = RestartPolicy::default();
        RestartPolicy {
            attempts: self.u32(&f, "attempts").unwrap_or(d.attempts),
            interval: self.duration(&f, "interval").unwrap_or(d.interval),
            delay: self.duration(&f, "delay").unwrap_or(d.delay),
            mode: self
                .choice(
                    &f,
                    "mode",
                    &[("fail", RestartMode::Fail), ("delay", RestartMode::Delay)],
                )
                .unwrap_or(d.mode),
        }
    }

    fn reschedule(&mut self, block: &Block, path: &str) -> ReschedulePolicy {
        self.enter(block, path);
        let f = self.fields(
            &block.body,
            path,
            &["attempts", "interval", "delay", "unlimited"],
            &[],
        );
        let d = ReschedulePolicy::default();
        ReschedulePolicy {
            attempts: self.u32(&f, "attempts").unwrap_or(d.attempts),
            interval: self.duration(&f, "interval").unwrap_or(d.interval),
            delay: self.duration(&f, "delay").unwrap_or(d.delay),
            unlimited: self.boolean(&f, "unlimited").unwrap_or(d.unlimited),
        }
    }

    /// A task and the `service` blocks written inside it.
    fn task<'b>(&mut self, block: &'b Block, group_path: &str) -> Option<(Task, Vec<&'b Block>)> {
        let name = self.label(block, "task")?;
        let path = format!("{group_path}.task.{name}");
        self.enter(block, &path);
        let f = self.fields(
            &block.body,
            &path,
            &["driver", "kill_timeout", "config", "env"],
            &["config", "env", "resources", "service"],
        );
        let mut resources = Resources::default();
        if let Some(b) = self.single(&f, "resources") {
            let at = f.child("resources");
            self.enter(b, &at);
            let rf = self.fields(&b.body, &at, &["cpu", "memory"], &[]);
            resources.cpu = self.u32(&rf, "cpu").unwrap_or(resources.cpu);
            resources.memory = self.u32(&rf, "memory").unwrap_or(resources.memory);
        }
        let task = Task {
            driver: self.string(&f, "driver").unwrap_or_default(),
            config: self.json_map(&f, "config").unwrap_or_default(),
            env: self.string_map(&f, "env").unwrap_or_default(),
            resources,
            kill_timeout: self
                .duration(&f, "kill_timeout")
                .unwrap_or(Duration::from_secs(5)),
            name,
        };
        Some((task, f.blocks("service").collect()))
    }
}
