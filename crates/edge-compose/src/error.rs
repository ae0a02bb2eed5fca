//! What can go wrong reading a Compose project, each naming the file, the
//! line and the key it is about.

use std::fmt;

/// Where in the project a problem is: the file, the line and column when
/// known, and the key path (`services.web.ports[1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Where {
    pub file: String,
    pub line: Option<(usize, usize)>,
    pub path: String,
}

impl fmt::Display for Where {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, col)) = self.line {
            write!(f, ":{line}:{col}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        Ok(())
    }
}

/// A key edge takes but does not act on as Compose would; `up` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub at: Where,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("no Compose file in {dir}: looked for {names}; name one with -f")]
    NoFile { dir: String, names: String },
    #[error("{file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{at}: {message}")]
    At { at: Where, message: String },
    #[error("project name {name:?} {why}")]
    ProjectName { name: String, why: String },
}

impl ComposeError {
    pub fn at(at: Where, message: impl Into<String>) -> ComposeError {
        ComposeError::At {
            at,
            message: message.into(),
        }
    }
}
