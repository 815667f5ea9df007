//! What systemd sees of the daemon: SIGHUP (`systemctl reload`) reloads
//! config.json, refusing an invalid one; READY, STATUS, WATCHDOG,
//! RELOADING and STOPPING arrive on NOTIFY_SOCKET.

use std::collections::VecDeque;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::command::{program_command, GT};
use crate::support::proc::{signal, KillOnDrop, Signal};
use crate::support::{file_name, request_at, require_tool, Town, DEADLINE};

/// A request timestamped `hours` ago.
fn aged(from: &str, action: &str, hours: i64) -> String {
    request_at(
        from,
        action,
        &(chrono::Utc::now() - chrono::Duration::hours(hours)).to_rfc3339(),
    )
}

fn daemon_pid(town: &Town) -> u32 {
    town.status_json()["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no daemon running\n{}", town.snapshot())) as u32
}

#[test]
fn sighup_reloads_the_config_and_refuses_an_invalid_one() {
    let mut t = Town::new();
    let pid = t.start_dry();
    // Under the default max_request_age (6h) a 2h-old request is fresh.
    t.publish("fresh.json", aged("mayor", "shutdown", 2));
    t.wait_processed("fresh.json");

    t.config(json!({"max_request_age": "1h"}));
    signal(pid, Signal::HUP);
    t.wait_log_line("the reload line", |l| {
        l.contains("config reloaded") && l.contains("max_request_age")
    });
    assert!(
        t.lock_held() && daemon_pid(&t) == pid,
        "SIGHUP must not stop the daemon\n{}",
        t.snapshot()
    );
    t.publish("stale.json", aged("mayor", "shutdown", 2));
    t.wait_failed_with("stale.json", "limit 1h");

    // An invalid config is refused with its reason; the running one stays.
    t.config(json!({"max_request_age": "soon"}));
    signal(pid, Signal::HUP);
    t.wait_log_line("the refusal", |l| {
        l.contains("ERROR") && l.contains("config reload refused") && l.contains("max_request_age")
    });
    t.publish("still-stale.json", aged("mayor", "shutdown", 2));
    t.wait_failed_with("still-stale.json", "limit 1h");

    // A key only a start reads: said so, and the running value kept.
    t.config(json!({"max_request_age": "1h", "watch_mode": "poll"}));
    signal(pid, Signal::HUP);
    t.wait_log_line("the restart-only warning", |l| {
        l.contains("WARN") && l.contains("next start") && l.contains("watch_mode")
    });
    assert_eq!(daemon_pid(&t), pid);
    assert_eq!(t.status_json()["running"], true);
}

/// Datagrams systemd would receive, as "KEY=VALUE" lines.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    /// Lines received and not yet looked at, and all lines looked at.
    unread: VecDeque<String>,
    seen: Vec<String>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        NotifySocket {
            socket,
            path,
            unread: VecDeque::new(),
            seen: Vec::new(),
        }
    }

    /// Reads until a message line satisfies `pred`; panics at the deadline.
    fn wait(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + DEADLINE;
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            while let Some(line) = self.unread.pop_front() {
                self.seen.push(line.clone());
                if pred(&line) {
                    return line;
                }
            }
            if let Ok(n) = self.socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.unread.extend(text.lines().map(str::to_string));
            }
        }
        panic!("no {what} within {DEADLINE:?}; received {:#?}", self.seen);
    }
}

/// `gt daemon run EXTRA...` as systemd runs it: NOTIFY_SOCKET, and a
/// watchdog of `watchdog` (WATCHDOG_PID is the daemon's own PID: `exec`).
fn under_systemd(
    t: &Town,
    notify: &NotifySocket,
    watchdog: Duration,
    extra: &[&str],
) -> KillOnDrop {
    let mut cmd: Command = program_command("sh");
    cmd.args(["-c", "WATCHDOG_PID=$$ exec \"$@\"", "sh", GT, "--town"])
        .arg(t.root())
        .args(["daemon", "run"])
        .args(extra)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", watchdog.as_micros().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    KillOnDrop::spawn(cmd)
}

#[test]
fn systemd_hears_ready_status_watchdog_reloading_and_stopping() {
    let t = Town::new();
    let mut sd = NotifySocket::bind(t.root());
    let mut daemon = under_systemd(&t, &sd, Duration::from_secs(2), &["--dry-run"]);
    sd.wait("READY=1", |l| l == "READY=1");
    sd.wait("an idle status", |l| l == "STATUS=dry run: idle, 0 pending");
    // Half the watchdog interval apart: two pings within a few seconds.
    sd.wait("WATCHDOG=1", |l| l == "WATCHDOG=1");
    sd.wait("another WATCHDOG=1", |l| l == "WATCHDOG=1");

    signal(daemon.pid(), Signal::HUP);
    sd.wait("RELOADING=1", |l| l == "RELOADING=1");
    sd.wait("the reload's timestamp", |l| {
        l.starts_with("MONOTONIC_USEC=")
    });
    sd.wait("READY=1 after the reload", |l| l == "READY=1");

    signal(daemon.pid(), Signal::TERM);
    sd.wait("STOPPING=1", |l| l == "STOPPING=1");
    assert!(daemon.wait_exit(DEADLINE).is_some_and(|s| s.success()));
}

#[test]
fn the_status_line_names_the_request_in_execution() {
    if !require_tool("tmux") {
        return;
    }
    let mut t = Town::new();
    // Long enough for the status line (refreshed every second) to see it.
    t.config(json!({"prime_delay": "3s"}));
    let mut sd = NotifySocket::bind(t.root());
    let _daemon = under_systemd(&t, &sd, Duration::from_secs(60), &[]);
    sd.wait("an idle status", |l| l == "STATUS=idle, 0 pending");
    let name = file_name(&t.send("restart", "mayor"));
    sd.wait("the restart in the status", |l| {
        l.starts_with("STATUS=executing restart for mayor")
    });
    t.wait_processed(&name);
    sd.wait("idle again", |l| l.starts_with("STATUS=idle"));
}
