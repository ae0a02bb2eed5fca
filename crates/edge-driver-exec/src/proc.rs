//! What `/proc` says about a process: whether a pid is still the process we
//! started (pid plus start time, so a reused pid is not mistaken for it), and
//! its memory and CPU use when no cgroup counts them.

use std::fs;

/// The fields of `/proc/<pid>/stat` the driver needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub state: char,
    /// Field 4: the parent's pid.
    pub ppid: u32,
    /// Field 22: clock ticks after boot at which the process started.
    pub start_time: u64,
    /// Fields 14-17 summed: user and system time of the process and of its
    /// reaped children, in clock ticks.
    pub cpu_ticks: u64,
}

/// Parses one `/proc/<pid>/stat` line. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
pub(crate) fn parse_stat(line: &str) -> Option<ProcStat> {
    let rest = &line[line.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 (state); field N is `fields[N - 3]`.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let state = fields.first()?.chars().next()?;
    let cpu_ticks = field(14)? + field(15)? + field(16)? + field(17)?;
    Some(ProcStat {
        state,
        ppid: u32::try_from(field(4)?).ok()?,
        start_time: field(22)?,
        cpu_ticks,
    })
}

pub(crate) fn stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// True while `pid` is the process that started at `start_time` and has not
/// exited (a zombie waiting for its parent counts as exited).
pub(crate) fn alive(pid: u32, start_time: u64) -> bool {
    match stat(pid) {
        Some(s) => s.start_time == start_time && !matches!(s.state, 'Z' | 'X' | 'x'),
        None => false,
    }
}

/// `VmRSS` of `/proc/<pid>/status`, in bytes.
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Nanoseconds per clock tick of `/proc/<pid>/stat` times.
pub(crate) fn nanos_per_tick() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        1_000_000_000 / hz as u64
    } else {
        10_000_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let line = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 7 3 2 1 20 0 1 0 98765 1000 10 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.start_time, 98765);
        assert_eq!(s.cpu_ticks, 13);
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x) S 1 2").is_none());
    }

    #[test]
    fn sees_itself_alive_and_a_wrong_start_time_dead() {
        let me = std::process::id();
        let s = stat(me).unwrap();
        assert!(alive(me, s.start_time));
        assert!(!alive(me, s.start_time + 1));
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(nanos_per_tick() > 0);
    }
}
