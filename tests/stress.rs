//! Heavy tests, kept apart from the timing-sensitive ones: a flood far
//! beyond the kernel's inotify queue, and kill -9 in the middle of a burst.
//! They saturate the disk and both cores, so they take turns.

mod support;

mod stress {
    use std::sync::{Mutex, MutexGuard};

    mod crash;
    mod flood;

    static SERIAL: Mutex<()> = Mutex::new(());

    /// Held for a whole test: one heavy test at a time.
    fn serial() -> MutexGuard<'static, ()> {
        SERIAL
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
