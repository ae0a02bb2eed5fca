//! The node's names and traffic: starts the service DNS and the load
//! balancer (routing mesh) from the agent's catalog watch.

use anyhow::Context;
use clap::Args;
use edge_api::Catalog;
use std::collections::HashMap;
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
    lb: Option<Arc<edge_lb::LbHandle>>,
    reports: Option<tokio::task::JoinHandle<()>>,
}

/// How often the load balancer's in-flight counts are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// How often the samples go to the server (when there was traffic).
const REPORT_EVERY: Duration = Duration::from_secs(2);
/// Reports sent at once for held requests are at least this far apart.
const REPORT_GAP: Duration = Duration::from_millis(100);

/// Samples the load balancer and sends what it saw to the server for
/// the autoscaler: every interval with traffic, and at once when a
/// request is held for a service at zero.
async fn report_load(lb: Arc<edge_lb::LbHandle>, to: edge_agent::LoadReporter) {
    let demand = lb.demand();
    let mut counts = Counts::default();
    for (k, l) in lb.load() {
        counts.rebase(&k, &l);
    }
    let mut held = std::collections::HashSet::new();
    let mut since = tokio::time::Instant::now();
    let mut sample = tokio::time::interval(SAMPLE_EVERY);
    sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let urgent = tokio::select! {
            _ = sample.tick() => false,
            _ = demand.notified() => true,
        };
        let now = lb.load();
        for (k, l) in &now {
            counts.sample(k, l);
        }
        let elapsed = since.elapsed();
        if !(elapsed >= REPORT_EVERY || (urgent && elapsed >= REPORT_GAP)) {
            continue;
        }
        let interval_ms = u64::try_from(elapsed.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut report = edge_api::LoadReport::default();
        let present: std::collections::HashSet<String> =
            now.iter().map(|(k, _)| k.clone()).collect();
        counts.base.retain(|k, _| present.contains(k));
        for (k, l) in now {
            let mut load = counts.take(&k, &l, interval_ms);
            // A service that held requests at the last report is sent once
            // more, so the server sees them served.
            let held_before = held.remove(&k);
            if l.waiting > 0 {
                held.insert(k.clone());
            }
            if load.requests == 0 && load.in_flight == 0.0 && l.waiting == 0 && !held_before {
                continue;
            }
            load.waiting = l.waiting;
            report.services.insert(k, load);
        }
        counts.sums.clear();
        since = tokio::time::Instant::now();
        if report.services.is_empty() {
            continue;
        }
        if let Err(e) = to.send(&report).await {
            tracing::debug!(error = %e, "load report not sent");
        }
    }
}

/// The load balancer's counters at the last report, and the in-flight
/// samples taken since, by service and by copy.
#[derive(Default)]
struct Counts {
    /// Service → its request counter, and each copy's, at the last report.
    base: HashMap<String, (u64, HashMap<String, u64>)>,
    /// Service → samples taken, the sum of its in-flight counts, and the
    /// same by copy.
    sums: HashMap<String, (u32, usize, HashMap<String, usize>)>,
}

impl Counts {
    fn rebase(&mut self, service: &str, l: &edge_lb::PoolLoad) {
        let copies = l
            .instances
            .iter()
            .map(|(a, c)| (a.clone(), c.requests))
            .collect();
        self.base.insert(service.to_string(), (l.requests, copies));
    }

    fn sample(&mut self, service: &str, l: &edge_lb::PoolLoad) {
        let e = self.sums.entry(service.to_string()).or_default();
        e.0 += 1;
        e.1 += l.in_flight;
        for (a, c) in &l.instances {
            *e.2.entry(a.clone()).or_default() += c.in_flight;
        }
    }

    /// The service's load since the last report; its counters become the
    /// new base.
    fn take(
        &mut self,
        service: &str,
        l: &edge_lb::PoolLoad,
        interval_ms: u64,
    ) -> edge_api::ServiceLoad {
        // A pool or a copy made anew counts from zero.
        let since =
            |now: u64, before: Option<u64>| before.and_then(|b| now.checked_sub(b)).unwrap_or(now);
        let (n, sum, by_copy) = self.sums.remove(service).unwrap_or_default();
        let average = |sum: usize| {
            if n == 0 {
                0.0
            } else {
                sum as f64 / f64::from(n)
            }
        };
        let before = self.base.get(service);
        let mut instances = std::collections::BTreeMap::new();
        for (a, c) in &l.instances {
            let requests = since(
                c.requests,
                before.and_then(|(_, copies)| copies.get(a).copied()),
            );
            let in_flight = average(by_copy.get(a).copied().unwrap_or(0));
            if requests > 0 || in_flight > 0.0 {
                let e: &mut edge_api::InstanceLoad = instances.entry(a.clone()).or_default();
                e.requests = e.requests.saturating_add(requests);
                e.in_flight += in_flight;
            }
        }
        let load = edge_api::ServiceLoad {
            in_flight: average(sum),
            requests: since(l.requests, before.map(|(r, _)| *r)),
            interval_ms,
            waiting: 0,
            instances,
        };
        self.rebase(service, l);
        load
    }
}

impl Mesh {
    pub async fn shutdown(self) {
        if let Some(r) = self.reports {
            r.abort();
            // It holds the load balancer until it has ended.
            let _ = r.await;
        }
        if let Some(d) = self.dns {
            d.shutdown().await;
        }
        if let Some(l) = self.lb.and_then(|l| Arc::try_unwrap(l).ok()) {
            l.shutdown().await;
        }
    }
}

pub async fn start(
    a: &MeshArgs,
    address: &str,
    catalog: watch::Receiver<Arc<Catalog>>,
    reporter: edge_agent::LoadReporter,
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
        Some(Arc::new(
            edge_lb::run(cfg, catalog)
                .await
                .context("start the load balancer")?,
        ))
    };
    let reports = lb.clone().map(|lb| tokio::spawn(report_load(lb, reporter)));
    Ok(Mesh { dns, lb, reports })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(requests: u64, copies: &[(&str, usize, u64)]) -> edge_lb::PoolLoad {
        edge_lb::PoolLoad {
            in_flight: copies.iter().map(|c| c.1).sum(),
            requests,
            waiting: 0,
            instances: copies
                .iter()
                .map(|(a, in_flight, requests)| {
                    let count = edge_lb::InstanceCount {
                        in_flight: *in_flight,
                        requests: *requests,
                    };
                    (a.to_string(), count)
                })
                .collect(),
        }
    }

    #[test]
    fn a_report_counts_since_the_last_one_by_service_and_copy() {
        let mut c = Counts::default();
        c.rebase("web", &pool(10, &[("a1", 0, 6), ("a2", 0, 4)]));
        c.sample("web", &pool(12, &[("a1", 2, 7), ("a2", 0, 4)]));
        c.sample("web", &pool(14, &[("a1", 1, 8), ("a2", 1, 5)]));
        // a3 joined the pool since the last report: all of its count is new.
        let now = pool(16, &[("a1", 0, 9), ("a2", 0, 5), ("a3", 0, 2)]);
        let l = c.take("web", &now, 2_000);
        assert_eq!((l.requests, l.in_flight, l.interval_ms), (6, 2.0, 2_000));
        let copy = |a: &str| l.instances.get(a).map(|i| (i.requests, i.in_flight));
        assert_eq!(copy("a1"), Some((3, 1.5)));
        assert_eq!(copy("a2"), Some((1, 0.5)));
        assert_eq!(copy("a3"), Some((2, 0.0)));
        // Nothing since: no copy is named.
        let l = c.take("web", &now, 2_000);
        assert_eq!((l.requests, l.instances.len()), (0, 0));
        // A pool made anew counts from zero.
        let l = c.take("web", &pool(3, &[("a1", 0, 3)]), 2_000);
        assert_eq!(l.requests, 3);
        assert_eq!(l.instances.get("a1").map(|i| i.requests), Some(3));
    }
}
