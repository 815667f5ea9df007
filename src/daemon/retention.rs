//! Pruning old outcomes so a busy town's `processed/` and `failed/` do not
//! grow forever (`keep_processed`, and the longer `keep_failed`).
//!
//! A request goes together with its sidecar, judged by the sidecar's age
//! (when it was filed). Files without a sidecar were put there by hand and
//! are left alone.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::outcome::SIDECAR_SUFFIX;

/// Removes outcome pairs filed more than `keep` ago; returns how many.
pub(crate) fn prune(dir: &Path, keep: Duration, now: SystemTime) -> usize {
    let Some(cutoff) = now.checked_sub(keep) else {
        return 0;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(request) = name.to_str().and_then(|n| n.strip_suffix(SIDECAR_SUFFIX)) else {
            continue;
        };
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|m| m < cutoff);
        if !old {
            continue;
        }
        let request = dir.join(request);
        let gone = match std::fs::symlink_metadata(&request) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&request),
            Ok(_) => std::fs::remove_file(&request),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        // A supervised restart's capture goes with its record.
        let mut capture = request.clone().into_os_string();
        capture.push(crate::outcome::CAPTURE_SUFFIX);
        let _ = std::fs::remove_file(capture);
        match gone.and_then(|()| std::fs::remove_file(entry.path())) {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!(file = %crate::text::escape_os(request.as_os_str()), "cannot prune: {e}")
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prunes_old_pairs_only() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let old = now - Duration::from_secs(7200);
        for (name, mtime) in [("old.json", old), ("new.json", now)] {
            std::fs::write(dir.path().join(name), b"{}").unwrap();
            let side = dir.path().join(format!("{name}{SIDECAR_SUFFIX}"));
            std::fs::write(&side, b"{}").unwrap();
            std::fs::File::options()
                .write(true)
                .open(&side)
                .unwrap()
                .set_modified(mtime)
                .unwrap();
        }
        std::fs::write(dir.path().join("hand-made.json"), b"{}").unwrap();
        assert_eq!(prune(dir.path(), Duration::from_secs(3600), now), 1);
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["hand-made.json", "new.json", "new.json.result.json"]);
    }
}
