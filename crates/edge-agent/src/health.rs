//! A copy's health for rolling updates: healthy once its tasks run (and its
//! checks pass, per the group's `health_check`) for `min_healthy_time`;
//! unhealthy when `healthy_deadline` passes first or a task fails. Decided
//! once and reported, so the server moves the update on (or stops it).

use crate::state::LocalAlloc;
use edge_spec::{AllocHealth, Allocation, ClientStatus, Group, HealthCheck, HealthStatus, Update};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How often a copy is looked at; well under any sensible min_healthy_time.
const EVERY: Duration = Duration::from_millis(100);

pub(crate) struct Watch {
    rules: Update,
    deadline: Option<Instant>,
    since: Option<Instant>,
}

impl Watch {
    pub(crate) fn new(rules: Update, started: Instant) -> Watch {
        Watch {
            rules,
            deadline: started.checked_add(rules.healthy_deadline),
            since: None,
        }
    }

    /// The verdict on the copy as it is at `now`, once there is one.
    pub(crate) fn observe(&mut self, a: &Allocation, group: &Group, now: Instant) -> Option<bool> {
        if a.client_status == ClientStatus::Failed {
            return Some(false);
        }
        let checks_pass = || {
            group
                .services
                .iter()
                .filter(|s| !s.checks.is_empty())
                .all(|s| a.checks.get(&s.name) == Some(&HealthStatus::Passing))
        };
        let ok = a.client_status == ClientStatus::Running
            && (self.rules.health_check == HealthCheck::TaskStates || checks_pass());
        if ok {
            let since = *self.since.get_or_insert(now);
            if now.saturating_duration_since(since) >= self.rules.min_healthy_time {
                return Some(true);
            }
        } else {
            self.since = None;
        }
        match self.deadline {
            Some(d) if now >= d => Some(false),
            _ => None,
        }
    }
}

/// Watches the copy until it has a verdict, records it and reports it;
/// ends early when the copy is stopped.
pub(crate) async fn run(
    shared: std::sync::Arc<Mutex<LocalAlloc>>,
    group: Group,
    rules: Update,
    mut stop: watch::Receiver<bool>,
    report: impl Fn(&LocalAlloc),
) {
    let mut w = Watch::new(rules, Instant::now());
    loop {
        {
            let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
            if g.alloc.health.is_some() {
                return;
            }
            if let Some(healthy) = w.observe(&g.alloc, &group, Instant::now()) {
                g.alloc.health = Some(AllocHealth {
                    healthy,
                    timestamp: crate::now_ms(),
                });
                tracing::info!(alloc = %g.alloc.id, healthy, "allocation health decided");
                report(&g);
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_spec::{Check, Service};

    fn group(with_check: bool) -> Group {
        let mut g: Group = serde_json::from_value(serde_json::json!({
            "name": "g", "tasks": [{"name": "t", "driver": "exec"}],
        }))
        .unwrap();
        let mut svc: Service = serde_json::from_value(serde_json::json!({"name": "web"})).unwrap();
        if with_check {
            let c: Check =
                serde_json::from_value(serde_json::json!({"type": "tcp", "name": "c"})).unwrap();
            svc.checks.push(c);
        }
        g.services.push(svc);
        g
    }

    fn alloc(status: ClientStatus, check: Option<HealthStatus>) -> Allocation {
        let mut a: Allocation = serde_json::from_value(serde_json::json!({
            "id": "a", "name": "j.g[0]", "index": 0, "job_id": "j", "job_version": 0,
            "group": "g", "group_hash": 0, "node_id": "n", "eval_id": "e",
            "resources": {"cpu": 1, "memory": 1, "ports": []},
        }))
        .unwrap();
        a.client_status = status;
        if let Some(c) = check {
            a.checks.insert("web".to_string(), c);
        }
        a
    }

    fn rules(mode: HealthCheck) -> Update {
        Update {
            max_parallel: 1,
            health_check: mode,
            min_healthy_time: Duration::from_secs(2),
            healthy_deadline: Duration::from_secs(10),
            progress_deadline: Duration::from_secs(600),
            auto_revert: false,
            auto_promote: false,
            canary: 0,
            canary_weight: None,
        }
    }

    /// (case, health_check, service has a check, timeline of (second,
    /// status, check) observations, expected verdict after the last one)
    #[test]
    fn verdicts() {
        use ClientStatus::{Failed, Pending, Running};
        use HealthStatus::{Critical, Passing};
        type Step = (u64, ClientStatus, Option<HealthStatus>);
        type Case = (
            &'static str,
            HealthCheck,
            bool,
            &'static [Step],
            Option<bool>,
        );
        let cases: &[Case] = &[
            (
                "not yet running",
                HealthCheck::Checks,
                true,
                &[(0, Pending, None)],
                None,
            ),
            (
                "passing for min_healthy_time",
                HealthCheck::Checks,
                true,
                &[(0, Running, Some(Passing)), (2, Running, Some(Passing))],
                Some(true),
            ),
            (
                "passing, but not long enough",
                HealthCheck::Checks,
                true,
                &[(0, Running, Some(Passing)), (1, Running, Some(Passing))],
                None,
            ),
            (
                "a failing check restarts the clock",
                HealthCheck::Checks,
                true,
                &[
                    (0, Running, Some(Passing)),
                    (1, Running, Some(Critical)),
                    (2, Running, Some(Passing)),
                    (3, Running, Some(Passing)),
                ],
                None,
            ),
            (
                "running without checks counts for checks mode",
                HealthCheck::Checks,
                false,
                &[(0, Running, None), (2, Running, None)],
                Some(true),
            ),
            (
                "task_states ignores a failing check",
                HealthCheck::TaskStates,
                true,
                &[(0, Running, Some(Critical)), (2, Running, Some(Critical))],
                Some(true),
            ),
            (
                "a failed task is unhealthy",
                HealthCheck::Checks,
                true,
                &[(0, Failed, None)],
                Some(false),
            ),
            (
                "never passing by the deadline",
                HealthCheck::Checks,
                true,
                &[(0, Running, Some(Critical)), (10, Running, Some(Critical))],
                Some(false),
            ),
        ];
        for (case, mode, with_check, steps, want) in cases {
            let start = Instant::now();
            let mut w = Watch::new(rules(*mode), start);
            let g = group(*with_check);
            let mut got = None;
            for (sec, status, check) in *steps {
                got = w.observe(
                    &alloc(*status, *check),
                    &g,
                    start + Duration::from_secs(*sec),
                );
            }
            assert_eq!(got, *want, "{case}");
        }
    }

    /// A deadline too far to represent never fires, and never panics.
    #[test]
    fn a_huge_deadline_is_no_deadline() {
        let mut r = rules(HealthCheck::Checks);
        r.healthy_deadline = Duration::MAX;
        let start = Instant::now();
        let mut w = Watch::new(r, start);
        let a = alloc(ClientStatus::Pending, None);
        assert_eq!(
            w.observe(&a, &group(true), start + Duration::from_secs(1)),
            None
        );
    }
}
