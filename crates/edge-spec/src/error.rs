//! Errors of job file parsing and validation, each naming where it happened.

use std::fmt;

/// A place in a job file, 1-based.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

/// One finding about a job file: `file:line:col: field: message`, or just
/// `field: message` when it has no file (a job submitted through the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub location: Location,
    /// Dotted path of the field, e.g. `job.web.group.app.task.server.driver`.
    pub field: String,
    pub message: String,
}

impl Diagnostic {
    /// A finding with no place in a file yet.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            location: Location::default(),
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn at(mut self, location: Location) -> Diagnostic {
        self.location = location;
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.location.file.is_empty() {
            write!(f, "{}: ", self.location)?;
        }
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Every problem found in a job, in file order, and the warnings found
    /// beside them, so a caller can show both.
    #[error("{}", .errors.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid {
        errors: Vec<Diagnostic>,
        warnings: Vec<Diagnostic>,
    },
    /// A job id, group or task name that must not become a path.
    #[error("{kind} {name:?} {reason}")]
    InvalidName {
        kind: &'static str,
        name: String,
        reason: String,
    },
    #[error("invalid subnet {subnet:?}: {reason}")]
    Subnet { subnet: String, reason: String },
}

impl SpecError {
    /// Errors without warnings.
    pub fn invalid(errors: Vec<Diagnostic>) -> SpecError {
        SpecError::Invalid {
            errors,
            warnings: Vec::new(),
        }
    }

    /// The warnings found beside the errors (unknown or meaningless keys).
    pub fn warnings(&self) -> &[Diagnostic] {
        match self {
            SpecError::Invalid { warnings, .. } => warnings,
            SpecError::InvalidName { .. } | SpecError::Subnet { .. } => &[],
        }
    }

    /// The findings behind the error; none for a single bad name, which has
    /// no field path.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            SpecError::Invalid { errors, .. } => errors,
            SpecError::InvalidName { .. } | SpecError::Subnet { .. } => &[],
        }
    }
}

/// The HCL reader's deserializer reports through the crate's one error type:
/// a finding with only a message, placed by the reader from serde's path.
impl serde::de::Error for SpecError {
    fn custom<T: fmt::Display>(msg: T) -> SpecError {
        SpecError::invalid(vec![Diagnostic::new("", msg.to_string())])
    }
}
