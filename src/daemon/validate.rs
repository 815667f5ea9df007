//! Validating a claimed file: is it complete, or still being written? The
//! reading and parsing themselves are the core's
//! ([`crate::inbox::read_request`], [`crate::request::validate`]), shared
//! with the commands that show requests.
//!
//! A file that may still be being written waits in [`Settling`] and is
//! looked at again: a regular file just created (its close-write event
//! says when it is complete, but a hard link or a writer that keeps it
//! open never sends one), or a claimed one that does not parse yet.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::time::{Duration, Instant};

use super::inlet::Hint;

/// A file modified more recently than this, found by a scan rather than a
/// close/rename event, may still be being written: it is only taken once
/// it parses or has been quiet this long.
pub(crate) const SETTLE: Duration = Duration::from_secs(1);

/// Names to look at again once due, with the hint to look at them with.
#[derive(Debug, Default)]
pub(crate) struct Settling(Vec<(OsString, Hint, Instant)>);

impl Settling {
    pub(crate) fn push(&mut self, name: OsString, hint: Hint, due: Instant) {
        self.0.push((name, hint, due));
    }

    /// `name`, at `path`, was just created (at `now`). A regular file gets
    /// its close-write event when complete; it is looked at again after
    /// [`SETTLE`] in case it never does (a hard link, a writer that keeps
    /// it open). Anything else (FIFO, directory, symlink) never will: it is
    /// to be taken now. True when it waits.
    pub(crate) fn created(&mut self, name: &OsStr, path: &Path, now: Instant) -> bool {
        let is_file = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file());
        if is_file {
            self.push(name.to_os_string(), Hint::Announced(now), now + SETTLE);
        }
        is_file
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// When the next name is due, if any.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.0.iter().map(|(_, _, due)| *due).min()
    }

    /// The names due at `now`, in the order they came.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<(OsString, Hint)> {
        let (due, later) = std::mem::take(&mut self.0)
            .into_iter()
            .partition(|(_, _, due)| *due <= now);
        self.0 = later;
        due.into_iter()
            .map(|(name, hint, _)| (name, hint))
            .collect()
    }

    /// The names already claimed into `processing/` (for a stop: they go
    /// back to the inbox).
    pub(crate) fn take_claimed(&mut self) -> Vec<OsString> {
        std::mem::take(&mut self.0)
            .into_iter()
            .filter(|(_, hint, _)| matches!(hint, Hint::Claimed(_)))
            .map(|(name, _, _)| name)
            .collect()
    }
}

/// Is the claimed file at `path`, holding `bytes`, perhaps still being
/// written? If so, the hint to look at it again with. A close or rename
/// event said it was complete; one announced by its creation is complete
/// once it parses, or after `write_timeout`; one found by a scan once it
/// parses or has been quiet for [`SETTLE`].
pub(crate) fn still_writing(
    hint: Hint,
    path: &Path,
    bytes: &[u8],
    write_timeout: Duration,
) -> Option<Hint> {
    let announced = match hint {
        Hint::Ready => return None,
        Hint::Announced(at) | Hint::Claimed(Some(at)) => Some(at),
        Hint::Created | Hint::Scan | Hint::Claimed(None) => None,
    };
    let writing = match announced {
        Some(at) => !is_complete_json(bytes) && at.elapsed() < write_timeout,
        None => may_still_be_written(path, bytes),
    };
    writing.then_some(Hint::Claimed(announced))
}

/// Does `bytes` hold a whole JSON value? A prefix of a JSON object never
/// parses, so a file that does is not being written any more.
pub(crate) fn is_complete_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

/// Is a file we did not get a close/rename event for perhaps still being
/// written? True when it changed within [`SETTLE`] and its content does not
/// parse as JSON yet.
pub(crate) fn may_still_be_written(path: &Path, bytes: &[u8]) -> bool {
    // A complete one needs no look at its age (no stat(2) per request).
    if is_complete_json(bytes) {
        return false;
    }
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|age| age < SETTLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_of_an_object_is_not_complete() {
        let whole = br#"{"from":"mayor","action":"cycle","timestamp":"2026-11-23T10:00:00Z"}"#;
        assert!(is_complete_json(whole));
        for cut in 1..whole.len() {
            assert!(!is_complete_json(&whole[..cut]), "{cut}");
        }
    }

    #[test]
    fn only_a_young_incomplete_file_may_still_be_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(&path, b"{\"from\":").unwrap();
        assert!(may_still_be_written(&path, b"{\"from\":"));
        assert!(!may_still_be_written(&path, b"{}"), "complete: taken now");
        let old = std::time::SystemTime::now() - SETTLE * 2;
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(!may_still_be_written(&path, b"{\"from\":"), "quiet: taken");
    }

    #[test]
    fn a_file_announced_by_its_creation_waits_until_it_parses_or_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(&path, b"{").unwrap();
        let minute = Duration::from_secs(60);
        let now = Instant::now();
        let announced = Hint::Announced(now);
        assert_eq!(
            still_writing(announced, &path, b"{", minute),
            Some(Hint::Claimed(Some(now)))
        );
        assert_eq!(still_writing(announced, &path, b"{}", minute), None);
        assert_eq!(still_writing(announced, &path, b"{", Duration::ZERO), None);
        assert_eq!(still_writing(Hint::Ready, &path, b"{", minute), None);
        assert_eq!(
            still_writing(Hint::Scan, &path, b"{", minute),
            Some(Hint::Claimed(None)),
            "young and incomplete"
        );
    }

    #[test]
    fn settling_names_come_back_when_due_and_claimed_ones_on_a_stop() {
        let dir = tempfile::tempdir().unwrap();
        let mut settling = Settling::default();
        let now = Instant::now();
        std::fs::write(dir.path().join("a.json"), b"{").unwrap();
        let a = OsStr::new("a.json");
        assert!(settling.created(a, &dir.path().join("a.json"), now));
        assert!(
            !settling.created(a, dir.path(), now),
            "a directory is taken at once"
        );
        settling.push("b.json".into(), Hint::Claimed(None), now);
        assert_eq!(settling.next_due(), Some(now));
        let due = settling.take_due(now);
        assert_eq!(due, [(OsString::from("b.json"), Hint::Claimed(None))]);
        assert_eq!(settling.len(), 1);
        assert!(settling.take_claimed().is_empty(), "a.json is not claimed");
        assert_eq!(settling.len(), 0);
    }
}
