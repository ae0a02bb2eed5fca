//! The wall clock of the time-driven loops that must be tested without
//! waiting (periodic launches): the system's, or one a test sets by hand,
//! which wakes whoever sleeps on it when it moves.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Unix milliseconds, from the system or from a test.
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<Manual>>);

struct Manual {
    now: AtomicI64,
    moved: Notify,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("Clock::system"),
            Some(m) => write!(f, "Clock::manual({})", m.now.load(Ordering::SeqCst)),
        }
    }
}

impl Clock {
    pub fn system() -> Clock {
        Clock(None)
    }

    /// A clock standing at `now_ms` until [`Clock::set`] moves it.
    pub fn manual(now_ms: i64) -> Clock {
        Clock(Some(Arc::new(Manual {
            now: AtomicI64::new(now_ms),
            moved: Notify::new(),
        })))
    }

    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            None => crate::now_ms(),
            Some(m) => m.now.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock (the system clock ignores it) and wakes its sleepers.
    pub fn set(&self, now_ms: i64) {
        if let Some(m) = &self.0 {
            m.now.store(now_ms, Ordering::SeqCst);
            m.moved.notify_waiters();
        }
    }

    /// Returns once the clock reads `at_ms` or later, or after `cap` of
    /// the runtime's time on the system clock (which may be set back or
    /// forward under a sleeper); a manual clock also returns whenever it
    /// is moved, so its sleeper looks at every time a test sets.
    pub async fn sleep_until(&self, at_ms: i64, cap: Duration) {
        match &self.0 {
            None => {
                let left = u64::try_from(at_ms.saturating_sub(crate::now_ms())).unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(left).min(cap)).await;
            }
            Some(m) => {
                let moved = m.moved.notified();
                if m.now.load(Ordering::SeqCst) < at_ms {
                    moved.await;
                }
            }
        }
    }
}
