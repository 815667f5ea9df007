//! The measurements, each on a fresh town.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use color_eyre::eyre::{bail, eyre, Result};

use crate::baseline::Baseline;
use crate::daemon::Daemon;
use crate::outcome::{self, Expected};
use crate::procfs;
use crate::settle::Settle;
use crate::town::{self, TempTown};
use crate::watch::{DirWatch, End};

/// How long nothing may progress before a scenario is declared stuck.
pub const STALL: Duration = Duration::from_secs(60);
pub const READY: Duration = Duration::from_secs(15);

pub struct Burst {
    pub n: usize,
    /// From the first publish to the last sidecar seen.
    pub elapsed: Duration,
    /// How long publishing alone took.
    pub published: Duration,
    pub uncertainty: Duration,
    pub hwm_kib: Option<u64>,
}

impl Burst {
    pub fn rate(&self) -> f64 {
        self.n as f64 / self.elapsed.as_secs_f64()
    }
}

pub struct Latency {
    /// Publishing rename → request file in processed/.
    pub to_file: Vec<Duration>,
    /// Publishing rename → its sidecar written (closed) in processed/: the
    /// end point both gt and the baseline are compared on, because each
    /// files the two in a different order.
    pub to_sidecar: Vec<Duration>,
    /// The publishing rename itself (the agent's side).
    pub rename: Vec<Duration>,
}

pub struct Backlog {
    pub n: usize,
    /// From spawning the daemon to the last sidecar seen.
    pub drain: Duration,
    pub ready: Duration,
    pub uncertainty: Duration,
    pub hwm_kib: Option<u64>,
}

pub struct Idle {
    pub secs: f64,
    pub cpu: f64,
    pub children_cpu: f64,
    pub rss_kib: Option<u64>,
    pub hwm_kib: Option<u64>,
    pub wakeups_per_sec: f64,
    pub threads: Option<u64>,
    pub heartbeats: Option<i64>,
}

/// Starts the daemon on `town` and waits until it says it is running.
pub fn start(gt: &Path, town: &TempTown) -> Result<Daemon> {
    let mut d = Daemon::spawn(gt, town)?;
    d.wait_ready(READY)?;
    Ok(d)
}

/// Waits (briefly) for the batched state.json counters to catch up.
fn check_counters(d: &Daemon, n: usize, notes: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state = d.state();
        let processed = state
            .as_ref()
            .and_then(|s| s["requests_processed"].as_u64());
        if processed == Some(n as u64) {
            return;
        }
        if Instant::now() > deadline {
            notes.push(format!(
                "state.json requests_processed is {processed:?} 5 s after {n} requests were filed"
            ));
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn publish_all(town: &TempTown, names: &[String]) -> Result<Duration> {
    let body = town::request_body();
    let t0 = Instant::now();
    for name in names {
        town.publish(name, &body)?;
    }
    Ok(t0.elapsed())
}

/// What the daemon `pid` (or, without one, the baseline) must have filed.
pub fn expected(pid: Option<i32>) -> Expected<'static> {
    Expected {
        from: town::FROM,
        action: town::ACTION,
        daemon_pid: pid.map(|p| p as u32),
    }
}

/// Publishes `names` as fast as possible and waits until all are filed.
fn burst_on(
    town: &TempTown,
    names: &[String],
    poll: Duration,
    alive: &mut dyn FnMut() -> Result<()>,
) -> Result<Burst> {
    let t0 = Instant::now();
    let published = publish_all(town, names)?;
    let filed = town.wait_filed(names, poll, STALL, alive)?;
    Ok(Burst {
        n: names.len(),
        elapsed: filed.done - t0,
        published,
        uncertainty: filed.uncertainty,
        hwm_kib: None,
    })
}

/// Publishes `names` one at a time and times each to processed/; the first
/// `warmup` are not counted.
fn latency_on(
    town: &TempTown,
    names: &[String],
    warmup: usize,
    gap: Duration,
    timeout: Duration,
    alive: &mut dyn FnMut() -> Result<()>,
) -> Result<Latency> {
    let watch = DirWatch::new(&town.processed())?;
    let body = town::request_body();
    let n = names.len().saturating_sub(warmup);
    let mut result = Latency {
        to_file: Vec::with_capacity(n),
        to_sidecar: Vec::with_capacity(n),
        rename: Vec::with_capacity(n),
    };
    for (i, name) in names.iter().enumerate() {
        let (tmp, dest) = town.stage(name, &body)?;
        let file = town::request_file(name);
        let sidecar = outcome::sidecar_name(&file);
        let t0 = Instant::now();
        fs::rename(&tmp, &dest)?;
        let renamed = t0.elapsed();
        let seen = watch.wait_for(&[(&file, End::Appeared), (&sidecar, End::Written)], timeout)?;
        if i >= warmup {
            result.to_file.push(seen[0].saturating_duration_since(t0));
            result
                .to_sidecar
                .push(seen[1].saturating_duration_since(t0));
            result.rename.push(renamed);
        }
        alive()?;
        std::thread::sleep(gap);
    }
    Ok(result)
}

pub fn daemon_burst(
    gt: &Path,
    base: &Path,
    n: usize,
    settle: &Settle,
    notes: &mut Vec<String>,
) -> Result<Burst> {
    let town = TempTown::new(base)?;
    let names = town::names("burst", n);
    let mut d = start(gt, &town)?;
    settle.at(base)?;
    let mut burst = burst_on(&town, &names, Duration::from_micros(200), &mut || {
        d.check_alive()
    })?;
    burst.hwm_kib = procfs::status_kib(d.pid, "VmHWM");
    check_counters(&d, n, notes);
    let pid = d.pid;
    notes.extend(d.stop()?);
    town.verify(&names, &expected(Some(pid)))?;
    town.remove();
    Ok(burst)
}

/// A held burst: the requests are published while the daemon is stopped
/// (SIGSTOP), then it is let go (SIGCONT) and timed until the last is
/// filed. No publisher runs meanwhile (the live burst is bound by its
/// one publishing thread on two cores), so this is the daemon's own rate,
/// like for like with the limit loop, whose inbox is also filled first.
pub fn daemon_held_burst(
    gt: &Path,
    base: &Path,
    n: usize,
    settle: &Settle,
    notes: &mut Vec<String>,
) -> Result<Burst> {
    let town = TempTown::new(base)?;
    let names = town::names("held", n);
    let mut d = start(gt, &town)?;
    let pid = rustix::process::Pid::from_raw(d.pid).ok_or_else(|| eyre!("bad pid"))?;
    rustix::process::kill_process(pid, rustix::process::Signal::STOP)?;
    let published = publish_all(&town, &names);
    settle.at(base)?;
    let t0 = Instant::now();
    rustix::process::kill_process(pid, rustix::process::Signal::CONT)?;
    let published = published?;
    let filed = town.wait_filed(&names, Duration::from_micros(200), STALL, &mut || {
        d.check_alive()
    })?;
    let hwm_kib = procfs::status_kib(d.pid, "VmHWM");
    check_counters(&d, n, notes);
    notes.extend(d.stop()?);
    town.verify(&names, &expected(Some(pid.as_raw_nonzero().get())))?;
    town.remove();
    Ok(Burst {
        n,
        elapsed: filed.done - t0,
        published,
        uncertainty: filed.uncertainty,
        hwm_kib,
    })
}

pub fn daemon_latency(
    gt: &Path,
    base: &Path,
    n: usize,
    gap: Duration,
    settle: &Settle,
    notes: &mut Vec<String>,
) -> Result<Latency> {
    let town = TempTown::new(base)?;
    let warmup = 20;
    let names = town::names("latency", warmup + n);
    let mut d = start(gt, &town)?;
    settle.at(base)?;
    let lat = latency_on(
        &town,
        &names,
        warmup,
        gap,
        Duration::from_secs(10),
        &mut || d.check_alive(),
    )?;
    let pid = d.pid;
    notes.extend(d.stop()?);
    town.verify(&names, &expected(Some(pid)))?;
    town.remove();
    Ok(lat)
}

pub fn daemon_backlog(
    gt: &Path,
    base: &Path,
    n: usize,
    settle: &Settle,
    notes: &mut Vec<String>,
) -> Result<Backlog> {
    let town = TempTown::new(base)?;
    // Wait for them in name order (which is also publishing order), the
    // order the daemon's start-up scan takes them in: the end of the drain
    // is then seen as it happens (the report says when it was not).
    let order = town::names("backlog", n);
    publish_all(&town, &order)?;
    let listed = fs::read_dir(town.inbox())?.count();
    if listed != n {
        bail!("published {n} requests but the inbox lists {listed}");
    }
    settle.at(base)?;
    let mut d = Daemon::spawn(gt, &town)?;
    // Also note when it reports running: before or after the drain?
    let mut ready = None;
    let filed = town.wait_filed(&order, Duration::from_millis(1), STALL, &mut || {
        d.check_alive()?;
        if ready.is_none() && d.is_ready() {
            ready = Some(d.started.elapsed());
        }
        Ok(())
    })?;
    let drain = filed.done - d.started;
    let ready = match ready {
        Some(r) => r,
        None => d.wait_ready(READY)?,
    };
    let hwm_kib = procfs::status_kib(d.pid, "VmHWM");
    check_counters(&d, n, notes);
    let pid = d.pid;
    notes.extend(d.stop()?);
    town.verify(&order, &expected(Some(pid)))?;
    town.remove();
    Ok(Backlog {
        n,
        drain,
        ready,
        uncertainty: filed.uncertainty,
        hwm_kib,
    })
}

pub fn daemon_idle(
    gt: &Path,
    base: &Path,
    secs: u64,
    settle: &Settle,
    notes: &mut Vec<String>,
) -> Result<Idle> {
    let town = TempTown::new(base)?;
    let mut d = start(gt, &town)?;
    // Let start-up (first heartbeat, initial scan) finish.
    std::thread::sleep(Duration::from_secs(1));
    settle.at(base)?;
    d.check_alive()?;
    let tick = procfs::clock_ticks();
    let heartbeats = |d: &Daemon| d.state().and_then(|s| s["heartbeat_count"].as_i64());
    let h0 = heartbeats(&d);
    let cpu = |d: &Daemon| {
        procfs::cpu_times(d.pid).ok_or_else(|| eyre!("cannot read /proc/{}/stat", d.pid))
    };
    let c0 = cpu(&d)?;
    let x0 = procfs::context_switches(d.pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let c1 = cpu(&d)?;
    let x1 = procfs::context_switches(d.pid);
    let elapsed = t0.elapsed().as_secs_f64();
    d.check_alive()?;
    let rss_kib = procfs::status_kib(d.pid, "VmRSS");
    let hwm_kib = procfs::status_kib(d.pid, "VmHWM");
    let threads = procfs::threads(d.pid);
    let h1 = heartbeats(&d);
    let heartbeats = match (h0, h1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    notes.extend(d.stop()?);
    town.remove();
    Ok(Idle {
        secs: elapsed,
        cpu: ((c1.utime + c1.stime) - (c0.utime + c0.stime)) as f64 / tick,
        children_cpu: ((c1.cutime + c1.cstime) - (c0.cutime + c0.cstime)) as f64 / tick,
        rss_kib,
        hwm_kib,
        wakeups_per_sec: x1.saturating_sub(x0) as f64 / elapsed,
        threads,
        heartbeats,
    })
}

pub fn baseline_burst(base: &Path, n: usize, settle: &Settle) -> Result<Burst> {
    let town = TempTown::new(base)?;
    let names = town::names("burst", n);
    let mut b = Baseline::spawn(&town)?;
    settle.at(base)?;
    let burst = burst_on(&town, &names, Duration::from_millis(2), &mut || {
        b.check_alive()
    })?;
    b.stop();
    town.verify(&names, &expected(None))?;
    town.remove();
    Ok(burst)
}

pub fn baseline_latency(base: &Path, n: usize, gap: Duration, settle: &Settle) -> Result<Latency> {
    let town = TempTown::new(base)?;
    let warmup = 5;
    let names = town::names("latency", warmup + n);
    let mut b = Baseline::spawn(&town)?;
    settle.at(base)?;
    let lat = latency_on(
        &town,
        &names,
        warmup,
        gap,
        Duration::from_secs(30),
        &mut || b.check_alive(),
    )?;
    b.stop();
    town.verify(&names, &expected(None))?;
    town.remove();
    Ok(lat)
}
