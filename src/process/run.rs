//! Commands the daemon runs itself: tmux (bounded in time and output) and
//! `notify_command` (contained: nothing it starts outlives it).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::Signal;

use super::{descendants, end_all, env_var, environ, processes, signal_group};

/// The most of a bounded command's stdout or stderr that is read back
/// (tmux answers with a line per pane: far less).
const MAX_OUTPUT: u64 = 1024 * 1024;

/// Runs `cmd` to completion with `input` on its stdin and its output
/// captured (the first [`MAX_OUTPUT`] bytes of each stream), killing its
/// whole process group past `limit`: `Ok(None)` then. Input and output go
/// through files rather than pipes, so neither a command that never reads
/// nor one with much to say can block us while we wait for it to exit;
/// its own process group lets a shell pipeline be ended whole.
///
/// For tmux, whose server (started by a call) outlives the call by
/// design. A command whose children must not outlive it, and whose output
/// is not to be trusted in size, goes through [`run_contained`].
pub(crate) fn run_bounded(
    cmd: &mut Command,
    input: &[u8],
    limit: Duration,
) -> io::Result<Option<Output>> {
    let stdin = input_file(input)?;
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
            signal_group(child.id(), Signal::KILL);
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    Ok(Some(Output {
        status,
        stdout: read_back(stdout)?,
        stderr: read_back(stderr)?,
    }))
}

/// `input` as a file to read from (nothing: /dev/null).
fn input_file(input: &[u8]) -> io::Result<Stdio> {
    if input.is_empty() {
        return Ok(Stdio::null());
    }
    let mut file = memfile("stdin")?;
    file.write_all(input)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file.into())
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

fn read_back(mut file: File) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(0))?;
    let mut bytes = Vec::new();
    file.take(MAX_OUTPUT).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The variable that marks every process a contained command starts: a
/// child that called `setsid` and lost its parent is in neither its
/// session nor its tree any more, but it still carries its environment.
pub const SPAWN_MARK: &str = "GT_SPAWN_MARK";

/// How long what a contained command left running gets after SIGTERM.
const LEFTOVER_GRACE: Duration = Duration::from_secs(1);

/// Output read from a contained command per stream and turn of its loop,
/// so that one that never stops talking cannot keep us from its deadline.
const READ_PER_TURN: usize = 1024 * 1024;

/// What a contained command did.
#[derive(Debug)]
pub(crate) struct Contained {
    /// How it exited; `None` when it was killed at its deadline or
    /// cancelled.
    pub status: Option<ExitStatus>,
    /// The first bytes of its stdout and stderr, up to the `keep` asked for.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Bytes it wrote past `keep`, read and dropped.
    pub dropped: u64,
    /// Processes it left behind, which were ended.
    pub leftovers: usize,
}

static NEXT_MARK: AtomicU64 = AtomicU64::new(0);

/// Runs `cmd` with `input` on its stdin in a session of its own, and
/// leaves nothing of it behind.
///
/// Its output goes through pipes that are read as it comes: the first
/// `keep` bytes of each stream are kept, the rest is read and dropped, so
/// a command with much to say neither blocks nor fills memory. When it
/// exits, is still running at `limit`, or `cancel()` turns true, every
/// process it started is ended: its session and process group, their
/// descendants and anything carrying its [`SPAWN_MARK`] (SIGTERM, then
/// SIGKILL after a grace; at once past the deadline). Without `/proc`
/// (not Linux) only its process group can be found.
pub(crate) fn run_contained(
    cmd: &mut Command,
    input: &[u8],
    limit: Duration,
    keep: usize,
    cancel: &dyn Fn() -> bool,
) -> io::Result<Contained> {
    let mark = format!(
        "{}.{}",
        std::process::id(),
        NEXT_MARK.fetch_add(1, Ordering::Relaxed)
    );
    let (out_r, out_w) = io::pipe()?;
    let (err_r, err_w) = io::pipe()?;
    for reader in [&out_r, &err_r] {
        rustix::io::ioctl_fionbio(reader, true)?;
    }
    cmd.stdin(input_file(input)?)
        .stdout(out_w)
        .stderr(err_w)
        .env(SPAWN_MARK, &mark);
    // SAFETY: setsid is async-signal-safe and touches no memory of ours;
    // the child has just forked and holds no lock.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid()?;
            Ok(())
        });
    }
    let spawned = cmd.spawn();
    // The command keeps its copies of the pipes' ends until told
    // otherwise: ours must close, or no end of output is ever seen.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = spawned?;
    let leader = child.id();
    let mut streams = [Capture::new(out_r, keep), Capture::new(err_r, keep)];
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        for s in &mut streams {
            s.read_some();
        }
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        let now = Instant::now();
        if now >= deadline || cancel() {
            break None;
        }
        let wait = pause.min(deadline - now);
        let mut fds: Vec<PollFd> = streams
            .iter()
            .filter_map(|s| s.open.as_ref())
            .map(|r| PollFd::new(r, PollFlags::IN))
            .collect();
        if fds.is_empty() {
            std::thread::sleep(wait);
        } else {
            let _ = rustix::event::poll(
                &mut fds,
                Some(&Timespec {
                    tv_sec: wait.as_secs() as i64,
                    tv_nsec: wait.subsec_nanos().into(),
                }),
            );
        }
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    let grace = if status.is_some() {
        LEFTOVER_GRACE
    } else {
        Duration::ZERO
    };
    let mut leftovers = end_session(leader, &mark, grace);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        leftovers = leftovers.saturating_sub(1);
    }
    // What was written before the end, once more and no more.
    for s in &mut streams {
        s.read_some();
    }
    let [out, err] = streams;
    Ok(Contained {
        status,
        dropped: out.dropped + err.dropped,
        stdout: out.kept,
        stderr: err.kept,
        leftovers,
    })
}

/// One output stream of a contained command.
struct Capture {
    /// None once it ended.
    open: Option<io::PipeReader>,
    kept: Vec<u8>,
    keep: usize,
    dropped: u64,
}

impl Capture {
    fn new(reader: io::PipeReader, keep: usize) -> Capture {
        Capture {
            open: Some(reader),
            kept: Vec::new(),
            keep,
            dropped: 0,
        }
    }

    /// Reads what is there, up to [`READ_PER_TURN`].
    fn read_some(&mut self) {
        let Some(reader) = &mut self.open else { return };
        let mut chunk = [0u8; 16 * 1024];
        let mut read = 0;
        while read < READ_PER_TURN {
            match reader.read(&mut chunk) {
                Ok(0) => {
                    self.open = None;
                    return;
                }
                Ok(n) => {
                    read += n;
                    let room = self.keep.saturating_sub(self.kept.len()).min(n);
                    self.kept.extend_from_slice(&chunk[..room]);
                    self.dropped += (n - room) as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.open = None;
                    return;
                }
            }
        }
    }
}

/// Ends every process of the session `leader` started (see
/// [`run_contained`]): SIGTERM, SIGKILL to whatever is left after
/// `grace`, and again for whatever they forked meanwhile. Returns how
/// many processes were signalled, the leader among them if alive.
fn end_session(leader: u32, mark: &str, grace: Duration) -> usize {
    let ended = end_all(
        || session_members(leader, mark),
        grace,
        |sig| signal_group(leader, sig),
    );
    ended.ended
}

/// The live processes of `leader`'s session or process group, those
/// carrying `mark` in their environment, and everything under them; never
/// this process.
fn session_members(leader: u32, mark: &str) -> Vec<u32> {
    let all = processes().all;
    let roots: Vec<u32> = all
        .iter()
        .filter(|p| {
            p.session == leader
                || p.group == leader
                || environ(p.pid)
                    .is_some_and(|env| env_var(&env, SPAWN_MARK) == Some(mark.as_bytes()))
        })
        .map(|p| p.pid)
        .collect();
    let me = std::process::id();
    descendants(&all, &roots)
        .into_iter()
        .filter(|&p| p != me)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::{alive, signal};

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    fn never() -> bool {
        false
    }

    /// The PIDs a script wrote to `file`, one a line.
    fn pids_in(file: &std::path::Path) -> Vec<u32> {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect()
    }

    #[test]
    fn contained_output_is_kept_up_to_the_limit_and_the_rest_dropped() {
        let ran = run_contained(
            &mut sh("cat; head -c 3000000 /dev/zero; echo oops >&2; exit 3"),
            b"hello ",
            Duration::from_secs(30),
            10,
            &never,
        )
        .unwrap();
        assert_eq!(ran.status.and_then(|s| s.code()), Some(3));
        assert_eq!(ran.stdout, b"hello \0\0\0\0");
        assert_eq!(ran.stderr, b"oops\n");
        assert_eq!(ran.dropped, 3_000_000 + 6 - 10);
        assert_eq!(ran.leftovers, 0);
    }

    #[test]
    fn nothing_a_contained_command_starts_outlives_it() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        // In the background; in a session of its own with its output
        // elsewhere; and orphaned at once (its parent exits).
        let script = format!(
            "sleep 601 & echo $! >> {p}; \
             setsid sleep 602 </dev/null >/dev/null 2>&1 & echo $! >> {p}; \
             sh -c 'setsid sleep 603 </dev/null >/dev/null 2>&1 & echo $! >> {p}'",
            p = pids.display()
        );
        let ran = run_contained(&mut sh(&script), b"", Duration::from_secs(30), 0, &never).unwrap();
        assert!(ran.status.is_some_and(|s| s.success()), "{ran:?}");
        let started = pids_in(&pids);
        assert_eq!(started.len(), 3, "{started:?}");
        let left: Vec<u32> = started.iter().copied().filter(|&p| alive(p)).collect();
        for &p in &left {
            signal(p, Signal::KILL);
        }
        assert!(left.is_empty(), "outlived the command: {left:?}");
        assert!(ran.leftovers >= 3, "{ran:?}");
    }

    #[test]
    fn a_contained_command_is_killed_whole_at_its_deadline_or_when_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let script = format!(
            "echo $$ >> {p}; sleep 604 & echo $! >> {p}; wait",
            p = pids.display()
        );
        let ran =
            run_contained(&mut sh(&script), b"", Duration::from_millis(300), 0, &never).unwrap();
        assert!(ran.status.is_none(), "killed at the deadline: {ran:?}");
        let started = pids_in(&pids);
        assert!(started.iter().all(|&p| !alive(p)), "{started:?}");

        std::fs::remove_file(&pids).unwrap();
        let asked = std::sync::atomic::AtomicBool::new(false);
        let cancel = || {
            // Cancelled once the script has started its child.
            let ready = pids_in(&pids).len() == 2;
            asked.store(ready, Ordering::Relaxed);
            ready
        };
        let ran =
            run_contained(&mut sh(&script), b"", Duration::from_secs(60), 0, &cancel).unwrap();
        assert!(
            ran.status.is_none() && asked.load(Ordering::Relaxed),
            "{ran:?}"
        );
        let started = pids_in(&pids);
        assert!(started.iter().all(|&p| !alive(p)), "{started:?}");
    }

    #[test]
    fn bounded_output_is_cut() {
        let out = run_bounded(
            &mut sh("head -c 3000000 /dev/zero"),
            b"",
            Duration::from_secs(30),
        )
        .unwrap()
        .unwrap();
        assert_eq!(out.stdout.len() as u64, MAX_OUTPUT);
    }
}
