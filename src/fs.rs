//! The file-system moves the daemon and its clients make, each written once.
//!
//! Durability policy, decided here: a file whose content matters after a
//! crash (state.json, a service unit, a published request) is written to a
//! temp file in the same directory, fsynced, then renamed over its name, so
//! readers see the old or the new content and never a mix. Renames that
//! move a request between directories never replace anything
//! (`RENAME_NOREPLACE`), so two writers can never lose each other's file;
//! the daemon batches the directory syncs that make those renames durable
//! (see the ledger) instead of paying one per file.

use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{OFlags, RenameFlags, CWD};

/// Writes `bytes` to `path` so that readers see the old or the new content,
/// never a mix, and the new content survives a crash once this returns.
/// `mode`: the file's permissions (else the temp file's, 0600).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    if let Some(mode) = mode {
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Renames `source` to `target` unless `target` exists
/// (`io::ErrorKind::AlreadyExists` then).
pub(crate) fn rename_noreplace(source: &Path, target: &Path) -> io::Result<()> {
    rustix::fs::renameat_with(CWD, source, CWD, target, RenameFlags::NOREPLACE).map_err(Into::into)
}

/// Renames `source` into `dir` under `name`, or the first free variant of
/// it ([`variant`]) when the name is taken; never replaces a file. Returns
/// the new path.
pub(crate) fn rename_unique(source: &Path, dir: &Path, name: &OsStr) -> io::Result<PathBuf> {
    for attempt in 0u32.. {
        let target = dir.join(variant(name, attempt));
        match rename_noreplace(source, &target) {
            Ok(()) => return Ok(target),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("u32 attempts exhausted")
}

/// `x.json`, then `x-1.json`, `x-2.json`, …; the name's bytes are kept as
/// they are (a name need not be UTF-8).
pub(crate) fn variant(name: &OsStr, attempt: u32) -> OsString {
    if attempt == 0 {
        return name.to_os_string();
    }
    let bytes = name.as_bytes();
    let (stem, ext): (&[u8], &[u8]) = match bytes.strip_suffix(b".json") {
        Some(stem) => (stem, b".json"),
        None => (bytes, b""),
    };
    let mut out = stem.to_vec();
    out.extend_from_slice(format!("-{attempt}").as_bytes());
    out.extend_from_slice(ext);
    OsString::from_vec(out)
}

/// Read-modify-write of the JSON file `file` under an exclusive `flock` on
/// `lock`, so the daemon and a command changing the same file at once never
/// lose each other's update. A missing or unreadable file starts from the
/// default (logged); `change` returns its answer and whether to write.
pub(crate) fn locked_update<T, R>(
    file: &Path,
    lock: &Path,
    change: impl FnOnce(&mut T) -> (R, bool),
) -> io::Result<R>
where
    T: Default + serde::Serialize + serde::de::DeserializeOwned,
{
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock)?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
    let mut value: T = match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(file = %file.display(), "unreadable, starting afresh: {e}");
            T::default()
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => T::default(),
        Err(e) => return Err(e),
    };
    let (answer, changed) = change(&mut value);
    if changed {
        let mut bytes = serde_json::to_vec_pretty(&value).map_err(io::Error::other)?;
        bytes.push(b'\n');
        write_atomic(file, &bytes, None)?;
    }
    Ok(answer)
}

/// Whether [`read_bounded`] follows a symbolic link at the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Links {
    /// Read what the link points to (still only a regular file).
    Follow,
    /// Refuse the link itself, never looking at its target.
    Refuse,
}

/// Why [`read_bounded`] did not read a file: it is no regular file, or it
/// is larger than the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotRead {
    /// What it is instead: "a FIFO (never opened)", "a directory", ...
    NotRegular(&'static str),
    /// At least `len` bytes, over `limit`.
    TooLarge { len: u64, limit: u64 },
}

impl std::fmt::Display for NotRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotRead::NotRegular(kind) => write!(f, "not a regular file: {kind}"),
            NotRead::TooLarge { len, limit } => {
                write!(
                    f,
                    "file is too large: {len} bytes or more, limit {limit} bytes"
                )
            }
        }
    }
}

/// Reads a file someone else may have put there (a request, config.json)
/// without ever blocking on it or holding more than `limit` bytes of it:
/// regular files only, so a FIFO, socket or device is never opened, a
/// directory never read; the open is `O_NONBLOCK` (and `O_NOFOLLOW` with
/// [`Links::Refuse`]), so a name swapped for a FIFO after the look cannot
/// hang it either, and what was opened is looked at again before a byte is
/// read. `Ok(Err(_))` says why the file was refused; `Err` is a failure to
/// look or read (`NotFound` among them).
pub(crate) fn read_bounded(
    path: &Path,
    limit: u64,
    links: Links,
) -> io::Result<Result<Vec<u8>, NotRead>> {
    let meta = match links {
        Links::Follow => std::fs::metadata(path)?,
        Links::Refuse => std::fs::symlink_metadata(path)?,
    };
    if let Some(refused) = refusal(&meta, limit) {
        return Ok(Err(refused));
    }
    let mut flags = OFlags::NONBLOCK;
    if links == Links::Refuse {
        flags |= OFlags::NOFOLLOW;
    }
    let file = match File::options()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Ok(Err(NotRead::NotRegular("a symbolic link (never followed)")))
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if let Some(refused) = refusal(&meta, limit) {
        return Ok(Err(refused));
    }
    let bytes = read_sized(&file, meta.len(), limit)?;
    if bytes.len() as u64 > limit {
        return Ok(Err(NotRead::TooLarge {
            len: bytes.len() as u64,
            limit,
        }));
    }
    Ok(Ok(bytes))
}

/// Reads regular `file`, `len` bytes long when looked at, and at most
/// `limit + 1` bytes of it: one read(2) into a buffer one byte longer than
/// the file, whose short answer is the end of a regular file (read_to_end
/// would ask again to be told so). A file grown since is read on, to the
/// bound.
fn read_sized(mut file: &File, len: u64, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0; (len.min(limit) + 1) as usize];
    let mut got = 0;
    loop {
        match file.read(&mut bytes[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if got < bytes.len() {
            break;
        }
        let more = (bytes.len() as u64 * 2).min(limit + 1) as usize;
        if more == bytes.len() {
            break;
        }
        bytes.resize(more, 0);
    }
    bytes.truncate(got);
    Ok(bytes)
}

/// Why a file with this metadata is not read, if it is not.
fn refusal(meta: &Metadata, limit: u64) -> Option<NotRead> {
    let t = meta.file_type();
    let kind = if t.is_file() {
        return (meta.len() > limit).then_some(NotRead::TooLarge {
            len: meta.len(),
            limit,
        });
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
    Some(NotRead::NotRegular(kind))
}

/// Makes the entries of `dir` (files created, renamed in or out) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_whole_and_bounded_whatever_its_size_was_when_looked_at() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        for (content, len_seen, limit) in [
            (&b""[..], 0, 10),
            (b"{}", 2, 10),
            (b"0123456789", 10, 10),
            // Grown since it was looked at: read on, to the bound.
            (b"0123456789abcdef", 3, 100),
            (b"0123456789abcdef", 0, 100),
        ] {
            std::fs::write(&path, content).unwrap();
            let file = File::open(&path).unwrap();
            assert_eq!(read_sized(&file, len_seen, limit).unwrap(), content);
        }
        std::fs::write(&path, [b'x'; 64]).unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(read_sized(&file, 2, 10).unwrap().len(), 11, "limit + 1");
        let refused = read_bounded(&path, 10, Links::Refuse).unwrap();
        assert!(matches!(refused, Err(NotRead::TooLarge { .. })));
    }

    #[test]
    fn variants_keep_the_bytes() {
        assert_eq!(variant(OsStr::new("x.json"), 0), "x.json");
        assert_eq!(variant(OsStr::new("x.json"), 2), "x-2.json");
        assert_eq!(variant(OsStr::new("x"), 1), "x-1");
        let odd = OsStr::from_bytes(b"nb\xff.json");
        assert_eq!(variant(odd, 1).as_bytes(), b"nb\xff-1.json");
    }

    #[test]
    fn unique_rename_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("x.json"), b"old").unwrap();
        std::fs::write(a.join("x.json"), b"new").unwrap();
        let to = rename_unique(&a.join("x.json"), &b, OsStr::new("x.json")).unwrap();
        assert_eq!(to, b.join("x-1.json"));
        assert_eq!(std::fs::read(b.join("x.json")).unwrap(), b"old");
        assert_eq!(std::fs::read(to).unwrap(), b"new");
    }

    #[test]
    fn bounded_reads_refuse_what_is_not_a_small_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        let fifo = path("fifo");
        rustix::fs::mkfifoat(CWD, &fifo, rustix::fs::Mode::from_bits_truncate(0o644)).unwrap();
        std::fs::write(path("small"), b"{}").unwrap();
        std::fs::write(path("big"), vec![b' '; 101]).unwrap();
        std::os::unix::fs::symlink(path("small"), path("to-small")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", path("to-zero")).unwrap();
        let read = |name: &str, links| read_bounded(&path(name), 100, links).unwrap();
        for links in [Links::Follow, Links::Refuse] {
            assert_eq!(read("small", links), Ok(b"{}".to_vec()));
            assert_eq!(
                read("fifo", links),
                Err(NotRead::NotRegular("a FIFO (never opened)"))
            );
            assert_eq!(
                read("big", links),
                Err(NotRead::TooLarge {
                    len: 101,
                    limit: 100
                })
            );
            let zero = read("to-zero", links).unwrap_err().to_string();
            let want = match links {
                Links::Follow => "not a regular file: a device (never opened)",
                Links::Refuse => "not a regular file: a symbolic link (never followed)",
            };
            assert_eq!(zero, want);
        }
        assert_eq!(read("to-small", Links::Follow), Ok(b"{}".to_vec()));
        assert!(read("to-small", Links::Refuse).is_err());
        assert_eq!(
            read_bounded(dir.path(), 100, Links::Follow).unwrap(),
            Err(NotRead::NotRegular("a directory"))
        );
        let gone = read_bounded(&path("gone"), 100, Links::Follow).unwrap_err();
        assert_eq!(gone.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn atomic_write_sets_the_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"one", Some(0o644)).unwrap();
        write_atomic(&path, b"two", None).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        write_atomic(&path, b"three", Some(0o644)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
