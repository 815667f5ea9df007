//! `gt daemon supervise`: tell supervision to go on.
use std::process::ExitCode;

use color_eyre::eyre::eyre;

use crate::request::Agent;
use crate::town::Town;

/// Resume supervision: of one agent, or of the whole town after a pause.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// End a pause (after a mass death), or, for one agent, a stop on
    /// request, a backoff or a quarantine.
    #[command(after_help = "\
Without an agent: supervision, paused after several agents died at once,
resumes at its next check. With one: an agent stopped by a shutdown request,
backing off or quarantined is restarted at the next check if it is dead,
its restart count started afresh (as `gt daemon clear-backoff` does).

Examples:
  gt daemon supervise resume
  gt daemon supervise resume gastown/witness")]
    Resume {
        /// The agent, as in a request's `from`.
        agent: Option<String>,
    },
}

pub fn run(town: &Town, command: Command) -> color_eyre::Result<ExitCode> {
    match command {
        Command::Resume { agent: None } => {
            if crate::supervision::resume(town, None, "gt daemon supervise resume")? {
                println!("Supervision resumes at its next check");
            } else {
                println!("Supervision was not paused");
            }
        }
        Command::Resume { agent: Some(name) } => {
            let agent = Agent::parse(&name).map_err(|e| eyre!("{e}"))?;
            let session = agent.session();
            if crate::supervision::resume(town, Some(&session), "gt daemon supervise resume")? {
                println!("Supervision of {session} resumes at its next check");
            } else {
                println!("{session} was not held by supervision; nothing to resume");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
