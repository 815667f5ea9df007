//! Watching `inbox/`: the notify watcher turns kernel events into
//! candidate names for the consumer; a [`scan`] finds them all (at start,
//! after a lost event, periodically as a safety net, or when polling).
//!
//! The watcher only says "look at NAME" or "rescan": it never decides
//! anything, so a lost, duplicated or reordered event can cost a syscall
//! but never a request. Claiming by rename is what makes each file handled
//! once.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};

use super::filing;
use super::inlet::{Hint, Message};
use crate::inbox::{self, is_request_name};
use crate::town::Town;

/// The request names in the inbox, oldest-named first; `why` the scan was
/// due, for the log. An inbox that cannot be read is reported (and the
/// daemon's directories recreated, should they have been removed): none.
pub(crate) fn scan(town: &Town, why: &str) -> Vec<std::ffi::OsString> {
    match inbox::scan(&town.inbox()) {
        Ok(names) => {
            if !names.is_empty() {
                tracing::debug!(count = names.len(), why, "inbox scan found requests");
            }
            names
        }
        Err(e) => {
            filing::heal_dirs(town);
            tracing::error!(inbox = %town.inbox().display(), "cannot scan the inbox: {e}");
            Vec::new()
        }
    }
}

/// Keeps the watcher alive; dropping it stops the events.
pub(crate) struct Watch {
    watcher: notify::RecommendedWatcher,
    inbox: PathBuf,
    paused: bool,
}

impl Watch {
    /// Stops the inbox's events for now. While the consumer has more names
    /// in hand than events could add (a scan follows once it has none),
    /// events only cost: each of its claims, a rename out of the inbox,
    /// would make the kernel queue an event and wake the watcher's thread
    /// (the watch's mask is `notify`'s, and includes moves out).
    pub(crate) fn pause(&mut self) {
        if self.paused {
            return;
        }
        match self.watcher.unwatch(&self.inbox) {
            Ok(()) => self.paused = true,
            Err(e) => tracing::debug!("cannot pause the inbox watch: {e}"),
        }
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.paused
    }

    /// The events again after [`Watch::pause`]; the caller then rescans,
    /// for whatever came meanwhile. An error: the watch cannot be set up
    /// again (a watch limit, say).
    pub(crate) fn resume(&mut self) -> notify::Result<()> {
        if self.paused {
            self.watcher
                .watch(&self.inbox, RecursiveMode::NonRecursive)?;
            self.paused = false;
        }
        Ok(())
    }
}

/// Watches `inbox` and sends candidates into `tx`. When the channel is full
/// the event is dropped and `overflow` set: the consumer rescans instead,
/// so a flood costs one scan, not unbounded memory.
pub(crate) fn watch(
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
    Ok(Watch {
        watcher,
        inbox: inbox.to_path_buf(),
        paused: false,
    })
}
