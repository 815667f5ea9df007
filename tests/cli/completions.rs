//! `gt completions` and `gt man`.

use std::process::{Command, ExitStatus, Stdio};

use crate::support::proc::{KillOnDrop, Lines};
use crate::support::{bash_completions, gt_command, require_tool, run, DEADLINE};

fn completions(shell: &str) -> String {
    let mut cmd = gt_command();
    cmd.args(["completions", shell]);
    let out = run(cmd);
    out.assert_ok(&format!("gt completions {shell}"));
    out.stdout
}

#[test]
fn bash_script() {
    let script = completions("bash");
    assert!(script.contains("_gt()"), "no completion function");
    assert!(
        script.contains("complete -F _gt"),
        "not registered with complete"
    );
    assert!(script.contains("daemon"));
    for sub in ["start", "stop", "status", "logs", "send", "install"] {
        assert!(script.contains(sub), "{sub} missing");
    }
}

#[test]
fn bash_script_parses_and_completes() {
    if !require_tool("bash") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gt.bash");
    std::fs::write(&file, completions("bash")).unwrap();
    let mut check = Command::new("bash");
    check.arg("-n").arg(&file);
    run(check).assert_ok("bash -n");

    // Ask the function what `gt daemon s<TAB>` completes to.
    let words = bash_completions(
        completions("bash").as_bytes(),
        r#"COMP_WORDS=(gt daemon s); COMP_CWORD=2; COMP_LINE="gt daemon s"; COMP_POINT=${#COMP_LINE}
        _gt gt s daemon"#,
    );
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    for want in ["start", "stop", "status", "send"] {
        assert!(words.contains(&want), "{want} not offered: {words:?}");
    }
    assert!(!words.contains(&"logs"), "logs offered for `s`: {words:?}");
}

#[test]
fn zsh_script() {
    let script = completions("zsh");
    assert!(
        script.starts_with("#compdef gt"),
        "{}",
        &script[..script.len().min(80)]
    );
    assert!(script.contains("daemon"));
}

#[test]
fn fish_script() {
    let script = completions("fish");
    assert!(script.contains("complete -c gt"));
    assert!(script.contains("daemon"));
}

#[test]
fn unknown_shell_is_a_usage_error() {
    let mut cmd = gt_command();
    cmd.args(["completions", "tcsh"]);
    let out = run(cmd);
    assert_eq!(out.code, Some(2), "{out:#?}");
}

#[test]
fn man_page() {
    let mut cmd = gt_command();
    cmd.arg("man");
    let out = run(cmd);
    out.assert_ok("gt man");
    let page = out.stdout;
    assert!(page.contains(".TH"), "not roff");
    assert!(page.contains("gt"));
    assert!(page.contains("daemon"));
    if !require_tool("man") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gt.1");
    std::fs::write(&file, &page).unwrap();
    let mut man = Command::new("man");
    man.arg("-l")
        .arg(&file)
        .env("MANPAGER", "cat")
        .env("PAGER", "cat");
    let shown = run(man);
    shown.assert_ok("man -l");
    assert!(shown.stdout.contains("daemon"));
}

/// `gt completions bash` with stdout going to `stdout`, run to its end.
fn completions_into(stdout: impl Into<Stdio>) -> (ExitStatus, String) {
    let mut cmd = gt_command();
    cmd.args(["completions", "bash"])
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped());
    let mut child = KillOnDrop::spawn(cmd);
    let stderr = Lines::new(child.child().stderr.take().expect("stderr pipe"));
    let status = child
        .wait_exit(DEADLINE)
        .unwrap_or_else(|| panic!("gt completions bash still running after {DEADLINE:?}"));
    (status, collect(stderr))
}

/// Everything a child wrote to a [`Lines`] stream until it closed.
fn collect(mut lines: Lines) -> String {
    while lines.next(DEADLINE).is_some() {}
    lines.seen.join("\n")
}

#[test]
fn closed_stdout_is_not_an_error() {
    // `gt completions bash | head -1`: the reader left. Its end of the pipe
    // is closed before gt even starts, so gt's first write fails with EPIPE
    // for certain (closing it after the spawn would race with that write,
    // and a script that fits in the pipe buffer would never see EPIPE).
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let (status, stderr) = completions_into(writer);
    assert!(
        status.success(),
        "a reader that left is not an error: {status:?}, stderr {stderr:?}"
    );
    assert_eq!(stderr, "", "nothing to say about a reader that left");

    // The control: a write error that is not a closed pipe is reported, so
    // the success above is gt recognising EPIPE, not ignoring its writes.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full");
    let (status, stderr) = completions_into(full);
    assert!(
        !status.success() && stderr.contains("cannot write to stdout"),
        "writing to a full device must fail and say so: {status:?}, stderr {stderr:?}"
    );
}
