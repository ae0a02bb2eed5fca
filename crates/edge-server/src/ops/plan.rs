//! `edge job plan`: what registering a job would change, computed by running
//! the real scheduler on the current state without committing anything.

use super::{Env, evals, jobs, schedule};
use edge_api::JobPlanResponse;
use edge_sched::SchedulerConfig;
use edge_spec::{Job, TriggeredBy};
use edge_store::State;

/// The plan of a prepared job against the state: its diff to the stored
/// version and the scheduler's changes. The scheduler's seed is fixed, so
/// the same state plans the same.
pub(crate) fn dry_run(
    s: &State,
    env: &mut Env,
    config: &SchedulerConfig,
    mut job: Job,
) -> JobPlanResponse {
    let key = job.key();
    let current = s.jobs.get(&key);
    let (diff_type, diff) = diff(current, &job);
    if let Some(c) = current {
        job.version = jobs::next_version(Some(c), &job).0;
        job.status = jobs::status(s, c);
    }
    let mut eval = evals::new(
        env,
        (&job.namespace, &job.id),
        job.priority,
        TriggeredBy::JobRegister,
        None,
    );
    eval.id = "plan".to_string();
    let snap = schedule::snapshot(s, &key, config, env.now, 0);
    let plan = edge_sched::schedule(Some(&schedule::placed(&job)), &eval, &snap);
    JobPlanResponse {
        diff_type,
        diff,
        changes: plan.changes,
        failed: plan.failed,
        current_version: current.map(|c| c.version),
        job_modify_index: current.map_or(0, |c| c.modify_index),
        warnings: vec![],
    }
}

/// A line diff of the two specs as pretty JSON, without server-stamped fields.
pub(crate) fn diff(current: Option<&Job>, new: &Job) -> (String, Vec<String>) {
    let clean = |j: &Job| {
        let mut j = j.clone();
        j.version = 0;
        j.submit_time = 0;
        j.create_index = 0;
        j.modify_index = 0;
        j.status = Default::default();
        j.stop = false;
        serde_json::to_string_pretty(&j).unwrap_or_default()
    };
    let new_text = clean(new);
    let Some(cur) = current else {
        return (
            "added".to_string(),
            new_text.lines().map(|l| format!("+ {l}")).collect(),
        );
    };
    let old_text = clean(cur);
    if old_text == new_text && !cur.stop {
        return ("none".to_string(), vec![]);
    }
    let d = similar::TextDiff::from_lines(&old_text, &new_text);
    let mut out = Vec::new();
    for group in d.grouped_ops(2) {
        for op in group {
            for change in d.iter_changes(&op) {
                let sign = match change.tag() {
                    similar::ChangeTag::Delete => "-",
                    similar::ChangeTag::Insert => "+",
                    similar::ChangeTag::Equal => " ",
                };
                out.push(format!("{sign} {}", change.value().trim_end()));
            }
        }
        out.push("...".to_string());
    }
    ("edited".to_string(), out)
}
