//! Errors of the scheduler's inputs: a configuration or a constraint it cannot use.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SchedError {
    #[error("invalid dynamic port range {min}-{max}: the minimum is above the maximum")]
    BadPortRange { min: u16, max: u16 },
    #[error("constraint {attribute} regexp {pattern}: invalid regexp: {reason}")]
    BadRegexp {
        attribute: String,
        pattern: String,
        reason: String,
    },
}
