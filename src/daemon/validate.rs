//! Validating a claimed file: read it without ever following, blocking on
//! or swallowing a strange one, then parse it into a request.

use std::io;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::fs::{self, Links, NotRead};
use crate::request::{self, Partial, Rejection, Request, MAX_REQUEST_BYTES};

/// A file modified more recently than this, found by a scan rather than a
/// close/rename event, may still be being written: it is only taken once
/// it parses or has been quiet this long.
pub(crate) const SETTLE: Duration = Duration::from_secs(1);

/// Validates the bytes `read` from a claimed file: the request, or the
/// reason it is refused, with whatever identity could be read for the
/// sidecar either way.
pub(crate) fn validate(
    read: io::Result<Result<Vec<u8>, Rejection>>,
    now: DateTime<Utc>,
    max_age: Duration,
) -> (Result<Request, String>, Partial) {
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(rejection)) => return (Err(rejection.0), Partial::default()),
        Err(e) => {
            return (
                Err(format!("cannot read the request: {e}")),
                Partial::default(),
            )
        }
    };
    match request::parse(&bytes, now, max_age) {
        Ok(r) => {
            let partial = Partial::of(&r);
            (Ok(r), partial)
        }
        Err((rejection, partial)) => (Err(rejection.0), partial),
    }
}

/// Reads a request file: regular files only (symlinks are never followed,
/// FIFOs and devices never opened), at most [`MAX_REQUEST_BYTES`].
pub(crate) fn read_request(path: &Path) -> io::Result<Result<Vec<u8>, Rejection>> {
    let read = fs::read_bounded(path, MAX_REQUEST_BYTES, Links::Refuse)?;
    Ok(read.map_err(|refused| match refused {
        NotRead::TooLarge { .. } => Rejection(format!(
            "{refused} (64 KiB); requests are a few hundred bytes"
        )),
        NotRead::NotRegular(_) => Rejection(refused.to_string()),
    }))
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
    fn strange_files_are_refused_unopened() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f.json");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let r = read_request(&fifo).unwrap().unwrap_err();
        assert!(r.0.contains("FIFO"), "{r}");
        let target = dir.path().join("target");
        std::fs::write(&target, b"{}").unwrap();
        let link = dir.path().join("l.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(read_request(&link)
            .unwrap()
            .unwrap_err()
            .0
            .contains("symbolic link"));
        let big = dir.path().join("big.json");
        std::fs::write(&big, vec![b'['; 1 << 20]).unwrap();
        assert!(read_request(&big)
            .unwrap()
            .unwrap_err()
            .0
            .contains("too large"));
    }
}
