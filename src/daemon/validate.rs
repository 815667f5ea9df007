//! Validating a claimed file: read it without ever following, blocking on
//! or swallowing a strange one, then parse it into a request.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

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
    let meta = std::fs::symlink_metadata(path)?;
    if let Some(rejection) = check_meta(&meta) {
        return Ok(Err(rejection));
    }
    // O_NONBLOCK: should the name be swapped for a FIFO after the lstat,
    // opening it still cannot hang; O_NOFOLLOW: nor can it become a link.
    let file = match File::options()
        .read(true)
        .custom_flags(libc_flags())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Ok(Err(Rejection(
                "not a regular file: a symbolic link (never followed)".into(),
            )))
        }
        Err(e) => return Err(e),
    };
    if let Some(rejection) = check_meta(&file.metadata()?) {
        return Ok(Err(rejection));
    }
    let mut bytes = Vec::with_capacity(1024);
    file.take(MAX_REQUEST_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_REQUEST_BYTES {
        return Ok(Err(too_large(bytes.len() as u64)));
    }
    Ok(Ok(bytes))
}

fn libc_flags() -> i32 {
    (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32
}

fn check_meta(meta: &Metadata) -> Option<Rejection> {
    let t = meta.file_type();
    let kind = if t.is_file() {
        return (meta.len() > MAX_REQUEST_BYTES).then(|| too_large(meta.len()));
    } else if t.is_symlink() {
        "a symbolic link (never followed)"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (never opened)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device (never opened)"
    } else {
        "of an unknown type"
    };
    Some(Rejection(format!("not a regular file: {kind}")))
}

fn too_large(len: u64) -> Rejection {
    Rejection(format!(
        "file is too large: {len} bytes or more, limit {} bytes (64 KiB); requests are a few hundred bytes",
        MAX_REQUEST_BYTES
    ))
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
