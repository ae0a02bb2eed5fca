//! What this node is: CPU, memory, OS facts and the drivers it can run.

use edge_driver::Driver;
use edge_spec::{DriverInfo, NodeResources};
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct Facts {
    pub hostname: String,
    pub resources: NodeResources,
    pub attributes: BTreeMap<String, String>,
}

pub fn host() -> Facts {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let mhz = cpu_mhz().unwrap_or(1000);
    let memory = mem_total_mb().unwrap_or(0);
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string());
    let mut attributes = BTreeMap::new();
    attributes.insert("kernel.name".to_string(), std::env::consts::OS.to_string());
    attributes.insert("cpu.arch".to_string(), std::env::consts::ARCH.to_string());
    attributes.insert("cpu.numcores".to_string(), cores.to_string());
    attributes.insert("cpu.frequency".to_string(), mhz.to_string());
    attributes.insert(
        "memory.totalbytes".to_string(),
        (memory as u64 * 1024 * 1024).to_string(),
    );
    attributes.insert("unique.hostname".to_string(), hostname.clone());
    if let Ok(u) = nix::sys::utsname::uname() {
        attributes.insert(
            "kernel.version".to_string(),
            u.release().to_string_lossy().into_owned(),
        );
    }
    if let Some((id, version)) = os_release() {
        attributes.insert("os.name".to_string(), id);
        attributes.insert("os.version".to_string(), version);
    }
    Facts {
        hostname,
        resources: NodeResources {
            cpu: cores * mhz,
            memory,
            cores,
        },
        attributes,
    }
}

pub async fn drivers(drivers: &[Arc<dyn Driver>]) -> BTreeMap<String, DriverInfo> {
    let mut out = BTreeMap::new();
    for d in drivers {
        out.insert(d.name().to_string(), d.fingerprint().await);
    }
    out
}

/// Where drivers' attributes go among the node's, as in Nomad.
const DRIVER_PREFIX: &str = "driver.";

/// Puts the drivers into the node's attributes as Nomad does, so that
/// constraints can name them: `driver.NAME` = `1` for each detected driver,
/// and each driver's own attributes (already under its name, such as
/// `model.backends`) under `driver.` (`${attr.driver.model.backends}`).
/// What an earlier fingerprint put there goes first.
pub fn with_drivers(
    attributes: &mut BTreeMap<String, String>,
    drivers: &BTreeMap<String, DriverInfo>,
) {
    attributes.retain(|k, _| !k.starts_with(DRIVER_PREFIX));
    for (name, info) in drivers.iter().filter(|(_, i)| i.detected) {
        attributes.insert(format!("{DRIVER_PREFIX}{name}"), "1".to_string());
        for (k, v) in &info.attributes {
            attributes.insert(format!("{DRIVER_PREFIX}{k}"), v.clone());
        }
    }
}

fn cpu_mhz() -> Option<u32> {
    let max = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq");
    if let Some(khz) = max.ok().and_then(|s| s.trim().parse::<u64>().ok()) {
        return Some((khz / 1000) as u32);
    }
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("cpu MHz"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u32)
}

fn mem_total_mb() -> Option<u32> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kb| (kb / 1024) as u32)
}

fn os_release() -> Option<(String, String)> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim_matches('"').to_string())
    };
    Some((get("ID=")?, get("VERSION_ID=").unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(detected: bool, attrs: &[(&str, &str)]) -> DriverInfo {
        DriverInfo {
            detected,
            healthy: detected,
            description: String::new(),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn drivers_become_attributes_and_old_ones_go() {
        let mut attrs = BTreeMap::from([
            ("cpu.arch".to_string(), "x86_64".to_string()),
            (
                "driver.model.onnxruntime.version".to_string(),
                "1.20.0".to_string(),
            ),
        ]);
        let drivers = BTreeMap::from([
            (
                "model".to_string(),
                info(
                    true,
                    &[("model.backends", "tract"), ("model.formats", "onnx")],
                ),
            ),
            (
                "containerd".to_string(),
                info(false, &[("containerd.version", "1.6")]),
            ),
        ]);
        with_drivers(&mut attrs, &drivers);
        let want: BTreeMap<String, String> = [
            ("cpu.arch", "x86_64"),
            ("driver.model", "1"),
            ("driver.model.backends", "tract"),
            ("driver.model.formats", "onnx"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(attrs, want);
    }
}
