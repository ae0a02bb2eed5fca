//! The autoscaler's decision for one group: a pure function of its scaling
//! rules, its count, the load the load balancers measured and what was
//! decided before. The server feeds it and commits what it answers.

use edge_spec::ScalingRules;

/// What the load balancers measured for a group's services over the last
/// evaluation interval, summed over every node.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Load {
    /// Average requests in flight.
    pub in_flight: f64,
    /// Requests answered per second.
    pub rps: f64,
    /// Requests held right now because the group has no serving copy.
    pub waiting: u32,
    /// Average CPU per running copy, in percent of what it reserved; none
    /// when no copy reported.
    pub cpu: Option<f64>,
}

/// What the server remembers of a group between decisions (in memory:
/// after a restart the idle clock starts again, which only delays a
/// scale-down).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct History {
    /// Unix milliseconds of the last count change.
    pub last_change: Option<i64>,
    /// Unix milliseconds of the last request seen in flight, answered or
    /// held.
    pub last_active: i64,
    /// Earlier decisions' wanted counts with their times, oldest first.
    pub wanted: Vec<(i64, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The count the load asks for, within the bounds: what the
    /// stabilisation window remembers.
    pub wanted: u32,
    /// The count to set now; the current one when nothing changes.
    pub count: u32,
    /// The metrics against their targets, and what held the change back.
    pub reason: String,
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Copies a metric asks for: `ceil(value / target)`, within `u32`.
fn copies(value: f64, target: u32) -> u32 {
    let n = (value / f64::from(target.max(1))).ceil();
    if n.is_finite() && n > 0.0 {
        n.min(f64::from(u32::MAX)) as u32
    } else {
        0
    }
}

/// Whether the short window's load asks for at least twice the copies
/// a serving group has, below its max: Knative's panic mode, which
/// decides at once instead of at the next evaluation interval.
pub fn urgent(rules: &ScalingRules, current: u32, recent: &Load) -> bool {
    if current == 0 || current >= rules.max {
        return false;
    }
    // As Knative, on the unrounded ratio: 15 in flight at 8 per copy is
    // not yet twice one copy.
    let per = |value: f64, target: u32| value / f64::from(target.max(1));
    let asked = [
        rules.target_concurrency.map(|t| per(recent.in_flight, t)),
        rules.target_rps.map(|t| per(recent.rps, t)),
    ]
    .into_iter()
    .flatten()
    .fold(0.0, f64::max);
    asked >= 2.0 * f64::from(current)
}

/// The count `rules` want for a group at `current` copies under `load`.
pub fn decide(
    rules: &ScalingRules,
    current: u32,
    load: &Load,
    hist: &History,
    now: i64,
) -> Decision {
    let mut why = Vec::new();
    let idle_for = now.saturating_sub(hist.last_active);
    let idle = load.waiting == 0 && idle_for >= ms(rules.idle_timeout);
    let mut asked: Option<u32> = None;
    if let Some(t) = rules.target_concurrency {
        let n = copies(load.in_flight, t);
        why.push(format!(
            "in flight {:.1} at {t} per copy asks {n}",
            load.in_flight
        ));
        asked = Some(asked.map_or(n, |a| a.max(n)));
    }
    if let Some(t) = rules.target_rps {
        let n = copies(load.rps, t);
        why.push(format!("{:.1} req/s at {t} per copy asks {n}", load.rps));
        asked = Some(asked.map_or(n, |a| a.max(n)));
    }
    if let (Some(t), Some(cpu)) = (rules.target_cpu, load.cpu) {
        // As Kubernetes' HPA: the copies that would bring the average
        // to the target.
        let n = copies(f64::from(current) * cpu, t);
        why.push(format!("cpu {cpu:.0}% of reserved at {t}% asks {n}"));
        asked = Some(asked.map_or(n, |a| a.max(n)));
    }
    // Without a target the load only decides between zero and serving.
    let mut raw = asked.unwrap_or(current);
    if load.waiting > 0 {
        why.push(format!("{} requests held at zero", load.waiting));
        raw = raw.max(1);
    } else if current == 0 {
        // A group at zero wakes only for a held request: the metrics of
        // the window may still be those of the copies it had.
        raw = 0;
    } else if !idle {
        raw = raw.max(1);
    } else if rules.min == 0 {
        why.push(format!(
            "idle for {}",
            edge_spec::duration::format(std::time::Duration::from_millis(
                u64::try_from(idle_for).unwrap_or(0)
            ))
        ));
        raw = 0;
    }
    let wanted = raw.clamp(rules.min, rules.max.max(rules.min));
    if wanted != raw {
        why.push(format!("bounds {}..{} give {wanted}", rules.min, rules.max));
    }
    let cooling = hist
        .last_change
        .is_some_and(|t| now.saturating_sub(t) < ms(rules.cooldown));
    let count = if wanted > current {
        if current == 0 && load.waiting > 0 {
            // Waking from zero: the held requests are waiting for it.
            wanted
        } else if cooling {
            why.push("in cooldown".to_string());
            current
        } else {
            let step = rules.scale_up_step.unwrap_or(u32::MAX);
            wanted.min(current.saturating_add(step))
        }
    } else if wanted < current {
        let since = now.saturating_sub(ms(rules.stabilization_window));
        let held = hist
            .wanted
            .iter()
            .filter(|(t, _)| *t > since)
            .map(|(_, w)| *w)
            .max()
            .unwrap_or(0);
        // Going to zero has its own wait (idle_timeout), so the window
        // does not hold it; and it never holds above today's bounds.
        let floor = if wanted == 0 && idle {
            0
        } else {
            held.clamp(wanted, rules.max.max(wanted))
        };
        let window = edge_spec::duration::format(rules.stabilization_window);
        if floor >= current {
            why.push(format!("the {window} window holds {current}"));
            current
        } else {
            if floor > wanted {
                why.push(format!("the {window} window holds {floor}"));
            }
            if cooling {
                why.push("in cooldown".to_string());
                current
            } else {
                let step = rules.scale_down_step.unwrap_or(u32::MAX);
                floor.max(current.saturating_sub(step))
            }
        }
    } else {
        current
    };
    if why.is_empty() {
        why.push("no target: serving while used".to_string());
    }
    Decision {
        wanted,
        count,
        reason: why.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rules() -> ScalingRules {
        let block = serde_json::json!({ "min": 0, "max": 4, "target_concurrency": 8 });
        serde_json::from_value::<edge_spec::Scaling>(block)
            .expect("a scaling block")
            .resolve(1)
    }

    fn load(in_flight: f64) -> Load {
        Load {
            in_flight,
            ..Load::default()
        }
    }

    const NOW: i64 = 1_000_000_000;

    fn active() -> History {
        History {
            last_active: NOW,
            ..History::default()
        }
    }

    #[test]
    fn concurrency_asks_ceil_of_in_flight_over_target_within_max() {
        let r = rules();
        for (inflight, want) in [(1.0, 1), (8.0, 1), (8.5, 2), (24.0, 3), (500.0, 4)] {
            let d = decide(&r, 1, &load(inflight), &active(), NOW);
            assert_eq!(d.count, want, "{inflight}: {}", d.reason);
        }
        let d = decide(&r, 1, &load(17.0), &active(), NOW);
        assert!(
            d.reason.contains("in flight 17.0 at 8 per copy asks 3"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn held_requests_wake_a_group_at_zero_even_in_cooldown() {
        let mut r = rules();
        r.cooldown = Duration::from_secs(600);
        let h = History {
            last_change: Some(NOW - 1),
            last_active: 0,
            wanted: vec![],
        };
        let d = decide(
            &r,
            0,
            &Load {
                waiting: 3,
                ..Load::default()
            },
            &h,
            NOW,
        );
        assert_eq!(d.count, 1, "{}", d.reason);
        assert!(d.reason.contains("3 requests held at zero"));
    }

    #[test]
    fn a_group_at_zero_stays_there_until_a_request_is_held() {
        let r = rules();
        // Fresh memory (a restarted server): not idle, yet nothing asks.
        let d = decide(&r, 0, &load(0.0), &active(), NOW);
        assert_eq!(d.count, 0, "{}", d.reason);
        // Scaled to zero by hand while the window still has its load.
        let d = decide(&r, 0, &load(30.0), &active(), NOW);
        assert_eq!(d.count, 0, "{}", d.reason);
    }

    #[test]
    fn idle_past_the_timeout_goes_to_zero_and_not_before() {
        let r = rules();
        let idle_ms = 300_000;
        let h = |ago: i64| History {
            last_active: NOW - ago,
            wanted: vec![(NOW - 1000, 1)],
            ..History::default()
        };
        assert_eq!(decide(&r, 1, &load(0.0), &h(idle_ms - 1), NOW).count, 1);
        let d = decide(&r, 1, &load(0.0), &h(idle_ms), NOW);
        assert_eq!(d.count, 0, "{}", d.reason);
        assert!(d.reason.contains("idle for 5m"), "{}", d.reason);
        let mut r1 = r.clone();
        r1.min = 1;
        assert_eq!(decide(&r1, 1, &load(0.0), &h(idle_ms * 10), NOW).count, 1);
    }

    #[test]
    fn scale_down_waits_for_the_window_and_steps() {
        let mut r = rules();
        r.scale_down_step = Some(1);
        let h = History {
            last_active: NOW,
            wanted: vec![(NOW - 120_000, 4), (NOW - 30_000, 3), (NOW - 10_000, 1)],
            last_change: None,
        };
        let d = decide(&r, 4, &load(1.0), &h, NOW);
        assert_eq!(d.count, 3, "held at the window's 3: {}", d.reason);
        let d = decide(&r, 4, &load(1.0), &h, NOW + 31_000);
        assert_eq!(d.count, 3, "one step at a time: {}", d.reason);
        r.scale_down_step = None;
        let d = decide(&r, 4, &load(1.0), &h, NOW + 31_000);
        assert_eq!(d.count, 1, "{}", d.reason);
    }

    #[test]
    fn cooldown_and_up_step_hold_a_scale_up() {
        let mut r = rules();
        r.cooldown = Duration::from_secs(30);
        r.scale_up_step = Some(1);
        let mut h = active();
        h.last_change = Some(NOW - 10_000);
        assert_eq!(decide(&r, 1, &load(30.0), &h, NOW).count, 1);
        h.last_change = Some(NOW - 40_000);
        assert_eq!(decide(&r, 1, &load(30.0), &h, NOW).count, 2);
    }

    #[test]
    fn rps_and_concurrency_take_the_larger_ask() {
        let mut r = rules();
        r.target_rps = Some(100);
        let l = Load {
            in_flight: 2.0,
            rps: 250.0,
            ..Load::default()
        };
        let d = decide(&r, 1, &l, &active(), NOW);
        assert_eq!(d.count, 3, "{}", d.reason);
    }

    #[test]
    fn a_short_window_at_twice_the_copies_is_urgent_below_max() {
        // max 4, 8 in flight per copy.
        let r = rules();
        assert!(urgent(&r, 1, &load(16.0)));
        assert!(!urgent(&r, 1, &load(15.0)));
        assert!(urgent(&r, 2, &load(40.0)));
        // At zero held requests wake it; at max there is nowhere to go.
        assert!(!urgent(&r, 0, &load(100.0)));
        assert!(!urgent(&r, 4, &load(1000.0)));
        let mut rps = r.clone();
        rps.target_concurrency = None;
        rps.target_rps = Some(10);
        let l = Load {
            rps: 20.0,
            ..Load::default()
        };
        assert!(urgent(&rps, 1, &l));
        // CPU has no short window.
        let mut cpu = r;
        cpu.target_concurrency = None;
        cpu.target_cpu = Some(10);
        let l = Load {
            cpu: Some(1000.0),
            ..Load::default()
        };
        assert!(!urgent(&cpu, 1, &l));
    }

    #[test]
    fn cpu_asks_the_copies_that_bring_the_average_to_its_target() {
        let mut r = rules();
        r.target_concurrency = None;
        r.target_cpu = Some(50);
        r.min = 1;
        let at = |cpu: f64| Load {
            cpu: Some(cpu),
            ..Load::default()
        };
        // Two copies at 90%: 180 points of CPU, 50 per copy asks 4.
        let d = decide(&r, 2, &at(90.0), &active(), NOW);
        assert_eq!(d.count, 4, "{}", d.reason);
        assert!(
            d.reason.contains("cpu 90% of reserved at 50% asks 4"),
            "{}",
            d.reason
        );
        // No copy reported yet: the count stays.
        assert_eq!(decide(&r, 2, &Load::default(), &active(), NOW).count, 2);
    }

    proptest::proptest! {
        /// Whatever the load and history, the count stays within the
        /// bounds (or at the current count) and nothing panics.
        #[test]
        fn the_count_stays_within_bounds(
            min in 0u32..5, span in 0u32..10, current in 0u32..20,
            in_flight in proptest::num::f64::ANY, rps in proptest::num::f64::ANY,
            waiting in 0u32..3, last_active in proptest::num::i64::ANY,
            last_change in proptest::option::of(proptest::num::i64::ANY),
            wanted in proptest::collection::vec((proptest::num::i64::ANY, 0u32..20), 0..5),
            now in proptest::num::i64::ANY,
        ) {
            let mut r = rules();
            r.min = min;
            r.max = (min + span).max(1);
            r.target_rps = Some(10);
            r.target_cpu = Some(50);
            let h = History { last_change, last_active, wanted };
            let d = decide(&r, current, &Load { in_flight, rps, waiting, cpu: Some(in_flight) }, &h, now);
            proptest::prop_assert!(d.wanted >= r.min && d.wanted <= r.max);
            proptest::prop_assert!(
                d.count == current || (d.count >= r.min && d.count <= r.max),
                "{} -> {}", current, d.count
            );
        }
    }
}
