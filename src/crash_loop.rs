//! The crash-loop guard: at most `max_restarts` counted cycle/restart of one
//! session within `restart_window`.
//!
//! Its memory is the one record of an agent's restarts. Every `cycle` and
//! `restart` request is recorded when it is executed; so is supervision's
//! restart of an agent that crashed, marked as such ([`Counted`]).
//! Supervision reads that mark instead of counting deaths itself: an agent
//! restarted after `n` crashes within the window that crashes again has
//! died `n + 1` times (see `daemon::supervisor::policy`). Supervision's
//! restarts that follow no crash (the start of an agent missing when
//! supervision began, a restart after an exit that is not a crash, the
//! retry once a quarantine is over) are checked against the guard but not
//! recorded. [`clear`] is the one way to forget a session's restarts:
//! `clear-backoff`, `supervise resume`, the end of a quarantine and a
//! stable run all use it.
//!
//! It lives in `daemon/restart_state.json` so a daemon restart does not
//! reset it, and so `gt daemon clear-backoff` (another process) can reset
//! it. Both sides do read-modify-write under an flock on
//! `restart_state.lock`, so neither loses the other's update.
//!
//! The file is rewritten and fsynced on every cycle/restart, so its size is
//! paid for on every request: each write drops the sessions whose restarts
//! have all left the window, and keeps at most [`MAX_SESSIONS`] sessions.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::town::Town;

/// Sessions remembered at most. Far more than a town has agents; past it
/// the sessions restarted least recently are forgotten (their guard starts
/// afresh), because an unbounded file slows every restart down.
const MAX_SESSIONS: usize = 1000;

/// The most of restart_state.json that is read. A town's agents take a
/// few kilobytes ([`MAX_SESSIONS`] sessions of `max_restarts` times each
/// stay well under a megabyte); a larger file was not written by the
/// daemon, and is replaced by an empty one (logged) rather than read.
pub(crate) const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// How a restart counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counted {
    /// Checked against the guard, not recorded: supervision's restart that
    /// follows no crash.
    No,
    /// Recorded: a request's cycle or restart.
    Yes,
    /// Recorded as following a crash: supervision's restart of an agent
    /// that died, which supervision's backoff and quarantine count too.
    AfterCrash,
}

/// One recorded restart. A request's is a bare time, as the file has
/// always held them; one after a crash is `{"crash": time}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
enum Entry {
    AfterCrash { crash: DateTime<Utc> },
    At(DateTime<Utc>),
}

impl Entry {
    fn at(self) -> DateTime<Utc> {
        match self {
            Entry::AfterCrash { crash } => crash,
            Entry::At(at) => at,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    /// Session name → its recent restarts, in the order executed.
    #[serde(default)]
    restarts: BTreeMap<String, Vec<Entry>>,
}

impl Record {
    /// Forgets restarts outside the window, sessions left with none, and
    /// beyond `max_sessions` the sessions whose last restart is oldest.
    fn prune(&mut self, now: DateTime<Utc>, window: chrono::Duration, max_sessions: usize) {
        self.restarts.retain(|_, entries| {
            entries.retain(|e| now.signed_duration_since(e.at()) < window);
            !entries.is_empty()
        });
        if self.restarts.len() > max_sessions {
            let mut latest: Vec<(DateTime<Utc>, String)> = self
                .restarts
                .iter()
                .map(|(session, entries)| {
                    let last = entries.iter().map(|e| e.at()).max();
                    (last.unwrap_or(now), session.clone())
                })
                .collect();
            latest.sort_unstable();
            let excess = latest.len() - max_sessions;
            for (_, session) in latest.into_iter().take(excess) {
                self.restarts.remove(&session);
            }
        }
    }
}

pub(crate) struct CrashLoopGuard {
    file: PathBuf,
    lock: PathBuf,
    max: u32,
    window: Duration,
    max_sessions: usize,
}

/// A session the guard remembers: its restarts within the window, how many
/// of them followed a crash, and whether (and until when) it refuses the
/// next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Remembered {
    pub session: String,
    pub restarts: usize,
    pub after_crash: usize,
    pub held: bool,
    /// When the guard will admit a restart again (`None` while not held,
    /// or with `max_restarts` 0, which never admits one).
    pub held_until: Option<DateTime<Utc>>,
}

/// The guard refused: how many restarts happened in the window.
#[derive(Debug)]
pub(crate) struct Tripped {
    pub count: usize,
}

impl CrashLoopGuard {
    pub(crate) fn new(town: &Town, max: u32, window: Duration) -> Self {
        Self::with_file(town.restart_state_file(), town, max, window)
    }

    /// The guard of a dry-run daemon: the same rules, its own memory, so
    /// restarts that were only pretended never hold a real daemon back.
    pub(crate) fn dry_run(town: &Town, max: u32, window: Duration) -> Self {
        Self::with_file(town.dry_run_restart_state_file(), town, max, window)
    }

    fn with_file(file: PathBuf, town: &Town, max: u32, window: Duration) -> Self {
        CrashLoopGuard {
            file,
            lock: town.restart_state_lock(),
            max,
            window,
            max_sessions: MAX_SESSIONS,
        }
    }

    fn window(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::MAX)
    }

    /// Read-modify-write under the lock; `now` decides what has expired.
    fn with_record<T>(
        &self,
        now: DateTime<Utc>,
        f: impl FnOnce(&mut Record) -> (T, bool),
    ) -> io::Result<T> {
        let (window, max) = (self.window(), self.max_sessions);
        let file = &self.file;
        crate::fs::locked_update(file, &self.lock, MAX_FILE_BYTES, |record: &mut Record| {
            let (out, changed) = f(record);
            if changed {
                record.prune(now, window, max);
            }
            (out, changed)
        })
    }

    /// Admits a restart of `session` at `now` unless the guard is tripped,
    /// and records it as `counted` says.
    pub(crate) fn admit(
        &self,
        session: &str,
        now: DateTime<Utc>,
        counted: Counted,
    ) -> io::Result<Result<(), Tripped>> {
        let window = self.window();
        let max = self.max as usize;
        self.with_record(now, |record| {
            let entries = record.restarts.entry(session.to_string()).or_default();
            entries.retain(|e| now.signed_duration_since(e.at()) < window);
            if entries.len() >= max {
                let count = entries.len();
                return (Err(Tripped { count }), true);
            }
            match counted {
                Counted::No => return (Ok(()), false),
                Counted::Yes => entries.push(Entry::At(now)),
                Counted::AfterCrash => entries.push(Entry::AfterCrash { crash: now }),
            }
            (Ok(()), true)
        })
    }

    /// Every session with restarts inside the window at `now`, most
    /// restarts first (a read: the file is replaced whole, never half
    /// written).
    pub(crate) fn remembered(&self, now: DateTime<Utc>) -> io::Result<Vec<Remembered>> {
        let record: Record = match crate::fs::read_own(&self.file, MAX_FILE_BYTES) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Record::default(),
            Err(e) => return Err(e),
        };
        let window = self.window();
        let max = self.max as usize;
        let mut out: Vec<Remembered> = record
            .restarts
            .into_iter()
            .filter_map(|(session, mut entries)| {
                entries.retain(|e| now.signed_duration_since(e.at()) < window);
                if entries.is_empty() {
                    return None;
                }
                let mut times: Vec<DateTime<Utc>> = entries.iter().map(|e| e.at()).collect();
                times.sort_unstable();
                let held = times.len() >= max;
                // Admitted again once all but max - 1 have left the window.
                let held_until = (held && max > 0)
                    .then(|| times[times.len() - max].checked_add_signed(window))
                    .flatten();
                Some(Remembered {
                    session,
                    restarts: times.len(),
                    after_crash: entries
                        .iter()
                        .filter(|e| matches!(e, Entry::AfterCrash { .. }))
                        .count(),
                    held,
                    held_until,
                })
            })
            .collect();
        out.sort_by(|a, b| b.restarts.cmp(&a.restarts).then(a.session.cmp(&b.session)));
        Ok(out)
    }
}

/// Which memories [`clear`] found restarts in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Cleared {
    pub(crate) real: bool,
    pub(crate) dry_run: bool,
}

/// Forgets the restarts of `session`, in the real daemon's memory and in a
/// dry run's: the one place a restart count is cleared.
pub(crate) fn clear(town: &Town, session: &str) -> io::Result<Cleared> {
    let forget = |file: PathBuf| {
        let lock = town.restart_state_lock();
        crate::fs::locked_update(&file, &lock, MAX_FILE_BYTES, |record: &mut Record| {
            let had = record
                .restarts
                .remove(session)
                .is_some_and(|t| !t.is_empty());
            (had, had)
        })
    };
    Ok(Cleared {
        real: forget(town.restart_state_file())?,
        dry_run: forget(town.dry_run_restart_state_file())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_after_max_and_clears() {
        let dir = tempfile::tempdir().unwrap();
        let town = Town::at(dir.path()).unwrap();
        town.ensure_dirs().unwrap();
        let guard = CrashLoopGuard::new(&town, 2, Duration::from_secs(60));
        let t0: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        assert!(guard.admit("gt-mayor", t0, Counted::Yes).unwrap().is_ok());
        assert!(guard.admit("gt-mayor", t0, Counted::Yes).unwrap().is_ok());
        assert!(guard.admit("gt-mayor", t0, Counted::Yes).unwrap().is_err());
        assert!(
            guard.admit("gt-deacon", t0, Counted::Yes).unwrap().is_ok(),
            "sessions are counted apart"
        );
        // A fresh guard (a restarted daemon) remembers.
        let again = CrashLoopGuard::new(&town, 2, Duration::from_secs(60));
        assert!(again.admit("gt-mayor", t0, Counted::Yes).unwrap().is_err());
        // The window passes.
        let later = t0 + chrono::Duration::seconds(61);
        assert!(again
            .admit("gt-mayor", later, Counted::Yes)
            .unwrap()
            .is_ok());
        assert!(again
            .admit("gt-mayor", later, Counted::Yes)
            .unwrap()
            .is_ok());
        assert!(again
            .admit("gt-mayor", later, Counted::Yes)
            .unwrap()
            .is_err());
        assert!(again
            .admit("gt-mayor", later, Counted::No)
            .unwrap()
            .is_err());
        let cleared = clear(&town, "gt-mayor").unwrap();
        assert_eq!((cleared.real, cleared.dry_run), (true, false));
        assert!(again.admit("gt-mayor", later, Counted::No).unwrap().is_ok());
        assert!(again
            .admit("gt-mayor", later, Counted::Yes)
            .unwrap()
            .is_ok());
        assert_eq!(
            clear(&town, "gt-mayor").unwrap(),
            Cleared {
                real: true,
                dry_run: false
            }
        );
        assert_eq!(clear(&town, "gt-mayor").unwrap(), Cleared::default());
    }

    #[test]
    fn remembers_who_is_held_and_until_when() {
        let dir = tempfile::tempdir().unwrap();
        let town = Town::at(dir.path()).unwrap();
        town.ensure_dirs().unwrap();
        let guard = CrashLoopGuard::new(&town, 2, Duration::from_secs(60));
        let t0: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let t1 = t0 + chrono::Duration::seconds(10);
        assert!(guard.admit("gt-mayor", t0, Counted::Yes).unwrap().is_ok());
        assert!(guard.admit("gt-mayor", t1, Counted::Yes).unwrap().is_ok());
        assert!(guard.admit("gt-deacon", t1, Counted::Yes).unwrap().is_ok());
        let seen = guard.remembered(t1).unwrap();
        assert_eq!(seen[0].session, "gt-mayor");
        assert!(seen[0].held);
        assert_eq!(seen[0].held_until, Some(t0 + chrono::Duration::seconds(60)));
        assert_eq!(seen[1].session, "gt-deacon");
        assert!(!seen[1].held && seen[1].held_until.is_none());
        // The dry run's memory is its own.
        let dry = CrashLoopGuard::dry_run(&town, 2, Duration::from_secs(60));
        assert!(dry.remembered(t1).unwrap().is_empty());
        assert!(dry.admit("gt-mayor", t1, Counted::Yes).unwrap().is_ok());
        assert_eq!(guard.remembered(t1).unwrap()[0].restarts, 2);
        // Clearing forgets both.
        let both = clear(&town, "gt-mayor").unwrap();
        assert_eq!(
            both,
            Cleared {
                real: true,
                dry_run: true
            }
        );
        assert!(dry.remembered(t1).unwrap().is_empty());
    }

    fn sessions_in_file(town: &Town) -> Vec<String> {
        let record: Record =
            serde_json::from_slice(&std::fs::read(town.restart_state_file()).unwrap()).unwrap();
        record.restarts.into_keys().collect()
    }

    #[test]
    fn each_write_forgets_expired_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let town = Town::at(dir.path()).unwrap();
        town.ensure_dirs().unwrap();
        let guard = CrashLoopGuard::new(&town, 5, Duration::from_secs(60));
        let t0: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        for i in 0..50 {
            assert!(guard
                .admit(&format!("gt-rig{i}-witness"), t0, Counted::Yes)
                .unwrap()
                .is_ok());
        }
        assert_eq!(sessions_in_file(&town).len(), 50);
        let later = t0 + chrono::Duration::seconds(61);
        assert!(guard
            .admit("gt-mayor", later, Counted::Yes)
            .unwrap()
            .is_ok());
        assert_eq!(
            sessions_in_file(&town),
            ["gt-mayor"],
            "expired sessions stay in the file"
        );
    }

    #[test]
    fn the_file_keeps_at_most_max_sessions_most_recent_first() {
        let dir = tempfile::tempdir().unwrap();
        let town = Town::at(dir.path()).unwrap();
        town.ensure_dirs().unwrap();
        let mut guard = CrashLoopGuard::new(&town, 5, Duration::from_secs(3600));
        guard.max_sessions = 3;
        let t0: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        for i in 0..6 {
            let at = t0 + chrono::Duration::seconds(i);
            assert!(guard
                .admit(&format!("gt-rig{i}-witness"), at, Counted::Yes)
                .unwrap()
                .is_ok());
        }
        assert_eq!(
            sessions_in_file(&town),
            ["gt-rig3-witness", "gt-rig4-witness", "gt-rig5-witness"]
        );
    }

    #[test]
    fn restarts_after_a_crash_are_told_apart_and_uncounted_ones_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let town = Town::at(dir.path()).unwrap();
        town.ensure_dirs().unwrap();
        // A file as older daemons wrote it: bare times.
        std::fs::write(
            town.restart_state_file(),
            r#"{"restarts":{"gt-mayor":["2026-11-23T10:00:00Z"]}}"#,
        )
        .unwrap();
        let guard = CrashLoopGuard::new(&town, 3, Duration::from_secs(60));
        let t0: DateTime<Utc> = "2026-11-23T10:00:01Z".parse().unwrap();
        assert!(guard
            .admit("gt-mayor", t0, Counted::AfterCrash)
            .unwrap()
            .is_ok());
        assert!(guard.admit("gt-mayor", t0, Counted::No).unwrap().is_ok());
        let seen = &guard.remembered(t0).unwrap()[0];
        assert_eq!((seen.restarts, seen.after_crash), (2, 1));
        let file: serde_json::Value =
            serde_json::from_slice(&std::fs::read(town.restart_state_file()).unwrap()).unwrap();
        assert_eq!(
            file["restarts"]["gt-mayor"],
            serde_json::json!(["2026-11-23T10:00:00Z", {"crash": "2026-11-23T10:00:01Z"}])
        );
        assert!(guard.admit("gt-mayor", t0, Counted::Yes).unwrap().is_ok());
        assert!(
            guard.admit("gt-mayor", t0, Counted::No).unwrap().is_err(),
            "a restart that is not counted is still refused by a tripped guard"
        );
    }
}
