//! `gt daemon logs`: tail, errors, and following across rotation. No daemon
//! runs: the tests write daemon.log themselves, the way the daemon does.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::proc::{KillOnDrop, Lines};
use crate::support::{Town, DEADLINE};

fn numbered(prefix: &str, range: std::ops::RangeInclusive<usize>) -> String {
    range.map(|i| format!("{prefix} {i}\n")).collect()
}

fn append(file: &mut File, line: &str) {
    file.write_all(format!("{line}\n").as_bytes()).unwrap();
}

fn open_append(path: &Path) -> File {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap()
}

/// `gt daemon logs -f` with its stdout read line by line.
fn follow(town: &Town, extra: &[&str]) -> (KillOnDrop, Lines) {
    let mut cmd = town.command(&["daemon", "logs", "-f"]);
    cmd.args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = KillOnDrop::spawn(cmd);
    let lines = Lines::new(child.child().stdout.take().unwrap());
    (child, lines)
}

#[test]
fn prints_exactly_the_last_n_lines() {
    let t = Town::new();
    std::fs::write(t.log_file(), numbered("line", 1..=10)).unwrap();
    let out = t.gt(&["daemon", "logs", "-n", "3"]);
    out.assert_ok("gt daemon logs");
    assert_eq!(out.stdout, "line 8\nline 9\nline 10\n");

    let out = t.gt(&["daemon", "logs", "--lines", "0"]);
    out.assert_ok("gt daemon logs");
    assert_eq!(out.stdout, "");
}

#[test]
fn prints_50_lines_by_default() {
    let t = Town::new();
    std::fs::write(t.log_file(), numbered("line", 1..=80)).unwrap();
    let out = t.gt(&["daemon", "logs"]);
    out.assert_ok("gt daemon logs");
    assert_eq!(out.stdout, numbered("line", 31..=80));
}

#[test]
fn whole_file_when_shorter_and_no_final_newline() {
    let t = Town::new();
    std::fs::write(t.log_file(), "one\ntwo\nthree").unwrap();
    let out = t.gt(&["daemon", "logs", "-n", "10"]);
    assert_eq!(out.stdout, "one\ntwo\nthree");
    let out = t.gt(&["daemon", "logs", "-n", "2"]);
    assert_eq!(out.stdout, "two\nthree");
}

#[test]
fn large_file_with_lines_longer_than_a_block() {
    let t = Town::new();
    let long = "x".repeat(200 * 1024);
    let mut text = String::new();
    for i in 0..2000 {
        if i % 500 == 499 {
            text.push_str(&format!("{long} {i}\n"));
        } else {
            text.push_str(&format!(
                "2026-11-23T10:00:00Z INFO request {i} processed\n"
            ));
        }
    }
    std::fs::write(t.log_file(), &text).unwrap();
    let all: Vec<&str> = text.split_inclusive('\n').collect();
    for n in [1, 2, 3, 700] {
        let out = t.gt(&["daemon", "logs", "-n", &n.to_string()]);
        out.assert_ok("gt daemon logs");
        let want = all[all.len() - n..].concat();
        assert!(
            out.stdout == want,
            "-n {n}: wrong tail ({} bytes, want {})",
            out.stdout.len(),
            want.len()
        );
    }
}

#[test]
fn short_log_after_rotation_is_completed_from_log_1() {
    let t = Town::new();
    std::fs::write(t.rotated_log(1), "r1\nr2\nr3\nr4").unwrap();
    std::fs::write(t.log_file(), "c1\nc2\n").unwrap();
    let out = t.gt(&["daemon", "logs", "-n", "5"]);
    out.assert_ok("gt daemon logs");
    assert_eq!(out.stdout, "r2\nr3\nr4\nc1\nc2\n");
    // Enough lines in daemon.log: the rotated file is not read.
    let out = t.gt(&["daemon", "logs", "-n", "2"]);
    assert_eq!(out.stdout, "c1\nc2\n");
}

#[test]
fn missing_log_is_a_clear_error() {
    let t = Town::new();
    let out = t.gt(&["daemon", "logs"]);
    assert!(!out.success(), "{out:#?}");
    assert_eq!(out.stdout, "");
    let err = out.stderr;
    let path = t.log_file();
    assert!(
        err.contains(&format!("no log at {}", path.display())),
        "{err}"
    );
    assert!(
        err.contains("the daemon has not run in this town yet"),
        "{err}"
    );
    assert!(err.contains("gt daemon start"), "{err}");
}

#[test]
fn follow_waits_for_a_log_that_does_not_exist_yet() {
    let t = Town::new();
    let mut cmd = t.command(&["daemon", "logs", "-f", "-n", "1"]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = KillOnDrop::spawn(cmd);
    let mut lines = Lines::new(child.child().stdout.take().unwrap());
    let mut said = Lines::new(child.child().stderr.take().unwrap());
    // It says it waits (it used to fail at once) and keeps running; the
    // log then appears and every line of it is printed, not only the
    // last -n.
    let waiting = said.next(DEADLINE).unwrap_or_default();
    assert!(
        waiting.contains("no log at") && waiting.contains("waiting"),
        "{waiting:?}"
    );
    assert!(child.alive(), "follow ended instead of waiting");
    let mut log = open_append(&t.log_file());
    append(&mut log, "first");
    append(&mut log, "second");
    lines.expect(&["first", "second"]);
    append(&mut log, "third");
    lines.expect(&["third"]);
    assert!(child.alive(), "follow ended: {:?}", lines.seen);
}

#[test]
fn follows_appended_lines_and_rotation() {
    let t = Town::new();
    let path = t.log_file();
    std::fs::write(&path, numbered("old", 1..=5)).unwrap();
    let (_child, mut lines) = follow(&t, &["-n", "2"]);
    lines.expect(&["old 4", "old 5"]);

    let mut w = open_append(&path);
    append(&mut w, "live 1");
    lines.expect(&["live 1"]);
    append(&mut w, "live 2");
    append(&mut w, "live 3");
    lines.expect(&["live 2", "live 3"]);

    // Rotation as the daemon does it: rename, the last write still lands in
    // the old file, then a new daemon.log.
    std::fs::rename(&path, t.rotated_log(1)).unwrap();
    append(&mut w, "last old");
    let mut w = open_append(&path);
    append(&mut w, "new 1");
    append(&mut w, "new 2");
    lines.expect(&["last old", "new 1", "new 2"]);
    append(&mut w, "new 3");
    lines.expect(&["new 3"]);

    // And again, shifting .1 to .2.
    std::fs::rename(t.rotated_log(1), t.rotated_log(2)).unwrap();
    std::fs::rename(&path, t.rotated_log(1)).unwrap();
    append(&mut w, "last of second");
    drop(w);
    let mut w = open_append(&path);
    append(&mut w, "third 1");
    lines.expect(&["last of second", "third 1"]);
}

#[test]
fn follows_a_truncated_log_from_its_start() {
    let t = Town::new();
    let path = t.log_file();
    std::fs::write(&path, numbered("before", 1..=3)).unwrap();
    let (_child, mut lines) = follow(&t, &["-n", "1"]);
    lines.expect(&["before 3"]);
    // Truncate in place (same inode), as copytruncate does.
    let mut w = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    w.flush().unwrap();
    let mut w = open_append(&path);
    append(&mut w, "after");
    lines.expect(&["after"]);
}

#[test]
fn follow_with_zero_lines_prints_only_new_ones() {
    let t = Town::new();
    let path = t.log_file();
    std::fs::write(&path, numbered("old", 1..=3)).unwrap();
    let (_child, mut lines) = follow(&t, &["-n", "0"]);
    // Lines appended before the follower opened the file are not "new" to
    // it: append until one arrives; none may be an old line.
    let mut w = open_append(&path);
    let end = Instant::now() + DEADLINE;
    let mut i = 0;
    let first = loop {
        i += 1;
        append(&mut w, &format!("fresh {i}"));
        if let Some(line) = lines.next(Duration::from_millis(200)) {
            break line;
        }
        assert!(Instant::now() < end, "no line within {DEADLINE:?}");
    };
    assert!(first.starts_with("fresh "), "{first:?}");
    let k: usize = first["fresh ".len()..].parse().unwrap();
    let rest: Vec<String> = (k + 1..=i).map(|j| format!("fresh {j}")).collect();
    lines.expect(&rest.iter().map(String::as_str).collect::<Vec<_>>());
    append(&mut w, "final");
    lines.expect(&["final"]);
}

#[test]
fn follow_ends_cleanly_when_stdout_closes() {
    let t = Town::new();
    let path = t.log_file();
    std::fs::write(&path, "first\n").unwrap();
    let mut cmd = t.command(&["daemon", "logs", "-f"]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = KillOnDrop::spawn(cmd);
    let out = child.child().stdout.take().unwrap();
    let mut err = child.child().stderr.take().unwrap();
    // Read one line, then close the pipe (like `| head -1`).
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), "first\n");

    // The follower notices when it next writes: keep the log growing until
    // it exits.
    let mut w = open_append(&path);
    let end = Instant::now() + DEADLINE;
    let status = loop {
        append(&mut w, "more");
        if let Some(status) = child.wait_exit(Duration::from_millis(100)) {
            break status;
        }
        assert!(
            Instant::now() < end,
            "gt daemon logs -f kept running after its stdout closed"
        );
    };
    let mut msg = String::new();
    let _ = std::io::Read::read_to_string(&mut err, &mut msg);
    assert!(status.success(), "exit {status:?}; stderr: {msg}");
    assert_eq!(msg, "", "no error for a closed stdout");
}
