//! Finding requests in `inbox/`: the notify watcher (or polling), scans,
//! and reading a file without ever following, blocking on or swallowing a
//! strange one.
//!
//! The watcher only says "look at NAME" or "rescan": it never decides
//! anything, so a lost, duplicated or reordered event can cost a syscall
//! but never a request. Claiming by rename is what makes each file handled
//! once.

use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};

use crate::request::{Rejection, MAX_REQUEST_BYTES};

/// A file modified more recently than this, found by a scan rather than a
/// close/rename event, may still be being written: it is only taken once
/// it parses or has been quiet this long.
pub const SETTLE: Duration = Duration::from_secs(1);

/// How a name came to our attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// Closed after writing, or renamed in: complete.
    Ready,
    /// Just created: a regular file may still be being written.
    Created,
    /// Found by a scan: may be anything.
    Scan,
    /// Already claimed into `processing/` while still being written: look
    /// at it there again.
    Claimed,
}

#[derive(Debug)]
pub enum Message {
    Candidate(OsString, Hint),
    /// The watcher may have missed events (queue overflow, error).
    Rescan(&'static str),
    Stop,
}

/// Requests are `*.json`; dot-names are writes in progress.
pub fn is_request_name(name: &std::ffi::OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    !bytes.starts_with(b".") && bytes.ends_with(b".json") && bytes.len() > ".json".len()
}

/// Keeps the watcher alive; dropping it stops the events.
pub struct Watch {
    _watcher: notify::RecommendedWatcher,
}

/// Watches `inbox` and sends candidates into `tx`. When the channel is full
/// the event is dropped and `overflow` set: the consumer rescans instead,
/// so a flood costs one scan, not unbounded memory.
pub fn watch(
    inbox: &Path,
    tx: SyncSender<Message>,
    overflow: Arc<AtomicBool>,
) -> notify::Result<Watch> {
    let handler = move |res: notify::Result<notify::Event>| {
        let msg = match res {
            Err(e) => {
                tracing::warn!("inbox watcher error, rescanning: {e}");
                Some(Message::Rescan("watcher error"))
            }
            Ok(event) if event.need_rescan() => {
                Some(Message::Rescan("kernel event queue overflowed"))
            }
            Ok(event) => {
                let hint = match event.kind {
                    EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Hint::Ready),
                    EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Any)) => {
                        Some(Hint::Ready)
                    }
                    EventKind::Create(
                        CreateKind::File | CreateKind::Folder | CreateKind::Any | CreateKind::Other,
                    ) => Some(Hint::Created),
                    _ => None,
                };
                // inotify also reports a rename within the inbox as `Both`
                // after `To`; `To` alone covers it.
                hint.and_then(|hint| {
                    let name = event.paths.last()?.file_name()?.to_os_string();
                    is_request_name(&name).then_some(Message::Candidate(name, hint))
                })
            }
        };
        if let Some(msg) = msg {
            match tx.try_send(msg) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => overflow.store(true, Ordering::Release),
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
    };
    let mut watcher = notify::recommended_watcher(handler)?;
    watcher.watch(inbox, RecursiveMode::NonRecursive)?;
    Ok(Watch { _watcher: watcher })
}

/// The request names in `inbox`, oldest-named first (names from
/// `gt daemon send` start with a timestamp, so this is arrival order).
pub fn scan(inbox: &Path) -> io::Result<Vec<OsString>> {
    let mut names: Vec<OsString> = std::fs::read_dir(inbox)?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .filter(|n| is_request_name(n))
        .collect();
    names.sort_unstable();
    Ok(names)
}

/// Counts pending requests: names only, no stat per file (the heartbeat
/// does this every interval, however big the inbox).
pub fn pending_count(inbox: &Path) -> u64 {
    std::fs::read_dir(inbox)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| is_request_name(&e.file_name()))
                .count() as u64
        })
        .unwrap_or(0)
}

/// Counts pending requests and finds the oldest one's modification time.
pub fn pending(inbox: &Path) -> (u64, Option<SystemTime>) {
    let Ok(entries) = std::fs::read_dir(inbox) else {
        return (0, None);
    };
    let mut count = 0;
    let mut oldest: Option<SystemTime> = None;
    for entry in entries.flatten() {
        if is_request_name(&entry.file_name()) {
            count += 1;
            if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                oldest = Some(oldest.map_or(modified, |o| o.min(modified)));
            }
        }
    }
    (count, oldest)
}

/// Reads a request file: regular files only (symlinks are never followed,
/// FIFOs and devices never opened), at most [`MAX_REQUEST_BYTES`].
pub fn read_request(path: &Path) -> io::Result<Result<Vec<u8>, Rejection>> {
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

/// Is a file we did not get a close/rename event for perhaps still being
/// written? True when it changed within [`SETTLE`] and its content does not
/// parse as JSON yet.
pub fn may_still_be_written(path: &Path, bytes: &[u8]) -> bool {
    let young = std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|age| age < SETTLE);
    young && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_names() {
        assert!(is_request_name("a.json".as_ref()));
        assert!(!is_request_name(".a.json".as_ref()));
        assert!(!is_request_name(".a.tmp".as_ref()));
        assert!(!is_request_name("a.json.tmp".as_ref()));
        assert!(!is_request_name(".json".as_ref()));
    }

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
