//! `gt daemon` benchmark: burst throughput, latency, backlog at
//! start, idle cost, against an inotifywait + jq baseline and the physical
//! limit of the filesystem work; durability beside a large concurrent
//! writer; a storm of agents cycling at once with real tmux; all in one
//! run. Prints markdown tables (for BENCHMARKS.md) and the machine it ran
//! on.
//!
//! Run: `just bench`, or `cargo bench --bench daemon` (`-- --quick` for a
//! smoke run; `-- --help` for the flags). It starts the real
//! `gt daemon run` that cargo built for it, or the binaries `--gt` names
//! (an older commit's, say), each in its own column.

mod args;
mod baseline;
mod binary;
mod daemon;
mod durability;
mod guard;
mod limit;
mod outcome;
mod procfs;
mod report;
mod scenarios;
mod settle;
mod storm;
mod syscalls;
mod town;
mod watch;
mod writer;

// The tests' harness: how a command runs with a clean environment and a
// deadline, and the private tmux server with everything its panes started
// killed at the end (tests/support/mod.rs). The bench makes those the same
// way, with the same files.
#[allow(dead_code, unused_imports)]
#[path = "../tests/support/command.rs"]
mod command;
#[allow(dead_code, unused_imports)]
#[path = "../tests/support/proc.rs"]
mod proc;
#[allow(dead_code, unused_imports)]
#[path = "../tests/support/tmux.rs"]
mod tmux;
// GET on loopback, for the daemon's metrics (the storm counts tmux clients).
#[allow(dead_code, unused_imports)]
#[path = "../tests/support/http.rs"]
mod http;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use color_eyre::eyre::{Result, WrapErr};

use args::{Args, Opts, Scenario};
use binary::GtBin;

/// Where towns are made: `--dir`s, else the temp dir and /dev/shm.
fn town_dirs(o: &Opts) -> Result<Vec<PathBuf>> {
    let mut dirs = o.dirs.clone();
    if dirs.is_empty() {
        dirs.push(std::env::temp_dir());
        let shm = Path::new("/dev/shm");
        if !o.no_shm && shm.is_dir() && tempfile::tempdir_in(shm).is_ok() {
            dirs.push(shm.to_path_buf());
        }
    }
    let mut seen = Vec::new();
    for d in dirs {
        let c = d
            .canonicalize()
            .wrap_err_with(|| format!("--dir {}", d.display()))?;
        if !seen.contains(&c) {
            seen.push(c);
        }
    }
    Ok(seen)
}

pub fn progress(msg: &str) {
    eprintln!("bench {}: {msg}", chrono::Local::now().format("%H:%M:%S"));
}

/// A scenario's outcome: not run, failed (why), or its result.
pub type Outcome<T> = Option<Result<T, String>>;

/// The run with the highest `key`; else the first failure; else not run.
fn best<T>(runs: Vec<Outcome<T>>, key: impl Fn(&T) -> f64) -> Outcome<T> {
    let mut ok: Vec<T> = Vec::new();
    let mut failed = None;
    for run in runs.into_iter().flatten() {
        match run {
            Ok(v) => ok.push(v),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    ok.into_iter()
        .max_by(|a, b| key(a).total_cmp(&key(b)))
        .map(Ok)
        .or(failed.map(Err))
}

/// The results of one `gt` on one directory's filesystem.
pub struct DirResults {
    /// Which `gt` ran, by its label.
    pub gt: String,
    pub dir: PathBuf,
    pub fs: String,
    pub limit: Outcome<limit::Limit>,
    pub limit_durable: Outcome<limit::Limit>,
    /// Each run's held burst, with the limit loop run just before it.
    pub held: Vec<Outcome<Held>>,
    pub burst: Outcome<scenarios::Burst>,
    pub latency: Outcome<scenarios::Latency>,
    pub backlogs: Vec<(usize, Outcome<scenarios::Backlog>)>,
    pub idle: Outcome<scenarios::Idle>,
    pub baseline_burst: Outcome<scenarios::Burst>,
    /// gt on a burst of the baseline's size, run right before it.
    pub burst_at_baseline_size: Outcome<scenarios::Burst>,
    pub baseline_latency: Outcome<scenarios::Latency>,
    /// Run on disk-backed filesystems only (tmpfs has no disk to wait for).
    pub durability: Outcome<durability::Durability>,
    /// Run on the first directory only (the filesystem hardly matters).
    pub storms: Vec<(storm::Case, Outcome<storm::StormResult>)>,
    /// Run on the first directory only.
    pub syscalls: Outcome<syscalls::Syscalls>,
}

impl DirResults {
    /// Nothing run yet.
    fn new(gt: &str, dir: &Path, fs: &str) -> DirResults {
        DirResults {
            gt: gt.to_string(),
            dir: dir.to_path_buf(),
            fs: fs.to_string(),
            limit: None,
            limit_durable: None,
            held: Vec::new(),
            burst: None,
            latency: None,
            backlogs: Vec::new(),
            idle: None,
            baseline_burst: None,
            burst_at_baseline_size: None,
            baseline_latency: None,
            durability: None,
            storms: Vec::new(),
            syscalls: None,
        }
    }
}

/// A held burst and the limit loop's rate in the same run, just before.
pub struct Held {
    pub burst: scenarios::Burst,
    pub limit_rate: f64,
}

impl Held {
    /// The held burst's rate over the loop's.
    pub fn ratio(&self) -> f64 {
        self.burst.rate() / self.limit_rate
    }
}

/// What the whole run collects beside the results: the scenarios that
/// failed, and what the bench saw and did not expect.
#[derive(Default)]
struct Log {
    errors: Vec<String>,
    notes: Vec<String>,
}

impl Log {
    /// Runs one scenario, saying so; a failure is logged and the run goes on.
    fn attempt<T>(&mut self, what: &str, f: impl FnOnce() -> Result<T>) -> Outcome<T> {
        progress(what);
        match f() {
            Ok(v) => Some(Ok(v)),
            Err(e) => {
                let msg = format!("{what}: FAILED: {e:#}");
                eprintln!("bench: {msg}");
                self.errors.push(msg);
                Some(Err(format!("{e}")))
            }
        }
    }
}

/// What the run measures with and where, and what it cannot run here.
struct Setup {
    gts: Vec<GtBin>,
    dirs: Vec<PathBuf>,
    machine: Vec<String>,
    /// Why the baseline does not run, when it does not.
    baseline_missing: Option<String>,
    /// Why the storm does not run, when it does not.
    storm_missing: Option<String>,
    /// Why the syscall count does not run, when it does not.
    syscalls_missing: Option<String>,
}

impl Setup {
    fn new(o: &Opts) -> Result<Setup> {
        let gts = binary::from_specs(&o.gts)?;
        let dirs = town_dirs(o)?;
        let machine = procfs::machine_info(&gts, "; `--dry-run` except in the storm");
        let baseline_missing = if o.skip_baseline {
            Some("baseline skipped (--skip-baseline)".to_string())
        } else {
            baseline::missing_tools()
        };
        if let Some(why) = &baseline_missing {
            eprintln!("bench: {why}");
        }
        let storm_missing = storm::missing().filter(|_| o.wants(Scenario::Storm));
        if let Some(why) = &storm_missing {
            eprintln!("bench: {why}");
        }
        let syscalls_missing = syscalls::missing().filter(|_| o.wants(Scenario::Syscalls));
        if let Some(why) = &syscalls_missing {
            eprintln!("bench: {why}");
        }
        Ok(Setup {
            gts,
            dirs,
            machine,
            baseline_missing,
            storm_missing,
            syscalls_missing,
        })
    }
}

/// One `gt` on one directory: every scenario that runs there.
struct Place<'a> {
    o: &'a Opts,
    setup: &'a Setup,
    gt: &'a GtBin,
    dir: &'a Path,
    fs: String,
    /// Idle and storm run on the first directory only.
    first: bool,
    /// How progress lines name it.
    at: String,
    settle: &'a settle::Settle,
}

impl Place<'_> {
    fn measure(&self, log: &mut Log) -> DirResults {
        let (o, gt, dir) = (self.o, &self.gt.path, self.dir);
        let mut r = DirResults::new(&self.gt.label, dir, &self.fs);
        let mut n = Vec::new();
        self.limit_and_burst(&mut r, log, &mut n);
        if o.wants(Scenario::Latency) {
            r.latency = log.attempt(
                &format!("latency, {} samples, on {}", o.latency, self.at),
                || scenarios::daemon_latency(gt, dir, o.latency, o.gap, self.settle, &mut n),
            );
        }
        for &size in &o.backlogs {
            let b = o.wants(Scenario::Backlog).then(|| {
                log.attempt(
                    &format!("backlog of {size} at start on {}", self.at),
                    || scenarios::daemon_backlog(gt, dir, size, self.settle, &mut n),
                )
            });
            r.backlogs.push((size, b.flatten()));
        }
        if self.first && o.idle_secs > 0 && o.wants(Scenario::Idle) {
            r.idle = log.attempt(
                &format!("idle for {} s on {}", o.idle_secs, self.at),
                || scenarios::daemon_idle(gt, dir, o.idle_secs, self.settle, &mut n),
            );
        }
        if self.setup.baseline_missing.is_none() && o.wants(Scenario::Baseline) {
            self.baseline(&mut r, log, &mut n);
        }
        if o.wants(Scenario::Durability) && disk_backed(&self.fs) {
            r.durability = log.attempt(
                &format!(
                    "durability beside a writer of {} MiB on {}",
                    o.writer_bytes >> 20,
                    self.at
                ),
                || {
                    durability::run(
                        gt,
                        dir,
                        o.writer_bytes,
                        o.durable_samples,
                        self.settle,
                        &mut n,
                    )
                },
            );
        }
        if self.first && o.wants(Scenario::Storm) && self.setup.storm_missing.is_none() {
            self.storms(&mut r, log, &mut n);
        }
        if self.first && o.wants(Scenario::Syscalls) && self.setup.syscalls_missing.is_none() {
            r.syscalls = log.attempt(
                &format!(
                    "syscalls per request (strace -c), {} requests, on {}",
                    o.syscall_requests, self.at
                ),
                || syscalls::run(gt, dir, o.syscall_requests, self.settle),
            );
        }
        n.extend(self.settle.take_notes());
        log.notes.extend(
            n.into_iter()
                .map(|w| format!("{} ({}): {w}", dir.display(), self.fs)),
        );
        r
    }

    /// Limit and burst alternate, best of `repeat` each, so that both see
    /// the same conditions and another load's burst spoils neither.
    fn limit_and_burst(&self, r: &mut DirResults, log: &mut Log, n: &mut Vec<String>) {
        let (o, at) = (self.o, &self.at);
        let (mut limits, mut durables, mut bursts) = (Vec::new(), Vec::new(), Vec::new());
        for i in 1..=o.repeat {
            let run = if o.repeat > 1 {
                format!(" (run {i} of {})", o.repeat)
            } else {
                String::new()
            };
            if o.wants(Scenario::Limit) || o.wants(Scenario::Held) {
                limits.push(log.attempt(
                    &format!("physical limit, {} requests, on {at}{run}", o.burst),
                    || limit::run(self.dir, o.burst, false, self.settle),
                ));
            }
            if o.wants(Scenario::Held) {
                let limit_rate = match limits.last() {
                    Some(Some(Ok(l))) => Some(l.rate()),
                    _ => None,
                };
                let held = log.attempt(&format!("held burst of {} on {at}{run}", o.burst), || {
                    let burst = scenarios::daemon_held_burst(
                        &self.gt.path,
                        self.dir,
                        o.burst,
                        self.settle,
                        n,
                    )?;
                    let limit_rate = limit_rate.ok_or_else(|| {
                        color_eyre::eyre::eyre!("the limit loop before it failed")
                    })?;
                    Ok(Held { burst, limit_rate })
                });
                r.held.push(held);
            }
            if o.wants(Scenario::Limit) {
                durables.push(log.attempt(
                    &format!("physical limit with batched syncfs on {at}{run}"),
                    || limit::run(self.dir, o.burst, true, self.settle),
                ));
            }
            if o.wants(Scenario::Burst) {
                bursts.push(
                    log.attempt(&format!("burst of {} on {at}{run}", o.burst), || {
                        scenarios::daemon_burst(&self.gt.path, self.dir, o.burst, self.settle, n)
                    }),
                );
            }
        }
        r.limit = best(limits, limit::Limit::rate);
        r.limit_durable = best(durables, limit::Limit::rate);
        r.burst = best(bursts, scenarios::Burst::rate);
    }

    /// The baseline is too slow for the big burst; gt runs a burst of the
    /// baseline's size next to it, so their ratio is like for like.
    fn baseline(&self, r: &mut DirResults, log: &mut Log, n: &mut Vec<String>) {
        let (o, at, dir) = (self.o, &self.at, self.dir);
        r.burst_at_baseline_size = log.attempt(
            &format!(
                "burst of {} (the baseline's size) on {at}",
                o.baseline_burst
            ),
            || scenarios::daemon_burst(&self.gt.path, dir, o.baseline_burst, self.settle, n),
        );
        r.baseline_burst = log.attempt(
            &format!("baseline burst of {} on {at}", o.baseline_burst),
            || scenarios::baseline_burst(dir, o.baseline_burst, self.settle),
        );
        r.baseline_latency = log.attempt(
            &format!("baseline latency, {} samples, on {at}", o.baseline_latency),
            || scenarios::baseline_latency(dir, o.baseline_latency, o.gap, self.settle),
        );
    }

    fn storms(&self, r: &mut DirResults, log: &mut Log, n: &mut Vec<String>) {
        for case in storm::cases(&self.o.storms) {
            let pool = case.pool.map_or("max_parallel not set".into(), |p| {
                format!("max_parallel {p}")
            });
            let outcome = log.attempt(
                &format!("storm of {} cycles, {pool}, with {}", case.n, self.gt.label),
                || storm::run(&self.gt.path, self.dir, case, self.settle, n),
            );
            r.storms.push((case, outcome));
        }
    }
}

/// Whether the filesystem has a disk under it for a flush to wait for.
fn disk_backed(fs: &str) -> bool {
    !matches!(fs, "tmpfs" | "ramfs")
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            guard::cleanup_all();
            eprintln!("bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ok(false) when some scenario failed (the table is still printed).
fn run() -> Result<bool> {
    let parsed = Args::parse();
    if let Some(path) = &parsed.internal_writer {
        let mib = parsed
            .writer_mib
            .ok_or_else(|| color_eyre::eyre::eyre!("--internal-writer needs --writer-mib"))?;
        writer::child_main(path, mib << 20)?;
        return Ok(true);
    }
    if let Some(dir) = &parsed.internal_limit {
        syscalls::child_main(dir)?;
        return Ok(true);
    }
    let o = Opts::from(parsed);
    clean_up_at_any_end()?;
    let setup = Setup::new(&o)?;
    let settle = settle::Settle::new(o.settle);
    let mut log = Log::default();
    let mut results = Vec::new();
    for gt in &setup.gts {
        for (k, dir) in setup.dirs.iter().enumerate() {
            let fs = procfs::fs_type(dir);
            let at = if setup.gts.len() > 1 {
                format!("{} ({fs}), {}", dir.display(), gt.label)
            } else {
                format!("{} ({fs})", dir.display())
            };
            let place = Place {
                o: &o,
                setup: &setup,
                gt,
                dir,
                fs,
                first: k == 0,
                at,
                settle: &settle,
            };
            results.push(place.measure(&mut log));
        }
    }
    if o.only.contains(&Scenario::Durability) && results.iter().all(|r| r.durability.is_none()) {
        log.notes.push(
            "the durability scenario runs only on a disk-backed filesystem, and none of the \
             towns' directories is on one (give one with --dir)"
                .into(),
        );
    }
    let report = report::Report {
        o: &o,
        machine: &setup.machine,
        command: &command_line(),
        results: &results,
        baseline_missing: setup.baseline_missing.as_deref(),
        storm_missing: setup.storm_missing.as_deref(),
        syscalls_missing: setup.syscalls_missing.as_deref(),
        notes: &log.notes,
        errors: &log.errors,
    };
    print!("{}", report.render());
    say_again(&o, &setup, &log.errors);
    Ok(log.errors.is_empty())
}

/// Kill and remove whatever the bench started, however it ends: on a
/// signal (a thread waits for it), or a panic (which unwinds through the
/// `Drop` guards first).
fn clean_up_at_any_end() -> Result<()> {
    guard::install_signal_cleanup()?;
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        guard::cleanup_all();
    }));
    Ok(())
}

/// The command that reproduces this run.
fn command_line() -> String {
    let command = std::iter::once("cargo bench --bench daemon --".to_string())
        .chain(std::env::args().skip(1).filter(|a| *a != "--bench"))
        .collect::<Vec<_>>()
        .join(" ");
    command.trim_end_matches(" --").to_string()
}

/// What did not run or failed, said again at the end, where it is seen
/// after a long run.
fn say_again(o: &Opts, setup: &Setup, errors: &[String]) {
    if let Some(why) = setup.baseline_missing.as_ref().filter(|_| !o.skip_baseline) {
        eprintln!("bench: {why}");
    }
    if let Some(why) = &setup.storm_missing {
        eprintln!("bench: {why}");
    }
    if let Some(why) = &setup.syscalls_missing {
        eprintln!("bench: {why}");
    }
    if !errors.is_empty() {
        eprintln!("bench: {} scenario(s) FAILED:", errors.len());
        for e in errors {
            eprintln!("bench:   {}", e.lines().next().unwrap_or(""));
        }
    }
}
