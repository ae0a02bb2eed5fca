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
pub fn decide(policy: &RestartPolicy, times: &mut Vec<i64>, now: i64) -> Decision {
    let window = policy.interval.as_millis() as i64;
    times.retain(|t| now - *t < window);
    if (times.len() as u32) < policy.attempts {
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
            let wait = (oldest + window - now).max(0) as u64;
            times.clear();
            times.push(now + wait as i64);
            Decision::Restart(Duration::from_millis(wait) + policy.delay)
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
    fn zero_attempts_fails_at_once() {
        let p = policy(0, RestartMode::Fail);
        assert!(matches!(decide(&p, &mut Vec::new(), 0), Decision::Fail(_)));
    }
}
