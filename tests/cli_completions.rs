//! `gt completions` and `gt man`.

mod common_leaf;

use std::process::{Command, Stdio};

use common_leaf::{gt, stderr, stdout};

fn completions(shell: &str) -> String {
    let out = gt().args(["completions", shell]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

fn has_bash() -> bool {
    Command::new("bash")
        .arg("-c")
        .arg("true")
        .status()
        .is_ok_and(|s| s.success())
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
    if !has_bash() {
        eprintln!("bash not found; skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gt.bash");
    std::fs::write(&file, completions("bash")).unwrap();
    let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(check.status.success(), "bash -n: {}", stderr(&check));

    // Ask the function what `gt daemon s<TAB>` completes to.
    let probe = r#"
        source "$1"
        COMP_WORDS=(gt daemon s); COMP_CWORD=2; COMP_LINE="gt daemon s"; COMP_POINT=${#COMP_LINE}
        _gt gt s daemon
        printf '%s\n' "${COMPREPLY[@]}"
    "#;
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", probe, "probe"])
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let words: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    for want in ["start", "stop", "status", "send"] {
        assert!(
            words.iter().any(|w| w == want),
            "{want} not offered: {words:?}"
        );
    }
    assert!(
        !words.iter().any(|w| w == "logs"),
        "logs offered for `s`: {words:?}"
    );
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
    let out = gt().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn man_page() {
    let out = gt().arg("man").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.contains(".TH"), "not roff");
    assert!(page.contains("gt"));
    assert!(page.contains("daemon"));
    if Command::new("man")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gt.1");
        std::fs::write(&file, &page).unwrap();
        let shown = Command::new("man")
            .arg("-l")
            .arg(&file)
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .output()
            .unwrap();
        assert!(shown.status.success(), "man -l: {}", stderr(&shown));
        assert!(stdout(&shown).contains("daemon"));
    }
}

#[test]
fn closed_stdout_is_not_an_error() {
    // `gt completions bash | head -1`: the reader leaves early.
    let mut child = gt()
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}: {}", out.status, stderr(&out));
}
