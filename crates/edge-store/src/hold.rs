//! A test hook that holds SQLite reads back, as a slow disk or a long scan
//! would, so tests can show what else keeps running meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

#[derive(Default)]
pub(crate) struct Gate {
    holds: Mutex<usize>,
    released: Condvar,
    waiting: AtomicUsize,
}

impl Gate {
    /// Returns at once unless a [`ReadHold`] is alive; then blocks the
    /// calling thread until every hold is dropped.
    pub(crate) fn pass(&self) {
        let mut holds = self.holds.lock().unwrap_or_else(PoisonError::into_inner);
        if *holds == 0 {
            return;
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        while *holds > 0 {
            holds = self
                .released
                .wait(holds)
                .unwrap_or_else(PoisonError::into_inner);
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    pub(crate) fn hold(self: &Arc<Self>) -> ReadHold {
        *self.holds.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        ReadHold(self.clone())
    }
}

/// While alive, every read of [`crate::Store`] that goes to SQLite blocks
/// before its first statement. `Send`, so a thread of the test may release it.
pub struct ReadHold(Arc<Gate>);

impl ReadHold {
    /// Reads blocked by the hold right now.
    pub fn waiting(&self) -> usize {
        self.0.waiting.load(Ordering::SeqCst)
    }
}

impl Drop for ReadHold {
    fn drop(&mut self) {
        let mut holds = self.0.holds.lock().unwrap_or_else(PoisonError::into_inner);
        *holds -= 1;
        self.0.released.notify_all();
    }
}
