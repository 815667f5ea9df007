//! Command-line flags. The defaults of a full run and of `--quick` live in
//! one table each ([`FULL`], [`QUICK`]); the help text is written from those
//! tables, so it cannot drift from what a run does.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// The counts a run uses unless a flag overrides them.
pub struct Preset {
    pub burst: usize,
    pub repeat: usize,
    pub latency: usize,
    pub backlogs: &'static [usize],
    pub idle_secs: u64,
    pub baseline_burst: usize,
    /// What the concurrent writer of the durability scenario writes.
    pub writer_mib: u64,
    /// Latency samples of the durability scenario, per phase.
    pub durable_samples: usize,
    /// Agents cycling at once in the storm scenario.
    pub storms: &'static [usize],
    /// Requests of the syscall count (under strace).
    pub syscall_requests: usize,
}

pub const FULL: Preset = Preset {
    burst: 20_000,
    repeat: 3,
    latency: 2_000,
    backlogs: &[10_000, 20_000, 50_000, 100_000],
    idle_secs: 30,
    baseline_burst: 500,
    writer_mib: 2048,
    durable_samples: 200,
    storms: &[10, 50],
    syscall_requests: 5_000,
};

pub const QUICK: Preset = Preset {
    burst: 2_000,
    repeat: 1,
    latency: 200,
    backlogs: &[1_000, 2_000, 5_000, 10_000],
    idle_secs: 3,
    baseline_burst: 100,
    writer_mib: 256,
    durable_samples: 50,
    storms: &[4, 10],
    syscall_requests: 1_000,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Limit,
    Burst,
    Held,
    Latency,
    Backlog,
    Idle,
    Baseline,
    Durability,
    Storm,
    Syscalls,
}

fn list(sizes: &[usize]) -> String {
    sizes
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn quick_help() -> String {
    let q = QUICK;
    format!(
        "Smoke run: burst {} ({} run), latency {} samples (the baseline's too), backlogs {}, \
         idle {} s, baseline burst {}, writer {} MiB, durability samples {}, storms of {}, \
         syscall count on {}; flags given as well override these",
        q.burst,
        q.repeat,
        q.latency,
        list(q.backlogs),
        q.idle_secs,
        q.baseline_burst,
        q.writer_mib,
        q.durable_samples,
        list(q.storms),
        q.syscall_requests
    )
}

/// "WHAT (default F; --quick Q)".
fn preset_help(what: &str, pick: impl Fn(&Preset) -> String) -> String {
    format!("{what} (default {}; --quick {})", pick(&FULL), pick(&QUICK))
}

/// A count: positive, `_` allowed as a digit separator (`20_000`).
fn count(s: &str) -> Result<usize, String> {
    count_u64(s).and_then(|n| usize::try_from(n).map_err(|e| e.to_string()))
}

fn count_u64(s: &str) -> Result<u64, String> {
    match s.replace('_', "").parse::<u64>() {
        Ok(0) => Err("must be positive".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "daemon",
    bin_name = "cargo bench --bench daemon --",
    about = "Benchmarks the real `gt daemon run --dry-run` (the `gt` cargo builds with this \
             bench, or the ones --gt names) against an inotifywait + jq baseline and the \
             filesystem's limit, its durability beside a large concurrent writer, and (with \
             real tmux) a storm of agents cycling at once; prints markdown tables. Exits \
             non-zero when any scenario fails, including when its requests are not all filed \
             as expected.",
    disable_version_flag = true
)]
pub struct Args {
    #[arg(long, help = quick_help())]
    pub quick: bool,

    /// The `gt` to measure, as [LABEL=]PATH (repeatable: every scenario runs for each, and
    /// each gets a column); `built` as PATH is the one cargo built with this bench, the
    /// default. The same bench code can thus measure an older commit's binary.
    #[arg(long = "gt", value_name = "[LABEL=]PATH")]
    pub gts: Vec<String>,

    /// Make towns under DIR (repeatable); default: the temp dir and /dev/shm when present
    #[arg(long = "dir", value_name = "DIR")]
    pub dirs: Vec<PathBuf>,

    /// Do not add /dev/shm to the default directories
    #[arg(long)]
    pub no_shm: bool,

    #[arg(long, value_name = "N", value_parser = count,
          help = preset_help("Burst size; the limit loop uses it too", |p| p.burst.to_string()))]
    pub burst: Option<usize>,

    #[arg(long, value_name = "N", value_parser = count,
          help = preset_help("Burst and limit runs, alternating; the best counts", |p| p.repeat.to_string()))]
    pub repeat: Option<usize>,

    #[arg(long, value_name = "N", value_parser = count,
          help = preset_help("Latency samples, for gt and the baseline alike", |p| p.latency.to_string()))]
    pub latency: Option<usize>,

    /// Pause between latency samples, in ms
    #[arg(long, value_name = "MS", default_value_t = 2)]
    pub gap_ms: u64,

    #[arg(long, value_name = "N,N,...", value_delimiter = ',', value_parser = count,
          help = preset_help("Backlog sizes", |p| list(p.backlogs)))]
    pub backlogs: Option<Vec<usize>>,

    #[arg(long, value_name = "SECS",
          help = preset_help("Idle scenario length, 0 to skip it", |p| p.idle_secs.to_string()))]
    pub idle_secs: Option<u64>,

    #[arg(long, value_name = "N", value_parser = count,
          help = preset_help(
              "Burst size for the inotifywait baseline (tens of requests a second); gt runs a burst of this size too, for a like-for-like ratio",
              |p| p.baseline_burst.to_string()))]
    pub baseline_burst: Option<usize>,

    /// Latency samples for the baseline (default: the same as --latency; the table says when they differ)
    #[arg(long, value_name = "N", value_parser = count)]
    pub baseline_latency: Option<usize>,

    #[arg(long, value_name = "MiB", value_parser = count_u64,
          help = preset_help(
              "Durability scenario: what the concurrent writer writes (without fsync) to a file \
               beside the town; scaled down, and said so, when the filesystem lacks room",
              |p| p.writer_mib.to_string()))]
    pub writer_mib: Option<u64>,

    #[arg(long, value_name = "N", value_parser = count,
          help = preset_help(
              "Durability scenario: latency samples without and with the writer",
              |p| p.durable_samples.to_string()))]
    pub durable_samples: Option<usize>,

    #[arg(long, value_name = "N,N,...", value_delimiter = ',', value_parser = count,
          help = preset_help(
              "Storm scenario: numbers of agents cycling at once (each with the default pool, \
               and with max_parallel = N when N is larger)",
              |p| list(p.storms)))]
    pub storm: Option<Vec<usize>>,

    #[arg(long, value_name = "N", value_parser = count,
          help = preset_help(
              "Syscall count: requests the daemon and the limit loop each handle under strace -c",
              |p| p.syscall_requests.to_string()))]
    pub syscall_requests: Option<usize>,

    /// Internal: run the limit loop alone on the town whose daemon directory is DIR
    #[arg(long, hide = true, value_name = "DIR")]
    pub internal_limit: Option<PathBuf>,

    /// Internal: run as the durability scenario's writer process, writing PATH
    #[arg(long, hide = true, value_name = "PATH")]
    pub internal_writer: Option<PathBuf>,

    /// Before each timed part: flush the filesystem until a flush finds nothing to write, then pause this long
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub settle_ms: u64,

    /// Do not run the inotifywait baseline
    #[arg(long)]
    pub skip_baseline: bool,

    /// Run only these scenarios
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub only: Vec<Scenario>,

    /// Passed by `cargo bench` to every bench target; ignored
    #[arg(long, hide = true)]
    pub bench: bool,
}

/// The resolved options a run uses.
pub struct Opts {
    pub quick: bool,
    pub dirs: Vec<PathBuf>,
    pub no_shm: bool,
    pub idle_secs: u64,
    pub burst: usize,
    pub latency: usize,
    pub gap: Duration,
    pub settle: Duration,
    pub backlogs: Vec<usize>,
    pub baseline_burst: usize,
    pub baseline_latency: usize,
    pub skip_baseline: bool,
    pub only: Vec<Scenario>,
    pub repeat: usize,
    pub gts: Vec<String>,
    pub writer_bytes: u64,
    pub durable_samples: usize,
    pub storms: Vec<usize>,
    pub syscall_requests: usize,
}

impl Opts {
    pub fn wants(&self, scenario: Scenario) -> bool {
        self.only.is_empty() || self.only.contains(&scenario)
    }
}

impl From<Args> for Opts {
    fn from(a: Args) -> Opts {
        let p = if a.quick { &QUICK } else { &FULL };
        let latency = a.latency.unwrap_or(p.latency);
        Opts {
            quick: a.quick,
            dirs: a.dirs,
            no_shm: a.no_shm,
            idle_secs: a.idle_secs.unwrap_or(p.idle_secs),
            burst: a.burst.unwrap_or(p.burst),
            latency,
            gap: Duration::from_millis(a.gap_ms),
            settle: Duration::from_millis(a.settle_ms),
            backlogs: a.backlogs.unwrap_or_else(|| p.backlogs.to_vec()),
            baseline_burst: a.baseline_burst.unwrap_or(p.baseline_burst),
            baseline_latency: a.baseline_latency.unwrap_or(latency),
            skip_baseline: a.skip_baseline,
            only: a.only,
            repeat: a.repeat.unwrap_or(p.repeat),
            gts: a.gts,
            writer_bytes: a.writer_mib.unwrap_or(p.writer_mib) << 20,
            durable_samples: a.durable_samples.unwrap_or(p.durable_samples),
            storms: a.storm.unwrap_or_else(|| p.storms.to_vec()),
            syscall_requests: a.syscall_requests.unwrap_or(p.syscall_requests),
        }
    }
}
