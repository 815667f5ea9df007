//! A throw-away town for one scenario, made under a chosen directory (so on
//! a chosen filesystem). Its paths are the library's [`gt::town::Town`];
//! what is added here is bench-only: the temp directory and its cleanup,
//! publishing requests the way agents do, waiting for them to be filed, and
//! checking how every one of them was filed.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use color_eyre::eyre::{bail, Result, WrapErr};

use crate::guard::{self, Entry, Registration};
use crate::outcome::{self, Expected};

/// The config every bench town gets: a 1 s heartbeat (so the idle scenario
/// sees 30 of them) and the default 30 s safety-net rescan.
pub const CONFIG: &str = r#"{"heartbeat_interval":"1s","rescan_interval":"30s"}"#;

/// Who sends the bench's requests and what they ask: a `shutdown` from the
/// mayor only logs in dry-run, and the crash-loop guard does not apply to it.
pub const FROM: &str = "mayor";
pub const ACTION: &str = "shutdown";

pub struct TempTown {
    // Field order matters: the directory goes before its registration.
    tmp: Option<tempfile::TempDir>,
    _reg: Registration,
    town: gt::town::Town,
}

impl Deref for TempTown {
    type Target = gt::town::Town;

    fn deref(&self) -> &gt::town::Town {
        &self.town
    }
}

impl TempTown {
    /// A fresh town under `base` with the daemon directories and [`CONFIG`].
    pub fn new(base: &Path) -> Result<TempTown> {
        TempTown::with_config(base, CONFIG)
    }

    /// A fresh town under `base` with the daemon directories and `config`
    /// as its `daemon/config.json`.
    pub fn with_config(base: &Path, config: &str) -> Result<TempTown> {
        let tmp = tempfile::Builder::new()
            .prefix("gt-bench-")
            .tempdir_in(base)
            .wrap_err_with(|| format!("cannot create a town under {}", base.display()))?;
        let reg = guard::register(Entry::Dir(tmp.path().to_path_buf()));
        let town = gt::town::Town::at(tmp.path())?;
        town.ensure_dirs()?;
        fs::write(town.config_file(), config)?;
        Ok(TempTown {
            tmp: Some(tmp),
            _reg: reg,
            town,
        })
    }

    /// Writes `inbox/.NAME.tmp` and returns (temp path, final path); the
    /// caller publishes with `rename` (so it can time the rename alone).
    pub fn stage(&self, name: &str, body: &[u8]) -> Result<(PathBuf, PathBuf)> {
        let inbox = self.inbox();
        let tmp = inbox.join(format!(".{name}.tmp"));
        let dest = inbox.join(request_file(name));
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

    /// The names in a directory of the town, dot-files (in-progress writes
    /// and the bench's own markers) left out.
    fn listing(&self, dir: &Path) -> HashSet<String> {
        fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Counts what is where, by reading each directory once.
    pub fn counts(&self) -> Counts {
        let count = |dir: PathBuf| -> (usize, usize) {
            let names = self.listing(&dir);
            let sidecars = names.iter().filter(|n| outcome::is_sidecar(n)).count();
            let requests = names.iter().filter(|n| n.ends_with(".json")).count() - sidecars;
            (requests, sidecars)
        };
        let (inbox, _) = count(self.inbox());
        let (processing, _) = count(self.processing());
        let (processed, processed_sidecars) = count(self.processed());
        let (failed, failed_sidecars) = count(self.failed());
        Counts {
            inbox,
            processing,
            processed,
            processed_sidecars,
            failed,
            failed_sidecars,
        }
    }

    /// Why request `name` was filed as failed, when it was.
    fn failed_because(&self, name: &str) -> Option<String> {
        let sidecar = outcome::sidecar_of(&self.failed().join(request_file(name)));
        sidecar
            .exists()
            .then(|| outcome::error_of(&sidecar).unwrap_or_else(|| "no reason given".into()))
    }

    /// Waits until the sidecar of every name exists in `processed/`, not
    /// empty.
    ///
    /// Checks names in `order` with one `stat` each, advancing while they
    /// exist and sleeping `poll` when the next one is missing: O(n) stats in
    /// all, so the bench steals little CPU from the daemon. Returns when the
    /// last one was seen and the uncertainty of that instant (the time spent
    /// finding already-filed names after the last miss). Fails at once when
    /// the awaited request was filed as failed, when nothing progresses for
    /// `stall`, or when `alive` fails.
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
            let sidecar = outcome::sidecar_of(&processed.join(request_file(&names[i])));
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
                if let Some(reason) = self.failed_because(&names[i]) {
                    bail!("{} was filed in failed/: {reason}", request_file(&names[i]));
                }
            } else if last_miss.duration_since(stuck_since) > stall {
                bail!(
                    "no progress for {stall:?}: waiting for {} after {i} of {} were filed; now {}",
                    request_file(&names[i]),
                    names.len(),
                    self.counts()
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

    /// Checks how every request in `names` was filed: each in `processed/`
    /// with a sidecar that says what `want` says, nothing else there, and
    /// nothing left in `inbox/`, `processing/` or `failed/`. Fails with a
    /// summary of what is missing or wrong.
    pub fn verify(&self, names: &[String], want: &Expected) -> Result<()> {
        let processed_dir = self.processed();
        let mut processed = self.listing(&processed_dir);
        let mut problems: Vec<String> = Vec::new();
        let (mut missing, mut missing_sidecar, mut wrong) = (0, 0, 0);
        for name in names {
            let file = request_file(name);
            let sidecar = outcome::sidecar_name(&file);
            let has_file = processed.remove(&file);
            let has_sidecar = processed.remove(&sidecar);
            if !has_file {
                missing += 1;
                let why = match self.failed_because(name) {
                    Some(reason) => format!("filed in failed/: {reason}"),
                    None => "not in processed/".into(),
                };
                problems.push(format!("{file}: {why}"));
                continue;
            }
            if !has_sidecar {
                missing_sidecar += 1;
                problems.push(format!("{file}: no sidecar in processed/"));
                continue;
            }
            if let Some(what) = outcome::check(&processed_dir.join(&sidecar), want) {
                wrong += 1;
                problems.push(format!("{sidecar}: {what}"));
            }
        }
        let extra = processed.len();
        if extra > 0 {
            let mut some: Vec<&String> = processed.iter().collect();
            some.sort();
            problems.push(format!(
                "{extra} unexpected file(s) in processed/, e.g. {}",
                some[0]
            ));
        }
        let c = self.counts();
        let (left, leftover) = (c.inbox + c.processing, c.failed + c.failed_sidecars);
        if left > 0 || leftover > 0 {
            problems.push(format!("left over: {c}"));
        }
        if problems.is_empty() {
            return Ok(());
        }
        let shown = 5;
        let more = problems.len().saturating_sub(shown);
        problems.truncate(shown);
        bail!(
            "verification of {} requests: {missing} not filed as processed, {missing_sidecar} \
             without a sidecar, {wrong} with a wrong sidecar{}: {}{}",
            names.len(),
            if extra > 0 {
                format!(", {extra} unexpected")
            } else {
                String::new()
            },
            problems.join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            }
        )
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

/// A valid request body, from [`FROM`] asking [`ACTION`].
pub fn request_body() -> Vec<u8> {
    request_body_for(FROM, ACTION)
}

/// A valid request body from `from` asking `action` (both plain names,
/// nothing to escape).
pub fn request_body_for(from: &str, action: &str) -> Vec<u8> {
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    format!("{{\"from\":\"{from}\",\"action\":\"{action}\",\"timestamp\":\"{ts}\"}}\n").into_bytes()
}

/// The file a request named `name` is published as.
pub fn request_file(name: &str) -> String {
    format!("{name}.json")
}

/// `PREFIX-000000` … : request names without the `.json`.
pub fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:06}")).collect()
}
