//! What bridge networking adds to an allocation's start and stop: the time
//! of `attach` (namespace, veth, address, NAT, one port mapping) and of
//! `detach`, over ROUNDS cycles on a bridge of its own. Needs root and the
//! CNI plugins; `bash benches/network.sh` runs it beside the throughput
//! figures. usage: cargo bench -p edge-net --bench attach [-- ROUNDS]

use edge_net::{BridgeConfig, BridgeNetwork, PortMapping};
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "{what}: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms ({} rounds)",
        percentile(&times, 0.5),
        percentile(&times, 0.9),
        percentile(&times, 1.0),
        times.len()
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(30);
    let dir = tempfile::tempdir()?;
    let net = match BridgeNetwork::new(BridgeConfig {
        bridge: "edgebench0".to_string(),
        subnet: "10.216.0.0/24".parse()?,
        underlay: None,
        state_dir: dir.path().to_path_buf(),
        plugin_dirs: edge_net::DEFAULT_PLUGIN_DIRS
            .iter()
            .map(Into::into)
            .collect(),
        dns: None,
        mtu: edge_net::DEFAULT_MTU,
    }) {
        Ok(net) => net,
        Err(e) => {
            println!("skipped: {e}");
            return Ok(());
        }
    };
    let ports = [PortMapping {
        host: 28700,
        container: 80,
    }];
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let id = format!("bench-{i}");
        let t = Instant::now();
        let att = net.attach(&id, &ports, &[]).await?;
        up.push(t.elapsed());
        let t = Instant::now();
        net.detach(&id, Some(&att)).await?;
        down.push(t.elapsed());
    }
    report("attach (start cost)", up);
    report("detach (stop cost)", down);
    let _ = std::process::Command::new("ip")
        .args(["link", "del", "edgebench0"])
        .status();
    Ok(())
}
