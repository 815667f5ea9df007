//! `gt daemon requests`: recent outcomes, newest first.
use std::io::Write;
use std::process::ExitCode;

use anstyle::{AnsiColor, Style};

use crate::client::history::{self, Which};
use crate::outcome::Outcome;
use crate::text::{clip, escape, pad, Zone};
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
    /// Show times in local time ($TZ) instead of UTC.
    #[arg(long)]
    pub local: bool,
}

/// The widest an agent or action cell gets; the full value is in `--json`.
const CELL_MAX: usize = 48;

pub fn run(town: &Town, args: Args) -> color_eyre::Result<ExitCode> {
    let which = match (args.failed, args.processed) {
        (true, _) => Which::Failed,
        (_, true) => Which::Processed,
        _ => Which::All,
    };
    let entries = history::recent(town, which, args.limit);
    if args.json {
        crate::text::write_json(&mut std::io::stdout().lock(), &entries)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = anstream::stdout().lock();
    if entries.is_empty() {
        if args.limit > 0 {
            let what = match which {
                Which::All => "No requests filed yet",
                Which::Failed => "No failed requests",
                Which::Processed => "No processed requests",
            };
            writeln!(
                out,
                "{what} in {}",
                crate::text::escape_os(town.daemon_dir().as_os_str())
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (green, red) = (
        Style::new().fg_color(Some(AnsiColor::Green.into())),
        Style::new().fg_color(Some(AnsiColor::Red.into())),
    );
    // Every cell an agent wrote is escaped; the columns are as wide as
    // their longest cell (agent and action cut at CELL_MAX, the file name
    // never: it is what `retry` takes).
    let zone = Zone::local_if(args.local);
    let rows: Vec<[String; 6]> = entries
        .iter()
        .map(|e| {
            let s = &e.sidecar;
            [
                crate::text::time(s.finished_at, zone),
                clip(&escape(s.from.as_deref().unwrap_or("-")), CELL_MAX).into_owned(),
                clip(&escape(s.action.as_deref().unwrap_or("-")), CELL_MAX).into_owned(),
                match s.outcome {
                    Outcome::Processed => "processed".into(),
                    Outcome::Failed => "failed".into(),
                },
                escape(&e.file).into_owned(),
                escape(s.error.as_deref().unwrap_or("")).into_owned(),
            ]
        })
        .collect();
    const HEADER: [&str; 6] = ["TIME", "AGENT", "ACTION", "OUTCOME", "FILE", "REASON"];
    let mut widths = HEADER.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = HEADER[..5]
        .iter()
        .zip(widths)
        .map(|(h, w)| pad(h, w))
        .collect();
    writeln!(out, "{}  REASON", header.join("  "))?;
    for (row, entry) in rows.iter().zip(&entries) {
        let style = match entry.sidecar.outcome {
            Outcome::Processed => green,
            Outcome::Failed => red,
        };
        let line = format!(
            "{}  {}  {}  {style}{}{style:#}  {}  {}",
            pad(&row[0], widths[0]),
            pad(&row[1], widths[1]),
            pad(&row[2], widths[2]),
            pad(&row[3], widths[3]),
            pad(&row[4], widths[4]),
            row[5]
        );
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(ExitCode::SUCCESS)
}
