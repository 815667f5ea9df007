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

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use color_eyre::eyre::{Result, WrapErr};

use args::{Args, Opts, Scenario};

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

fn attempt<T>(what: &str, errors: &mut Vec<String>, f: impl FnOnce() -> Result<T>) -> Outcome<T> {
    progress(what);
    match f() {
        Ok(v) => Some(Ok(v)),
        Err(e) => {
            let msg = format!("{what}: FAILED: {e:#}");
            eprintln!("bench: {msg}");
            errors.push(msg);
            Some(Err(format!("{e}")))
        }
    }
}

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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = Args::parse();
    if let Some(path) = &parsed.internal_writer {
        let mib = parsed
            .writer_mib
            .ok_or_else(|| color_eyre::eyre::eyre!("--internal-writer needs --writer-mib"))?;
        writer::child_main(path, mib << 20)?;
        return Ok(true);
    }
    let o = Opts::from(parsed);
    guard::install_signal_cleanup()?;
    // A panic unwinds through the Drop guards; make sure nothing survives.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        guard::cleanup_all();
    }));

    let gts = binary::from_specs(&o.gts)?;
    let dirs = town_dirs(&o)?;
    let machine = procfs::machine_info(&gts);
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

    let settle = settle::Settle::new(o.settle);
    let mut errors = Vec::new();
    let mut notes = Vec::new();
    let mut results = Vec::new();
    for (gt, (k, dir)) in gts
        .iter()
        .flat_map(|gt| dirs.iter().enumerate().map(move |d| (gt, d)))
    {
        let fs = procfs::fs_type(dir);
        let at = if gts.len() > 1 {
            format!("{} ({fs}), {}", dir.display(), gt.label)
        } else {
            format!("{} ({fs})", dir.display())
        };
        let gt_label = &gt.label;
        let gt = &gt.path;
        let mut r = DirResults {
            gt: gt_label.clone(),
            dir: dir.clone(),
            fs: fs.clone(),
            limit: None,
            limit_durable: None,
            burst: None,
            latency: None,
            backlogs: Vec::new(),
            idle: None,
            baseline_burst: None,
            burst_at_baseline_size: None,
            baseline_latency: None,
            durability: None,
            storms: Vec::new(),
        };
        let mut n = Vec::new();
        // Limit and burst alternate, best of `repeat` each, so that both
        // see the same conditions and another load's burst spoils neither.
        let (mut limits, mut durables, mut bursts) = (Vec::new(), Vec::new(), Vec::new());
        for i in 1..=o.repeat {
            let run = if o.repeat > 1 {
                format!(" (run {i} of {})", o.repeat)
            } else {
                String::new()
            };
            if o.wants(Scenario::Limit) {
                limits.push(attempt(
                    &format!("physical limit, {} requests, on {at}{run}", o.burst),
                    &mut errors,
                    || limit::run(dir, o.burst, false, &settle),
                ));
                durables.push(attempt(
                    &format!("physical limit with batched syncfs on {at}{run}"),
                    &mut errors,
                    || limit::run(dir, o.burst, true, &settle),
                ));
            }
            if o.wants(Scenario::Burst) {
                bursts.push(attempt(
                    &format!("burst of {} on {at}{run}", o.burst),
                    &mut errors,
                    || scenarios::daemon_burst(gt, dir, o.burst, &settle, &mut n),
                ));
            }
        }
        r.limit = best(limits, limit::Limit::rate);
        r.limit_durable = best(durables, limit::Limit::rate);
        r.burst = best(bursts, scenarios::Burst::rate);
        if o.wants(Scenario::Latency) {
            r.latency = attempt(
                &format!("latency, {} samples, on {at}", o.latency),
                &mut errors,
                || scenarios::daemon_latency(gt, dir, o.latency, o.gap, &settle, &mut n),
            );
        }
        for &size in &o.backlogs {
            let b = if o.wants(Scenario::Backlog) {
                attempt(
                    &format!("backlog of {size} at start on {at}"),
                    &mut errors,
                    || scenarios::daemon_backlog(gt, dir, size, &settle, &mut n),
                )
            } else {
                None
            };
            r.backlogs.push((size, b));
        }
        if k == 0 && o.idle_secs > 0 && o.wants(Scenario::Idle) {
            r.idle = attempt(
                &format!("idle for {} s on {at}", o.idle_secs),
                &mut errors,
                || scenarios::daemon_idle(gt, dir, o.idle_secs, &settle, &mut n),
            );
        }
        if baseline_missing.is_none() && o.wants(Scenario::Baseline) {
            // The baseline is too slow for the big burst; gt runs a burst of
            // the baseline's size next to it, so their ratio is like for like.
            r.burst_at_baseline_size = attempt(
                &format!(
                    "burst of {} (the baseline's size) on {at}",
                    o.baseline_burst
                ),
                &mut errors,
                || scenarios::daemon_burst(gt, dir, o.baseline_burst, &settle, &mut n),
            );
            r.baseline_burst = attempt(
                &format!("baseline burst of {} on {at}", o.baseline_burst),
                &mut errors,
                || scenarios::baseline_burst(dir, o.baseline_burst, &settle),
            );
            r.baseline_latency = attempt(
                &format!("baseline latency, {} samples, on {at}", o.baseline_latency),
                &mut errors,
                || scenarios::baseline_latency(dir, o.baseline_latency, o.gap, &settle),
            );
        }
        if o.wants(Scenario::Durability) && disk_backed(&fs) {
            r.durability = attempt(
                &format!(
                    "durability beside a writer of {} MiB on {at}",
                    o.writer_bytes >> 20
                ),
                &mut errors,
                || durability::run(gt, dir, o.writer_bytes, o.durable_samples, &settle, &mut n),
            );
        }
        if k == 0 && o.wants(Scenario::Storm) && storm_missing.is_none() {
            for case in storm::cases(&o.storms) {
                let pool = case.pool.map_or("max_parallel not set".into(), |p| {
                    format!("max_parallel {p}")
                });
                let outcome = attempt(
                    &format!("storm of {} cycles, {pool}, with {gt_label}", case.n),
                    &mut errors,
                    || storm::run(gt, dir, case, &settle, &mut n),
                );
                r.storms.push((case, outcome));
            }
        }
        n.extend(settle.take_notes());
        notes.extend(
            n.into_iter()
                .map(|w| format!("{} ({fs}): {w}", dir.display())),
        );
        results.push(r);
    }

    if o.only.contains(&Scenario::Durability) && results.iter().all(|r| r.durability.is_none()) {
        notes.push(
            "the durability scenario runs only on a disk-backed filesystem, and none of the \
             towns' directories is on one (give one with --dir)"
                .into(),
        );
    }
    let command = std::iter::once("cargo bench --bench daemon --".to_string())
        .chain(args.iter().filter(|a| *a != "--bench").cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let command = command.trim_end_matches(" --").to_string();
    print!(
        "{}",
        report::render(
            &o,
            &machine,
            &command,
            &results,
            baseline_missing.as_deref(),
            storm_missing.as_deref(),
            &notes,
            &errors
        )
    );
    // Said again at the end, where it is seen after a long run.
    if let Some(why) = baseline_missing.filter(|_| !o.skip_baseline) {
        eprintln!("bench: {why}");
    }
    if let Some(why) = storm_missing {
        eprintln!("bench: {why}");
    }
    if !errors.is_empty() {
        eprintln!("bench: {} scenario(s) FAILED:", errors.len());
        for e in &errors {
            eprintln!("bench:   {}", e.lines().next().unwrap_or(""));
        }
    }
    Ok(errors.is_empty())
}
