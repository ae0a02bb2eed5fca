//! edge's own iptables rules for bridge networking: outbound NAT, the
//! isolation of bridges from each other, and port mappings. The CNI
//! `firewall` and `portmap` plugins did this with a rule (and an
//! `iptables` run) per allocation, some twenty runs in all, which made
//! them most of an allocation's start; here the per-bridge rules are put
//! in once, when a bridge is first used, and an allocation's mappings are
//! one `iptables-restore` transaction, as Docker does it. Every rule lives
//! in edge's own chains, so what edge adds is always found and removed.

use crate::Subnet;
use crate::error::NetError;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

/// nat: the port mappings (DNAT), reached from PREROUTING and OUTPUT for
/// traffic to one of this host's addresses.
pub(crate) const PORTS: &str = "EDGE-PORTS";
/// nat: masquerade of what leaves a bridge's subnet, of host-local
/// (127.0.0.1) traffic into a mapping, and of hairpin traffic.
pub(crate) const MASQ: &str = "EDGE-MASQ";
/// filter: forwarding to and from the bridges, first in FORWARD.
pub(crate) const FORWARD: &str = "EDGE-FORWARD";
/// filter: what leaves one bridge for another is dropped here.
pub(crate) const ISOLATION: &str = "EDGE-ISOLATION";

fn iptables_now(args: &[&str]) -> Result<(), NetError> {
    crate::command::run_now("iptables", args).map(drop)
}

async fn iptables(args: &[&str]) -> Result<String, NetError> {
    crate::command::run("iptables", args).await
}

/// One transaction of `lines` (`-A ...`/`-D ...`) on `table`, in this
/// network namespace or, with `netns`, in that one.
pub(crate) async fn restore(
    netns: Option<&str>,
    table: &str,
    lines: &[String],
) -> Result<(), NetError> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut argv: Vec<&str> = Vec::new();
    if let Some(ns) = netns {
        argv.extend(["ip", "netns", "exec", ns]);
    }
    argv.extend(["iptables-restore", "-w", "--noflush"]);
    let what = argv.join(" ");
    let mut child = tokio::process::Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| NetError::Command {
            command: what.clone(),
            message: e.to_string(),
        })?;
    let mut input = format!("*{table}\n");
    for l in lines {
        input.push_str(l);
        input.push('\n');
    }
    input.push_str("COMMIT\n");
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .await
            .map_err(|e| NetError::Command {
                command: what.clone(),
                message: e.to_string(),
            })?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| NetError::Command {
            command: what.clone(),
            message: e.to_string(),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(NetError::Command {
        command: format!("{what} <<< {}", lines.join("; ")),
        message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// edge's chains and the jumps into them, made once when the agent
/// starts (and left in place when it stops: the mappings of tasks that
/// run on need them).
pub(crate) fn ensure_base() -> Result<(), NetError> {
    // Agents on one host (a lab, or two bridges) start at once: one looks
    // and adds at a time, so no jump is put in twice.
    let (file, path) = crate::lock_file("rules.lock")?;
    let _held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| NetError::io("lock", &path, errno.into()))?;
    for (table, chain) in [
        ("nat", PORTS),
        ("nat", MASQ),
        ("filter", FORWARD),
        ("filter", ISOLATION),
    ] {
        if iptables_now(&["-w", "-t", table, "-S", chain]).is_err() {
            iptables_now(&["-w", "-t", table, "-N", chain])?;
        }
    }
    let local = ["-m", "addrtype", "--dst-type", "LOCAL", "-j", PORTS];
    let jumps: [(&str, &str, &[&str]); 4] = [
        ("nat", "PREROUTING", &local),
        ("nat", "OUTPUT", &local),
        ("nat", "POSTROUTING", &["-j", MASQ]),
        ("filter", "FORWARD", &["-j", FORWARD]),
    ];
    for (table, chain, rule) in jumps {
        let mut check = vec!["-w", "-t", table, "-C", chain];
        check.extend_from_slice(rule);
        if iptables_now(&check).is_err() {
            let mut insert = vec!["-w", "-t", table, "-I", chain, "1"];
            insert.extend_from_slice(rule);
            iptables_now(&insert)?;
        }
    }
    Ok(())
}

/// The rules of one bridge, by table: outbound NAT of its subnet (a named
/// network's subnet spans nodes, so its members on other nodes are not
/// NATed), host-local and hairpin traffic into mappings masqueraded,
/// forwarding out of it allowed but not into another of edge's bridges,
/// and into it only what answers or was mapped.
fn bridge_rules(bridge: &str, subnet: Subnet) -> Vec<(&'static str, Vec<String>)> {
    let s = subnet.to_string();
    let rule = |words: &[&str]| -> Vec<String> { words.iter().map(|w| w.to_string()).collect() };
    vec![
        (
            "nat",
            rule(&[MASQ, "-s", &s, "!", "-d", &s, "-j", "MASQUERADE"]),
        ),
        (
            "nat",
            rule(&[MASQ, "-s", "127.0.0.0/8", "-o", bridge, "-j", "MASQUERADE"]),
        ),
        (
            "nat",
            rule(&[
                MASQ,
                "-s",
                &s,
                "-o",
                bridge,
                "-m",
                "conntrack",
                "--ctstate",
                "DNAT",
                "-j",
                "MASQUERADE",
            ]),
        ),
        ("filter", rule(&[ISOLATION, "-o", bridge, "-j", "DROP"])),
        (
            "filter",
            rule(&[FORWARD, "-i", bridge, "!", "-o", bridge, "-j", ISOLATION]),
        ),
        ("filter", rule(&[FORWARD, "-i", bridge, "-j", "ACCEPT"])),
        (
            "filter",
            rule(&[
                FORWARD,
                "-o",
                bridge,
                "-m",
                "conntrack",
                "--ctstate",
                "RELATED,ESTABLISHED,DNAT",
                "-j",
                "ACCEPT",
            ]),
        ),
    ]
}

/// Puts in the bridge's rules that are missing (after an agent restart
/// they are all there) and lets host-local traffic be routed into it.
pub(crate) async fn ensure_bridge(bridge: &str, subnet: Subnet) -> Result<(), NetError> {
    for (table, rule) in bridge_rules(bridge, subnet) {
        let words: Vec<&str> = rule.iter().map(String::as_str).collect();
        let mut check = vec!["-w", "-t", table, "-C"];
        check.extend_from_slice(&words);
        if iptables(&check).await.is_err() {
            let mut add = vec!["-w", "-t", table, "-A"];
            add.extend_from_slice(&words);
            iptables(&add).await?;
        }
    }
    // 127.0.0.1:HOSTPORT into a mapping: the kernel routes a loopback
    // source out of a non-loopback device only with this.
    let path = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(b"1"))
        .map_err(|e| NetError::io("write", &path, e))
}

/// Removes every rule of the bridge (a named network nothing here uses
/// any more), and with `subnet` those of its addresses.
pub(crate) async fn remove_bridge(bridge: &str, subnet: Option<Subnet>) -> Result<(), NetError> {
    let s = subnet.map(|s| s.to_string());
    let tables: [(&str, &[&str]); 2] = [("nat", &[MASQ]), ("filter", &[FORWARD, ISOLATION])];
    for (table, chains) in tables {
        let mut dels = Vec::new();
        for chain in chains {
            let listed = iptables(&["-w", "-t", table, "-S", chain]).await?;
            dels.extend(deletions(&listed, |words| {
                words.windows(2).any(|w| {
                    (matches!(w[0].as_str(), "-i" | "-o") && w[1] == bridge)
                        || (w[0] == "-s" && Some(&w[1]) == s.as_ref())
                })
            }));
        }
        restore(None, table, &dels).await?;
    }
    Ok(())
}

/// The comment that marks an allocation's mappings.
fn mark(alloc_id: &str) -> String {
    format!("edge:{alloc_id}")
}

/// Maps each host port (TCP and UDP) to the allocation's address: one
/// transaction.
pub(crate) async fn map_ports(
    alloc_id: &str,
    address: Ipv4Addr,
    ports: &[crate::PortMapping],
) -> Result<(), NetError> {
    let lines: Vec<String> = ports
        .iter()
        .flat_map(|p| {
            ["tcp", "udp"].map(|proto| {
                format!(
                    "-A {PORTS} -p {proto} -m {proto} --dport {} -m comment --comment {} -j DNAT --to-destination {address}:{}",
                    p.host,
                    mark(alloc_id),
                    p.container
                )
            })
        })
        .collect();
    restore(None, "nat", &lines).await
}

/// Removes the allocation's mappings, found by their comment (so a crash
/// that lost its address still removes them). None is no error.
pub(crate) async fn unmap_ports(alloc_id: &str) -> Result<(), NetError> {
    let listed = iptables(&["-w", "-t", "nat", "-S", PORTS]).await?;
    let want = mark(alloc_id);
    let dels = deletions(&listed, |words| {
        words
            .windows(2)
            .any(|w| w[0] == "--comment" && w[1] == want)
    });
    restore(None, "nat", &dels).await
}

/// The `-D` lines for the rules of `iptables -S` output that `pick`
/// chooses (given the rule's words after `-A`).
fn deletions(listed: &str, pick: impl Fn(&[String]) -> bool) -> Vec<String> {
    listed
        .lines()
        .filter_map(|line| {
            // Quoted as a shell would read it (comments may hold spaces).
            let words = shlex::split(line)?;
            let (first, rest) = words.split_first()?;
            if first != "-A" || !pick(rest) {
                return None;
            }
            let quoted: Vec<String> = rest
                .iter()
                .map(|w| {
                    if w.contains(char::is_whitespace) {
                        format!("\"{w}\"")
                    } else {
                        w.clone()
                    }
                })
                .collect();
            Some(format!("-D {}", quoted.join(" ")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletes_only_the_picked_rules_quoted_back() {
        let listed = "\
-N EDGE-PORTS
-A EDGE-PORTS -p tcp -m tcp --dport 28080 -m comment --comment edge:a1 -j DNAT --to-destination 10.0.0.2:80
-A EDGE-PORTS -p tcp -m tcp --dport 28081 -m comment --comment edge:a10 -j DNAT --to-destination 10.0.0.3:80
-A EDGE-PORTS -p udp -m udp --dport 28080 -m comment --comment \"edge:a1\" -j DNAT --to-destination 10.0.0.2:80
-A EDGE-ISOLATION -o edge0 -m comment --comment \"two words\" -j DROP
";
        let want = mark("a1");
        let dels = deletions(listed, |w| {
            w.windows(2).any(|p| p[0] == "--comment" && p[1] == want)
        });
        assert_eq!(
            dels,
            [
                "-D EDGE-PORTS -p tcp -m tcp --dport 28080 -m comment --comment edge:a1 -j DNAT --to-destination 10.0.0.2:80",
                "-D EDGE-PORTS -p udp -m udp --dport 28080 -m comment --comment edge:a1 -j DNAT --to-destination 10.0.0.2:80",
            ]
        );
        let dels = deletions(listed, |w| w.iter().any(|x| x == "edge0"));
        assert_eq!(
            dels,
            ["-D EDGE-ISOLATION -o edge0 -m comment --comment \"two words\" -j DROP"]
        );
    }

    #[test]
    fn a_bridge_isolates_before_it_accepts() {
        let rules = bridge_rules("edge0-1", "172.27.16.0/20".parse().unwrap());
        let forward: Vec<String> = rules
            .iter()
            .filter(|(_, r)| r[0] == FORWARD)
            .map(|(_, r)| r.join(" "))
            .collect();
        assert_eq!(
            forward[0],
            "EDGE-FORWARD -i edge0-1 ! -o edge0-1 -j EDGE-ISOLATION"
        );
        assert!(forward[1].ends_with("-i edge0-1 -j ACCEPT"));
        assert!(rules.iter().any(|(t, r)| *t == "nat"
            && r.join(" ") == "EDGE-MASQ -s 172.27.16.0/20 ! -d 172.27.16.0/20 -j MASQUERADE"));
    }
}
