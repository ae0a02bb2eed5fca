//! Entry points shared by the HCL and JSON readers: options, result, format
//! detection, and the step that validates a decoded job and places every
//! finding at a line and column of the file.

use crate::error::{Diagnostic, Location, SpecError};
use crate::job::Job;
use crate::validate::DriverConfigs;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Arc;

/// What the caller knows about the file besides its text.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// Shown in every diagnostic; `.json` selects the JSON reader.
    pub filename: String,
    /// `-var name=value`, raw text converted to the variable's declared type.
    pub vars: BTreeMap<String, String>,
    /// `-var-file`: (file name, contents), HCL `name = value` lines, applied in order.
    pub var_files: Vec<(String, String)>,
    /// The drivers' checks of task `config` blocks; none by default.
    pub driver_configs: DriverConfigs,
    /// Reads the files the job file names (`env_file`); none by default.
    pub files: Files,
}

/// What reads a file a job file names, by the name written there. The spec
/// crate does no IO: the caller decides where names resolve (the CLI:
/// beside the job file) and what may be read.
#[derive(Clone, Default)]
pub struct Files(Option<Arc<FileReader>>);

type FileReader = dyn Fn(&str) -> Result<String, String> + Send + Sync;

impl Files {
    pub fn new(read: impl Fn(&str) -> Result<String, String> + Send + Sync + 'static) -> Files {
        Files(Some(Arc::new(read)))
    }

    /// The file's text; `None` when this parse has no files to read.
    pub(crate) fn read(&self, name: &str) -> Option<Result<String, String>> {
        self.0.as_ref().map(|f| f(name))
    }
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Files(reader)"
        } else {
            "Files(none)"
        })
    }
}

impl ParseOptions {
    pub fn new(filename: impl Into<String>) -> ParseOptions {
        ParseOptions {
            filename: filename.into(),
            ..ParseOptions::default()
        }
    }
}

/// A decoded, valid job and what was worth telling the user about it.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub job: Job,
    /// Unknown attributes and blocks, ignored but reported.
    pub warnings: Vec<Diagnostic>,
}

/// Reads a job file: JSON when the name ends in `.json` or the text starts
/// with `{`, HCL otherwise.
pub fn parse_job_file(src: &str, opts: &ParseOptions) -> Result<Parsed, SpecError> {
    let looks_json = opts.filename.ends_with(".json") || src.trim_start().starts_with('{');
    if looks_json {
        crate::json::parse_json_with(src, &opts.filename, &opts.driver_configs)
    } else {
        crate::hcl::parse_hcl(src, opts)
    }
}

/// Byte offsets to 1-based line and column (in characters) of one file.
pub(crate) struct LineIndex<'a> {
    file: &'a str,
    src: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(file: &'a str, src: &'a str) -> LineIndex<'a> {
        let starts = std::iter::once(0)
            .chain(src.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { file, src, starts }
    }

    /// The HCL body of the source, or its syntax error at its line and
    /// column.
    pub(crate) fn parse_body(&self) -> Result<hcl_edit::structure::Body, SpecError> {
        hcl_edit::parser::parse_body(self.src).map_err(|e| {
            let loc = e.location();
            let mut at = self.location(loc.offset());
            at.line = loc.line();
            at.column = loc.column();
            SpecError::invalid(vec![
                Diagnostic::new(
                    "",
                    format!("syntax error: {} (in `{}`)", e.message(), e.line().trim()),
                )
                .at(at),
            ])
        })
    }

    pub(crate) fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.src.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let column = self
            .src
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        Location {
            file: self.file.to_string(),
            line,
            column,
        }
    }

    /// Where a node starts, or just the file when the node has no span.
    pub(crate) fn span(&self, span: Option<Range<usize>>) -> Location {
        match span {
            Some(r) => self.location(r.start),
            None => self.file_only(),
        }
    }

    pub(crate) fn file_only(&self) -> Location {
        Location {
            file: self.file.to_string(),
            line: 0,
            column: 0,
        }
    }
}

/// Field path → where that field was written. Validation works on the decoded
/// `Job` and knows only paths; this puts its findings back into the file.
#[derive(Debug, Default)]
pub(crate) struct SpanMap {
    map: BTreeMap<String, Location>,
}

impl SpanMap {
    /// The last writer wins, so a duplicate (group, task, port) points at the
    /// second occurrence, the one to remove.
    pub(crate) fn record(&mut self, path: &str, location: Location) {
        self.map.insert(path.to_string(), location);
    }

    /// The location of `path`, or of its nearest recorded parent: a missing
    /// `driver` is reported at its `task` block.
    pub(crate) fn lookup(&self, path: &str) -> Option<&Location> {
        let mut p = path;
        loop {
            if let Some(l) = self.map.get(p) {
                return Some(l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

/// Runs validation on a decoded job and merges its findings with the decoder's:
/// a field the decoder already complained about is not reported twice. A job
/// without a `name` is named by its id, whichever reader decoded it.
pub(crate) fn finish(
    mut job: Job,
    mut errors: Vec<Diagnostic>,
    mut warnings: Vec<Diagnostic>,
    spans: &SpanMap,
    fallback: &Location,
    configs: &DriverConfigs,
) -> Result<Parsed, SpecError> {
    if job.name.is_empty() {
        job.name = job.id.clone();
    }
    for d in crate::docker::adopt(&mut job) {
        let location = spans.lookup(&d.field).unwrap_or(fallback).clone();
        warnings.push(d.at(location));
    }
    let seen: BTreeSet<String> = errors.iter().map(|d| d.field.clone()).collect();
    for d in crate::validate::validate_with(&job, configs) {
        if seen.contains(&d.field) {
            continue;
        }
        let location = spans.lookup(&d.field).unwrap_or(fallback).clone();
        errors.push(d.at(location));
    }
    if errors.is_empty() {
        Ok(Parsed { job, warnings })
    } else {
        sort(&mut errors);
        Err(SpecError::Invalid { errors, warnings })
    }
}

pub(crate) fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| {
        (a.location.line, a.location.column).cmp(&(b.location.line, b.location.column))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_characters_not_bytes() {
        let src = "a = 1\n  é = \"x\"\nlast";
        let lines = LineIndex::new("f.hcl", src);
        let at = |o| {
            let l = lines.location(o);
            (l.line, l.column)
        };
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(6), (2, 1));
        let after_e = src.find(" = \"x").expect("present");
        assert_eq!(at(after_e), (2, 4));
        assert_eq!(at(src.len()), (3, 5));
    }

    #[test]
    fn span_map_falls_back_to_nearest_parent() {
        let mut spans = SpanMap::default();
        let loc = |line| Location {
            file: "f".into(),
            line,
            column: 1,
        };
        spans.record("job.a.b", loc(1));
        spans.record("job.a.b.group.g", loc(2));
        spans.record("job.a.b.group.g", loc(9));
        assert_eq!(
            spans.lookup("job.a.b.group.g.service[0].check[1].path"),
            Some(&loc(9))
        );
        assert_eq!(spans.lookup("job.a.b.priority"), Some(&loc(1)));
        assert_eq!(spans.lookup("var.x"), None);
    }

    #[test]
    fn diagnostic_display_with_and_without_file() {
        let d = Diagnostic::new("job.x.priority", "too high");
        assert_eq!(d.to_string(), "job.x.priority: too high");
        let d = d.at(Location {
            file: "a.hcl".into(),
            line: 3,
            column: 7,
        });
        assert_eq!(d.to_string(), "a.hcl:3:7: job.x.priority: too high");
        let d = Diagnostic::new("", "syntax error").at(Location {
            file: "a.json".into(),
            line: 0,
            column: 0,
        });
        assert_eq!(d.to_string(), "a.json: syntax error");
    }
}
