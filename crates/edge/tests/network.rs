//! End-to-end tests of bridge networking with the real binary, the real CNI
//! plugins and the real kernel (gated by `EDGE_TEST_ROOT=1`): two exec
//! allocations both listen on port 80 in namespaces of their own and answer
//! through their host ports, a wasm HTTP task serves inside its namespace,
//! an agent `kill -9` and restart keeps every address and mapping, and
//! `edge job stop` leaves no namespace, lease or NAT rule behind.

mod common;

use common::{Dev, cli, free_port, host_ip, repo, start_bridged, until};
use edge_api::{Client, QueryOptions};
use edge_spec::{Allocation, ClientStatus};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

const BRIDGE: &str = "edgee2e0";
const SUBNET: &str = "10.215.0.0/24";

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn job_file(dir: &Path) -> String {
    let path = dir.join("netweb.hcl");
    let module = repo().join("examples/wasm/web.wat");
    std::fs::write(
        &path,
        format!(
            r#"job "netweb" {{
  type = "service"
  group "web" {{
    count = 2
    network {{
      mode = "bridge"
      port "http" {{
        to = 80
      }}
    }}
    task "httpd" {{
      driver = "exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "echo \"$EDGE_ALLOC_IP\" > \"$EDGE_TASK_DIR/index.html\" && exec busybox httpd -f -p 80 -h \"$EDGE_TASK_DIR\""]
      }}
      resources {{
        cpu    = 50
        memory = 32
      }}
    }}
  }}
  group "wasm" {{
    network {{
      mode = "bridge"
      port "http" {{
        to = 8080
      }}
    }}
    task "handler" {{
      driver = "wasm"
      config {{
        module = "{}"
        mode   = "http"
        port   = "http"
      }}
      resources {{
        cpu    = 50
        memory = 32
      }}
    }}
  }}
}}
"#,
            module.display()
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// The allocations of `job` that run with an address, once there are
/// `count` of them.
async fn running(api: &Client, job: &str, count: usize) -> Vec<Allocation> {
    let what = format!("{count} allocations of {job} running with addresses");
    until(90, &what, async || {
        let (allocs, _) = api.job_allocs(job, QueryOptions::default()).await.ok()?;
        let mut out = Vec::new();
        for a in allocs {
            let a = api.alloc(&a.id).await.ok()?;
            if a.client_status == ClientStatus::Running && a.address.is_some() {
                out.push(a);
            }
        }
        (out.len() >= count).then_some(out)
    })
    .await
}

/// By id.
fn by_id(allocs: Vec<Allocation>) -> BTreeMap<String, Allocation> {
    allocs.into_iter().map(|a| (a.id.clone(), a)).collect()
}

/// By group.
fn by_group(allocs: Vec<Allocation>) -> BTreeMap<String, Allocation> {
    allocs.into_iter().map(|a| (a.group.clone(), a)).collect()
}

fn host_port(a: &Allocation) -> u16 {
    a.resources.ports[0].value
}

async fn get(url: &str) -> Option<String> {
    let r = reqwest::get(url).await.ok()?;
    r.status().is_success().then_some(())?;
    r.text().await.ok()
}

/// What each allocation answers through its host port.
async fn answers(allocs: &BTreeMap<String, Allocation>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (id, a) in allocs {
        let url = format!("http://127.0.0.1:{}/", host_port(a));
        let body = until(20, &format!("{} answers on {url}", a.name), async || {
            get(&url).await
        })
        .await;
        out.insert(id.clone(), body);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_allocations_share_port_80_survive_an_agent_kill_and_leave_nothing() {
    if !common::gated("EDGE_TEST_ROOT") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Dev {
        proc: mut dev,
        addr,
        api,
        data,
        args,
    } = Dev::start(dir.path(), BRIDGE, SUBNET, &[]).await;

    let (ok, out) = cli(&addr, &["job", "run", &job_file(dir.path())]);
    assert!(ok, "job run failed: {out}");
    let allocs = by_id(running(&api, "netweb", 3).await);
    let subnet: edge_net::Subnet = SUBNET.parse().unwrap();
    let addresses: Vec<Ipv4Addr> = allocs.values().filter_map(|a| a.address).collect();
    assert_eq!(addresses.len(), 3);
    for ip in &addresses {
        assert!(subnet.contains(*ip), "{ip} outside {SUBNET}");
    }
    let distinct: std::collections::BTreeSet<_> = addresses.iter().collect();
    assert_eq!(distinct.len(), 3, "{addresses:?}");

    // Both web copies listen on port 80, each in its own namespace; each
    // answers through its host port with its own address.
    let before = answers(&allocs).await;
    for (id, a) in &allocs {
        let body = &before[id];
        if a.group == "web" {
            assert_eq!(body.trim(), a.address.unwrap().to_string(), "{}", a.name);
            // The address is reachable from the host, on the port inside.
            let direct = get(&format!("http://{}:80/", a.address.unwrap())).await;
            assert_eq!(direct.as_deref(), Some(body.as_str()));
        } else {
            assert_eq!(body, "hello from wasm at /\n");
            // The wasm listener is in the allocation's namespace: its
            // address answers on the port inside.
            let direct = get(&format!("http://{}:8080/in", a.address.unwrap())).await;
            assert_eq!(direct.as_deref(), Some("hello from wasm at /in\n"));
        }
    }
    let status = cli(&addr, &["alloc", "status", allocs.keys().next().unwrap()]).1;
    assert!(
        status.contains("(bridge)") && status.contains("->"),
        "{status}"
    );

    // kill -9 and a new agent: the namespaces, addresses and mappings are
    // adopted, not made again.
    dev.kill9();
    // An attach the agent never recorded (it died in between): a namespace
    // and a lease in its state dir that no allocation owns.
    {
        let net = edge_net::BridgeNetwork::new(edge_net::BridgeConfig {
            bridge: BRIDGE.to_string(),
            subnet: SUBNET.parse().unwrap(),
            underlay: None,
            state_dir: data.join("agent/network"),
            plugin_dirs: edge_net::DEFAULT_PLUGIN_DIRS
                .iter()
                .map(Into::into)
                .collect(),
            dns: None,
            mtu: edge_net::DEFAULT_MTU,
        })
        .unwrap();
        net.attach("crashed-0000", &[], &[]).await.unwrap();
    }
    let _dev = start_bridged(dir.path(), &args, &api).await;
    let after_allocs = by_id(running(&api, "netweb", 3).await);
    assert_eq!(
        after_allocs.keys().collect::<Vec<_>>(),
        allocs.keys().collect::<Vec<_>>()
    );
    for (id, a) in &after_allocs {
        assert_eq!(a.address, allocs[id].address, "{}", a.name);
    }
    assert_eq!(answers(&after_allocs).await, before);
    let node = api.nodes().await.unwrap()[0].id.clone();
    let (ok, gc) = cli(&addr, &["node", "gc", &node, "-o", "json"]);
    assert!(ok, "{gc}");
    let gc: serde_json::Value = serde_json::from_str(&gc).unwrap();
    let removed = gc["removed"].as_array().unwrap();
    assert!(
        removed
            .iter()
            .any(|l| l["driver"] == "network" && l["id"] == "crashed-0000" && l["error"].is_null()),
        "{removed:?}"
    );
    assert!(!sh("ip netns list").contains("crashed-0000"));
    assert!(!sh("iptables-save -t nat").contains("crashed-0000"));
    // The running allocations were not touched.
    assert_eq!(answers(&after_allocs).await, before);

    let (ok, out) = cli(&addr, &["job", "stop", "netweb"]);
    assert!(ok, "{out}");
    until(60, "every allocation stopped", async || {
        let (allocs, _) = api
            .job_allocs("netweb", QueryOptions::default())
            .await
            .ok()?;
        for a in &allocs {
            let a = api.alloc(&a.id).await.ok()?;
            (a.client_status.is_terminal() && a.address.is_none()).then_some(())?;
        }
        Some(())
    })
    .await;
    let filter = sh("iptables-save -t filter");
    for ip in &addresses {
        assert!(
            !filter.contains(&format!(" {ip}/32 ")),
            "firewall rules of {ip} left"
        );
    }
    let leases = data.join("agent/network/ipam/edge");
    assert!(leases.is_dir(), "{} holds the leases", leases.display());
    for id in allocs.keys() {
        assert!(
            !sh("ip netns list").contains(id.as_str()),
            "namespace of {id} left"
        );
        assert!(
            !sh("iptables-save -t nat").contains(id.as_str()),
            "NAT rules of {id} left"
        );
        let leased = std::fs::read_dir(&leases)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|s| s.contains(id.as_str())));
        assert!(!leased, "address lease of {id} left");
    }
    let _ = Command::new("ip").args(["link", "del", BRIDGE]).status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_of_a_bridge_group_join_the_allocations_namespace() {
    if !common::gated("EDGE_TEST_ROOT") || !common::gated("EDGE_TEST_CONTAINERD") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Dev {
        proc: _dev,
        addr,
        api,
        ..
    } = Dev::start(dir.path(), "edgee2e1", "10.215.1.0/24", &[]).await;
    let image = "docker.io/edge/net-web:v1";
    let tar = common::build_image(dir.path(), image);
    let (ok, out) = cli(&addr, &["image", "import", tar.to_str().unwrap()]);
    assert!(ok, "{out}");
    let job = dir.path().join("netctr.hcl");
    std::fs::write(
        &job,
        format!(
            r#"job "netctr" {{
  group "web" {{
    count = 2
    network {{
      mode = "bridge"
      port "http" {{
        to = 8080
      }}
    }}
    task "t" {{
      driver = "containerd"
      config {{
        image = "{image}"
      }}
      resources {{
        cpu    = 50
        memory = 32
      }}
    }}
  }}
  group "nomad" {{
    network {{
      port "http" {{
        to = 8080
      }}
    }}
    task "t" {{
      driver = "docker"
      config {{
        image = "{image}"
        ports = ["http"]
      }}
      resources {{
        cpu    = 50
        memory = 32
      }}
    }}
  }}
  group "hostnet" {{
    network {{
      mode = "bridge"
    }}
    restart {{
      attempts = 0
      mode     = "fail"
    }}
    reschedule {{
      attempts  = 0
      unlimited = false
    }}
    task "t" {{
      driver = "containerd"
      config {{
        image        = "{image}"
        network_mode = "host"
      }}
      resources {{
        cpu    = 50
        memory = 32
      }}
    }}
  }}
}}
"#
        ),
    )
    .unwrap();
    let (ok, out) = cli(&addr, &["job", "run", "--detach", job.to_str().unwrap()]);
    assert!(ok, "{out}");
    let webs: Vec<Allocation> = running(&api, "netctr", 3)
        .await
        .into_iter()
        .filter(|a| a.group == "web" || a.group == "nomad")
        .collect();
    assert_eq!(webs.len(), 3, "{webs:?}");
    // The group written for Nomad's docker driver (no network mode, `to`,
    // `config.ports`) maps its port the same way.
    for a in &webs {
        let url = format!("http://127.0.0.1:{}/", host_port(a));
        let body = until(30, &format!("{} answers", a.name), async || get(&url).await).await;
        assert_eq!(body, "hello from edge\n");
        let direct = get(&format!("http://{}:8080/", a.address.unwrap())).await;
        assert_eq!(direct.as_deref(), Some("hello from edge\n"));
    }
    // A container cannot leave its group's namespace for the host's.
    let hostnet = until(60, "the host-network container refused", async || {
        let (allocs, _) = api
            .job_allocs("netctr", QueryOptions::default())
            .await
            .ok()?;
        let a = allocs.iter().find(|a| a.group == "hostnet")?;
        let a = api.alloc(&a.id).await.ok()?;
        (a.client_status == ClientStatus::Failed).then_some(a)
    })
    .await;
    let events: Vec<String> = hostnet.task_states["t"]
        .events
        .iter()
        .map(|e| e.message.clone())
        .collect();
    assert!(
        events
            .iter()
            .any(|m| m.contains("config.network_mode") && m.contains("bridge")),
        "{events:?}"
    );
    let (ok, out) = cli(&addr, &["job", "stop", "netctr"]);
    assert!(ok, "{out}");
    until(60, "the containers' namespaces removed", async || {
        let left = sh("ip netns list");
        webs.iter()
            .all(|a| !left.contains(a.id.as_str()))
            .then_some(())
    })
    .await;
    let _ = Command::new("ip")
        .args(["link", "del", "edgee2e1"])
        .status();
}

/// Whether `ip`:80 answers a request made from inside allocation
/// `alloc`'s namespace within a second.
fn reaches(alloc: &str, ip: Ipv4Addr) -> bool {
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/edge-{alloc}"))
        .args(["timeout", "1", "busybox", "wget", "-q", "-O", "/dev/null"])
        .arg(format!("http://{ip}/"))
        .status()
        .unwrap()
        .success()
}

fn shop_group(name: &str, networks: &str) -> String {
    format!(
        r#"  group "{name}" {{
    network {{
      mode     = "bridge"
      networks = [{networks}]
    }}
    task "httpd" {{
      driver = "exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "echo ok > \"$EDGE_TASK_DIR/index.html\" && exec busybox httpd -f -p 80 -h \"$EDGE_TASK_DIR\""]
      }}
      resources {{
        cpu    = 20
        memory = 16
      }}
    }}
  }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_named_networks_connect_their_members_and_keep_others_out() {
    if !common::gated("EDGE_TEST_ROOT") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Dev {
        proc: _dev,
        addr,
        api,
        ..
    } = Dev::start(
        dir.path(),
        "edgee2e2",
        "10.215.2.0/24",
        &["--network-pool", "10.215.8.0/22", "--network-prefix", "24"],
    )
    .await;
    let shop = dir.path().join("shop.hcl");
    std::fs::write(
        &shop,
        format!(
            "job \"shop\" {{\n  network \"front\" {{}}\n  network \"back\" {{}}\n{}{}{}}}\n",
            shop_group("client", "\"front\""),
            shop_group("web", "\"front\", \"back\""),
            shop_group("db", "\"back\""),
        ),
    )
    .unwrap();
    let other = dir.path().join("other.hcl");
    std::fs::write(
        &other,
        format!(
            "job \"other\" {{\n{}}}\n",
            shop_group("probe", "").replace("      networks = []\n", "")
        ),
    )
    .unwrap();
    for file in [&shop, &other] {
        let (ok, out) = cli(&addr, &["job", "run", "--detach", file.to_str().unwrap()]);
        assert!(ok, "{out}");
    }
    let shop = by_group(running(&api, "shop", 3).await);
    let probe = by_group(running(&api, "other", 1).await)
        .remove("probe")
        .unwrap();
    let (client, web, db) = (&shop["client"], &shop["web"], &shop["db"]);
    assert_eq!(client.networks.keys().collect::<Vec<_>>(), ["front"]);
    assert_eq!(web.networks.keys().collect::<Vec<_>>(), ["back", "front"]);
    assert_eq!(db.networks.keys().collect::<Vec<_>>(), ["back"]);
    assert!(probe.networks.is_empty());
    let status = cli(&addr, &["alloc", "status", &web.id]).1;
    assert!(status.contains("Network back"), "{status}");
    let (ok, ls) = cli(&addr, &["network", "ls"]);
    assert!(
        ok && ls.contains("front") && ls.contains("client,web") && ls.contains("10.215.8."),
        "{ls}"
    );
    let (ok, back) = cli(&addr, &["network", "status", "shop", "back", "-o", "json"]);
    assert!(ok, "{back}");
    let back: serde_json::Value = serde_json::from_str(&back).unwrap();
    let mut on_back: Vec<&str> = back["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["group"].as_str().unwrap())
        .collect();
    on_back.sort();
    assert_eq!(on_back, ["db", "web"]);
    // One node here: one slice of the network's subnet, holding both.
    let slices = back["slices"].as_object().unwrap();
    assert_eq!(slices.len(), 1, "{back}");
    // From the pool given, one /24 per network.
    let pool: edge_spec::Subnet = "10.215.8.0/22".parse().unwrap();
    let subnet: edge_spec::Subnet = back["subnet"].as_str().unwrap().parse().unwrap();
    assert!(
        pool.contains(subnet.network) && subnet.prefix == 24,
        "{back}"
    );
    let (ok, missing) = cli(&addr, &["network", "status", "shop", "nope"]);
    assert!(
        !ok && missing.contains("declares no network \"nope\""),
        "{missing}"
    );
    until(20, "the web server listens", async || {
        reaches(&client.id, web.networks["front"]).then_some(())
    })
    .await;

    assert!(reaches(&web.id, db.networks["back"]));
    assert!(reaches(&db.id, web.networks["back"]));
    assert!(reaches(&web.id, client.networks["front"]));
    assert!(!reaches(&client.id, db.networks["back"]));
    assert!(!reaches(&db.id, client.networks["front"]));
    assert!(!reaches(&probe.id, db.networks["back"]));
    assert!(!reaches(&db.id, probe.address.unwrap()));

    for job in ["shop", "other"] {
        cli(&addr, &["job", "stop", job]);
    }
    until(60, "namespaces removed", async || {
        let left = sh("ip netns list");
        shop.values()
            .chain([&probe])
            .all(|a| !left.contains(a.id.as_str()))
            .then_some(())
    })
    .await;
    // Nothing here uses the named networks any more: their bridges go.
    until(30, "the named networks' bridges removed", async || {
        let links = sh("ip -o link show");
        (!links.contains("edgee2e2-0") && !links.contains("edgee2e2-1")).then_some(())
    })
    .await;
    let _ = Command::new("ip")
        .args(["link", "del", "edgee2e2"])
        .status();
}

/// A bridge-mode exec job serving on port 80 as service `service`, its
/// task printing its group meta and `EDGE_DNS_ADDR`.
fn resolving_job(id: &str, service: &str) -> String {
    format!(
        r#"job "{id}" {{
  group "web" {{
    meta {{
      tier = "front"
    }}
    network {{
      mode = "bridge"
      port "http" {{
        to = 80
      }}
    }}
    service {{
      name = "{service}"
      port = "http"
    }}
    task "httpd" {{
      driver = "exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "echo meta=$EDGE_META_tier; echo dns=$EDGE_DNS_ADDR; echo ok > \"$EDGE_TASK_DIR/index.html\" && exec busybox httpd -f -p 80 -h \"$EDGE_TASK_DIR\""]
      }}
      resources {{
        cpu    = 20
        memory = 16
      }}
    }}
  }}
}}
"#
    )
}

/// Runs `resolving_job(id, service)` and waits for its copy, whose
/// resolver is `gateway`.
async fn run_resolving(
    addr: &str,
    api: &Client,
    data: &Path,
    (id, service): (&str, &str),
    gateway: &str,
) -> Allocation {
    let job = data.join(format!("{id}.hcl"));
    std::fs::write(&job, resolving_job(id, service)).unwrap();
    let (ok, out) = cli(addr, &["job", "run", "--detach", job.to_str().unwrap()]);
    assert!(ok, "{out}");
    let a = running(api, id, 1).await.remove(0);
    let resolv =
        std::fs::read_to_string(data.join(format!("agent/allocs/{}/resolv.conf", a.id))).unwrap();
    assert_eq!(
        resolv,
        format!("nameserver {gateway}\nsearch service.edge\n")
    );
    a
}

/// `name` looked up from inside `a`'s namespace at `server`.
fn lookup_in(a: &Allocation, name: &str, server: &str) -> String {
    sh(&format!(
        "nsenter --net=/run/netns/edge-{} timeout 5 busybox nslookup {name} {server} 2>&1",
        a.id
    ))
}

/// Stops `a`'s job, waits for its namespace to go, removes `bridge`.
async fn stop_resolving(addr: &str, a: &Allocation, bridge: &str) {
    let (ok, out) = cli(addr, &["job", "stop", &a.job_id]);
    assert!(ok, "{out}");
    until(60, "the namespace removed", async || {
        (!sh("ip netns list").contains(a.id.as_str())).then_some(())
    })
    .await;
    let _ = Command::new("ip").args(["link", "del", bridge]).status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_allocation_resolves_service_names_through_its_gateway() {
    if !common::gated("EDGE_TEST_ROOT") {
        return;
    }
    let ip = host_ip();
    let dir = tempfile::tempdir().unwrap();
    let dns_port = free_port().to_string();
    let Dev {
        proc: _dev,
        addr,
        api,
        data,
        ..
    } = Dev::start(
        dir.path(),
        "edgee2e3",
        "10.215.3.0/24",
        &["--advertise", &ip, "--dns-port", &dns_port, "--no-lb"],
    )
    .await;
    let subnet: edge_net::Subnet = "10.215.3.0/24".parse().unwrap();
    let gateway = subnet.gateway().to_string();
    let a = run_resolving(&addr, &api, &data, ("resolve", "resolveme"), &gateway).await;
    let logs = until(20, "the task's output", async || {
        let (ok, logs) = cli(&addr, &["alloc", "logs", &a.id, "httpd"]);
        (ok && logs.contains("dns=")).then_some(logs)
    })
    .await;
    assert!(logs.contains(&format!("dns={gateway}:53")), "{logs}");
    // Group meta reaches the task's environment.
    assert!(logs.contains("meta=front"), "{logs}");
    // From inside the namespace, port 53 of the gateway is the node's DNS.
    let lookup = |name: &str| lookup_in(&a, name, &gateway);
    let answer = until(20, "the service in the catalog", async || {
        let out = lookup("tasks.resolveme.service.edge");
        out.contains(&ip).then_some(out)
    })
    .await;
    assert!(answer.contains(&ip), "{answer}");
    let other = lookup("name.example.invalid");
    // Forwarded (the bridge subnet is one of the node's DNS clients), so
    // the answer is the upstream's (NXDOMAIN, or SERVFAIL offline), never
    // REFUSED.
    assert!(
        other.contains("server can't find") && !other.contains("REFUSED"),
        "{other}"
    );
    stop_resolving(&addr, &a, "edgee2e3").await;
}

/// `edge dev` as it starts, on loopback: its bridge-mode allocations still
/// get a resolver, the DNS answering on the default bridge's address too,
/// and find a service by name there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_node_answers_its_bridge_allocations_on_the_bridge() {
    if !common::gated("EDGE_TEST_ROOT") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dns_port = free_port().to_string();
    let Dev {
        proc: _dev,
        addr,
        api,
        data,
        ..
    } = Dev::start(
        dir.path(),
        "edgee2e4",
        "10.215.4.0/24",
        &["--dns-port", &dns_port, "--no-lb"],
    )
    .await;
    let gateway = "10.215.4.1";
    let a = run_resolving(&addr, &api, &data, ("loopdns", "loopdns"), gateway).await;
    let answer = until(20, "the service by name from inside", async || {
        let out = lookup_in(&a, "tasks.loopdns.service.edge", gateway);
        (out.contains("Address") && !out.contains("can't find")).then_some(out)
    })
    .await;
    assert!(answer.contains("127.0.0.1"), "{answer}");
    // From the host, the loopback address answers as before.
    let server: std::net::SocketAddr = format!("127.0.0.1:{dns_port}").parse().unwrap();
    let m = common::dns(
        server,
        "tasks.loopdns.service.edge.",
        hickory_proto::rr::RecordType::A,
    )
    .await;
    assert!(!m.answers.is_empty(), "{m:?}");
    stop_resolving(&addr, &a, "edgee2e4").await;
}
