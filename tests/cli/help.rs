//! Help with examples for every command, and a config mistake that names
//! the key instead of leaving the operator guessing.

use serde_json::json;

use crate::support::{gt_command, run, Out, Town};

const DAEMON_COMMANDS: [&str; 15] = [
    "start",
    "run",
    "stop",
    "restart",
    "check",
    "status",
    "logs",
    "send",
    "requests",
    "retry",
    "clear-backoff",
    "explain",
    "supervise",
    "install",
    "uninstall",
];

fn help(args: &[&str]) -> Out {
    let mut cmd = gt_command();
    cmd.args(args).env("NO_COLOR", "1");
    let out = run(cmd);
    out.assert_ok(&format!("gt {}", args.join(" ")));
    out
}

/// The names listed under "Commands:" in a clap help text.
fn listed_commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

fn assert_examples(args: &[&str]) {
    let out = help(args);
    let text = &out.stdout;
    let examples = text
        .find("Examples:")
        .unwrap_or_else(|| panic!("`gt {}` has no \"Examples:\":\n{text}", args.join(" ")));
    let after = &text[examples..];
    assert!(
        after
            .lines()
            .skip(1)
            .any(|l| l.trim_start().starts_with("gt ")),
        "`gt {}`: examples should show gt command lines:\n{text}",
        args.join(" ")
    );
}

#[test]
fn every_daemon_subcommand_has_examples_in_its_help() {
    for cmd in DAEMON_COMMANDS {
        assert_examples(&["daemon", cmd, "--help"]);
        // `-h` (the short help) is the same command; `help CMD` too.
        assert_examples(&["daemon", "help", cmd]);
    }
}

#[test]
fn the_list_of_daemon_subcommands_is_complete() {
    // A command added later must get examples too: the list above is
    // checked against what `gt daemon --help` lists.
    let listed = listed_commands(&help(&["daemon", "--help"]).stdout);
    assert_eq!(listed, DAEMON_COMMANDS, "update DAEMON_COMMANDS");
}

#[test]
fn top_level_and_other_commands_have_examples() {
    assert_examples(&["--help"]);
    assert_examples(&["completions", "--help"]);
    assert_examples(&["man", "--help"]);
}

#[test]
fn unknown_config_key_refuses_to_start_and_names_the_key() {
    let mut town = Town::new();
    town.config(json!({ "heartbeat_intervall": "1h" }));
    let out = town.gt(&["daemon", "start", "--dry-run"]);
    assert!(!out.success(), "start must fail: {out:#?}");
    assert!(
        out.all().contains("heartbeat_intervall"),
        "the output must name the key: {out:#?}"
    );
    assert!(!town.lock_held(), "no daemon may be left running");
    let v = town.status_json();
    assert_eq!(v["running"], false, "{v:#}");

    // The control: without the typo the same town starts.
    town.config(json!({ "heartbeat_interval": "1h" }));
    town.start_dry();
}

#[test]
fn bad_config_value_refuses_to_start_and_names_the_key() {
    let mut town = Town::new();
    town.config(json!({ "keep_failed": "a while" }));
    let out = town.gt(&["daemon", "start", "--dry-run"]);
    assert!(!out.success(), "start must fail: {out:#?}");
    assert!(
        out.all().contains("keep_failed"),
        "the output must name the key: {out:#?}"
    );
    assert!(!town.lock_held(), "no daemon may be left running");
}
