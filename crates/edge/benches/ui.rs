//! The dashboard's first paint in headless Chromium: `benches/ui.sh` starts a
//! server with simulated nodes and jobs, then runs this with `EDGE_ADDR`
//! set. Each run is a new browser profile (nothing cached) opening `/ui/`;
//! it reports the first contentful paint, the first frame with the
//! overview's data, and what the page downloaded.

#[path = "../tests/common/browser.rs"]
mod browser;
#[path = "../tests/common/mod.rs"]
mod common;

use browser::Browser;

const RUNS: usize = 5;

#[tokio::main]
async fn main() {
    let Ok(addr) = std::env::var("EDGE_ADDR") else {
        println!("ui bench: set EDGE_ADDR to a server with nodes and jobs (benches/ui.sh does)");
        return;
    };
    let mut fcp = Vec::new();
    let mut painted = Vec::new();
    let mut last = serde_json::Value::Null;
    for run in 0..RUNS {
        let dir = tempfile::tempdir().unwrap();
        let b = Browser::start(dir.path(), 1280).await;
        b.client.goto(&format!("{addr}/ui/")).await.unwrap();
        b.until(
            60,
            "the overview painted with its data",
            "performance.getEntriesByName('edge-overview-painted').length > 0",
        )
        .await;
        let m = b
            .eval(
                "(() => {
                  const get = (n) => performance.getEntriesByName(n)[0];
                  const res = performance.getEntriesByType('resource').map((r) => ({
                    name: new URL(r.name).pathname, bytes: r.encodedBodySize, ms: Math.round(r.duration) }));
                  return {
                    fcp: get('first-contentful-paint')?.startTime,
                    painted: get('edge-overview-painted').startTime,
                    html: performance.getEntriesByType('navigation')[0].encodedBodySize,
                    resources: res,
                    nodes: document.querySelector('.card .big')?.textContent,
                  };
                })()",
            )
            .await;
        let f = m["fcp"].as_f64().unwrap_or(f64::NAN);
        let p = m["painted"].as_f64().unwrap_or(f64::NAN);
        println!("run {run}: first contentful paint {f:.0} ms, overview with data {p:.0} ms");
        fcp.push(f);
        painted.push(p);
        last = m;
        b.close().await;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let assets: u64 = last["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["name"].as_str().is_some_and(|n| n.starts_with("/ui/")))
        .map(|r| r["bytes"].as_u64().unwrap_or(0))
        .sum::<u64>()
        + last["html"].as_u64().unwrap_or(0);
    println!("page of the last run: {}", last["resources"]);
    println!(
        "RESULT ui overview ({} nodes): first contentful paint median {:.0} ms, overview with data median {:.0} ms (max {:.0}) over {RUNS} cold loads; dashboard assets {assets} bytes",
        last["nodes"].as_str().unwrap_or("?"),
        median(&mut fcp),
        median(&mut painted.clone()),
        painted.iter().copied().fold(0.0, f64::max),
    );
}
