//! Filing a request's outcome: `processed/` or `failed/`, original bytes
//! untouched, plus the `X.json.result.json` sidecar (see [`crate::outcome`]).
//!
//! The sidecar is created first (with `O_EXCL`, which also claims the name),
//! then the request is renamed beside it with `RENAME_NOREPLACE`: nothing is
//! ever overwritten, and a crash between the two steps leaves a sidecar
//! that recovery uses to finish the move instead of calling the request
//! interrupted. Making it durable is the ledger's job, batched.
//!
//! When an executed request cannot be filed (disk full, an outcome
//! directory gone or read-only), its outcome is kept in a journal entry
//! beside it in `processing/` (`.NAME.result.json`) and in memory, and
//! tried again with a growing delay, so that neither a retry nor a
//! restarted daemon ever calls it interrupted: an executed request's
//! outcome is never dropped. Filing happens on the consumer's thread only.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::alert::Event;
use super::ledger::Tally;
use super::monitoring::Monitoring;
use crate::fs::{rename_noreplace, variant};
use crate::outcome::{read_sidecar, sidecar_path, Outcome, Sidecar, SIDECAR_SUFFIX};
use crate::request::Partial;
use crate::state::StateStore;
use crate::text::{escape, escape_os};
use crate::town::Town;

/// How often an outcome that could not be filed is tried again, at most.
pub(crate) const REFILE_EVERY_MAX: Duration = Duration::from_secs(30);

/// A request filed for good: where it is, and its sidecar (for the ledger
/// to make durable).
pub(crate) struct Filed {
    pub(crate) path: PathBuf,
    pub(crate) sidecar: PathBuf,
}

/// A file filed beside a request, in place before the request is (a
/// reader who finds the request filed finds this too): its name is the
/// request's with `suffix`.
#[derive(Debug, Clone)]
pub(crate) struct Beside {
    pub(crate) suffix: &'static str,
    pub(crate) bytes: Vec<u8>,
}

/// An executed (or refused) request whose outcome could not be filed yet.
struct Unfiled {
    name: OsString,
    sidecar: Sidecar,
    /// What goes beside it (a dead pane's last lines).
    beside: Option<Beside>,
    attempts: u32,
    next_try: Instant,
    error: String,
}

/// The filing stage: numbers each outcome, files it, counts it, and keeps
/// the ones it could not file until it can.
pub(crate) struct Filer {
    town: Town,
    state: Arc<StateStore>,
    monitoring: Monitoring,
    pid: u32,
    /// Outcomes filed since the start, in filing order: each sidecar
    /// carries its number (`seq`), and the ledger counts them in this order.
    filed_count: u64,
    unfiled: Vec<Unfiled>,
    /// When each request in `processing/` was claimed, for the duration
    /// metric; bounded, like `processing/`, by the requests in hand.
    claimed_at: HashMap<OsString, Instant>,
    /// The requests whose outcome has a journal entry in `processing/`
    /// (written here, or found by recovery): only those have one to remove
    /// once filed, so filing costs no failed unlink(2) each.
    journals: HashSet<OsString>,
}

impl Filer {
    pub(crate) fn new(town: &Town, state: Arc<StateStore>, monitoring: Monitoring) -> Self {
        Filer {
            town: town.clone(),
            state,
            monitoring,
            pid: std::process::id(),
            filed_count: 0,
            unfiled: Vec::new(),
            claimed_at: HashMap::new(),
            journals: HashSet::new(),
        }
    }

    /// `processing/NAME` was claimed now: its duration runs from here.
    pub(crate) fn claimed(&mut self, name: &OsStr) {
        self.claimed_at.insert(name.to_os_string(), Instant::now());
    }

    /// `processing/NAME` went back to the inbox, unrun.
    pub(crate) fn unclaimed(&mut self, name: &OsStr) {
        self.claimed_at.remove(name);
    }

    /// The sidecar of an outcome filed now by this daemon.
    pub(crate) fn sidecar(
        &self,
        result: Result<(), String>,
        partial: &Partial,
        original_name: Option<String>,
    ) -> Sidecar {
        let (outcome, error) = match result {
            Ok(()) => (Outcome::Processed, None),
            Err(reason) => (Outcome::Failed, Some(reason)),
        };
        Sidecar {
            outcome,
            error,
            from: partial.from.clone(),
            action: partial.action.clone(),
            session: partial.session.clone(),
            finished_at: Utc::now(),
            daemon_pid: self.pid,
            original_name,
            seq: None,
        }
    }

    /// Files `processing/NAME` with its outcome, or keeps the outcome to
    /// file later: an executed request's outcome is never dropped.
    pub(crate) fn file(&mut self, name: OsString, sidecar: Sidecar, tally: &mut Tally) {
        self.file_with(name, sidecar, None, tally);
    }

    /// [`Filer::file`], with a file to put `beside` the request.
    pub(crate) fn file_with(
        &mut self,
        name: OsString,
        mut sidecar: Sidecar,
        beside: Option<Beside>,
        tally: &mut Tally,
    ) {
        sidecar.seq = Some(self.filed_count + 1);
        let mut result = self.move_out(&name, &sidecar, beside.as_ref());
        if result.is_err() && heal_dirs(&self.town) {
            result = self.move_out(&name, &sidecar, beside.as_ref());
        }
        match result {
            Ok(filed) => self.filed(&name, filed, &sidecar, tally),
            Err(e) => {
                let error = e.to_string();
                tracing::error!(file = %escape_os(&name), outcome = ?sidecar.outcome, "cannot file the outcome ({error}); keeping it and trying again");
                if let Err(e) = self.journal(&name, &sidecar) {
                    tracing::error!(file = %escape_os(&name), "cannot journal the outcome either ({e}); it is kept in memory");
                }
                self.unfiled.push(Unfiled {
                    name,
                    sidecar,
                    beside,
                    attempts: 1,
                    next_try: Instant::now() + Duration::from_secs(1),
                    error,
                });
                self.publish_unfiled();
            }
        }
    }

    /// A request is filed: logged, its journal entry gone, counted once
    /// the ledger has made it durable (and in the metrics at once).
    fn filed(&mut self, name: &OsStr, filed: Filed, sidecar: &Sidecar, tally: &mut Tally) {
        self.filed_count += 1;
        log_outcome(&filed.path, sidecar);
        let took = self.claimed_at.remove(name).map(|at| at.elapsed());
        self.monitoring
            .metrics
            .filed(sidecar.outcome, sidecar.action.as_deref(), took);
        self.forget_journal(name);
        match sidecar.outcome {
            Outcome::Processed => tally.processed += 1,
            Outcome::Failed => tally.failed += 1,
        }
        tally.sidecars.push(filed.sidecar);
    }

    /// Tries again the outcomes whose time has come (all of them when
    /// `all`).
    pub(crate) fn refile_due(&mut self, tally: &mut Tally, all: bool) {
        if self.unfiled.is_empty() {
            return;
        }
        let now = Instant::now();
        let before = self.unfiled.len();
        let mut keep = Vec::new();
        for mut u in std::mem::take(&mut self.unfiled) {
            if !all && u.next_try > now {
                keep.push(u);
                continue;
            }
            heal_dirs(&self.town);
            u.sidecar.seq = Some(self.filed_count + 1);
            match self.move_out(&u.name, &u.sidecar, u.beside.as_ref()) {
                Ok(filed) => {
                    tracing::info!(file = %escape_os(filed.path.as_os_str()), attempts = u.attempts + 1, "filed an outcome that had to wait");
                    self.filed(&u.name, filed, &u.sidecar, tally);
                }
                Err(e) => {
                    u.attempts += 1;
                    u.error = e.to_string();
                    u.next_try = now + refile_delay(u.attempts);
                    if !self.journals.contains(&u.name) {
                        let _ = self.journal(&u.name, &u.sidecar);
                    }
                    keep.push(u);
                }
            }
        }
        self.unfiled = keep;
        if self.unfiled.len() != before {
            self.publish_unfiled();
        }
    }

    /// When the next outcome waiting to be filed is due, if any.
    pub(crate) fn next_try(&self) -> Option<Instant> {
        self.unfiled.iter().map(|u| u.next_try).min()
    }

    /// Says in the log which outcomes a stop leaves unfiled (their journal
    /// entries file them at the next start).
    pub(crate) fn report_unfiled(&self) {
        for left in &self.unfiled {
            tracing::error!(file = %escape_os(&left.name), error = %left.error,
                "stopping with an outcome not yet filed; its journal entry in processing/ files it at the next start");
        }
    }

    /// Tells `status`, the metrics and a person (`notify_command`) how
    /// many outcomes wait to be filed, and why.
    fn publish_unfiled(&self) {
        let count = self.unfiled.len() as u64;
        let error = self.unfiled.first().map(|u| u.error.clone());
        self.monitoring.metrics.unfiled(count, error.as_deref());
        if let (1.., Some(error)) = (count, &error) {
            self.monitoring.alerts.send(Event::FilingFailing {
                unfiled: count,
                error: error.clone(),
            });
        }
        if let Err(e) = self.state.update(|s| {
            s.outcomes_unfiled = count;
            s.filing_error = error;
        }) {
            tracing::error!("cannot write state.json: {e}");
        }
    }

    /// Moves `processing/NAME` to its outcome directory beside its sidecar
    /// (the name gets a suffix if it was taken).
    fn move_out(
        &self,
        name: &OsStr,
        sidecar: &Sidecar,
        beside: Option<&Beside>,
    ) -> io::Result<Filed> {
        file_into(
            &self.town.processing().join(name),
            &sidecar.outcome.dir(&self.town),
            name,
            sidecar,
            beside,
        )
    }

    /// Remembers the outcome of the executed request `processing/NAME`
    /// until it can be filed.
    fn journal(&mut self, name: &OsStr, sidecar: &Sidecar) -> io::Result<()> {
        let body = sidecar_bytes(sidecar)?;
        crate::fs::write_atomic(&self.journal_path(name), &body, None)?;
        self.journals.insert(name.to_os_string());
        Ok(())
    }

    /// The journalled outcome of `processing/NAME`, if any.
    pub(crate) fn journaled(&mut self, name: &OsStr) -> Option<Sidecar> {
        let sidecar = read_sidecar(&self.journal_path(name))?;
        self.journals.insert(name.to_os_string());
        Some(sidecar)
    }

    fn forget_journal(&mut self, name: &OsStr) {
        if self.journals.remove(name) {
            let _ = std::fs::remove_file(self.journal_path(name));
        }
    }

    fn journal_path(&self, name: &OsStr) -> PathBuf {
        let mut journal = OsString::from(".");
        journal.push(name);
        journal.push(SIDECAR_SUFFIX);
        self.town.processing().join(journal)
    }
}

/// The wait before another try at filing an outcome that failed
/// `attempts` times: doubling from 2 s, at most [`REFILE_EVERY_MAX`].
fn refile_delay(attempts: u32) -> Duration {
    Duration::from_secs(1 << attempts.min(5)).min(REFILE_EVERY_MAX)
}

/// Recreates daemon directories that were removed under us; true when
/// one was.
pub(crate) fn heal_dirs(town: &Town) -> bool {
    let mut healed = false;
    for dir in [
        town.daemon_dir().to_path_buf(),
        town.inbox(),
        town.processing(),
        town.processed(),
        town.failed(),
    ] {
        if std::fs::symlink_metadata(&dir).is_err() {
            match std::fs::create_dir_all(&dir) {
                Ok(()) => {
                    tracing::warn!(dir = %dir.display(), "recreated a missing daemon directory");
                    healed = true;
                }
                Err(e) => {
                    tracing::error!(dir = %dir.display(), "cannot recreate a missing daemon directory: {e}")
                }
            }
        }
    }
    healed
}

/// One line per outcome. Names and fields are whatever an agent wrote:
/// escaped, so neither log format can carry a forged line or a terminal
/// control sequence.
fn log_outcome(path: &Path, s: &Sidecar) {
    let file = escape_os(path.file_name().unwrap_or_default());
    let from = escape(s.from.as_deref().unwrap_or("-"));
    let action = escape(s.action.as_deref().unwrap_or("-"));
    match &s.error {
        None => tracing::info!(%file, %action, %from, result = "processed", "request processed"),
        Some(reason) => {
            let reason = escape(reason);
            tracing::warn!(%file, %action, %from, result = "failed", %reason, "request failed")
        }
    }
}

/// Is this entry of `processing/` a journal entry rather than a request?
pub(crate) fn is_journal_name(name: &OsStr) -> bool {
    name.as_encoded_bytes().starts_with(b".")
}

fn sidecar_bytes(sidecar: &Sidecar) -> io::Result<Vec<u8>> {
    let mut body = serde_json::to_vec(sidecar).map_err(io::Error::other)?;
    body.push(b'\n');
    Ok(body)
}

/// Files `source` into `dir` under `name` or the first free variant of it.
pub(crate) fn file_into(
    source: &Path,
    dir: &Path,
    name: &OsStr,
    sidecar: &Sidecar,
    beside: Option<&Beside>,
) -> io::Result<Filed> {
    let body = sidecar_bytes(sidecar)?;
    for attempt in 0u32.. {
        let target = dir.join(variant(name, attempt));
        let sidecar_path = sidecar_path(&target);
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&sidecar_path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        if let Err(e) = file.write_all(&body) {
            // Never leave a sidecar that says nothing (a full disk).
            let _ = std::fs::remove_file(&sidecar_path);
            return Err(e);
        }
        // In place before the request is: whoever finds it filed finds
        // what goes with it.
        let beside_path = beside.map(|b| {
            let mut path = target.clone().into_os_string();
            path.push(b.suffix);
            (PathBuf::from(path), &b.bytes)
        });
        if let Some((path, bytes)) = &beside_path {
            if std::fs::symlink_metadata(path).is_ok() {
                // Left by an earlier filing under this name: never replaced.
                std::fs::remove_file(&sidecar_path)?;
                continue;
            }
            if let Err(e) = crate::fs::write_atomic(path, bytes, None) {
                let _ = std::fs::remove_file(&sidecar_path);
                return Err(e);
            }
        }
        match rename_noreplace(source, &target) {
            Ok(()) => {
                return Ok(Filed {
                    path: target,
                    sidecar: sidecar_path,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // A request without a sidecar holds the name: leave it be.
                if let Some((path, _)) = &beside_path {
                    let _ = std::fs::remove_file(path);
                }
                std::fs::remove_file(&sidecar_path)?;
            }
            Err(e) => {
                let _ = std::fs::remove_file(&sidecar_path);
                if let Some((path, _)) = &beside_path {
                    let _ = std::fs::remove_file(path);
                }
                return Err(e);
            }
        }
    }
    unreachable!("u32 attempts exhausted")
}

/// Whichever outcome directory already holds a complete sidecar for NAME
/// without the request beside it: a crash came between the two steps of
/// filing, and the move is to be finished. A sidecar cut short (the crash
/// came while it was being written) proves nothing and is removed, so the
/// request is filed afresh under that name.
pub(crate) fn half_filed(town: &Town, name: &OsStr) -> Option<PathBuf> {
    Outcome::ALL.into_iter().map(|o| o.dir(town)).find(|dir| {
        let sidecar = sidecar_path(&dir.join(name));
        if dir.join(name).exists() || !sidecar.exists() {
            return false;
        }
        if read_sidecar(&sidecar).is_some() {
            return true;
        }
        tracing::warn!(sidecar = %crate::text::escape_os(sidecar.as_os_str()), "removing a sidecar cut short by a crash");
        let _ = std::fs::remove_file(&sidecar);
        false
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{Config, SharedConfig};
    use crate::daemon::metrics::Metrics;
    use crate::daemon::stop::StopFlag;
    use crate::state::State;

    fn sidecar(outcome: Outcome) -> Sidecar {
        Sidecar {
            outcome,
            error: None,
            from: Some("mayor".into()),
            action: Some("cycle".into()),
            session: Some("gt-mayor".into()),
            finished_at: Utc::now(),
            daemon_pid: 1,
            original_name: None,
            seq: None,
        }
    }

    /// Metrics and alerts that go nowhere.
    pub(crate) fn quiet_monitoring(town: &Town) -> Monitoring {
        let config = Config::default();
        let metrics = Metrics::new(town, &SharedConfig::new(config.clone()));
        let stop = Arc::new(StopFlag::default());
        // No notify_command: no notifier thread to keep.
        let (alerts, _) =
            crate::daemon::alert::start(town, &config, metrics.clone(), stop).unwrap();
        Monitoring { metrics, alerts }
    }

    /// A town with its directories, and a filer for it whose metrics and
    /// alerts go nowhere.
    pub(crate) fn town_and_filer() -> (tempfile::TempDir, Town, Filer) {
        let dir = tempfile::tempdir().unwrap();
        let town = Town::at(dir.path()).unwrap();
        town.ensure_dirs().unwrap();
        let state = Arc::new(StateStore::new(town.state_file(), State::default()));
        let filer = Filer::new(&town, state, quiet_monitoring(&town));
        (dir, town, filer)
    }

    fn processing(town: &Town, name: &str) -> OsString {
        std::fs::write(town.processing().join(name), b"{}").unwrap();
        OsString::from(name)
    }

    #[test]
    fn what_goes_beside_a_request_is_there_before_it_and_never_replaces_another() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        // Left by an earlier filing of another request under this name.
        std::fs::write(dst.join("z.json.pane.txt"), b"not mine").unwrap();
        std::fs::write(src.join("z.json"), b"{}").unwrap();
        let beside = Beside {
            suffix: ".pane.txt",
            bytes: b"last words\n".to_vec(),
        };
        let path = file_into(
            &src.join("z.json"),
            &dst,
            OsStr::new("z.json"),
            &sidecar(Outcome::Processed),
            Some(&beside),
        )
        .unwrap()
        .path;
        assert_eq!(path, dst.join("z-1.json"), "the taken name is passed over");
        assert_eq!(
            std::fs::read(dst.join("z-1.json.pane.txt")).unwrap(),
            b"last words\n"
        );
        assert_eq!(
            std::fs::read(dst.join("z.json.pane.txt")).unwrap(),
            b"not mine"
        );
        assert!(!dst.join("z.json.result.json").exists(), "no stray sidecar");
    }

    #[test]
    fn never_overwrites_and_keeps_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        for (i, bytes) in [b"first".as_slice(), b"second".as_slice()]
            .iter()
            .enumerate()
        {
            std::fs::write(src.join("x.json"), bytes).unwrap();
            let path = file_into(
                &src.join("x.json"),
                &dst,
                OsStr::new("x.json"),
                &sidecar(Outcome::Processed),
                None,
            )
            .unwrap()
            .path;
            assert_eq!(path, dst.join(if i == 0 { "x.json" } else { "x-1.json" }));
            assert_eq!(std::fs::read(&path).unwrap(), *bytes);
            let side = read_sidecar(&sidecar_path(&path)).unwrap();
            assert_eq!(side.outcome, Outcome::Processed);
        }
        // A name taken by a request without sidecar is skipped too.
        std::fs::write(dst.join("y.json"), b"other").unwrap();
        std::fs::write(src.join("y.json"), b"mine").unwrap();
        let path = file_into(
            &src.join("y.json"),
            &dst,
            OsStr::new("y.json"),
            &sidecar(Outcome::Failed),
            None,
        )
        .unwrap()
        .path;
        assert_eq!(path, dst.join("y-1.json"));
        assert_eq!(std::fs::read(dst.join("y.json")).unwrap(), b"other");
        assert!(!dst.join("y.json.result.json").exists());
    }

    #[test]
    fn journal_round_trips_beside_the_request() {
        let (_dir, town, mut filer) = town_and_filer();
        let name = OsStr::new("a.json");
        assert!(filer.journaled(name).is_none());
        filer.journal(name, &sidecar(Outcome::Failed)).unwrap();
        let back = filer.journaled(name).unwrap();
        assert_eq!(back.outcome, Outcome::Failed);
        let names: Vec<_> = std::fs::read_dir(town.processing())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(names.iter().all(|n| is_journal_name(n)), "{names:?}");
        filer.forget_journal(name);
        assert!(filer.journaled(name).is_none());
    }

    #[test]
    fn outcomes_are_numbered_and_counted_in_filing_order() {
        let (_dir, town, mut filer) = town_and_filer();
        let mut tally = Tally::default();
        for (name, outcome) in [("a.json", Outcome::Processed), ("b.json", Outcome::Failed)] {
            let name = processing(&town, name);
            filer.claimed(&name);
            filer.file(name, sidecar(outcome), &mut tally);
        }
        assert_eq!((tally.processed, tally.failed), (1, 1));
        assert_eq!(tally.sidecars.len(), 2);
        let a = crate::outcome::filed(&town, OsStr::new("a.json")).unwrap();
        let b = crate::outcome::filed(&town, OsStr::new("b.json")).unwrap();
        assert_eq!((a.sidecar.seq, b.sidecar.seq), (Some(1), Some(2)));
        assert_eq!(b.path.parent().unwrap(), town.failed());
        assert!(filer.claimed_at.is_empty(), "the clock stops at filing");
    }

    #[test]
    fn an_outcome_that_cannot_be_filed_is_journalled_and_filed_later() {
        let (_dir, town, mut filer) = town_and_filer();
        // processed/ is a file: filing fails, and healing cannot help.
        std::fs::remove_dir(town.processed()).unwrap();
        std::fs::write(town.processed(), b"in the way").unwrap();
        let name = processing(&town, "a.json");
        let mut tally = Tally::default();
        filer.file(name.clone(), sidecar(Outcome::Processed), &mut tally);
        assert!(tally.is_empty());
        assert_eq!(filer.journaled(&name).unwrap().seq, Some(1));
        let due = filer.next_try().unwrap();
        assert!(due > Instant::now());
        let unfiled = State::load(&town.state_file()).unwrap();
        assert_eq!(unfiled.outcomes_unfiled, 1);
        assert!(unfiled.filing_error.is_some());
        // Not yet due: nothing happens.
        filer.refile_due(&mut tally, false);
        assert!(tally.is_empty());
        std::fs::remove_file(town.processed()).unwrap();
        std::fs::create_dir(town.processed()).unwrap();
        filer.refile_due(&mut tally, true);
        assert_eq!(tally.processed, 1);
        assert!(filer.next_try().is_none());
        assert!(filer.journaled(&name).is_none(), "the journal entry goes");
        assert!(crate::outcome::filed(&town, &name).is_some());
        assert_eq!(State::load(&town.state_file()).unwrap().outcomes_unfiled, 0);
    }

    #[test]
    fn refiling_backs_off_doubling_up_to_its_cap() {
        let delays: Vec<u64> = (1..=7).map(|a| refile_delay(a).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn missing_directories_are_recreated() {
        let (_dir, town, _filer) = town_and_filer();
        assert!(!heal_dirs(&town), "nothing missing");
        std::fs::remove_dir(town.failed()).unwrap();
        assert!(heal_dirs(&town));
        assert!(town.failed().is_dir());
    }
}
