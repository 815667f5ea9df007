//! Leftovers: processes carrying this town's agent marks (`GT_TOWN_ROOT`,
//! an agent's `GT_ROLE`) in no live pane ([`crate::process::agent`]). A
//! request or a supervision restart ends every process of its agent, so
//! what is left is what nobody ended: the agents of a daemon that was
//! killed, children that outlived a tmux server killed under them.
//!
//! The heartbeat looks at each beat (`heartbeat_interval`, 60 s): one
//! `list-panes` and one read of `/proc`, a few milliseconds (BENCHMARKS.md,
//! "Agents' children"), on a thread that has nothing urgent to do; a
//! leftover holds memory, not a request, so finding it within a minute is
//! soon enough, and no thread of its own is spent on it. What a look
//! finds goes to the metrics; the log says it when it changes, not at every
//! look. With `end_leftovers` a leftover found by two looks in a row is
//! ended (SIGTERM, SIGKILL after `kill_grace`): one look may catch an agent
//! between its session's end and its processes' (requests that are ending
//! or starting an agent right now hold it, and its processes are not
//! looked at). The ending runs on a thread of its own, one at a time, so
//! the heartbeat's other work (the town's ownership checked every second)
//! never waits `kill_grace` for it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::execute::HeldSessions;
use super::logging::Repeats;
use super::metrics::Metrics;
use crate::config::SharedConfig;
use crate::process;
use crate::process::agent::{self, Census, Leftover};
use crate::text::mebibytes;
use crate::tmux::Tmux;
use crate::town::Town;

/// The most leftovers one log line names.
const NAMED: usize = 10;

pub(crate) struct Leftovers {
    pub(crate) town: Town,
    pub(crate) tmux: Tmux,
    pub(crate) config: SharedConfig,
    pub(crate) held: Arc<HeldSessions>,
    pub(crate) metrics: Arc<Metrics>,
    /// The leftovers last reported, as their PIDs.
    pub(crate) said: Repeats,
    /// What the last look found (PID, start): only these are ended.
    pub(crate) seen: Mutex<HashSet<(u32, u64)>>,
    /// An ending is under way.
    pub(crate) ending: Arc<AtomicBool>,
}

impl Leftovers {
    pub(crate) fn new(
        town: &Town,
        config: &SharedConfig,
        held: Arc<HeldSessions>,
        metrics: Arc<Metrics>,
    ) -> Leftovers {
        let now = config.get();
        Leftovers {
            town: town.clone(),
            tmux: Tmux::new(now.tmux_socket.clone(), now.tmux_timeout),
            config: config.clone(),
            held,
            metrics,
            said: Repeats::default(),
            seen: Mutex::new(HashSet::new()),
            ending: Arc::new(AtomicBool::new(false)),
        }
    }

    /// One look: report what is found, and end what two looks found when
    /// `end_leftovers` says so.
    pub(crate) fn look(&self) {
        let config = self.config.get();
        // /proc first, then tmux: an agent started in between has a pane
        // in the list and no processes in the census, never the reverse.
        let processes = process::processes();
        let panes: Vec<_> = match self.tmux.panes() {
            Ok(panes) => panes.iter().filter_map(|p| p.process()).collect(),
            Err(e) => {
                tracing::debug!("no look for leftovers: cannot list the tmux panes: {e}");
                return;
            }
        };
        let census = Census::take(processes, self.town.root(), &panes);
        let found = census.leftovers(&panes, |session| self.held.is_held(session));
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if config.end_leftovers {
            let twice: Vec<Leftover> = found
                .iter()
                .filter(|l| seen.contains(&(l.pid, l.start)))
                .cloned()
                .collect();
            if !twice.is_empty() {
                self.end(twice, config.kill_grace);
            }
        }
        *seen = found.iter().map(|l| (l.pid, l.start)).collect();
        drop(seen);
        self.metrics.leftovers(&found);
        self.report(&found, census.complete(), config.end_leftovers);
    }

    /// Ends `leftovers` on a thread of its own, unless one is still at
    /// it (the next look finds what it has not ended yet).
    fn end(&self, leftovers: Vec<Leftover>, grace: Duration) {
        if self.ending.swap(true, Ordering::AcqRel) {
            return;
        }
        let ending = self.ending.clone();
        let metrics = self.metrics.clone();
        let spawned = std::thread::Builder::new()
            .name("leftovers".into())
            .spawn(move || {
                let ended = agent::end_leftovers(&leftovers, grace);
                metrics.leftovers_ended(ended.ended);
                tracing::warn!(
                    ended = ended.ended,
                    killed = ended.killed,
                    "leftover processes ended (end_leftovers): {}",
                    describe(&leftovers)
                );
                ending.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            self.ending.store(false, Ordering::Release);
            tracing::error!("cannot start a thread to end leftover processes: {e}");
        }
    }

    /// The log, when what is found changes.
    fn report(&self, found: &[Leftover], complete: bool, ending: bool) {
        if !complete {
            tracing::debug!(
                "more processes than one look reads ({}): some were not looked at",
                crate::process::MAX_PROCESSES
            );
        }
        if found.is_empty() {
            if self.said.ended().is_some() {
                tracing::info!("leftover processes: none left");
            }
            return;
        }
        let pids: Vec<String> = found.iter().map(|l| l.pid.to_string()).collect();
        if !self.said.began(&pids.join(" ")) {
            return;
        }
        let then = if ending {
            "end_leftovers is on: they are ended at the next look if still there"
        } else {
            "end_leftovers is off: they are left running (end them by hand, or set it)"
        };
        tracing::warn!(
            count = found.len(),
            "leftover processes found: {}; {then}",
            describe(found)
        );
    }
}

/// How many, their memory, and the first few: PID, agent and why.
fn describe(found: &[Leftover]) -> String {
    let bytes: u64 = found.iter().map(|l| l.rss_bytes).sum();
    let mut named: Vec<String> = found
        .iter()
        .take(NAMED)
        .map(|l| format!("PID {} {} ({})", l.pid, l.role, l.reason.describe()))
        .collect();
    if found.len() > NAMED {
        named.push(format!("and {} more", found.len() - NAMED));
    }
    format!(
        "{} carrying this town's agent marks in no live pane, {} resident: {}",
        found.len(),
        mebibytes(bytes),
        named.join(", ")
    )
}
