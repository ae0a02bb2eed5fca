//! The parts of containerd's cgroup metrics (`io.containerd.cgroups.v1` and
//! `.v2` `Metrics`) that task stats need, decoded with prost; field numbers
//! follow containerd/cgroups' `metrics.proto`.

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub(crate) struct V1Metrics {
    #[prost(message, optional, tag = "3")]
    pub cpu: Option<V1Cpu>,
    #[prost(message, optional, tag = "4")]
    pub memory: Option<V1Memory>,
    #[prost(message, optional, tag = "9")]
    pub memory_oom_control: Option<V1OomControl>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct V1Cpu {
    #[prost(message, optional, tag = "1")]
    pub usage: Option<V1CpuUsage>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct V1CpuUsage {
    /// Nanoseconds.
    #[prost(uint64, tag = "1")]
    pub total: u64,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct V1Memory {
    #[prost(uint64, tag = "2")]
    pub rss: u64,
    #[prost(uint64, tag = "19")]
    pub total_rss: u64,
    #[prost(message, optional, tag = "33")]
    pub usage: Option<V1MemoryEntry>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct V1MemoryEntry {
    #[prost(uint64, tag = "2")]
    pub usage: u64,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct V1OomControl {
    #[prost(uint64, tag = "3")]
    pub oom_kill: u64,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct V2Metrics {
    #[prost(message, optional, tag = "2")]
    pub cpu: Option<V2Cpu>,
    #[prost(message, optional, tag = "4")]
    pub memory: Option<V2Memory>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct V2Cpu {
    #[prost(uint64, tag = "1")]
    pub usage_usec: u64,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct V2Memory {
    #[prost(uint64, tag = "1")]
    pub anon: u64,
    #[prost(uint64, tag = "32")]
    pub usage: u64,
}

/// Memory (RSS, else usage) and CPU nanoseconds from a metrics payload.
pub(crate) fn decode(type_url: &str, value: &[u8]) -> Option<(u64, u64)> {
    if type_url.ends_with("io.containerd.cgroups.v1.Metrics") {
        let m = V1Metrics::decode(value).ok()?;
        let mem = m.memory.map_or(0, |mm| {
            let rss = mm.total_rss.max(mm.rss);
            if rss > 0 {
                rss
            } else {
                mm.usage.map_or(0, |u| u.usage)
            }
        });
        let cpu = m.cpu.and_then(|c| c.usage).map_or(0, |u| u.total);
        return Some((mem, cpu));
    }
    if type_url.ends_with("io.containerd.cgroups.v2.Metrics") {
        let m = V2Metrics::decode(value).ok()?;
        let mem = m
            .memory
            .map_or(0, |mm| if mm.anon > 0 { mm.anon } else { mm.usage });
        let cpu = m.cpu.map_or(0, |c| c.usage_usec.saturating_mul(1000));
        return Some((mem, cpu));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_v1_and_v2_metrics() {
        let v1 = V1Metrics {
            cpu: Some(V1Cpu {
                usage: Some(V1CpuUsage { total: 42 }),
            }),
            memory: Some(V1Memory {
                rss: 10,
                total_rss: 20,
                usage: Some(V1MemoryEntry { usage: 99 }),
            }),
            memory_oom_control: None,
        };
        assert_eq!(
            decode("io.containerd.cgroups.v1.Metrics", &v1.encode_to_vec()),
            Some((20, 42))
        );
        let v2 = V2Metrics {
            cpu: Some(V2Cpu { usage_usec: 3 }),
            memory: Some(V2Memory { anon: 0, usage: 7 }),
        };
        assert_eq!(
            decode("io.containerd.cgroups.v2.Metrics", &v2.encode_to_vec()),
            Some((7, 3000))
        );
        assert_eq!(decode("other", &[]), None);
    }
}
