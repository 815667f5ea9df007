//! `gt daemon install|uninstall`, written into GT_INSTALL_DIR (or a fake
//! HOME) so nothing outside the test's temp directories is touched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::command::{copy_gt, program_command, run_fresh_copy, GT};
use crate::support::{gt_command, on_path, require, require_tool, run, Out};

/// Section → key → values (keys may repeat, e.g. Environment=).
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn parse_unit(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            unit.entry(section.clone()).or_default();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line:?}"));
        assert!(!section.is_empty(), "key outside a section: {line:?}");
        unit.get_mut(&section)
            .unwrap()
            .entry(key.to_string())
            .or_default()
            .push(value.to_string());
    }
    unit
}

fn one<'a>(unit: &'a Unit, section: &str, key: &str) -> &'a str {
    let values = unit
        .get(section)
        .and_then(|s| s.get(key))
        .unwrap_or_else(|| panic!("no {key}= in [{section}]"));
    assert_eq!(values.len(), 1, "{key}= given {} times", values.len());
    &values[0]
}

/// Splits a command line the way systemd reads ExecStart= (after `%%` is
/// resolved): words separated by blanks, "…" and '…' quoting, C escapes;
/// then `$$` → `$` in the arguments (the program path is not expanded).
fn systemd_words(line: &str) -> Vec<String> {
    let line = line.replace("%%", "%");
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        let mut quote = None;
        while let Some(c) = chars.next() {
            match (c, quote) {
                ('\\', _) => match chars.next().expect("dangling backslash") {
                    'n' => word.push('\n'),
                    't' => word.push('\t'),
                    e @ ('\\' | '"' | '\'' | ' ') => word.push(e),
                    e => panic!("unexpected escape \\{e} in {line:?}"),
                },
                ('"' | '\'', None) => quote = Some(c),
                (c, Some(q)) if c == q => quote = None,
                (c, None) if c.is_whitespace() => break,
                (c, _) => word.push(c),
            }
        }
        assert!(quote.is_none(), "unbalanced quotes in {line:?}");
        words.push(if words.is_empty() {
            word
        } else {
            word.replace("$$", "$")
        });
    }
    words
}

/// A town directory whose name needs quoting everywhere.
fn awkward_town(parent: &Path) -> PathBuf {
    let town = parent.join("my town & <co> \"q\" 100% $HOME");
    std::fs::create_dir_all(&town).unwrap();
    gt::town::Town::at(&town).unwrap().ensure_dirs().unwrap();
    // Units name the canonical path (/tmp may be a symlink, as on macOS).
    std::fs::canonicalize(town).unwrap()
}

/// `gt --town TOWN daemon VERB ARGS...` writing into `dir`, asserting success.
fn service(verb: &str, dir: &Path, town: &Path, args: &[&str]) -> Out {
    let mut cmd = gt_command();
    cmd.env("GT_INSTALL_DIR", dir)
        .arg("--town")
        .arg(town)
        .args(["daemon", verb])
        .args(args);
    let out = run(cmd);
    out.assert_ok(&format!("{verb} {args:?}"));
    out
}

fn install(dir: &Path, town: &Path, args: &[&str]) -> Out {
    service("install", dir, town, args)
}

fn uninstall(dir: &Path, town: &Path, args: &[&str]) -> Out {
    service("uninstall", dir, town, args)
}

/// The gt binary as the unit names it.
fn gt_exe() -> String {
    let exe = std::fs::canonicalize(GT).unwrap();
    exe.to_str().unwrap().to_string()
}

/// The only file in `dir` ending in `suffix`.
fn only_file(dir: &Path, suffix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    assert_eq!(found.len(), 1, "files in {}: {found:?}", dir.display());
    found.into_iter().next().unwrap()
}

fn name_of(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// `systemd-analyze verify` on the unit (when the tool is installed; a skip
/// says so): it must accept the file and say nothing about it (unknown
/// keys, bad quoting and a missing ExecStart binary are all reported
/// against the file's name).
fn verify_with_systemd(unit: &Path) {
    if !require_tool("systemd-analyze") {
        return;
    }
    let mut cmd = Command::new("systemd-analyze");
    cmd.arg("verify").arg(unit).env("SYSTEMD_LOG_COLOR", "0");
    let out = run(cmd);
    let err = &out.stderr;
    let name = name_of(unit);
    let about_ours: Vec<&str> = err.lines().filter(|l| l.contains(&name)).collect();
    assert!(
        about_ours.is_empty(),
        "systemd-analyze complains: {about_ours:#?}"
    );
    assert!(out.success(), "systemd-analyze verify failed: {err}");
}

#[test]
fn systemd_user_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("units");
    let town = awkward_town(tmp.path());
    let out = install(&dir, &town, &["--systemd", "--user"]);

    let path = only_file(&dir, ".service");
    let name = name_of(&path);
    let hash = name
        .strip_prefix("gt-daemon-my-town-co-q-100-HOME-")
        .and_then(|r| r.strip_suffix(".service"))
        .unwrap_or_else(|| panic!("unexpected unit name {name}"));
    assert!(
        hash.len() == 8 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{name}"
    );

    let unit = parse_unit(&std::fs::read_to_string(&path).unwrap());
    let town_s = town.to_str().unwrap();
    assert_eq!(one(&unit, "Service", "Type"), "notify");
    assert_eq!(one(&unit, "Service", "Restart"), "on-failure");
    assert_eq!(one(&unit, "Service", "RestartSec"), "5s");
    assert_eq!(one(&unit, "Service", "TimeoutStopSec"), "30");
    // A refused configuration (exit 78) is not retried forever; a hung
    // daemon is restarted; `systemctl reload` is SIGHUP.
    assert_eq!(one(&unit, "Service", "RestartPreventExitStatus"), "78");
    assert_eq!(one(&unit, "Service", "WatchdogSec"), "5min");
    // Descriptors to spare beyond the default 1024.
    assert_eq!(one(&unit, "Service", "LimitNOFILE"), "8192");
    assert_eq!(
        one(&unit, "Service", "ExecReload"),
        "/bin/kill -HUP $MAINPID"
    );
    assert!(["process", "mixed"].contains(&one(&unit, "Service", "KillMode")));
    assert_eq!(one(&unit, "Install", "WantedBy"), "default.target");
    assert_eq!(
        one(&unit, "Service", "WorkingDirectory").replace("%%", "%"),
        town_s
    );
    assert!(
        !unit["Service"].contains_key("User"),
        "a user unit names no User="
    );

    let exec = systemd_words(one(&unit, "Service", "ExecStart"));
    assert_eq!(exec, [gt_exe().as_str(), "--town", town_s, "daemon", "run"]);
    let envs: Vec<Vec<String>> = unit["Service"]["Environment"]
        .iter()
        .map(|e| systemd_words(e))
        .collect();
    assert!(
        envs.contains(&vec![format!("GT_TOWN_ROOT={town_s}")]),
        "Environment= lines: {envs:?}"
    );

    let said = &out.stdout;
    assert!(said.contains(&path.display().to_string()), "{said}");
    assert!(
        said.contains(&format!(
            "systemctl --user daemon-reload && systemctl --user enable --now {name}"
        )),
        "{said}"
    );
    verify_with_systemd(&path);
}

#[test]
fn systemd_system_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("units");
    let town = tmp.path().join("gt");
    std::fs::create_dir(&town).unwrap();
    let out = install(&dir, &town, &["--systemd"]);
    let path = only_file(&dir, ".service");
    let name = name_of(&path);
    assert!(name.starts_with("gt-daemon-gt-"), "{name}");
    let unit = parse_unit(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(one(&unit, "Install", "WantedBy"), "multi-user.target");
    assert_eq!(one(&unit, "Service", "LimitNOFILE"), "8192");
    // The daemon runs as the town's owner unless that is root.
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata(&town).unwrap().uid();
    match unit["Service"].get("User") {
        Some(user) => assert_eq!(user, &[uid.to_string()]),
        None => assert_eq!(uid, 0, "a non-root town needs User="),
    }
    let said = &out.stdout;
    assert!(
        said.contains(&format!(
            "systemctl daemon-reload && systemctl enable --now {name}"
        )),
        "{said}"
    );
    assert!(!said.contains("--user"), "{said}");
    verify_with_systemd(&path);
}

#[test]
fn binary_path_with_spaces_is_quoted() {
    let tmp = tempfile::tempdir().unwrap();
    let bin_dir = std::fs::canonicalize(tmp.path())
        .unwrap()
        .join("my bin $x 5%");
    std::fs::create_dir(&bin_dir).unwrap();
    let exe = bin_dir.join("gt");
    copy_gt(&exe);
    let dir = tmp.path().join("units");
    let town = tmp.path().join("town");
    std::fs::create_dir(&town).unwrap();
    let out = run_fresh_copy(|| {
        let mut cmd = program_command(&exe);
        cmd.env("GT_INSTALL_DIR", &dir)
            .arg("--town")
            .arg(&town)
            .args(["daemon", "install", "--systemd", "--user"]);
        cmd
    });
    out.assert_ok("install from the copy");
    let path = only_file(&dir, ".service");
    let unit = parse_unit(&std::fs::read_to_string(&path).unwrap());
    let exec = systemd_words(one(&unit, "Service", "ExecStart"));
    assert_eq!(exec[0], exe.to_str().unwrap());
    verify_with_systemd(&path);
}

#[test]
fn towns_get_their_own_units_and_symlinks_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("units");
    let a = tmp.path().join("a/gt");
    let b = tmp.path().join("b/gt");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    install(&dir, &a, &["--systemd", "--user"]);
    install(&dir, &b, &["--systemd", "--user"]);
    let units: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(units.len(), 2, "{units:?}");

    // The same town through a symlink is the same unit: "up to date".
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&a, &link).unwrap();
    let out = install(&dir, &link, &["--systemd", "--user"]);
    assert!(out.stdout.contains("already installed"), "{}", out.stdout);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
}

#[test]
fn reinstall_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("units");
    let town = awkward_town(tmp.path());
    install(&dir, &town, &["--user"]);
    let path = only_file(&dir, ".service");
    let before = std::fs::read(&path).unwrap();
    let out = install(&dir, &town, &["--user"]);
    assert!(out.stdout.contains("already installed"), "{}", out.stdout);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn uninstall_removes_unit_and_enable_link() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("units");
    let town = awkward_town(tmp.path());
    install(&dir, &town, &["--systemd", "--user"]);
    let path = only_file(&dir, ".service");
    let name = name_of(&path);
    // What `systemctl --user enable` would have made.
    let wants = dir.join("default.target.wants");
    std::fs::create_dir(&wants).unwrap();
    std::os::unix::fs::symlink(&path, wants.join(&name)).unwrap();

    let out = uninstall(&dir, &town, &["--systemd", "--user"]);
    assert!(!path.exists(), "unit still there");
    assert!(
        wants.join(&name).symlink_metadata().is_err(),
        "enable link still there"
    );
    let said = &out.stdout;
    assert!(
        said.contains(&format!("systemctl --user stop {name}")),
        "{said}"
    );
    assert!(said.contains("daemon-reload"), "{said}");

    let out = uninstall(&dir, &town, &["--systemd", "--user"]);
    assert!(out.stdout.contains("nothing to remove"), "{}", out.stdout);
}

#[test]
fn default_user_location_follows_xdg_and_home() {
    let tmp = tempfile::tempdir().unwrap();
    let town = tmp.path().join("gt");
    std::fs::create_dir(&town).unwrap();
    let home = tmp.path().join("home");
    let run = |xdg: Option<&Path>, args: &[&str]| {
        let mut cmd = gt_command();
        cmd.env("HOME", &home).env_remove("XDG_CONFIG_HOME");
        if let Some(x) = xdg {
            cmd.env("XDG_CONFIG_HOME", x);
        }
        cmd.arg("--town").arg(&town).args(["daemon"]).args(args);
        let out = run(cmd);
        out.assert_ok(&format!("{args:?}"));
        out
    };
    run(None, &["install", "--systemd", "--user"]);
    let unit = only_file(&home.join(".config/systemd/user"), ".service");
    run(None, &["uninstall", "--systemd", "--user"]);
    assert!(!unit.exists());

    let xdg = tmp.path().join("xdg");
    run(Some(&xdg), &["install", "--systemd", "--user"]);
    only_file(&xdg.join("systemd/user"), ".service");

    run(None, &["install", "--launchd", "--user"]);
    let plist = only_file(&home.join("Library/LaunchAgents"), ".plist");
    assert!(
        name_of(&plist).starts_with("town.gastown.daemon."),
        "{plist:?}"
    );
}

/// Can python3 run and import plistlib?
fn python3_has_plistlib() -> bool {
    if !on_path("python3") {
        return false;
    }
    let mut cmd = Command::new("python3");
    cmd.args(["-c", "import plistlib"]);
    run(cmd).success()
}

/// Values of the `<string>` elements inside the array after `<key>KEY</key>`,
/// XML entities decoded.
fn plist_array(text: &str, key: &str) -> Vec<String> {
    let start = text
        .find(&format!("<key>{key}</key>"))
        .expect("key missing");
    let rest = &text[start..];
    let array = &rest[rest.find("<array>").unwrap()..rest.find("</array>").unwrap()];
    array
        .split("<string>")
        .skip(1)
        .map(|s| {
            s.split("</string>")
                .next()
                .unwrap()
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&")
        })
        .collect()
}

#[test]
fn launchd_plist() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("agents");
    let town = awkward_town(tmp.path());
    let town_s = town.to_str().unwrap();
    let out = install(&dir, &town, &["--launchd", "--user"]);
    let path = only_file(&dir, ".plist");
    let label = name_of(&path).strip_suffix(".plist").unwrap().to_string();
    let hash = label
        .strip_prefix("town.gastown.daemon.")
        .expect("label prefix");
    assert!(
        hash.len() == 8 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{label}"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("<?xml"), "{text}");
    assert!(!text.contains("& "), "unescaped &");
    assert_eq!(
        plist_array(&text, "ProgramArguments"),
        [gt_exe().as_str(), "--town", town_s, "daemon", "run"]
    );
    assert!(
        text.contains(
            "<key>SoftResourceLimits</key>\n\t<dict>\n\t\t<key>NumberOfFiles</key>\n\t\t<integer>8192</integer>"
        ),
        "{text}"
    );
    let said = &out.stdout;
    assert!(said.contains("launchctl bootstrap gui/"), "{said}");
    assert!(said.contains(&path.display().to_string()), "{said}");

    // A real plist parser, when there is one (a skip says so).
    if require("python3 with plistlib", python3_has_plistlib()) {
        let mut py = Command::new("python3");
        py.args([
            "-c",
            "import json, plistlib, sys; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))))",
        ])
        .arg(&path);
        let out = run(py);
        out.assert_ok("python3 plistlib.load");
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["Label"], label.as_str());
        assert_eq!(
            v["ProgramArguments"],
            serde_json::json!([gt_exe().as_str(), "--town", town_s, "daemon", "run"])
        );
        assert_eq!(v["RunAtLoad"], true);
        assert_eq!(v["KeepAlive"]["SuccessfulExit"], false);
        assert_eq!(v["WorkingDirectory"], town_s);
        assert_eq!(v["EnvironmentVariables"]["GT_TOWN_ROOT"], town_s);
        let log = gt::town::Town::at(&town).unwrap().log_file();
        assert_eq!(v["StandardOutPath"], log.to_str().unwrap());
        assert_eq!(v["StandardErrorPath"], log.to_str().unwrap());
        // Descriptors to spare beyond launchd's default 256.
        assert_eq!(v["SoftResourceLimits"]["NumberOfFiles"], 8192);
    }

    let out = uninstall(&dir, &town, &["--launchd", "--user"]);
    assert!(!path.exists());
    assert!(
        out.stdout.contains("launchctl bootout gui/"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(&label), "{}", out.stdout);
}

#[test]
fn uninstall_of_nothing_is_fine() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("units");
    let town = tmp.path().join("gt");
    std::fs::create_dir(&town).unwrap();
    let out = uninstall(&dir, &town, &["--systemd", "--user"]);
    assert!(out.stdout.contains("nothing to remove"), "{}", out.stdout);
}
