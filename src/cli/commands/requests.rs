//! `gt daemon requests`: recent outcomes, newest first; what is pending and
//! in progress (`--pending`); outcomes as they are filed (`--follow`).
use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anstyle::{AnsiColor, Style};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::cli::table::{clip, Styled, Table};
use crate::client::history::{self, Entry, Which};
use crate::outcome::{self, Outcome};
use crate::text::{escape, Zone};
use crate::town::Town;

/// How often `--follow` looks for new outcomes.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// List recent request outcomes, newest first.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
--pending lists what has not been filed yet: requests being executed
(in processing/, since they were claimed) and requests waiting in the inbox
(in the order they will be taken, since they were written).

--follow prints the last N outcomes, then each new one as it is filed,
until Ctrl-C (with --json: one JSON object per line).

Examples:
  gt daemon requests
  gt daemon requests --failed -n 5
  gt daemon requests --pending
  gt daemon requests --follow -n 0        only outcomes filed from now on
  gt daemon requests --json | jq '.[0].error'")]
pub struct Args {
    /// Only failed requests.
    #[arg(long, conflicts_with = "processed")]
    pub failed: bool,
    /// Only processed requests.
    #[arg(long)]
    pub processed: bool,
    /// Requests not filed yet: in progress, then pending in the inbox.
    #[arg(long, conflicts_with_all = ["failed", "processed", "follow"])]
    pub pending: bool,
    /// Keep printing outcomes as they are filed (Ctrl-C ends it).
    #[arg(short, long)]
    pub follow: bool,
    /// How many to show.
    #[arg(short = 'n', long = "limit", value_name = "N", default_value_t = 20)]
    pub limit: usize,
    /// Print JSON on stdout: an array (with --follow, one object per line).
    #[arg(long)]
    pub json: bool,
    /// Show times in local time ($TZ) instead of UTC.
    #[arg(long)]
    pub local: bool,
}

pub fn run(town: &Town, args: Args) -> color_eyre::Result<ExitCode> {
    let which = match (args.failed, args.processed) {
        (true, _) => Which::Failed,
        (_, true) => Which::Processed,
        _ => Which::All,
    };
    let result = if args.pending {
        pending(town, &args)
    } else if args.follow {
        follow(town, which, &args)
    } else {
        outcomes(town, which, &args)
    };
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // The reader went away (`requests --follow | head`): a normal end.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e.into()),
    }
}

fn outcomes(town: &Town, which: Which, args: &Args) -> io::Result<()> {
    let entries = history::recent(town, which, args.limit);
    if args.json {
        return crate::text::write_json(&mut io::stdout().lock(), &entries);
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
        return Ok(());
    }
    let table = Outcomes::for_entries(&entries, Zone::local_if(args.local), 0);
    table.header(&mut out)?;
    for e in &entries {
        table.row(&mut out, e)?;
    }
    Ok(())
}

/// The outcome table: time, agent, action, outcome, file, reason.
struct Outcomes {
    table: Table,
    zone: Zone,
}

/// The widest an agent or action cell gets; the full value is in `--json`.
const CELL_MAX: usize = 48;

const OUTCOMES: [&str; 6] = ["TIME", "AGENT", "ACTION", "OUTCOME", "FILE", "REASON"];

impl Outcomes {
    /// Columns as wide as the longest cell of `entries` (agent and action
    /// cut at CELL_MAX; the file name never, it is what `retry` takes), the
    /// file names' at least `file` wide.
    fn for_entries(entries: &[Entry], zone: Zone, file: usize) -> Outcomes {
        let rows: Vec<[String; 6]> = entries.iter().map(|e| cells(e, zone)).collect();
        let table = Table::new(&OUTCOMES)
            .at_least(0, 20)
            .at_least(1, 20)
            .at_least(2, 8)
            .at_least(3, "processed".len())
            .at_least(4, file)
            .fitting(&rows);
        Outcomes { table, zone }
    }

    fn header(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(out, "{}", self.table.line(&OUTCOMES))
    }

    fn row(&self, out: &mut impl Write, e: &Entry) -> io::Result<()> {
        let style = match e.sidecar.outcome {
            Outcome::Processed => Style::new().fg_color(Some(AnsiColor::Green.into())),
            Outcome::Failed => Style::new().fg_color(Some(AnsiColor::Red.into())),
        };
        let [time, agent, action, outcome, file, reason] = cells(e, self.zone);
        let line = self.table.styled_line(&[
            (&time).into(),
            (&agent).into(),
            (&action).into(),
            Styled(&outcome, style),
            (&file).into(),
            (&reason).into(),
        ]);
        writeln!(out, "{line}")
    }
}

/// One outcome's cells, each safe for a terminal (names and fields are
/// untrusted text).
fn cells(e: &Entry, zone: Zone) -> [String; 6] {
    let s = &e.sidecar;
    let outcome = match s.outcome {
        Outcome::Processed => "processed",
        Outcome::Failed => "failed",
    };
    [
        crate::text::time(s.finished_at, zone),
        clip(&escape(s.from.as_deref().unwrap_or("-")), CELL_MAX).into_owned(),
        clip(&escape(s.action.as_deref().unwrap_or("-")), CELL_MAX).into_owned(),
        outcome.to_string(),
        escape(&e.file).into_owned(),
        escape(s.error.as_deref().unwrap_or("")).into_owned(),
    ]
}

/// Prints the last `limit` outcomes, then each one filed from then on. A
/// request is filed once it lies in `processed/` or `failed/` beside a
/// complete sidecar (filing moves the request there last), so each poll
/// looks for request names not seen before; the names remembered are the
/// directories' current ones, so memory follows their size (retention
/// bounds it), not how long this runs.
fn follow(town: &Town, which: Which, args: &Args) -> io::Result<()> {
    let dirs: Vec<PathBuf> = match which {
        Which::All => vec![town.processed(), town.failed()],
        Which::Processed => vec![town.processed()],
        Which::Failed => vec![town.failed()],
    };
    let mut seen: HashSet<OsString> = HashSet::new();
    for dir in &dirs {
        seen.extend(request_names(dir));
    }
    let mut last = history::recent(town, which, args.limit);
    last.reverse(); // oldest first, as a log reads
                    // Names from `send` are 36 long: room for those that come later.
    let table = Outcomes::for_entries(&last, Zone::local_if(args.local), 36);
    if !args.json {
        let mut out = anstream::stdout().lock();
        table.header(&mut out)?;
    }
    print_entries(&table, &last, args.json)?;
    loop {
        std::thread::sleep(FOLLOW_POLL);
        let mut current = HashSet::new();
        let mut new = Vec::new();
        for dir in &dirs {
            for name in request_names(dir) {
                if !seen.contains(&name) {
                    let path = dir.join(&name);
                    // Not complete yet: looked at again at the next poll.
                    let Some(sidecar) = outcome::read_sidecar(&outcome::sidecar_path(&path)) else {
                        continue;
                    };
                    new.push(Entry {
                        file: crate::text::escape_os(&name).into_owned(),
                        path,
                        sidecar,
                    });
                }
                current.insert(name);
            }
        }
        seen = current;
        new.sort_by_key(|e| e.sidecar.finished_at);
        print_entries(&table, &new, args.json)?;
    }
}

fn print_entries(table: &Outcomes, entries: &[Entry], json: bool) -> io::Result<()> {
    if json {
        let mut out = io::stdout().lock();
        for e in entries {
            serde_json::to_writer(&mut out, e)?;
            writeln!(out)?;
        }
        return out.flush();
    }
    let mut out = anstream::stdout().lock();
    for e in entries {
        table.row(&mut out, e)?;
    }
    out.flush()
}

/// The request names (not sidecars, not dot-files) in an outcome directory.
fn request_names(dir: &Path) -> Vec<OsString> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| !n.as_encoded_bytes().starts_with(b".") && !outcome::is_sidecar_name(n))
        .collect()
}

/// A request not filed yet.
#[derive(Debug, Serialize)]
struct Unfiled {
    file: String,
    path: PathBuf,
    /// `in_progress` (claimed into processing/) or `pending` (in the inbox).
    state: &'static str,
    from: Option<String>,
    action: Option<String>,
    /// In progress: when it was claimed; pending: when it was written.
    since: Option<DateTime<Utc>>,
}

/// What is being executed (processing/, oldest claim first), then what
/// waits in the inbox, in the order the daemon takes it (name order).
fn pending(town: &Town, args: &Args) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;

    let mut in_progress: Vec<(OsString, Option<SystemTime>)> = std::fs::read_dir(town.processing())
        .map(|d| {
            d.flatten()
                .filter(|e| !e.file_name().as_encoded_bytes().starts_with(b"."))
                .map(|e| {
                    // A rename (the claim) sets ctime, not mtime.
                    let claimed = e.metadata().ok().map(|m| {
                        SystemTime::UNIX_EPOCH
                            + Duration::new(m.ctime().max(0) as u64, m.ctime_nsec().max(0) as u32)
                    });
                    (e.file_name(), claimed)
                })
                .collect()
        })
        .unwrap_or_default();
    in_progress.sort_by_key(|(_, t)| *t);
    let waiting = crate::inbox::scan(&town.inbox()).unwrap_or_default();
    let (n_progress, n_waiting) = (in_progress.len(), waiting.len());

    let mut rows = Vec::new();
    for (name, claimed) in in_progress {
        rows.push(unfiled(&town.processing(), name, "in_progress", claimed));
        if rows.len() >= args.limit {
            break;
        }
    }
    for name in waiting {
        if rows.len() >= args.limit {
            break;
        }
        let path = town.inbox().join(&name);
        let written = std::fs::symlink_metadata(&path)
            .and_then(|m| m.modified())
            .ok();
        rows.push(unfiled(&town.inbox(), name, "pending", written));
    }

    if args.json {
        return crate::text::write_json(&mut io::stdout().lock(), &rows);
    }
    let mut out = anstream::stdout().lock();
    if rows.is_empty() {
        writeln!(
            out,
            "Nothing pending or in progress in {}",
            crate::text::escape_os(town.daemon_dir().as_os_str())
        )?;
        return Ok(());
    }
    let zone = Zone::local_if(args.local);
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.state.replace('_', " "),
                r.since
                    .map(|t| crate::text::time(t, zone))
                    .unwrap_or_else(|| "-".into()),
                clip(&escape(r.from.as_deref().unwrap_or("-")), CELL_MAX).into_owned(),
                clip(&escape(r.action.as_deref().unwrap_or("-")), CELL_MAX).into_owned(),
                escape(&r.file).into_owned(),
            ]
        })
        .collect();
    // Each time carries its zone (`Z`, or the local offset with --local),
    // as in the outcome table's TIME.
    let header = ["STATE", "SINCE", "AGENT", "ACTION", "FILE"];
    let table = Table::new(&header)
        .at_least(0, "in progress".len())
        .at_least(1, 19)
        .at_least(2, 20)
        .at_least(3, 8)
        .fitting(&cells);
    writeln!(out, "{}", table.line(&header))?;
    for row in &cells {
        writeln!(out, "{}", table.line(row))?;
    }
    if rows.len() < n_progress + n_waiting {
        writeln!(
            out,
            "({n_progress} in progress, {n_waiting} pending; showing {}: -n N for more)",
            rows.len()
        )?;
    }
    Ok(())
}

/// Reads what a request says about itself, the way the daemon reads it
/// (never following a link, never blocking on a FIFO, at most 64 KiB).
fn unfiled(dir: &Path, name: OsString, state: &'static str, since: Option<SystemTime>) -> Unfiled {
    let path = dir.join(&name);
    let fields = crate::inbox::read_request(&path)
        .ok()
        .and_then(Result::ok)
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    let field = |key: &str| {
        fields
            .as_ref()
            .and_then(|v| v.get(key)?.as_str().map(str::to_string))
    };
    Unfiled {
        file: crate::text::escape_os(&name).into_owned(),
        from: field("from"),
        action: field("action"),
        path,
        state,
        since: since.map(DateTime::<Utc>::from),
    }
}
