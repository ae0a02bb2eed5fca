//! The HTTP API of edge as Rust types, and the client the CLI and the agent
//! use to speak it. The server's handlers serialize exactly these types.

pub mod catalog;
pub mod client;
pub mod error;
pub mod exec;
pub mod listen;
pub mod schema;
pub mod tls;
pub mod types;

pub use client::{Client, QueryMeta, QueryOptions};
pub use error::ApiError;
pub use types::*;

/// Header carrying the store index a response reflects.
pub const INDEX_HEADER: &str = "x-edge-index";
/// Header carrying the join token (agents) or an API token.
pub const TOKEN_HEADER: &str = "x-edge-token";
/// The default API address of a server.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:4646";
