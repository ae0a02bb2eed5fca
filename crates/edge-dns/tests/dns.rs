//! The DNS server on real UDP/TCP sockets: zone answers from a catalog, updates, forwarding and bad packets.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use edge_api::{Catalog, CatalogService, HealthStatus, ServiceInstance};
use edge_dns::{DnsConfig, DnsError, DnsHandle, serve};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;

const LB: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 42));

fn inst(
    svc: &str,
    alloc: &str,
    node: &str,
    addr: &str,
    port: u16,
    status: HealthStatus,
) -> ServiceInstance {
    ServiceInstance {
        namespace: "default".to_string(),
        service: svc.to_string(),
        alloc_id: alloc.to_string(),
        job_id: "job".to_string(),
        group: "g".to_string(),
        node_id: format!("id-{node}"),
        node_name: node.to_string(),
        address: addr.to_string(),
        port,
        tags: Vec::new(),
        status,
        canary: false,
        networks: Default::default(),
    }
}

fn catalog(index: u64, services: Vec<(&str, Vec<ServiceInstance>)>) -> Arc<Catalog> {
    let services: BTreeMap<_, _> = services
        .into_iter()
        .map(|(name, instances)| {
            let svc = CatalogService {
                namespace: "default".to_string(),
                name: name.to_string(),
                tags: Vec::new(),
                publish: None,
                canary_weight: None,
                activation: None,
                scaled_by: None,
                instances,
            };
            (name.to_string(), svc)
        })
        .collect();
    Arc::new(Catalog {
        index,
        services,
        networks: Default::default(),
    })
}

/// web: 3 passing instances on 2 nodes plus a critical one; api: one passing;
/// down: only unhealthy instances.
fn base_catalog() -> Arc<Catalog> {
    use HealthStatus::*;
    catalog(
        7,
        vec![
            (
                "web",
                vec![
                    inst("web", "a1", "node-a", "127.0.1.1", 20001, Passing),
                    inst("web", "a2", "node-a", "127.0.1.1", 20002, Passing),
                    inst("web", "a3", "node-b", "127.0.1.2", 20003, Passing),
                    inst("web", "a4", "node-c", "127.0.1.3", 20004, Critical),
                ],
            ),
            (
                "api",
                vec![inst("api", "b1", "node-b", "127.0.1.2", 30001, Passing)],
            ),
            (
                "down",
                vec![
                    inst("down", "c1", "node-a", "127.0.1.1", 40001, Critical),
                    inst("down", "c2", "node-b", "127.0.1.2", 40002, Pending),
                    inst("down", "c3", "node-b", "127.0.1.2", 40003, Draining),
                ],
            ),
        ],
    )
}

fn config(domain: &str, upstreams: Vec<SocketAddr>) -> DnsConfig {
    DnsConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        domain: domain.to_string(),
        lb_address: LB,
        upstreams,
        ttl: 5,
        forward_allow: Vec::new(),
        own_addresses: Vec::new(),
        also_listen: Vec::new(),
    }
}

/// A second server playing the host's resolver: `www.example.org` exists, nothing else does.
/// Its catalog never changes, so its sender can go.
async fn fake_upstream() -> Result<DnsHandle> {
    let cat = catalog(
        1,
        vec![(
            "www",
            vec![inst(
                "www",
                "u1",
                "up",
                "127.0.2.1",
                80,
                HealthStatus::Passing,
            )],
        )],
    );
    let (_, rx) = watch::channel(cat);
    let mut cfg = config("example.org", vec!["127.0.0.1:9".parse()?]);
    cfg.lb_address = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    Ok(serve(cfg, rx).await?)
}

async fn start() -> Result<(DnsHandle, watch::Sender<Arc<Catalog>>, DnsHandle)> {
    let up = fake_upstream().await?;
    let (tx, rx) = watch::channel(base_catalog());
    let dns = serve(config("service.edge", vec![up.udp_addr()]), rx).await?;
    Ok((dns, tx, up))
}

fn query_bytes(name: &str, rtype: RecordType) -> Result<(u16, Vec<u8>)> {
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_str(name)?, rtype));
    Ok((msg.metadata.id, msg.to_vec()?))
}

async fn udp_raw(addr: SocketAddr, bytes: &[u8]) -> Result<Option<Vec<u8>>> {
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    sock.send_to(bytes, addr).await?;
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(Duration::from_millis(500), sock.recv(&mut buf)).await {
        Ok(n) => {
            buf.truncate(n?);
            Ok(Some(buf))
        }
        Err(_) => Ok(None),
    }
}

async fn udp(addr: SocketAddr, name: &str, rtype: RecordType) -> Result<Message> {
    let (id, bytes) = query_bytes(name, rtype)?;
    let answer = udp_raw(addr, &bytes).await?.context("no udp answer")?;
    let msg = Message::from_vec(&answer)?;
    if msg.metadata.id != id {
        bail!("answer id {} for query id {id}", msg.metadata.id);
    }
    Ok(msg)
}

async fn tcp(addr: SocketAddr, name: &str, rtype: RecordType) -> Result<Message> {
    let (id, bytes) = query_bytes(name, rtype)?;
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(&(bytes.len() as u16).to_be_bytes())
        .await?;
    stream.write_all(&bytes).await?;
    let len = stream.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await?;
    let msg = Message::from_vec(&buf)?;
    assert_eq!(msg.metadata.id, id);
    Ok(msg)
}

fn a_records(msg: &Message) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = msg
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

fn has_soa(msg: &Message) -> bool {
    msg.authorities.iter().any(|r| {
        r.record_type() == RecordType::SOA && r.name == Name::from_str("service.edge.").unwrap()
    })
}

#[tokio::test]
async fn service_name_answers_the_load_balancer() -> Result<()> {
    let (dns, _tx, _up) = start().await?;
    let msg = udp(dns.udp_addr(), "web.service.edge.", RecordType::A).await?;
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert!(msg.metadata.authoritative);
    assert_eq!(a_records(&msg), vec![LB]);
    assert_eq!(msg.answers[0].ttl, 5);

    // Names are case-insensitive, and the question comes back as asked.
    let mut msg = Message::query();
    msg.add_query(Query::query(
        Name::from_ascii("WeB.Service.EDGE.")?,
        RecordType::A,
    ));
    let bytes = msg.to_vec()?;
    let answer = udp_raw(dns.udp_addr(), &bytes)
        .await?
        .context("no answer")?;
    assert_eq!(a_records(&Message::from_vec(&answer)?), vec![LB]);
    assert_eq!(
        &answer[12..bytes.len()],
        &bytes[12..],
        "question echoed byte for byte"
    );

    // The same question again under other ids (answered from the loop's cache) keeps each id.
    let (_, mut bytes) = query_bytes("web.service.edge.", RecordType::A)?;
    for id in [0x0102u16, 0xfffe, 0x0102] {
        bytes[..2].copy_from_slice(&id.to_be_bytes());
        let answer = udp_raw(dns.udp_addr(), &bytes)
            .await?
            .context("no answer")?;
        let msg = Message::from_vec(&answer)?;
        assert_eq!(msg.metadata.id, id);
        assert_eq!(a_records(&msg), vec![LB]);
    }

    // The name exists but has no AAAA: NODATA with the SOA.
    let msg = udp(dns.udp_addr(), "web.service.edge.", RecordType::AAAA).await?;
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert!(msg.answers.is_empty());
    assert!(has_soa(&msg));
    dns.shutdown().await;
    Ok(())
}

/// `web` in namespace `prod` is `web.prod.service.edge` (with its
/// `tasks.`, `canary.` and SRV names under the namespace); `web.service.edge`
/// stays the default namespace's `web`.
#[tokio::test]
async fn a_namespace_is_a_label_under_the_service_name() -> Result<()> {
    use HealthStatus::Passing;
    let mut cat = (*base_catalog()).clone();
    let mut prod = inst("web", "p1", "node-p", "127.0.3.1", 50001, Passing);
    prod.namespace = "prod".to_string();
    prod.canary = true;
    cat.services.insert(
        "web.prod".to_string(),
        CatalogService {
            namespace: "prod".to_string(),
            name: "web".to_string(),
            tags: Vec::new(),
            publish: None,
            canary_weight: None,
            activation: None,
            scaled_by: None,
            instances: vec![prod],
        },
    );
    let (tx, rx) = watch::channel(Arc::new(cat));
    let dns = serve(config("service.edge", vec!["127.0.0.1:9".parse()?]), rx).await?;
    let msg = udp(dns.udp_addr(), "web.prod.service.edge.", RecordType::A).await?;
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&msg), vec![LB]);
    let msg = udp(
        dns.udp_addr(),
        "tasks.web.prod.service.edge.",
        RecordType::A,
    )
    .await?;
    assert_eq!(a_records(&msg), vec!["127.0.3.1".parse::<IpAddr>()?]);
    let msg = udp(
        dns.udp_addr(),
        "canary.web.prod.service.edge.",
        RecordType::A,
    )
    .await?;
    assert_eq!(a_records(&msg), vec!["127.0.3.1".parse::<IpAddr>()?]);
    let msg = udp(
        dns.udp_addr(),
        "_web._tcp.prod.service.edge.",
        RecordType::SRV,
    )
    .await?;
    assert_eq!(msg.answers.len(), 1, "{msg:?}");
    // The default namespace's web keeps its own instances.
    let msg = udp(dns.udp_addr(), "tasks.web.service.edge.", RecordType::A).await?;
    assert_eq!(
        a_records(&msg),
        vec!["127.0.1.1".parse::<IpAddr>()?, "127.0.1.2".parse()?]
    );
    let msg = udp(dns.udp_addr(), "api.prod.service.edge.", RecordType::A).await?;
    assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
    drop(tx);
    dns.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn ipv6_load_balancer_answers_aaaa() -> Result<()> {
    let (tx, rx) = watch::channel(base_catalog());
    let mut cfg = config("service.edge", vec!["127.0.0.1:9".parse()?]);
    cfg.lb_address = "::1".parse()?;
    let dns = serve(cfg, rx).await?;
    let msg = udp(dns.udp_addr(), "api.service.edge.", RecordType::AAAA).await?;
    assert_eq!(a_records(&msg), vec!["::1".parse::<IpAddr>()?]);
    let msg = udp(dns.udp_addr(), "api.service.edge.", RecordType::A).await?;
    assert!(msg.answers.is_empty());
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    drop(tx);
    dns.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn tasks_name_answers_each_serving_node_once() -> Result<()> {
    let (dns, _tx, _up) = start().await?;
    let msg = udp(dns.udp_addr(), "tasks.web.service.edge.", RecordType::A).await?;
    // 3 passing instances on 2 nodes; the critical one on node-c is left out.
    assert_eq!(
        a_records(&msg),
        vec!["127.0.1.1".parse::<IpAddr>()?, "127.0.1.2".parse()?]
    );
    dns.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn srv_has_one_record_per_instance_with_glue() -> Result<()> {
    let (dns, _tx, _up) = start().await?;
    let msg = udp(dns.udp_addr(), "_web._tcp.service.edge.", RecordType::SRV).await?;
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    let mut srv: Vec<(String, u16)> = msg
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.target.to_string(), s.port)),
            _ => None,
        })
        .collect();
    srv.sort();
    assert_eq!(
        srv,
        vec![
            ("node-a.node.service.edge.".to_string(), 20001),
            ("node-a.node.service.edge.".to_string(), 20002),
            ("node-b.node.service.edge.".to_string(), 20003),
        ]
    );
    let mut glue: Vec<(String, IpAddr)> = msg
        .additionals
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some((r.name.to_string(), IpAddr::V4(a.0))),
            _ => None,
        })
        .collect();
    glue.sort();
    assert_eq!(
        glue,
        vec![
            (
                "node-a.node.service.edge.".to_string(),
                "127.0.1.1".parse()?
            ),
            (
                "node-b.node.service.edge.".to_string(),
                "127.0.1.2".parse()?
            ),
        ]
    );
    // The SRV targets resolve by themselves too.
    let msg = udp(dns.udp_addr(), "node-b.node.service.edge.", RecordType::A).await?;
    assert_eq!(a_records(&msg), vec!["127.0.1.2".parse::<IpAddr>()?]);
    dns.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn unhealthy_instances_are_not_answered() -> Result<()> {
    let (dns, _tx, _up) = start().await?;
    for name in ["down.service.edge.", "tasks.down.service.edge."] {
        let msg = udp(dns.udp_addr(), name, RecordType::A).await?;
        assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert!(has_soa(&msg));
    }
    let msg = udp(dns.udp_addr(), "_down._tcp.service.edge.", RecordType::SRV).await?;
    assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
    // node-c only has web's critical instance: it is no SRV target.
    let msg = udp(dns.udp_addr(), "node-c.node.service.edge.", RecordType::A).await?;
    assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
    dns.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn unknown_names_in_the_zone_are_nxdomain_with_soa() -> Result<()> {
    let (dns, _tx, _up) = start().await?;
    for name in [
        "nope.service.edge.",
        "a.b.web.service.edge.",
        "_nope._tcp.service.edge.",
    ] {
        let msg = udp(dns.udp_addr(), name, RecordType::A).await?;
        assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert!(msg.metadata.authoritative);
        assert!(msg.answers.is_empty());
        assert!(has_soa(&msg), "{name}");
    }
    let msg = udp(dns.udp_addr(), "service.edge.", RecordType::SOA).await?;
    assert_eq!(msg.answers.len(), 1);
    match &msg.answers[0].data {
        RData::SOA(soa) => assert_eq!(soa.serial, 7),
        other => bail!("apex answered {other:?}"),
    }
    dns.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn answers_follow_catalog_changes() -> Result<()> {
    let (dns, tx, _up) = start().await?;
    let msg = udp(dns.udp_addr(), "new.service.edge.", RecordType::A).await?;
    assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);

    let mut next = (*base_catalog()).clone();
    next.index = 8;
    next.services.remove("web");
    let added = catalog(
        8,
        vec![(
            "new",
            vec![inst(
                "new",
                "n1",
                "node-z",
                "127.0.1.9",
                5000,
                HealthStatus::Passing,
            )],
        )],
    );
    next.services.extend(added.services.clone());
    tx.send(Arc::new(next))?;

    // The rebuild runs on another task: give it up to the one second the design allows.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let msg = udp(dns.udp_addr(), "new.service.edge.", RecordType::A).await?;
        if msg.metadata.response_code == ResponseCode::NoError {
            assert_eq!(a_records(&msg), vec![LB]);
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("catalog change not seen within 1s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let msg = udp(dns.udp_addr(), "tasks.new.service.edge.", RecordType::A).await?;
    assert_eq!(a_records(&msg), vec!["127.0.1.9".parse::<IpAddr>()?]);
    let msg = udp(dns.udp_addr(), "web.service.edge.", RecordType::A).await?;
    assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
    dns.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn other_names_are_forwarded_keeping_the_rcode() -> Result<()> {
    let (dns, _tx, _up) = start().await?;
    let msg = udp(dns.udp_addr(), "www.example.org.", RecordType::A).await?;
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&msg), vec!["192.0.2.10".parse::<IpAddr>()?]);
    assert!(msg.metadata.recursion_available);

    let msg = udp(dns.udp_addr(), "nope.example.org.", RecordType::A).await?;
    assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
    assert!(msg.answers.is_empty());

    let msg = tcp(dns.tcp_addr(), "www.example.org.", RecordType::A).await?;
    assert_eq!(a_records(&msg), vec!["192.0.2.10".parse::<IpAddr>()?]);
    let msg = tcp(dns.tcp_addr(), "nope.example.org.", RecordType::A).await?;
    assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
    dns.shutdown().await;
    Ok(())
}

/// A query from `from` (a loopback address other than 127.0.0.1, which
/// counts as a foreign client unless listed) over UDP and TCP.
async fn query_from(from: IpAddr, dns: &DnsHandle, name: &str) -> Result<[Message; 2]> {
    let (id, bytes) = query_bytes(name, RecordType::A)?;
    let sock = UdpSocket::bind(SocketAddr::new(from, 0)).await?;
    sock.send_to(&bytes, dns.udp_addr()).await?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf)).await??;
    let over_udp = Message::from_vec(&buf[..n])?;
    assert_eq!(over_udp.metadata.id, id);
    let tcp_sock = tokio::net::TcpSocket::new_v4()?;
    tcp_sock.bind(SocketAddr::new(from, 0))?;
    let mut stream = tcp_sock.connect(dns.tcp_addr()).await?;
    stream
        .write_all(&(bytes.len() as u16).to_be_bytes())
        .await?;
    stream.write_all(&bytes).await?;
    let len = stream.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await?;
    Ok([over_udp, Message::from_vec(&buf)?])
}

#[tokio::test]
async fn only_local_and_listed_clients_are_forwarded() -> Result<()> {
    let up = fake_upstream().await?;
    let stranger: IpAddr = "127.0.0.2".parse()?;
    let (_tx, rx) = watch::channel(base_catalog());
    let mut cfg = config("service.edge", vec![up.udp_addr()]);
    cfg.forward_allow = vec!["127.0.0.3/32".parse()?];
    let dns = serve(cfg, rx.clone()).await?;
    // Twice: a refusal must not reach the answer cache.
    for _ in 0..2 {
        for msg in query_from(stranger, &dns, "www.example.org.").await? {
            assert_eq!(msg.metadata.response_code, ResponseCode::Refused);
            assert!(msg.answers.is_empty());
        }
    }
    // The zone itself still answers everyone.
    for msg in query_from(stranger, &dns, "web.service.edge.").await? {
        assert_eq!(a_records(&msg), vec![LB]);
    }
    for from in ["127.0.0.1", "127.0.0.3"] {
        for msg in query_from(from.parse()?, &dns, "www.example.org.").await? {
            assert_eq!(
                a_records(&msg),
                vec!["192.0.2.10".parse::<IpAddr>()?],
                "{from} {msg:?}"
            );
        }
    }
    dns.shutdown().await;
    // This node's own addresses count as local.
    let mut cfg = config("service.edge", vec![up.udp_addr()]);
    cfg.own_addresses = vec![stranger];
    let dns = serve(cfg, rx).await?;
    for msg in query_from(stranger, &dns, "www.example.org.").await? {
        assert_eq!(a_records(&msg), vec!["192.0.2.10".parse::<IpAddr>()?]);
    }
    dns.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn unreachable_upstream_is_servfail() -> Result<()> {
    let (_tx, rx) = watch::channel(base_catalog());
    // Nothing listens on the discard port: the upstream answers nothing or refuses.
    let dns = serve(config("service.edge", vec!["127.0.0.1:9".parse()?]), rx).await?;
    let (_, bytes) = query_bytes("www.example.org.", RecordType::A)?;
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    sock.send_to(&bytes, dns.udp_addr()).await?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf)).await??;
    let msg = Message::from_vec(&buf[..n])?;
    assert_eq!(msg.metadata.response_code, ResponseCode::ServFail);
    dns.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn tcp_queries_are_answered() -> Result<()> {
    let (dns, _tx, _up) = start().await?;
    // With port 0, TCP shares UDP's port only when that port is free for TCP
    // too; another test may hold it, so only the answers are checked here.
    let msg = tcp(dns.tcp_addr(), "web.service.edge.", RecordType::A).await?;
    assert_eq!(a_records(&msg), vec![LB]);
    let msg = tcp(dns.tcp_addr(), "_web._tcp.service.edge.", RecordType::SRV).await?;
    assert_eq!(msg.answers.len(), 3);
    let msg = tcp(dns.tcp_addr(), "nope.service.edge.", RecordType::A).await?;
    assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
    dns.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn malformed_packets_never_take_the_server_down() -> Result<()> {
    let (dns, _tx, _up) = start().await?;
    let addr = dns.udp_addr();
    // Shorter than a header, random junk, a header claiming records that are not there.
    for junk in [
        &b"\x01"[..],
        &b"garbage that is not dns at all!!"[..],
        &[
            0x12, 0x34, 0x01, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, b'a',
        ][..],
    ] {
        if let Some(answer) = udp_raw(addr, junk).await? {
            let msg = Message::from_vec(&answer)?;
            assert_eq!(msg.metadata.response_code, ResponseCode::FormErr);
        }
    }
    // A well-formed query without a question is a format error.
    let empty = [0xab, 0xcd, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
    let answer = udp_raw(addr, &empty)
        .await?
        .context("no answer to an empty query")?;
    let msg = Message::from_vec(&answer)?;
    assert_eq!(msg.metadata.id, 0xabcd);
    assert_eq!(msg.metadata.response_code, ResponseCode::FormErr);

    // Two questions in one message: format error too.
    let mut two = Message::query();
    two.add_query(Query::query(
        Name::from_str("web.service.edge.")?,
        RecordType::A,
    ));
    two.add_query(Query::query(
        Name::from_str("api.service.edge.")?,
        RecordType::A,
    ));
    let answer = udp_raw(addr, &two.to_vec()?)
        .await?
        .context("no answer to two questions")?;
    assert_eq!(
        Message::from_vec(&answer)?.metadata.response_code,
        ResponseCode::FormErr
    );

    // Garbage on TCP closes that connection only.
    let mut stream = TcpStream::connect(dns.tcp_addr()).await?;
    stream.write_all(&[0x00, 0x03, 0xff, 0xff, 0xff]).await?;
    drop(stream);

    let msg = udp(addr, "web.service.edge.", RecordType::A).await?;
    assert_eq!(a_records(&msg), vec![LB]);
    let msg = tcp(dns.tcp_addr(), "web.service.edge.", RecordType::A).await?;
    assert_eq!(a_records(&msg), vec![LB]);
    dns.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn bad_config_is_a_clear_error() -> Result<()> {
    let (_tx, rx) = watch::channel(base_catalog());
    let err = serve(config("bad..domain", vec![]), rx.clone())
        .await
        .err()
        .context("accepted a bad domain")?;
    assert!(matches!(err, DnsError::InvalidDomain { .. }), "{err}");

    let taken = UdpSocket::bind("127.0.0.1:0").await?;
    let mut cfg = config("service.edge", vec![]);
    cfg.listen = taken.local_addr()?;
    let err = serve(cfg, rx).await.err().context("bound a taken port")?;
    assert!(matches!(err, DnsError::Bind { proto: "udp", .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("bind dns udp socket on 127.0.0.1:"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn shutdown_frees_the_port() -> Result<()> {
    let (_tx, rx) = watch::channel(base_catalog());
    // With port 0, TCP falls back to another port when UDP's twin belongs to
    // some other socket (another test's connection); rebinding that exact
    // address would then meet that socket, not a leftover of ours.
    let dns = loop {
        let dns = serve(config("service.edge", vec![]), rx.clone()).await?;
        if dns.tcp_addr() == dns.udp_addr() {
            break dns;
        }
        dns.shutdown().await;
    };
    let addr = dns.udp_addr();
    dns.shutdown().await;
    let mut cfg = config("service.edge", vec![]);
    cfg.listen = addr;
    let again = serve(cfg, rx).await?;
    assert_eq!(again.udp_addr(), addr);
    again.shutdown().await;
    Ok(())
}

/// The extra addresses answer like the main one, over UDP and TCP, at its
/// port; one that is on no interface yet binds all the same, and one
/// taken by another server is skipped while the rest serves.
#[tokio::test]
async fn also_listen_answers_at_the_same_port() -> Result<()> {
    let up = fake_upstream().await?;
    let extra: IpAddr = "127.0.0.2".parse()?;
    let absent: IpAddr = "192.0.2.123".parse()?;
    let mut cfg = config("service.edge", vec![up.udp_addr()]);
    cfg.also_listen = vec![extra, absent];
    let (_tx, rx) = watch::channel(base_catalog());
    let dns = serve(cfg, rx).await?;
    let at = SocketAddr::new(extra, dns.udp_addr().port());
    let msg = udp(at, "web.service.edge.", RecordType::A).await?;
    assert_eq!(a_records(&msg), vec![LB]);
    let msg = tcp(at, "web.service.edge.", RecordType::A).await?;
    assert_eq!(a_records(&msg), vec![LB]);

    // A second server on the same port of the extra address: that one
    // listener is skipped, the server runs on its own address.
    let mut taken = config("service.edge", vec![up.udp_addr()]);
    taken.also_listen = vec![extra];
    let (_tx2, rx2) = watch::channel(base_catalog());
    taken.listen = SocketAddr::new("127.0.0.3".parse()?, dns.udp_addr().port());
    let second = serve(taken, rx2).await?;
    let msg = udp(second.udp_addr(), "web.service.edge.", RecordType::A).await?;
    assert_eq!(a_records(&msg), vec![LB]);
    second.shutdown().await;
    dns.shutdown().await;
    up.shutdown().await;
    Ok(())
}
