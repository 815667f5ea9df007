//! Nothing from outside exhausts the daemon: connections to the metrics
//! endpoint (idle by the hundred, a head that never ends, one that never
//! finishes), and `notify_command` (output by the hundred megabytes,
//! children in the background or in sessions of their own). Each test
//! holds the daemon to a bound read from `/proc` (threads, descriptors,
//! peak RSS), and to what must still work meanwhile: `/healthz` answers
//! and requests are filed.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use serde_json::{json, Value};

use super::metrics::{sample, town_with_metrics, wait_reply};
use crate::support::http::get;
use crate::support::proc::{self, alive, signal, status_number, wait_gone, Signal};
use crate::support::{read_lines, require, Town, DEADLINE};

/// The daemon's descriptor limit in these tests: what a systemd unit
/// gets by default (soft), and what made the old endpoint fall over.
const NOFILE: u64 = 1024;

/// Idle connections held at once: well past what [`NOFILE`] allows a
/// server that spends two descriptors and a thread on each.
const IDLE: usize = 700;

/// How much a daemon's peak RSS may grow under each attack (it idles at
/// about 7 MiB; the attacks offered it tens to hundreds of megabytes).
const RSS_SLACK_KIB: u64 = 10 * 1024;

/// One number from /proc/PID/status, in kB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, key: &str) -> u64 {
    status_number(pid, key).unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

fn threads(pid: u32) -> usize {
    proc::threads(pid).unwrap_or_else(|| panic!("cannot list /proc/{pid}/task"))
}

fn descriptors(pid: u32) -> usize {
    proc::descriptors(pid).unwrap_or_else(|| panic!("cannot list /proc/{pid}/fd"))
}

/// Starts the daemon (`extra` for `daemon start`) with its descriptor
/// limit, soft and hard, at `nofile`.
fn start_with_nofile(t: &Town, extra: &[&str], nofile: u64) -> u32 {
    let mut cmd = t.start_command(&[], extra);
    proc::limit_descriptors(&mut cmd, nofile);
    t.started(cmd)
}

/// Raises this test process's own descriptor limit so that it can hold
/// `n` connections beside what the other tests use; false (said loudly)
/// when the hard limit does not allow it.
fn room_for(n: usize) -> bool {
    let limit = getrlimit(Resource::Nofile);
    let want = n as u64 + 1024;
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if limit.current.unwrap_or(u64::MAX) < want && hard >= want {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(hard.min(1 << 20)),
                maximum: limit.maximum,
            },
        )
        .expect("raise the soft descriptor limit");
    }
    require(
        &format!("a descriptor limit of at least {want} for the test"),
        hard >= want,
    )
}

/// Opens up to `n` connections and holds them without a byte sent; stops
/// early once connecting fails three times (a server that stopped
/// accepting).
fn hold_idle(port: u16, n: usize) -> Vec<TcpStream> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut held = Vec::with_capacity(n);
    let mut failures = 0;
    while held.len() < n && failures < 3 {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            Ok(s) => held.push(s),
            Err(_) => failures += 1,
        }
    }
    held
}

#[test]
fn idle_connections_cost_no_thread_and_starve_no_request() {
    if !room_for(IDLE) {
        return;
    }
    let (t, port) = town_with_metrics(json!({}));
    let pid = start_with_nofile(&t, &[], NOFILE);
    t.wait_first_heartbeat();
    wait_reply(&t, port, "/healthz", |r| r.status == 200);
    let (threads_idle, fds_idle) = (threads(pid), descriptors(pid));

    let held = hold_idle(port, IDLE);
    // However many the daemon took, it holds a bounded number: no thread
    // each, and descriptors to spare for the work that matters.
    let (threads_held, fds_held) = (threads(pid), descriptors(pid));
    assert!(
        threads_held <= threads_idle + 4,
        "{} idle connections: {threads_held} threads, {threads_idle} before",
        held.len()
    );
    assert!(
        fds_held <= fds_idle + 40,
        "{} idle connections: {fds_held} descriptors, {fds_idle} before",
        held.len()
    );
    // Meanwhile the endpoint answers, and a request that needs tmux (and
    // so descriptors for its call) is executed and filed.
    let health = get(port, "/healthz").expect("GET /healthz while connections are held");
    assert_eq!(health.status, 200, "{health:?}");
    let out = t.send_wait("shutdown", "gastown/witness", &["--timeout", "20s"]);
    assert!(
        out.success(),
        "a request while {} connections are held: {out:#?}\n{}",
        held.len(),
        t.snapshot()
    );
    assert_eq!(held.len(), IDLE, "every connection was taken");
    drop(held);
    let health = get(port, "/healthz").expect("GET /healthz once they are gone");
    assert_eq!(health.status, 200, "{health:?}");
    assert!(
        !t.all_logs().contains("panicked"),
        "nothing panicked:\n{}",
        t.all_logs()
    );
}

#[test]
fn an_endless_header_line_and_a_stalled_head_are_cut_off() {
    let (t, port) = town_with_metrics(json!({}));
    let pid = t.start_dry();
    t.wait_first_heartbeat();
    wait_reply(&t, port, "/healthz", |r| r.status == 200);
    let peak_before = status_kib(pid, "VmHWM");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();

    // A head that starts and never ends.
    let mut stalled = TcpStream::connect(addr).expect("connect");
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .expect("write a partial head");

    // One header line of 64 MiB with no end.
    let mut long = TcpStream::connect(addr).expect("connect");
    long.set_write_timeout(Some(Duration::from_secs(10)))
        .expect("write timeout");
    long.write_all(b"GET /healthz HTTP/1.1\r\nX-Long: ")
        .expect("write the head's start");
    let chunk = vec![b'a'; 1 << 20];
    let mut sent = 0;
    for _ in 0..64 {
        if long.write_all(&chunk).is_err() {
            break;
        }
        sent += 1;
    }
    long.set_read_timeout(Some(DEADLINE)).expect("read timeout");
    let mut answer = Vec::new();
    let _ = long.read_to_end(&mut answer);
    if !answer.is_empty() {
        assert!(
            answer.starts_with(b"HTTP/1.1 431 "),
            "after {sent} MiB: {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    let peak = status_kib(pid, "VmHWM");
    assert!(
        peak <= peak_before + RSS_SLACK_KIB,
        "peak RSS {peak} kB after a {sent} MiB header line, {peak_before} kB before"
    );

    // The stalled head is given up on (closed, not answered).
    stalled
        .set_read_timeout(Some(DEADLINE))
        .expect("read timeout");
    let mut rest = Vec::new();
    match stalled.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest)),
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset,
            "a stalled head must be closed: {e}"
        ),
    }
    assert_eq!(get(port, "/healthz").expect("GET /healthz").status, 200);
}

/// Sends `head` as it is and returns the whole answer.
fn exchange(port: u16, head: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("read timeout");
    s.write_all(head).expect("write");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).expect("read the answer");
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn malformed_and_other_methods_are_answered_and_closed() {
    let (t, port) = town_with_metrics(json!({}));
    t.start_dry();
    wait_reply(&t, port, "/readyz", |r| r.status == 200);
    for (head, status) in [
        (&b"garbage\r\n\r\n"[..], "400"),
        (b"GET / HTTP/9.9\r\n\r\n", "400"),
        (b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n", "400"),
        (
            b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            "405",
        ),
        (b"GET /nothing HTTP/1.0\r\n\r\n", "404"),
    ] {
        let answer = exchange(port, head);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{:?} → {answer:?}",
            String::from_utf8_lossy(head)
        );
        assert!(answer.contains("\r\nConnection: close\r\n"), "{answer:?}");
    }
    let head = exchange(port, b"HEAD /readyz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head:?}");
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head:?}");
    let metrics = exchange(port, b"GET /metrics HTTP/1.0\n\n");
    assert!(
        metrics.starts_with("HTTP/1.1 200 ") && metrics.contains("\ngt_build_info{"),
        "{metrics:?}"
    );
}

#[test]
fn an_endpoint_that_fails_says_so_and_restarts() {
    let (t, port) = town_with_metrics(json!({}));
    t.start_hooked(&["--dry-run"], &[(gt::testing::ENDPOINT_PANIC_MS, "8000")]);
    wait_reply(&t, port, "/healthz", |r| r.status == 200);
    assert!(get(port, "/panic").is_err(), "the hook's route panics");
    let mut last = Value::Null;
    t.wait_until("status to say the endpoint is down", DEADLINE, || {
        last = t.status_json();
        last["status"] == "degraded"
    });
    assert!(
        last["degraded"]
            .as_array()
            .is_some_and(|d| d.iter().any(|r| r == "metrics endpoint not serving")),
        "{last}"
    );
    assert_eq!(t.gt(&["daemon", "status"]).code, Some(4), "degraded");
    t.wait_log_line("the log says so", |l| {
        l.contains("the metrics endpoint is not serving") && l.contains("restarting it in")
    });
    wait_reply(&t, port, "/healthz", |r| r.status == 200);
    t.wait_until("status to say running again", DEADLINE, || {
        t.status_json()["status"] == "running"
    });
}

/// A dry-run town whose outcomes cannot be filed (a file where
/// `processed/` should be), so the first request raises `filing_failing`
/// for `notify_command`.
fn town_failing_to_file(notify: Value, extra: Value) -> (Town, u16) {
    let mut config = json!({"notify_command": notify});
    if let (Value::Object(c), Value::Object(e)) = (&mut config, extra) {
        c.extend(e);
    }
    town_with_metrics(config)
}

fn break_filing(t: &Town) {
    fs::remove_dir_all(t.processed()).expect("remove processed/");
    fs::write(t.processed(), b"in the way").expect("a file in the way");
    t.send("cycle", "mayor");
}

/// The PIDs a notify command wrote, one a line, once there are `n`.
fn pids_written(t: &Town, file: &Path, n: usize) -> Vec<u32> {
    t.wait_until(&format!("{n} PIDs in {}", file.display()), DEADLINE, || {
        read_lines(file).len() >= n
    });
    read_lines(file)
        .iter()
        .map(|l| l.trim().parse().expect("a PID"))
        .collect()
}

/// SIGKILLs what a test's notify command started, should the daemon have
/// left it, so a failing test leaves nothing running.
struct KillAll(Vec<u32>);

impl Drop for KillAll {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if alive(pid) {
                signal(pid, Signal::KILL);
            }
        }
    }
}

#[test]
fn notify_output_is_read_and_dropped_not_kept() {
    // 200 MB on stdout and 50 MB on stderr, then a failure.
    let (t, port) = town_failing_to_file(
        json!([
            "sh",
            "-c",
            "head -c 200000000 /dev/zero; head -c 50000000 /dev/zero >&2; exit 3"
        ]),
        json!({}),
    );
    let pid = t.start_dry();
    t.wait_first_heartbeat();
    wait_reply(&t, port, "/healthz", |r| r.status == 200);
    let peak_before = status_kib(pid, "VmHWM");
    break_filing(&t);
    wait_reply(&t, port, "/metrics", |r| {
        sample(
            &r.body,
            r#"gt_notifications_total{event="filing_failing",result="failed"}"#,
        ) == Some(1.0)
    });
    let peak = status_kib(pid, "VmHWM");
    assert!(
        peak <= peak_before + RSS_SLACK_KIB,
        "peak RSS {peak} kB after 250 MB of notify_command output, {peak_before} kB before"
    );
    // Its failure is logged with a short excerpt of what it said.
    t.wait_log_line("the failure in the log", |l| {
        l.contains("notify_command failed") && l.contains("exited with")
    });
    let line = t
        .all_logs()
        .lines()
        .find(|l| l.contains("notify_command failed"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(line.len() < 2000, "an excerpt, not the output: {line}");
}

#[test]
fn nothing_a_notify_command_starts_outlives_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pids = dir.path().join("pids");
    // A background child, one in a session of its own with its output
    // elsewhere, and one whose parent exits at once (re-parented to init).
    let script = format!(
        "sleep 1001 & echo $! >> '{p}'; \
         setsid sleep 1002 </dev/null >/dev/null 2>&1 & echo $! >> '{p}'; \
         sh -c 'setsid sleep 1003 </dev/null >/dev/null 2>&1 & echo $! >> \"$0\"' '{p}'; \
         cat >/dev/null",
        p = pids.display()
    );
    let (t, port) = town_failing_to_file(json!(["sh", "-c", script]), json!({}));
    t.start_dry();
    break_filing(&t);
    let started = pids_written(&t, &pids, 3);
    let _cleanup = KillAll(started.clone());
    wait_reply(&t, port, "/metrics", |r| {
        sample(
            &r.body,
            r#"gt_notifications_total{event="filing_failing",result="sent"}"#,
        ) == Some(1.0)
    });
    assert!(
        wait_gone(&started, DEADLINE),
        "still alive after the command exited: {:?}",
        started.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
    );
}

#[test]
fn a_notify_command_still_running_ends_with_the_daemon() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pids = dir.path().join("pids");
    let script = format!(
        "echo $$ >> '{p}'; sleep 1004 & echo $! >> '{p}'; \
         setsid sleep 1005 </dev/null >/dev/null 2>&1 & echo $! >> '{p}'; wait",
        p = pids.display()
    );
    let (t, _port) = town_failing_to_file(
        json!(["sh", "-c", script]),
        json!({"notify_timeout": "10m"}),
    );
    let daemon = t.start_dry();
    break_filing(&t);
    let started = pids_written(&t, &pids, 3);
    let _cleanup = KillAll(started.clone());
    t.stop();
    assert!(!alive(daemon), "the daemon stopped");
    assert!(
        wait_gone(&started, Duration::from_secs(5)),
        "outlived the daemon: {:?}",
        started.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
    );
}
