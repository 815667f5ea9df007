//! Validating a claimed file: is it complete, or still being written? The
//! reading and parsing themselves are the core's ([`crate::request::read`],
//! [`crate::request::validate`]), shared with the commands that show
//! requests.

use std::path::Path;
use std::time::Duration;

/// A file modified more recently than this, found by a scan rather than a
/// close/rename event, may still be being written: it is only taken once
/// it parses or has been quiet this long.
pub(crate) const SETTLE: Duration = Duration::from_secs(1);

/// Does `bytes` hold a whole JSON value? A prefix of a JSON object never
/// parses, so a file that does is not being written any more.
pub(crate) fn is_complete_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

/// Is a file we did not get a close/rename event for perhaps still being
/// written? True when it changed within [`SETTLE`] and its content does not
/// parse as JSON yet.
pub(crate) fn may_still_be_written(path: &Path, bytes: &[u8]) -> bool {
    let young = std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|age| age < SETTLE);
    young && !is_complete_json(bytes)
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
}
