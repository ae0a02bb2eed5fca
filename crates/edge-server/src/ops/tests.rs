//! Table-driven tests of the rules: a state built in memory, one rule
//! applied, the batch (or error) it returns compared with what is expected.
//! No HTTP, no database, no clock.

use super::{Env, allocs, jobs, nodes, plan, schedule};
use crate::ServerError;
use edge_api::AllocUpdate;
use edge_sched::SchedulerConfig;
use edge_spec::{
    Allocation, ClientStatus, DesiredStatus, DriverConfigs, DriverInfo, EvalStatus, Evaluation,
    Job, Node, NodeResources, NodeStatus, OverlayPool, TriggeredBy,
};
use edge_store::{Batch, State};
use std::collections::{BTreeMap, HashMap};

const NOW: i64 = 1_700_000_000_000;

/// Ids `id-1`, `id-2`, ... and a fixed clock.
fn env() -> Env {
    let mut n = 0;
    Env {
        now: NOW,
        ids: Box::new(move || {
            n += 1;
            format!("id-{n}")
        }),
    }
}

fn node(id: &str) -> Node {
    let exec = DriverInfo {
        detected: true,
        healthy: true,
        ..DriverInfo::default()
    };
    Node {
        id: id.to_string(),
        name: format!("node-{id}"),
        address: "10.0.0.1".to_string(),
        eligible: true,
        resources: NodeResources {
            cpu: 1000,
            memory: 1024,
            cores: 2,
        },
        drivers: BTreeMap::from([("exec".to_string(), exec)]),
        ..Node::default()
    }
}

/// A job of `count` copies of 400 MHz each, so a node holds two.
fn job(id: &str, kind: &str, count: u32) -> Job {
    let src = format!(
        r#"job "{id}" {{
  type = "{kind}"
  group "g" {{
    count = {count}
    task "t" {{
      driver = "exec"
      config {{
        command = "/bin/sleep"
        args    = ["1000"]
      }}
      resources {{
        cpu    = 400
        memory = 64
      }}
    }}
  }}
}}"#
    );
    let opts = edge_spec::ParseOptions::default();
    let job = edge_spec::parse_hcl(&src, &opts)
        .expect("test job parses")
        .job;
    jobs::prepare(job, &DriverConfigs::default()).expect("test job is valid")
}

/// A state changed only through the rules, as the server changes it.
struct World {
    s: State,
    env: Env,
    cfg: SchedulerConfig,
    overlay: OverlayPool,
}

impl World {
    fn new() -> World {
        World {
            s: State::default(),
            env: env(),
            cfg: SchedulerConfig::default(),
            overlay: OverlayPool::default(),
        }
    }

    fn commit(&mut self, b: Batch) {
        self.s.apply_in_memory(b);
    }

    /// A node registers as its agent does, with its HTTP address.
    fn join(&mut self, id: &str) {
        let addr = Some(format!("http://{id}"));
        let b = nodes::register(&self.s, &mut self.env, node(id), addr).unwrap();
        self.commit(b);
    }

    fn set_node(&mut self, id: &str, f: impl FnOnce(&mut Node)) {
        let mut n = self.s.nodes[id].clone();
        f(&mut n);
        self.commit(Batch {
            nodes: vec![n],
            ..Batch::default()
        });
    }

    fn submit(&mut self, j: Job) {
        let (b, _) = jobs::register(&self.s, &mut self.env, j, TriggeredBy::JobRegister, None)
            .expect("registers");
        self.commit(b);
    }

    /// Runs every ready evaluation, as the worker does, until none is left.
    fn settle(&mut self) {
        loop {
            let (ready, _) = schedule::ready(&self.s, self.env.now);
            if ready.is_empty() {
                return;
            }
            for id in ready {
                if let Some((b, _)) =
                    schedule::evaluate(&self.s, &mut self.env, &self.cfg, &self.overlay, &id)
                {
                    self.commit(b);
                }
            }
        }
    }

    fn allocs(&self, job: &str) -> Vec<&Allocation> {
        self.s.job_allocs(job)
    }

    fn live(&self, job: &str) -> Vec<&Allocation> {
        let mut v = self.allocs(job);
        v.retain(|a| a.is_live());
        v
    }

    /// Reports every allocation of `job` on `node` complete, stopped ones
    /// included, as its agent would once they ended.
    fn report_complete(&mut self, job: &str, node: &str) {
        let ups = self
            .allocs(job)
            .iter()
            .map(|a| update(&a.id, ClientStatus::Complete))
            .collect();
        let b = allocs::update(&self.s, &mut self.env, node, ups).unwrap();
        self.commit(b);
    }

    /// Reports every allocation of `job` as running, as its agent would.
    fn report_running(&mut self, job: &str) {
        let mut by_node: BTreeMap<String, Vec<AllocUpdate>> = BTreeMap::new();
        for a in self.live(job) {
            by_node
                .entry(a.node_id.clone())
                .or_default()
                .push(update(&a.id, ClientStatus::Running));
        }
        for (n, ups) in by_node {
            let b = allocs::update(&self.s, &mut self.env, &n, ups).unwrap();
            self.commit(b);
        }
    }
}

fn update(id: &str, status: ClientStatus) -> AllocUpdate {
    AllocUpdate {
        networks: Default::default(),
        address: None,
        id: id.to_string(),
        client_status: status,
        client_description: String::new(),
        task_states: BTreeMap::new(),
        checks: BTreeMap::new(),
        health: None,
    }
}

fn triggers(evals: &[Evaluation]) -> Vec<(TriggeredBy, EvalStatus)> {
    evals.iter().map(|e| (e.triggered_by, e.status)).collect()
}

fn kind(e: &ServerError) -> &'static str {
    match e {
        ServerError::BadRequest(_) => "bad request",
        ServerError::NotFound { .. } | ServerError::NoJob { .. } => "not found",
        ServerError::Conflict(_) => "conflict",
        ServerError::UnknownAllocs(_) => "unknown allocs",
        _ => "other",
    }
}

#[test]
fn register_versions_a_job_only_when_its_spec_changes() {
    enum Before {
        Nothing,
        Stored,
        Stopped,
    }
    // (case, before, submitted count, enforce index, expected version and
    // whether the job is written, or the error)
    type Expect = Result<(u64, bool), &'static str>;
    let cases: &[(&str, Before, u32, Option<u64>, Expect)] = &[
        ("new job", Before::Nothing, 1, None, Ok((0, true))),
        ("same spec", Before::Stored, 1, None, Ok((0, false))),
        ("changed count", Before::Stored, 3, None, Ok((1, true))),
        (
            "same spec after stop",
            Before::Stopped,
            1,
            None,
            Ok((2, true)),
        ),
        ("index matches", Before::Stored, 3, Some(1), Ok((1, true))),
        (
            "index moved on",
            Before::Stored,
            3,
            Some(7),
            Err("conflict"),
        ),
        (
            "new job at index 0",
            Before::Nothing,
            1,
            Some(0),
            Ok((0, true)),
        ),
        (
            "new job at index 5",
            Before::Nothing,
            1,
            Some(5),
            Err("conflict"),
        ),
    ];
    for (case, before, count, enforce, want) in cases {
        let mut w = World::new();
        match before {
            Before::Nothing => {}
            Before::Stored => w.submit(job("web", "service", 1)),
            Before::Stopped => {
                w.submit(job("web", "service", 1));
                let (b, _) = jobs::stop(&w.s, &mut w.env, ("default", "web"), false).unwrap();
                w.commit(b);
            }
        }
        let got = jobs::register(
            &w.s,
            &mut w.env,
            job("web", "service", *count),
            TriggeredBy::JobRegister,
            *enforce,
        );
        match (got, want) {
            (Ok((batch, resp)), Ok((version, written))) => {
                assert_eq!(resp.version, *version, "{case}: version");
                assert_eq!(resp.changed, *written, "{case}: changed");
                assert_eq!(
                    batch.jobs.len(),
                    usize::from(*written),
                    "{case}: job written"
                );
                if let Some(j) = batch.jobs.first() {
                    assert!(!j.stop, "{case}: a registered job runs");
                    assert_eq!(j.version, *version, "{case}: stored version");
                }
                let e = &batch.evals;
                assert_eq!(
                    triggers(e),
                    vec![(TriggeredBy::JobRegister, EvalStatus::Pending)],
                    "{case}: one evaluation, even for an unchanged job"
                );
                assert_eq!(resp.eval_id.as_deref(), Some(e[0].id.as_str()), "{case}");
            }
            (Err(e), Err(k)) => assert_eq!(kind(&e), *k, "{case}: {e}"),
            (got, want) => panic!("{case}: got {:?}, want {want:?}", got.map(|(_, r)| r)),
        }
    }
}

/// Nomad hands a job's `meta` to its tasks; edge hands it to each group
/// beneath the group's own, so a change of it is a change of the groups.
#[test]
fn job_meta_is_handed_down_to_the_groups() {
    let mut submitted = job("web", "service", 1);
    submitted.meta = [("owner", "team-a"), ("tier", "job")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    submitted.groups[0].meta = [("tier".to_string(), "group".to_string())].into();
    let stored = jobs::prepare(submitted.clone(), &DriverConfigs::default()).unwrap();
    let want: std::collections::BTreeMap<String, String> = [("owner", "team-a"), ("tier", "group")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    assert_eq!(stored.groups[0].meta, want);
    let again = jobs::prepare(submitted.clone(), &DriverConfigs::default()).unwrap();
    assert_eq!(
        jobs::next_version(Some(&stored), &again),
        (stored.version, false)
    );
    submitted
        .meta
        .insert("owner".to_string(), "team-b".to_string());
    let changed = jobs::prepare(submitted, &DriverConfigs::default()).unwrap();
    assert_ne!(changed.groups[0].spec_hash(), stored.groups[0].spec_hash());
}

#[test]
fn stop_and_purge() {
    // (case, job stored, already stopped, purge, stopped version written,
    // purged, or the error)
    type Expect = Result<(Option<u64>, bool), &'static str>;
    let cases: &[(&str, bool, bool, bool, Expect)] = &[
        ("unknown job", false, false, false, Err("not found")),
        ("stop", true, false, false, Ok((Some(1), false))),
        ("stop again", true, true, false, Ok((None, false))),
        ("purge", true, false, true, Ok((None, true))),
        ("purge a stopped job", true, true, true, Ok((None, true))),
    ];
    for (case, stored, stopped, purge, want) in cases {
        let mut w = World::new();
        if *stored {
            w.submit(job("web", "service", 1));
        }
        if *stopped {
            let (b, _) = jobs::stop(&w.s, &mut w.env, ("default", "web"), false).unwrap();
            w.commit(b);
        }
        match (
            jobs::stop(&w.s, &mut w.env, ("default", "web"), *purge),
            want,
        ) {
            (Ok((batch, eval_id)), Ok((version, purged))) => {
                let written: Vec<(bool, u64)> =
                    batch.jobs.iter().map(|j| (j.stop, j.version)).collect();
                let want_written: Vec<(bool, u64)> = version.iter().map(|v| (true, *v)).collect();
                assert_eq!(written, want_written, "{case}: job written");
                assert_eq!(!batch.purge_jobs.is_empty(), *purged, "{case}: purged");
                assert_eq!(
                    triggers(&batch.evals),
                    vec![(TriggeredBy::JobDeregister, EvalStatus::Pending)],
                    "{case}"
                );
                assert_eq!(batch.evals[0].id, eval_id, "{case}");
            }
            (Err(e), Err(k)) => assert_eq!(kind(&e), *k, "{case}: {e}"),
            (got, want) => panic!("{case}: got {:?}, want {want:?}", got.map(|(_, id)| id)),
        }
    }
}

#[test]
fn a_stopped_job_loses_its_allocations_and_reads_dead() {
    let mut w = World::new();
    w.join("n1");
    w.submit(job("web", "service", 2));
    w.settle();
    w.report_running("web");
    assert_eq!(
        jobs::status(&w.s, &w.s.jobs["web"]),
        edge_spec::JobStatus::Running
    );
    let (b, _) = jobs::stop(&w.s, &mut w.env, ("default", "web"), false).unwrap();
    w.commit(b);
    w.settle();
    let desired: Vec<DesiredStatus> = w.allocs("web").iter().map(|a| a.desired_status).collect();
    assert_eq!(desired, vec![DesiredStatus::Stop; 2]);
    assert!(w.live("web").is_empty(), "nothing holds room any more");
    w.report_complete("web", "n1");
    assert_eq!(
        jobs::status(&w.s, &w.s.jobs["web"]),
        edge_spec::JobStatus::Dead
    );
}

/// The node rules: what each does to a node in each state, and which
/// evaluations it queues. The world holds one blocked job (waiting for
/// room), one system job, and a service job with a live copy on `n1`.
#[test]
fn node_rules() {
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Op {
        Register,
        Heartbeat,
        MarkDown,
        Drain(bool),
        Eligible(bool),
    }
    use NodeStatus::{Down, Ready};
    use TriggeredBy::{NodeDrain, NodeUpdate};
    // (node status before, op, node status/eligible/drain after, evaluations
    // queued as (trigger, how many), blocked ones made pending)
    type Row = (
        Option<NodeStatus>,
        Op,
        Option<(NodeStatus, bool, bool)>,
        &'static [(TriggeredBy, usize)],
        bool,
    );
    let rows: &[Row] = &[
        // First join: system job placed, blocked work retried.
        (
            None,
            Op::Register,
            Some((Ready, true, false)),
            &[(NodeUpdate, 1)],
            true,
        ),
        // Back after being down: also its own jobs (service and system).
        (
            Some(Down),
            Op::Register,
            Some((Ready, true, false)),
            &[(NodeUpdate, 3)],
            true,
        ),
        // Registering again while ready queues nothing.
        (
            Some(Ready),
            Op::Register,
            Some((Ready, true, false)),
            &[],
            false,
        ),
        (Some(Ready), Op::Heartbeat, None, &[], false),
        (
            Some(Down),
            Op::Heartbeat,
            Some((Ready, true, false)),
            &[(NodeUpdate, 1)],
            true,
        ),
        (
            Some(Ready),
            Op::MarkDown,
            Some((Down, true, false)),
            &[(NodeUpdate, 2)],
            false,
        ),
        (Some(Down), Op::MarkDown, None, &[], false),
        (
            Some(Ready),
            Op::Drain(true),
            Some((Ready, false, true)),
            &[(NodeDrain, 2)],
            false,
        ),
        (
            Some(Ready),
            Op::Drain(false),
            Some((Ready, true, false)),
            &[(NodeUpdate, 1)],
            true,
        ),
        (
            Some(Ready),
            Op::Eligible(false),
            Some((Ready, false, false)),
            &[],
            false,
        ),
        (
            Some(Ready),
            Op::Eligible(true),
            Some((Ready, true, false)),
            &[(NodeUpdate, 1)],
            true,
        ),
    ];
    for (before, op, after, queued, unblocked) in rows {
        let case = format!("{before:?} + {op:?}");
        let mut w = World::new();
        w.join("n0");
        w.submit(job("sys", "system", 1));
        w.submit(job("web", "service", 1));
        w.settle();
        // Bigger than any node: stays blocked.
        let mut big = job("big", "service", 1);
        big.groups[0].tasks[0].resources.cpu = 5000;
        w.submit(big);
        if before.is_some() {
            w.join("n1");
            w.settle();
            // Put web's copy on n1, so n1 has a live copy of a service job.
            let web = w.live("web")[0].clone();
            w.commit(Batch {
                allocs: vec![Allocation {
                    namespace: "default".to_string(),
                    node_id: "n1".to_string(),
                    ..web
                }],
                ..Batch::default()
            });
            w.report_running("web");
        }
        w.settle();
        if *before == Some(Down) {
            w.set_node("n1", |n| n.status = Down);
        }
        let blocked = |s: &State| s.evals.values().any(|e| e.status == EvalStatus::Blocked);
        assert!(blocked(&w.s), "{case}: the big job is blocked before");
        let (s, env) = (&w.s, &mut w.env);
        let batch = match op {
            Op::Register => nodes::register(s, env, node("n1"), Some("http://n1".into())).unwrap(),
            Op::Heartbeat => nodes::heartbeat(s, env, "n1").unwrap(),
            Op::MarkDown => nodes::mark_down(s, env, "n1"),
            Op::Drain(on) => nodes::drain(s, env, "n1", *on).unwrap(),
            Op::Eligible(on) => nodes::eligibility(s, env, "n1", *on).unwrap(),
        };
        let got_node = batch
            .nodes
            .iter()
            .map(|n| (n.status, n.eligible, n.drain))
            .next();
        assert_eq!(got_node, *after, "{case}: node written");
        let new: Vec<&Evaluation> = batch
            .evals
            .iter()
            .filter(|e| e.status == EvalStatus::Pending && !w.s.evals.contains_key(&e.id))
            .collect();
        let mut by_trigger: BTreeMap<&str, usize> = BTreeMap::new();
        for e in &new {
            *by_trigger.entry(e.triggered_by.as_str()).or_default() += 1;
        }
        let want: BTreeMap<&str, usize> = queued.iter().map(|(t, n)| (t.as_str(), *n)).collect();
        assert_eq!(by_trigger, want, "{case}: evaluations queued");
        let retried = batch
            .evals
            .iter()
            .any(|e| e.status == EvalStatus::Pending && w.s.evals.contains_key(&e.id));
        assert_eq!(retried, *unblocked, "{case}: blocked evaluations retried");
        if *op == Op::Register {
            let n = &batch.nodes[0];
            assert_eq!(n.attributes[nodes::HTTP_ADDR_ATTR], "http://n1", "{case}");
            assert_eq!(n.last_heartbeat, NOW, "{case}");
        }
    }
}

#[test]
fn node_input_is_checked() {
    let w = World::new();
    let mut env = env();
    type Case = (&'static str, fn(&mut Node), &'static str);
    let cases: &[Case] = &[
        (
            "empty id",
            |n| n.id.clear(),
            "node.id must be 1 to 64 characters",
        ),
        (
            "long id",
            |n| n.id = "x".repeat(65),
            "node.id must be 1 to 64 characters",
        ),
        ("empty name", |n| n.name.clear(), "node.name is empty"),
    ];
    for (case, f, msg) in cases {
        let mut n = node("n1");
        f(&mut n);
        let e = nodes::register(&w.s, &mut env, n, None).unwrap_err();
        assert_eq!(e.to_string(), *msg, "{case}");
    }
    for (case, e) in [
        (
            "heartbeat",
            nodes::heartbeat(&w.s, &mut env, "ghost").unwrap_err(),
        ),
        (
            "drain",
            nodes::drain(&w.s, &mut env, "ghost", true).unwrap_err(),
        ),
        (
            "eligibility",
            nodes::eligibility(&w.s, &mut env, "ghost", true).unwrap_err(),
        ),
    ] {
        assert_eq!(kind(&e), "not found", "{case}: {e}");
    }
}

/// A node that misses its TTL loses its copies to another node; when it
/// comes back, its copies stay lost (so its agent stops them) and the job
/// is at count once.
#[test]
fn mark_down_replaces_and_a_return_does_not_duplicate() {
    let mut w = World::new();
    w.join("n1");
    w.submit(job("web", "service", 2));
    w.settle();
    w.report_running("web");
    w.join("n2");
    let b = nodes::mark_down(&w.s, &mut w.env, "n1");
    w.commit(b);
    w.settle();
    let lost: Vec<&Allocation> = w
        .allocs("web")
        .into_iter()
        .filter(|a| a.client_status == ClientStatus::Lost)
        .collect();
    assert_eq!(lost.len(), 2);
    assert!(lost.iter().all(|a| a.desired_status == DesiredStatus::Stop
        && a.client_description == "node down: allocation lost"
        && a.next_alloc.is_some()));
    let live = w.live("web");
    assert_eq!(live.len(), 2);
    assert!(live.iter().all(|a| a.node_id == "n2"));
    let ids: Vec<String> = lost.iter().map(|a| a.id.clone()).collect();
    // n1 comes back and its agent still reports the old copies running.
    let b = nodes::register(&w.s, &mut w.env, node("n1"), None).unwrap();
    w.commit(b);
    let ups = ids
        .iter()
        .map(|id| update(id, ClientStatus::Running))
        .collect();
    let b = allocs::update(&w.s, &mut w.env, "n1", ups).unwrap();
    w.commit(b);
    w.settle();
    for id in &ids {
        assert_eq!(
            w.s.allocs[id].client_status,
            ClientStatus::Lost,
            "stays lost"
        );
    }
    assert_eq!(w.live("web").len(), 2, "at count, no duplicate");
}

#[test]
fn alloc_update_rules() {
    use ClientStatus::{Complete, Failed, Lost, Pending, Running};
    // (case, status before, desired before, reported, status after,
    // evaluations queued by trigger)
    type Row = (
        &'static str,
        ClientStatus,
        DesiredStatus,
        ClientStatus,
        ClientStatus,
        &'static [TriggeredBy],
    );
    let rows: &[Row] = &[
        ("starts", Pending, DesiredStatus::Run, Running, Running, &[]),
        (
            "fails while wanted",
            Running,
            DesiredStatus::Run,
            Failed,
            Failed,
            &[TriggeredBy::AllocFailure],
        ),
        (
            "fails again",
            Failed,
            DesiredStatus::Run,
            Failed,
            Failed,
            &[],
        ),
        (
            "fails while stopping",
            Running,
            DesiredStatus::Stop,
            Failed,
            Failed,
            &[],
        ),
        (
            "completes",
            Running,
            DesiredStatus::Run,
            Complete,
            Complete,
            &[],
        ),
        (
            "lost stays lost",
            Lost,
            DesiredStatus::Stop,
            Running,
            Lost,
            &[],
        ),
    ];
    for (case, before, desired, reported, after, queued) in rows {
        let mut w = World::new();
        w.join("n1");
        w.submit(job("web", "service", 1));
        w.settle();
        let mut a = w.live("web")[0].clone();
        a.client_status = *before;
        a.desired_status = *desired;
        let id = a.id.clone();
        w.commit(Batch {
            allocs: vec![a],
            ..Batch::default()
        });
        let mut up = update(&id, *reported);
        up.task_states.insert("t".to_string(), Default::default());
        let b = allocs::update(&w.s, &mut w.env, "n1", vec![up]).unwrap();
        assert_eq!(b.allocs.len(), 1, "{case}");
        assert_eq!(b.allocs[0].client_status, *after, "{case}: status");
        assert!(
            b.allocs[0].task_states.contains_key("t"),
            "{case}: task states"
        );
        let new: Vec<TriggeredBy> = b
            .evals
            .iter()
            .filter(|e| !w.s.evals.contains_key(&e.id))
            .map(|e| e.triggered_by)
            .collect();
        assert_eq!(new, *queued, "{case}: evaluations");
    }
}

#[test]
fn an_alloc_that_ends_retries_blocked_work() {
    let mut w = World::new();
    w.join("n1");
    w.submit(job("web", "service", 2));
    w.submit(job("more", "service", 1));
    w.settle();
    assert!(w.live("more").is_empty(), "the node holds two copies");
    let id = w.live("web")[0].id.clone();
    let b = allocs::update(
        &w.s,
        &mut w.env,
        "n1",
        vec![update(&id, ClientStatus::Complete)],
    );
    let b = b.unwrap();
    assert!(
        b.evals
            .iter()
            .any(|e| e.job_id == "more" && e.status == EvalStatus::Pending)
    );
    w.commit(b);
    w.settle();
    assert_eq!(w.live("more").len(), 1, "placed in the room freed");
}

#[test]
fn alloc_reports_are_checked() {
    let mut w = World::new();
    w.join("n1");
    w.join("n2");
    w.submit(job("web", "service", 1));
    w.settle();
    let a = w.live("web")[0].clone();
    let other = if a.node_id == "n1" { "n2" } else { "n1" };
    let cases: Vec<(&str, &str, Vec<AllocUpdate>, &str)> = vec![
        ("unknown node", "ghost", vec![], "not found"),
        (
            "unknown alloc",
            &a.node_id,
            vec![update("nope", ClientStatus::Running)],
            "unknown allocs",
        ),
        (
            "another node's",
            other,
            vec![update(&a.id, ClientStatus::Running)],
            "bad request",
        ),
    ];
    for (case, n, ups, want) in cases {
        let e = allocs::update(&w.s, &mut w.env, n, ups).unwrap_err();
        assert_eq!(kind(&e), want, "{case}: {e}");
    }
    let e = allocs::update(
        &w.s,
        &mut w.env,
        &a.node_id,
        vec![
            update(&a.id, ClientStatus::Running),
            update("x", ClientStatus::Running),
            update("y", ClientStatus::Running),
        ],
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"unknown allocation "x", "y""#,
        "names every unknown id"
    );
}

#[test]
fn ready_runs_one_evaluation_per_job_by_priority_then_age() {
    let mut w = World::new();
    let mut low = job("low", "service", 1);
    low.priority = 10;
    let mut high = job("high", "service", 1);
    high.priority = 90;
    w.submit(low.clone());
    w.submit(high);
    low.groups[0].count = 2;
    w.submit(low);
    let mut later = w.s.evals["id-1"].clone();
    later.id = "later".to_string();
    later.wait_until = NOW + 5_000;
    w.commit(Batch {
        evals: vec![later],
        ..Batch::default()
    });
    let (ids, next) = schedule::ready(&w.s, NOW);
    let jobs: Vec<&str> = ids.iter().map(|id| w.s.evals[id].job_id.as_str()).collect();
    assert_eq!(jobs, vec!["high", "low"]);
    assert_eq!(
        ids[1], "id-1",
        "the oldest of a job runs and folds the others"
    );
    assert_eq!(next, Some(NOW + 5_000));
    let (ids, _) = schedule::ready(&w.s, NOW + 5_000);
    assert_eq!(ids.len(), 2, "due now, still one per job");
}

/// A node already ready that registers again offering more (a library
/// installed, a driver healthy again) places what was blocked for it; the
/// same registration offering nothing new queues nothing.
#[test]
fn a_ready_node_offering_more_places_what_waited_for_it() {
    let mut w = World::new();
    w.join("n1");
    let mut j = job("ml", "service", 1);
    j.groups[0].constraints.push(edge_spec::Constraint {
        attribute: "${attr.driver.model.backends}".to_string(),
        operator: edge_spec::ConstraintOp::SetContains,
        value: "onnxruntime".to_string(),
    });
    w.submit(j);
    w.settle();
    assert!(w.live("ml").is_empty());
    let blocked = |w: &World| {
        w.s.evals
            .values()
            .filter(|e| e.job_id == "ml" && e.status == EvalStatus::Blocked)
            .count()
    };
    assert_eq!(blocked(&w), 1);
    let b = nodes::register(&w.s, &mut w.env, w.s.nodes["n1"].clone(), None).unwrap();
    assert!(b.evals.is_empty(), "nothing new: {:?}", b.evals);
    let mut n = w.s.nodes["n1"].clone();
    n.attributes.insert(
        "driver.model.backends".to_string(),
        "tract,onnxruntime".to_string(),
    );
    let b = nodes::register(&w.s, &mut w.env, n, None).unwrap();
    w.commit(b);
    w.settle();
    assert_eq!(w.live("ml").len(), 1);
    assert_eq!(blocked(&w), 0);
}

#[test]
fn evaluate_blocks_then_places_when_a_node_joins() {
    let mut w = World::new();
    w.submit(job("web", "service", 3));
    w.settle();
    let eval = w.s.evals.values().find(|e| e.job_id == "web").unwrap();
    assert_eq!(eval.status, EvalStatus::Blocked);
    assert_eq!(eval.queued_allocations["g"], 3);
    w.join("n1");
    w.settle();
    assert_eq!(w.live("web").len(), 2, "a node holds two");
    w.join("n2");
    w.settle();
    assert_eq!(w.live("web").len(), 3);
    // Only the deployment's progress deadline, ten minutes on, is left.
    let open: Vec<&Evaluation> = w.s.open_evals.iter().map(|id| &w.s.evals[id]).collect();
    assert!(
        open.iter().all(|e| e.wait_until == NOW + 600_000),
        "nothing else left open: {open:?}"
    );
    assert!(
        schedule::evaluate(&w.s, &mut w.env, &w.cfg, &OverlayPool::default(), "id-1").is_none(),
        "a finished evaluation is not run again"
    );
}

#[test]
fn plan_reports_changes_without_committing() {
    let mut w = World::new();
    w.join("n1");
    w.submit(job("web", "service", 1));
    w.settle();
    let before = w.s.index;
    let resp = plan::dry_run(&w.s, &mut w.env, &w.cfg, job("web", "service", 2));
    assert_eq!(resp.diff_type, "edited");
    assert!(
        resp.diff
            .iter()
            .any(|l| l.starts_with("+ ") && l.contains("\"count\": 2"))
    );
    assert_eq!(resp.current_version, Some(0));
    assert!(resp.failed.is_empty());
    assert_eq!(w.s.index, before);
    let same = plan::dry_run(&w.s, &mut w.env, &w.cfg, job("web", "service", 1));
    assert_eq!(same.diff_type, "none");
    let new = plan::dry_run(&w.s, &mut w.env, &w.cfg, job("api", "service", 1));
    assert_eq!(
        (new.diff_type.as_str(), new.current_version),
        ("added", None)
    );
}

/// An agent's health verdict on a new copy queues the evaluation that
/// replaces its old copy and starts the next: a rolling update end to end
/// through the rules.
#[test]
fn health_verdicts_move_a_rolling_update_on() {
    let mut w = World::new();
    w.join("n1");
    w.join("n2");
    w.submit(job("web", "service", 2));
    w.settle();
    w.report_running("web");
    // A first copy's verdict changes nothing the scheduler needs.
    let first_copy = w.live("web")[0].clone();
    let mut ok = update(&first_copy.id, ClientStatus::Running);
    ok.health = Some(edge_spec::AllocHealth {
        healthy: true,
        timestamp: NOW,
    });
    let b = allocs::update(&w.s, &mut w.env, &first_copy.node_id, vec![ok]).unwrap();
    assert!(
        b.evals.is_empty(),
        "no evaluation for a copy that replaces nothing"
    );
    w.commit(b);
    let mut v1 = job("web", "service", 2);
    v1.groups[0].tasks[0].env.insert("V".into(), "1".into());
    let hash = v1.groups[0].spec_hash();
    w.submit(v1);
    w.settle();
    let new_copies = |w: &World| -> Vec<Allocation> {
        let mut v: Vec<Allocation> = w.live("web").into_iter().cloned().collect();
        v.retain(|a| a.group_hash == hash);
        v
    };
    assert_eq!(w.live("web").len(), 3, "one new copy beside the two old");
    let first = new_copies(&w).remove(0);
    let mut ok = update(&first.id, ClientStatus::Running);
    ok.health = Some(edge_spec::AllocHealth {
        healthy: true,
        timestamp: NOW,
    });
    let b = allocs::update(&w.s, &mut w.env, &first.node_id, vec![ok.clone()]).unwrap();
    assert_eq!(
        triggers(&b.evals),
        vec![(TriggeredBy::AllocHealth, EvalStatus::Pending)]
    );
    w.commit(b);
    let again = allocs::update(&w.s, &mut w.env, &first.node_id, vec![ok]).unwrap();
    assert!(again.evals.is_empty(), "a verdict is given once");
    w.commit(again);
    w.settle();
    assert_eq!(new_copies(&w).len(), 2, "the next copy started");
    assert_eq!(w.live("web").len(), 3, "the first old copy stopped");
    let second = new_copies(&w)
        .into_iter()
        .find(|a| a.health.is_none())
        .unwrap();
    let mut bad = update(&second.id, ClientStatus::Running);
    bad.health = Some(edge_spec::AllocHealth {
        healthy: false,
        timestamp: NOW,
    });
    let b = allocs::update(&w.s, &mut w.env, &second.node_id, vec![bad]).unwrap();
    w.commit(b);
    w.settle();
    assert_eq!(
        w.live("web").len(),
        3,
        "halted: the last old copy keeps serving"
    );
}

/// One run of the scheduler covers every due evaluation of its job, newer
/// ones included; a delayed one waits for its time.
#[test]
fn a_run_folds_every_due_evaluation_of_its_job() {
    let mut w = World::new();
    w.join("n1");
    let j = job("web", "service", 1);
    w.submit(j.clone());
    for _ in 0..3 {
        let e = super::evals::for_job(
            &w.s,
            &mut w.env,
            ("default", "web"),
            TriggeredBy::NodeUpdate,
            None,
        );
        w.commit(Batch {
            evals: vec![e],
            ..Batch::default()
        });
    }
    let mut later = super::evals::for_job(
        &w.s,
        &mut w.env,
        ("default", "web"),
        TriggeredBy::RescheduleLater,
        None,
    );
    later.wait_until = NOW + 60_000;
    let later_id = later.id.clone();
    w.commit(Batch {
        evals: vec![later],
        ..Batch::default()
    });
    let (ready, _) = schedule::ready(&w.s, NOW);
    assert_eq!(ready.len(), 1, "one per job");
    let (b, placed) =
        schedule::evaluate(&w.s, &mut w.env, &w.cfg, &OverlayPool::default(), &ready[0]).unwrap();
    assert_eq!(placed, 1);
    w.commit(b);
    let pending: Vec<&str> =
        w.s.evals
            .values()
            .filter(|e| e.status == EvalStatus::Pending)
            .map(|e| e.id.as_str())
            .collect();
    assert_eq!(
        pending,
        vec![later_id.as_str()],
        "only the delayed one is left"
    );
    let canceled =
        w.s.evals
            .values()
            .filter(|e| e.status == EvalStatus::Canceled)
            .count();
    assert_eq!(canceled, 3);
}

/// Reports `healthy` as the verdict on `a`, and returns the batch.
fn verdict(w: &mut World, a: &Allocation, healthy: bool) -> Batch {
    let mut u = update(&a.id, ClientStatus::Running);
    u.health = Some(edge_spec::AllocHealth {
        healthy,
        timestamp: w.env.now,
    });
    allocs::update(&w.s, &mut w.env, &a.node_id, vec![u]).unwrap()
}

fn latest(w: &World, job: &str) -> edge_spec::Deployment {
    w.s.latest_deployment(job).expect("a deployment").clone()
}

/// Judges every live copy of the job without a verdict, one report each.
fn judge_all(w: &mut World, job: &str, healthy: bool) {
    let waiting: Vec<Allocation> = w
        .live(job)
        .into_iter()
        .filter(|a| a.health.is_none())
        .cloned()
        .collect();
    for a in waiting {
        let b = verdict(w, &a, healthy);
        w.commit(b);
    }
}

/// Job "web" of two copies whose failed deployments revert.
fn auto_reverting_web() -> Job {
    let mut j = job("web", "service", 2);
    j.update = Some(edge_spec::UpdatePolicy {
        auto_revert: Some(true),
        ..Default::default()
    });
    j
}

#[test]
fn deployments_end_in_a_stable_version_or_a_revert_to_one() {
    use edge_spec::DeploymentStatus as D;
    let mut w = World::new();
    w.join("n1");
    w.join("n2");
    let v0 = auto_reverting_web();
    w.submit(v0.clone());
    assert_eq!(latest(&w, "web").status, D::Running);
    w.settle();
    w.report_running("web");
    assert_eq!(latest(&w, "web").groups["g"].placed, 2);
    let copies: Vec<Allocation> = w.live("web").into_iter().cloned().collect();
    let b = verdict(&mut w, &copies[0], true);
    assert!(b.evals.is_empty(), "one of two judged: nothing can end yet");
    assert_eq!(b.deployments[0].groups["g"].healthy, 1, "counted at once");
    w.commit(b);
    let b = verdict(&mut w, &copies[1], true);
    assert_eq!(
        triggers(&b.evals),
        vec![(TriggeredBy::AllocHealth, EvalStatus::Pending)],
        "the last verdict lets the scheduler end it"
    );
    w.commit(b);
    w.settle();
    assert_eq!(latest(&w, "web").status, D::Successful);
    assert!(
        w.s.jobs["web"].stable,
        "a successful deployment makes its version stable"
    );
    assert_eq!(w.s.stable["web"].version, 0);

    let mut v1 = v0.clone();
    v1.groups[0].tasks[0].env.insert("V".into(), "1".into());
    w.submit(v1);
    assert!(!w.s.jobs["web"].stable, "a new version is not stable yet");
    let d1 = latest(&w, "web");
    assert_eq!((d1.job_version, d1.status), (1, D::Running));
    w.settle();
    let new = w
        .live("web")
        .into_iter()
        .find(|a| {
            a.job_version == 1 && a.health.is_none() && a.deployment_id == Some(d1.id.clone())
        })
        .cloned()
        .expect("a new copy beside the old ones");
    let b = verdict(&mut w, &new, false);
    w.commit(b);
    w.settle();
    let failed = &w.s.deployments[&d1.id];
    assert_eq!(failed.status, D::Failed);
    assert!(
        failed
            .status_description
            .contains("rolling back to job version 0 as version 2"),
        "{failed:?}"
    );
    let job = &w.s.jobs["web"];
    assert_eq!(job.version, 2);
    assert!(job.spec_eq(&v0), "the stable spec came back");
    let d2 = latest(&w, "web");
    assert_eq!((d2.job_version, d2.status), (2, D::Successful), "{d2:?}");
    assert!(
        !w.live("web").iter().any(|a| a.id == new.id),
        "the unhealthy copy is gone"
    );
    assert_eq!(w.live("web").len(), 2, "the old copies served throughout");

    // A newer version cancels a running deployment; so does a stop.
    let mut v3 = v0.clone();
    v3.groups[0].tasks[0].env.insert("V".into(), "3".into());
    w.submit(v3.clone());
    let d3 = latest(&w, "web");
    v3.groups[0].tasks[0].env.insert("V".into(), "4".into());
    w.submit(v3);
    assert_eq!(w.s.deployments[&d3.id].status, D::Cancelled);
    assert_eq!(
        w.s.deployments[&d3.id].status_description,
        edge_spec::DESC_NEWER_VERSION
    );
    let d4 = latest(&w, "web");
    let (b, _) = jobs::stop(&w.s, &mut w.env, ("default", "web"), false).unwrap();
    w.commit(b);
    assert_eq!(w.s.deployments[&d4.id].status, D::Cancelled);
}

#[test]
fn operators_promote_pause_resume_and_fail_deployments() {
    use super::deployments::{fail, pause, promote};
    use edge_spec::DeploymentStatus as D;
    let mut w = World::new();
    w.join("n1");
    w.join("n2");
    let mut v0 = job("web", "service", 2);
    v0.update = Some(edge_spec::UpdatePolicy {
        canary: Some(1),
        ..Default::default()
    });
    w.submit(v0.clone());
    w.settle();
    w.report_running("web");
    judge_all(&mut w, "web", true);
    w.settle();
    let d0 = latest(&w, "web");
    assert_eq!(d0.status, D::Successful);
    let err = promote(&w.s, &mut w.env, &d0.id, &[]).unwrap_err();
    assert_eq!(kind(&err), "conflict", "{err}");

    let mut v1 = v0.clone();
    v1.groups[0].tasks[0].env.insert("V".into(), "1".into());
    w.submit(v1);
    let d1 = latest(&w, "web");
    assert_eq!(d1.groups["g"].desired_canaries, 1);
    w.settle();
    let err = promote(&w.s, &mut w.env, &d1.id, &[]).unwrap_err();
    assert!(err.to_string().contains("0 of 1 canaries healthy"), "{err}");
    let err = promote(&w.s, &mut w.env, &d1.id, &["nope".to_string()]).unwrap_err();
    assert!(err.to_string().contains("no group \"nope\""), "{err}");
    w.report_running("web");
    judge_all(&mut w, "web", true);
    w.settle();
    assert_eq!(latest(&w, "web").status, D::AwaitingPromotion);
    assert_eq!(w.live("web").len(), 3, "the canary beside both old copies");

    let (b, d, eval) = pause(&w.s, &mut w.env, &d1.id, true).unwrap();
    assert!(eval.is_none());
    assert_eq!(d.status, D::Paused);
    w.commit(b);
    let err = promote(&w.s, &mut w.env, &d1.id, &[]).unwrap_err();
    assert!(err.to_string().contains("resume it"), "{err}");
    let (b, d, eval) = pause(&w.s, &mut w.env, &d1.id, false).unwrap();
    assert!(eval.is_some());
    assert_eq!(d.status, D::Running);
    w.commit(b);
    let err = pause(&w.s, &mut w.env, &d1.id, false).unwrap_err();
    assert_eq!(kind(&err), "conflict");

    let (b, d, _) = promote(&w.s, &mut w.env, &d1.id, &[]).unwrap();
    assert!(d.groups["g"].promoted);
    w.commit(b);
    for _ in 0..4 {
        w.settle();
        w.report_running("web");
        judge_all(&mut w, "web", true);
    }
    w.settle();
    assert_eq!(latest(&w, "web").status, D::Successful);
    assert_eq!(w.live("web").len(), 2);
    assert!(w.live("web").iter().all(|a| a.job_version == 1));

    let mut v2 = v0.clone();
    v2.groups[0].tasks[0].env.insert("V".into(), "2".into());
    w.submit(v2);
    let d2 = latest(&w, "web");
    let (b, d, _) = fail(&w.s, &mut w.env, &d2.id).unwrap();
    assert_eq!(d.status, D::Failed);
    assert!(
        d.status_description.contains("by an operator"),
        "{d:?}: no auto_revert, no rollback"
    );
    w.commit(b);
    let err = fail(&w.s, &mut w.env, &d2.id).unwrap_err();
    assert!(err.to_string().contains("is failed"), "{err}");
    let err = fail(&w.s, &mut w.env, "zzz").unwrap_err();
    assert_eq!(kind(&err), "not found");
}

/// With `health_check = "manual"` an operator's verdicts move the
/// deployment; each copy is judged once, and only in a manual group.
#[test]
fn manual_verdicts_move_a_manual_deployment() {
    use super::deployments::set_health;
    use edge_spec::DeploymentStatus as D;
    let mut w = World::new();
    w.join("n1");
    w.join("n2");
    let mut v0 = job("web", "service", 2);
    v0.update = Some(edge_spec::UpdatePolicy {
        health_check: Some(edge_spec::HealthCheck::Manual),
        ..Default::default()
    });
    w.submit(v0.clone());
    w.settle();
    w.report_running("web");
    let d = latest(&w, "web");
    let ids: Vec<String> = w.live("web").iter().map(|a| a.id.clone()).collect();
    let (b, _, eval) = set_health(&w.s, &mut w.env, &d.id, &[], &[]).unwrap();
    assert!(b.is_empty() && eval.is_none(), "none named changes nothing");
    let err = set_health(&w.s, &mut w.env, &d.id, &["nope".to_string()], &[]).unwrap_err();
    assert_eq!(kind(&err), "not found");
    let (b, _, _) = set_health(&w.s, &mut w.env, &d.id, &ids[..1], &[]).unwrap();
    w.commit(b);
    w.settle();
    assert_eq!(latest(&w, "web").status, D::Running, "one of two judged");
    let err = set_health(&w.s, &mut w.env, &d.id, &ids[..1], &[]).unwrap_err();
    assert_eq!(kind(&err), "conflict", "{err}");
    let (b, _, _) = set_health(&w.s, &mut w.env, &d.id, &ids[1..], &[]).unwrap();
    w.commit(b);
    w.settle();
    assert_eq!(latest(&w, "web").status, D::Successful);

    let mut auto = v0.clone();
    auto.update = None;
    auto.groups[0].tasks[0].env.insert("V".into(), "1".into());
    w.submit(auto);
    w.settle();
    let d = latest(&w, "web");
    let new: Vec<String> = w
        .live("web")
        .iter()
        .filter(|a| a.deployment_id.as_deref() == Some(d.id.as_str()))
        .map(|a| a.id.clone())
        .collect();
    let err = set_health(&w.s, &mut w.env, &d.id, &new, &[]).unwrap_err();
    assert!(err.to_string().contains("judged by its agents"), "{err}");
}

/// `edge job scale`: a new version with one group's count, refused for an
/// unknown group, a stopped job or a count over the limit.
#[test]
fn a_scale_stays_within_the_groups_scaling_bounds_and_notes_why() {
    let mut w = World::new();
    w.join("n1");
    let mut j = job("web", "service", 1);
    let block = serde_json::json!({ "min": 0, "max": 3, "target_concurrency": 8 });
    j.groups[0].scaling = Some(serde_json::from_value(block).unwrap());
    w.submit(j);
    w.settle();
    let err = jobs::scaled(&w.s, ("default", "web"), "g", 4, String::new(), 0).unwrap_err();
    assert!(
        err.to_string()
            .contains("count 4 is outside group \"g\"'s scaling bounds 0 to 3"),
        "{err}"
    );
    let j = jobs::scaled(&w.s, ("default", "web"), "g", 0, "idle for 5m".into(), 42).unwrap();
    let note = j.scaled.clone().expect("a note");
    assert_eq!(
        (note.from, note.to, note.reason.as_str(), note.time),
        (1, 0, "idle for 5m", 42)
    );
    let (b, resp) = jobs::register(&w.s, &mut w.env, j, TriggeredBy::JobScale, None).unwrap();
    assert!(resp.changed);
    w.commit(b);
    w.settle();
    assert!(w.live("web").is_empty());
    assert_eq!(w.s.jobs["web"].scaled.as_ref().map(|n| n.to), Some(0));
    // A job submitted again is the user's: the note goes.
    let (b, _) = jobs::register(
        &w.s,
        &mut w.env,
        job("web", "service", 1),
        TriggeredBy::JobRegister,
        None,
    )
    .unwrap();
    w.commit(b);
    assert_eq!(w.s.jobs["web"].scaled, None);
}

#[test]
fn scaling_makes_a_new_version_with_the_count() {
    let mut w = World::new();
    w.join("n1");
    w.join("n2");
    w.submit(job("web", "service", 1));
    w.settle();
    let j = jobs::scaled(&w.s, ("default", "web"), "g", 3, String::new(), 0).unwrap();
    let (b, resp) = jobs::register(&w.s, &mut w.env, j, TriggeredBy::JobScale, None).unwrap();
    assert_eq!((resp.version, resp.changed), (1, true));
    w.commit(b);
    w.settle();
    assert_eq!(w.live("web").len(), 3);
    for (group, count, want) in [
        ("nope", 2, "no group \"nope\""),
        ("g", edge_spec::limits::MAX_COUNT + 1, "the limit is"),
    ] {
        let err =
            jobs::scaled(&w.s, ("default", "web"), group, count, String::new(), 0).unwrap_err();
        assert!(err.to_string().contains(want), "{err}");
    }
    assert_eq!(
        kind(&jobs::scaled(&w.s, ("default", "gone"), "g", 1, String::new(), 0).unwrap_err()),
        "not found"
    );
    let (b, _) = jobs::stop(&w.s, &mut w.env, ("default", "web"), false).unwrap();
    w.commit(b);
    let err = jobs::scaled(&w.s, ("default", "web"), "g", 1, String::new(), 0).unwrap_err();
    assert_eq!(kind(&err), "conflict", "{err}");
}

#[test]
fn acl_rules_bootstrap_once_and_check_tokens_against_policies() {
    use super::acl;
    use edge_api::{AclPolicyApplyRequest, AclTokenCreateRequest};
    use edge_spec::acl::TokenType;
    let mut s = State::default();
    let (b, token) = acl::bootstrap(&s, &mut env(), "h0".to_string()).unwrap();
    assert_eq!(token.token_type, TokenType::Management);
    s.apply_in_memory(b);
    // Refused once done, even after that token is revoked.
    let (b, _) = acl::revoke_token(&s, &token.accessor_id).unwrap();
    s.apply_in_memory(b);
    assert!(matches!(
        acl::bootstrap(&s, &mut env(), "h1".to_string()),
        Err(ServerError::Conflict(_))
    ));

    let create = |token_type, policies: &[&str], ttl_secs| AclTokenCreateRequest {
        name: "t".to_string(),
        token_type,
        policies: policies.iter().map(|p| p.to_string()).collect(),
        ttl_secs,
    };
    let cases: Vec<(AclTokenCreateRequest, &str)> = vec![
        (
            create(TokenType::Client, &[], None),
            "needs at least one policy",
        ),
        (
            create(TokenType::Client, &["nope"], None),
            "no policy named \"nope\"",
        ),
        (
            create(TokenType::Management, &["ro"], None),
            "takes no policies",
        ),
        (create(TokenType::Management, &[], Some(0)), "at least 1"),
        (
            create(TokenType::Management, &[], Some(u64::MAX)),
            "ten years",
        ),
    ];
    for (req, want) in cases {
        match acl::create_token(&s, &mut env(), req, "h".to_string()) {
            Err(ServerError::BadRequest(m)) => assert!(m.contains(want), "{m}"),
            other => panic!("wanted a 400 with {want:?}, got {other:?}"),
        }
    }

    let apply = |rules: &str| AclPolicyApplyRequest {
        description: String::new(),
        rules: rules.to_string(),
    };
    assert!(acl::apply_policy("bad name", apply("node { policy = \"read\" }")).is_err());
    assert!(acl::apply_policy("ro", apply("node { policy = \"admin\" }")).is_err());
    s.apply_in_memory(acl::apply_policy("ro", apply("node { policy = \"read\" }")).unwrap());
    let mut e = env();
    let now = e.now;
    let (b, t) = acl::create_token(
        &s,
        &mut e,
        create(TokenType::Client, &["ro", "ro"], Some(60)),
        "h2".to_string(),
    )
    .unwrap();
    assert_eq!(t.policies, vec!["ro"]);
    assert_eq!(t.expiration_time, Some(now + 60_000));
    s.apply_in_memory(b);
    // Kept a day past its expiry (its holder is told it expired), then
    // deleted by the GC pass.
    let day = acl::EXPIRED_TOKEN_GRACE_MS;
    assert!(acl::expired_tokens(&s, now + 60_000 + day - 1).is_empty());
    assert_eq!(
        acl::expired_tokens(&s, now + 60_000 + day).delete_acl_tokens,
        vec![t.accessor_id.clone()]
    );
    s.apply_in_memory(acl::delete_policy(&s, "ro").unwrap());
    assert!(acl::delete_policy(&s, "ro").is_err());
    assert!(acl::revoke_token(&s, "no-such-accessor").is_err());
    // Short prefixes could pick the wrong token: 8 characters at least.
    assert!(matches!(
        acl::find_token(&s, "id"),
        Err(ServerError::BadRequest(_))
    ));
    assert_eq!(acl::find_token(&s, "id-1").unwrap().accessor_id, "id-1");
}

/// The same job id in two namespaces: two jobs, each with its own
/// allocations, evaluations and stop; a namespace must exist before a job
/// goes in it, and goes only once empty.
#[test]
fn namespaces_keep_same_named_jobs_apart() {
    let mut w = World::new();
    w.join("n1");
    let mut prod = job("web", "service", 1);
    prod.namespace = "prod".to_string();
    let err = jobs::register(
        &w.s,
        &mut w.env,
        prod.clone(),
        TriggeredBy::JobRegister,
        None,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("namespace \"prod\" does not exist"),
        "{err}"
    );
    for bad in ["Prod", "tasks", "../../etc", "", "a_b"] {
        let err =
            super::namespaces::apply(bad, edge_api::NamespaceApplyRequest::default()).unwrap_err();
        assert_eq!(kind(&err), "bad request", "{bad}: {err}");
    }
    w.commit(super::namespaces::apply("prod", edge_api::NamespaceApplyRequest::default()).unwrap());
    // n1 has room for two copies: one of each job.
    w.submit(job("web", "service", 1));
    w.submit(prod);
    w.settle();
    assert_eq!(w.live("web").len(), 1);
    assert_eq!(w.live("prod/web").len(), 1);
    assert!(w.live("prod/web").iter().all(|a| a.namespace == "prod"));
    assert!(
        w.s.job_evals("prod/web")
            .iter()
            .all(|e| e.namespace == "prod")
    );

    let err = super::namespaces::delete(&w.s, "prod").unwrap_err();
    assert_eq!(kind(&err), "conflict", "{err}");
    assert!(err.to_string().contains("web"), "{err}");
    let err = super::namespaces::delete(&w.s, "default").unwrap_err();
    assert_eq!(kind(&err), "conflict", "{err}");

    let (b, _) = jobs::stop(&w.s, &mut w.env, ("default", "web"), true).unwrap();
    w.commit(b);
    w.settle();
    assert!(w.live("web").is_empty());
    assert_eq!(
        w.live("prod/web").len(),
        1,
        "the other namespace's job runs on"
    );
    assert!(w.s.jobs.contains_key("prod/web"));

    let (b, _) = jobs::stop(&w.s, &mut w.env, ("prod", "web"), true).unwrap();
    w.commit(b);
    w.settle();
    w.report_complete("prod/web", "n1");
    w.commit(super::namespaces::delete(&w.s, "prod").unwrap());
    assert!(w.s.namespace("prod").is_none());
    assert!(w.s.namespace("default").is_some(), "default always exists");
}

/// A job whose bridge group of `count` copies, one per node, joins its
/// network `back`.
fn networked(id: &str, count: u32) -> Job {
    let src = format!(
        r#"job "{id}" {{
  constraint {{
    operator = "distinct_hosts"
    value    = "true"
  }}
  network "back" {{}}
  group "g" {{
    count = {count}
    network {{
      mode     = "bridge"
      networks = ["back"]
    }}
    task "t" {{
      driver = "exec"
      config {{
        command = "/bin/sleep"
      }}
      resources {{
        cpu    = 100
        memory = 64
      }}
    }}
  }}
}}"#
    );
    let job = edge_spec::parse_hcl(&src, &edge_spec::ParseOptions::default())
        .expect("test job parses")
        .job;
    jobs::prepare(job, &DriverConfigs::default()).expect("test job is valid")
}

#[test]
fn named_networks_get_a_subnet_and_a_slice_per_node_until_purged() {
    let mut w = World::new();
    w.overlay = OverlayPool::new("10.9.0.0/23".parse().unwrap(), 24, 26).unwrap();
    for id in ["a", "b", "c"] {
        w.join(id);
        w.set_node(id, |n| {
            n.attributes
                .insert(edge_spec::BRIDGE_ATTRIBUTE.to_string(), "true".to_string());
        });
    }
    w.submit(networked("shop", 2));
    w.settle();
    let shop = &w.s.networks["default/shop/back"];
    assert_eq!(
        (shop.vni, shop.subnet.to_string().as_str()),
        (1, "10.9.0.0/24")
    );
    let placed: std::collections::BTreeSet<&str> = w
        .allocs("shop")
        .iter()
        .map(|a| a.node_id.as_str())
        .collect();
    let sliced: std::collections::BTreeSet<&str> = shop.nodes.keys().map(String::as_str).collect();
    assert_eq!(placed, sliced);
    let slices: std::collections::BTreeSet<String> = placed
        .iter()
        .map(|n| shop.slice(n).unwrap().to_string())
        .collect();
    assert_eq!(slices.len(), 2, "{slices:?}");

    // A second job's network gets the next subnet and id; a third finds
    // the pool full and gets none (its members are refused on the node).
    w.submit(networked("blog", 1));
    w.settle();
    let blog = &w.s.networks["default/blog/back"];
    assert_eq!(
        (blog.vni, blog.subnet.to_string().as_str()),
        (2, "10.9.1.0/24")
    );
    w.submit(networked("full", 1));
    w.settle();
    assert!(!w.s.networks.contains_key("default/full/back"));
    let said = w.s.evals.values().any(|e| {
        e.job_id == "full"
            && e.status_description
                .contains("network pool 10.9.0.0/23 is full")
    });
    assert!(said, "the evaluation says why the network has no subnet");

    // Scaling up adds the new node's slice and keeps the others.
    let before = w.s.networks["default/shop/back"].clone();
    w.submit(networked("shop", 3));
    w.settle();
    let after = &w.s.networks["default/shop/back"];
    assert_eq!(after.nodes.len(), 3);
    assert!(before.nodes.iter().all(|(n, i)| after.nodes[n] == *i));

    // Stopped, the network stays (a restart keeps its addresses); purged,
    // it goes and its subnet is free again.
    let (b, _) = jobs::stop(&w.s, &mut w.env, ("default", "blog"), false).unwrap();
    w.commit(b);
    assert!(w.s.networks.contains_key("default/blog/back"));
    let (b, _) = jobs::stop(&w.s, &mut w.env, ("default", "blog"), true).unwrap();
    assert_eq!(b.delete_networks, ["default/blog/back"]);
    w.commit(b);
    w.settle();
    w.submit(networked("full", 2));
    w.settle();
    assert_eq!(
        w.s.networks["default/full/back"].subnet.to_string(),
        "10.9.1.0/24"
    );
}

mod periodic;

/// Job "app": group "g" (count 1) and group "web", which waits for "g".
fn waiting_app(condition: edge_spec::DependCondition) -> Job {
    let mut j = job("app", "service", 1);
    let mut web = j.groups[0].clone();
    web.name = "web".to_string();
    web.depends_on = vec![edge_spec::GroupDependency {
        group: "g".to_string(),
        condition,
    }];
    j.groups.push(web);
    j
}

/// `a`'s agent reports it `status`.
fn report(w: &mut World, a: &Allocation, status: ClientStatus) -> Batch {
    allocs::update(&w.s, &mut w.env, &a.node_id, vec![update(&a.id, status)]).unwrap()
}

/// A group that `depends_on` another is placed once the other runs: the
/// agent's report of it running queues the evaluation, one per report,
/// and none once the dependent group has started.
#[test]
fn a_waiting_group_is_placed_when_what_it_waits_for_runs() {
    let mut w = World::new();
    w.join("n1");
    w.submit(waiting_app(edge_spec::DependCondition::Started));
    w.settle();
    let groups =
        |w: &World| -> Vec<String> { w.live("app").iter().map(|a| a.group.clone()).collect() };
    assert_eq!(groups(&w), vec!["g".to_string()]);
    let e =
        w.s.job_evals(&edge_spec::job_key("default", "app"))
            .into_iter()
            .find(|e| e.triggered_by == TriggeredBy::JobRegister)
            .unwrap()
            .clone();
    assert_eq!(e.status, EvalStatus::Complete);
    assert_eq!(e.queued_allocations["web"], 1);
    assert!(
        e.status_description
            .ends_with("; group \"web\" waits for group \"g\" to be running (0 of 1 copies)"),
        "{}",
        e.status_description
    );
    let g = w.live("app")[0].clone();
    let b = report(&mut w, &g, ClientStatus::Pending);
    assert!(b.evals.is_empty(), "a pending copy readies nothing");
    w.commit(b);
    let b = report(&mut w, &g, ClientStatus::Running);
    assert_eq!(
        triggers(&b.evals),
        vec![(TriggeredBy::Dependency, EvalStatus::Pending)]
    );
    w.commit(b);
    w.settle();
    let mut placed = groups(&w);
    placed.sort();
    assert_eq!(placed, vec!["g".to_string(), "web".to_string()]);
    // Started, the group no longer waits: its dependency's reports queue
    // nothing.
    let mut checks = update(&g.id, ClientStatus::Running);
    checks
        .checks
        .insert("x".to_string(), edge_spec::HealthStatus::Critical);
    let b = allocs::update(&w.s, &mut w.env, &g.node_id, vec![checks]).unwrap();
    assert!(b.evals.is_empty());
}

/// A service job's group on every node (`system = true`) follows the
/// nodes as a system job does, and has no count to scale.
#[test]
fn a_system_group_follows_nodes_that_join() {
    let mut w = World::new();
    w.join("n1");
    let mut j = job("shop", "service", 2);
    let mut exporter = j.groups[0].clone();
    exporter.name = "exporter".to_string();
    exporter.count = 1;
    exporter.system = true;
    exporter.tasks[0].resources.cpu = 100;
    j.groups.push(exporter);
    w.submit(j);
    w.settle();
    let on = |w: &World, g: &str| -> Vec<String> {
        let mut v: Vec<String> = w
            .live("shop")
            .iter()
            .filter(|a| a.group == g)
            .map(|a| a.node_id.clone())
            .collect();
        v.sort();
        v
    };
    assert_eq!(on(&w, "exporter"), ["n1"]);
    w.join("n2");
    w.settle();
    assert_eq!(on(&w, "exporter"), ["n1", "n2"]);
    assert_eq!(on(&w, "g").len(), 2);
    let err = jobs::scaled(&w.s, ("default", "shop"), "exporter", 3, String::new(), 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "group \"exporter\" runs one copy on every node (`system = true`): it has no count to scale"
    );
}

/// A group that waits for a one-shot group (`batch = true`) is placed when
/// the agent reports the one-shot copy complete; the copy is not replaced.
#[test]
fn a_one_shot_group_completes_and_lets_its_dependents_start() {
    let mut w = World::new();
    w.join("n1");
    let mut j = waiting_app(edge_spec::DependCondition::Completed);
    j.groups[0].batch = true;
    w.submit(j);
    w.settle();
    let g = w.live("app")[0].clone();
    assert_eq!(g.group, "g");
    let b = report(&mut w, &g, ClientStatus::Running);
    assert!(b.evals.is_empty(), "running is not completed");
    w.commit(b);
    let b = report(&mut w, &g, ClientStatus::Complete);
    assert_eq!(
        triggers(&b.evals),
        vec![(TriggeredBy::Dependency, EvalStatus::Pending)]
    );
    w.commit(b);
    w.settle();
    let live: Vec<String> = w.live("app").iter().map(|a| a.group.clone()).collect();
    assert_eq!(
        live,
        vec!["web".to_string()],
        "the one-shot is not run again"
    );
}

/// The failed version's `rollback` pace (Swarm's `rollback_config`) is
/// the rules the stable version rolls back out by.
#[test]
fn a_revert_goes_at_the_failed_versions_rollback_pace() {
    let mut w = World::new();
    w.join("n1");
    w.join("n2");
    let v0 = auto_reverting_web();
    w.submit(v0.clone());
    w.settle();
    w.report_running("web");
    judge_all(&mut w, "web", true);
    w.settle();
    assert_eq!(w.s.stable["web"].version, 0);
    let mut v1 = v0.clone();
    v1.groups[0].tasks[0].env.insert("V".into(), "1".into());
    v1.groups[0].update = Some(edge_spec::UpdatePolicy {
        rollback: Some(edge_spec::RollbackPolicy {
            max_parallel: Some(2),
            min_healthy_time: Some(edge_spec::duration::PolicyWait(
                std::time::Duration::from_secs(5),
            )),
        }),
        ..Default::default()
    });
    w.submit(v1);
    w.settle();
    judge_all(&mut w, "web", false);
    w.settle();
    let back = &w.s.jobs["web"];
    assert_eq!(back.version, 2, "rolled back");
    let rules = edge_spec::Update::resolve(back, &back.groups[0]);
    assert_eq!(rules.max_parallel, 2);
    assert_eq!(rules.min_healthy_time, std::time::Duration::from_secs(5));
    assert!(rules.auto_revert, "the stable version's own rules stay");
    assert_eq!(back.groups[0].tasks[0].env.get("V"), None);
}
