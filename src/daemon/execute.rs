//! Carrying out a validated request against tmux.
//!
//! Every call to tmux is bounded by `tmux_timeout`, every wait on an agent
//! by its own limit, and the waits end early on a stop, so one wedged
//! agent or tmux server costs one request a failure with a reason, never
//! the daemon its other agents.
//!
//! A cycle or restart is done in two steps: [`Executor::execute`] ends the
//! old session and starts the new one, and hands back the agent
//! [`Booting`]; once it has booted (`prime_delay`), [`Executor::prime`]
//! types the prime text. Between the two nothing waits: no thread sleeps
//! through an agent's boot (the dispatcher keeps the timer), so a storm of
//! restarts does not hold up the requests behind it.
//!
//! Town-level guards (shutdown.lock, the crash-loop guard) are checked here,
//! in dry-run too, so a dry run says truthfully what a real run would do.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::stop::StopFlag;
use crate::config::SharedConfig;
use crate::crash_loop::{Counted, CrashLoopGuard};
use crate::duration::human;
use crate::process;
use crate::request::{Action, Request};
use crate::tmux::{NewSession, Old, Tmux};
use crate::town::Town;

/// How long an agent must survive its start when there is no prime text
/// to wait for.
const FIRST_MOMENTS: Duration = Duration::from_millis(500);

/// Between the prime text and its Enter. Some terminal programs take text
/// followed at once by Enter for a paste, and keep the Enter as part of
/// their input instead of submitting it.
const ENTER_AFTER: Duration = Duration::from_millis(50);

/// What executing a request came to.
pub(crate) enum Executed {
    /// Done: the reason to file, when it failed.
    Done(Result<(), String>),
    /// A new session runs its agent, which boots until [`Booting::due`];
    /// then [`Executor::prime`] finishes the request.
    Booting(Booting),
}

/// An agent started by a cycle or restart, booting until its prime text
/// is due. Its session stays held (nothing else types into it) until this
/// is dropped.
pub(crate) struct Booting {
    /// When the prime text is to be typed.
    pub(crate) due: Instant,
    session: String,
    /// The agent's own pane (`%N`, as tmux made it), where the prime is
    /// typed: never the active pane of a window a person split.
    pane: String,
    /// What is typed; empty: nothing, but the agent must still be alive.
    prime: String,
    /// How long it boots, for the reasons.
    boots: Duration,
    _hold: Hold,
    _status: super::sdnotify::Executing,
}

pub(crate) struct Executor {
    /// Waits on an agent end early on a stop.
    stop: Arc<StopFlag>,
    held: Arc<HeldSessions>,
    town: Town,
    tmux: Tmux,
    /// Read at the start of each operation: a reload (SIGHUP) applies from
    /// the next request. The tmux server and timeout are fixed at start.
    config: SharedConfig,
}

impl Executor {
    pub(crate) fn new(
        town: &Town,
        config: &SharedConfig,
        stop: Arc<StopFlag>,
        held: Arc<HeldSessions>,
    ) -> Self {
        let now = config.get();
        Executor {
            stop,
            held,
            town: town.clone(),
            tmux: Tmux::new(now.tmux_socket.clone(), now.tmux_timeout),
            config: config.clone(),
        }
    }

    /// Whether executing `request` will touch tmux; such requests must be
    /// durably claimed first so a power loss cannot run them twice.
    pub(crate) fn has_effects(&self) -> bool {
        !self.config.get().dry_run
    }

    /// Executes the request, or its first step ([`Executed::Booting`]);
    /// an error is the reason filed with it. A cycle or restart goes
    /// through the crash-loop guard, which records it as `counted` says.
    pub(crate) fn execute(&self, request: &Request, counted: Counted) -> Executed {
        let config = self.config.get();
        let session = request.session();
        if request.action.starts_session() {
            if let Err(reason) = self.admit(request, &session, counted) {
                return Executed::Done(Err(reason));
            }
        }
        if config.dry_run {
            tracing::debug!(session, action = %request.action, "dry run: would {} {session}", request.action);
            return Executed::Done(Ok(()));
        }
        let status = super::sdnotify::executing(request.action.as_str(), &request.from);
        // The session is this request's until it is primed: the heartbeat
        // types nothing into it meanwhile.
        let hold = self.held.hold(&session);
        let started = match request.action {
            Action::Shutdown => return Executed::Done(self.end_session(&session)),
            Action::Restart => self.start_session(request, false),
            Action::Cycle => self.start_session(request, true),
        };
        let pane = match started {
            Ok(pane) => pane,
            Err(reason) => return Executed::Done(Err(reason)),
        };
        let prime = config.prime_text.clone();
        // With nothing to type there is nothing to wait for, but an agent
        // that dies at once is still a failure, not a success.
        let boots = if prime.is_empty() {
            FIRST_MOMENTS
        } else {
            config.prime_delay
        };
        Executed::Booting(Booting {
            due: Instant::now() + boots,
            session,
            pane,
            prime,
            boots,
            _hold: hold,
            _status: status,
        })
    }

    /// The town-level guards on starting a session: shutdown.lock, and the
    /// crash-loop guard, which records the start as `counted` says.
    fn admit(&self, request: &Request, session: &str, counted: Counted) -> Result<(), String> {
        let config = self.config.get();
        if self.town.shutdown_lock().exists() {
            return Err(
                "town is shutting down (shutdown.lock exists); cycle and restart are refused"
                    .into(),
            );
        }
        // A dry run keeps its own memory: its restarts ran nothing.
        let guard = if config.dry_run {
            CrashLoopGuard::dry_run(&self.town, config.max_restarts, config.restart_window)
        } else {
            CrashLoopGuard::new(&self.town, config.max_restarts, config.restart_window)
        };
        match guard.admit(session, Utc::now(), counted) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(tripped)) => Err(format!(
                "crash-loop guard: {session} was already restarted {} times within {} (max_restarts {}); \
                 wait, or run `gt daemon clear-backoff {}`",
                tripped.count,
                human(config.restart_window),
                config.max_restarts,
                request.from
            )),
            Err(e) => Err(format!("cannot update the crash-loop guard state: {e}")),
        }
    }

    /// The second step of a cycle or restart, once its agent has booted:
    /// the agent must still run, then its prime text is typed, and Enter.
    pub(crate) fn prime(&self, booting: Booting) -> Result<(), String> {
        let session = &booting.session;
        let gone = |how: String| {
            format!(
                "session {session}: the agent command {how} within {} of its start; check that it runs by hand",
                human(booting.boots)
            )
        };
        // The agent's own pane: one a person split off may be the active one.
        let pane = self
            .tmux
            .look_and_type(session, Some((&booting.pane, &booting.prime)))
            .map_err(|e| format!("session {session} started but priming it failed: {e}"))?;
        match pane {
            None => return Err(gone("exited (the session ended)".into())),
            Some(pane) => {
                if let Some(exit) = pane.exit {
                    return Err(gone(exit.to_string()));
                }
            }
        }
        if booting.prime.is_empty() {
            return Ok(());
        }
        std::thread::sleep(ENTER_AFTER);
        self.tmux
            .press_enter(&booting.pane)
            .map_err(|e| format!("session {session} started but priming it failed: {e}"))
    }

    /// The reason filed for an agent still booting when the daemon stops:
    /// it runs, but its prime text was never typed.
    pub(crate) fn stopped(&self, booting: &Booting) -> String {
        let (session, prime) = (&booting.session, &booting.prime);
        format!(
            "the daemon was stopped {} after starting session {session}, before priming it: \
             the agent runs but {} was not typed; check it, then retry if needed",
            if prime.is_empty() {
                "moments"
            } else {
                "within prime_delay"
            },
            if prime.is_empty() {
                "nothing".to_string()
            } else {
                format!("{prime:?}")
            },
        )
    }

    /// Executes `request` to the end on this thread, its agent's boot
    /// included (slept through; a stop cuts it short).
    pub(crate) fn execute_here(&self, request: &Request, counted: Counted) -> Result<(), String> {
        match self.execute(request, counted) {
            Executed::Done(result) => result,
            Executed::Booting(booting) => {
                if self
                    .stop
                    .wait(booting.due.saturating_duration_since(Instant::now()))
                {
                    return Err(self.stopped(&booting));
                }
                self.prime(booting)
            }
        }
    }

    /// Ends the session and every process of its agent
    /// ([`process::agent`]: its panes' trees, sessions and process groups,
    /// and whatever carries its marks outside any other live pane, a dead
    /// pane's children adopted by init among them); already gone is
    /// success once those are ended too.
    fn end_session(&self, session: &str) -> Result<(), String> {
        if self.end_processes(session)? {
            self.kill(session)?;
        }
        Ok(())
    }

    /// Ends every process of the session's agent; false when there is no
    /// such session (its agent's leftovers are ended all the same).
    fn end_processes(&self, session: &str) -> Result<bool, String> {
        let config = self.config.get();
        // Every pane of the server: the agent's own, and the others, whose
        // processes are never touched. One listing says both.
        let listed = self
            .tmux
            .panes()
            .map_err(|e| format!("cannot list the tmux panes to end {session}'s processes: {e}"))?;
        let exists = listed.iter().any(|p| p.session == session);
        let panes: Vec<_> = listed.iter().filter_map(|p| p.process()).collect();
        let ended = process::agent::end_agent(self.town.root(), session, &panes, config.kill_grace);
        if ended.killed > 0 {
            tracing::warn!(
                session,
                ended = ended.ended,
                killed = ended.killed,
                "agent processes ignored SIGTERM for {}: SIGKILLed",
                human(config.kill_grace)
            );
        } else if ended.ended > 0 {
            tracing::debug!(session, ended = ended.ended, "agent processes ended");
        }
        if !exists {
            match ended.ended {
                0 => tracing::info!(session, "session already gone: nothing to end"),
                n => tracing::warn!(
                    session,
                    ended = n,
                    "session already gone, but processes of its agent were still running: ended"
                ),
            }
            return Ok(false);
        }
        Ok(true)
    }

    /// Kills the session and waits until tmux says it is gone.
    fn kill(&self, session: &str) -> Result<(), String> {
        if self.tmux.kill_session(session).map_err(|e| e.to_string())? {
            return Ok(());
        }
        self.wait_gone(session)
    }

    fn wait_gone(&self, session: &str) -> Result<(), String> {
        let limit = self.config.get().tmux_timeout;
        let deadline = Instant::now() + limit;
        while self.tmux.has_session(session).map_err(|e| e.to_string())? {
            if Instant::now() > deadline {
                return Err(format!(
                    "session {session} is still there {} after kill-session (tmux_timeout)",
                    human(limit)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Ends the agent's processes and starts its new session in place of
    /// the old one; the new agent's pane.
    fn start_session(&self, request: &Request, handoff: bool) -> Result<String, String> {
        let session = request.session();
        let existed = self.end_processes(&session)?;
        let config = self.config.get();
        let argv = &config.agent_command_for(request.agent.role()).0;
        if let Err(e) = which::which(&argv[0]) {
            if existed {
                self.kill(&session)?;
            }
            return Err(format!(
                "agent command {:?} not found on PATH ({e}); set agent_command in daemon/config.json",
                argv[0]
            ));
        }
        let dir = self.work_dir(request);
        let town_root = self.town.root().to_string_lossy();
        let mut env = vec![
            ("GT_ROLE", request.from.as_str()),
            ("GT_TOWN_ROOT", town_root.as_ref()),
        ];
        if handoff {
            env.push(("GT_HANDOFF", "1"));
        }
        let new = NewSession {
            name: &session,
            dir: &dir,
            env: &env,
            argv,
            // Supervised agents leave a dead pane behind, so supervision
            // can read how they died before it replaces them.
            keep_dead: !config.supervise.is_empty(),
        };
        let old = match (existed, new.keep_dead) {
            (false, _) => Old::None,
            (true, true) => Old::Kept,
            (true, false) => Old::Ending,
        };
        let pane = self
            .tmux
            .new_session(&new, old)
            .map_err(|e| format!("cannot create session {session}: {e}"))?;
        tracing::info!(session, pane, dir = %dir.display(), command = %config.agent_command_for(request.agent.role()), "session created");
        Ok(pane)
    }

    /// The most specific existing directory for the agent, else the town.
    fn work_dir(&self, request: &Request) -> PathBuf {
        request
            .agent
            .work_dirs()
            .into_iter()
            .map(|rel| self.town.root().join(rel))
            .find(|dir| dir.is_dir())
            .unwrap_or_else(|| self.town.root().to_path_buf())
    }
}

/// Sessions a request is executing against, which the heartbeat must not
/// type into (a new session is the daemon's until its prime text is in).
/// Each hold is counted: a supervised restart's claim and its execution's
/// hold overlap, and the session is free only when both have ended.
#[derive(Debug, Default)]
pub(crate) struct HeldSessions(Mutex<HashMap<String, u32>>);

/// Releases its session when dropped.
pub(crate) struct Hold {
    sessions: Arc<HeldSessions>,
    session: String,
}

impl HeldSessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, u32>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn hold(self: &Arc<Self>, session: &str) -> Hold {
        self.claim(session);
        Hold {
            sessions: self.clone(),
            session: session.to_string(),
        }
    }

    /// Holds `session` for a supervised restart on its way to the executor,
    /// until [`HeldSessions::release`]: supervision must not look at an
    /// agent it has just asked to restart (its session is missing until the
    /// restart creates it), nor the heartbeat poke it.
    pub(crate) fn claim(&self, session: &str) {
        *self.lock().entry(session.to_string()).or_default() += 1;
    }

    /// Ends a [`HeldSessions::claim`] (the restart was filed, or dropped).
    pub(crate) fn release(&self, session: &str) {
        let mut held = self.lock();
        if let Some(count) = held.get_mut(session) {
            *count -= 1;
            if *count == 0 {
                held.remove(session);
            }
        }
    }

    pub(crate) fn is_held(&self, session: &str) -> bool {
        self.lock().contains_key(session)
    }

    /// Runs `poke` unless `session` is held, and keeps the session from
    /// being taken while it runs; `None` when it was held.
    pub(crate) fn unless_held<T>(&self, session: &str, poke: impl FnOnce() -> T) -> Option<T> {
        let held = self.lock();
        if held.contains_key(session) {
            return None;
        }
        Some(poke())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.sessions.release(&self.session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_held_while_claimed_or_in_hand() {
        let held = Arc::new(HeldSessions::default());
        {
            let _hold = held.hold("gt-mayor");
            assert!(held.is_held("gt-mayor"));
            assert_eq!(held.unless_held("gt-mayor", || ()), None);
        }
        assert!(!held.is_held("gt-mayor"), "released with its hold");
        held.claim("gt-deacon");
        assert!(held.is_held("gt-deacon"));
        assert_eq!(held.unless_held("gt-mayor", || 7), Some(7));
        held.release("gt-deacon");
        assert!(!held.is_held("gt-deacon"));
        // A supervised restart: claimed, then held by its execution; the
        // execution ending first leaves the claim.
        held.claim("gt-deacon");
        drop(held.hold("gt-deacon"));
        assert!(held.is_held("gt-deacon"), "still claimed");
        held.release("gt-deacon");
        assert!(!held.is_held("gt-deacon"));
        held.release("gt-deacon");
        assert!(!held.is_held("gt-deacon"), "a release too many is harmless");
    }
}
