//! The markdown report: the machine, the main table (one group of rows per
//! scenario: burst, latency, backlog, idle), the durability and storm
//! tables, warnings and failures. Each scenario's rows and its "how it is
//! measured" lines are in a module of their own; this one lays them out.

mod backlog;
mod burst;
mod durability;
mod idle;
mod latency;
mod storm;
mod syscalls;
mod units;

use std::fmt::Write;

use crate::args::Opts;
use crate::{DirResults, Outcome};

/// What a run produced, and what the report says about where it ran.
pub struct Report<'a> {
    pub o: &'a Opts,
    /// Lines describing the machine.
    pub machine: &'a [String],
    /// The command that reproduces the run.
    pub command: &'a str,
    /// One per `gt` and directory, in column order.
    pub results: &'a [DirResults],
    /// Why the baseline did not run, when it did not.
    pub baseline_missing: Option<&'a str>,
    /// Why the storm did not run, when it did not.
    pub storm_missing: Option<&'a str>,
    /// Why the syscall count did not run, when it did not.
    pub syscalls_missing: Option<&'a str>,
    /// Behaviour the bench did not expect.
    pub notes: &'a [String],
    /// The scenarios that failed.
    pub errors: &'a [String],
}

impl Report<'_> {
    /// Several `gt` binaries were measured: columns name theirs.
    fn several_gts(&self) -> bool {
        self.results.iter().any(|r| r.gt != self.results[0].gt)
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        self.preamble(&mut s);
        let rows = keep(self.main_rows());
        if !rows.is_empty() {
            let headings: Vec<String> = self
                .results
                .iter()
                .map(|r| heading(r, self.several_gts()))
                .collect();
            table(&mut s, &headings, &rows);
            self.main_notes(&mut s);
        }
        durability::render(&mut s, self);
        storm::render(&mut s, self);
        syscalls::render(&mut s, self);
        if !self.notes.is_empty() {
            let _ = writeln!(s, "\nWarnings (behaviour the bench did not expect):");
            for n in self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        if !self.errors.is_empty() {
            let _ = writeln!(s, "\nFailed scenarios:");
            for e in self.errors {
                let first = e.lines().next().unwrap_or("");
                let _ = writeln!(s, "- {first}");
            }
        }
        s
    }

    /// The title, the command, the machine and where the towns were.
    fn preamble(&self, s: &mut String) {
        let quick = if self.o.quick {
            " (quick smoke run)"
        } else {
            ""
        };
        let _ = writeln!(s, "### `gt daemon` benchmark{quick}\n");
        let _ = writeln!(s, "Command: `{}`\n", self.command);
        for line in self.machine {
            let _ = writeln!(s, "{line}");
        }
        let mut places: Vec<String> = Vec::new();
        for r in self.results {
            let place = format!("`{}` ({})", r.dir.display(), r.fs);
            if !places.contains(&place) {
                places.push(place);
            }
        }
        let _ = writeln!(s, "- towns under: {}\n", places.join(", "));
    }

    /// A cell of the baseline (or compared with it): said to be skipped
    /// when it did not run for that reason.
    fn baseline_cell(&self, c: String) -> String {
        match self.baseline_missing {
            Some(_) if c == "—" && self.o.skip_baseline => "skipped".to_string(),
            Some(_) if c == "—" => "**SKIPPED**: no inotify-tools/jq".to_string(),
            _ => c,
        }
    }

    /// The main table: one column per `gt` and directory.
    fn main_rows(&self) -> Vec<Row> {
        let mut rows = Rows::new(self.results);
        burst::rows(&mut rows, self);
        latency::rows(&mut rows, self);
        backlog::rows(&mut rows, self.o);
        idle::rows(&mut rows, self.o);
        rows.done()
    }

    /// How the main table is measured, then what was seen on each column.
    fn main_notes(&self, s: &mut String) {
        let _ = writeln!(s, "\nHow it is measured:");
        let _ = writeln!(s, "- Every scenario gets a fresh town and its own `gt --town T daemon run --dry-run` (config `{}`), stopped with SIGTERM afterwards; requests are valid `shutdown` requests from `mayor`, published as agents do (write `inbox/.NAME.tmp`, rename to `inbox/NAME.json`), and every run is checked afterwards, request by request: filed in `processed/` with a sidecar saying `processed`, from `{}`, action `{}` (and, for gt, the daemon's PID); nothing else in `processed/`, nothing left in `inbox/`, `processing/` or `failed/`. A scenario that fails the check fails the run.", crate::town::CONFIG, crate::town::FROM, crate::town::ACTION);
        let _ = writeln!(s, "- Before each timer starts, the towns' filesystem is flushed (`syncfs`) until a flush finds nothing to write, then left alone for {} ms, so that what earlier scenarios left to write (removing a town, publishing a backlog) is not charged to the next measurement.", self.o.settle.as_millis());
        burst::how(s);
        latency::how(s);
        backlog::how(s);
        idle::how(s);
        let _ = writeln!(
            s,
            "- Ratios are what count; absolute times move with the machine."
        );
        for r in self.results {
            burst::seen(s, r, self.several_gts());
            backlog::seen(s, r);
        }
        if let Some(why) = self.baseline_missing {
            let _ = writeln!(s, "- {why}");
        }
    }
}

/// One line of a table.
struct Row {
    scenario: String,
    measure: String,
    cells: Vec<String>,
    target: String,
}

/// The rows of a table whose columns are `cols`: a row's cells are one
/// function of each column.
struct Rows<'a, C> {
    cols: &'a [C],
    rows: Vec<Row>,
}

impl<'a, C> Rows<'a, C> {
    fn new(cols: &'a [C]) -> Self {
        Rows {
            cols,
            rows: Vec::new(),
        }
    }

    /// A row; `scenario` is empty but on the first row of a group.
    fn add(&mut self, scenario: &str, measure: &str, f: impl Fn(&C) -> String, target: &str) {
        self.rows.push(Row {
            scenario: scenario.into(),
            measure: measure.into(),
            cells: self.cols.iter().map(f).collect(),
            target: target.into(),
        });
    }

    fn done(self) -> Vec<Row> {
        self.rows
    }
}

/// A cell of one outcome: "—" when it did not run, "FAILED", or `f` of it.
fn cell<T>(o: &Outcome<T>, f: impl Fn(&T) -> String) -> String {
    match o {
        None => "—".into(),
        Some(Err(_)) => "FAILED".into(),
        Some(Ok(v)) => f(v),
    }
}

/// [`cell`] of two outcomes (a ratio of them, say).
fn cell2<A, B>(a: &Outcome<A>, b: &Outcome<B>, f: impl Fn(&A, &B) -> String) -> String {
    match (a, b) {
        (Some(Ok(a)), Some(Ok(b))) => f(a, b),
        (Some(Err(_)), _) | (_, Some(Err(_))) => "FAILED".into(),
        _ => "—".into(),
    }
}

/// A column's heading: the directory, and the `gt` when there are several.
fn heading(r: &DirResults, several_gts: bool) -> String {
    if several_gts {
        format!("{} ({}), {}", r.dir.display(), r.fs, r.gt)
    } else {
        format!("{} ({})", r.dir.display(), r.fs)
    }
}

/// Rows of scenarios that did not run (`--only`) are left out: those whose
/// every cell is "—" (or "— / — …"). A group's title moves down to its
/// first row that stays.
fn keep(rows: Vec<Row>) -> Vec<Row> {
    let mut kept: Vec<Row> = Vec::new();
    let mut title: Option<String> = None;
    for mut r in rows {
        if r.cells
            .iter()
            .all(|c| c.split(" / ").all(|part| part == "—"))
        {
            if !r.scenario.is_empty() {
                title = Some(r.scenario);
            }
            continue;
        }
        if r.scenario.is_empty() {
            if let Some(t) = title.take() {
                r.scenario = t;
            }
        } else {
            title = None;
        }
        kept.push(r);
    }
    kept
}

/// A markdown table: Scenario, Measure, one column per heading, Target.
fn table(s: &mut String, headings: &[String], rows: &[Row]) {
    let _ = write!(s, "| Scenario | Measure |");
    for h in headings {
        let _ = write!(s, " {h} |");
    }
    let _ = writeln!(s, " Target |");
    let _ = write!(s, "|---|---|");
    for _ in headings {
        let _ = write!(s, "--:|");
    }
    let _ = writeln!(s, "---|");
    for r in rows {
        let _ = write!(s, "| {} | {} |", r.scenario, r.measure);
        for c in &r.cells {
            let _ = write!(s, " {c} |");
        }
        let _ = writeln!(s, " {} |", r.target);
    }
}
