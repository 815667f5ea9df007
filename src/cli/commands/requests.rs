//! `gt daemon requests`: recent outcomes, newest first.
use std::io::Write;
use std::process::ExitCode;

use anstyle::{AnsiColor, Style};

use crate::client::history::{self, Which};
use crate::outcome::Outcome;
use crate::town::Town;

/// List recent request outcomes, newest first.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  gt daemon requests\n  gt daemon requests --failed -n 5\n  gt daemon requests --json | jq '.[0].error'"
)]
pub struct Args {
    /// Only failed requests.
    #[arg(long, conflicts_with = "processed")]
    pub failed: bool,
    /// Only processed requests.
    #[arg(long)]
    pub processed: bool,
    /// How many to show.
    #[arg(short = 'n', long = "limit", value_name = "N", default_value_t = 20)]
    pub limit: usize,
    /// Print a JSON array on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(town: &Town, args: Args) -> color_eyre::Result<ExitCode> {
    let which = match (args.failed, args.processed) {
        (true, _) => Which::Failed,
        (_, true) => Which::Processed,
        _ => Which::All,
    };
    let entries = history::recent(town, which, args.limit);
    if args.json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &entries)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = anstream::stdout().lock();
    if entries.is_empty() {
        writeln!(
            out,
            "No requests filed yet in {}",
            town.daemon_dir().display()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let (green, red) = (
        Style::new().fg_color(Some(AnsiColor::Green.into())),
        Style::new().fg_color(Some(AnsiColor::Red.into())),
    );
    let file_width = entries
        .iter()
        .map(|e| e.file.len())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        "{:<19}  {:<20}  {:<8}  {:<9}  {:<file_width$}  REASON",
        "TIME (UTC)", "AGENT", "ACTION", "OUTCOME", "FILE"
    )?;
    for e in entries {
        let s = &e.sidecar;
        let (style, outcome) = match s.outcome {
            Outcome::Processed => (green, "processed"),
            Outcome::Failed => (red, "failed"),
        };
        let row = format!(
            "{:<19}  {:<20}  {:<8}  {style}{outcome:<9}{style:#}  {:<file_width$}  {}",
            s.finished_at.format("%Y-%m-%d %H:%M:%S"),
            s.from.as_deref().unwrap_or("-"),
            s.action.as_deref().unwrap_or("-"),
            e.file,
            s.error.as_deref().unwrap_or("")
        );
        writeln!(out, "{}", row.trim_end())?;
    }
    Ok(ExitCode::SUCCESS)
}
