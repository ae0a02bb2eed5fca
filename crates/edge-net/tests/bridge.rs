//! Bridge networking on the real kernel through the real CNI plugins: an
//! allocation's namespace, address, port mapping, and nothing left after
//! detach. Needs root (`EDGE_TEST_ROOT=1`).

use edge_net::{BridgeConfig, BridgeNetwork, PortMapping};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn enabled() -> bool {
    if std::env::var("EDGE_TEST_ROOT").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("skipped: set EDGE_TEST_ROOT=1 (needs root)");
    false
}

fn network(dir: &std::path::Path, bridge: &str, subnet: &str) -> BridgeNetwork {
    BridgeNetwork::new(BridgeConfig {
        bridge: bridge.to_string(),
        subnet: subnet.parse().unwrap(),
        underlay: None,
        state_dir: dir.to_path_buf(),
        plugin_dirs: edge_net::DEFAULT_PLUGIN_DIRS
            .iter()
            .map(Into::into)
            .collect(),
        dns: None,
        mtu: edge_net::DEFAULT_MTU,
    })
    .expect("bridge networking on this machine")
}

/// Killed when dropped, so a failed assertion leaves no server behind.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// busybox httpd inside the namespace, serving `body` on port 80.
fn httpd(netns: &std::path::Path, www: &std::path::Path, body: &str) -> Server {
    std::fs::create_dir_all(www).unwrap();
    std::fs::write(www.join("index.html"), body).unwrap();
    Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["busybox", "httpd", "-f", "-p", "80", "-h"])
        .arg(www)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Server)
        .unwrap()
}

fn get(addr: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect(addr)?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })();
        match attempt {
            Ok(out) if out.contains("200 OK") => return out,
            _ if Instant::now() > deadline => panic!("{addr} did not answer: {attempt:?}"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn count(cmd: &str) -> usize {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[tokio::test]
async fn two_allocations_on_port_80_answer_through_their_mappings_and_leave_nothing() {
    if !enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let net = network(dir.path(), "edgetest0", "10.213.0.0/24");
    let ids = ["nettest-a", "nettest-b"];
    let mut atts = Vec::new();
    let mut servers = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let att = net
            .attach(
                id,
                &[PortMapping {
                    host: 28080 + i as u16,
                    container: 80,
                }],
                &[],
            )
            .await
            .unwrap();
        assert!(BridgeNetwork::is_live(&att));
        assert_eq!(att.gateway.to_string(), "10.213.0.1");
        servers.push(httpd(&att.netns, &dir.path().join(id), id));
        atts.push(att);
    }
    assert_ne!(atts[0].address, atts[1].address, "one address each");
    for (i, id) in ids.iter().enumerate() {
        assert!(get(&format!("127.0.0.1:{}", 28080 + i)).ends_with(id));
        assert!(get(&format!("{}:80", atts[i].address)).ends_with(id));
    }
    // Both in the orphan list when nothing owns them, neither when owned.
    let owned: BTreeSet<String> = ids.iter().map(|s| s.to_string()).collect();
    assert!(net.orphans(&owned).is_empty());
    assert_eq!(net.orphans(&BTreeSet::new()).len(), 2);

    drop(servers);
    for (id, att) in ids.iter().zip(&atts) {
        net.detach(id, Some(att)).await.unwrap();
        assert!(!BridgeNetwork::is_live(att));
        // Again, as after a crash between the two: no error.
        net.detach(id, Some(att)).await.unwrap();
    }
    assert!(net.orphans(&BTreeSet::new()).is_empty(), "leases released");
    assert_eq!(
        count("ip -o link show master edgetest0 | wc -l"),
        0,
        "veths left"
    );
    for id in ids {
        assert_eq!(
            count(&format!("iptables-save | grep -c {id}")),
            0,
            "rules of {id} left"
        );
        assert_eq!(
            count(&format!("iptables-save -t nat | grep -c {id}")),
            0,
            "nat rules of {id} left"
        );
    }
    let _ = Command::new("ip")
        .args(["link", "del", "edgetest0"])
        .status();
}

#[tokio::test]
async fn a_crashed_attach_is_cleaned_by_the_allocation_id_alone() {
    if !enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let net = network(dir.path(), "edgetest1", "10.213.1.0/24");
    let att = net
        .attach(
            "nettest-c",
            &[PortMapping {
                host: 28090,
                container: 80,
            }],
            &[],
        )
        .await
        .unwrap();
    // The agent died before it saved the attachment: the orphan is found
    // and removed knowing only the id.
    let orphans = net.orphans(&BTreeSet::new());
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    assert_eq!(orphans[0].alloc_id, "nettest-c");
    net.detach("nettest-c", None).await.unwrap();
    assert!(!BridgeNetwork::is_live(&att));
    assert!(net.orphans(&BTreeSet::new()).is_empty());
    assert_eq!(count("iptables-save -t nat | grep -c nettest-c"), 0);
    let _ = Command::new("ip")
        .args(["link", "del", "edgetest1"])
        .status();
}

#[tokio::test]
async fn a_second_agent_on_the_same_bridge_is_refused() {
    if !enabled() {
        return;
    }
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = network(a.path(), "edgetest2", "10.213.2.0/24");
    let second = BridgeNetwork::new(BridgeConfig {
        bridge: "edgetest2".to_string(),
        subnet: "10.213.2.0/24".parse().unwrap(),
        underlay: None,
        state_dir: b.path().to_path_buf(),
        plugin_dirs: edge_net::DEFAULT_PLUGIN_DIRS
            .iter()
            .map(Into::into)
            .collect(),
        dns: None,
        mtu: edge_net::DEFAULT_MTU,
    })
    .unwrap_err()
    .to_string();
    assert!(
        second.contains("in use by another edge agent") && second.contains("--bridge-name"),
        "{second}"
    );
    // Released with the first: a restarted agent takes it again.
    drop(first);
    network(b.path(), "edgetest2", "10.213.2.0/24");
}

/// Whether `ip`:80 answers a request made from inside `netns` within a
/// second (busybox wget under `timeout`: its own `-T` crashes in Debian 12).
fn reaches(netns: &std::path::Path, ip: std::net::Ipv4Addr) -> bool {
    Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["timeout", "1", "busybox", "wget", "-q", "-O", "/dev/null"])
        .arg(format!("http://{ip}/"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[tokio::test]
async fn named_networks_reach_their_members_and_nothing_else() {
    if !enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let net = network(dir.path(), "edgetest3", "10.213.3.0/24");
    let front = "default/shop/front".to_string();
    let back = "default/shop/back".to_string();
    let assigned = |key: &str, vni: u32, subnet: &str, slice: &str| edge_net::OverlayDef {
        key: key.to_string(),
        vni,
        subnet: subnet.parse().unwrap(),
        slice: slice.parse().unwrap(),
        peers: vec![],
    };
    let defs = [
        assigned(&front, 1, "10.214.8.0/24", "10.214.8.64/26"),
        assigned(&back, 2, "10.214.9.0/24", "10.214.9.0/26"),
    ];
    let err = net
        .attach("netnamed-early", &[], std::slice::from_ref(&front))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no subnet on this node"), "{err}");
    net.sync(&defs, None).await.unwrap();
    // A client only on front, the web app on both, the database only on
    // back, and an allocation of another job on the default bridge.
    let plan: [(&str, Vec<String>); 4] = [
        ("netnamed-client", vec![front.clone()]),
        ("netnamed-web", vec![front.clone(), back.clone()]),
        ("netnamed-db", vec![back.clone()]),
        ("netnamed-other", vec![]),
    ];
    let mut atts = std::collections::BTreeMap::new();
    let mut servers = Vec::new();
    for (id, nets) in &plan {
        let att = net.attach(id, &[], nets).await.unwrap();
        assert_eq!(att.interfaces.len(), nets.len().max(1), "{id}");
        servers.push(httpd(&att.netns, &dir.path().join(id), id));
        atts.insert(*id, att);
    }
    let (fb, fs, fslice) = net.named_network(&front).unwrap();
    let (bb, bs, _) = net.named_network(&back).unwrap();
    assert_ne!(fb, bb);
    assert_ne!(fs, bs);
    // Addresses come from this node's slice; the gateway is its first.
    let fslice = fslice.unwrap();
    assert!(fslice.contains(atts["netnamed-client"].address));
    assert_eq!(atts["netnamed-client"].gateway.to_string(), "10.214.8.65");
    let ip = |id: &str, ifname: &str| {
        atts[id]
            .interfaces
            .iter()
            .find(|f| f.ifname == ifname)
            .unwrap()
            .address
    };
    let ns = |id: &str| atts[id].netns.clone();
    assert!(bs.contains(ip("netnamed-db", "eth0")));
    assert!(fs.contains(ip("netnamed-web", "eth0")) && bs.contains(ip("netnamed-web", "eth1")));
    // Give the servers a moment to listen.
    get(&format!("{}:80", ip("netnamed-db", "eth0")));
    get(&format!("{}:80", ip("netnamed-client", "eth0")));

    // Members reach each other, both ways.
    assert!(reaches(&ns("netnamed-web"), ip("netnamed-db", "eth0")));
    assert!(reaches(&ns("netnamed-db"), ip("netnamed-web", "eth1")));
    assert!(reaches(&ns("netnamed-client"), ip("netnamed-web", "eth0")));
    assert!(reaches(&ns("netnamed-web"), ip("netnamed-client", "eth0")));
    // Across networks nothing passes, either way.
    assert!(!reaches(&ns("netnamed-client"), ip("netnamed-db", "eth0")));
    assert!(!reaches(&ns("netnamed-db"), ip("netnamed-client", "eth0")));
    assert!(!reaches(&ns("netnamed-other"), ip("netnamed-db", "eth0")));
    assert!(!reaches(&ns("netnamed-db"), ip("netnamed-other", "eth0")));
    assert!(!reaches(&ns("netnamed-other"), ip("netnamed-web", "eth0")));

    // Attached allocations keep their networks even when the caller's
    // idea of what is in use is behind (it was taken before they joined).
    net.sync(&[], Some(&BTreeSet::new())).await.unwrap();
    let link = |b: &str| std::path::Path::new("/sys/class/net").join(b).exists();
    assert!(link(&fb) && link(&bb));
    assert!(net.named_network(&front).is_some() && net.named_network(&back).is_some());

    drop(servers);
    for (id, att) in &atts {
        net.detach(id, Some(att)).await.unwrap();
    }
    assert!(net.orphans(&BTreeSet::new()).is_empty());
    for id in atts.keys() {
        assert_eq!(count(&format!("iptables-save | grep -c {id}")), 0, "{id}");
    }
    // A network still in use stays; once the server no longer lists them
    // and nothing uses them, bridges, rules and leases go.
    let in_use = BTreeSet::from([back.clone()]);
    net.sync(&[], Some(&in_use)).await.unwrap();
    assert!(!link(&fb) && link(&bb));
    net.sync(&[], Some(&BTreeSet::new())).await.unwrap();
    for bridge in [&fb, &bb] {
        assert!(!link(bridge), "{bridge} left behind");
        assert_eq!(
            count(&format!("iptables-save | grep -c -- '{bridge} '")),
            0,
            "{bridge}"
        );
    }
    assert!(net.named_network(&front).is_none());
    let _ = Command::new("ip")
        .args(["link", "del", "edgetest3"])
        .status();
}

/// A bridge of a named network's name that an earlier agent left behind
/// (its state gone, its address another network's) is replaced: members
/// of the network this agent was given attach and get its addresses.
#[tokio::test]
async fn a_leftover_bridge_of_an_earlier_agent_is_replaced() {
    if !enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let net = network(dir.path(), "edgetest5", "10.213.5.0/24");
    let bridge = "edgetest5-0";
    let ip = |args: &[&str]| {
        let out = Command::new("ip").args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    ip(&["link", "del", bridge]);
    ip(&["link", "add", "name", bridge, "type", "bridge"]);
    ip(&["addr", "add", "10.214.20.1/24", "dev", bridge]);
    let leftover_rule = Command::new("iptables")
        .args(["-w", "-A", "EDGE-ISOLATION", "-o", bridge, "-j", "DROP"])
        .status()
        .unwrap();
    assert!(leftover_rule.success());
    let key = "default/shop/front".to_string();
    let def = edge_net::OverlayDef {
        key: key.clone(),
        vni: 7,
        subnet: "10.214.21.0/24".parse().unwrap(),
        slice: "10.214.21.0/26".parse().unwrap(),
        peers: vec![],
    };
    net.sync(std::slice::from_ref(&def), None).await.unwrap();
    assert_eq!(net.named_network(&key).unwrap().0, bridge);
    assert_eq!(
        count(&format!("iptables-save | grep -c -- '{bridge} '")),
        0,
        "the leftover's rules went with it"
    );
    let att = net
        .attach("leftover-a", &[], std::slice::from_ref(&key))
        .await
        .unwrap();
    assert!(def.slice.contains(att.address), "{}", att.address);
    let addrs = ip(&["-o", "addr", "show", "dev", bridge]);
    assert!(!addrs.contains("10.214.20.1"), "{addrs}");
    assert!(addrs.contains("10.214.21.1/24"), "{addrs}");
    net.detach("leftover-a", Some(&att)).await.unwrap();
    net.sync(&[], Some(&BTreeSet::new())).await.unwrap();
    assert!(!std::path::Path::new("/sys/class/net").join(bridge).exists());
}
