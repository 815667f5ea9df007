//! Nothing from outside exhausts the daemon: connections to the metrics
//! endpoint (idle by the hundred, a head that never ends, one that never
//! finishes). Each test holds the daemon to a bound read from `/proc`
//! (threads, descriptors, peak RSS), and to what must still work
//! meanwhile: `/healthz` answers and requests are filed.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::time::Duration;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use serde_json::{json, Value};

use super::metrics::{town_with_metrics, wait_reply};
use crate::support::http::get;
use crate::support::{require, Town, DEADLINE};

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
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

fn count_dir(dir: String) -> usize {
    fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .count()
}

fn threads(pid: u32) -> usize {
    count_dir(format!("/proc/{pid}/task"))
}

fn descriptors(pid: u32) -> usize {
    count_dir(format!("/proc/{pid}/fd"))
}

/// Starts the daemon (`extra` for `daemon start`) with its descriptor
/// limit, soft and hard, at `nofile`.
fn start_with_nofile(t: &Town, extra: &[&str], nofile: u64) -> u32 {
    let mut cmd = t.start_command(&[], extra);
    let limit = Rlimit {
        current: Some(nofile),
        maximum: Some(nofile),
    };
    // SAFETY: setrlimit is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            setrlimit(Resource::Nofile, limit)?;
            Ok(())
        });
    }
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
