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
/// lose each other's update; `change` returns its answer and whether to
/// write. The file is read as [`read_bounded`] reads (at most `limit`
/// bytes, never a link, never blocking on a FIFO) and the lock opened as
/// [`open_lock`] opens it. A file that cannot be used (not JSON, not a
/// regular file, over `limit`) is said in the log and replaced by one
/// made from the default; a lock that cannot be used is an error.
pub(crate) fn locked_update<T, R>(
    file: &Path,
    lock: &Path,
    limit: u64,
    change: impl FnOnce(&mut T) -> (R, bool),
) -> io::Result<R>
where
    T: Default + serde::Serialize + serde::de::DeserializeOwned,
{
    let lock = open_lock(lock)?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
    let read = match read_bounded(file, limit, Links::Refuse) {
        Ok(Ok(bytes)) => serde_json::from_slice(&bytes).map_err(|e| e.to_string()),
        Ok(Err(refused)) => Err(refused.to_string()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => return Err(named(file, e)),
    };
    let (mut value, afresh) = match read {
        Ok(value) => (value, false),
        Err(why) => {
            tracing::warn!(file = %file.display(), "unusable ({why}): replaced by a fresh one");
            (T::default(), true)
        }
    };
    let (answer, changed) = change(&mut value);
    if changed || afresh {
        let mut bytes = serde_json::to_vec_pretty(&value).map_err(io::Error::other)?;
        bytes.push(b'\n');
        write_atomic(file, &bytes, None).map_err(|e| named(file, e))?;
    }
    Ok(answer)
}

/// `e`, naming the file it is about.
fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Opens (creating it when missing) a lock file of the town for `flock`,
/// as a file someone else may have put there: never following a symbolic
/// link, never blocking (`O_NONBLOCK`: a FIFO opens at once), and refusing
/// anything but a regular file with an `InvalidData` error naming it.
pub(crate) fn open_lock(path: &Path) -> io::Result<File> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .custom_flags((OFlags::NONBLOCK | OFlags::NOFOLLOW).bits() as i32)
        .open(path)
        .map_err(
            |e| match e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                true => NotRead::NotRegular("a symbolic link (never followed)").into(),
                false => e,
            },
        )
        .map_err(|e| named(path, e))?;
    match not_regular(&file.metadata()?) {
        Some(refused) => Err(named(path, refused.into())),
        None => Ok(file),
    }
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

impl std::error::Error for NotRead {}

impl From<NotRead> for io::Error {
    fn from(refused: NotRead) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, refused)
    }
}

/// Reads a file someone else may have put there (a request, config.json,
/// state.json) without ever blocking on it or holding more than `limit`
/// bytes of it: it is opened as [`open_regular`] opens, and read up to
/// `limit`. `Ok(Err(_))` says why the file was refused; `Err` is a failure
/// to look or read (`NotFound` among them).
pub(crate) fn read_bounded(
    path: &Path,
    limit: u64,
    links: Links,
) -> io::Result<Result<Vec<u8>, NotRead>> {
    let (file, len) = match open_checked(path, links)? {
        Ok(opened) => opened,
        Err(refused) => return Ok(Err(refused)),
    };
    if len > limit {
        return Ok(Err(NotRead::TooLarge { len, limit }));
    }
    let bytes = read_sized(&file, len, limit)?;
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

/// [`read_bounded`] for a file the daemon writes and others read back
/// (state.json, a sidecar, daemon.pid), which is never a link: a refusal
/// is an `InvalidData` error saying why; every error names the file (its
/// kind kept: `NotFound` is still `NotFound`).
pub(crate) fn read_own(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    read_bounded(path, limit, Links::Refuse)
        .and_then(|read| read.map_err(io::Error::from))
        .map_err(|e| named(path, e))
}

/// [`open_regular`] for a file the daemon wrote (a sidecar), which is
/// never a link: a refusal is an `InvalidData` error; every error names
/// the file.
pub(crate) fn open_own(path: &Path) -> io::Result<File> {
    open_regular(path, Links::Refuse)
        .and_then(|opened| opened.map_err(io::Error::from))
        .map_err(|e| named(path, e))
}

/// A JSON file the daemon writes and others read back (state.json,
/// supervise.json), read as [`read_own`] reads it: the default when it is
/// missing; an error naming the file when it cannot be read or is not
/// what the daemon writes.
pub(crate) fn read_json<T>(path: &Path, limit: u64) -> io::Result<T>
where
    T: Default + serde::de::DeserializeOwned,
{
    match read_own(path, limit) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| named(path, io::Error::new(io::ErrorKind::InvalidData, e))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e),
    }
}

/// Opens a file someone else may have put there, for reading, without
/// ever blocking on it: regular files only, so a FIFO, socket or device is
/// never opened, a directory never read; the open is `O_NONBLOCK` (and
/// `O_NOFOLLOW` with [`Links::Refuse`]), so a name swapped for a FIFO after
/// the look cannot hang it either, and what was opened is looked at again.
pub(crate) fn open_regular(path: &Path, links: Links) -> io::Result<Result<File, NotRead>> {
    Ok(open_checked(path, links)?.map(|(file, _)| file))
}

/// [`open_regular`], and the length of what was opened, as its `fstat`
/// said (read on the hot path of every request: one look, not two).
fn open_checked(path: &Path, links: Links) -> io::Result<Result<(File, u64), NotRead>> {
    let meta = match links {
        Links::Follow => std::fs::metadata(path)?,
        Links::Refuse => std::fs::symlink_metadata(path)?,
    };
    if let Some(refused) = not_regular(&meta) {
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
    if let Some(refused) = not_regular(&meta) {
        return Ok(Err(refused));
    }
    Ok(Ok((file, meta.len())))
}

/// Opens (creating it when missing) a file to append to that someone else
/// may have replaced (daemon.log): never blocking (`O_NONBLOCK`), and
/// refusing anything but a regular file (a FIFO, a device, even behind a
/// link) with an `InvalidData` error naming it, so nothing written to it
/// goes anywhere but into a file.
pub(crate) fn open_append(path: &Path) -> io::Result<File> {
    let refuse = |meta: &Metadata| not_regular(meta).map(|r| named(path, r.into()));
    if let Some(refused) = std::fs::metadata(path).ok().as_ref().and_then(refuse) {
        return Err(refused);
    }
    let file = File::options()
        .create(true)
        .append(true)
        .custom_flags(OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| named(path, e))?;
    match refuse(&file.metadata()?) {
        Some(refused) => Err(refused),
        None => Ok(file),
    }
}

/// What a file with this metadata is, when it is not a regular file.
fn not_regular(meta: &Metadata) -> Option<NotRead> {
    let t = meta.file_type();
    let kind = if t.is_file() {
        return None;
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
/// Opened with `O_DIRECTORY`, so a FIFO put in its place is refused, never
/// waited on.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::options()
        .read(true)
        .custom_flags((OFlags::DIRECTORY | OFlags::NONBLOCK).bits() as i32)
        .open(dir)?
        .sync_all()
}

/// Makes a FIFO at `path`, for tests of what must never open one. rustix
/// wraps mkfifoat(2) only where the C library has it (not macOS), where
/// mkfifo(1) does the same.
#[cfg(test)]
pub(crate) fn make_fifo(path: &Path) {
    #[cfg(target_os = "linux")]
    rustix::fs::mkfifoat(CWD, path, rustix::fs::Mode::from_bits_truncate(0o644)).unwrap();
    #[cfg(not(target_os = "linux"))]
    assert!(std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap()
        .success());
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
        make_fifo(&fifo);
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

    /// Runs `f` on a thread, failing the test if it takes more than a few
    /// seconds (an open that blocks on a FIFO would hang it for ever).
    fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(f()));
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{what} blocked"))
    }

    type Map = std::collections::BTreeMap<String, u32>;

    #[test]
    fn a_lock_file_that_is_no_regular_file_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (file, lock) = (dir.path().join("f.json"), dir.path().join("f.lock"));
        make_fifo(&lock);
        let update = |file: PathBuf, lock: PathBuf| {
            within("locked_update", move || {
                locked_update(&file, &lock, 100, |_: &mut Map| ((), true))
            })
        };
        let e = update(file.clone(), lock.clone()).unwrap_err().to_string();
        assert!(e.contains("f.lock") && e.contains("a FIFO"), "{e}");
        std::fs::remove_file(&lock).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &lock).unwrap();
        let e = update(file.clone(), lock.clone()).unwrap_err().to_string();
        assert!(e.contains("f.lock") && e.contains("symbolic link"), "{e}");
        assert!(!file.exists(), "nothing written without the lock");
    }

    #[test]
    fn an_unusable_file_under_update_is_replaced_by_a_fresh_one() {
        let dir = tempfile::tempdir().unwrap();
        let (file, lock) = (dir.path().join("f.json"), dir.path().join("f.lock"));
        let huge = {
            let mut text = br#"{"a": 1}"#.to_vec();
            text.resize(101, b' ');
            text
        };
        for kind in ["fifo", "dev-zero", "huge", "garbage"] {
            match kind {
                "fifo" => make_fifo(&file),
                "dev-zero" => std::os::unix::fs::symlink("/dev/zero", &file).unwrap(),
                "huge" => std::fs::write(&file, &huge).unwrap(),
                _ => std::fs::write(&file, b"not json").unwrap(),
            }
            let (f, l) = (file.clone(), lock.clone());
            let seen = within(kind, move || {
                locked_update(&f, &l, 100, |map: &mut Map| (map.len(), false))
            });
            assert_eq!(seen.unwrap(), 0, "{kind}: read as empty");
            let meta = std::fs::symlink_metadata(&file).unwrap();
            assert!(meta.is_file(), "{kind}: replaced by a regular file");
            assert_eq!(std::fs::read(&file).unwrap(), b"{}\n", "{kind}");
            std::fs::remove_file(&file).unwrap();
        }
    }

    #[test]
    fn syncing_or_appending_refuses_a_fifo_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        make_fifo(&fifo);
        let f = fifo.clone();
        assert!(within("sync_dir", move || sync_dir(&f)).is_err());
        let f = fifo.clone();
        let e = within("open_append", move || open_append(&f)).unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let e = open_append(&zero).unwrap_err();
        assert!(e.to_string().contains("a device"), "{e}");
        let log = dir.path().join("log");
        open_append(&log).unwrap().write_all(b"one\n").unwrap();
        open_append(&log).unwrap().write_all(b"two\n").unwrap();
        assert_eq!(std::fs::read(&log).unwrap(), b"one\ntwo\n");
        let f = fifo.clone();
        let e = within("read_own", move || read_own(&f, 100)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(
            e.to_string().contains("fifo: not a regular file: a FIFO"),
            "{e}"
        );
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
