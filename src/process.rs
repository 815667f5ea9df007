//! Ending an agent for good: the pane's process and all its descendants.
//!
//! tmux's kill-session only sends SIGHUP to the pane's process group, so an
//! agent (or a child it spawned into another group) that ignores it would
//! survive and keep burning tokens. We walk `/proc` for the whole tree.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// `pid` and all its live descendants.
pub fn tree(roots: &[u32]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = parent_of(pid) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut seen: HashSet<u32> = HashSet::new();
    let mut stack: Vec<u32> = roots.to_vec();
    while let Some(pid) = stack.pop() {
        if seen.insert(pid) {
            stack.extend(children.get(&pid).into_iter().flatten());
        }
    }
    let mut all: Vec<u32> = seen.into_iter().filter(|&p| alive(p)).collect();
    all.sort_unstable();
    all
}

/// Reads the parent PID from `/proc/PID/stat`; the command name may hold
/// spaces and parentheses, so fields are counted after the last ')'.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Alive and not a zombie waiting to be reaped.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// SIGKILL is pending: the process is dying and nothing it does can stop
/// that, but a thread stuck in an uninterruptible call (a `syncfs` on a
/// busy disk) keeps its files, and its locks, until the call returns.
pub fn sigkill_pending(pid: u32) -> bool {
    // Bit n-1 of the masks stands for signal n; SIGKILL is 9 on Linux.
    const SIGKILL_BIT: u64 = 1 << 8;
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status.lines().any(|line| {
        let mask = line
            .strip_prefix("SigPnd:")
            .or_else(|| line.strip_prefix("ShdPnd:"));
        mask.and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .is_some_and(|mask| mask & SIGKILL_BIT != 0)
    })
}

pub fn signal(pid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// SIGTERM to the whole tree, SIGKILL to whatever is left after `grace`.
/// Returns how many processes needed SIGKILL.
pub fn terminate_tree(roots: &[u32], grace: Duration) -> usize {
    let first = tree(roots);
    for &pid in &first {
        signal(pid, Signal::TERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && first.iter().any(|&p| alive(p)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Children spawned meanwhile belong to the tree too.
    let mut left: Vec<u32> = first.iter().copied().filter(|&p| alive(p)).collect();
    left.extend(tree(&left));
    left.sort_unstable();
    left.dedup();
    for &pid in &left {
        signal(pid, Signal::KILL);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && left.iter().any(|&p| alive(p)) {
        std::thread::sleep(Duration::from_millis(10));
    }
    left.len()
}

/// Runs `cmd` to completion with `input` on its stdin and its output
/// captured, killing its whole process group past `limit`: `Ok(None)`
/// then. Input and output go through files (in memory on Linux) rather
/// than pipes, so neither a command that never reads nor one with much to say
/// can block us while we wait for it to exit; its own process group lets a
/// shell pipeline be ended whole.
pub(crate) fn run_bounded(
    cmd: &mut Command,
    input: &[u8],
    limit: Duration,
) -> io::Result<Option<Output>> {
    let stdin = if input.is_empty() {
        Stdio::null()
    } else {
        let mut file = memfile("stdin")?;
        file.write_all(input)?;
        file.seek(SeekFrom::Start(0))?;
        file.into()
    };
    let stdout = memfile("stdout")?;
    let stderr = memfile("stderr")?;
    let mut child = cmd
        .stdin(stdin)
        .stdout(stdout.try_clone()?)
        .stderr(stderr.try_clone()?)
        .process_group(0)
        .spawn()?;
    let deadline = Instant::now() + limit;
    // tmux answers in a few milliseconds: poll finely at first.
    let mut pause = Duration::from_micros(200);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            if let Some(group) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) {
                let _ = rustix::process::kill_process_group(group, Signal::KILL);
            }
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    Ok(Some(Output {
        status,
        stdout: read_all(stdout)?,
        stderr: read_all(stderr)?,
    }))
}

/// A file in memory with no name: nothing to clean up, whoever dies.
#[cfg(target_os = "linux")]
fn memfile(name: &str) -> io::Result<File> {
    let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)?;
    Ok(File::from(fd))
}

/// Without `memfd_create`: a temporary file, unlinked at once (in
/// `$TMPDIR`, so on disk unless that is in memory).
#[cfg(not(target_os = "linux"))]
fn memfile(_name: &str) -> io::Result<File> {
    tempfile::tempfile()
}

fn read_all(mut file: File) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(0))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// One `flock` in `/proc/locks`: held, or waited for (`waiting`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flock {
    pub pid: u32,
    pub exclusive: bool,
    pub waiting: bool,
    /// The locked file: device (major, minor) and inode.
    pub device: (u32, u32),
    pub inode: u64,
}

impl Flock {
    /// Is this a lock on the file `meta` describes?
    pub fn on(&self, meta: &std::fs::Metadata) -> bool {
        use std::os::unix::fs::MetadataExt;
        self.device == device_numbers(meta.dev()) && self.inode == meta.ino()
    }
}

/// A device number's (major, minor), as `/proc/locks` shows them.
#[cfg(target_os = "linux")]
fn device_numbers(dev: u64) -> (u32, u32) {
    (rustix::fs::major(dev), rustix::fs::minor(dev))
}

/// Elsewhere `stat` gives a narrower device number (and there is no
/// `/proc/locks` to compare it with).
#[cfg(not(target_os = "linux"))]
fn device_numbers(dev: u64) -> (u32, u32) {
    let dev = dev as rustix::fs::Dev;
    (rustix::fs::major(dev), rustix::fs::minor(dev))
}

/// Every `flock` the kernel knows of; `None` where `/proc/locks` is not
/// available (not Linux).
pub fn flocks() -> Option<Vec<Flock>> {
    let table = std::fs::read_to_string("/proc/locks").ok()?;
    Some(table.lines().filter_map(parse_lock_line).collect())
}

/// `1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF`; a waiter's line has
/// `->` after the number.
fn parse_lock_line(line: &str) -> Option<Flock> {
    let mut fields: Vec<&str> = line.split_whitespace().collect();
    let waiting = fields.get(1) == Some(&"->");
    if waiting {
        fields.remove(1);
    }
    if fields.len() < 6 || fields[1] != "FLOCK" {
        return None;
    }
    let mut id = fields[5].split(':');
    let (maj, min, ino) = (id.next()?, id.next()?, id.next()?);
    Some(Flock {
        pid: fields[4].parse().ok()?,
        exclusive: fields[3] == "WRITE",
        waiting,
        device: (
            u32::from_str_radix(maj, 16).ok()?,
            u32::from_str_radix(min, 16).ok()?,
        ),
        inode: ino.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_lines_parse() {
        let held = parse_lock_line("1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF").unwrap();
        assert_eq!(
            (held.pid, held.exclusive, held.waiting),
            (4242, true, false)
        );
        assert_eq!((held.device, held.inode), ((0xfd, 1), 1234));
        let waiter = parse_lock_line("1: -> FLOCK  ADVISORY  WRITE 77 fd:01:1234 0 EOF").unwrap();
        assert!(waiter.waiting);
        assert!(parse_lock_line("2: POSIX  ADVISORY  WRITE 1 fd:01:9 0 EOF").is_none());
    }
}
