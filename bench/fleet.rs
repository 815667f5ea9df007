//! Many towns on one host: N dry-run daemons, idle at the default 60 s
//! heartbeat, with the metrics endpoint off and then on (scraped every
//! 15 s, as Prometheus would). Prints one markdown table for
//! BENCHMARKS.md: memory (RSS, and PSS, which shares the binary's pages
//! out fairly) and CPU per 30 s, in total and per daemon.
//!
//! Run: `cargo bench --bench fleet` (`-- --quick` for a smoke run,
//! `-- --help` for the flags). It starts the real `gt daemon run --dry-run`
//! that cargo built for it; every daemon is SIGKILLed if the run fails.

#[allow(dead_code)]
mod binary;
#[allow(dead_code)]
#[path = "../tests/support/command.rs"]
mod command;
#[allow(dead_code)]
mod procfs;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use color_eyre::eyre::{bail, eyre, Result, WrapErr};
use rustix::process::{kill_process, Pid, Signal};

/// The idle budget per daemon (BENCHMARKS.md).
const RSS_BUDGET_MIB: f64 = 8.0;
const CPU_BUDGET_PER_30S: f64 = 0.05;

#[derive(Parser, Debug)]
#[command(
    bin_name = "cargo bench --bench fleet --",
    about = "N idle dry-run daemons on one host: memory and CPU, metrics off and on"
)]
struct Args {
    /// Numbers of daemons, one measurement each.
    #[arg(long, value_delimiter = ',', default_value = "1,10,50")]
    towns: Vec<usize>,
    /// How long each measurement lasts (one 60 s heartbeat in each).
    #[arg(long, default_value_t = 60)]
    window_secs: u64,
    /// How often the endpoint is scraped when on.
    #[arg(long, default_value_t = 15)]
    scrape_secs: u64,
    /// Measure this `gt` instead of the one cargo built for the bench
    /// (which has the dev-dependencies' features: build one with
    /// `cargo build --release` to measure what `cargo install` gives).
    #[arg(long)]
    gt: Option<PathBuf>,
    /// Only with the endpoint off (for a `gt` that predates it).
    #[arg(long)]
    off_only: bool,
    /// Smoke run: 1 and 5 daemons, 6 s windows, scraped every 2 s (flags
    /// given as well override these).
    #[arg(long)]
    quick: bool,
    /// Passed by `cargo bench` to every bench target; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One running daemon of the fleet; SIGKILLed on drop unless stopped.
struct Member {
    child: Child,
    pid: i32,
    town: PathBuf,
    port: Option<u16>,
    stopped: bool,
}

impl Drop for Member {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What one daemon used over the window.
struct Usage {
    rss_kib: u64,
    pss_kib: u64,
    cpu_secs: f64,
    threads: u64,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn spawn(gt: &Path, root: &Path, metrics: bool) -> Result<Member> {
    let daemon = root.join("daemon");
    fs::create_dir_all(&daemon)?;
    let port = if metrics { Some(free_port()?) } else { None };
    let mut config = serde_json::json!({"heartbeat_interval": "60s"});
    if let Some(port) = port {
        config["metrics_listen"] = format!("127.0.0.1:{port}").into();
    }
    fs::write(daemon.join("config.json"), config.to_string())?;
    let mut cmd = command::program_command(gt);
    cmd.arg("--town")
        .arg(root)
        .args(["daemon", "run", "--dry-run"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().wrap_err("cannot start gt daemon run")?;
    Ok(Member {
        pid: child.id() as i32,
        child,
        town: root.to_path_buf(),
        port,
        stopped: false,
    })
}

fn ready(member: &Member) -> bool {
    let state = gt::state::State::load(&member.town.join("daemon/state.json")).unwrap_or_default();
    state.running && state.pid == member.pid as u32 && state.heartbeat_count >= 1
}

fn pss_kib(pid: i32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Pss:")?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

fn scrape(port: u16) -> Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut reply = agent
        .get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .map_err(|e| eyre!("scrape 127.0.0.1:{port}: {e}"))?;
    let body = reply.body_mut().read_to_string()?;
    if !body.contains("gt_heartbeats_total 1") {
        bail!("127.0.0.1:{port}/metrics does not show the one heartbeat:\n{body}");
    }
    Ok(())
}

/// Starts `n` daemons, lets them settle, measures them for `window`.
fn measure(
    gt: &Path,
    n: usize,
    metrics: bool,
    window: Duration,
    scrape_every: Duration,
) -> Result<Vec<Usage>> {
    let dir = tempfile::Builder::new().prefix("gt-fleet-").tempdir()?;
    let mut fleet = Vec::with_capacity(n);
    for i in 0..n {
        fleet.push(spawn(gt, &dir.path().join(format!("town-{i}")), metrics)?);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fleet.iter().all(ready) {
        for m in &mut fleet {
            if let Some(status) = m.child.try_wait()? {
                m.stopped = true;
                bail!(
                    "the daemon of {} exited at start: {status}",
                    m.town.display()
                );
            }
        }
        if Instant::now() > deadline {
            bail!("the daemons did not all report running within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Start-up is not idling: let it finish.
    std::thread::sleep(Duration::from_secs(2));
    let before: Vec<f64> = fleet.iter().map(|m| procfs::threads_cpu(m.pid)).collect();
    let start = Instant::now();
    let mut next_scrape = start;
    while start.elapsed() < window {
        if metrics && Instant::now() >= next_scrape {
            for m in &fleet {
                scrape(m.port.expect("a port when metrics are on"))?;
            }
            next_scrape += scrape_every;
        }
        std::thread::sleep(Duration::from_millis(100).min(window.saturating_sub(start.elapsed())));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut usage = Vec::with_capacity(n);
    for (m, before) in fleet.iter().zip(before) {
        usage.push(Usage {
            rss_kib: procfs::status_kib(m.pid, "VmRSS").unwrap_or(0),
            pss_kib: pss_kib(m.pid),
            cpu_secs: (procfs::threads_cpu(m.pid) - before) * 30.0 / elapsed,
            threads: procfs::threads(m.pid).unwrap_or(0),
        });
    }
    for m in &mut fleet {
        if let Some(pid) = Pid::from_raw(m.pid) {
            let _ = kill_process(pid, Signal::TERM);
        }
    }
    for m in &mut fleet {
        m.child.wait()?;
        m.stopped = true;
    }
    Ok(usage)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn row(n: usize, metrics: bool, usage: &[Usage]) -> String {
    let count = usage.len() as f64;
    let rss: u64 = usage.iter().map(|u| u.rss_kib).sum();
    let pss: u64 = usage.iter().map(|u| u.pss_kib).sum();
    let cpu: f64 = usage.iter().map(|u| u.cpu_secs).sum();
    let max_rss = usage.iter().map(|u| u.rss_kib).max().unwrap_or(0);
    let max_cpu = usage.iter().map(|u| u.cpu_secs).fold(0.0, f64::max);
    let threads = usage.iter().map(|u| u.threads).max().unwrap_or(0);
    let within = mib(max_rss) < RSS_BUDGET_MIB && max_cpu < CPU_BUDGET_PER_30S;
    format!(
        "| {n} | {} | {:.1} MiB | {:.1} MiB | {:.2} / {:.2} MiB | {:.4} s | {:.4} / {:.4} s | {threads} | {} |",
        if metrics { "on, scraped" } else { "off" },
        mib(rss),
        mib(pss),
        mib(rss) / count,
        mib(max_rss),
        cpu,
        cpu / count,
        max_cpu,
        if within { "yes" } else { "**no**" },
    )
}

fn main() -> Result<()> {
    color_eyre::install()?;
    let mut args = Args::parse();
    if args.quick {
        // Only where no flag said otherwise.
        let given = |flag: &str| std::env::args().any(|a| a.starts_with(flag));
        if !given("--towns") {
            args.towns = vec![1, 5];
        }
        if !given("--window-secs") {
            args.window_secs = 6;
        }
        if !given("--scrape-secs") {
            args.scrape_secs = 2;
        }
    }
    let gt = match &args.gt {
        Some(gt) => gt
            .canonicalize()
            .wrap_err_with(|| format!("--gt {}", gt.display()))?,
        None => binary::find_gt()?,
    };
    let modes: &[bool] = if args.off_only {
        &[false]
    } else {
        &[false, true]
    };
    let window = Duration::from_secs(args.window_secs);
    let scrape_every = Duration::from_secs(args.scrape_secs);
    let mut rows = Vec::new();
    for &n in &args.towns {
        for &metrics in modes {
            eprintln!(
                "fleet: {n} daemon(s), metrics {}, {} s",
                if metrics { "on" } else { "off" },
                args.window_secs
            );
            let usage = measure(&gt, n, metrics, window, scrape_every)
                .wrap_err_with(|| format!("{n} daemons, metrics {metrics}"))?;
            rows.push(row(n, metrics, &usage));
        }
    }
    println!("### Many towns on one host\n");
    let described = binary::GtBin {
        label: "gt".into(),
        path: gt.clone(),
        built: args.gt.is_none(),
    };
    for line in procfs::report_head("fleet", described, "; `--dry-run`") {
        println!("{line}");
    }
    println!(
        "- each: `gt daemon run --dry-run`, heartbeat_interval 60s, idle; measured over {} s after start-up, scraped every {} s when the endpoint is on\n",
        args.window_secs, args.scrape_secs
    );
    println!("| daemons | metrics endpoint | total RSS | total PSS | RSS per daemon, mean / max | total CPU per 30 s | CPU per daemon per 30 s, mean / max | threads per daemon | each under {RSS_BUDGET_MIB} MiB and {CPU_BUDGET_PER_30S} s |");
    println!("|--:|---|--:|--:|--:|--:|--:|--:|---|");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}
