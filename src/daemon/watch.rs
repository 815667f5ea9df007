//! Watching `inbox/`: the notify watcher turns kernel events into
//! candidate names for the consumer.
//!
//! The watcher only says "look at NAME" or "rescan": it never decides
//! anything, so a lost, duplicated or reordered event can cost a syscall
//! but never a request. Claiming by rename is what makes each file handled
//! once.

use std::ffi::OsString;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};

use crate::inbox::is_request_name;

/// How a name came to our attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hint {
    /// Closed after writing, or renamed in: complete.
    Ready,
    /// Just created: a regular file may still be being written.
    Created,
    /// Created at this instant and looked at again: complete once it
    /// parses (or its close-write event arrives), else after
    /// `write_timeout`.
    Announced(Instant),
    /// Found by a scan: may be anything.
    Scan,
    /// Already claimed into `processing/` while still being written: look
    /// at it there again (with the instant it was announced, if it was).
    Claimed(Option<Instant>),
}

#[derive(Debug)]
pub(crate) enum Message {
    Candidate(OsString, Hint),
    /// The watcher may have missed events (queue overflow, error).
    Rescan(&'static str),
    /// An executor worker finished a request.
    Done,
    /// Supervision asks for a dead agent to be restarted.
    Supervised(Box<super::supervisor::Restart>),
    Stop,
}

/// Keeps the watcher alive; dropping it stops the events.
pub(crate) struct Watch {
    _watcher: notify::RecommendedWatcher,
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
    Ok(Watch { _watcher: watcher })
}
