//! Supervision on the consumer's side: a restart the supervisor asks for
//! becomes a job for the executor like a `restart` request, and is filed
//! like one (`from: "daemon"`), its record beside its sidecar and the dead
//! pane's last lines beside both. And what a processed request tells
//! supervision: a `shutdown` stops it for that agent, a `restart` or
//! `cycle` puts the agent back under it.
//!
//! These run on the consumer's thread ([`Liaison`]), which owns the
//! claims and the filing; the decisions are the supervisor's.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::super::dispatch::{Dispatcher, Job, SupervisedRecord};
use super::super::execute::HeldSessions;
use super::super::filing::Filer;
use super::super::inlet::Restart;
use super::super::ledger::Tally;
use crate::config::Config;
use crate::outcome::{Outcome, Sidecar, CAPTURE_SUFFIX};
use crate::request::{Action, Agent, Partial, Request};
use crate::supervision::AgentState;
use crate::text::escape_os;
use crate::town::Town;

/// Supervision's liaison on the consumer's thread.
pub(crate) struct Liaison {
    /// Sessions supervision's restarts hold until they are filed.
    held: Arc<HeldSessions>,
    /// The sessions of the agents `supervise` names, as at the start.
    supervised: Vec<String>,
    /// Restarts the supervisor asked for, to dispatch.
    asked: Vec<Restart>,
}

impl Liaison {
    pub(crate) fn new(town: &Town, config: &Config, held: Arc<HeldSessions>) -> Self {
        Liaison {
            held,
            supervised: super::sessions(town, config),
            asked: Vec::new(),
        }
    }

    /// The supervisor asks for a restart.
    pub(crate) fn ask(&mut self, restart: Restart) {
        self.asked.push(restart);
    }

    /// Hands the restarts asked for to the executor (see [`dispatch`]).
    pub(crate) fn dispatch(&mut self, dispatcher: &mut Dispatcher) {
        dispatch(std::mem::take(&mut self.asked), dispatcher, &self.held);
    }

    /// Files a finished supervised restart (see [`file`]).
    pub(crate) fn file(
        &self,
        town: &Town,
        filer: &mut Filer,
        job: Job,
        sidecar: Sidecar,
        tally: &mut Tally,
    ) {
        file(town, filer, &self.held, job, sidecar, tally);
    }

    /// What a finished request means for supervision (see
    /// [`note_request`]).
    pub(crate) fn note(&self, town: &Town, request: &Request, sidecar: &Sidecar) {
        note_request(town, &self.supervised, request, sidecar);
    }
}

/// The job for a restart supervision asked for at `now`, with the record
/// to file for it (there is no request file); `None` for an agent that is
/// not one.
pub(crate) fn job(restart: Restart, now: DateTime<Utc>) -> Option<Job> {
    let agent = Agent::parse(&restart.agent).ok()?;
    let session = agent.session();
    let body = serde_json::json!({
        "from": "daemon",
        "agent": restart.agent,
        "action": "restart",
        "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "reason": restart.reason,
    });
    let name = OsString::from(format!(
        "{}-daemon-{session}.json",
        now.format("%Y%m%dT%H%M%S%.6fZ")
    ));
    Some(Job {
        name,
        request: Request {
            from: restart.agent.clone(),
            agent,
            action: Action::Restart,
            timestamp: now,
        },
        partial: Partial {
            from: Some("daemon".into()),
            action: Some("restart".into()),
            session: Some(session),
        },
        original_name: None,
        supervised: Some(SupervisedRecord {
            body: serde_json::to_vec(&body).unwrap_or_default(),
            capture: restart.capture,
            after_crash: restart.after_crash,
        }),
    })
}

/// Hands supervision's restarts to the executor, unless a request is
/// working on that agent or every worker is taken: then the restart is
/// dropped, its session released, and supervision looks again at its next
/// check.
pub(crate) fn dispatch(asked: Vec<Restart>, dispatcher: &mut Dispatcher, held: &HeldSessions) {
    for restart in asked {
        let session = restart.session.clone();
        match job(restart, Utc::now()) {
            Some(job) if dispatcher.slots.may_start(&session) => dispatcher.submit(job),
            Some(_) => {
                tracing::debug!(
                    session,
                    "a request is handling this agent; supervision waits"
                );
                held.release(&session);
            }
            None => held.release(&session),
        }
    }
}

/// Files a supervised restart like a request: its record (written now,
/// there being no request file) beside its sidecar, and the dead pane's
/// last lines beside both; then its session is no longer held.
pub(crate) fn file(
    town: &Town,
    filer: &mut Filer,
    held: &HeldSessions,
    job: Job,
    sidecar: Sidecar,
    tally: &mut Tally,
) {
    let Some(record) = job.supervised else {
        return;
    };
    held.release(&job.request.session());
    let name = job.name;
    let path = town.processing().join(&name);
    if let Err(e) = crate::fs::write_atomic(&path, &record.body, None) {
        tracing::error!(file = %escape_os(&name), "cannot write the record of a supervised restart: {e}");
        return;
    }
    filer.file(name.clone(), sidecar, tally);
    let Some(capture) = record.capture else {
        return;
    };
    let Some(filed) = crate::outcome::filed(town, &name) else {
        return; // not filed yet: the capture stays in supervise.json
    };
    let mut pane = filed.path.into_os_string();
    pane.push(CAPTURE_SUFFIX);
    if let Err(e) = crate::fs::write_atomic(Path::new(&pane), capture.as_bytes(), None) {
        tracing::warn!("cannot save a dead pane's last lines: {e}");
    }
}

/// A processed `shutdown` request stops supervision of its agent until a
/// `restart` or `cycle` request for it, which puts it back as running.
/// Only the `supervised` sessions are remembered: requests for any other
/// agent leave `supervise.json` alone.
pub(crate) fn note_request(
    town: &Town,
    supervised: &[String],
    request: &Request,
    sidecar: &Sidecar,
) {
    let session = request.session();
    if sidecar.outcome != Outcome::Processed || !supervised.contains(&session) {
        return;
    }
    let now = Utc::now();
    let result = crate::supervision::update(town, |memory| {
        let record = memory.agents.entry(session.clone()).or_default();
        match request.action {
            Action::Shutdown => {
                record.state = AgentState::StoppedOnRequest { since: now };
                record.note(
                    now,
                    "stopped",
                    format!("a shutdown request from {}", request.from),
                    None,
                );
            }
            Action::Restart | Action::Cycle => {
                record.state = AgentState::Running { since: now };
                record.note(
                    now,
                    "started",
                    format!("a {} request from {}", request.action, request.from),
                    None,
                );
            }
        }
        ((), true)
    });
    if let Err(e) = result {
        tracing::error!("cannot write supervise.json: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::filing::tests::town_and_filer;

    fn restart(agent: &str) -> Restart {
        Restart {
            agent: agent.into(),
            session: String::new(),
            reason: "session missing".into(),
            capture: Some("last words\n".into()),
            after_crash: true,
        }
    }

    #[test]
    fn a_restart_becomes_a_restart_job_from_the_daemon() {
        let now: DateTime<Utc> = "2026-11-23T10:00:00.123456Z".parse().unwrap();
        let job = job(restart("gastown/witness"), now).unwrap();
        assert_eq!(
            job.name,
            OsString::from("20261123T100000.123456Z-daemon-gt-gastown-witness.json")
        );
        assert_eq!(job.request.action, Action::Restart);
        assert_eq!(job.request.session(), "gt-gastown-witness");
        assert_eq!(job.partial.from.as_deref(), Some("daemon"));
        let record = job.supervised.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&record.body).unwrap();
        assert_eq!(body["from"], "daemon");
        assert_eq!(body["agent"], "gastown/witness");
        assert_eq!(body["reason"], "session missing");
        assert!(super::job(restart("no such/agent"), now).is_none());
    }

    #[test]
    fn a_finished_restart_is_filed_with_its_record_and_its_pane() {
        let (_dir, town, mut filer) = town_and_filer();
        let job = job(restart("mayor"), Utc::now()).unwrap();
        let sidecar = filer.sidecar(Ok(()), &job.partial, None);
        let mut tally = Tally::default();
        let name = job.name.clone();
        let held = HeldSessions::default();
        held.claim("gt-mayor");
        file(&town, &mut filer, &held, job, sidecar, &mut tally);
        assert!(!held.is_held("gt-mayor"), "released once filed");
        let filed = crate::outcome::filed(&town, &name).unwrap();
        assert_eq!(filed.sidecar.from.as_deref(), Some("daemon"));
        let mut pane = filed.path.clone().into_os_string();
        pane.push(CAPTURE_SUFFIX);
        assert_eq!(std::fs::read_to_string(pane).unwrap(), "last words\n");
        assert_eq!(tally.processed, 1);
    }

    #[test]
    fn requests_stop_and_resume_supervision_of_their_agent() {
        let (_dir, town, filer) = town_and_filer();
        let supervised = ["gt-mayor".to_string()];
        let request = |action| Request {
            from: "mayor".into(),
            agent: Agent::Mayor,
            action,
            timestamp: Utc::now(),
        };
        let processed = filer.sidecar(Ok(()), &Partial::default(), None);
        let failed = filer.sidecar(Err("no".into()), &Partial::default(), None);
        let state = || {
            crate::supervision::load(&town).agents["gt-mayor"]
                .state
                .clone()
        };

        note_request(&town, &supervised, &request(Action::Shutdown), &processed);
        assert!(matches!(state(), AgentState::StoppedOnRequest { .. }));
        note_request(&town, &supervised, &request(Action::Cycle), &failed);
        assert!(
            matches!(state(), AgentState::StoppedOnRequest { .. }),
            "a failed request changes nothing"
        );
        note_request(&town, &supervised, &request(Action::Cycle), &processed);
        assert!(matches!(state(), AgentState::Running { .. }));

        std::fs::remove_file(town.supervise_file()).unwrap();
        let deacon = Request {
            agent: Agent::Deacon,
            ..request(Action::Shutdown)
        };
        note_request(&town, &supervised, &deacon, &processed);
        assert!(
            !town.supervise_file().exists(),
            "the deacon is not supervised"
        );
    }
}
