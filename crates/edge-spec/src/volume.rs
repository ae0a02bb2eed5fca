//! Local volumes as the server records them: one directory per copy of a
//! group, on the node that first ran the copy, kept until removed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A local volume: where it is, and whose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Volume {
    /// Random, made by the server.
    pub id: String,
    pub namespace: String,
    pub job_id: String,
    pub group: String,
    /// The `volume` block's label.
    pub name: String,
    /// The index of the copy of the group that owns it.
    pub index: u32,
    /// The node holding its directory; replacements of the copy go there.
    pub node_id: String,
    /// Unix milliseconds.
    pub create_time: i64,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

/// The smallest sized local volume (an ext4 file system needs room for
/// its own bookkeeping).
pub const MIN_VOLUME_SIZE: u64 = 8 << 20;
/// The largest.
pub const MAX_VOLUME_SIZE: u64 = 16 << 40;

/// A size as job files write it: `512MiB`, `1GiB`, `10G`, `100MB`, or
/// bytes. `K`/`M`/`G`/`T` with or without `B` are powers of 1000, with
/// `iB` powers of 1024, as in Nomad. Hand-written: a fixed table of six
/// units, property-tested, is less than a dependency.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("size {s:?} is not a number with a unit such as 512MiB or 1GiB");
    if num.is_empty() || num.len() > 20 {
        return Err(bad());
    }
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "k" | "kB" => 1000,
        "KiB" => 1 << 10,
        "M" | "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "G" | "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        "T" | "TB" => 1_000_000_000_000,
        "TiB" => 1 << 40,
        _ => return Err(bad()),
    };
    let value: f64 = num.parse().map_err(|_| bad())?;
    let bytes = value * factor as f64;
    if !bytes.is_finite() || bytes > MAX_VOLUME_SIZE as f64 {
        return Err(format!("size {s:?} is over the limit of 16TiB"));
    }
    // Whole bytes: a fraction of one is no size a file system has.
    Ok(bytes as u64)
}

impl Volume {
    /// The store's key: one volume per namespace, job, group, name and copy.
    pub fn key(namespace: &str, job: &str, group: &str, name: &str, index: u32) -> String {
        format!("{namespace}/{job}/{group}/{name}/{index}")
    }

    pub fn own_key(&self) -> String {
        Volume::key(
            &self.namespace,
            &self.job_id,
            &self.group,
            &self.name,
            self.index,
        )
    }

    /// `JOB.GROUP.NAME[INDEX]`, as listings show it.
    pub fn display_name(&self) -> String {
        crate::job::local_volume_name(&self.job_id, &self.group, &self.name, self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_read_as_nomad_writes_them() {
        for (s, want) in [
            ("512MiB", 512 << 20),
            ("1GiB", 1 << 30),
            ("1.5GiB", 3 << 29),
            ("10G", 10_000_000_000),
            ("100MB", 100_000_000),
            ("4096", 4096),
            (" 2 TiB ", 2 << 40),
        ] {
            assert_eq!(parse_size(s), Ok(want), "{s}");
        }
        for bad in ["", "GiB", "1XB", "-1GiB", "1e9", "17TiB", "1..5G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,30}") {
            let _ = parse_size(&s);
        }

        #[test]
        fn mebibytes_round_trip(n in 1u64..(16u64 << 20)) {
            prop_assert_eq!(parse_size(&format!("{n}MiB")), Ok(n << 20));
        }
    }
}
