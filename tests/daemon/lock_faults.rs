//! Faults around the daemon's lock: a predecessor that is dying but still
//! holds `daemon.lock`, and a daemon whose lock file or town was taken away
//! from under it.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::support::proc::{alive, cmdline, daemon_processes, kill9, signal, tree, Signal};
use crate::support::{ls, request_json, started_pid, wait_for, Town, DEADLINE};

/// The line a daemon that lost its town leaves, in the log and on stderr.
const DISPLACED: &str = "no longer owns its town";

/// `flock -x daemon.lock cat`: flock(1) takes the lock and runs `cat`, which
/// inherits the locked descriptor. Once flock(1) is SIGKILLed and reaped,
/// the lock is still held while /proc/locks names a process that is gone:
/// what a SIGKILLed daemon looks like while the kernel finishes tearing it
/// down. Closing cat's stdin ends cat and frees the lock.
struct DyingHolder {
    cat: Option<ChildStdin>,
    cat_pid: u32,
    /// The PID /proc/locks names: flock(1), already dead.
    dead: u32,
}

impl DyingHolder {
    fn take(t: &Town) -> DyingHolder {
        std::fs::write(t.lock_file(), b"").expect("create daemon.lock");
        let mut flock = Command::new("flock")
            .arg("-x")
            .arg(t.lock_file())
            .arg("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn flock(1)");
        let dead = flock.id();
        let mut cat_pid = None;
        t.wait_until("flock(1) holds daemon.lock and runs cat", DEADLINE, || {
            cat_pid = tree(&[dead]).into_iter().find(|&p| p != dead);
            cat_pid.is_some() && t.lock_holders().contains(&dead)
        });
        let cat = flock.stdin.take();
        kill9(dead);
        flock.wait().expect("reap flock(1)");
        assert!(!alive(dead));
        DyingHolder {
            cat,
            cat_pid: cat_pid.unwrap(),
            dead,
        }
    }

    fn release(&mut self) {
        self.cat = None; // EOF: cat exits and the lock goes with it
    }
}

impl Drop for DyingHolder {
    fn drop(&mut self) {
        self.release();
        // cat, orphaned: make sure it goes even if EOF did not reach it.
        if alive(self.cat_pid)
            && cmdline(self.cat_pid)
                .first()
                .is_some_and(|c| c.ends_with("cat"))
        {
            kill9(self.cat_pid);
        }
    }
}

/// A command running in the background, its output collected as it comes;
/// killed when dropped.
struct Background {
    child: Child,
    out: Arc<Mutex<String>>,
    /// One message per output pipe that reached its end.
    drained: std::sync::mpsc::Receiver<()>,
}

impl Background {
    fn spawn(mut cmd: Command) -> Background {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gt");
        let out = Arc::new(Mutex::new(String::new()));
        let (done, drained) = std::sync::mpsc::channel();
        let pipes: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for mut pipe in pipes {
            let (out, done) = (out.clone(), done.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut buf) {
                    out.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
                let _ = done.send(());
            });
        }
        Background {
            child,
            out,
            drained,
        }
    }

    /// Everything it printed so far, stdout and stderr interleaved.
    fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Waits until its output says `sign` or it exits; its exit code when
    /// it exited first.
    fn wait_for_sign(&mut self, what: &str, sign: impl Fn(&str) -> bool) -> Option<i32> {
        let (child, out) = (&mut self.child, self.out.clone());
        let mut code = None;
        wait_for(
            what,
            DEADLINE,
            || {
                code = child
                    .try_wait()
                    .expect("try_wait")
                    .map(|s| s.code().unwrap_or(-1));
                code.is_some() || sign(&out.lock().unwrap())
            },
            || self.out.lock().unwrap().clone(),
        );
        code
    }

    /// Waits for it to exit; its exit code.
    fn wait(&mut self, what: &str) -> i32 {
        let code = self.wait_for_sign(what, |_| false);
        for _ in 0..2 {
            self.drained
                .recv_timeout(DEADLINE)
                .expect("its output pipes close once it has exited");
        }
        code.unwrap()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_text(t: &Town) -> String {
    std::fs::read_to_string(t.log_file()).unwrap_or_default()
}

/// The daemon we end up with works: a request sent now is processed.
fn assert_serves(t: &Town) {
    let path = t.send("cycle", "gastown/witness");
    let name = path.file_name().unwrap().to_str().unwrap().to_owned();
    t.wait_processed(&name);
}

#[test]
fn start_waits_for_a_dying_predecessor_instead_of_reporting_it_running() {
    let t = Town::new();
    let mut holder = DyingHolder::take(&t);
    let status = t.status_json();
    assert_eq!(
        status["running"], false,
        "a dead holder is not running: {status:#}"
    );

    let mut start = Background::spawn(t.command(&["daemon", "start", "--dry-run"]));
    let early_exit = start.wait_for_sign("start says it waits for the dying holder", |out| {
        out.contains("Waiting")
    });
    assert!(
        early_exit.is_none(),
        "start exited ({early_exit:?}) while the lock was still held for dead PID {}: {}",
        holder.dead,
        start.output()
    );
    assert!(
        start.output().contains(&holder.dead.to_string()),
        "{}",
        start.output()
    );

    holder.release();
    let code = start.wait("start finishes once the lock is free");
    let out = start.output();
    assert_eq!(code, 0, "start: {out}\n{}", t.snapshot());
    let pid = started_pid(&out);
    assert_ne!(pid, holder.dead);
    assert_eq!(t.status_json()["pid"], pid);
    assert_serves(&t);
}

#[test]
fn run_outlasts_a_dying_predecessor() {
    let t = Town::new();
    let mut holder = DyingHolder::take(&t);

    let mut run = Background::spawn(t.command(&["daemon", "run", "--dry-run"]));
    let early_exit = run
        .wait_for_sign("the daemon logs that it waits for the dying holder", |_| {
            log_text(&t).contains("still holds daemon.lock")
        });
    assert!(
        early_exit.is_none(),
        "gt daemon run gave up ({early_exit:?}) while the lock was held for dead PID {}\n{}",
        holder.dead,
        t.snapshot()
    );

    holder.release();
    let pid = run.child.id();
    t.wait_until("the waiting daemon is up", DEADLINE, || {
        t.try_state()
            .is_some_and(|s| s["running"] == true && s["pid"] == pid)
            && t.lock_holders() == [pid]
    });
    assert_serves(&t);
}

#[test]
fn start_right_after_kill9_of_a_busy_daemon_starts_one() {
    let t = Town::new();
    let old = t.start_dry();
    for i in 0..2000 {
        t.publish(
            &format!("burst-{i:04}.json"),
            request_json("mayor", "shutdown"),
        );
    }
    t.wait_until("the daemon is busy with the burst", DEADLINE, || {
        !ls(&t.processed()).is_empty()
    });
    kill9(old);

    let out = t.gt(&["daemon", "start", "--dry-run"]);
    out.assert_ok("start right after kill -9");
    let pid = started_pid(&out.stdout);
    assert_ne!(pid, old);
    assert!(alive(pid), "{}", t.snapshot());
    assert_serves(&t);
}

/// Every `gt ... daemon run` process for this town, whether or not it
/// still holds the current lock.
fn daemons_of(root: &std::path::Path) -> Vec<u32> {
    daemon_processes(root)
}

/// Kills, when dropped, every daemon of the town: one that lost its lock
/// file is out of reach of `stop` and of the harness's clean-up.
struct KillDaemons(PathBuf);

impl Drop for KillDaemons {
    fn drop(&mut self) {
        for pid in daemons_of(&self.0) {
            kill9(pid);
        }
    }
}

#[test]
fn a_daemon_whose_lock_file_is_removed_stops_and_one_daemon_follows() {
    let t = Town::new();
    let _kill = KillDaemons(t.root().to_path_buf());
    let old = t.start_dry();

    std::fs::remove_file(t.lock_file()).unwrap();
    t.wait_until("the daemon stops by itself", DEADLINE, || !alive(old));
    let log = log_text(&t);
    assert!(
        log.lines()
            .any(|l| l.contains(DISPLACED) && l.contains("daemon.lock")),
        "the log says why the daemon stopped\n{}",
        t.snapshot()
    );

    let new = t.start_dry();
    assert_ne!(new, old);
    assert_eq!(daemons_of(t.root()), [new], "exactly one daemon");
    assert_serves(&t);
    t.stop();
}

#[test]
fn start_waits_for_a_daemon_displaced_from_the_town() {
    let t = Town::new();
    let _kill = KillDaemons(t.root().to_path_buf());
    let old = t.start_dry();
    // Stopped, the old daemon cannot notice yet that its lock file is gone.
    signal(old, Signal::STOP);
    std::fs::remove_file(t.lock_file()).unwrap();

    let mut start = Background::spawn(t.command(&["daemon", "start", "--dry-run"]));
    let early_exit = start.wait_for_sign("the new daemon waits for the displaced one", |_| {
        log_text(&t).contains("still runs: waiting for it to stop")
    });
    let during = daemons_of(t.root());
    signal(old, Signal::CONT);
    assert!(
        early_exit.is_none(),
        "start finished ({early_exit:?}: {}) while the displaced daemon {old} still ran; \
         daemons of the town: {during:?}",
        start.output()
    );

    let code = start.wait("start finishes once the displaced daemon is gone");
    let out = start.output();
    assert_eq!(code, 0, "start: {out}\n{}", t.snapshot());
    let new = started_pid(&out);
    assert!(!alive(old), "{}", t.snapshot());
    assert!(log_text(&t).contains(DISPLACED), "{}", t.snapshot());
    assert_eq!(daemons_of(t.root()), [new], "exactly one daemon");
    assert_serves(&t);
    t.stop();
}

#[test]
fn a_daemon_whose_town_is_deleted_stops_and_says_so_on_stderr() {
    let t = Town::new();
    let _kill = KillDaemons(t.root().to_path_buf());
    // In the foreground, so its stderr can be read: the log goes with the town.
    let mut run = Background::spawn(t.command(&["daemon", "run", "--dry-run"]));
    let pid = run.child.id();
    t.wait_until("the daemon is up", DEADLINE, || {
        t.try_state()
            .is_some_and(|s| s["running"] == true && s["pid"] == pid)
    });

    // The running daemon may create a file (state.json's temporary, a log
    // line) while the tree is being removed: remove until nothing is left.
    t.wait_until("the town is removed", DEADLINE, || {
        std::fs::remove_dir_all(t.root()).is_ok() || !t.root().exists()
    });
    let code = run.wait("the daemon of a deleted town exits");
    assert_ne!(code, 0, "{}", run.output());
    assert!(run.output().contains(DISPLACED), "stderr: {}", run.output());
}
