//! Where the daemon's log goes under a service manager (journald's stream,
//! any stderr systemd reads, `--log-stderr`), and a condition the
//! heartbeat finds again and again, logged when it begins and ends.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Stdio;

use serde_json::json;

use crate::support::command::GT;
use crate::support::proc::{signal, KillOnDrop, Signal};
use crate::support::{read_lines, require_tool, Town, DEADLINE};

fn count_lines(town: &Town, needle: &str) -> usize {
    read_lines(&town.log_file())
        .iter()
        .filter(|l| l.contains(needle))
        .count()
}

/// `gt daemon run --dry-run EXTRA...` in the foreground, its stderr into a
/// file; `env` on top of the clean environment.
fn foreground(t: &Town, extra: &[&str], env: &[(&str, &str)], stderr: &Path) -> KillOnDrop {
    let mut cmd = t.command(&["daemon", "run", "--dry-run"]);
    cmd.args(extra)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(stderr)
                .unwrap(),
        );
    KillOnDrop::spawn(cmd)
}

/// Lets the daemon serve one request, then stops it with SIGTERM and waits
/// for it to exit; returns what it wrote on stderr.
fn serve_one_and_stop(t: &Town, mut daemon: KillOnDrop, stderr: &Path) -> String {
    t.wait_until("the daemon up", DEADLINE, || {
        t.lock_held() && t.try_state().is_some_and(|s| s["running"] == true)
    });
    let out = t.send_wait("shutdown", "mayor", &["--timeout", "20s"]);
    assert_eq!(out.code, Some(0), "{out:#?}");
    signal(daemon.pid(), Signal::TERM);
    let status = daemon
        .wait_exit(DEADLINE)
        .expect("the daemon exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    fs::read_to_string(stderr).unwrap()
}

#[test]
fn under_journald_the_log_goes_to_stderr_with_priorities() {
    let t = Town::new();
    let err = t.root().join("stderr");
    fs::write(&err, b"").unwrap();
    let meta = fs::metadata(&err).unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let daemon = foreground(&t, &[], &[("JOURNAL_STREAM", &stream)], &err);
    let text = serve_one_and_stop(&t, daemon, &err);

    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<6>INFO ") && l.contains("daemon started")),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.contains("request processed")),
        "{text}"
    );
    assert!(lines.iter().any(|l| l.contains("daemon stopped")), "{text}");
    for line in &lines {
        let ok = [
            ("<3>", "ERROR "),
            ("<4>", "WARN "),
            ("<6>", "INFO "),
            ("<7>", "DEBUG "),
        ]
        .iter()
        .any(|(prio, level)| line.starts_with(&format!("{prio}{level}")));
        assert!(ok, "not <priority>LEVEL: {line:?}");
        // (journald timestamps each line itself: none before the level.)
        assert!(!line.contains('\u{1b}'), "colour in the journal: {line:?}");
    }
    // daemon.log has them too.
    assert!(t.all_logs().contains("request processed"));
}

#[test]
fn under_systemd_or_with_log_stderr_the_log_goes_to_stderr_plainly() {
    let plain = |env: &[(&str, &str)], extra: &[&str]| {
        let t = Town::new();
        let err = t.root().join("stderr");
        let daemon = foreground(&t, extra, env, &err);
        serve_one_and_stop(&t, daemon, &err)
    };
    for (what, text) in [
        (
            "INVOCATION_ID",
            plain(&[("INVOCATION_ID", "0123abcd")], &[]),
        ),
        ("--log-stderr", plain(&[], &["--log-stderr"])),
    ] {
        let started = text.lines().find(|l| l.contains("daemon started"));
        let started = started.unwrap_or_else(|| panic!("{what}: no start line on stderr: {text}"));
        assert!(started.contains(" INFO "), "{what}: level: {started}");
        assert!(started.starts_with("20"), "{what}: a timestamp: {started}");
        assert!(
            !text.contains('\u{1b}') && !text.contains("<6>"),
            "{what}: {text}"
        );
    }

    // The control: stderr of a program that started us (not a terminal,
    // not journald's stream: this one names another file) gets nothing.
    let other = fs::metadata(GT).unwrap();
    let stream = format!("{}:{}", other.dev(), other.ino());
    let text = plain(&[("JOURNAL_STREAM", &stream)], &[]);
    assert_eq!(text, "", "nothing on a stderr nobody reads as a log");
}

#[test]
fn a_missing_tmux_server_is_logged_when_it_begins_and_ends_not_every_beat() {
    if !require_tool("tmux") {
        return;
    }
    let mut t = Town::new();
    t.config(json!({"heartbeat_interval": "1s"}));
    t.start();
    const NO_SERVER: &str = "no tmux server is running";
    t.wait_until("four heartbeats", DEADLINE, || {
        t.state_u64("heartbeat_count") >= 4
    });
    assert_eq!(count_lines(&t, NO_SERVER), 1, "{}", t.snapshot());

    // A server appears: said once; it goes away: said once more.
    t.tmux.new_session("other", &["sleep", "600"]);
    t.wait_log_line("the end of the condition", |l| l.contains("pokes resume"));
    t.tmux.run(&["kill-server"]);
    t.wait_until("the condition logged again", DEADLINE, || {
        count_lines(&t, NO_SERVER) == 2
    });
    let beats = t.state_u64("heartbeat_count");
    t.wait_until("three more heartbeats", DEADLINE, || {
        t.state_u64("heartbeat_count") >= beats + 3
    });
    assert_eq!(count_lines(&t, NO_SERVER), 2, "{}", t.snapshot());
    assert_eq!(count_lines(&t, "pokes resume"), 1);
}
