//! Errors of the DNS service.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("invalid dns domain {domain:?}: {reason}")]
    InvalidDomain { domain: String, reason: String },
    #[error("bind dns {proto} socket on {addr}: {source}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("start dns udp thread: {source}")]
    Runtime {
        #[source]
        source: std::io::Error,
    },
    #[error("forward to upstream {upstream}: {reason}")]
    Upstream {
        upstream: SocketAddr,
        reason: String,
    },
    #[error("invalid address block {cidr:?}: {reason}")]
    InvalidCidr { cidr: String, reason: String },
    #[error("no upstream resolver configured")]
    NoUpstream,
}
