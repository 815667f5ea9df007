//! The request fixture catalogue (`fixtures/cases.json`) run two ways:
//!
//! * `parse_layer`: every case through the pure parser `gt::request::parse`
//!   (cases marked `"layer": "file"` are about the file itself, its size, and
//!   are skipped there);
//! * `daemon_*`: the real `gt` binary in `--dry-run`, fed through a town's
//!   inbox exactly as an agent would (`inbox/.NAME.tmp`, then rename), with
//!   the filed request and its result sidecar checked against the catalogue.

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::Value;
use tempfile::TempDir;

const MAX_AGE: Duration = Duration::from_secs(6 * 3600);
const DEADLINE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------
// The catalogue
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// Path under `fixtures/`, e.g. `invalid/empty.json`.
    file: String,
    /// `processed` or `failed`.
    outcome: String,
    /// For failed cases: a substring of the reason.
    #[serde(default)]
    reason_contains: Option<String>,
    /// For processed cases: what the request maps to.
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    action: Option<String>,
    /// The bytes are produced by [`generate`] instead of read from `file`.
    #[serde(default)]
    generate: Option<String>,
    /// `"file"`: the outcome depends on the file, not on its bytes as a
    /// request, so only the daemon can judge it.
    #[serde(default)]
    layer: Option<String>,
}

impl Case {
    fn parse_layer_applies(&self) -> bool {
        self.layer.as_deref() != Some("file")
    }

    /// The name the case is dropped into an inbox under (unique across
    /// folders): `valid/mayor-cycle.json` -> `valid--mayor-cycle.json`.
    fn inbox_name(&self) -> String {
        self.file.replace('/', "--")
    }
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn cases() -> Vec<Case> {
    let text =
        fs::read_to_string(fixtures_dir().join("cases.json")).expect("read fixtures/cases.json");
    let cases: Vec<Case> = serde_json::from_str(&text).expect("fixtures/cases.json is malformed");
    assert!(!cases.is_empty());
    cases
}

fn now_text(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Bytes for a case with the placeholders filled in (see fixtures/README.md).
fn case_bytes(case: &Case, now: DateTime<Utc>, marker: &Path) -> Vec<u8> {
    let raw = match &case.generate {
        Some(kind) => generate(kind, now),
        None => fs::read(fixtures_dir().join(&case.file))
            .unwrap_or_else(|e| panic!("{}: {e}", case.file)),
    };
    let seven_hours_ago = now - chrono::Duration::hours(7) - chrono::Duration::seconds(1);
    let raw = replace(&raw, b"__NOW-7h__", now_text(seven_hours_ago).as_bytes());
    let raw = replace(&raw, b"__NOW__", now_text(now).as_bytes());
    replace(&raw, b"__MARKER__", marker.to_str().unwrap().as_bytes())
}

/// Generated fixtures, too big (or too exact) to commit.
fn generate(kind: &str, now: DateTime<Utc>) -> Vec<u8> {
    let request = |pad: usize| {
        format!(
            r#"{{"from":"mayor","action":"shutdown","timestamp":"{}","pad":"{}"}}"#,
            now_text(now),
            "a".repeat(pad)
        )
        .into_bytes()
    };
    let padded_to = |len: usize| {
        let bytes = request(len - request(0).len());
        assert_eq!(bytes.len(), len);
        bytes
    };
    match kind {
        // Deeper than any recursive parser's stack, unclosed, under the size cap.
        "unclosed_nesting_60k" => format!("{{\"x\":{}", "[".repeat(60_000)).into_bytes(),
        "brackets_1mb" => vec![b'['; 1024 * 1024],
        "valid_request_padded_to_64kib" => padded_to(64 * 1024),
        "valid_request_padded_to_64kib_plus_1" => padded_to(64 * 1024 + 1),
        other => panic!("fixtures/cases.json: unknown generator {other:?}"),
    }
}

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Layer (a): the pure parser
// ---------------------------------------------------------------------------

#[test]
fn catalogue_is_consistent() {
    let cases = cases();
    let dir = fixtures_dir();
    let mut names = std::collections::HashSet::new();
    for case in &cases {
        assert!(
            names.insert(case.inbox_name()),
            "{} listed twice",
            case.file
        );
        let folder = match case.outcome.as_str() {
            "processed" => "valid/",
            "failed" => "invalid/",
            other => panic!("{}: outcome {other:?}", case.file),
        };
        assert!(
            case.file.starts_with(folder),
            "{} is in the wrong folder",
            case.file
        );
        assert!(case.file.ends_with(".json"), "{}", case.file);
        if case.outcome == "failed" {
            assert!(
                case.reason_contains
                    .as_deref()
                    .is_some_and(|r| !r.is_empty()),
                "{}",
                case.file
            );
        } else {
            assert!(
                case.session.is_some() && case.from.is_some() && case.action.is_some(),
                "{}",
                case.file
            );
        }
        match &case.generate {
            Some(_) => assert!(
                !dir.join(&case.file).exists(),
                "{} is generated, not committed",
                case.file
            ),
            None => assert!(dir.join(&case.file).is_file(), "{} is missing", case.file),
        }
    }
    // Every committed fixture is listed.
    for folder in ["valid", "invalid"] {
        for entry in fs::read_dir(dir.join(folder)).unwrap() {
            let name = format!("{folder}/{}", entry.unwrap().file_name().to_string_lossy());
            assert!(
                cases.iter().any(|c| c.file == name),
                "{name} is not in cases.json"
            );
        }
    }
}

#[test]
fn parse_layer() {
    let now = Utc::now();
    let marker = std::env::temp_dir().join("gt-fixtures-parse-layer-marker");
    let mut checked = 0;
    let mut wrong = Vec::new();
    for case in cases().iter().filter(|c| c.parse_layer_applies()) {
        let bytes = case_bytes(case, now, &marker);
        let result = gt::request::parse(&bytes, now, MAX_AGE);
        if std::env::var_os("GT_FIXTURES_VERBOSE").is_some() {
            match &result {
                Ok(r) => eprintln!("{}: ok -> {}", case.file, r.session()),
                Err((rejection, _)) => eprintln!("{}: {rejection}", case.file),
            }
        }
        let problem = match (case.outcome.as_str(), result) {
            ("processed", Ok(request)) => {
                let got = (
                    Some(request.session()),
                    Some(request.from.clone()),
                    Some(request.action.to_string()),
                );
                let want = (case.session.clone(), case.from.clone(), case.action.clone());
                (got != want).then(|| format!("maps to {got:?}, expected {want:?}"))
            }
            ("processed", Err((rejection, _))) => Some(format!("rejected: {rejection}")),
            ("failed", Ok(request)) => Some(format!("accepted: {request:?}")),
            ("failed", Err((rejection, _))) => {
                let want = case.reason_contains.as_deref().unwrap();
                (!rejection.0.contains(want))
                    .then(|| format!("reason {:?} does not contain {want:?}", rejection.0))
            }
            (other, _) => Some(format!("outcome {other:?}")),
        };
        if let Some(problem) = problem {
            wrong.push(format!("{}: {problem}", case.file));
        }
        checked += 1;
    }
    assert!(
        wrong.is_empty(),
        "{} case(s) wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(checked > 50, "only {checked} cases checked");
    assert!(!marker.exists());
}

// ---------------------------------------------------------------------------
// Layer (b): the real daemon
// ---------------------------------------------------------------------------

fn gt_bin() -> &'static str {
    env!("CARGO_BIN_EXE_gt")
}

fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A town with a dry-run daemon, stopped (and its tmux server killed) on drop.
struct Town {
    dir: TempDir,
    socket: String,
    pid: u32,
}

impl Town {
    fn start() -> Town {
        let dir = tempfile::Builder::new()
            .prefix("gt-fixtures-")
            .tempdir()
            .unwrap();
        let socket = unique("gt-fixtures");
        fs::create_dir_all(dir.path().join("daemon")).unwrap();
        let config = serde_json::json!({"heartbeat_interval": "1h", "tmux_socket": socket});
        fs::write(dir.path().join("daemon/config.json"), config.to_string()).unwrap();
        let mut town = Town {
            dir,
            socket,
            pid: 0,
        };
        let out = town.gt(&["daemon", "start", "--dry-run"]);
        assert!(
            out.status.success(),
            "daemon start failed: {}",
            describe(&out)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let pid = stdout
            .trim()
            .strip_prefix("Daemon started (PID ")
            .and_then(|s| s.strip_suffix(')'))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("unexpected start output: {}", describe(&out)));
        town.pid = pid;
        town
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn daemon_dir(&self, sub: &str) -> PathBuf {
        self.root().join("daemon").join(sub)
    }

    fn gt(&self, args: &[&str]) -> Output {
        Command::new(gt_bin())
            .arg("--town")
            .arg(self.root())
            .args(args)
            .env_remove("GT_TOWN_ROOT")
            .output()
            .expect("run gt")
    }

    fn status(&self) -> Value {
        let out = self.gt(&["daemon", "status", "--json"]);
        assert!(out.status.success(), "status failed: {}", describe(&out));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json: {e}: {}", describe(&out)))
    }

    /// Publishes `bytes` Maildir-style as `inbox/NAME`.
    fn drop_request(&self, name: &str, bytes: &[u8]) {
        let tmp = self.daemon_dir("inbox").join(format!(".{name}.tmp"));
        fs::write(&tmp, bytes).unwrap();
        fs::rename(&tmp, self.daemon_dir("inbox").join(name)).unwrap();
    }

    /// Waits until `name` has been filed; returns (outcome folder, sidecar).
    fn wait_filed(&self, name: &str) -> (&'static str, Value) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            for folder in ["processed", "failed"] {
                // The daemon writes the sidecar first, then moves the request
                // beside it: filed means both are there.
                let sidecar = self.daemon_dir(folder).join(format!("{name}.result.json"));
                let request_there =
                    fs::symlink_metadata(self.daemon_dir(folder).join(name)).is_ok();
                if let (true, Ok(bytes)) = (request_there, fs::read(&sidecar)) {
                    if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
                        return (folder, value);
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "{name} was not filed within {DEADLINE:?}; inbox: {:?}, processing: {:?}, processed: {:?}, failed: {:?}; log:\n{}",
                listing(&self.daemon_dir("inbox")),
                listing(&self.daemon_dir("processing")),
                listing(&self.daemon_dir("processed")),
                listing(&self.daemon_dir("failed")),
                fs::read_to_string(self.daemon_dir("daemon.log")).unwrap_or_default()
            );
            std::thread::sleep(POLL);
        }
    }

    fn wait_for(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(POLL);
        }
    }

    /// The daemon's log, for failure messages.
    fn log(&self) -> String {
        fs::read_to_string(self.daemon_dir("daemon.log")).unwrap_or_default()
    }

    fn assert_still_running(&self) {
        let status = self.status();
        assert_eq!(
            status["running"],
            Value::Bool(true),
            "daemon died: {status}\n{}",
            self.log()
        );
        assert_eq!(
            status["pid"],
            Value::from(self.pid),
            "daemon was replaced: {status}"
        );
    }
}

impl Drop for Town {
    fn drop(&mut self) {
        let _ = Command::new(gt_bin())
            .arg("--town")
            .arg(self.root())
            .args(["daemon", "stop", "--timeout", "5s"])
            .output();
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Checks the sidecar's shape (SPEC §4) and the reason.
fn check_sidecar(
    town: &Town,
    name: &str,
    folder: &str,
    sidecar: &Value,
    case: Option<&Case>,
    reason: Option<&str>,
) {
    let want = if folder == "processed" {
        "processed"
    } else {
        "failed"
    };
    assert_eq!(
        sidecar["outcome"],
        Value::from(want),
        "{name}: sidecar {sidecar}"
    );
    assert_eq!(
        sidecar["daemon_pid"],
        Value::from(town.pid),
        "{name}: sidecar {sidecar}"
    );
    let finished = sidecar["finished_at"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: sidecar {sidecar}"));
    DateTime::parse_from_rfc3339(finished)
        .unwrap_or_else(|e| panic!("{name}: finished_at {finished:?}: {e}"));
    for key in ["from", "action", "session"] {
        let v = &sidecar[key];
        assert!(
            v.is_null() || v.is_string(),
            "{name}: {key} in sidecar {sidecar}"
        );
    }
    match reason {
        None => assert_eq!(sidecar["error"], Value::Null, "{name}: sidecar {sidecar}"),
        Some(reason) => {
            let error = sidecar["error"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no error in {sidecar}"));
            assert!(
                error.contains(reason),
                "{name}: error {error:?} does not contain {reason:?}"
            );
        }
    }
    if let Some(case) = case.filter(|c| c.outcome == "processed") {
        assert_eq!(
            sidecar["session"].as_str(),
            case.session.as_deref(),
            "{name}: sidecar {sidecar}"
        );
        assert_eq!(
            sidecar["from"].as_str(),
            case.from.as_deref(),
            "{name}: sidecar {sidecar}"
        );
        assert_eq!(
            sidecar["action"].as_str(),
            case.action.as_deref(),
            "{name}: sidecar {sidecar}"
        );
    }
}

#[test]
fn daemon_files_every_fixture_as_catalogued() {
    let town = Town::start();
    let marker = town.root().join(unique("pwned-marker"));
    let outside = TempDir::new().unwrap();
    let marker_outside = outside.path().join("pwned");
    let cases = cases();
    let now = Utc::now();

    let mut sent = Vec::new();
    for case in &cases {
        // Shell-metacharacter cases name a marker file; if anything ever
        // runs them through a shell, the marker appears.
        let bytes = case_bytes(case, now, &marker);
        let name = case.inbox_name();
        town.drop_request(&name, &bytes);
        sent.push((case, name, bytes));
    }
    // The same hostile identities with a marker outside the town too, in
    // case something runs them with another working directory.
    let hostile: Vec<_> = cases.iter().filter(|c| c.file.contains("shell")).collect();
    assert!(!hostile.is_empty());
    for case in &hostile {
        let bytes = case_bytes(case, now, &marker_outside);
        let name = format!("outside--{}", case.inbox_name());
        town.drop_request(&name, &bytes);
        sent.push((case, name, bytes));
    }

    let (mut processed, mut failed) = (0u64, 0u64);
    for (case, name, bytes) in &sent {
        let (folder, sidecar) = town.wait_filed(name);
        assert_eq!(
            folder, case.outcome,
            "{}: filed under {folder}/: sidecar {sidecar}",
            case.file
        );
        let filed = town.daemon_dir(folder).join(name);
        assert_eq!(
            &fs::read(&filed).unwrap_or_else(|e| panic!(
                "{}: {e}\n{}",
                filed.display(),
                town.log()
            )),
            bytes,
            "{}: filed bytes differ from the original",
            case.file
        );
        let other = if folder == "processed" {
            "failed"
        } else {
            "processed"
        };
        assert!(
            !town.daemon_dir(other).join(name).exists(),
            "{name} filed twice"
        );
        assert!(
            !town.daemon_dir("inbox").join(name).exists(),
            "{name} still in inbox"
        );
        assert!(
            !town.daemon_dir("processing").join(name).exists(),
            "{name} still in processing"
        );
        check_sidecar(
            &town,
            name,
            folder,
            &sidecar,
            Some(case),
            case.reason_contains.as_deref(),
        );
        if folder == "processed" {
            processed += 1;
        } else {
            failed += 1;
        }
    }

    assert!(
        !marker.exists(),
        "a request's \"from\" was run by a shell: {marker:?} exists"
    );
    assert!(
        !marker_outside.exists(),
        "a request's \"from\" was run by a shell: {marker_outside:?} exists"
    );
    assert!(listing(&town.daemon_dir("processing")).is_empty());
    town.assert_still_running();
    // Counters are written in batches: wait for them to catch up.
    town.wait_for("state.json counters to match the filed requests", || {
        let s = town.status();
        s["requests_processed"] == processed && s["requests_failed"] == failed
    });
}

#[test]
fn daemon_refuses_non_regular_files_without_blocking() {
    let town = Town::start();
    let inbox = town.daemon_dir("inbox");
    let now = now_text(Utc::now());
    let valid =
        |from: &str| format!(r#"{{"from":"{from}","action":"shutdown","timestamp":"{now}"}}"#);

    // A symlink to a valid request outside the town: never followed.
    let outside = TempDir::new().unwrap();
    let target = outside.path().join("target.json");
    fs::write(&target, valid("mayor")).unwrap();
    std::os::unix::fs::symlink(&target, inbox.join("link.json")).unwrap();
    // A FIFO: opening it for reading would block until a writer comes.
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        inbox.join("x.json"),
        rustix::fs::Mode::from_raw_mode(0o644),
    )
    .unwrap();
    // A unix socket.
    let listener = std::os::unix::net::UnixListener::bind(inbox.join("s.json")).unwrap();
    // A directory.
    fs::create_dir(inbox.join("d.json")).unwrap();
    // A symlink to a directory and a dangling one.
    std::os::unix::fs::symlink(outside.path(), inbox.join("dirlink.json")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("nothing-here"),
        inbox.join("dangling.json"),
    )
    .unwrap();

    // Published after all of them: must still be handled.
    town.drop_request("after.json", valid("deacon").as_bytes());
    let (folder, sidecar) = town.wait_filed("after.json");
    assert_eq!(folder, "processed", "sidecar {sidecar}");
    check_sidecar(&town, "after.json", folder, &sidecar, None, None);

    for (name, is_kind) in [
        (
            "link.json",
            (|t: fs::FileType| t.is_symlink()) as fn(fs::FileType) -> bool,
        ),
        ("x.json", |t: fs::FileType| t.is_fifo()),
        ("s.json", |t: fs::FileType| t.is_socket()),
        ("d.json", |t: fs::FileType| t.is_dir()),
        ("dirlink.json", |t: fs::FileType| t.is_symlink()),
        ("dangling.json", |t: fs::FileType| t.is_symlink()),
    ] {
        let (folder, sidecar) = town.wait_filed(name);
        assert_eq!(folder, "failed", "{name}: sidecar {sidecar}");
        check_sidecar(
            &town,
            name,
            folder,
            &sidecar,
            None,
            Some("not a regular file"),
        );
        assert!(!inbox.join(name).exists(), "{name} still in inbox");
        // Filed as it was: moved, not copied, followed or replaced.
        let meta = fs::symlink_metadata(town.daemon_dir("failed").join(name))
            .unwrap_or_else(|e| panic!("failed/{name}: {e}"));
        assert!(
            is_kind(meta.file_type()),
            "failed/{name} changed kind: {:?}",
            meta.file_type()
        );
    }
    // The symlink's target is where it was, unchanged, and was not executed.
    assert_eq!(fs::read_to_string(&target).unwrap(), valid("mayor"));
    assert_eq!(listing(outside.path()), vec!["target.json".to_string()]);
    assert_eq!(
        listing(&town.daemon_dir("processed")),
        vec![
            "after.json".to_string(),
            "after.json.result.json".to_string()
        ]
    );
    drop(listener);
    town.assert_still_running();
}
