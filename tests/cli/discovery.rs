//! Town discovery from the working directory: only a directory that is
//! clearly a town is adopted; a plain `daemon/` (a Go package, say) is
//! left alone. `--town` and `GT_TOWN_ROOT` may still name a new town.

use std::fs;
use std::path::Path;

use crate::support::{gt_command, run, Out};

/// `gt ARGS` run from `cwd`, with no town named.
fn gt_in(cwd: &Path, args: &[&str]) -> Out {
    let mut cmd = gt_command();
    cmd.current_dir(cwd).args(args);
    run(cmd)
}

/// A Go project with a `daemon` package, and a directory inside it.
fn go_project() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("daemon")).unwrap();
    fs::write(root.join("daemon/daemon.go"), "package daemon\n").unwrap();
    fs::write(root.join("go.mod"), "module example.com/x\n").unwrap();
    let inside = root.join("cmd/x");
    fs::create_dir_all(&inside).unwrap();
    (dir, inside)
}

#[test]
fn a_plain_daemon_package_is_not_a_town() {
    let (dir, inside) = go_project();
    let out = gt_in(&inside, &["daemon", "start", "--dry-run"]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("no Gas Town found"), "{out:#?}");
    assert!(
        out.stderr
            .contains(&format!("{}/daemon", dir.path().display()))
            && out.stderr.contains("not a town's"),
        "the error names the daemon/ it passed over: {out:#?}"
    );
    assert!(
        out.stderr.contains("--town"),
        "and says how to name one: {out:#?}"
    );
    assert_eq!(
        crate::support::ls(&dir.path().join("daemon")),
        ["daemon.go"],
        "the package is left as it was"
    );
    let out = gt_in(&inside, &["daemon", "status"]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("no Gas Town found"), "{out:#?}");
}

#[test]
fn a_town_marker_or_the_daemons_own_files_make_a_town() {
    // mayor/town.json, as Gas Town's installer writes it.
    let (dir, inside) = go_project();
    fs::create_dir_all(dir.path().join("mayor")).unwrap();
    fs::write(
        dir.path().join("mayor/town.json"),
        r#"{"type":"town","version":2,"name":"x"}"#,
    )
    .unwrap();
    let out = gt_in(&inside, &["daemon", "status"]);
    assert_eq!(out.code, Some(3), "found, not running: {out:#?}");
    assert!(
        out.stdout.contains(&dir.path().display().to_string()),
        "{out:#?}"
    );

    // A daemon/ holding state.json (a town whose daemon ran).
    let (dir, inside) = go_project();
    fs::write(dir.path().join("daemon/state.json"), "{}").unwrap();
    let out = gt_in(&inside, &["daemon", "status"]);
    assert_eq!(out.code, Some(3), "{out:#?}");
    assert!(
        out.stdout.contains(&dir.path().display().to_string()),
        "{out:#?}"
    );
}

#[test]
fn the_environment_and_the_flag_may_still_name_a_new_town() {
    let (dir, inside) = go_project();
    let new = tempfile::tempdir().unwrap();
    let mut cmd = gt_command();
    cmd.current_dir(&inside)
        .env("GT_TOWN_ROOT", new.path())
        .args(["daemon", "status"]);
    let out = run(cmd);
    assert_eq!(out.code, Some(3), "{out:#?}");
    assert!(out.stdout.contains("from $GT_TOWN_ROOT"), "{out:#?}");
    let out = gt_in(
        &inside,
        &[
            "--town",
            &dir.path().display().to_string(),
            "daemon",
            "status",
        ],
    );
    assert_eq!(
        out.code,
        Some(3),
        "an explicit --town is the operator's word: {out:#?}"
    );
}
