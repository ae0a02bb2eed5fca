//! `edge job plan`: what registering a job would change, computed by running
//! the real scheduler on the current state without committing anything.

use crate::http::job_status;
use crate::{Server, now_ms};
use edge_api::JobPlanResponse;
use edge_sched::{Snapshot, schedule};
use edge_spec::{EvalStatus, Evaluation, Job, TriggeredBy};
use std::collections::BTreeMap;

pub fn dry_run(sv: &Server, mut job: Job) -> JobPlanResponse {
    let now = now_ms();
    let cfg = sv.cfg.scheduler.clone();
    sv.store.read(|s| {
        let current = s.jobs.get(&job.id);
        let (diff_type, diff) = diff(current, &job);
        if let Some(c) = current {
            job.version = if c.spec_eq(&job) && !c.stop {
                c.version
            } else {
                c.version + 1
            };
            job.status = job_status(s, c);
        }
        let eval = Evaluation {
            id: "plan".to_string(),
            job_id: job.id.clone(),
            priority: job.priority,
            triggered_by: TriggeredBy::JobRegister,
            status: EvalStatus::Pending,
            status_description: String::new(),
            node_id: None,
            failed_tg_allocs: BTreeMap::new(),
            queued_allocations: BTreeMap::new(),
            wait_until: 0,
            create_time: now,
            modify_time: now,
            create_index: 0,
            modify_index: 0,
        };
        let snap = Snapshot {
            nodes: s.nodes.values().collect(),
            usage: &s.usage,
            job_allocs: s.job_allocs(&job.id),
            config: &cfg,
            now,
            seed: 0,
        };
        let plan = schedule(Some(&job), &eval, &snap);
        JobPlanResponse {
            diff_type,
            diff,
            changes: plan.changes,
            failed: plan.failed,
            current_version: current.map(|c| c.version),
            job_modify_index: current.map(|c| c.modify_index).unwrap_or(0),
            warnings: vec![],
        }
    })
}

/// A line diff of the two specs as pretty JSON, without server-stamped fields.
fn diff(current: Option<&Job>, new: &Job) -> (String, Vec<String>) {
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
