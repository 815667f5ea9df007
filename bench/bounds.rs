//! What one daemon spends when its outside doors are pushed: thousands of
//! idle connections to the metrics endpoint, one header line hundreds of
//! megabytes long, a `notify_command` that prints a gigabyte and leaves
//! children behind. One dry-run daemon with the endpoint on, started with
//! the descriptor limit a systemd service gets by default (1024), goes
//! through each in turn; after each: its threads, descriptors, RSS and
//! peak RSS, whether `/healthz` answers and how long a request takes to
//! be filed. Prints a markdown table for BENCHMARKS.md.
//!
//! Run: `cargo bench --bench bounds` (`-- --gt PATH` to measure another
//! build, `-- --help` for the flags). Every process it starts is killed
//! if the run fails.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use color_eyre::eyre::{bail, Result, WrapErr};
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

// What the tests read from /proc, read the same way (tests/support/).
#[allow(dead_code, unused_imports)]
#[path = "../tests/support/command.rs"]
mod command;
#[allow(dead_code, unused_imports)]
#[path = "../tests/support/proc.rs"]
mod proc;

#[derive(Parser, Debug)]
#[command(
    bin_name = "cargo bench --bench bounds --",
    about = "One daemon's threads, descriptors and memory under idle connections, a huge header and a huge notify output"
)]
struct Args {
    /// Idle connections held at once.
    #[arg(long, default_value_t = 3000)]
    connections: usize,
    /// The endless header line, in MB.
    #[arg(long, default_value_t = 300)]
    header_mb: usize,
    /// What notify_command prints, in MB.
    #[arg(long, default_value_t = 1000)]
    notify_mb: usize,
    /// The daemon's descriptor limit (soft and hard).
    #[arg(long, default_value_t = 1024)]
    nofile: u64,
    /// Measure this `gt` instead of the one cargo built for the bench.
    #[arg(long)]
    gt: Option<PathBuf>,
    /// Passed by `cargo bench` to every bench target; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The daemon under test; killed on drop, with what its notify command
/// left (found by the town in its environment).
struct Daemon {
    child: Child,
    pid: i32,
    town: PathBuf,
    port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in left_behind(&self.town, self.pid) {
            gt::process::signal(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Processes other than the daemon that carry this town in their
/// environment (the daemon gives it to notify_command; the daemon itself
/// is started without it).
fn left_behind(town: &Path, daemon: i32) -> Vec<u32> {
    let wanted = format!("GT_TOWN_ROOT={}", town.display());
    let me = std::process::id();
    let daemon = daemon as u32;
    proc::all_pids()
        .filter(|&pid| pid != me && pid != daemon && proc::alive(pid))
        .filter(|&pid| proc::environ_has(pid, &wanted))
        .collect()
}

fn start(gt: &Path, town: &Path, nofile: u64, notify_mb: usize) -> Result<Daemon> {
    let daemon = town.join("daemon");
    fs::create_dir_all(&daemon)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let script = format!(
        "head -c {}000000 /dev/zero; sleep 1001 & setsid sleep 1002 </dev/null >/dev/null 2>&1 & exit 0",
        notify_mb
    );
    let config = serde_json::json!({
        "heartbeat_interval": "60s",
        "metrics_listen": format!("127.0.0.1:{port}"),
        "notify_command": ["sh", "-c", script],
        "notify_timeout": "2m",
    });
    fs::write(daemon.join("config.json"), config.to_string())?;
    let mut cmd = command::program_command(gt);
    cmd.arg("--town")
        .arg(town)
        .args(["daemon", "run", "--dry-run"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    proc::limit_descriptors(&mut cmd, nofile);
    let child = cmd.spawn().wrap_err("cannot start gt daemon run")?;
    let d = Daemon {
        pid: child.id() as i32,
        child,
        town: town.to_path_buf(),
        port,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = gt::state::State::load(&daemon.join("state.json")).unwrap_or_default();
        if state.running && state.heartbeat_count >= 1 && healthz(port).is_some() {
            break;
        }
        if Instant::now() > deadline {
            bail!("the daemon did not come up within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(d)
}

/// GET /healthz: its status, or None when nothing answers within 5 s.
fn healthz(port: u16) -> Option<u16> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    agent
        .get(&format!("http://127.0.0.1:{port}/healthz"))
        .call()
        .ok()
        .map(|r| r.status().as_u16())
}

/// Publishes request number `n` the Maildir way; returns its name.
fn publish(town: &Path, n: usize) -> Result<String> {
    let inbox = town.join("daemon/inbox");
    let name = format!("bench-{n}.json");
    let tmp = inbox.join(format!(".{name}.tmp"));
    let body = serde_json::json!({
        "from": "gastown/witness",
        "action": "shutdown",
        "timestamp": chrono::Utc::now().to_rfc3339(),
    });
    fs::write(&tmp, body.to_string())?;
    fs::rename(&tmp, inbox.join(&name))?;
    Ok(name)
}

/// Publishes a request and returns how long it took to be filed (None:
/// not within 10 s).
fn file_one(town: &Path, n: usize) -> Result<Option<Duration>> {
    let start = Instant::now();
    let name = publish(town, n)?;
    let sidecar = format!("{name}.result.json");
    while start.elapsed() < Duration::from_secs(10) {
        for dir in ["processed", "failed"] {
            if town.join("daemon").join(dir).join(&sidecar).exists() {
                return Ok(Some(start.elapsed()));
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(None)
}

/// One row of the table, read now.
fn row(d: &Daemon, what: &str, n: &mut usize) -> Result<String> {
    let pid = d.pid as u32;
    let mib = |key| {
        proc::status_number(pid, key)
            .map_or("?".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
    };
    let health = healthz(d.port).map_or("no answer".into(), |s| s.to_string());
    *n += 1;
    let filed = file_one(&d.town, *n)?.map_or("not within 10 s".into(), |t| {
        format!("{:.0} ms", t.as_secs_f64() * 1000.0)
    });
    Ok(format!(
        "| {what} | {} | {} | {} | {} | {health} | {filed} | {} |",
        proc::status_number(pid, "Threads").unwrap_or(0),
        proc::descriptors(pid).unwrap_or(0),
        mib("VmRSS"),
        mib("VmHWM"),
        left_behind(&d.town, d.pid).len(),
    ))
}

/// Sends a header line of `mb` MB that never ends; returns how many MB
/// were taken and what the endpoint answered.
fn endless_header(addr: SocketAddr, mb: usize) -> (usize, String) {
    let mut long = match TcpStream::connect(addr) {
        Ok(s) => s,
        Err(e) => return (0, format!("cannot connect: {e}")),
    };
    let _ = long.set_write_timeout(Some(Duration::from_secs(30)));
    let _ = long.set_read_timeout(Some(Duration::from_secs(30)));
    let mut sent = 0;
    if long.write_all(b"GET /healthz HTTP/1.1\r\nX-Long: ").is_ok() {
        let chunk = vec![b'a'; 1_000_000];
        while sent < mb && long.write_all(&chunk).is_ok() {
            sent += 1;
        }
    }
    let mut answer = Vec::new();
    let _ = long.read_to_end(&mut answer);
    let status = String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .map_or("no answer".to_string(), |s| format!("answered {s}"));
    (sent, status)
}

fn main() -> Result<()> {
    color_eyre::install()?;
    let args = Args::parse();
    let gt = args
        .gt
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_gt")));
    // This process holds the connections: raise its own soft limit.
    let own = getrlimit(Resource::Nofile);
    if let Some(hard) = own.maximum {
        if hard < args.connections as u64 + 64 {
            bail!(
                "the hard descriptor limit ({hard}) is too low for {} connections",
                args.connections
            );
        }
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: own.maximum.map(|h| h.min(1 << 20)),
            maximum: own.maximum,
        },
    )?;
    let dir = tempfile::Builder::new().prefix("gt-bounds-").tempdir()?;
    let town = fs::canonicalize(dir.path())?;
    let d = start(&gt, &town, args.nofile, args.notify_mb)?;
    let mut n = 0;
    let mut rows = Vec::new();
    rows.push(row(&d, "idle", &mut n)?);

    let addr: SocketAddr = ([127, 0, 0, 1], d.port).into();
    let (sent, status) = endless_header(addr, args.header_mb);
    rows.push(row(
        &d,
        &format!(
            "a {} MB header line sent ({sent} MB taken, {status})",
            args.header_mb
        ),
        &mut n,
    )?);

    let mut held = Vec::with_capacity(args.connections);
    let mut refused = 0;
    while held.len() + refused < args.connections && refused < 20 {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => held.push(s),
            Err(_) => refused += 1,
        }
    }
    rows.push(row(
        &d,
        &format!(
            "{} idle connections held ({refused} not connected)",
            held.len()
        ),
        &mut n,
    )?);
    drop(held);
    std::thread::sleep(Duration::from_secs(1));
    rows.push(row(&d, "… and closed", &mut n)?);

    // Filing fails (a file where processed/ should be): notify_command
    // runs, prints its gigabyte and leaves two sleeps behind.
    let processed = town.join("daemon/processed");
    fs::rename(&processed, town.join("processed.aside"))?;
    fs::write(&processed, b"in the way")?;
    let log = town.join("daemon/daemon.log");
    let start = Instant::now();
    n += 1;
    publish(&town, n)?;
    while start.elapsed() < Duration::from_secs(120) {
        let text = fs::read_to_string(&log).unwrap_or_default();
        if text.contains("notification sent") || text.contains("notify_command failed") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = start.elapsed();
    fs::remove_file(&processed)?;
    fs::rename(town.join("processed.aside"), &processed)?;
    // The outcome kept while filing failed is filed now.
    let back = Instant::now();
    while healthz(d.port) != Some(200) && back.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    rows.push(row(
        &d,
        &format!(
            "notify_command printed {} MB ({:.1} s)",
            args.notify_mb,
            took.as_secs_f64()
        ),
        &mut n,
    )?);

    println!(
        "- gt: `{}`; daemon descriptor limit {}; load average {}",
        gt.display(),
        args.nofile,
        fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    );
    println!();
    println!("| after | threads | descriptors | RSS | peak RSS | GET /healthz | a request filed in | processes left by notify_command |");
    println!("|---|--:|--:|--:|--:|---|--:|--:|");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}
