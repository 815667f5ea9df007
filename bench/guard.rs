//! Cleanup of everything the bench starts or creates, even when it is
//! interrupted: child processes (daemons, the baseline's process group, the
//! concurrent writer), private tmux servers and town directories are
//! registered here. Normal exits clean up through `Drop`
//! guards; SIGINT/SIGTERM/SIGHUP run [`cleanup_all`] from a signal thread.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use color_eyre::eyre::{Result, WrapErr};
use rustix::process::{kill_process, kill_process_group, Pid, Signal};

/// Something to undo on an abrupt exit.
pub enum Entry {
    /// A child process, SIGKILLed.
    Process(i32),
    /// A process group (the baseline pipeline), SIGKILLed as a whole.
    Group(i32),
    /// A private tmux server (`tmux -L NAME`), killed with its panes.
    Tmux(String),
    /// A town directory, removed.
    Dir(PathBuf),
}

static ENTRIES: Mutex<Vec<(u64, Entry)>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(1);

/// Unregisters its entry when dropped (the owner has cleaned up by then).
pub struct Registration(u64);

impl Drop for Registration {
    fn drop(&mut self) {
        let mut entries = ENTRIES.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(id, _)| *id != self.0);
    }
}

pub fn register(entry: Entry) -> Registration {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    ENTRIES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((id, entry));
    Registration(id)
}

/// Kills every registered process and removes every registered directory.
pub fn cleanup_all() {
    let entries = std::mem::take(&mut *ENTRIES.lock().unwrap_or_else(|e| e.into_inner()));
    // Processes first, so nothing writes into a directory being removed.
    for (_, entry) in &entries {
        match entry {
            Entry::Process(pid) => {
                if let Some(pid) = Pid::from_raw(*pid) {
                    let _ = kill_process(pid, Signal::KILL);
                }
            }
            Entry::Group(pgid) => {
                if let Some(pgid) = Pid::from_raw(*pgid) {
                    let _ = kill_process_group(pgid, Signal::KILL);
                }
            }
            Entry::Tmux(socket) => crate::tmux::kill_server(socket),
            Entry::Dir(_) => {}
        }
    }
    for (_, entry) in &entries {
        if let Entry::Dir(dir) = entry {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// On SIGINT/SIGTERM/SIGHUP: clean up, then exit with 128 + the signal.
pub fn install_signal_cleanup() -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .wrap_err("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("bench-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                eprintln!("bench: caught signal {sig}: stopping children and removing towns");
                cleanup_all();
                std::process::exit(128 + sig);
            }
        })
        .wrap_err("cannot spawn the signal thread")?;
    Ok(())
}
