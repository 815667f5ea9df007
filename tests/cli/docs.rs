//! Docs that ship with the binary: a man page per command, gt(1) holding
//! every page of docs/ (the configuration reference made from the table of
//! keys), config errors that point there, help that shows only the options
//! that apply, and agent names for `--from`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::support::{bash_completions, gt_command, require_tool, run, Out, Town};

fn gt(args: &[&str]) -> Out {
    let mut cmd = gt_command();
    cmd.args(args).env("NO_COLOR", "1");
    let out = run(cmd);
    out.assert_ok(&format!("gt {}", args.join(" ")));
    out
}

#[test]
fn man_writes_a_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = gt(&["man", "--dir", &dir.path().display().to_string()]);
    let mut written: Vec<String> = crate::support::ls(dir.path());
    written.sort();
    for page in [
        "gt.1",
        "gt-daemon.1",
        "gt-daemon-start.1",
        "gt-daemon-status.1",
        "gt-daemon-clear-backoff.1",
        "gt-completions.1",
        "gt-man.1",
    ] {
        assert!(
            written.contains(&page.to_string()),
            "{page} missing: {written:?}"
        );
        assert!(out.stdout.contains(page), "{page} not listed: {out:#?}");
    }
    // One page on stdout, by the command's words.
    let start = gt(&["man", "daemon", "start"]).stdout;
    assert!(start.contains(".TH gt-daemon-start 1"), "{start}");
    assert!(start.contains("dry\\-run"), "its options: {start}");
    let status = gt(&["man", "daemon", "status"]).stdout;
    assert!(
        status.contains("EXIT STATUS") && status.contains("degraded"),
        "{status}"
    );
    if !require_tool("man") {
        return;
    }
    let mut man = Command::new("man");
    man.arg("-l")
        .arg(dir.path().join("gt-daemon-start.1"))
        .env("MANPAGER", "cat")
        .env("PAGER", "cat");
    let shown = run(man);
    shown.assert_ok("man -l gt-daemon-start.1");
    assert!(shown.stdout.contains("--timeout"), "{shown:#?}");
}

#[test]
fn gt_1_holds_the_configuration_files_environment_and_exit_codes() {
    let page = gt(&["man"]).stdout;
    for section in [
        "REQUESTS",
        "OPERATIONS",
        "SUPERVISION",
        "MONITORING",
        "CONFIGURATION",
        "GUARANTEES",
        "FILES",
        "ENVIRONMENT",
        "EXIT STATUS",
    ] {
        assert!(
            page.contains(&format!(".SH {section}\n"))
                || page.contains(&format!(".SH \"{section}\"\n")),
            "{section} missing"
        );
    }
    for text in [
        "heartbeat_interval",
        "max_parallel",
        "1 to 256",
        "mayor_poke_text",
        "HEARTBEAT: check your rigs",
        "restart_state.json",
        "mayor/town.json",
        "GT_TOWN_ROOT",
        "124",
    ] {
        assert!(page.contains(text), "{text} missing from gt(1)");
    }
}

fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs")
}

/// The Markdown pages of docs/, by file name, with their text.
fn docs_pages() -> Vec<(String, String)> {
    let mut pages: Vec<(String, String)> = crate::support::ls(&docs_dir())
        .into_iter()
        .filter(|name| name.ends_with(".md"))
        .map(|name| {
            let text = std::fs::read_to_string(docs_dir().join(&name)).unwrap();
            (name, text)
        })
        .collect();
    pages.sort();
    assert!(pages.len() >= 7, "docs/ has lost pages: {pages:?}");
    pages
}

#[test]
fn docs_configuration_md_is_what_gt_man_makes_from_the_table_of_keys() {
    let made = gt(&["man", "--config-markdown"]).stdout;
    let written = std::fs::read_to_string(docs_dir().join("configuration.md")).unwrap();
    assert!(
        made == written,
        "docs/configuration.md is stale: cargo run -- man --config-markdown > docs/configuration.md"
    );
    for key in gt::config::keys::KEYS {
        assert!(
            made.contains(&format!("| `{}` |", key.name)),
            "{}",
            key.name
        );
    }
}

#[test]
fn gt_1_ships_every_page_of_docs() {
    let page = gt(&["man"]).stdout;
    for (name, text) in docs_pages() {
        // Every heading under the page's title is a subsection of gt(1):
        // a page missing from `gt man`, or one shipped from another text,
        // fails here.
        let headings: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("## ")).collect();
        for heading in headings {
            let roff = heading.replace('`', "").replace('-', "\\-");
            let shown = [format!(".SS \"{roff}\""), format!(".SS {roff}")];
            assert!(
                shown.iter().any(|s| page.contains(s.as_str())),
                "docs/{name}: \"{heading}\" is not in gt(1)"
            );
        }
        // And the longest plain run of its first paragraph, as a check on
        // pages with no subsections.
        let first = text
            .split("\n\n")
            .find(|p| !p.starts_with('#') && !p.starts_with("<!--") && !p.starts_with("```"))
            .unwrap_or_else(|| panic!("docs/{name} has no paragraph"));
        let run = first
            .split(['`', '*', '[', ']', '(', ')'])
            .max_by_key(|r| r.len())
            .unwrap()
            .trim()
            .replace('\n', " ")
            .replace('-', "\\-")
            .replace('\'', "\\*(Aq");
        assert!(run.len() > 20, "docs/{name}: {run:?}");
        assert!(page.contains(&run), "docs/{name}: {run:?} is not in gt(1)");
    }
}

#[test]
fn links_between_docs_lead_somewhere() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = docs_pages();
    pages.push((
        "../README.md".into(),
        std::fs::read_to_string(root.join("README.md")).unwrap(),
    ));
    for (name, text) in pages {
        for target in text.split("](").skip(1).filter_map(|t| t.split(')').next()) {
            if target.contains("://") || target.starts_with('#') {
                continue;
            }
            let file = target.split('#').next().unwrap();
            let path = docs_dir().join(&name).parent().unwrap().join(file);
            assert!(
                path.exists(),
                "docs/{name}: the link to {target} leads nowhere"
            );
        }
    }
}

#[test]
fn man_renders_gt_1_without_a_warning() {
    if !require_tool("man") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gt.1"), gt(&["man"]).stdout).unwrap();
    let mut man = Command::new("man");
    man.args(["--warnings", "-l"])
        .arg(dir.path().join("gt.1"))
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("MANWIDTH", "100");
    let shown = run(man);
    shown.assert_ok("man -l gt.1");
    assert_eq!(shown.stderr, "", "{shown:#?}");
    for text in ["heartbeat_interval", "Reloading config.json", "gt_agent_up"] {
        assert!(shown.stdout.contains(text), "{text} not shown");
    }
}

#[test]
fn a_config_error_points_at_the_manual_not_the_readme() {
    let mut town = Town::new();
    town.config(json!({ "max_parallel": 0 }));
    let out = town.gt(&["daemon", "start", "--dry-run"]);
    assert!(!out.success(), "{out:#?}");
    assert!(out.all().contains("max_parallel"), "{out:#?}");
    assert!(out.all().contains("gt man"), "{out:#?}");
    assert!(
        !out.all().contains("README"),
        "installed users have no README: {out:#?}"
    );
}

/// The options a help text lists under `heading` (up to the next heading).
fn options_under(help: &str, heading: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim_end() != heading)
        .skip(1)
        .take_while(|l| l.starts_with(' ') || l.is_empty())
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("--")))
        .map(|w| w.trim_end_matches(',').to_string())
        .collect()
}

#[test]
fn help_shows_only_the_options_that_apply_and_global_ones_apart() {
    let status = gt(&["daemon", "status", "--help"]).stdout;
    assert_eq!(
        options_under(&status, "Global options:"),
        ["--town"],
        "{status}"
    );
    assert!(
        !status.contains("--log-level"),
        "status runs no daemon: {status}"
    );
    let start = gt(&["daemon", "start", "--help"]).stdout;
    let own = options_under(&start, "Options:");
    for flag in ["--dry-run", "--timeout", "--log-level", "--log-format"] {
        assert!(own.contains(&flag.to_string()), "{flag}: {start}");
    }
    let completions = gt(&["completions", "--help"]).stdout;
    assert!(!completions.contains("--town"), "{completions}");
    // Both spellings still parse.
    let town = Town::new();
    town.gt(&[
        "daemon",
        "status",
        "--town",
        &town.root().display().to_string(),
    ]);
}

#[test]
fn from_completes_agent_names() {
    if !require_tool("bash") {
        return;
    }
    let town = Town::new();
    std::fs::create_dir_all(town.root().join("gastown/witness")).unwrap();
    std::fs::create_dir_all(town.root().join("mayor")).unwrap();
    std::fs::write(town.root().join("mayor/town.json"), "{}").unwrap();
    let mut cmd = gt_command();
    cmd.current_dir(town.root()).args(["completions", "bash"]);
    let script = run(cmd);
    script.assert_ok("completions bash");
    let words = bash_completions(
        script.stdout.as_bytes(),
        r#"COMP_WORDS=(gt daemon send cycle --from ""); COMP_CWORD=5
        COMP_LINE="gt daemon send cycle --from "; COMP_POINT=${#COMP_LINE}
        _gt gt "" --from"#,
    );
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    for want in ["mayor", "deacon", "gastown/witness", "gastown/refinery"] {
        assert!(words.contains(&want), "{want} not offered: {words:?}");
    }
}
