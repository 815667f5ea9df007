//! Carrying out a validated request against tmux.
//!
//! Town-level guards (shutdown.lock, the crash-loop guard) are checked here,
//! in dry-run too, so a dry run says truthfully what a real run would do.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::stop::StopFlag;
use crate::config::Config;
use crate::crash_loop::CrashLoopGuard;
use crate::duration::human;
use crate::process;
use crate::request::{Action, Request};
use crate::tmux::Tmux;
use crate::town::Town;

pub(crate) struct Executor {
    /// Waits on an agent end early on a stop.
    stop: Arc<StopFlag>,
    town: Town,
    tmux: Tmux,
    guard: CrashLoopGuard,
    config: Config,
}

impl Executor {
    pub(crate) fn new(town: &Town, config: &Config, stop: Arc<StopFlag>) -> Self {
        Executor {
            stop,
            town: town.clone(),
            tmux: Tmux::new(config.tmux_socket.clone()),
            guard: CrashLoopGuard::new(town, config.max_restarts, config.restart_window),
            config: config.clone(),
        }
    }

    /// Whether executing `request` will touch tmux; such requests must be
    /// durably claimed first so a power loss cannot run them twice.
    pub(crate) fn has_effects(&self) -> bool {
        !self.config.dry_run
    }

    /// Executes the request; the error is the reason filed with it.
    pub(crate) fn execute(&self, request: &Request) -> Result<(), String> {
        let session = request.session();
        if request.action.starts_session() {
            if self.town.shutdown_lock().exists() {
                return Err(
                    "town is shutting down (shutdown.lock exists); cycle and restart are refused"
                        .into(),
                );
            }
            match self.guard.admit(&session, Utc::now()) {
                Ok(Ok(())) => {}
                Ok(Err(tripped)) => {
                    return Err(format!(
                        "crash-loop guard: {session} was already restarted {} times within {} (max_restarts {}); \
                         wait, or run `gt daemon clear-backoff {}`",
                        tripped.count,
                        human(self.config.restart_window),
                        self.config.max_restarts,
                        request.from
                    ))
                }
                Err(e) => return Err(format!("cannot update the crash-loop guard state: {e}")),
            }
        }
        if self.config.dry_run {
            tracing::debug!(session, action = %request.action, "dry run: would {} {session}", request.action);
            return Ok(());
        }
        match request.action {
            Action::Shutdown => self.end_session(&session),
            Action::Restart => self.start_session(request, false),
            Action::Cycle => self.start_session(request, true),
        }
    }

    /// Ends the session and every process in it; already gone is success.
    fn end_session(&self, session: &str) -> Result<(), String> {
        let exists = self.tmux.has_session(session).map_err(|e| e.to_string())?;
        if !exists {
            tracing::info!(session, "session already gone: nothing to end");
            return Ok(());
        }
        let panes = self.tmux.pane_pids(session).unwrap_or_default();
        let killed = process::terminate_tree(&panes, self.config.kill_grace);
        if killed > 0 {
            tracing::warn!(
                session,
                killed,
                "agent processes ignored SIGTERM for {}: SIGKILLed",
                human(self.config.kill_grace)
            );
        }
        self.tmux.kill_session(session).map_err(|e| e.to_string())?;
        self.wait_gone(session)
    }

    fn wait_gone(&self, session: &str) -> Result<(), String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.tmux.has_session(session).map_err(|e| e.to_string())? {
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "session {session} is still there 10s after kill-session"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn start_session(&self, request: &Request, handoff: bool) -> Result<(), String> {
        let session = request.session();
        self.end_session(&session)?;
        let argv = &self.config.agent_command_for(request.agent.role()).0;
        if let Err(e) = which::which(&argv[0]) {
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
        self.tmux
            .new_session(&session, &dir, &env, argv)
            .map_err(|e| format!("cannot create session {session}: {e}"))?;
        tracing::info!(session, dir = %dir.display(), command = %self.config.agent_command_for(request.agent.role()), "session created");
        std::thread::sleep(self.config.prime_delay);
        if !self.config.prime_text.is_empty() {
            if !self.tmux.has_session(&session).unwrap_or(false) {
                return Err(format!(
                    "session {session} ended within prime_delay ({}): the agent command exited; check it runs by hand",
                    human(self.config.prime_delay)
                ));
            }
            self.tmux
                .send_line(&session, &self.config.prime_text)
                .map_err(|e| format!("session {session} started but priming it failed: {e}"))?;
        }
        Ok(())
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
