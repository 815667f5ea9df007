//! `gt man`: the manual pages, generated from the clap definitions (so they
//! never drift from the real command line), plus what only a page can
//! hold: gt(1) carries the reference of docs/ (requests, operations,
//! supervision, monitoring, configuration, guarantees, files), the
//! environment and the exit codes. Installed users have no repository.
mod markdown;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;
use color_eyre::eyre::{bail, WrapErr};

use crate::cli::Cli;
use crate::config::keys;

pub const AFTER_HELP: &str = "\
Examples:
  gt man | man -l -                       read gt(1)
  gt man daemon start                     the page of one command
  gt man --dir ~/.local/share/man/man1    install every page (then: man gt-daemon-status)
  gt man --config-markdown                the configuration reference (docs/configuration.md)";

/// Print a manual page, or write them all.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The command whose page to print, as typed after `gt` (e.g. `daemon
    /// start`); default gt(1).
    #[arg(value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Write every page into DIR (gt.1, gt-daemon.1, gt-daemon-start.1, ...)
    /// and print their paths.
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath, conflicts_with = "command")]
    pub dir: Option<PathBuf>,
    /// Print the configuration reference as Markdown, as
    /// docs/configuration.md holds it (made from the table of keys).
    #[arg(long, conflicts_with_all = ["command", "dir"])]
    pub config_markdown: bool,
}

pub fn run(args: Args) -> color_eyre::Result<ExitCode> {
    if args.config_markdown {
        return super::completions::emit(keys::markdown().as_bytes());
    }
    let pages = pages().wrap_err("cannot render the manual pages")?;
    if let Some(dir) = args.dir {
        std::fs::create_dir_all(&dir)
            .wrap_err_with(|| format!("cannot create {}", dir.display()))?;
        let mut out = std::io::stdout().lock();
        for (name, page) in &pages {
            let path = dir.join(format!("{name}.1"));
            std::fs::write(&path, page)
                .wrap_err_with(|| format!("cannot write {}", path.display()))?;
            writeln!(out, "{}", path.display())?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let wanted = std::iter::once("gt")
        .chain(args.command.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("-");
    let Some((_, page)) = pages.iter().find(|(name, _)| *name == wanted) else {
        bail!(
            "no manual page {wanted}(1); pages: {}",
            pages
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    super::completions::emit(page)
}

/// Every page, named without its section: `gt`, `gt-daemon`,
/// `gt-daemon-start`, ...
pub fn pages() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    collect(&cmd, &mut pages)?;
    Ok(pages)
}

fn collect(cmd: &clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> std::io::Result<()> {
    let name = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string();
    pages.push((name.clone(), page(cmd, &name)?));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, pages)?;
    }
    Ok(())
}

/// One page: clap_mangen's sections, the help's notes and examples, and
/// for gt(1) the reference sections.
fn page(cmd: &clap::Command, name: &str) -> std::io::Result<Vec<u8>> {
    let man = Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut out)?;
    }
    let mut roff = Roff::default();
    if let Some(notes) = cmd.get_after_long_help().or_else(|| cmd.get_after_help()) {
        roff.control("SH", ["NOTES"]);
        verbatim(&mut roff, &notes.to_string());
    }
    if name == "gt" {
        reference(&mut roff);
        environment(&mut roff);
    }
    exit_status(&mut roff, name);
    roff.control("SH", ["SEE ALSO"]);
    if name == "gt" {
        let mut pages = Vec::new();
        see_also(cmd, &mut pages);
        roff.text([roman(pages.join(", "))]);
    } else {
        roff.text([roman("gt(1)")]);
    }
    roff.to_writer(&mut out)?;
    Ok(out)
}

fn see_also(cmd: &clap::Command, pages: &mut Vec<String>) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_display_name().unwrap_or_else(|| sub.get_name());
        pages.push(format!("{name}(1)"));
        see_also(sub, pages);
    }
}

/// Lines kept as they are (help text is laid out by hand).
fn verbatim(roff: &mut Roff, text: &str) {
    roff.control("nf", []);
    for line in text.lines() {
        roff.text([roman(line)]);
    }
    roff.control("fi", []);
}

/// A `.TP` entry: a bold term, then its description.
fn entry(roff: &mut Roff, term: &str, description: &str) {
    roff.control("TP", []);
    roff.text([bold(term)]);
    roff.text([roman(description)]);
}

/// A page of docs/: its section title, its file name, and its text.
macro_rules! page {
    ($section:literal, $file:literal) => {
        (
            $section,
            $file,
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/", $file)),
        )
    };
}

/// The reference pages of docs/, each a section of gt(1) in this order,
/// between the clap-made sections and ENVIRONMENT. docs/configuration.md
/// is made from the table of keys ([`keys::markdown`]) and so rendered from
/// that table here. A test holds this list to the files in docs/.
pub const REFERENCE: [(&str, &str, &str); 7] = [
    page!("REQUESTS", "requests.md"),
    page!("OPERATIONS", "operations.md"),
    page!("SUPERVISION", "supervision.md"),
    page!("AGENTS", "agents.md"),
    page!("MONITORING", "monitoring.md"),
    page!("GUARANTEES", "guarantees.md"),
    page!("FILES", "town.md"),
];

/// The section of gt(1) that docs/configuration.md is.
pub const CONFIGURATION: &str = "CONFIGURATION";

fn reference(roff: &mut Roff) {
    for (section, _, text) in REFERENCE {
        if section == "FILES" {
            roff.control("SH", [CONFIGURATION]);
            markdown::render(&keys::markdown(), roff);
        }
        roff.control("SH", [section]);
        markdown::render(text, roff);
    }
}

fn environment(roff: &mut Roff) {
    roff.control("SH", ["ENVIRONMENT"]);
    for (name, what) in [
        ("GT_TOWN_ROOT", "the town, when --town is not given"),
        (
            "RUST_LOG",
            "the daemon's log filter, when --log-level is not given",
        ),
        ("NO_COLOR", "set and not empty: no colour"),
        (
            "CLICOLOR_FORCE",
            "set to 1: colour even when not writing to a terminal",
        ),
        ("TZ", "the time zone of --local times"),
        (
            "GT_INSTALL_DIR",
            "where daemon install and uninstall write and look (tests, packaging)",
        ),
        (
            "GT_TESTING",
            "test hooks, for the test suite only; never set it in production",
        ),
    ] {
        entry(roff, name, what);
    }
}

fn exit_status(roff: &mut Roff, name: &str) {
    roff.control("SH", ["EXIT STATUS"]);
    let mut codes = vec![
        ("0", "success"),
        ("1", "failure (the message says why)"),
        ("2", "usage error"),
    ];
    match name {
        "gt" | "gt-daemon" => codes.extend([
            ("3", "daemon status: not running (stopped or crashed)"),
            ("4", "daemon status: running but degraded (heartbeat overdue, outcomes cannot be filed, or the metrics endpoint is not serving)"),
            ("124", "daemon send --wait: timed out; the request stays queued"),
        ]),
        "gt-daemon-status" => {
            codes = vec![
                ("0", "running"),
                ("1", "status could not be determined (the message says why)"),
                ("2", "usage error"),
                ("3", "not running (stopped or crashed)"),
                ("4", "running but degraded: the heartbeat is overdue, outcomes cannot be filed, or the metrics endpoint is not serving"),
            ]
        }
        "gt-daemon-send" => codes = vec![
            ("0", "published (with --wait: processed)"),
            ("1", "failed (with --wait: the request failed; its reason is printed)"),
            ("2", "usage error"),
            ("124", "--wait timed out; the request stays queued"),
        ],
        _ => {}
    }
    for (code, what) in codes {
        entry(roff, code, what);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gt_1() -> String {
        let pages = pages().unwrap();
        String::from_utf8(pages[0].1.clone()).unwrap()
    }

    #[test]
    fn a_page_per_command() {
        let pages = pages().unwrap();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for want in [
            "gt",
            "gt-daemon",
            "gt-daemon-start",
            "gt-daemon-status",
            "gt-man",
        ] {
            assert!(names.contains(&want), "{want} missing: {names:?}");
        }
        let root = gt_1();
        let sections = REFERENCE.iter().map(|(s, _, _)| *s);
        for section in sections.chain([CONFIGURATION, "ENVIRONMENT", "EXIT STATUS"]) {
            assert!(
                root.contains(&format!(".SH \"{section}\""))
                    || root.contains(&format!(".SH {section}")),
                "{section} missing"
            );
        }
    }

    /// roff's escapes undone, enough to find plain text in a page.
    fn plain(roff: &str) -> String {
        roff.replace("\\-", "-")
            .replace("\\fB", "")
            .replace("\\fI", "")
            .replace("\\fR", "")
            .replace("\\*(Aq", "'")
            .replace("\\\\", "\\")
    }

    #[test]
    fn the_configuration_section_is_the_table_of_keys() {
        let page = plain(&gt_1());
        let section = &page[page.find(".SH CONFIGURATION").unwrap()..];
        for key in keys::KEYS {
            let at = section
                .find(&format!("\n{}\n", key.name))
                .unwrap_or_else(|| panic!("{} has no entry", key.name));
            let entry = &section[at..];
            let entry = &entry[..entry[1..].find(".TP").unwrap_or(entry.len() - 1) + 1];
            for words in [key.default.to_string(), key.description.replace('`', "")]
                .into_iter()
                .chain(key.bounds.describe().map(|b| b.replace('`', "")))
            {
                assert!(
                    entry.contains(&words),
                    "{}: {words:?} not in {entry}",
                    key.name
                );
            }
        }
    }

    #[test]
    fn docs_hold_no_html_the_manual_would_drop() {
        use pulldown_cmark::{Event, Options, Parser};
        let configuration = keys::markdown();
        let pages = REFERENCE
            .iter()
            .map(|(_, name, text)| (*name, *text))
            .chain([("configuration.md", configuration.as_str())]);
        for (name, text) in pages {
            let mut in_comment = false;
            for event in Parser::new_ext(text, Options::ENABLE_TABLES) {
                if let Event::Html(html) | Event::InlineHtml(html) = &event {
                    let comment = in_comment || html.starts_with("<!--");
                    in_comment = comment && !html.contains("-->");
                    assert!(
                        comment,
                        "docs/{name}: {html:?} would vanish from gt(1): write it as `code`, or \\<"
                    );
                }
            }
        }
    }

    #[test]
    fn markdown_becomes_roff() {
        let mut roff = Roff::default();
        markdown::render(
            "# Title\n\nSome `code` and *this*.\n\n## Part\n\n- one\n- two\n\n\
             | a | b | c |\n| --- | --- | --- |\n| `x` | y \\| z | w |\n\n```sh\n.dot\n```\n",
            &mut roff,
        );
        let out = roff.to_roff();
        assert!(!out.contains("Title"), "the H1 is the section's own: {out}");
        for want in [
            ".PP\nSome \\fBcode\\fR and \\fIthis\\fR.",
            ".SS Part",
            ".IP \\(bu 2\none",
            ".TP\n\\fBx\\fR\nb: y | z\n.br\nw",
            ".nf\n\\&.dot\n.fi",
        ] {
            assert!(out.contains(want), "{want:?} not in:\n{out}");
        }
    }
}
