//! The `model "NAME" { ... }` block: decoded into a [`ModelBlock`], checked,
//! and expanded into a group (see [`crate::model`]).

use super::Decoder;
use crate::job::Group;
use crate::model::{ModelBlock, expand, is_url};
use hcl_edit::Span;
use hcl_edit::structure::Block;
use std::path::Path;

impl Decoder<'_> {
    pub(super) fn model(&mut self, block: &Block, job_field: &str) -> Option<Group> {
        let name = self.label(block, "model")?;
        let field = format!("{job_field}.model.{name}");
        // Validation of the expanded group reports on `group.NAME...` paths.
        let at = self.lines.span(block.span());
        self.spans.record(&format!("{job_field}.group.{name}"), at);
        let node = self.object("model", block, &field, false);
        // After an error the group is still made, so the job does not also
        // read as having no groups; the parse fails on the error anyway.
        let mut spec: ModelBlock = self.decode(node)?;
        for (f, message) in spec.problems(&name) {
            self.finding(format!("{field}.{f}"), message);
        }
        if !spec.source.trim().is_empty() {
            spec.source = self.resolve(spec.source.trim());
        }
        for m in &mut spec.models {
            if !m.source.trim().is_empty() {
                m.source = self.resolve(m.source.trim());
            }
        }
        match expand(&spec.into_spec(name)) {
            Ok(g) => Some(g),
            Err(e) => {
                self.error(block.span(), &field, e);
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
