//! Errors a driver reports to the agent.

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("invalid task config: {field}: {message}")]
    Config { field: String, message: String },
    #[error("task {task_id} not found")]
    NotFound { task_id: String },
    #[error("driver {driver} is not available: {reason}")]
    Unavailable { driver: String, reason: String },
    #[error("{action} failed: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("driver {driver} cannot exec: {reason}")]
    ExecUnsupported { driver: String, reason: String },
    #[error("cannot run {command:?}: {source}")]
    Exec {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl DriverError {
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> DriverError {
        DriverError::Config {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn io(action: impl Into<String>, source: std::io::Error) -> DriverError {
        DriverError::Io {
            action: action.into(),
            source,
        }
    }
}
