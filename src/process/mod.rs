//! Processes as `/proc` shows them, and ending them for good.
//!
//! tmux's kill-session only sends SIGHUP to the pane's process group, so an
//! agent (or a child it spawned into another group) that ignores it would
//! survive and keep burning tokens and memory. Everything here reads
//! `/proc` within bounds: at most [`MAX_PROCESSES`] processes per look, at
//! most [`MAX_ENVIRON`] bytes of each one's environment, a few KiB of any
//! other file; a process that is gone or whose environment cannot be read
//! (another user's) is skipped, never an error. Where there is no `/proc`
//! (not Linux) nothing is found.
//!
//! - here: one look at the processes ([`Stat`]), their environment, trees,
//!   signals, and the one loop that ends a set of processes ([`end_all`]);
//! - [`agent`]: every process of an agent, and the leftovers of agents;
//! - [`run`]: commands the daemon runs itself (tmux, `notify_command`);
//! - [`locks`]: who holds a `flock`.

pub(crate) mod agent;
mod locks;
mod run;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

pub use locks::{flocks, Flock};
pub use run::SPAWN_MARK;
pub(crate) use run::{run_bounded, run_contained};

/// The most processes one look reads (Linux's default `pid_max` is 32768
/// on small machines; a host running more than this is told so).
pub(crate) const MAX_PROCESSES: usize = 32 * 1024;

/// The most of one process's environment that is read. Variables past it
/// are not seen; an environment is a few KiB, and tmux puts the variables
/// it was given in name order among the others.
pub(crate) const MAX_ENVIRON: u64 = 256 * 1024;

/// The most read of a `/proc/PID/stat` (its fields take a few hundred
/// bytes; the command name at most 64).
const MAX_STAT: u64 = 4096;

/// `pid` and all its live descendants.
pub fn tree(roots: &[u32]) -> Vec<u32> {
    descendants(&processes().all, roots)
}

/// One process as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub(crate) pid: u32,
    pub(crate) ppid: u32,
    /// Its process group and session.
    pub(crate) group: u32,
    pub(crate) session: u32,
    /// When it started, in clock ticks after boot: with the PID, it names
    /// one process even once its PID could be reused.
    pub(crate) start: u64,
    /// Resident memory, in pages.
    pub(crate) rss_pages: u64,
}

/// `path` read whole, if it fits in `limit` bytes (the rest is cut).
pub(crate) fn read_proc(path: &str, limit: u64) -> Option<Vec<u8>> {
    let file = File::open(path).ok()?;
    // Room for what these files usually hold, so that one read takes it
    // (an empty buffer is filled by small probing reads first).
    let mut bytes = Vec::with_capacity(limit.min(8 * 1024) as usize);
    file.take(limit).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// Reads `/proc/PID/stat`; the command name may hold spaces and
/// parentheses, so fields are counted after the last ')'.
fn stat(pid: u32) -> Option<Stat> {
    let bytes = read_proc(&format!("/proc/{pid}/stat"), MAX_STAT)?;
    let text = String::from_utf8_lossy(&bytes);
    parse_stat(pid, &text)
}

fn parse_stat(pid: u32, text: &str) -> Option<Stat> {
    // After the name: state (3), ppid (4), pgrp (5), session (6), ...,
    // starttime (22), vsize (23), rss (24).
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    if fields.first().is_some_and(|&s| s == "Z" || s == "X") {
        return None; // a zombie is dead: nothing to end, nothing to count
    }
    Some(Stat {
        pid,
        ppid: field(4)? as u32,
        group: field(5)? as u32,
        session: field(6)? as u32,
        start: field(22)?,
        rss_pages: field(24).unwrap_or(0),
    })
}

/// One look at `/proc`: every live process, up to a limit.
#[derive(Debug, Default)]
pub(crate) struct Processes {
    pub(crate) all: Vec<Stat>,
    /// False when there were more than the limit (those were not read).
    pub(crate) complete: bool,
}

/// Every live process in `/proc`, up to [`MAX_PROCESSES`].
pub(crate) fn processes() -> Processes {
    processes_within(MAX_PROCESSES)
}

fn processes_within(limit: usize) -> Processes {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Processes {
            all: Vec::new(),
            complete: true,
        };
    };
    let mut pids = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok());
    let all: Vec<Stat> = pids.by_ref().take(limit).filter_map(stat).collect();
    Processes {
        all,
        complete: pids.next().is_none(),
    }
}

/// `roots` and everything under them in `all` (which holds the living
/// only: a root that is not there is gone), sorted.
pub(crate) fn descendants(all: &[Stat], roots: &[u32]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in all {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let living: HashSet<u32> = all.iter().map(|p| p.pid).collect();
    let mut seen: HashSet<u32> = HashSet::new();
    let mut stack: Vec<u32> = roots
        .iter()
        .copied()
        .filter(|p| living.contains(p))
        .collect();
    while let Some(pid) = stack.pop() {
        if seen.insert(pid) {
            stack.extend(children.get(&pid).into_iter().flatten());
        }
    }
    let mut found: Vec<u32> = seen.into_iter().collect();
    found.sort_unstable();
    found
}

/// `pid` and its ancestors in `all`, up to init.
pub(crate) fn ancestors(all: &[Stat], pid: u32) -> Vec<u32> {
    let parents: HashMap<u32, u32> = all.iter().map(|p| (p.pid, p.ppid)).collect();
    let mut found = vec![pid];
    let mut at = pid;
    while let Some(&up) = parents.get(&at) {
        if up == 0 || found.contains(&up) {
            break;
        }
        found.push(up);
        at = up;
    }
    found
}

/// A process's environment as `/proc/PID/environ` has it (as it was at
/// exec), at most [`MAX_ENVIRON`] bytes of it; `None` when it cannot be
/// read (gone, or another user's).
pub(crate) fn environ(pid: u32) -> Option<Vec<u8>> {
    read_proc(&format!("/proc/{pid}/environ"), MAX_ENVIRON)
}

/// The value of `name` in an environment read by [`environ`] (the first,
/// as `getenv` finds it).
pub(crate) fn env_var<'a>(env: &'a [u8], name: &str) -> Option<&'a [u8]> {
    env.split(|&b| b == 0).find_map(|var| {
        var.strip_prefix(name.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"="))
    })
}

/// Alive and not a zombie waiting to be reaped.
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some()
}

/// SIGKILL is pending: the process is dying and nothing it does can stop
/// that, but a thread stuck in an uninterruptible call (a `syncfs` on a
/// busy disk) keeps its files, and its locks, until the call returns.
pub fn sigkill_pending(pid: u32) -> bool {
    // Bit n-1 of the masks stands for signal n; SIGKILL is 9 on Linux.
    const SIGKILL_BIT: u64 = 1 << 8;
    let Some(status) = read_proc(&format!("/proc/{pid}/status"), 16 * 1024) else {
        return false;
    };
    String::from_utf8_lossy(&status).lines().any(|line| {
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

fn signal_group(leader: u32, sig: Signal) {
    if let Some(group) = i32::try_from(leader).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process_group(group, sig);
    }
}

/// SIGTERM to the whole tree, SIGKILL to whatever is left after `grace`
/// (and to what they forked meanwhile). Returns how many processes needed
/// SIGKILL.
pub fn terminate_tree(roots: &[u32], grace: Duration) -> usize {
    let roots: Vec<u32> = tree(roots);
    let ended = end_all(
        || {
            let alive: Vec<u32> = roots.iter().copied().filter(|&p| alive(p)).collect();
            tree(&alive)
        },
        grace,
        |_| {},
    );
    ended.killed
}

/// What [`end_all`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ended {
    /// Processes signalled.
    pub(crate) ended: usize,
    /// Of them, those still alive after the grace: SIGKILLed.
    pub(crate) killed: usize,
}

/// How many times [`end_all`] looks again for what the processes it
/// SIGKILLed forked before they died.
const KILL_ROUNDS: usize = 4;

/// Ends every process `find` names: SIGTERM (and `also(TERM)`), a wait of
/// up to `grace` for them to exit, then SIGKILL (and `also(KILL)`) to
/// whatever `find` names then, and again, a few rounds, for what they
/// forked meanwhile. With no grace, SIGKILL at once.
pub(crate) fn end_all(
    mut find: impl FnMut() -> Vec<u32>,
    grace: Duration,
    mut also: impl FnMut(Signal),
) -> Ended {
    let mut ended: HashSet<u32> = HashSet::new();
    let mut killed: HashSet<u32> = HashSet::new();
    let first = find();
    if !grace.is_zero() {
        also(Signal::TERM);
        for &pid in &first {
            signal(pid, Signal::TERM);
        }
        wait_gone(&first, grace, Duration::from_millis(20));
    }
    ended.extend(&first);
    for _ in 0..KILL_ROUNDS {
        also(Signal::KILL);
        let left = find();
        if left.is_empty() {
            break;
        }
        for &pid in &left {
            signal(pid, Signal::KILL);
        }
        ended.extend(&left);
        killed.extend(&left);
        wait_gone(&left, Duration::from_secs(2), Duration::from_millis(10));
    }
    Ended {
        ended: ended.len(),
        killed: killed.len(),
    }
}

/// Waits up to `limit` for every one of `pids` to be gone, looking again
/// after 1 ms, then twice as long each time up to `pause`: most processes
/// die within a millisecond of their signal, and a request's worker is
/// held for as long as this waits.
fn wait_gone(pids: &[u32], limit: Duration, pause: Duration) {
    let deadline = Instant::now() + limit;
    let mut next = Duration::from_millis(1).min(pause);
    while Instant::now() < deadline && pids.iter().any(|&p| alive(p)) {
        std::thread::sleep(next);
        next = (next * 2).min(pause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn a_process_reads_its_own_session() {
        let me = stat(std::process::id()).unwrap();
        assert_eq!(me.pid, std::process::id());
        assert!(me.start > 0 && me.rss_pages > 0, "{me:?}");
        let all = processes().all;
        assert!(all
            .iter()
            .any(|p| p.pid == me.pid && p.session == me.session));
        assert!(descendants(&all, &[me.ppid]).contains(&me.pid));
        assert!(ancestors(&all, me.pid).contains(&me.ppid));
    }

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let line = "42 (a) b (c)) S 7 42 40 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 \
                    1234 5000000 321 18446744073709551615";
        let s = parse_stat(42, line).unwrap();
        assert_eq!((s.ppid, s.group, s.session), (7, 42, 40));
        assert_eq!((s.start, s.rss_pages), (1234, 321));
        assert_eq!(parse_stat(42, "42 (z) Z 7 42 40"), None, "a zombie");
        assert_eq!(parse_stat(42, "42 (cut) S 7"), None, "cut short");
    }

    #[test]
    fn a_look_stops_at_its_limit_and_says_so() {
        let few = processes_within(3);
        assert_eq!(few.all.len(), 3);
        assert!(!few.complete);
        let all = processes();
        assert!(all.complete && all.all.len() > 3);
    }

    #[test]
    fn an_environment_is_read_up_to_its_limit_and_no_further() {
        // 300 KiB of variables before the one looked for: past the limit.
        let filler = "x".repeat(60 * 1024);
        let mut cmd = Command::new("sleep");
        cmd.arg("30").stdin(Stdio::null());
        cmd.env_clear().env("AA_FIRST", "1");
        for i in 0..5 {
            cmd.env(format!("GT_FILL_{i}"), &filler);
        }
        cmd.env("ZZ_LAST", "seen?");
        let mut child = cmd.spawn().unwrap();
        let env = environ(child.id()).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(env.len() as u64, MAX_ENVIRON);
        assert_eq!(env_var(&env, "AA_FIRST"), Some(&b"1"[..]));
        assert_eq!(env_var(&env, "ZZ_LAST"), None);
        assert_eq!(env_var(&env, "AA_FIRS"), None, "names match whole");
        // Gone: nothing, not an error.
        assert_eq!(environ(child.id()), None);
    }
}
