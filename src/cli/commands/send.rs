//! `gt daemon send`: publish a request the way agents should.
use std::process::ExitCode;
use std::time::{Duration, Instant};

use color_eyre::eyre::{bail, WrapErr};

use crate::outcome::{self, Outcome, Sidecar};
use crate::request::{Action, Agent};
use crate::state::State;
use crate::town::Town;

/// Publish a lifecycle request into the inbox (atomically).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
The request is written to inbox/.NAME.tmp and renamed to inbox/NAME.json, so
the daemon never sees half a file. Prints the request's path.

Exit status with --wait: 0 processed, 1 failed (the reason is printed),
124 timed out (the request stays queued; the daemon will still handle it).

Examples:
  gt daemon send cycle --from gastown/witness
  gt daemon send restart --from mayor --wait --timeout 60s")]
pub struct Args {
    /// cycle (restart with handoff), restart (fresh) or shutdown.
    #[arg(value_parser = ["cycle", "restart", "shutdown"])]
    pub action: String,
    /// The requesting agent: mayor, deacon, <rig>/witness, <rig>-witness or <rig>/refinery.
    #[arg(long, value_name = "AGENT", value_parser = crate::cli::commands::completions::AgentName, hide_possible_values = true)]
    pub from: String,
    /// Block until the request is filed, print its outcome and reason.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: how long to wait (e.g. 30s).
    #[arg(long, value_name = "D", default_value = "60s", requires = "wait", value_parser = crate::cli::commands::parse_duration_arg)]
    pub timeout: Duration,
}

/// Exit status of `send --wait` when the daemon did not answer in time.
pub const TIMED_OUT: u8 = 124;

pub fn run(town: &Town, args: Args) -> color_eyre::Result<ExitCode> {
    let action = Action::parse(&args.action).map_err(|e| color_eyre::eyre::eyre!(e))?;
    if let Err(e) = Agent::parse(&args.from) {
        bail!("{e}\nhint: the daemon would refuse this request; check --from");
    }
    let path = crate::client::publish::publish(town, &args.from, action)
        .wrap_err("cannot publish the request")?;
    println!("{}", path.display());
    if crate::instance::probe(town).is_none() {
        eprintln!("warning: no daemon is running for this town; the request waits in the inbox until `gt daemon start`");
    }
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let name = path.file_name().unwrap_or_default().to_os_string();
    let deadline = Instant::now() + args.timeout;
    loop {
        if let Some(filed) = outcome::filed(town, &name) {
            // Filed is not yet counted: the daemon counts an outcome once
            // it is durable. Wait for that too (within the same timeout),
            // so a `status` right after this shows it.
            while Instant::now() < deadline
                && State::load(&town.state_file())
                    .ok()
                    .and_then(|s| s.counts(&filed.sidecar))
                    == Some(false)
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            return Ok(report(&filed.sidecar));
        }
        if Instant::now() >= deadline {
            eprintln!(
                "timed out after {} waiting for the daemon to file {}; it stays queued (is the daemon running? gt daemon status)",
                crate::duration::human(args.timeout),
                name.to_string_lossy()
            );
            return Ok(ExitCode::from(TIMED_OUT));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn report(sidecar: &Sidecar) -> ExitCode {
    match (&sidecar.outcome, &sidecar.error) {
        (Outcome::Processed, _) => {
            println!("processed");
            ExitCode::SUCCESS
        }
        (Outcome::Failed, reason) => {
            println!(
                "failed: {}",
                crate::text::escape(reason.as_deref().unwrap_or("no reason given"))
            );
            ExitCode::FAILURE
        }
    }
}
