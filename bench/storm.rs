//! A storm: N distinct agents cycling at once, with real tmux on a private
//! server and `sleep` as the agents, then a `shutdown` of another agent
//! published right behind them.
//!
//! A cycle is mostly waiting (`prime_delay` between creating the session
//! and typing the prime text), so N cycles run one after another take N
//! times one cycle, and a request behind them waits for all of them;
//! cycles of different agents run at the same time take about one cycle
//! per round of `max_parallel`, and a request for an agent nobody else is
//! using starts at once. Measured per case, on a fresh town and server:
//! one cycle alone, one shutdown alone (no session to end: near-instant),
//! then the storm and the shutdown behind it.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use color_eyre::eyre::{bail, eyre, Result};

use crate::daemon::Daemon;
use crate::guard::{self, Entry, Registration};
use crate::outcome::{self, Expected};
use crate::scenarios::{READY, STALL};
use crate::settle::Settle;
use crate::tmux::Tmux;
use crate::town::{self, TempTown};
use crate::watch::DirWatch;

/// What the agents wait between being created and primed.
pub const PRIME_DELAY: &str = "2s";
/// The agent every case cycles alone first, for the time one cycle takes.
const SOLO: &str = "solo";
/// The agent the shutdown is for: it has no session, so ending it is
/// near-instant and whatever the shutdown waits for is someone else's.
const SHUTDOWN_FROM: &str = "deacon";
/// Samples of the shutdown alone; the median counts.
const ALONE: usize = 3;

/// Why the storm cannot run here, if it cannot.
pub fn missing() -> Option<String> {
    let missing: Vec<&str> = ["tmux", "sleep"]
        .into_iter()
        .filter(|tool| which::which(tool).is_err())
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "STORM SKIPPED: {} not found; install tmux (Debian/Ubuntu: apt-get install tmux) \
             to run it",
            missing.join(", ")
        )
    })
}

/// The private tmux server of one case (the tests' [`Tmux`]), killed with
/// every process its panes started when dropped, or by the guard when the
/// bench is interrupted.
struct Server {
    // Field order matters: the server is killed before it is forgotten.
    tmux: Tmux,
    _reg: Registration,
}

impl Server {
    fn private() -> Server {
        let tmux = Tmux::private_named("gt-bench");
        Server {
            _reg: guard::register(Entry::Tmux(tmux.sock.clone())),
            tmux,
        }
    }
}

#[derive(Clone, Copy)]
pub struct Case {
    /// Agents cycling at once.
    pub n: usize,
    /// `max_parallel` in the town's config; `None`: not set.
    pub pool: Option<usize>,
}

/// The pool of the storm's first case for each size: a pool smaller than
/// the storm, so that some cycles wait for a worker.
pub const SMALL_POOL: usize = 8;

/// Each storm size with a pool of [`SMALL_POOL`] workers (when it is
/// larger), and with a pool of its own size.
pub fn cases(sizes: &[usize]) -> Vec<Case> {
    let mut cases = Vec::new();
    for &n in sizes {
        if n > SMALL_POOL {
            cases.push(Case {
                n,
                pool: Some(SMALL_POOL),
            });
        }
        cases.push(Case { n, pool: Some(n) });
    }
    cases
}

pub enum StormResult {
    Ran(Storm),
    /// The binary refused the config (an older `gt` without `max_parallel`).
    Unsupported(String),
}

pub struct Storm {
    pub one_cycle: Duration,
    /// tmux clients the daemon ran for the cycle alone (its metrics'
    /// `gt_tmux_calls_total`), and per cycle of the storm.
    pub tmux_one_cycle: u64,
    pub tmux_per_storm_cycle: f64,
    pub shutdown_alone: Duration,
    /// From the first publish of the storm to the last of its sidecars.
    pub all_filed: Duration,
    /// The shutdown published right after the storm: publish → sidecar.
    pub shutdown_behind: Duration,
    /// Cycles of the storm filed before the shutdown was.
    pub cycles_before_shutdown: usize,
}

/// The town's config: a private server, `sleep` agents, the heartbeat out
/// of the way (its pokes are not what is measured), and the metrics
/// endpoint on `port`, for the count of tmux clients.
pub fn config(socket: &str, pool: Option<usize>, port: u16) -> String {
    let mut c = serde_json::json!({
        "metrics_listen": format!("127.0.0.1:{port}"),
        "tmux_socket": socket,
        "agent_command": "sleep 600",
        "prime_delay": PRIME_DELAY,
        "kill_grace": "2s",
        "heartbeat_interval": "1h",
    });
    if let Some(pool) = pool {
        c["max_parallel"] = pool.into();
    }
    c.to_string()
}

fn session(rig: &str) -> String {
    format!("gt-{rig}-witness")
}

/// A request to publish: its name, from, action.
struct Req {
    name: String,
    from: String,
    action: &'static str,
}

impl Req {
    fn new(name: String, from: &str, action: &'static str) -> Req {
        Req {
            name,
            from: from.to_string(),
            action,
        }
    }

    fn sidecar(&self) -> String {
        outcome::sidecar_name(&town::request_file(&self.name))
    }
}

/// Waits until the sidecars of all `reqs` are written in processed/;
/// returns when each was. Fails at once when one is filed in failed/, and
/// when nothing is filed for [`STALL`].
fn wait_filed(
    town: &TempTown,
    watch: &DirWatch,
    reqs: &[&Req],
    d: &mut Daemon,
) -> Result<HashMap<String, Instant>> {
    let wanted: HashMap<String, &Req> = reqs.iter().map(|r| (r.sidecar(), *r)).collect();
    let mut seen: HashMap<String, Instant> = HashMap::new();
    let mut progress = Instant::now();
    let mut checked = Instant::now();
    while seen.len() < wanted.len() {
        if let Some((name, at, complete)) = watch.next(Duration::from_millis(250))? {
            if complete {
                if let Some(r) = wanted.get(&name) {
                    seen.entry(r.name.clone()).or_insert(at);
                    progress = Instant::now();
                }
            }
        }
        if checked.elapsed() > Duration::from_millis(500) {
            checked = Instant::now();
            d.check_alive()?;
            for r in reqs.iter().filter(|r| !seen.contains_key(&r.name)) {
                let failed = outcome::sidecar_of(&town.failed().join(town::request_file(&r.name)));
                if failed.exists() {
                    bail!(
                        "{} ({} from {}) was filed in failed/: {}",
                        r.name,
                        r.action,
                        r.from,
                        outcome::error_of(&failed).unwrap_or_else(|| "no reason given".into())
                    );
                }
            }
            if progress.elapsed() > STALL {
                bail!(
                    "nothing was filed for {STALL:?}: {} of {} filed; now {}{}",
                    seen.len(),
                    wanted.len(),
                    town.counts(),
                    d.diagnostics()
                );
            }
        }
    }
    Ok(seen)
}

/// Publishes `req` and waits for its sidecar: publish → sidecar written.
fn one(town: &TempTown, watch: &DirWatch, req: &Req, d: &mut Daemon) -> Result<Duration> {
    let (tmp, dest) = town.stage(&req.name, &town::request_body_for(&req.from, req.action))?;
    let t0 = Instant::now();
    fs::rename(&tmp, &dest)?;
    let seen = wait_filed(town, watch, &[req], d)?;
    Ok(seen[&req.name].saturating_duration_since(t0))
}

/// Every agent really cycled: a new pane process in each session.
fn not_cycled(
    sessions: impl Iterator<Item = String>,
    before: &BTreeMap<String, u32>,
    after: &BTreeMap<String, u32>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for s in sessions {
        match (before.get(&s), after.get(&s)) {
            (_, None) => problems.push(format!("session {s} is gone after its cycle")),
            (Some(b), Some(a)) if a == b => problems.push(format!(
                "session {s} has the same pane process {a} as before"
            )),
            _ => {}
        }
    }
    problems
}

/// Every request processed, as asked, by daemon `pid`; nothing else filed
/// or left.
fn misfiled(town: &TempTown, reqs: &[&Req], pid: u32) -> Vec<String> {
    let mut problems = Vec::new();
    for r in reqs {
        let sidecar = outcome::sidecar_of(&town.processed().join(town::request_file(&r.name)));
        let want = Expected {
            from: &r.from,
            action: r.action,
            daemon_pid: Some(pid),
        };
        if let Some(what) = outcome::check(&sidecar, &want) {
            problems.push(format!("{}: {what}", r.name));
        }
    }
    let c = town.counts();
    if c.processed != reqs.len() || c.inbox + c.processing + c.failed > 0 {
        problems.push(format!("expected {} processed requests: {c}", reqs.len()));
    }
    problems
}

/// How many tmux clients the daemon has run, by its metrics endpoint.
fn tmux_calls(port: u16) -> Result<u64> {
    let reply = crate::http::get(port, "/metrics").map_err(|e| eyre!(e))?;
    reply
        .body
        .lines()
        .find_map(|l| l.strip_prefix("gt_tmux_calls_total "))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| {
            eyre!(
                "no gt_tmux_calls_total in the daemon's metrics:\n{}",
                reply.body
            )
        })
}

pub fn run(
    gt: &Path,
    base: &Path,
    case: Case,
    settle: &Settle,
    notes: &mut Vec<String>,
) -> Result<StormResult> {
    let server = Server::private();
    let port = crate::http::free_port();
    let town = TempTown::with_config(base, &config(&server.tmux.sock, case.pool, port))?;
    let mut d = Daemon::spawn_with(gt, &town, false)?;
    if let Err(e) = d.wait_ready(READY) {
        let why = format!("{e:#}");
        if case.pool.is_some() && why.contains("max_parallel") {
            return Ok(StormResult::Unsupported(
                "this gt refuses the config key `max_parallel`".into(),
            ));
        }
        return Err(e);
    }

    // The agents, running before anything is asked of them.
    let rigs: Vec<String> = (0..case.n).map(|i| format!("r{i:02}")).collect();
    for rig in rigs.iter().map(String::as_str).chain([SOLO]) {
        server
            .tmux
            .try_new_session(&session(rig), Some(town.root()), &["sleep", "600"])
            .map_err(|e| eyre!(e))?;
    }
    let before = server.tmux.pane_pids().map_err(|e| eyre!(e))?;
    let watch = DirWatch::new(&town.processed())?;
    settle.at(base)?;

    let solo = Req::new("solo-cycle".into(), &format!("{SOLO}/witness"), "cycle");
    let calls = tmux_calls(port)?;
    let one_cycle = one(&town, &watch, &solo, &mut d)?;
    let tmux_one_cycle = tmux_calls(port)? - calls;
    let alone: Vec<Req> = (0..ALONE)
        .map(|i| Req::new(format!("alone-shutdown-{i}"), SHUTDOWN_FROM, "shutdown"))
        .collect();
    let mut alone_times = Vec::new();
    let calls = tmux_calls(port)?;
    for r in &alone {
        alone_times.push(one(&town, &watch, r, &mut d)?);
    }
    let tmux_per_shutdown = (tmux_calls(port)? - calls) as f64 / ALONE as f64;
    alone_times.sort();
    let shutdown_alone = alone_times[ALONE / 2];

    // The storm: every file staged first, so that publishing them is one
    // rename each, back to back.
    let storm: Vec<Req> = rigs
        .iter()
        .map(|rig| Req::new(format!("storm-{rig}"), &format!("{rig}/witness"), "cycle"))
        .collect();
    let behind = Req::new("storm-shutdown".into(), SHUTDOWN_FROM, "shutdown");
    let mut staged = Vec::new();
    for r in storm.iter().chain([&behind]) {
        staged.push(town.stage(&r.name, &town::request_body_for(&r.from, r.action))?);
    }
    let (last, first) = staged.split_last().ok_or_else(|| eyre!("nothing staged"))?;
    let calls = tmux_calls(port)?;
    let t0 = Instant::now();
    for (tmp, dest) in first {
        fs::rename(tmp, dest)?;
    }
    let ts = Instant::now();
    fs::rename(&last.0, &last.1)?;
    let all: Vec<&Req> = storm.iter().chain([&behind]).collect();
    let seen = wait_filed(&town, &watch, &all, &mut d)?;
    let storm_calls = (tmux_calls(port)? - calls) as f64 - tmux_per_shutdown;
    let shutdown_at = seen[&behind.name];
    let cycles: Vec<Instant> = storm.iter().map(|r| seen[&r.name]).collect();
    let all_filed = cycles
        .iter()
        .max()
        .map_or(Duration::ZERO, |t| t.saturating_duration_since(t0));
    let cycles_before_shutdown = cycles.iter().filter(|t| **t < shutdown_at).count();

    let after = server.tmux.pane_pids().map_err(|e| eyre!(e))?;
    let sessions = rigs.iter().map(String::as_str).chain([SOLO]).map(session);
    let mut problems = not_cycled(sessions, &before, &after);
    drop(watch);
    let pid = d.pid;
    notes.extend(d.stop()?);
    let reqs: Vec<&Req> = [&solo]
        .into_iter()
        .chain(&alone)
        .chain(&storm)
        .chain([&behind])
        .collect();
    problems.extend(misfiled(&town, &reqs, pid as u32));
    if !problems.is_empty() {
        problems.truncate(5);
        bail!("storm of {}: {}", case.n, problems.join("; "));
    }
    drop(server);
    town.remove();
    Ok(StormResult::Ran(Storm {
        one_cycle,
        tmux_one_cycle,
        tmux_per_storm_cycle: storm_calls / case.n as f64,
        shutdown_alone,
        all_filed,
        shutdown_behind: shutdown_at.saturating_duration_since(ts),
        cycles_before_shutdown,
    }))
}
