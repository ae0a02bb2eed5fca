//! Decoding of the `model "NAME" { ... }` block into a [`ModelSpec`] and its
//! expansion into a group (see [`crate::model`]).

use super::Decoder;
use crate::job::{Group, Resources};
use crate::model::{ModelSpec, expand, is_url};
use hcl_edit::Span;
use hcl_edit::structure::Block;
use std::path::Path;

impl Decoder<'_> {
    pub(super) fn model(&mut self, block: &Block, job_path: &str) -> Option<Group> {
        let name = self.label(block, "model")?;
        let path = format!("{job_path}.model.{name}");
        self.enter(block, &path);
        // Validation of the expanded group reports on `group.NAME...` paths.
        self.enter(block, &format!("{job_path}.group.{name}"));
        let f = self.fields(
            &block.body,
            &path,
            &["source", "sha256", "format", "count", "port"],
            &["resources", "batching", "service"],
        );
        // After an error the group is still made, so the job does not also
        // read as having no groups; the parse fails on the error anyway.
        let mut spec = ModelSpec::new(name, String::new());
        match self.string(&f, "source") {
            Some(s) if !s.trim().is_empty() => spec.source = self.resolve(s.trim()),
            Some(_) => {
                let span = f.attr("source").and_then(|a| a.value.span());
                self.error(span, &f.child("source"), "must not be empty");
            }
            None if f.attr("source").is_none() => self.error(
                block.span(),
                &f.child("source"),
                "model needs a `source`: a path on the node or an http(s) URL",
            ),
            None => {}
        }
        if let Some((v, attr, field)) = self.value(&f, "sha256") {
            match super::expr::as_string(&v) {
                Some(s) if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) => {
                    spec.sha256 = Some(s.to_ascii_lowercase());
                }
                _ => self.type_error(attr, &field, "a sha256 of 64 hexadecimal digits", &v),
            }
        } else if is_url(&spec.source) && f.attr("sha256").is_none() {
            let span = f.attr("source").and_then(|a| a.value.span());
            self.error(
                span,
                &f.child("sha256"),
                "is required when the source is a URL, to check the download",
            );
        }
        if let Some(fmt) = self.choice(&f, "format", &[("onnx", "onnx")]) {
            spec.format = fmt.to_string();
        }
        spec.count = self.u32(&f, "count").unwrap_or(1);
        spec.port = self.port(&f, "port");
        if let Some(b) = self.single(&f, "resources") {
            let at = f.child("resources");
            self.enter(b, &at);
            let rf = self.fields(&b.body, &at, &["cpu", "memory"], &[]);
            let d = Resources::default();
            spec.resources.cpu = self.u32(&rf, "cpu").unwrap_or(d.cpu);
            spec.resources.memory = self.u32(&rf, "memory").unwrap_or(d.memory);
        }
        if let Some(b) = self.single(&f, "batching") {
            let at = f.child("batching");
            self.enter(b, &at);
            let bf = self.fields(&b.body, &at, &["max_batch_size", "max_delay"], &[]);
            if let Some(n) = self.uint(&bf, "max_batch_size", 1, 65_536) {
                spec.max_batch_size = u32::try_from(n).unwrap_or(u32::MAX);
            }
            if let Some(d) = self.duration(&bf, "max_delay") {
                spec.max_delay = d;
            }
        }
        if let Some(b) = self.single(&f, "service") {
            let at = f.child("service");
            self.enter(b, &at);
            let sf = self.fields(&b.body, &at, &["name", "tags"], &["publish"]);
            spec.service_name = self.string(&sf, "name");
            spec.tags = self.string_list(&sf, "tags").unwrap_or_default();
            if let Some(p) = self.single(&sf, "publish") {
                let at = sf.child("publish");
                self.enter(p, &at);
                let pf = self.fields(&p.body, &at, &["port"], &[]);
                spec.publish_port = self.port(&pf, "port");
                if pf.attr("port").is_none() {
                    self.error(p.span(), &pf.child("port"), "publish needs a `port`");
                }
            }
        }
        match expand(&spec) {
            Ok(g) => Some(g),
            Err(e) => {
                self.error(block.span(), &path, e);
                None
            }
        }
    }

    /// A relative model path is relative to the job file's directory.
    fn resolve(&self, source: &str) -> String {
        if is_url(source) || Path::new(source).is_absolute() {
            return source.to_string();
        }
        let file = self.lines.file_only().file;
        match Path::new(&file).parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(source).display().to_string(),
            _ => source.to_string(),
        }
    }
}
