//! `gt daemon clear-backoff`: reset the crash-loop guard of one agent.
use std::process::ExitCode;

use color_eyre::eyre::eyre;

use crate::config::Config;
use crate::crash_loop::CrashLoopGuard;
use crate::request::Agent;
use crate::town::Town;

/// Reset the crash-loop guard so the agent may be restarted again.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Effective for every request filed after this command returns, also while the
daemon runs (the guard's memory is daemon/restart_state.json).

Examples:
  gt daemon clear-backoff mayor
  gt daemon clear-backoff gastown/witness")]
pub struct Args {
    /// The agent, as in a request's `from`.
    pub agent: String,
}

pub fn run(town: &Town, args: Args) -> color_eyre::Result<ExitCode> {
    let agent = Agent::parse(&args.agent).map_err(|e| eyre!("{e}"))?;
    let config = Config::load(&town.config_file())?;
    std::fs::create_dir_all(town.daemon_dir())?;
    let session = agent.session();
    let had =
        CrashLoopGuard::new(town, config.max_restarts, config.restart_window).clear(&session)?;
    if had {
        println!("Cleared the crash-loop guard of {session}");
    } else {
        println!("{session} had no recorded restarts; nothing to clear");
    }
    // Supervision's backoff and quarantine end too.
    if town.supervise_file().exists()
        && crate::supervise::resume(town, Some(&session), "clear-backoff")?
    {
        println!("Ended supervision's backoff or quarantine of {session}");
    }
    Ok(ExitCode::SUCCESS)
}
