//! What the daemon tells its service manager, by sd_notify(3): `READY=1`
//! once it serves the town, `STATUS=` when what it does changes ("idle, 0
//! pending", "executing cycle for gastown/witness"), `WATCHDOG=1` while
//! the heartbeat thread is alive (the unit's `WatchdogSec=`),
//! `RELOADING=1` … `READY=1` around a reload of config.json, and
//! `STOPPING=1` at the end.
//!
//! Without `NOTIFY_SOCKET` (not run by systemd) every call does nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// The service manager, if there is one listening.
#[derive(Debug)]
pub(crate) struct Manager {
    listening: bool,
    /// Half the unit's `WatchdogSec=`: how often to say we are alive.
    ping_every: Option<Duration>,
    last_ping: Mutex<Option<Instant>>,
    last_status: Mutex<String>,
}

impl Manager {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`.
    pub(crate) fn from_env() -> Manager {
        let mut usec = 0;
        let watchdog = sd_notify::watchdog_enabled(false, &mut usec) && usec > 0;
        Manager {
            listening: std::env::var_os("NOTIFY_SOCKET").is_some_and(|v| !v.is_empty()),
            ping_every: watchdog.then(|| Duration::from_micros(usec) / 2),
            last_ping: Mutex::new(None),
            last_status: Mutex::new(String::new()),
        }
    }

    fn send(&self, states: &[NotifyState]) {
        if self.listening {
            if let Err(e) = sd_notify::notify(false, states) {
                tracing::debug!("cannot notify the service manager: {e}");
            }
        }
    }

    /// The daemon serves the town (again, after a reload).
    pub(crate) fn ready(&self) {
        self.send(&[NotifyState::Ready]);
    }

    /// A reload of config.json begins; [`Manager::ready`] ends it.
    pub(crate) fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    pub(crate) fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// Feeds the watchdog, at most every half `WatchdogSec=`. Called by the
    /// heartbeat thread at least every second and between its pokes: a
    /// heartbeat that hangs lets systemd restart the daemon.
    pub(crate) fn alive(&self) {
        let Some(every) = self.ping_every else {
            return;
        };
        let mut last = self.last_ping.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= every) {
            *last = Some(Instant::now());
            self.send(&[NotifyState::Watchdog]);
        }
    }

    /// Tells what the daemon does now, when that changed.
    pub(crate) fn status(&self, text: &str) {
        if !self.listening {
            return;
        }
        let mut last = self.last_status.lock().unwrap_or_else(|p| p.into_inner());
        if *last != text {
            text.clone_into(&mut last);
            self.send(&[NotifyState::Status(text)]);
        }
    }
}

/// Requests in execution now, for the status line: (id, "cycle for mayor").
static EXECUTING: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A request in execution; it leaves the status line when dropped.
pub(crate) struct Executing(u64);

/// Marks `action` for `from` as executing until the guard is dropped.
pub(crate) fn executing(action: &str, from: &str) -> Executing {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    EXECUTING
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((id, format!("{action} for {from}")));
    Executing(id)
}

impl Drop for Executing {
    fn drop(&mut self) {
        EXECUTING
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(id, _)| *id != self.0);
    }
}

/// The status line: "idle, 0 pending", "executing cycle for mayor, 3
/// pending", "executing restart for deacon and 2 more, 0 pending"; with
/// "dry run: " in front in a dry run.
pub(crate) fn status_text(pending: u64, dry_run: bool) -> String {
    let executing = EXECUTING.lock().unwrap_or_else(|p| p.into_inner());
    let doing = match executing.as_slice() {
        [] => "idle".to_string(),
        [(_, one)] => format!("executing {one}"),
        [(_, first), rest @ ..] => format!("executing {first} and {} more", rest.len()),
    };
    let mode = if dry_run { "dry run: " } else { "" };
    format!("{mode}{doing}, {pending} pending")
}
