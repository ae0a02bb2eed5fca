//! Task cgroups on v1 (one hierarchy per controller) and v2 (one unified
//! hierarchy): finding the hierarchies, creating `<parent>/<name>` with the
//! task's memory and CPU limits, reading usage and OOM kills, and removing it.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Version {
    V1,
    V2,
}

/// Where this host's cgroup controllers are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hierarchy {
    V1 {
        memory: Option<PathBuf>,
        cpu: Option<PathBuf>,
        cpuacct: Option<PathBuf>,
    },
    V2 {
        root: PathBuf,
    },
}

impl Hierarchy {
    pub fn detect() -> Option<Hierarchy> {
        let root = Path::new(CGROUP_ROOT);
        if root.join("cgroup.controllers").exists() {
            return Some(Hierarchy::V2 {
                root: root.to_path_buf(),
            });
        }
        parse_v1_mounts(&fs::read_to_string("/proc/self/mountinfo").ok()?)
    }

    pub fn version(&self) -> Version {
        match self {
            Hierarchy::V1 { .. } => Version::V1,
            Hierarchy::V2 { .. } => Version::V2,
        }
    }

    /// Creates the parent cgroup(s) every task goes under; an error means
    /// this process may not manage cgroups (not root, read-only mount).
    pub fn prepare(&self, parent: &str) -> io::Result<()> {
        match self {
            Hierarchy::V1 {
                memory,
                cpu,
                cpuacct,
            } => {
                if memory.is_none() {
                    return Err(io::Error::other("no memory controller mounted"));
                }
                for mount in [memory, cpu, cpuacct].into_iter().flatten() {
                    fs::create_dir_all(mount.join(parent))?;
                }
                Ok(())
            }
            Hierarchy::V2 { root } => {
                let dir = root.join(parent);
                fs::create_dir_all(&dir)?;
                // Controllers must be enabled on every level above a task's
                // cgroup; a missing cpu controller only loses CPU weights.
                for level in [root.as_path(), dir.as_path()] {
                    for controller in ["+memory", "+cpu"] {
                        let _ = fs::write(level.join("cgroup.subtree_control"), controller);
                    }
                }
                let enabled = fs::read_to_string(dir.join("cgroup.subtree_control"))?;
                if !enabled.split_whitespace().any(|c| c == "memory") {
                    return Err(io::Error::other("memory controller cannot be enabled"));
                }
                Ok(())
            }
        }
    }

    /// Names of the cgroups under `parent`, in any controller's hierarchy.
    pub fn children(&self, parent: &str) -> Vec<String> {
        let mounts: Vec<&PathBuf> = match self {
            Hierarchy::V1 {
                memory,
                cpu,
                cpuacct,
            } => [memory, cpu, cpuacct].into_iter().flatten().collect(),
            Hierarchy::V2 { root } => vec![root],
        };
        let mut names: Vec<String> = mounts
            .into_iter()
            .filter_map(|m| fs::read_dir(m.join(parent)).ok())
            .flat_map(|entries| entries.flatten())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    pub fn task(&self, parent: &str, name: &str) -> TaskCgroup {
        let under = |mount: &Option<PathBuf>| mount.as_ref().map(|m| m.join(parent).join(name));
        match self {
            Hierarchy::V1 {
                memory,
                cpu,
                cpuacct,
            } => TaskCgroup {
                version: Version::V1,
                memory: under(memory),
                cpu: under(cpu),
                cpuacct: under(cpuacct),
            },
            Hierarchy::V2 { root } => {
                let dir = Some(root.join(parent).join(name));
                TaskCgroup {
                    version: Version::V2,
                    memory: dir.clone(),
                    cpu: dir.clone(),
                    cpuacct: dir,
                }
            }
        }
    }
}

/// Finds the v1 `memory`, `cpu` and `cpuacct` mounts, which may be shared
/// (`cpu,cpuacct`) or separate.
pub(crate) fn parse_v1_mounts(mountinfo: &str) -> Option<Hierarchy> {
    let (mut memory, mut cpu, mut cpuacct) = (None, None, None);
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut right = right.split_whitespace();
        if right.next() != Some("cgroup") {
            continue;
        }
        let (Some(mount_point), Some(options)) = (left.split_whitespace().nth(4), right.nth(1))
        else {
            continue;
        };
        let mount = PathBuf::from(mount_point);
        for option in options.split(',') {
            match option {
                "memory" => memory = Some(mount.clone()),
                "cpu" => cpu = Some(mount.clone()),
                "cpuacct" => cpuacct = Some(mount.clone()),
                _ => {}
            }
        }
    }
    if memory.is_none() && cpu.is_none() && cpuacct.is_none() {
        return None;
    }
    Some(Hierarchy::V1 {
        memory,
        cpu,
        cpuacct,
    })
}

/// v1 `cpu.shares` for a CPU reservation in MHz: 1024 per GHz, at least 2.
pub(crate) fn cpu_shares(mhz: u32) -> u64 {
    (u64::from(mhz) * 1024 / 1000).max(2)
}

/// v2 `cpu.weight` for the same shares, mapped the way runc maps them.
pub(crate) fn cpu_weight(shares: u64) -> u64 {
    (1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142).clamp(1, 10_000)
}

/// The value of `key` in a flat-keyed cgroup file (`key value` lines).
fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// One task's cgroup: a directory per v1 controller, or the same directory
/// thrice on v2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TaskCgroup {
    pub version: Version,
    pub memory: Option<PathBuf>,
    pub cpu: Option<PathBuf>,
    pub cpuacct: Option<PathBuf>,
}

impl TaskCgroup {
    pub fn dirs(&self) -> Vec<&Path> {
        let mut dirs: Vec<&Path> = Vec::new();
        for dir in [&self.memory, &self.cpu, &self.cpuacct]
            .into_iter()
            .flatten()
        {
            if !dirs.contains(&dir.as_path()) {
                dirs.push(dir);
            }
        }
        dirs
    }

    /// Creates the cgroup and writes its limits; `memory_mb == 0` means no
    /// memory limit.
    pub fn create(&self, memory_mb: u32, cpu_mhz: u32) -> io::Result<()> {
        for dir in self.dirs() {
            match fs::create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
            }
        }
        let write = |dir: &Path, file: &str, value: String| {
            fs::write(dir.join(file), &value)
                .map_err(|e| io::Error::new(e.kind(), format!("writing {value} to {file}: {e}")))
        };
        let bytes = u64::from(memory_mb) * 1024 * 1024;
        let shares = cpu_shares(cpu_mhz);
        match self.version {
            Version::V1 => {
                if let Some(dir) = &self.memory
                    && bytes > 0
                {
                    write(dir, "memory.limit_in_bytes", bytes.to_string())?;
                    // Only there when swap accounting is on; without it the
                    // task may swap past its limit instead of being killed.
                    let _ = fs::write(dir.join("memory.memsw.limit_in_bytes"), bytes.to_string());
                }
                if let Some(dir) = &self.cpu {
                    write(dir, "cpu.shares", shares.to_string())?;
                }
            }
            Version::V2 => {
                if let Some(dir) = &self.memory
                    && bytes > 0
                {
                    write(dir, "memory.max", bytes.to_string())?;
                    let _ = fs::write(dir.join("memory.swap.max"), "0");
                }
                if let Some(dir) = &self.cpu {
                    // Absent when the cpu controller is not enabled; the
                    // task then simply runs without a CPU weight.
                    let _ = fs::write(dir.join("cpu.weight"), cpu_weight(shares).to_string());
                }
            }
        }
        Ok(())
    }

    /// The `cgroup.procs` files a process writes itself into to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs().iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// How many processes the kernel OOM-killed in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let Some(dir) = &self.memory else { return 0 };
        let file = match self.version {
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        };
        fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|text| keyed_value(&text, "oom_kill"))
            .unwrap_or(0)
    }

    /// Anonymous (non-cache) memory of every process in the cgroup.
    pub fn memory_rss_bytes(&self) -> Option<u64> {
        let stat = fs::read_to_string(self.memory.as_ref()?.join("memory.stat")).ok()?;
        match self.version {
            Version::V1 => keyed_value(&stat, "total_rss"),
            Version::V2 => keyed_value(&stat, "anon"),
        }
    }

    pub fn cpu_ns(&self) -> Option<u64> {
        match self.version {
            Version::V1 => fs::read_to_string(self.cpuacct.as_ref()?.join("cpuacct.usage"))
                .ok()?
                .trim()
                .parse()
                .ok(),
            Version::V2 => {
                let stat = fs::read_to_string(self.cpu.as_ref()?.join("cpu.stat")).ok()?;
                keyed_value(&stat, "usage_usec").map(|us| us * 1000)
            }
        }
    }

    pub fn pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for file in self.procs_files() {
            if let Ok(text) = fs::read_to_string(file) {
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    pub fn kill_all(&self) {
        for pid in self.pids() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    /// Removes the cgroup only if nothing runs in it: the kernel refuses to
    /// remove a cgroup with processes (EBUSY), so this can never disturb a
    /// task, whoever started it. False when something still runs there.
    pub fn remove_if_empty(&self) -> io::Result<bool> {
        for dir in self.dirs() {
            match fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return Ok(false),
                Err(e) => {
                    return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display())));
                }
            }
        }
        Ok(true)
    }

    /// Kills whatever still runs in the cgroup and removes it. Blocks up to
    /// a few seconds while killed processes leave.
    pub fn remove(&self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        for dir in self.dirs() {
            loop {
                self.kill_all();
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e)
                        if Instant::now() < deadline && e.raw_os_error() == Some(libc::EBUSY) =>
                    {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => {
                        return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display())));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEPARATE: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";

    const SHARED: &str = "\
30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:11 - cgroup cgroup rw,cpu,cpuacct
31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid shared:12 - cgroup cgroup rw,memory";

    #[test]
    fn finds_separate_and_shared_v1_mounts() {
        let sep = parse_v1_mounts(SEPARATE).unwrap();
        assert_eq!(
            sep,
            Hierarchy::V1 {
                memory: Some("/sys/fs/cgroup/memory".into()),
                cpu: Some("/sys/fs/cgroup/cpu".into()),
                cpuacct: Some("/sys/fs/cgroup/cpuacct".into()),
            }
        );
        let shared = parse_v1_mounts(SHARED).unwrap();
        let task = shared.task("edge", "a-web-1");
        assert_eq!(
            task.cpu,
            Some("/sys/fs/cgroup/cpu,cpuacct/edge/a-web-1".into())
        );
        assert_eq!(task.dirs().len(), 2);
        assert!(parse_v1_mounts("1 2 0:1 / / rw - ext4 /dev/sda rw").is_none());
    }

    #[test]
    fn v2_uses_one_directory() {
        let h = Hierarchy::V2 {
            root: "/sys/fs/cgroup".into(),
        };
        let task = h.task("edge", "a-web-1");
        assert_eq!(task.dirs(), [Path::new("/sys/fs/cgroup/edge/a-web-1")]);
        assert_eq!(task.procs_files().len(), 1);
    }

    #[test]
    fn converts_mhz_to_shares_and_weight() {
        assert_eq!(cpu_shares(0), 2);
        assert_eq!(cpu_shares(100), 102);
        assert_eq!(cpu_shares(1000), 1024);
        assert_eq!(cpu_weight(2), 1);
        assert_eq!(cpu_weight(1024), 39);
        assert_eq!(cpu_weight(262_144), 10_000);
        assert_eq!(cpu_weight(u64::MAX), 10_000);
    }

    #[test]
    fn reads_keyed_files() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed_value(text, "oom_kill"), Some(3));
        assert_eq!(keyed_value(text, "oom"), None);
    }
}
