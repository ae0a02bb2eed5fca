//! Named network namespaces under `/run/netns`, made and removed by
//! iproute2's `ip netns` (which also sets up the shared mount they are
//! bound on, the part that is easy to get wrong by hand).

use crate::error::NetError;
use std::path::{Path, PathBuf};

pub(crate) const DIR: &str = "/run/netns";

pub(crate) fn path(name: &str) -> PathBuf {
    Path::new(DIR).join(name)
}

pub(crate) async fn ip(args: &[&str]) -> Result<(), NetError> {
    crate::command::run("ip", args).await.map(drop)
}

pub(crate) async fn add(name: &str) -> Result<PathBuf, NetError> {
    ip(&["netns", "add", name]).await?;
    Ok(path(name))
}

/// Removes the namespace; one that is already gone is no error.
pub(crate) async fn delete(name: &str) -> Result<(), NetError> {
    if !path(name).exists() {
        return Ok(());
    }
    ip(&["netns", "delete", name]).await
}

/// Inside namespace `name`, sends DNS (UDP and TCP port 53) addressed to
/// the gateway on to `dns`: resolv.conf takes no port, and the node's DNS
/// listens on its own. The rules live and die with the namespace.
pub(crate) async fn redirect_dns(
    name: &str,
    gateway: std::net::Ipv4Addr,
    dns: std::net::SocketAddrV4,
) -> Result<(), NetError> {
    let lines: Vec<String> = ["udp", "tcp"]
        .iter()
        .map(|proto| {
            format!(
                "-A OUTPUT -d {gateway}/32 -p {proto} -m {proto} --dport 53 -j DNAT --to-destination {dns}"
            )
        })
        .collect();
    crate::rules::restore(Some(name), "nat", &lines).await
}
