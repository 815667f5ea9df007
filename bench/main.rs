//! `gt daemon` benchmark (issue 4): burst throughput, latency, backlog at
//! start, idle cost, against an inotifywait + jq baseline and the physical
//! limit of the filesystem work, all in one run. Prints one markdown table
//! (for BENCHMARKS.md) and the machine it ran on.
//!
//! Run: `just bench`, or `cargo bench --bench daemon` (`-- --quick` for a
//! smoke run; `-- --help` for the flags). It starts the real
//! `gt daemon run --dry-run` that cargo built for it.

mod baseline;
mod daemon;
mod guard;
mod limit;
mod procfs;
mod report;
mod scenarios;
mod town;
mod watch;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use color_eyre::eyre::{bail, eyre, Result, WrapErr};

const USAGE: &str = "\
usage: cargo bench --bench daemon -- [--quick] [--dir DIR]... [--no-shm] [--idle-secs N] [--burst N]
             [--latency N] [--gap-ms N] [--backlogs N,N,...] [--baseline-burst N]
             [--baseline-latency N] [--skip-baseline] [--only LIST]
             [--repeat N]

Benchmarks the real `gt daemon run --dry-run` (the `gt` binary cargo builds
with this bench) and prints a markdown table.

  --quick              smoke run: burst 2000 (once), latency 200, backlogs
                       1k/5k/10k, idle 3 s, baseline burst 100 and latency 50
  --dir DIR            make towns under DIR (repeatable); default: the temp dir
                       and /dev/shm when present
  --no-shm             do not add /dev/shm to the default directories
  --idle-secs N        idle scenario length (default 30)
  --burst N            burst size (default 20000); the limit loop uses it too
  --repeat N           burst and limit runs, alternating; the best counts
                       (default 3; --quick: 1)
  --latency N          latency samples (default 2000)
  --gap-ms N           pause between latency samples (default 2)
  --backlogs LIST      backlog sizes (default 10000,20000,50000,100000)
  --baseline-burst N   burst size for the inotifywait baseline (default 500)
  --baseline-latency N latency samples for the baseline (default 200)
  --skip-baseline      do not run the baseline
  --only LIST          run only these of limit,burst,latency,backlog,idle,baseline
";

const SCENARIOS: [&str; 6] = ["limit", "burst", "latency", "backlog", "idle", "baseline"];

pub struct Opts {
    pub quick: bool,
    pub dirs: Vec<PathBuf>,
    pub no_shm: bool,
    pub idle_secs: u64,
    pub burst: usize,
    pub latency: usize,
    pub gap: Duration,
    pub backlogs: Vec<usize>,
    pub baseline_burst: usize,
    pub baseline_latency: usize,
    pub skip_baseline: bool,
    pub only: Vec<String>,
    pub repeat: usize,
}

impl Opts {
    fn wants(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }
}

fn parse_args(args: &[String]) -> Result<Opts> {
    let quick = args.iter().any(|a| a == "--quick");
    let mut o = Opts {
        quick,
        dirs: Vec::new(),
        no_shm: false,
        idle_secs: if quick { 3 } else { 30 },
        burst: if quick { 2_000 } else { 20_000 },
        latency: if quick { 200 } else { 2_000 },
        gap: Duration::from_millis(2),
        backlogs: if quick {
            vec![1_000, 2_000, 5_000, 10_000]
        } else {
            vec![10_000, 20_000, 50_000, 100_000]
        },
        baseline_burst: if quick { 100 } else { 500 },
        baseline_latency: if quick { 50 } else { 200 },
        skip_baseline: false,
        only: Vec::new(),
        repeat: if quick { 1 } else { 3 },
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| eyre!("{name} needs a value\n\n{USAGE}"))
        };
        let number = |name: &str, v: String| -> Result<usize> {
            v.replace('_', "")
                .parse::<usize>()
                .wrap_err_with(|| format!("{name}: {v:?} is not a number"))
        };
        match arg.as_str() {
            // `cargo bench` passes `--bench` to every bench target.
            "--quick" | "--bench" => {}
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--dir" => o.dirs.push(PathBuf::from(value(arg)?)),
            "--no-shm" => o.no_shm = true,
            "--skip-baseline" => o.skip_baseline = true,
            "--idle-secs" => o.idle_secs = number(arg, value(arg)?)? as u64,
            "--repeat" => o.repeat = number(arg, value(arg)?)?,
            "--burst" => o.burst = number(arg, value(arg)?)?,
            "--latency" => o.latency = number(arg, value(arg)?)?,
            "--gap-ms" => o.gap = Duration::from_millis(number(arg, value(arg)?)? as u64),
            "--baseline-burst" => o.baseline_burst = number(arg, value(arg)?)?,
            "--baseline-latency" => o.baseline_latency = number(arg, value(arg)?)?,
            "--only" => {
                o.only = value(arg)?.split(',').map(str::to_string).collect();
                if let Some(bad) = o.only.iter().find(|s| !SCENARIOS.contains(&s.as_str())) {
                    bail!(
                        "--only: unknown scenario {bad:?}; choose from {}",
                        SCENARIOS.join(",")
                    );
                }
            }
            "--backlogs" => {
                o.backlogs = value(arg)?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| number(arg, s.to_string()))
                    .collect::<Result<_>>()?
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    if o.repeat == 0
        || o.burst == 0
        || o.latency == 0
        || o.baseline_burst == 0
        || o.baseline_latency == 0
    {
        bail!("counts must be positive");
    }
    Ok(o)
}

/// The `gt` binary cargo built for this bench (same profile, same commit).
fn find_gt() -> Result<PathBuf> {
    let gt = PathBuf::from(env!("CARGO_BIN_EXE_gt"));
    if !gt.is_file() {
        bail!(
            "{} not found: run the bench through cargo (`cargo bench --bench daemon`), which builds it",
            gt.display()
        );
    }
    Ok(gt)
}

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

pub struct DirResults {
    pub dir: PathBuf,
    pub fs: String,
    pub limit: Outcome<limit::Limit>,
    pub limit_durable: Outcome<limit::Limit>,
    pub burst: Outcome<scenarios::Burst>,
    pub latency: Outcome<scenarios::Latency>,
    pub backlogs: Vec<(usize, Outcome<scenarios::Backlog>)>,
    pub idle: Outcome<scenarios::Idle>,
    pub baseline_burst: Outcome<scenarios::Burst>,
    pub baseline_latency: Outcome<scenarios::Latency>,
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
    let o = parse_args(&args)?;
    guard::install_signal_cleanup()?;
    // A panic unwinds through the Drop guards; make sure nothing survives.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        guard::cleanup_all();
    }));

    let gt = find_gt()?;
    let dirs = town_dirs(&o)?;
    let machine = procfs::machine_info(&gt);
    let baseline_missing = if o.skip_baseline {
        Some("baseline skipped (--skip-baseline)".to_string())
    } else {
        baseline::missing_tools()
    };
    if let Some(why) = &baseline_missing {
        eprintln!("bench: {why}");
    }

    let mut errors = Vec::new();
    let mut notes = Vec::new();
    let mut results = Vec::new();
    for (k, dir) in dirs.iter().enumerate() {
        let fs = procfs::fs_type(dir);
        let at = format!("{} ({fs})", dir.display());
        let mut r = DirResults {
            dir: dir.clone(),
            fs: fs.clone(),
            limit: None,
            limit_durable: None,
            burst: None,
            latency: None,
            backlogs: Vec::new(),
            idle: None,
            baseline_burst: None,
            baseline_latency: None,
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
            if o.wants("limit") {
                limits.push(attempt(
                    &format!("physical limit, {} requests, on {at}{run}", o.burst),
                    &mut errors,
                    || limit::run(dir, o.burst, false),
                ));
                durables.push(attempt(
                    &format!("physical limit with batched syncfs on {at}{run}"),
                    &mut errors,
                    || limit::run(dir, o.burst, true),
                ));
            }
            if o.wants("burst") {
                bursts.push(attempt(
                    &format!("burst of {} on {at}{run}", o.burst),
                    &mut errors,
                    || scenarios::daemon_burst(&gt, dir, o.burst, &mut n),
                ));
            }
        }
        r.limit = best(limits, limit::Limit::rate);
        r.limit_durable = best(durables, limit::Limit::rate);
        r.burst = best(bursts, scenarios::Burst::rate);
        if o.wants("latency") {
            r.latency = attempt(
                &format!("latency, {} samples, on {at}", o.latency),
                &mut errors,
                || scenarios::daemon_latency(&gt, dir, o.latency, o.gap, &mut n),
            );
        }
        for &size in &o.backlogs {
            let b = if o.wants("backlog") {
                attempt(
                    &format!("backlog of {size} at start on {at}"),
                    &mut errors,
                    || scenarios::daemon_backlog(&gt, dir, size, &mut n),
                )
            } else {
                None
            };
            r.backlogs.push((size, b));
        }
        if k == 0 && o.idle_secs > 0 && o.wants("idle") {
            r.idle = attempt(
                &format!("idle for {} s on {at}", o.idle_secs),
                &mut errors,
                || scenarios::daemon_idle(&gt, dir, o.idle_secs, &mut n),
            );
        }
        if baseline_missing.is_none() && o.wants("baseline") {
            r.baseline_burst = attempt(
                &format!("baseline burst of {} on {at}", o.baseline_burst),
                &mut errors,
                || scenarios::baseline_burst(dir, o.baseline_burst, &mut n),
            );
            r.baseline_latency = attempt(
                &format!("baseline latency, {} samples, on {at}", o.baseline_latency),
                &mut errors,
                || scenarios::baseline_latency(dir, o.baseline_latency, o.gap, &mut n),
            );
        }
        notes.extend(
            n.into_iter()
                .map(|w| format!("{} ({fs}): {w}", dir.display())),
        );
        results.push(r);
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
            &notes,
            &errors
        )
    );
    Ok(errors.is_empty())
}
