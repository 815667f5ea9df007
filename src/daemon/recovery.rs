//! Recovery at start: what a stopped daemon left in `processing/` is filed
//! before anything new is claimed.
//!
//! Each file there is one of:
//! - a request whose filing the stop cut in two (its sidecar already in an
//!   outcome directory): the move is finished;
//! - a request that ran, whose outcome was journalled because it could not
//!   be filed: filed with that real outcome;
//! - a request that may have run without a record: filed as interrupted and
//!   never run again (at most once), or, if it does not even validate (the
//!   stop caught it being read or written), filed with its own reason;
//! - the record of a supervised restart the stop cut short: filed as
//!   interrupted (from "daemon"), and supervision told, so that it restarts
//!   the agent (which may run unprimed) instead of counting it alive.
//!
//! One bad file never stops the start: it is reported and left for the
//! operator.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;

use super::filing::{self, Filer};
use super::ledger::{self, Ledger, Tally};
use super::supervisor::restarts;
use crate::fs::rename_unique;
use crate::inbox::{self, MAX_NAME_BYTES};
use crate::request;
use crate::text::{escape, escape_os};
use crate::town::Town;

pub(crate) const INTERRUPTED: &str =
    "interrupted: the daemon stopped while executing this request; it was not run again \
     (at most once). Check the agent, then `gt daemon retry` it if needed";

/// Files everything in `processing/`, makes it durable and counts it;
/// returns how many were filed as interrupted.
pub(crate) fn recover(town: &Town, filer: &mut Filer, ledger: &Ledger) -> io::Result<usize> {
    let mut interrupted = 0;
    let mut tally = Tally::default();
    let mut journals = Vec::new();
    for entry in std::fs::read_dir(town.processing())? {
        let name = entry?.file_name();
        if filing::is_journal_name(&name) {
            journals.push(name);
            continue;
        }
        match recover_one(town, filer, &name, &mut tally) {
            Ok(true) => interrupted += 1,
            Ok(false) => {}
            Err(e) => tracing::error!(
                file = %escape_os(&name),
                "cannot recover processing/{}: {e}; left in place",
                escape_os(&name)
            ),
        }
    }
    forget_stale_journals(town, journals);
    if !tally.is_empty() {
        let dirs: Vec<PathBuf> = vec![town.processing(), town.processed(), town.failed()];
        ledger::flush(&std::mem::take(&mut tally.sidecars), &dirs)?;
        ledger.record(tally);
    }
    Ok(interrupted)
}

/// A journal entry whose request was filed after all (the crash came
/// between filing and forgetting) has nothing left to say.
fn forget_stale_journals(town: &Town, journals: Vec<OsString>) {
    for journal in journals {
        let request = &journal.as_encoded_bytes()[1..];
        let request = request
            .strip_suffix(crate::outcome::SIDECAR_SUFFIX.as_bytes())
            .unwrap_or(request);
        // SAFETY-free: the bytes came from an OsStr and were cut at
        // ASCII boundaries.
        let request = unsafe { OsStr::from_encoded_bytes_unchecked(request) };
        if !town.processing().join(request).exists() {
            let _ = std::fs::remove_file(town.processing().join(&journal));
        }
    }
}

/// True when the request was filed as interrupted.
fn recover_one(
    town: &Town,
    filer: &mut Filer,
    name: &OsStr,
    tally: &mut Tally,
) -> io::Result<bool> {
    let source = town.processing().join(name);
    if let Some(dir) = filing::half_filed(town, name) {
        tracing::info!(file = %escape_os(name), "finishing the filing of a request that completed before the stop");
        rename_unique(&source, &dir, name)?;
        return Ok(false);
    }
    if let Some(sidecar) = filer.journaled(name) {
        tracing::info!(file = %escape_os(name), outcome = ?sidecar.outcome,
            "filing a request that ran before the stop with its real outcome");
        filer.file(name.to_os_string(), sidecar, tally);
        return Ok(false);
    }
    let (name, original_name) = fit_name(town, name)?;
    let read = inbox::read_request(&town.processing().join(&name));
    if let Some(partial) = read
        .as_ref()
        .ok()
        .and_then(|r| r.as_ref().ok())
        .and_then(|bytes| restarts::recorded(&name, bytes))
    {
        let sidecar = filer.sidecar(Err(restarts::INTERRUPTED.into()), &partial, original_name);
        tracing::warn!(file = %escape_os(&name), session = partial.session.as_deref().unwrap_or("-"),
            "a supervised restart cut short by a stopped daemon; the agent is restarted");
        restarts::interrupted(town, partial.session.as_deref().unwrap_or_default(), &name);
        filer.file(name, sidecar, tally);
        return Ok(true);
    }
    // A request that does not validate was never executed (the stop
    // caught it being read, or still being written): it gets its own
    // reason. A valid one may have run: interrupted.
    let (reason, partial, was_valid) = match request::validate(read, Utc::now(), Duration::MAX) {
        (Ok(_), partial) => (INTERRUPTED.to_string(), partial, true),
        (Err(reason), partial) => (reason, partial, false),
    };
    let sidecar = filer.sidecar(Err(reason), &partial, original_name);
    tracing::warn!(file = %escape_os(&name), from = %escape(partial.from.as_deref().unwrap_or("-")),
        action = %escape(partial.action.as_deref().unwrap_or("-")),
        reason = %escape(sidecar.error.as_deref().unwrap_or_default()), "request left in processing/ by a stopped daemon");
    filer.file(name, sidecar, tally);
    Ok(was_valid)
}

/// A name in `processing/` that can be filed: the same one, or (for a
/// name too long to file) a shortened one it is renamed to, with the
/// original kept for the sidecar.
fn fit_name(town: &Town, name: &OsStr) -> io::Result<(OsString, Option<String>)> {
    if name.len() <= MAX_NAME_BYTES {
        return Ok((name.to_os_string(), None));
    }
    let short = inbox::shortened(name);
    let path = rename_unique(&town.processing().join(name), &town.processing(), &short)?;
    let fitted = path.file_name().unwrap_or(&short).to_os_string();
    Ok((fitted, Some(name.to_string_lossy().into_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::filing::tests::town_and_filer;
    use crate::outcome::{Outcome, Sidecar};
    use crate::state::{State, StateStore};
    use std::sync::Arc;

    fn request(from: &str) -> String {
        format!(
            r#"{{"from":"{from}","action":"restart","timestamp":"{}"}}"#,
            Utc::now().to_rfc3339()
        )
    }

    fn filed(town: &Town, name: &str) -> Sidecar {
        crate::outcome::filed(town, OsStr::new(name))
            .unwrap_or_else(|| panic!("{name} not filed"))
            .sidecar
    }

    /// Runs recovery over what the test left in processing/.
    fn recover_now(town: &Town, filer: &mut Filer) -> usize {
        let state = Arc::new(StateStore::new(town.state_file(), State::default()));
        let ledger = Ledger::start(town, state).unwrap();
        let interrupted = recover(town, filer, &ledger).unwrap();
        ledger.finish();
        interrupted
    }

    #[test]
    fn a_valid_request_is_interrupted_and_a_broken_one_keeps_its_reason() {
        let (_dir, town, mut filer) = town_and_filer();
        std::fs::write(town.processing().join("ok.json"), request("mayor")).unwrap();
        std::fs::write(town.processing().join("bad.json"), b"{\"from\":").unwrap();
        assert_eq!(recover_now(&town, &mut filer), 1);
        let ok = filed(&town, "ok.json");
        assert_eq!(ok.outcome, Outcome::Failed);
        assert_eq!(ok.error.as_deref(), Some(INTERRUPTED));
        assert_eq!(ok.from.as_deref(), Some("mayor"));
        let bad = filed(&town, "bad.json");
        assert!(bad.error.unwrap().contains("invalid JSON"));
        assert_eq!(std::fs::read_dir(town.processing()).unwrap().count(), 0);
        assert_eq!(State::load(&town.state_file()).unwrap().requests_failed, 2);
    }

    #[test]
    fn a_journalled_outcome_is_filed_as_it_was() {
        let (_dir, town, mut filer) = town_and_filer();
        std::fs::write(town.processing().join("ran.json"), request("mayor")).unwrap();
        let mut outcome = filer.sidecar(Ok(()), &Default::default(), None);
        outcome.from = Some("mayor".into());
        std::fs::write(
            town.processing().join(".ran.json.result.json"),
            serde_json::to_vec(&outcome).unwrap(),
        )
        .unwrap();
        assert_eq!(recover_now(&town, &mut filer), 0);
        assert_eq!(filed(&town, "ran.json").outcome, Outcome::Processed);
        assert_eq!(std::fs::read_dir(town.processing()).unwrap().count(), 0);
    }

    #[test]
    fn a_filing_cut_in_two_is_finished_and_a_stale_journal_forgotten() {
        let (_dir, town, mut filer) = town_and_filer();
        std::fs::write(town.processing().join("half.json"), request("mayor")).unwrap();
        let sidecar = filer.sidecar(Ok(()), &Default::default(), None);
        std::fs::write(
            town.processed().join("half.json.result.json"),
            serde_json::to_vec(&sidecar).unwrap(),
        )
        .unwrap();
        std::fs::write(town.processing().join(".gone.json.result.json"), b"{}").unwrap();
        assert_eq!(recover_now(&town, &mut filer), 0);
        assert!(town.processed().join("half.json").exists());
        assert_eq!(std::fs::read_dir(town.processing()).unwrap().count(), 0);
    }

    #[test]
    fn a_name_too_long_to_file_is_shortened_and_kept_in_the_sidecar() {
        let (_dir, town, mut filer) = town_and_filer();
        let long = format!("{}.json", "n".repeat(240));
        std::fs::write(town.processing().join(&long), request("mayor")).unwrap();
        assert_eq!(recover_now(&town, &mut filer), 1);
        let short = inbox::shortened(OsStr::new(&long));
        let sidecar = filed(&town, short.to_str().unwrap());
        assert_eq!(sidecar.original_name.as_deref(), Some(long.as_str()));
    }

    #[test]
    fn a_supervised_restart_cut_short_is_filed_from_the_daemon_and_supervision_told() {
        let (_dir, town, mut filer) = town_and_filer();
        let job = restarts::job(
            crate::daemon::inlet::Restart {
                agent: "mayor".into(),
                session: "gt-mayor".into(),
                reason: "session missing".into(),
                capture: None,
                after_crash: true,
            },
            Utc::now(),
        )
        .unwrap();
        let body = job.supervised.unwrap().body;
        std::fs::write(town.processing().join(&job.name), body).unwrap();
        crate::supervision::update(&town, |m| {
            m.agents.entry("gt-mayor".into()).or_default();
            ((), true)
        })
        .unwrap();
        assert_eq!(recover_now(&town, &mut filer), 1);
        let sidecar = filed(&town, job.name.to_str().unwrap());
        assert_eq!(sidecar.error.as_deref(), Some(restarts::INTERRUPTED));
        assert_eq!(sidecar.from.as_deref(), Some("daemon"));
        assert_eq!(sidecar.session.as_deref(), Some("gt-mayor"));
        let memory = crate::supervision::load(&town).unwrap();
        assert!(matches!(
            memory.agents["gt-mayor"].state,
            crate::supervision::AgentState::Interrupted { .. }
        ));
    }
}
