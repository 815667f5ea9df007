//! Syscalls per request: `strace -c -f` of the daemon draining a held
//! burst (published while it is stopped; counted until state.json counts
//! them all, so the ledger's flushes are in), beside the limit loop's own
//! on the same number of requests, run alone in a child of this bench
//! (`--internal-limit`) so that neither publishing nor the bench is
//! counted.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use color_eyre::eyre::{bail, eyre, Result, WrapErr};
use rustix::process::{kill_process, Pid, Signal};

use crate::scenarios::{self, publish_all, STALL};
use crate::settle::Settle;
use crate::town::{self, TempTown};

/// Calls of each syscall, and all of them.
#[derive(Default)]
pub struct Counts {
    pub by_name: BTreeMap<String, u64>,
    pub total: u64,
}

pub struct Syscalls {
    pub n: usize,
    pub daemon: Counts,
    pub limit: Counts,
}

/// Why the scenario cannot run here, if it cannot.
pub fn missing() -> Option<String> {
    which::which("strace").is_err().then(|| {
        "SYSCALL COUNTS SKIPPED: strace not found (Debian/Ubuntu: apt-get install strace)".into()
    })
}

/// Reads `strace -c` output: `% time  seconds  usecs/call  calls  [errors]  syscall`.
fn parse(text: &str) -> Counts {
    let mut counts = Counts::default();
    for line in text.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.len() < 5 || t[0].parse::<f64>().is_err() {
            continue;
        }
        let (Some(name), Ok(calls)) = (t.last(), t[3].parse::<u64>()) else {
            continue;
        };
        if *name == "total" {
            counts.total = calls;
        } else {
            counts.by_name.insert(name.to_string(), calls);
        }
    }
    counts
}

/// `strace -c -f -o OUT` of `args`, or attached to `pid`.
fn strace(out: &Path, target: &[&std::ffi::OsStr]) -> Result<Child> {
    Command::new("strace")
        .args(["-c", "-f", "-o"])
        .arg(out)
        .args(target)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .wrap_err("cannot run strace")
}

/// Waits until a tracer is attached to `pid` (`TracerPid` in its status).
fn wait_traced(pid: i32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let traced = status
            .lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .is_some_and(|t| t.trim() != "0");
        if traced {
            // Every thread: strace attaches to them one by one.
            std::thread::sleep(Duration::from_millis(300));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("strace did not attach to {pid} within 10 s")
}

pub fn run(gt: &Path, base: &Path, n: usize, settle: &Settle) -> Result<Syscalls> {
    // The loop, alone in a child of this bench.
    let town = TempTown::new(base)?;
    publish_all(&town, &town::names("limit", n))?;
    settle.at(base)?;
    let out = town.root().join("strace-limit.txt");
    let me = std::env::current_exe()?;
    let mut child = strace(
        &out,
        &[
            me.as_os_str(),
            "--internal-limit".as_ref(),
            town.daemon_dir().as_os_str(),
        ],
    )?;
    if !child.wait()?.success() {
        bail!("the limit loop under strace failed");
    }
    let limit = parse(&std::fs::read_to_string(&out)?);
    let c = town.counts();
    if c.processed != n {
        bail!("the limit loop under strace filed {} of {n}", c.processed);
    }
    town.remove();

    // The daemon, on a held burst.
    let town = TempTown::new(base)?;
    let names = town::names("held", n);
    let mut d = scenarios::start(gt, &town)?;
    let pid = Pid::from_raw(d.pid).ok_or_else(|| eyre!("bad pid"))?;
    kill_process(pid, Signal::STOP)?;
    publish_all(&town, &names)?;
    settle.at(base)?;
    let out = town.root().join("strace-daemon.txt");
    let pid_arg = d.pid.to_string();
    let mut tracer = strace(&out, &["-p".as_ref(), pid_arg.as_ref()])?;
    wait_traced(d.pid)?;
    kill_process(pid, Signal::CONT)?;
    town.wait_filed(&names, Duration::from_millis(5), STALL, &mut || {
        d.check_alive()
    })?;
    let deadline = Instant::now() + STALL;
    while d.state().and_then(|s| s["requests_processed"].as_u64()) != Some(n as u64) {
        if Instant::now() > deadline {
            bail!("state.json did not count the {n} requests within {STALL:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(tracer_pid) = Pid::from_raw(tracer.id() as i32) {
        kill_process(tracer_pid, Signal::INT)?;
    }
    tracer.wait()?;
    let daemon = parse(&std::fs::read_to_string(&out)?);
    let _ = d.stop()?;
    town.verify(
        &names,
        &scenarios::expected(Some(pid.as_raw_nonzero().get())),
    )?;
    town.remove();
    Ok(Syscalls { n, daemon, limit })
}

/// `--internal-limit DIR`: the limit loop alone, on the town whose daemon
/// directory is DIR (run under strace by [`run`]).
pub fn child_main(daemon_dir: &Path) -> Result<()> {
    crate::limit::consume(daemon_dir, |_| {})?;
    Ok(())
}
