//! The node's names and traffic: starts the service DNS and the load
//! balancer (routing mesh) from the agent's catalog watch.

use anyhow::Context;
use clap::Args;
use edge_api::Catalog;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Args, Debug, Clone)]
pub struct MeshArgs {
    /// Port of the node's DNS server for `*.service.edge` (UDP and TCP, on
    /// --advertise, and on the default bridge's address when --advertise is
    /// loopback, for bridge-mode allocations); 0 turns it off.
    #[arg(long, default_value_t = 8600)]
    pub dns_port: u16,
    /// Where other names are forwarded (default: /etc/resolv.conf), repeatable.
    #[arg(long = "dns-upstream")]
    pub dns_upstreams: Vec<SocketAddr>,
    /// Clients, besides this node itself, whose names outside
    /// `service.edge` are forwarded (CIDR, e.g. 10.0.0.0/8), repeatable;
    /// others get REFUSED for them.
    #[arg(long = "dns-allow", value_parser = parse_cidr)]
    pub dns_allow: Vec<edge_dns::Cidr>,
    /// Address the load balancer listens on for published ports (default: --advertise).
    #[arg(long)]
    pub lb_bind: Option<IpAddr>,
    /// Threads the load balancer accepts and proxies on (default: one per CPU).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub lb_threads: Option<u16>,
    /// Connections each published port holds open at once; more wait in
    /// the kernel's accept queue until one closes, so clients of one port
    /// cannot use up the descriptors the agent and its tasks need.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub lb_max_connections: u32,
    /// Do not run the load balancer on this node.
    #[arg(long)]
    pub no_lb: bool,
    /// More addresses the DNS answers on (the default bridge's, for a
    /// node whose own address is loopback); set by the agent's wiring.
    #[arg(skip)]
    pub dns_also: Vec<IpAddr>,
}

fn parse_cidr(s: &str) -> Result<edge_dns::Cidr, String> {
    s.parse().map_err(|e: edge_dns::DnsError| e.to_string())
}

impl MeshArgs {
    pub fn dns_addr(&self, address: &str) -> Option<SocketAddr> {
        let ip: IpAddr = address.parse().ok()?;
        (self.dns_port != 0).then(|| SocketAddr::new(ip, self.dns_port))
    }
}

pub struct Mesh {
    dns: Option<edge_dns::DnsHandle>,
    lb: Option<edge_lb::LbHandle>,
}

impl Mesh {
    pub async fn shutdown(self) {
        if let Some(d) = self.dns {
            d.shutdown().await;
        }
        if let Some(l) = self.lb {
            l.shutdown().await;
        }
    }
}

pub async fn start(
    a: &MeshArgs,
    address: &str,
    catalog: watch::Receiver<Arc<Catalog>>,
) -> anyhow::Result<Mesh> {
    let ip: IpAddr = address
        .parse()
        .with_context(|| format!("--advertise {address:?} is not an IP address"))?;
    let dns = match a.dns_addr(address) {
        Some(listen) => {
            let cfg = edge_dns::DnsConfig {
                listen,
                domain: "service.edge".to_string(),
                lb_address: a.lb_bind.filter(|b| !b.is_unspecified()).unwrap_or(ip),
                upstreams: a.dns_upstreams.clone(),
                ttl: 5,
                forward_allow: a.dns_allow.clone(),
                own_addresses: vec![ip],
                also_listen: a.dns_also.clone(),
            };
            // Workloads matter more than names: without its DNS port the
            // node still runs tasks, and says why names do not resolve.
            match edge_dns::serve(cfg, catalog.clone()).await {
                Ok(h) => {
                    tracing::info!(udp = %h.udp_addr(), "service DNS listening");
                    Some(h)
                }
                Err(e) => {
                    tracing::error!(error = %e, "service DNS not started (change --dns-port; 0 turns it off)");
                    None
                }
            }
        }
        None => None,
    };
    let lb = if a.no_lb {
        None
    } else {
        let cfg = edge_lb::LbConfig {
            bind_ip: a.lb_bind.unwrap_or(ip),
            connect_timeout: Duration::from_secs(2),
            max_connections: a.lb_max_connections as usize,
            workers: a.lb_threads.map_or_else(
                || std::thread::available_parallelism().map_or(1, |n| n.get()),
                usize::from,
            ),
        };
        Some(
            edge_lb::run(cfg, catalog)
                .await
                .context("start the load balancer")?,
        )
    };
    Ok(Mesh { dns, lb })
}
