//! Volumes in placement: a host volume is a node attribute the group needs
//! (writable unless it mounts read-only); a local volume holds its copy to
//! the node that first ran it, and says so when that node cannot take it.

use crate::common::{Cluster, group, job, node};
use edge_spec::{VolumeRequest, VolumeType};

fn host(source: &str, read_only: bool) -> VolumeRequest {
    VolumeRequest {
        name: "data".into(),
        kind: VolumeType::Host,
        source: source.into(),
        read_only,
        size: None,
    }
}

fn local() -> VolumeRequest {
    VolumeRequest {
        name: "db".into(),
        kind: VolumeType::Local,
        source: String::new(),
        read_only: false,
        size: None,
    }
}

#[test]
fn a_host_volume_places_only_where_the_node_offers_it() {
    let mut with = node("n2", 4000, 4000);
    with.attributes
        .insert(edge_spec::host_volume_attribute("pics"), "ro".into());
    let c = Cluster::new(vec![node("n1", 4000, 4000), with]);
    let mut g = group("g", 2, 100, 100);
    g.volumes.push(host("pics", true));
    let plan = c.plan(&job("web", vec![g.clone()]), 1);
    assert_eq!(plan.place.len(), 2);
    assert!(plan.place.iter().all(|a| a.node_id == "n2"));

    // Read-only on the node: a group that writes is not placed, and the
    // reason says what is missing.
    g.volumes[0] = host("pics", false);
    let plan = c.plan(&job("web", vec![g]), 1);
    assert!(plan.place.is_empty());
    let m = &plan.failed["g"];
    assert_eq!(m.nodes_filtered, 2);
    assert_eq!(
        m.constraint_filtered.keys().collect::<Vec<_>>(),
        ["missing writable host volume \"pics\""]
    );
}

#[test]
fn a_copy_goes_back_to_the_node_holding_its_local_volume() {
    let mut c = Cluster::new(
        (1..=4)
            .map(|i| node(&format!("n{i}"), 4000, 4000))
            .collect(),
    );
    let mut g = group("g", 2, 100, 100);
    g.volumes.push(local());
    let j = job("db", vec![g]);
    c.run(&j, 1);
    assert_eq!(c.volumes.len(), 2);
    let home: Vec<(u32, String)> = c
        .live("db")
        .iter()
        .map(|a| (a.index, a.node_id.clone()))
        .collect();
    // Stop everything and run again, many seeds: each copy lands where its
    // volume is, whatever the ranking would pick.
    for seed in 2..20 {
        for a in c.allocs.iter_mut() {
            a.desired_status = edge_spec::DesiredStatus::Stop;
            a.client_status = edge_spec::ClientStatus::Complete;
        }
        c.usage.clear();
        let plan = c.run(&j, seed);
        assert_eq!(plan.place.len(), 2, "seed {seed}");
        for a in &plan.place {
            let want = &home.iter().find(|(i, _)| *i == a.index).unwrap().1;
            assert_eq!(&a.node_id, want, "seed {seed}");
        }
    }
    assert_eq!(c.volumes.len(), 2, "no second volume for a copy");
}

#[test]
fn a_drained_or_gone_volume_node_blocks_only_its_copy_and_says_why() {
    let mut c = Cluster::new(vec![node("n1", 4000, 4000), node("n2", 4000, 4000)]);
    let mut g = group("g", 1, 100, 100);
    g.volumes.push(local());
    let j = job("db", vec![g]);
    c.run(&j, 1);
    let home = c.volumes[0].node_id.clone();
    for a in c.allocs.iter_mut() {
        a.desired_status = edge_spec::DesiredStatus::Stop;
        a.client_status = edge_spec::ClientStatus::Complete;
    }
    c.usage.clear();
    c.node_mut(&home).drain = true;
    let plan = c.plan(&j, 2);
    assert!(plan.place.is_empty(), "never starts empty elsewhere");
    let reason = plan.failed["g"]
        .constraint_filtered
        .keys()
        .next()
        .unwrap()
        .clone();
    assert!(
        reason.contains("local volume \"db.g.db[0]\"") && reason.contains("draining"),
        "{reason}"
    );
    c.nodes.retain(|n| n.id != home);
    let plan = c.plan(&j, 3);
    assert!(plan.place.is_empty());
    let reason = plan.failed["g"]
        .constraint_filtered
        .keys()
        .next()
        .unwrap()
        .clone();
    assert!(
        reason.contains("gone") && reason.contains("edge volume rm"),
        "{reason}"
    );
}
