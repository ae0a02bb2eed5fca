//! The restart policy of a group, applied to one task's exits.

use edge_spec::{RestartMode, RestartPolicy};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start again after this delay.
    Restart(Duration),
    /// Give up: the task, and so the allocation, failed.
    Fail(String),
}

/// `times` holds earlier restarts (unix ms); a restart decided here is added.
/// Saturating throughout: a policy stored before durations were bounded may
/// hold any value, and the agent must not panic on it.
pub fn decide(policy: &RestartPolicy, times: &mut Vec<i64>, now: i64) -> Decision {
    let window = i64::try_from(policy.interval.as_millis()).unwrap_or(i64::MAX);
    times.retain(|t| now.saturating_sub(*t) < window);
    if u32::try_from(times.len()).is_ok_and(|n| n < policy.attempts) {
        times.push(now);
        return Decision::Restart(policy.delay);
    }
    match policy.mode {
        RestartMode::Fail => Decision::Fail(format!(
            "exceeded allowed attempts {} in interval {}",
            policy.attempts,
            edge_spec::duration::format(policy.interval)
        )),
        RestartMode::Delay => {
            let oldest = times.iter().copied().min().unwrap_or(now);
            let wait = oldest.saturating_add(window).saturating_sub(now).max(0);
            times.clear();
            times.push(now.saturating_add(wait));
            Decision::Restart(
                Duration::from_millis(wait.unsigned_abs()).saturating_add(policy.delay),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(attempts: u32, mode: RestartMode) -> RestartPolicy {
        RestartPolicy {
            attempts,
            interval: Duration::from_secs(60),
            delay: Duration::from_secs(1),
            mode,
        }
    }

    #[test]
    fn restarts_until_attempts_then_fails() {
        let p = policy(2, RestartMode::Fail);
        let mut t = Vec::new();
        assert_eq!(
            decide(&p, &mut t, 0),
            Decision::Restart(Duration::from_secs(1))
        );
        assert_eq!(
            decide(&p, &mut t, 1000),
            Decision::Restart(Duration::from_secs(1))
        );
        assert!(matches!(decide(&p, &mut t, 2000), Decision::Fail(m) if m.contains("attempts 2")));
    }

    #[test]
    fn old_restarts_fall_out_of_the_interval() {
        let p = policy(1, RestartMode::Fail);
        let mut t = Vec::new();
        assert!(matches!(decide(&p, &mut t, 0), Decision::Restart(_)));
        assert!(matches!(decide(&p, &mut t, 59_000), Decision::Fail(_)));
        assert!(matches!(decide(&p, &mut t, 61_000), Decision::Restart(_)));
    }

    #[test]
    fn delay_mode_waits_out_the_interval() {
        let p = policy(1, RestartMode::Delay);
        let mut t = Vec::new();
        assert!(matches!(decide(&p, &mut t, 0), Decision::Restart(_)));
        assert_eq!(
            decide(&p, &mut t, 10_000),
            Decision::Restart(Duration::from_secs(50) + Duration::from_secs(1))
        );
    }

    #[test]
    fn huge_intervals_and_delays_saturate() {
        let huge = Duration::from_secs(100_000_000_000 * 3600);
        for mode in [RestartMode::Fail, RestartMode::Delay] {
            let p = RestartPolicy {
                attempts: 1,
                interval: huge,
                delay: huge,
                mode,
            };
            let mut t = vec![i64::MIN, i64::MAX];
            assert!(matches!(
                decide(&p, &mut t, 0),
                Decision::Restart(_) | Decision::Fail(_)
            ));
            let mut t = Vec::new();
            assert_eq!(decide(&p, &mut t, i64::MAX), Decision::Restart(huge));
            let d = decide(&p, &mut t, i64::MAX);
            if mode == RestartMode::Delay {
                assert!(matches!(d, Decision::Restart(w) if w >= huge), "{d:?}");
            }
        }
        let p = RestartPolicy {
            attempts: 1,
            interval: Duration::from_secs(60),
            delay: Duration::MAX,
            mode: RestartMode::Delay,
        };
        let mut t = Vec::new();
        decide(&p, &mut t, 0);
        assert_eq!(decide(&p, &mut t, 1000), Decision::Restart(Duration::MAX));
    }

    #[test]
    fn zero_attempts_fails_at_once() {
        let p = policy(0, RestartMode::Fail);
        assert!(matches!(decide(&p, &mut Vec::new(), 0), Decision::Fail(_)));
    }
}
