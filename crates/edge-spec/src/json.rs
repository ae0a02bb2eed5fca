//! JSON job files: the serde form of [`Job`], bare or as `{"job": {...}}`,
//! with errors naming line, column and field path.

use crate::error::{Diagnostic, Location, SpecError};
use crate::job::Job;
use crate::parse::{self, Parsed, SpanMap};
use crate::validate::DriverConfigs;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wrapped {
    job: Job,
}

/// Parses and validates a JSON job.
pub fn parse_json(src: &str, filename: &str) -> Result<Parsed, SpecError> {
    parse_json_with(src, filename, &DriverConfigs::default())
}

/// [`parse_json`], with driver `config` blocks checked by `configs`.
pub(crate) fn parse_json_with(
    src: &str,
    filename: &str,
    configs: &DriverConfigs,
) -> Result<Parsed, SpecError> {
    let wrapped = match serde_json::from_str::<serde_json::Value>(src) {
        Ok(serde_json::Value::Object(m)) => m.len() == 1 && m.contains_key("job"),
        Ok(_) => {
            return Err(invalid(
                filename,
                1,
                1,
                "",
                "expected a JSON object holding a job",
            ));
        }
        Err(e) => return Err(from_serde(filename, &e, "")),
    };
    // Both forms name fields from `job.`, e.g. `job.groups[0].tasks[0].driver`.
    let job = if wrapped {
        decode::<Wrapped>(src, filename, "")?.job
    } else {
        decode::<Job>(src, filename, "job.")?
    };
    let file = Location {
        file: filename.to_string(),
        line: 0,
        column: 0,
    };
    parse::finish(
        job,
        Vec::new(),
        Vec::new(),
        &SpanMap::default(),
        &file,
        configs,
    )
}

fn decode<'de, T: Deserialize<'de>>(
    src: &'de str,
    filename: &str,
    prefix: &str,
) -> Result<T, SpecError> {
    let mut de = serde_json::Deserializer::from_str(src);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            prefix.trim_end_matches('.').to_string()
        } else {
            format!("{prefix}{path}")
        };
        from_serde(filename, e.inner(), &field)
    })
}

fn from_serde(filename: &str, e: &serde_json::Error, field: &str) -> SpecError {
    let text = e.to_string();
    // serde_json appends the position, which the diagnostic carries anyway.
    let message = match text.rsplit_once(" at line ") {
        Some((m, _)) => m.to_string(),
        None => text,
    };
    invalid(filename, e.line(), e.column(), field, &message)
}

fn invalid(filename: &str, line: usize, column: usize, field: &str, message: &str) -> SpecError {
    SpecError::invalid(vec![Diagnostic::new(field, message).at(Location {
        file: filename.to_string(),
        line,
        column,
    })])
}
