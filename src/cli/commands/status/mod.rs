//! `gt daemon status`: is the daemon up, is it doing its job, and what is
//! it doing: agents, requests in hand, the crash-loop guard, settings.
//!
//! [`report`] gathers what there is to know (the `--json` object); `text`
//! shows it to a person.
mod report;
mod text;

use std::process::ExitCode;
use std::time::Duration;

use crate::text::Zone;
use crate::town::Town;

pub use report::{report, Report};

/// Exit status: running, and doing its job.
pub const RUNNING: u8 = 0;
/// Exit status: not running (stopped, or crashed), as `systemctl status`
/// and LSB init scripts say it.
pub const NOT_RUNNING: u8 = 3;
/// Exit status: running but degraded (heartbeat overdue, outcomes that
/// cannot be filed, or the metrics endpoint not serving).
pub const DEGRADED: u8 = 4;

/// How long status waits for tmux to list the agents' sessions.
const TMUX_PATIENCE: Duration = Duration::from_secs(2);

/// Show whether the daemon runs, whether it does its job, and what it is doing.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Running or not is decided by the daemon's lock, never by a PID that may have
been reused. A daemon that state.json says is running but that holds no lock
died without stopping: it is shown as crashed, with when it was last alive.
Counters count since the daemon started.

Exit status: 0 running, 3 not running (stopped or crashed), 4 running but
degraded (heartbeat overdue, outcomes that cannot be filed, or the metrics
endpoint not serving).

Examples:
  gt daemon status
  gt daemon status --json | jq .agents
  gt daemon status >/dev/null || echo \"not healthy: $?\"")]
pub struct Args {
    /// Print one JSON object on stdout (docs/operations.md, "Reading status").
    #[arg(long)]
    pub json: bool,
    /// Show times in local time ($TZ) instead of UTC.
    #[arg(long)]
    pub local: bool,
}

pub fn run(town: &Town, args: Args) -> color_eyre::Result<ExitCode> {
    let report = report(town);
    let code = match report.status {
        "running" => RUNNING,
        "degraded" => DEGRADED,
        _ => NOT_RUNNING,
    };
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        if !report.state.running || report.state.pid == 0 {
            value["pid"] = serde_json::Value::Null;
        }
        crate::text::write_json(&mut std::io::stdout().lock(), &value)?;
    } else {
        text::print(town, &report, Zone::local_if(args.local))?;
    }
    Ok(ExitCode::from(code))
}
