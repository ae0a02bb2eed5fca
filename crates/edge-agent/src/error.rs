//! Errors of the agent, with the path or peer they concern.

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt local state {path}: {source}")]
    State {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot bind agent http address {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} is {bytes} bytes, over the limit of {limit}")]
    TooLarge {
        what: &'static str,
        bytes: usize,
        limit: usize,
    },
    #[error("{flag}: {message}")]
    Config { flag: &'static str, message: String },
    #[error("server refused the agent: {0}")]
    Refused(String),
    #[error(transparent)]
    Api(#[from] edge_api::ApiError),
}

impl AgentError {
    pub fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> AgentError {
        AgentError::Io {
            action,
            path: path.display().to_string(),
            source,
        }
    }
}
