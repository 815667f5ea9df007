//! A throw-away town for one scenario: directories, config, publishing
//! requests the way agents do, and waiting for them to be filed.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use color_eyre::eyre::{bail, Result, WrapErr};

use crate::guard::{self, Entry, Registration};

/// The config every bench town gets: a 1 s heartbeat (so the idle scenario
/// sees 30 of them) and the default 30 s safety-net rescan.
pub const CONFIG: &str = r#"{"heartbeat_interval":"1s","rescan_interval":"30s"}"#;

pub struct Town {
    // Field order matters: the directory goes before its registration.
    tmp: Option<tempfile::TempDir>,
    _reg: Registration,
    pub root: PathBuf,
    pub daemon: PathBuf,
}

impl Town {
    /// A fresh town under `base` with the daemon directories and config.
    pub fn new(base: &Path) -> Result<Town> {
        let tmp = tempfile::Builder::new()
            .prefix("gt-bench-")
            .tempdir_in(base)
            .wrap_err_with(|| format!("cannot create a town under {}", base.display()))?;
        let root = tmp.path().to_path_buf();
        let reg = guard::register(Entry::Dir(root.clone()));
        let daemon = root.join("daemon");
        for sub in ["inbox", "processing", "processed", "failed"] {
            fs::create_dir_all(daemon.join(sub))?;
        }
        fs::write(daemon.join("config.json"), CONFIG)?;
        Ok(Town {
            tmp: Some(tmp),
            _reg: reg,
            root,
            daemon,
        })
    }

    pub fn inbox(&self) -> PathBuf {
        self.daemon.join("inbox")
    }

    pub fn processed(&self) -> PathBuf {
        self.daemon.join("processed")
    }

    /// Writes `inbox/.NAME.tmp` and returns (temp path, final path); the
    /// caller publishes with `rename` (so it can time the rename alone).
    pub fn stage(&self, name: &str, body: &[u8]) -> Result<(PathBuf, PathBuf)> {
        let inbox = self.inbox();
        let tmp = inbox.join(format!(".{name}.tmp"));
        let dest = inbox.join(format!("{name}.json"));
        let mut f = fs::File::create(&tmp).wrap_err_with(|| format!("create {}", tmp.display()))?;
        f.write_all(body)?;
        Ok((tmp, dest))
    }

    /// Publishes a request Maildir-style: write a dot-temp file, rename it.
    pub fn publish(&self, name: &str, body: &[u8]) -> Result<()> {
        let (tmp, dest) = self.stage(name, body)?;
        fs::rename(&tmp, &dest).wrap_err_with(|| format!("rename to {}", dest.display()))?;
        Ok(())
    }

    /// Counts what is where, by reading each directory once.
    pub fn counts(&self) -> Counts {
        let count = |sub: &str| -> (usize, usize) {
            let mut requests = 0;
            let mut sidecars = 0;
            if let Ok(rd) = fs::read_dir(self.daemon.join(sub)) {
                for e in rd.flatten() {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    if name.starts_with('.') {
                        continue;
                    }
                    if name.ends_with(".result.json") {
                        sidecars += 1;
                    } else if name.ends_with(".json") {
                        requests += 1;
                    }
                }
            }
            (requests, sidecars)
        };
        let (inbox, _) = count("inbox");
        let (processing, _) = count("processing");
        let (processed, processed_sidecars) = count("processed");
        let (failed, failed_sidecars) = count("failed");
        Counts {
            inbox,
            processing,
            processed,
            processed_sidecars,
            failed,
            failed_sidecars,
        }
    }

    /// The reason in one sidecar under `failed/`, to explain a stall.
    pub fn a_failure_reason(&self) -> Option<String> {
        let rd = fs::read_dir(self.daemon.join("failed")).ok()?;
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().ends_with(".result.json") {
                let v: serde_json::Value =
                    serde_json::from_slice(&fs::read(e.path()).ok()?).ok()?;
                return Some(v["error"].to_string());
            }
        }
        None
    }

    /// Waits until `processed/NAME.json.result.json` exists, not empty, for
    /// every name.
    ///
    /// Checks names in `order` with one `stat` each, advancing while they
    /// exist and sleeping `poll` when the next one is missing: O(n) stats in
    /// all, so the bench steals little CPU from the daemon. Returns when the
    /// last one was seen and the uncertainty of that instant (the time spent
    /// finding already-filed names after the last miss). Fails when nothing
    /// progresses for `stall`, or when `alive` fails.
    pub fn wait_filed(
        &self,
        names: &[String],
        poll: Duration,
        stall: Duration,
        alive: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Filed> {
        let processed = self.processed();
        let start = Instant::now();
        let mut i = 0;
        let mut stuck_at = usize::MAX;
        let mut stuck_since = start;
        let mut last_miss = start;
        let mut misses: u64 = 0;
        while i < names.len() {
            let sidecar = processed.join(format!("{}.json.result.json", names[i]));
            // Non-empty: a sidecar written in place (not renamed into place)
            // exists before its content does.
            if fs::symlink_metadata(&sidecar).is_ok_and(|m| m.len() > 0) {
                i += 1;
                continue;
            }
            last_miss = Instant::now();
            if i != stuck_at {
                stuck_at = i;
                stuck_since = last_miss;
            } else if last_miss.duration_since(stuck_since) > stall {
                let c = self.counts();
                let reason = self
                    .a_failure_reason()
                    .map(|r| format!("; a failure reason: {r}"))
                    .unwrap_or_default();
                bail!(
                    "no progress for {stall:?}: waiting for {}.json after {i} of {} were filed; \
                     now {c}{reason}",
                    names[i],
                    names.len()
                );
            }
            misses += 1;
            if misses.is_multiple_of(16) {
                alive()?;
            }
            std::thread::sleep(poll);
        }
        let done = Instant::now();
        Ok(Filed {
            done,
            uncertainty: done.saturating_duration_since(last_miss),
        })
    }

    /// Checks that exactly `n` requests were filed as processed, with
    /// sidecars saying so, and nothing is left behind. Returns warnings.
    pub fn verify(&self, n: usize, daemon_pid: Option<i32>) -> Vec<String> {
        let c = self.counts();
        let mut warnings = Vec::new();
        if c.processed != n
            || c.processed_sidecars != n
            || c.failed != 0
            || c.inbox != 0
            || c.processing != 0
        {
            let reason = self
                .a_failure_reason()
                .map(|r| format!(" (a failure reason: {r})"))
                .unwrap_or_default();
            warnings.push(format!(
                "expected {n} processed with sidecars and nothing else, found {c}{reason}"
            ));
        }
        // One sidecar, checked against the contract.
        if let Some(e) = fs::read_dir(self.processed()).ok().and_then(|rd| {
            rd.flatten()
                .find(|e| e.file_name().to_string_lossy().ends_with(".result.json"))
        }) {
            match fs::read(e.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            {
                Some(v) => {
                    if v["outcome"] != "processed" || !v["error"].is_null() {
                        warnings.push(format!("sidecar {} says {v}", e.path().display()));
                    }
                    if let Some(pid) = daemon_pid {
                        if v["daemon_pid"] != pid {
                            warnings.push(format!(
                                "sidecar daemon_pid {} is not the daemon's {pid}",
                                v["daemon_pid"]
                            ));
                        }
                    }
                }
                None => warnings.push(format!("sidecar {} is not JSON", e.path().display())),
            }
        }
        warnings
    }

    /// Removes the town now, timing nothing (big towns take a while).
    pub fn remove(mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = tmp.close();
        }
    }
}

/// When waiting for a batch ended.
pub struct Filed {
    pub done: Instant,
    pub uncertainty: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct Counts {
    pub inbox: usize,
    pub processing: usize,
    pub processed: usize,
    pub processed_sidecars: usize,
    pub failed: usize,
    pub failed_sidecars: usize,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "inbox {}, processing {}, processed {} (+{} sidecars), failed {} (+{} sidecars)",
            self.inbox,
            self.processing,
            self.processed,
            self.processed_sidecars,
            self.failed,
            self.failed_sidecars
        )
    }
}

/// A valid request body (action `shutdown` from the mayor: in dry-run it
/// only logs, and the crash-loop guard does not apply to it).
pub fn request_body() -> Vec<u8> {
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    format!("{{\"from\":\"mayor\",\"action\":\"shutdown\",\"timestamp\":\"{ts}\"}}\n").into_bytes()
}

/// `PREFIX-000000` … : request names without the `.json`.
pub fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:06}")).collect()
}
