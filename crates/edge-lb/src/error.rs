//! Why the load balancer could not serve a published port; rendered into
//! `LbHandle::errors` so operators see conflicts and bad certificates.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LbError {
    #[error("starting load balancer threads: {source}")]
    Workers {
        #[source]
        source: io::Error,
    },
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error(
        "port {port} is {owner_protocol} for service {owner}; service {service} ({protocol}) ignored"
    )]
    ProtocolConflict {
        port: u16,
        owner: String,
        owner_protocol: &'static str,
        service: String,
        protocol: &'static str,
    },
    #[error("tcp port {port} belongs to service {owner}; service {service} ignored")]
    TcpConflict {
        port: u16,
        owner: String,
        service: String,
    },
    #[error("udp port {port} belongs to service {owner}; service {service} ignored")]
    UdpConflict {
        port: u16,
        owner: String,
        service: String,
    },
    #[error(
        "port {port}: service {service} routes host {host:?} path {prefix:?} like service {owner}; ignored"
    )]
    RouteConflict {
        port: u16,
        owner: String,
        service: String,
        host: String,
        prefix: String,
    },
    #[error(
        "port {port}: tls is {owner_tls} for service {owner} but not for service {service}; service {service} ignored"
    )]
    TlsMismatch {
        port: u16,
        owner: String,
        owner_tls: &'static str,
        service: String,
    },
    #[error("service {service}: bad host pattern {host:?}")]
    HostPattern { service: String, host: String },
    #[error("service {service}: instance {alloc_id} has unusable address {address:?}")]
    Address {
        service: String,
        alloc_id: String,
        address: String,
    },
    #[error("port {port}: reading tls file {path}: {message}")]
    TlsFile {
        port: u16,
        path: PathBuf,
        message: String,
    },
    #[error("port {port}: tls certificate {cert} does not match key {key}: {message}")]
    TlsKey {
        port: u16,
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
    #[error("port {port}: tls configuration: {source}")]
    TlsConfig {
        port: u16,
        #[source]
        source: rustls::Error,
    },
}
