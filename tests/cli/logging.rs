//! The daemon's log for pipelines and debugging: `--log-format json`
//! (one object per line), `--log-level` and `RUST_LOG`.

use serde_json::Value;

use crate::support::{file_name, read_lines, Town};

/// `gt [GLOBAL...] daemon start --dry-run` with extra environment.
fn start_dry_env(town: &Town, global: &[&str], env: &[(&str, &str)]) -> u32 {
    let mut cmd = town.start_command(global, &["--dry-run"]);
    cmd.envs(env.iter().copied());
    town.started(cmd)
}

/// Sends a `shutdown` and waits for its outcome; returns the file name.
fn one_processed(town: &Town) -> String {
    let out = town.send_wait("shutdown", "mayor", &["--timeout", "20s"]);
    assert_eq!(out.code, Some(0), "{out:#?}");
    file_name(&out.sent_path())
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let town = Town::new();
    start_dry_env(&town, &["--log-format", "json"], &[]);
    let name = one_processed(&town);
    town.stop_and_flush();

    let lines = read_lines(&town.log_file());
    assert!(lines.len() >= 3, "start, outcome, stop: {lines:#?}");
    let mut outcome = None;
    for line in &lines {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line:?}\n{lines:#?}"));
        assert!(v.is_object(), "not an object: {line}");
        assert!(v["level"].is_string(), "no level: {line}");
        assert!(v["fields"].is_object(), "no fields: {line}");
        assert!(v["timestamp"].is_string(), "no timestamp: {line}");
        if v["fields"]["file"] == name.as_str() {
            outcome = Some(v);
        }
    }
    let outcome = outcome.unwrap_or_else(|| panic!("no line with file {name}: {lines:#?}"));
    assert_eq!(outcome["level"], "INFO", "{outcome:#}");
    assert_eq!(outcome["fields"]["action"], "shutdown", "{outcome:#}");
    assert_eq!(outcome["fields"]["from"], "mayor", "{outcome:#}");
    assert_eq!(outcome["fields"]["result"], "processed", "{outcome:#}");
}

#[test]
fn log_format_text_is_not_json() {
    // The control for the test above: the default format is plain text.
    let town = Town::new();
    start_dry_env(&town, &[], &[]);
    let name = one_processed(&town);
    town.wait_log_line("the outcome line", |l| l.contains(&name));
    let lines = read_lines(&town.log_file());
    let line = lines.iter().find(|l| l.contains(&name)).unwrap();
    assert!(
        serde_json::from_str::<Value>(line).is_err(),
        "text format: {line}"
    );
    assert!(line.contains("INFO"), "{line}");
}

fn debug_lines(town: &Town) -> Vec<String> {
    read_lines(&town.log_file())
        .into_iter()
        .filter(|l| l.contains("DEBUG"))
        .collect()
}

/// With the default level (info) no debug line is written; the heartbeat's
/// debug line appears with `--log-level debug`.
#[test]
fn log_level_debug_adds_debug_lines_that_the_default_leaves_out() {
    let quiet = Town::new();
    start_dry_env(&quiet, &[], &[]);
    quiet.wait_first_heartbeat();
    let name = one_processed(&quiet);
    quiet.stop_and_flush();
    let log = read_lines(&quiet.log_file());
    assert!(
        log.iter().any(|l| l.contains(&name)),
        "the info line is there: {log:#?}"
    );
    assert_eq!(debug_lines(&quiet), Vec::<String>::new(), "{log:#?}");

    let loud = Town::new();
    start_dry_env(&loud, &["--log-level", "debug"], &[]);
    loud.wait_log_line("a DEBUG heartbeat line", |l| {
        l.contains("DEBUG") && l.contains("heartbeat")
    });
}

#[test]
fn rust_log_sets_the_level_when_log_level_is_not_given() {
    let town = Town::new();
    start_dry_env(&town, &[], &[("RUST_LOG", "debug")]);
    town.wait_log_line("a DEBUG line under RUST_LOG=debug", |l| l.contains("DEBUG"));

    // --log-level wins over RUST_LOG.
    let town = Town::new();
    start_dry_env(&town, &["--log-level", "info"], &[("RUST_LOG", "debug")]);
    town.wait_first_heartbeat();
    one_processed(&town);
    town.stop_and_flush();
    assert_eq!(
        debug_lines(&town),
        Vec::<String>::new(),
        "--log-level info must override RUST_LOG=debug"
    );
}
