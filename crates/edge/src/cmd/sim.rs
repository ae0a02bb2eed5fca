//! `edge sim`: runs many fake nodes against a server for scale tests.

use crate::cli::SimArgs;
use edge_sim::{SimConfig, Stats};
use std::time::Duration;

pub async fn run(a: SimArgs) -> anyhow::Result<u8> {
    match edge_api::listen::raise_fd_limit() {
        Ok(n) if (n as usize) < a.nodes * 3 => eprintln!(
            "warning: open file limit {n} is low for {} nodes (about 3 sockets each)",
            a.nodes
        ),
        Ok(_) => {}
        Err(e) => eprintln!("warning: cannot raise the open file limit: {e}"),
    }
    let mut cfg = SimConfig::new(a.server, a.join_token, a.nodes);
    cfg.cpu = a.cpu;
    cfg.memory = a.memory;
    cfg.report_running_after = a.report_running_after;
    cfg.name_prefix = a.name_prefix;
    cfg.datacenter = a.datacenter;
    let sim = edge_sim::start(cfg)?;
    let stats = sim.stats();
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(a.stats_every.max(Duration::from_millis(100)));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = super::daemon::shutdown_signal() => break,
            _ = tick.tick() => eprintln!(
                "sim {:>6.1}s: registered {} running {} complete {} heartbeats {} errors {}",
                started.elapsed().as_secs_f64(),
                Stats::get(&stats.registered),
                Stats::get(&stats.running),
                Stats::get(&stats.complete),
                Stats::get(&stats.heartbeats),
                Stats::get(&stats.errors),
            ),
        }
    }
    sim.shutdown().await;
    Ok(0)
}
