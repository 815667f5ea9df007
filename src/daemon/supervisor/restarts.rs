//! Supervision on the consumer's side: a restart the supervisor asks for
//! becomes a job for the executor like a `restart` request, and is filed
//! like one (`from: "daemon"`), its record beside its sidecar and the dead
//! pane's last lines beside both. And what a processed request tells
//! supervision: a `shutdown` stops it for that agent, a `restart` or
//! `cycle` puts the agent back under it.
//!
//! These run on the consumer's thread ([`Liaison`]), which owns the
//! claims and the filing; the decisions are the supervisor's.

use std::ffi::{OsStr, OsString};
use std::io;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::super::claim;
use super::super::dispatch::{Dispatcher, Job, SupervisedRecord};
use super::super::execute::HeldSessions;
use super::super::filing::{Beside, Filer};
use super::super::inlet::Restart;
use super::super::ledger::Tally;
use super::super::stop::StopFlag;
use crate::config::Config;
use crate::outcome::{Outcome, Sidecar, CAPTURE_SUFFIX};
use crate::request::{Action, Agent, Partial, Request};
use crate::supervision::AgentState;
use crate::text::escape_os;
use crate::town::Town;

/// Why a supervised restart a stopped daemon left in `processing/` is
/// filed as failed.
pub(crate) const INTERRUPTED: &str =
    "interrupted: the daemon stopped while restarting this agent for supervision, perhaps \
     before priming it; supervision restarts it at its next look";

/// Supervision's liaison on the consumer's thread.
pub(crate) struct Liaison {
    town: Town,
    /// Sessions supervision's restarts hold until they are filed.
    held: Arc<HeldSessions>,
    /// The sessions of the agents `supervise` names, as at the start.
    supervised: Vec<String>,
    /// Restarts the supervisor asked for, to dispatch.
    asked: Vec<Restart>,
    /// A restart that fails once the daemon is stopping was cut short.
    stop: Arc<StopFlag>,
}

impl Liaison {
    pub(crate) fn new(
        town: &Town,
        config: &Config,
        held: Arc<HeldSessions>,
        stop: Arc<StopFlag>,
    ) -> Self {
        Liaison {
            town: town.clone(),
            held,
            supervised: super::sessions(town, config),
            asked: Vec::new(),
            stop,
        }
    }

    /// The supervisor asks for a restart.
    pub(crate) fn ask(&mut self, restart: Restart) {
        self.asked.push(restart);
    }

    /// Hands the restarts asked for to the executor, each recorded in
    /// `processing/` first, as a request is claimed before it runs: a daemon
    /// that dies during it leaves the record for the next one to find. A
    /// restart is dropped (its session released; supervision looks again
    /// at its next check) while a request is working on that agent, with
    /// every worker taken, or when it cannot be recorded.
    pub(crate) fn dispatch(&mut self, dispatcher: &mut Dispatcher) {
        for restart in std::mem::take(&mut self.asked) {
            let session = restart.session.clone();
            let Some(job) = job(restart, Utc::now()) else {
                self.held.release(&session);
                continue;
            };
            if !dispatcher.slots.may_start(&session) {
                tracing::debug!(
                    session,
                    "a request is handling this agent; supervision waits"
                );
                self.held.release(&session);
                continue;
            }
            if let Err(e) = self.record(&job) {
                tracing::error!(
                    session,
                    "cannot record a supervised restart in processing/, so it is not run: {e}"
                );
                self.held.release(&session);
                continue;
            }
            dispatcher.submit(job);
        }
    }

    /// Writes a restart's record into `processing/`, durably.
    fn record(&self, job: &Job) -> io::Result<()> {
        let body = job.supervised.as_ref().map_or(&[][..], |r| &r.body);
        crate::fs::write_atomic(&self.town.processing().join(&job.name), body, None)?;
        claim::make_durable(&self.town)
    }

    /// Files a finished supervised restart like a request, its record
    /// beside its sidecar and the dead pane's last lines beside both; then
    /// its session is no longer held. One that failed because the daemon
    /// is stopping (within its prime_delay, say) was cut short: the next
    /// daemon restarts the agent.
    pub(crate) fn file(&self, filer: &mut Filer, job: Job, sidecar: Sidecar, tally: &mut Tally) {
        let Some(record) = job.supervised else {
            return;
        };
        let session = job.request.session();
        self.held.release(&session);
        if sidecar.outcome == Outcome::Failed && self.stop.is_set() {
            interrupted(&self.town, &session, &job.name);
        }
        // The dead pane's last lines are in place before the record is
        // filed: whoever finds the restart filed finds them beside it.
        let beside = record.capture.map(|capture| Beside {
            suffix: CAPTURE_SUFFIX,
            bytes: capture.into_bytes(),
        });
        filer.file_with(job.name, sidecar, beside, tally);
    }

    /// What a finished request means for supervision (see
    /// [`note_request`]).
    pub(crate) fn note(&self, request: &Request, sidecar: &Sidecar) {
        note_request(&self.town, &self.supervised, request, sidecar);
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
    Some(Job {
        name: record_name(&session, now),
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

/// A supervised restart's record is named for when it was asked for and
/// its session, so `explain` finds the captures beside them.
fn record_name(session: &str, at: DateTime<Utc>) -> OsString {
    OsString::from(format!(
        "{}{}{session}.json",
        at.format("%Y%m%dT%H%M%S%.6fZ"),
        RECORD_INFIX
    ))
}

const RECORD_INFIX: &str = "-daemon-";

/// What a record in `processing/` named `name` with `bytes` says, if it is
/// the record of a supervised restart: who asked (the daemon), for what
/// (a restart) and of which session.
pub(crate) fn recorded(name: &OsStr, bytes: &[u8]) -> Option<Partial> {
    let body: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let agent = Agent::parse(body.get("agent")?.as_str()?).ok()?;
    let session = agent.session();
    let named = name
        .to_str()
        .is_some_and(|n| n.ends_with(&format!("{RECORD_INFIX}{session}.json")));
    let ours = body.get("from")? == "daemon" && body.get("action")? == "restart";
    (named && ours).then(|| Partial {
        from: Some("daemon".into()),
        action: Some("restart".into()),
        session: Some(session),
    })
}

/// The supervised restart `name` of `session` was cut short by a daemon
/// stop: the agent may run unprimed, so supervision restarts it at its
/// next look, alive or not. Only an agent supervision already remembers
/// is marked.
pub(crate) fn interrupted(town: &Town, session: &str, name: &OsStr) {
    let now = Utc::now();
    let why = format!(
        "its restart ({}) was cut short by a daemon stop: restarted at the next look",
        escape_os(name)
    );
    let result = crate::supervision::update(town, |memory| {
        let Some(record) = memory.agents.get_mut(session) else {
            return ((), false);
        };
        record.state = AgentState::Interrupted { since: now };
        record.note(now, "interrupted", why, None);
        ((), true)
    });
    if let Err(e) = result {
        tracing::error!(session, "cannot write supervise.json: {e}");
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
        let (liaison, stop) = liaison(&town);
        let job = job(restart("mayor"), Utc::now()).unwrap();
        let name = job.name.clone();
        liaison.record(&job).unwrap();
        let record = std::fs::read(town.processing().join(&name)).unwrap();
        assert!(
            recorded(&name, &record).is_some(),
            "in processing/ before it runs"
        );
        let sidecar = filer.sidecar(Ok(()), &job.partial, None);
        let mut tally = Tally::default();
        liaison.held.claim("gt-mayor");
        liaison.file(&mut filer, job, sidecar, &mut tally);
        assert!(!liaison.held.is_held("gt-mayor"), "released once filed");
        let filed = crate::outcome::filed(&town, &name).unwrap();
        assert_eq!(filed.sidecar.from.as_deref(), Some("daemon"));
        assert_eq!(std::fs::read(&filed.path).unwrap(), record);
        let mut pane = filed.path.clone().into_os_string();
        pane.push(CAPTURE_SUFFIX);
        assert_eq!(std::fs::read_to_string(pane).unwrap(), "last words\n");
        assert_eq!(tally.processed, 1);
        assert!(!stop.is_set());
    }

    fn liaison(town: &Town) -> (Liaison, Arc<StopFlag>) {
        let config = Config {
            supervise: vec!["mayor".into()],
            ..Config::default()
        };
        let stop = Arc::new(StopFlag::default());
        let liaison = Liaison::new(town, &config, Arc::default(), stop.clone());
        (liaison, stop)
    }

    fn remember(town: &Town, session: &str) {
        crate::supervision::update(town, |memory| {
            memory.agents.entry(session.into()).or_default();
            ((), true)
        })
        .unwrap();
    }

    fn state(town: &Town, session: &str) -> Option<AgentState> {
        let memory = crate::supervision::load(town).unwrap();
        memory.agents.get(session).map(|r| r.state.clone())
    }

    #[test]
    fn a_restart_that_fails_as_the_daemon_stops_was_cut_short() {
        let (_dir, town, mut filer) = town_and_filer();
        let (liaison, stop) = liaison(&town);
        remember(&town, "gt-mayor");
        let mut tally = Tally::default();
        for stopping in [false, true] {
            if stopping {
                stop.set();
            }
            let job = job(restart("mayor"), Utc::now()).unwrap();
            liaison.record(&job).unwrap();
            let failed = filer.sidecar(Err("before priming".into()), &job.partial, None);
            liaison.file(&mut filer, job, failed, &mut tally);
            let cut_short = matches!(
                state(&town, "gt-mayor"),
                Some(AgentState::Interrupted { .. })
            );
            assert_eq!(cut_short, stopping);
        }
    }

    #[test]
    fn only_its_own_records_are_taken_for_cut_short_restarts() {
        let now = Utc::now();
        let job = job(restart("mayor"), now).unwrap();
        let body = job.supervised.unwrap().body;
        let partial = recorded(&job.name, &body).unwrap();
        assert_eq!(partial.session.as_deref(), Some("gt-mayor"));
        assert!(
            recorded(OsStr::new("x.json"), &body).is_none(),
            "another name"
        );
        let request = br#"{"from":"mayor","action":"restart","timestamp":"2026-11-23T10:00:00Z"}"#;
        assert!(recorded(&job.name, request).is_none(), "a request");
        assert!(recorded(&job.name, b"{").is_none());
        // Only an agent supervision remembers is marked.
        let (_dir, town, _) = town_and_filer();
        interrupted(&town, "gt-mayor", &job.name);
        assert_eq!(state(&town, "gt-mayor"), None);
        remember(&town, "gt-mayor");
        interrupted(&town, "gt-mayor", &job.name);
        assert!(matches!(
            state(&town, "gt-mayor"),
            Some(AgentState::Interrupted { .. })
        ));
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
            crate::supervision::load(&town).unwrap().agents["gt-mayor"]
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
