//! Reading outcomes back: the `.result.json` sidecars in `processed/` and
//! `failed/`, newest first, without reading every sidecar of a busy town.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use crate::outcome::{Sidecar, SIDECAR_SUFFIX};
use crate::town::Town;

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// The request's file name in its outcome directory: as it is when it
    /// is UTF-8, else escaped (`nb\xff.json`), which `retry` accepts.
    pub file: String,
    #[serde(serialize_with = "lossy")]
    pub path: PathBuf,
    #[serde(flatten)]
    pub sidecar: Sidecar,
}

/// Which outcome directories to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    All,
    Processed,
    Failed,
}

/// The `limit` most recent outcomes, newest first.
pub(crate) fn recent(town: &Town, which: Which, limit: usize) -> Vec<Entry> {
    let dirs: Vec<PathBuf> = match which {
        Which::All => vec![town.processed(), town.failed()],
        Which::Processed => vec![town.processed()],
        Which::Failed => vec![town.failed()],
    };
    // Sidecars are written once, when filed: their mtime orders them.
    let mut found: Vec<(SystemTime, PathBuf)> = dirs.iter().flat_map(|d| sidecars(d)).collect();
    let keep = limit.min(found.len());
    if keep < found.len() {
        found.select_nth_unstable_by(keep, |a, b| b.0.cmp(&a.0));
        found.truncate(keep);
    }
    let mut entries: Vec<Entry> = found
        .into_iter()
        .filter_map(|(_, path)| {
            let sidecar = crate::outcome::read_sidecar(&path)?;
            let request = path
                .as_os_str()
                .as_bytes()
                .strip_suffix(SIDECAR_SUFFIX.as_bytes())?;
            let path = PathBuf::from(OsStr::from_bytes(request));
            let name = path.file_name()?;
            Some(Entry {
                file: name
                    .to_str()
                    .map_or_else(|| crate::text::escape_os(name).into_owned(), str::to_owned),
                path,
                sidecar,
            })
        })
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.sidecar.finished_at));
    entries
}

/// A path that is not UTF-8 cannot be a JSON string as it is.
fn lossy<S: serde::Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

fn sidecars(dir: &Path) -> Vec<(SystemTime, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(SIDECAR_SUFFIX))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect()
}
