//! `depends_on`: a group's first copies wait until the groups it names
//! run (or pass their checks); once started it is placed as any other.

use crate::common::{Cluster, group, job, node};
use edge_spec::{ClientStatus, DependCondition, GroupDependency, HealthStatus, Job};

fn app(condition: DependCondition) -> Job {
    let mut web = group("web", 2, 100, 100);
    web.depends_on = vec![GroupDependency {
        group: "db".to_string(),
        condition,
    }];
    job("app", vec![group("db", 2, 100, 100), web])
}

fn cluster() -> Cluster {
    Cluster::new(vec![node("a", 4000, 8000), node("b", 4000, 8000)])
}

fn placed(plan: &edge_sched::Plan, g: &str) -> usize {
    plan.place.iter().filter(|a| a.group == g).count()
}

/// The db copies as an agent would report them.
fn report(c: &mut Cluster, status: ClientStatus, check: HealthStatus) {
    for a in c.allocs.iter_mut().filter(|a| a.group == "db") {
        a.client_status = status;
        a.checks.insert("db".to_string(), check);
    }
}

#[test]
fn a_group_waits_until_what_it_depends_on_runs() {
    let mut c = cluster();
    let j = app(DependCondition::Started);
    let plan = c.run(&j, 1);
    assert_eq!(placed(&plan, "db"), 2);
    assert_eq!(placed(&plan, "web"), 0);
    assert_eq!(plan.queued["web"], 2);
    assert_eq!(
        plan.waiting["web"],
        "waits for group \"db\" to be running (0 of 2 copies)"
    );
    assert!(plan.failed.is_empty(), "waiting is not a placement failure");

    // One db copy runs, the other is still pulling its image.
    report(&mut c, ClientStatus::Pending, HealthStatus::Pending);
    c.allocs
        .iter_mut()
        .find(|a| a.group == "db")
        .unwrap()
        .client_status = ClientStatus::Running;
    let plan = c.run(&j, 2);
    assert_eq!(placed(&plan, "web"), 0);
    assert!(plan.waiting["web"].contains("(1 of 2 copies)"));

    report(&mut c, ClientStatus::Running, HealthStatus::Pending);
    let plan = c.run(&j, 3);
    assert_eq!(placed(&plan, "web"), 2);
    assert!(plan.waiting.is_empty());
    assert_eq!(plan.queued["web"], 0);
}

#[test]
fn healthy_waits_for_every_check_to_pass() {
    let mut c = cluster();
    let j = app(DependCondition::Healthy);
    c.run(&j, 1);
    report(&mut c, ClientStatus::Running, HealthStatus::Pending);
    let plan = c.run(&j, 2);
    assert_eq!(placed(&plan, "web"), 0);
    assert!(plan.waiting["web"].contains("to be healthy (0 of 2 copies)"));
    report(&mut c, ClientStatus::Running, HealthStatus::Critical);
    assert_eq!(placed(&c.run(&j, 3), "web"), 0);
    report(&mut c, ClientStatus::Running, HealthStatus::Passing);
    assert_eq!(placed(&c.run(&j, 4), "web"), 2);
}

#[test]
fn a_started_group_is_replaced_without_waiting() {
    let mut c = cluster();
    let j = app(DependCondition::Healthy);
    c.run(&j, 1);
    report(&mut c, ClientStatus::Running, HealthStatus::Passing);
    c.run(&j, 2);
    // The db turns unhealthy and one web copy fails: the web group has a
    // live copy, so its replacement does not wait for the db.
    report(&mut c, ClientStatus::Running, HealthStatus::Critical);
    let web = c
        .allocs
        .iter()
        .find(|a| a.group == "web")
        .unwrap()
        .id
        .clone();
    c.fail(&web, 600_000);
    let plan = c.run(&j, 3);
    assert_eq!(placed(&plan, "web"), 1);
    assert!(plan.waiting.is_empty());
}

#[test]
fn a_chain_starts_one_link_at_a_time() {
    let mut c = cluster();
    let mut j = app(DependCondition::Started);
    let mut edge = group("edge", 1, 100, 100);
    edge.depends_on = vec![GroupDependency {
        group: "web".to_string(),
        condition: DependCondition::Started,
    }];
    j.groups.push(edge);
    // Placements start running at once in this cluster: each run places
    // the next link.
    let order: Vec<Vec<(String, usize)>> = (1..=4)
        .map(|seed| {
            let plan = c.run(&j, seed);
            ["db", "web", "edge"]
                .iter()
                .map(|g| (g.to_string(), placed(&plan, g)))
                .filter(|(_, n)| *n > 0)
                .collect()
        })
        .collect();
    assert_eq!(
        order,
        vec![
            vec![("db".to_string(), 2)],
            vec![("web".to_string(), 2)],
            vec![("edge".to_string(), 1)],
            vec![],
        ]
    );
}

#[test]
fn a_one_shot_group_runs_to_completion_once_per_version() {
    let mut c = cluster();
    let mut migrate = group("migrate", 1, 100, 100);
    migrate.batch = true;
    let mut web = group("web", 2, 100, 100);
    web.depends_on = vec![GroupDependency {
        group: "migrate".to_string(),
        condition: DependCondition::Completed,
    }];
    let mut j = job("app", vec![migrate, web]);
    let plan = c.run(&j, 1);
    assert_eq!((placed(&plan, "migrate"), placed(&plan, "web")), (1, 0));
    assert_eq!(
        plan.waiting["web"],
        "waits for group \"migrate\" to be completed (0 of 1 copies)"
    );
    // Still running: nothing more.
    assert!(c.run(&j, 2).place.is_empty());
    let m = c.allocs.iter_mut().find(|a| a.group == "migrate").unwrap();
    m.client_status = ClientStatus::Complete;
    let plan = c.run(&j, 3);
    assert_eq!((placed(&plan, "migrate"), placed(&plan, "web")), (0, 2));
    assert!(c.run(&j, 4).is_noop(), "a completed copy is not replaced");

    // A new version runs it again; the started web group does not wait.
    j.version = 1;
    let plan = c.run(&j, 5);
    assert_eq!(placed(&plan, "migrate"), 1);
    assert!(plan.waiting.is_empty());
}
