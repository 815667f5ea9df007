//! The daemon's one stop switch, set by the signal thread.
//!
//! Hot loops read the atomic; sleepers (the heartbeat) wait on the condvar
//! so a stop never waits out a 60 s interval.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

#[derive(Default)]
pub(crate) struct StopFlag {
    flag: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl StopFlag {
    pub(crate) fn set(&self) {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.flag.store(true, Ordering::Release);
        self.cv.notify_all();
    }

    pub(crate) fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Sleeps up to `timeout`; true when the stop came.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let (_guard, _) = self
            .cv
            .wait_timeout_while(guard, timeout, |_| !self.is_set())
            .unwrap_or_else(|p| p.into_inner());
        self.is_set()
    }
}
