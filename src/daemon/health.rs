//! Is the daemon doing its job? The few facts `/healthz`, `/readyz` and
//! the notifier judge it by, kept as atomics so that recording one never
//! waits and reading them never holds anything up. It is kept whether or
//! not the endpoint is served (the notifier watches the heartbeat too).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::config::SharedConfig;
use crate::duration::human;

/// How the inbox is watched, for `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watching {
    Notify = 1,
    Poll = 2,
    /// Polling because notify could not be set up.
    PollFallback = 3,
}

/// What `/healthz`, `/readyz` and the notifier judge the daemon by.
pub(crate) struct Health {
    started: Instant,
    /// For the heartbeat interval in force (a reload may change it).
    config: SharedConfig,
    /// Nanoseconds after `started` of the last heartbeat, plus one; 0
    /// before the first.
    last_heartbeat: AtomicU64,
    unfiled: AtomicU64,
    filing_error: Mutex<Option<String>>,
    locked: AtomicBool,
    recovered: AtomicBool,
    watch: AtomicU8,
}

/// One line of a health or readiness answer.
#[derive(Debug)]
pub(crate) struct Check {
    pub(crate) name: &'static str,
    pub(crate) ok: bool,
    pub(crate) detail: String,
}

impl Health {
    pub(crate) fn new(config: SharedConfig) -> Health {
        Health {
            started: Instant::now(),
            config,
            last_heartbeat: AtomicU64::new(0),
            unfiled: AtomicU64::new(0),
            filing_error: Mutex::new(None),
            locked: AtomicBool::new(false),
            recovered: AtomicBool::new(false),
            watch: AtomicU8::new(0),
        }
    }

    /// A heartbeat ran just now.
    pub(crate) fn heartbeat(&self) {
        self.last_heartbeat.store(
            self.started.elapsed().as_nanos() as u64 + 1,
            Ordering::Release,
        );
    }

    /// How many executed requests wait to be filed, and the last reason.
    pub(crate) fn unfiled(&self, count: u64, error: Option<&str>) {
        self.unfiled.store(count, Ordering::Release);
        *self.filing_error.lock().unwrap_or_else(|p| p.into_inner()) = error.map(str::to_string);
    }

    /// The town lock is ours (until the daemon stops or is displaced).
    pub(crate) fn locked(&self, held: bool) {
        self.locked.store(held, Ordering::Release);
    }

    /// What `processing/` held at the start has been filed.
    pub(crate) fn recovered(&self) {
        self.recovered.store(true, Ordering::Release);
    }

    /// The inbox is watched, and how.
    pub(crate) fn watching(&self, how: Watching) {
        self.watch.store(how as u8, Ordering::Release);
    }

    /// Since the last heartbeat, or since the start before the first (a
    /// first heartbeat that never comes is as bad as a late one).
    pub(crate) fn heartbeat_age(&self) -> Duration {
        let now = self.started.elapsed();
        match self.last_heartbeat.load(Ordering::Acquire) {
            0 => now,
            at => now.saturating_sub(Duration::from_nanos(at - 1)),
        }
    }

    /// The heartbeat is overdue: the daemon may be hung.
    pub(crate) fn heartbeat_overdue(&self) -> bool {
        self.heartbeat_age() > self.overdue_after()
    }

    pub(crate) fn overdue_after(&self) -> Duration {
        crate::state::heartbeat_overdue_after(self.config.get().heartbeat_interval)
    }

    /// What `/healthz` checks: the heartbeat is on time, outcomes are filed.
    pub(crate) fn healthz(&self) -> Vec<Check> {
        let age = self.heartbeat_age();
        let beat = if self.last_heartbeat.load(Ordering::Acquire) == 0 {
            format!("no heartbeat yet, {} after the start", human(age))
        } else {
            format!("last one {} ago", human(age))
        };
        let unfiled = self.unfiled.load(Ordering::Acquire);
        let filing = match unfiled {
            0 => "every outcome filed".to_string(),
            n => format!(
                "{n} outcome(s) wait to be filed: {}",
                self.filing_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_deref()
                    .unwrap_or("unknown error")
            ),
        };
        let wedged = crate::tmux::wedged();
        vec![
            Check {
                name: "tmux",
                ok: wedged.is_none(),
                detail: wedged.unwrap_or_else(|| "answering (or not asked yet)".into()),
            },
            Check {
                name: "heartbeat",
                ok: !self.heartbeat_overdue(),
                detail: format!("{beat}; overdue after {}", human(self.overdue_after())),
            },
            Check {
                name: "filing",
                ok: unfiled == 0,
                detail: filing,
            },
        ]
    }

    /// What `/readyz` checks: the lock held, recovery done, the inbox
    /// watched.
    pub(crate) fn readyz(&self, stopping: bool) -> Vec<Check> {
        let locked = self.locked.load(Ordering::Acquire);
        let recovered = self.recovered.load(Ordering::Acquire);
        let watch = match self.watch.load(Ordering::Acquire) {
            1 => Some("notify events"),
            2 => Some("polling (watch_mode: poll)"),
            3 => Some("polling (notify could not be set up)"),
            _ => None,
        };
        vec![
            Check {
                name: "lock",
                ok: locked && !stopping,
                detail: match (locked, stopping) {
                    (_, true) => "the daemon is stopping".into(),
                    (true, false) => "daemon.lock held".into(),
                    (false, false) => "daemon.lock not held".into(),
                },
            },
            Check {
                name: "recovery",
                ok: recovered,
                detail: if recovered {
                    "processing/ recovered".into()
                } else {
                    "recovering what a stopped daemon left in processing/".into()
                },
            },
            Check {
                name: "watch",
                ok: watch.is_some(),
                detail: watch.unwrap_or("the inbox is not watched yet").into(),
            },
        ]
    }
}

/// The verdict on `checks`: 200 when every one passes, else 503; as one
/// line per check, or as JSON. Returns (status, content type, body).
pub(crate) fn verdict(checks: &[Check], json: bool) -> (u16, &'static str, String) {
    let ok = checks.iter().all(|c| c.ok);
    let status = if ok { 200 } else { 503 };
    if json {
        let checks: serde_json::Map<String, serde_json::Value> = checks
            .iter()
            .map(|c| (c.name.to_string(), json!({"ok": c.ok, "detail": c.detail})))
            .collect();
        let body = json!({"status": if ok { "ok" } else { "failing" }, "checks": checks});
        return (status, JSON, format!("{body}\n"));
    }
    let mut body = String::from(if ok { "ok\n" } else { "failing\n" });
    for c in checks {
        body += &format!(
            "{}: {} ({})\n",
            c.name,
            if c.ok { "ok" } else { "FAILING" },
            c.detail
        );
    }
    (status, TEXT, body)
}

pub(crate) const TEXT: &str = "text/plain; charset=utf-8";
pub(crate) const JSON: &str = "application/json";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn health() -> Health {
        let config = Config::parse(br#"{"heartbeat_interval": "30s"}"#).unwrap();
        Health::new(SharedConfig::new(config))
    }

    #[test]
    fn a_reloaded_heartbeat_interval_moves_the_overdue_limit() {
        let live = SharedConfig::new(Config::parse(br#"{"heartbeat_interval": "1h"}"#).unwrap());
        let h = Health::new(live.clone());
        assert_eq!(h.overdue_after(), Duration::from_secs(7210));
        live.replace(Config::parse(br#"{"heartbeat_interval": "10s"}"#).unwrap());
        assert_eq!(h.overdue_after(), Duration::from_secs(30));
    }

    #[test]
    fn health_fails_on_unfiled_outcomes() {
        let h = health();
        h.heartbeat();
        let (status, _, body) = verdict(&h.healthz(), false);
        assert_eq!(status, 200, "{body}");
        h.unfiled(2, Some("No space left on device (os error 28)"));
        let (status, content_type, body) = verdict(&h.healthz(), true);
        assert_eq!((status, content_type), (503, JSON));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "failing");
        assert_eq!(v["checks"]["filing"]["ok"], false);
        assert_eq!(v["checks"]["heartbeat"]["ok"], true);
        assert!(v["checks"]["filing"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("No space left")));
    }

    #[test]
    fn ready_once_locked_recovered_and_watching() {
        let h = health();
        let (status, _, body) = verdict(&h.readyz(false), false);
        assert_eq!(status, 503, "not locked nor recovered yet: {body}");
        assert!(body.starts_with("failing\n"), "{body}");
        h.locked(true);
        h.recovered();
        h.watching(Watching::Notify);
        assert_eq!(verdict(&h.readyz(false), false).0, 200);
        assert_eq!(verdict(&h.readyz(true), false).0, 503, "stopping");
    }

    #[test]
    fn no_heartbeat_yet_is_not_overdue_at_first() {
        let h = health();
        assert!(!h.heartbeat_overdue());
        let checks = h.healthz();
        let beat = checks.iter().find(|c| c.name == "heartbeat").unwrap();
        assert!(beat.detail.starts_with("no heartbeat yet"), "{checks:?}");
    }
}
