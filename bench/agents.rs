//! One town of N agents, idle at the default intervals (a heartbeat every
//! 60 s poking every agent, a look every 10 s), with looking at agents
//! (`look_at_agents`) off and then on. Prints one markdown table for
//! BENCHMARKS.md: the CPU the daemon spends (its threads, the tmux
//! commands it runs, and the tmux server answering them), as seconds per
//! window and as a share of one core.
//!
//! The agents are small Python programs that answer each line they read
//! (tests/support/agents.rs), in sessions named as the Mayor and Witnesses
//! are, so each is poked and, when on, looked at. Each mode gets its own
//! town and its own private tmux server.
//!
//! Run: `cargo bench --bench agents` (`-- --quick` for a smoke run,
//! `-- --help` for the flags). Every daemon and tmux server is killed if
//! the run fails.

#[allow(dead_code)]
#[path = "../tests/support/agents.rs"]
mod agents;
#[allow(dead_code)]
mod binary;
#[allow(dead_code)]
#[path = "../tests/support/command.rs"]
mod command;
#[allow(dead_code, unused_imports)]
#[path = "../tests/support/proc.rs"]
mod proc;
#[allow(dead_code)]
mod procfs;
#[allow(dead_code, unused_imports)]
#[path = "../tests/support/tmux.rs"]
mod tmux;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use color_eyre::eyre::{bail, Result, WrapErr};
use rustix::process::{kill_process, Pid, Signal};

/// The target: looking on costs less than this share of one core.
const BUDGET_PERCENT: f64 = 1.0;

#[derive(Parser, Debug)]
#[command(
    bin_name = "cargo bench --bench agents --",
    about = "One idle town of N agents: the daemon's CPU with looking at agents off and on"
)]
struct Args {
    /// Agents in the town (one Mayor, the rest Witnesses).
    #[arg(long, default_value_t = 20)]
    agents: usize,
    /// How long each measurement lasts (one heartbeat falls in it).
    #[arg(long, default_value_t = 60)]
    window_secs: u64,
    /// Measure this `gt` instead of the one cargo built for the bench.
    #[arg(long)]
    gt: Option<PathBuf>,
    /// Smoke run: 5 agents, 6 s windows (flags given as well override).
    #[arg(long)]
    quick: bool,
    /// Passed by `cargo bench` to every bench target; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The daemon under measure; SIGKILLed on drop unless stopped.
struct Daemon {
    child: Child,
    pid: i32,
    stopped: bool,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU spent over one window, in seconds.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    daemon: f64,
    /// The tmux commands the daemon ran (its reaped children).
    clients: f64,
    server: f64,
}

impl Usage {
    fn total(&self) -> f64 {
        self.daemon + self.clients + self.server
    }
}

/// The CPU of the children `pid` waited for, in seconds (clock ticks).
fn children_cpu(pid: i32) -> f64 {
    procfs::cpu_times(pid).map_or(0.0, |t| {
        (t.cutime + t.cstime) as f64 / procfs::clock_ticks()
    })
}

fn sample(daemon: i32, server: i32) -> Usage {
    Usage {
        daemon: procfs::threads_cpu(daemon),
        clients: children_cpu(daemon),
        server: procfs::threads_cpu(server),
    }
}

/// A town of `n` answering agents on a private tmux server, its daemon
/// running with `look_at_agents` as `looking`, measured idle for `window`.
fn measure(gt: &Path, n: usize, looking: bool, window: Duration) -> Result<Usage> {
    let dir = tempfile::Builder::new().prefix("gt-agents-").tempdir()?;
    let root = dir.path().join("town");
    fs::create_dir_all(root.join("daemon"))?;
    fs::create_dir_all(root.join("mayor"))?;
    fs::write(root.join("mayor/town.json"), "{}")?;
    let server = tmux::Tmux::private_named("gt-bench-agents");
    let argv = agents::python(dir.path(), "answering", agents::ANSWERING, &[]);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    for i in 0..n {
        let session = if i == 0 {
            "gt-mayor".to_string()
        } else {
            format!("gt-rig{i}-witness")
        };
        server
            .try_new_session(&session, None, &argv)
            .map_err(|e| color_eyre::eyre::eyre!("{e}"))?;
    }
    let config = serde_json::json!({
        "tmux_socket": server.sock,
        "look_at_agents": looking,
        "prime_text": "",
        "agent_command": "sleep 600",
    });
    fs::write(root.join("daemon/config.json"), config.to_string())?;
    let mut cmd = command::program_command(gt);
    cmd.arg("--town")
        .arg(&root)
        .args(["daemon", "run"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().wrap_err("cannot start gt daemon run")?;
    let mut daemon = Daemon {
        pid: child.id() as i32,
        child,
        stopped: false,
    };
    let state_file = root.join("daemon/state.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = gt::state::State::load(&state_file).unwrap_or_default();
        let seen = state.liveness.len() == n || !looking;
        if state.running && state.heartbeat_count >= 1 && seen {
            break;
        }
        if let Some(status) = daemon.child.try_wait()? {
            daemon.stopped = true;
            bail!("the daemon exited at start: {status}");
        }
        if Instant::now() > deadline {
            bail!("the daemon did not report running (and its agents seen) within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The first beat's pokes and their confirmations are start-up.
    std::thread::sleep(Duration::from_secs(3));
    let server_pid = server.server_pid() as i32;
    let before = sample(daemon.pid, server_pid);
    std::thread::sleep(window);
    let after = sample(daemon.pid, server_pid);
    if let Some(pid) = Pid::from_raw(daemon.pid) {
        let _ = kill_process(pid, Signal::TERM);
    }
    daemon.child.wait()?;
    daemon.stopped = true;
    Ok(Usage {
        daemon: after.daemon - before.daemon,
        clients: after.clients - before.clients,
        server: after.server - before.server,
    })
}

fn percent(cpu: f64, window: Duration) -> f64 {
    cpu * 100.0 / window.as_secs_f64()
}

fn main() -> Result<()> {
    color_eyre::install()?;
    let mut args = Args::parse();
    if args.quick {
        let given = |flag: &str| std::env::args().any(|a| a.starts_with(flag));
        if !given("--agents") {
            args.agents = 5;
        }
        if !given("--window-secs") {
            args.window_secs = 6;
        }
    }
    if args.agents == 0 {
        bail!("--agents must be at least 1");
    }
    let gt = match &args.gt {
        Some(gt) => gt
            .canonicalize()
            .wrap_err_with(|| format!("--gt {}", gt.display()))?,
        None => binary::find_gt()?,
    };
    let window = Duration::from_secs(args.window_secs);
    let mut rows = Vec::new();
    for looking in [false, true] {
        eprintln!(
            "agents: {} agents, looking {}, {} s",
            args.agents,
            if looking { "on" } else { "off" },
            args.window_secs
        );
        let usage = measure(&gt, args.agents, looking, window)
            .wrap_err_with(|| format!("looking {looking}"))?;
        rows.push((looking, usage));
    }
    println!("### Looking at agents: one idle town\n");
    let described = binary::GtBin {
        label: "gt".into(),
        path: gt.clone(),
        built: args.gt.is_none(),
    };
    for line in procfs::report_head("agents", described, "") {
        println!("{line}");
    }
    println!(
        "- each: `gt daemon run`, {} agents that answer each line (`gt-mayor`, `gt-rigN-witness`), every one poked; default heartbeat_interval (60s) and supervise_interval (10s); measured over {} s after start-up, on a private tmux server\n",
        args.agents, args.window_secs
    );
    println!("| looking at agents | daemon threads | tmux commands it ran | tmux server | total | share of one core |");
    println!("|---|--:|--:|--:|--:|--:|");
    for (looking, u) in &rows {
        println!(
            "| {} | {:.4} s | {:.4} s | {:.4} s | {:.4} s | {:.3} % |",
            if *looking { "on" } else { "off" },
            u.daemon,
            u.clients,
            u.server,
            u.total(),
            percent(u.total(), window)
        );
    }
    let off = rows[0].1.total();
    let on = rows[1].1.total();
    let extra = percent(on - off, window);
    println!(
        "\nLooking on costs {:.3} % of one core more than off (target: under {BUDGET_PERCENT} %): {}.",
        extra,
        if extra < BUDGET_PERCENT { "met" } else { "**not met**" }
    );
    Ok(())
}
