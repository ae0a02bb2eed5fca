//! Periodic launches and dispatches: the pure launch decision, children
//! registered and placed as batch jobs, overlap, downtime and the checks
//! of a dispatch.

use super::*;
use crate::ops::periodic::{self, Decision, decide};
use edge_api::JobDispatchRequest;
use edge_spec::JobStatus;
use edge_spec::periodic::Periodic;

const MINUTE: i64 = 60_000;

fn every_minute(prohibit_overlap: bool) -> Periodic {
    Periodic {
        crons: vec!["* * * * *".to_string()],
        cron: None,
        prohibit_overlap,
        time_zone: "UTC".to_string(),
        enabled: true,
    }
}

/// NOW is 22:13:20 UTC: the next minute starts 40 s later.
const NEXT: i64 = NOW + 40_000;

#[test]
fn the_launch_decision() {
    let p = every_minute(false);
    let overlap = every_minute(true);
    let off = Periodic {
        enabled: false,
        ..every_minute(false)
    };
    for (name, p, last, now, running, want) in [
        (
            "not yet",
            &p,
            NOW,
            NOW + 1,
            false,
            Decision::Wait(Some(NEXT)),
        ),
        ("due", &p, NOW, NEXT, false, Decision::Launch),
        ("due, a child runs", &p, NOW, NEXT, true, Decision::Launch),
        (
            "overlap prohibited",
            &overlap,
            NOW,
            NEXT,
            true,
            Decision::Skip,
        ),
        (
            "overlap, none runs",
            &overlap,
            NOW,
            NEXT,
            false,
            Decision::Launch,
        ),
        // Ten launch times passed while the server was down: one launch.
        (
            "after downtime",
            &p,
            NOW,
            NOW + 10 * MINUTE,
            false,
            Decision::Launch,
        ),
        // Launched at a time off the schedule: the next one is on it.
        (
            "after a launch",
            &p,
            NEXT + 5_000,
            NEXT + 5_000,
            false,
            Decision::Wait(Some(NEXT + MINUTE)),
        ),
        (
            "disabled",
            &off,
            NOW,
            NOW + 10 * MINUTE,
            false,
            Decision::Wait(None),
        ),
    ] {
        assert_eq!(decide(p, last, now, running), want, "{name}");
    }
}

fn periodic_job(id: &str, overlap: bool) -> Job {
    let mut j = job(id, "batch", 1);
    j.periodic = Some(every_minute(overlap));
    j
}

/// A child's key: its id holds a `/`, so it names its namespace.
fn key(id: &str) -> String {
    edge_spec::job_key("default", id)
}

fn launch(w: &mut World, id: &str) -> String {
    let (b, r) = periodic::launch(&w.s, &mut w.env, ("default", id)).expect("launches");
    w.commit(b);
    r.job_id
}

#[test]
fn a_periodic_job_places_nothing_and_launches_children_on_schedule() {
    let mut w = World::new();
    w.join("n1");
    w.submit(periodic_job("cron", true));
    w.settle();
    assert!(
        w.allocs("cron").is_empty(),
        "the parent itself runs nothing"
    );
    assert_eq!(jobs::status(&w.s, &w.s.jobs["cron"]), JobStatus::Running);

    let none = HashMap::new();
    let due = periodic::due(&w.s, NOW + 1, &none);
    assert!(due.launch.is_empty());
    assert_eq!(due.next, Some(NEXT));
    assert_eq!(periodic::next_launch(&w.s, &w.s.jobs["cron"]), Some(NEXT));

    let due = periodic::due(&w.s, NEXT, &none);
    assert_eq!(due.launch, [("default".to_string(), "cron".to_string())]);
    assert_eq!(due.next, Some(NEXT + MINUTE));
    w.env.now = NEXT;
    let child = launch(&mut w, "cron");
    assert_eq!(child, format!("cron/periodic-{}", NEXT / 1000));
    let c = &w.s.jobs[&key(&child)];
    assert_eq!(c.parent_id, "cron");
    assert!(c.periodic.is_none() && !c.launches());
    w.settle();
    assert_eq!(w.live(&key(&child)).len(), 1, "the child is placed");
    assert_eq!(periodic::last_launch(&w.s, &w.s.jobs["cron"]), NEXT);

    // The child still runs: the next minute's launch is skipped.
    let at = NEXT + MINUTE;
    let due = periodic::due(&w.s, at, &none);
    assert!(due.launch.is_empty());
    assert_eq!(due.skip, ["cron"]);
    let skipped = HashMap::from([("cron".to_string(), at)]);
    assert_eq!(
        periodic::due(&w.s, at + 1, &skipped).next,
        Some(at + MINUTE)
    );

    // Once it ended, the next minute launches again.
    w.report_complete(&key(&child), "n1");
    let due = periodic::due(&w.s, at + MINUTE, &skipped);
    assert_eq!(due.launch.len(), 1);

    // A launch in the same second is refused, not a second registration.
    w.env.now = at + MINUTE;
    launch(&mut w, "cron");
    let err = periodic::launch(&w.s, &mut w.env, ("default", "cron")).unwrap_err();
    assert_eq!(kind(&err), "conflict");
    let children: Vec<&str> = periodic::children(&w.s, &w.s.jobs["cron"])
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(children.len(), 2, "{children:?}");
}

#[test]
fn a_server_down_over_launch_times_launches_once() {
    let mut w = World::new();
    w.submit(periodic_job("cron", false));
    let back = NOW + 10 * MINUTE + 7_000;
    let due = periodic::due(&w.s, back, &HashMap::new());
    assert_eq!(due.launch.len(), 1);
    w.env.now = back;
    launch(&mut w, "cron");
    let due = periodic::due(&w.s, back, &HashMap::new());
    assert!(due.launch.is_empty(), "{due:?}");
    // 22:23:27 after 22:13:20: the next minute starts at 22:24.
    assert_eq!(due.next, Some(NOW + 640_000));
}

#[test]
fn stopped_or_plain_jobs_are_not_launched() {
    let mut w = World::new();
    w.submit(periodic_job("cron", false));
    w.submit(job("plain", "batch", 1));
    let (b, _) = jobs::stop(&w.s, &mut w.env, ("default", "cron"), false).unwrap();
    w.commit(b);
    assert!(
        periodic::due(&w.s, NOW + 10 * MINUTE, &HashMap::new())
            .launch
            .is_empty()
    );
    assert_eq!(periodic::next_launch(&w.s, &w.s.jobs["cron"]), None);
    let err = periodic::launch(&w.s, &mut w.env, ("default", "cron")).unwrap_err();
    assert_eq!(kind(&err), "conflict");
    let err = periodic::launch(&w.s, &mut w.env, ("default", "plain")).unwrap_err();
    assert_eq!(kind(&err), "conflict");
    let err = periodic::launch(&w.s, &mut w.env, ("default", "nope")).unwrap_err();
    assert_eq!(kind(&err), "not found");
}

fn parameterized_job() -> Job {
    let mut j = job("render", "batch", 1);
    j.meta.insert("owner".into(), "ops".into());
    j.groups[0].meta.insert("quality".into(), "group".into());
    j.parameterized = Some(edge_spec::periodic::Parameterized {
        payload: edge_spec::periodic::PayloadRule::Optional,
        meta_required: vec!["scene".into()],
        meta_optional: vec!["quality".into()],
    });
    j
}

fn dispatch_req(payload: &[u8], meta: &[(&str, &str)]) -> JobDispatchRequest {
    use base64::Engine;
    JobDispatchRequest {
        payload: base64::engine::general_purpose::STANDARD.encode(payload),
        meta: meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// A parent registered through the API carries its job meta in its groups
/// (`jobs::prepare`); a dispatch's value for the same key still wins.
#[test]
fn a_dispatchs_meta_goes_over_the_parents_job_meta() {
    let mut w = World::new();
    w.join("n1");
    let mut parent = parameterized_job();
    parent.meta.insert("quality".into(), "low".into());
    parent.groups[0].meta.clear();
    let parent = jobs::prepare(parent, &edge_spec::DriverConfigs::default()).unwrap();
    assert_eq!(parent.groups[0].meta["quality"], "low");
    w.submit(parent);
    w.settle();
    let req = dispatch_req(b"", &[("scene", "a"), ("quality", "high")]);
    let (b, r) = periodic::dispatch(&w.s, &mut w.env, ("default", "render"), &req).unwrap();
    w.commit(b);
    let c = &w.s.jobs[&key(&r.job_id)];
    let meta = c.groups[0].task_meta(&c.groups[0].tasks[0]);
    assert_eq!(
        (meta["quality"].as_str(), meta["owner"].as_str()),
        ("high", "ops")
    );
}

#[test]
fn a_dispatch_makes_a_child_with_its_meta_and_payload() {
    let mut w = World::new();
    w.join("n1");
    w.submit(parameterized_job());
    w.settle();
    assert!(w.allocs("render").is_empty());

    let req = dispatch_req(b"hello", &[("scene", "a"), ("quality", "high")]);
    let (b, r) = periodic::dispatch(&w.s, &mut w.env, ("default", "render"), &req).unwrap();
    w.commit(b);
    let prefix = format!("render/dispatch-{}-", NOW / 1000);
    assert!(r.job_id.starts_with(&prefix), "{}", r.job_id);
    let suffix = &r.job_id[prefix.len()..];
    assert!(suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_hexdigit()));
    let c = w.s.jobs[&key(&r.job_id)].clone();
    assert_eq!(c.parent_id, "render");
    assert_eq!(c.payload, "aGVsbG8=");
    assert_eq!(c.meta["scene"], "a");
    // The group's own meta stays over the dispatch's; the rest reaches it.
    let meta = c.groups[0].task_meta(&c.groups[0].tasks[0]);
    assert_eq!(meta["quality"], "group");
    assert_eq!(meta["scene"], "a");
    assert_eq!(meta["owner"], "ops");
    w.settle();
    assert_eq!(w.live(&key(&r.job_id)).len(), 1);

    for (req, why) in [
        (dispatch_req(b"", &[]), "missing required meta"),
        (
            dispatch_req(b"", &[("scene", "a"), ("color", "red")]),
            "color",
        ),
        (
            dispatch_req(
                &vec![b'x'; edge_spec::periodic::MAX_PAYLOAD + 1],
                &[("scene", "a")],
            ),
            "limit",
        ),
        (
            JobDispatchRequest {
                payload: "not base64!".into(),
                meta: BTreeMap::from([("scene".into(), "a".into())]),
            },
            "base64",
        ),
    ] {
        let err = periodic::dispatch(&w.s, &mut w.env, ("default", "render"), &req).unwrap_err();
        assert_eq!(kind(&err), "bad request");
        assert!(err.to_string().contains(why), "{why}: {err}");
    }
    let huge = JobDispatchRequest {
        payload: "A".repeat(1 << 20),
        meta: BTreeMap::new(),
    };
    let err = periodic::dispatch(&w.s, &mut w.env, ("default", "render"), &huge).unwrap_err();
    assert!(err.to_string().contains("over"), "{err}");
    let req = dispatch_req(b"", &[("scene", "a")]);
    let err = periodic::dispatch(&w.s, &mut w.env, ("default", &r.job_id), &req).unwrap_err();
    assert_eq!(kind(&err), "conflict", "a child is not parameterized");
}

#[test]
fn ended_children_are_collected_but_the_newest_launch_stays() {
    let mut w = World::new();
    w.join("n1");
    w.submit(periodic_job("cron", false));
    let mut ids = Vec::new();
    for i in 1..=3 {
        w.env.now = NOW + i * MINUTE;
        let id = launch(&mut w, "cron");
        w.settle();
        ids.push(id);
    }
    // Every one ended: all but the newest go once old enough.
    for id in &ids {
        w.report_complete(&key(id), "n1");
    }
    let hour = 3_600_000;
    assert!(
        periodic::expired_children(&w.s, NOW + 4 * MINUTE, hour)
            .purge_jobs
            .is_empty(),
        "too young to go"
    );
    let b = periodic::expired_children(&w.s, NOW + 3 * MINUTE + hour + 1, hour);
    let want: Vec<String> = ids[..2].iter().map(|id| key(id)).collect();
    assert_eq!(b.purge_jobs, want, "the newest periodic child stays");
    w.commit(b);
    assert_eq!(
        periodic::last_launch(&w.s, &w.s.jobs["cron"]),
        NOW + 3 * MINUTE
    );
}
