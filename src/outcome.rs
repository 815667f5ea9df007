//! A request's outcome as filed: `processed/NAME` or `failed/NAME`, its
//! original bytes untouched, beside `NAME.result.json` (the sidecar).
//!
//! The daemon writes these (`daemon::filing`); `send --wait`, `requests`,
//! `status`, `retry` and retention read them through this module.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::town::Town;

pub const SIDECAR_SUFFIX: &str = ".result.json";

/// Beside a supervised restart's record: the dead pane's last lines.
pub const CAPTURE_SUFFIX: &str = ".pane.txt";

/// The most of a sidecar that is read. A request is at most 64 KiB, and
/// its sidecar holds a few of its fields and a reason quoting them,
/// escaped: well under this. A larger one (or a FIFO, a device) was not
/// written by the daemon.
pub const MAX_SIDECAR_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Processed,
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 2] = [Outcome::Processed, Outcome::Failed];

    /// The directory this outcome is filed in.
    pub fn dir(self, town: &Town) -> PathBuf {
        match self {
            Outcome::Processed => town.processed(),
            Outcome::Failed => town.failed(),
        }
    }
}

/// The `.result.json` sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    pub outcome: Outcome,
    pub error: Option<String>,
    pub from: Option<String>,
    pub action: Option<String>,
    pub session: Option<String>,
    pub finished_at: DateTime<Utc>,
    pub daemon_pid: u32,
    /// The request's name as it arrived, when it had to be filed under a
    /// shorter one (file systems limit a name to 255 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_name: Option<String>,
    /// This outcome is the daemon's Nth filed since it started: state.json
    /// counts it once `requests_processed + requests_failed` reaches N
    /// (outcomes are counted in the order they are filed, after they are
    /// durable), which is how `send --wait` knows the counters include it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// `dir/NAME` → `dir/NAME.result.json`.
pub fn sidecar_path(request: &Path) -> PathBuf {
    let mut name = request.file_name().unwrap_or_default().to_os_string();
    name.push(SIDECAR_SUFFIX);
    request.with_file_name(name)
}

/// Is `name` a sidecar rather than a request?
pub fn is_sidecar_name(name: &OsStr) -> bool {
    name.as_encoded_bytes().ends_with(SIDECAR_SUFFIX.as_bytes())
}

/// The sidecar at `path` when it is complete; `None` when missing, cut
/// short (a crash while it was being written), or not what the daemon
/// writes: not a regular file (never opened), over [`MAX_SIDECAR_BYTES`].
pub fn read_sidecar(path: &Path) -> Option<Sidecar> {
    serde_json::from_slice(&crate::fs::read_own(path, MAX_SIDECAR_BYTES).ok()?).ok()
}

/// A request that has been filed.
#[derive(Debug, Clone)]
pub struct Filed {
    pub path: PathBuf,
    pub sidecar: Sidecar,
}

/// Whether the request named `name` has been filed, and how. Filing writes
/// the sidecar first and moves the request beside it last, so a request
/// beside a complete sidecar is filed for good.
pub fn filed(town: &Town, name: &OsStr) -> Option<Filed> {
    Outcome::ALL.into_iter().find_map(|outcome| {
        let path = outcome.dir(town).join(name);
        if std::fs::symlink_metadata(&path).is_err() {
            return None;
        }
        let sidecar = read_sidecar(&sidecar_path(&path))?;
        Some(Filed { path, sidecar })
    })
}
