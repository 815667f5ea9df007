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
        if let Some(msg) = message(res) {
            deliver(&tx, &overflow, msg);
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

/// What an event from the watcher tells the consumer: a name to look at
/// (and how complete it is), a rescan when events may have been lost, or
/// nothing (a name that is no request, an event that says nothing new).
fn message(res: notify::Result<notify::Event>) -> Option<Message> {
    let event = match res {
        Err(e) => {
            tracing::warn!("inbox watcher error, rescanning: {e}");
            return Some(Message::Rescan("watcher error"));
        }
        Ok(event) if event.need_rescan() => {
            return Some(Message::Rescan("kernel event queue overflowed"))
        }
        Ok(event) => event,
    };
    let hint = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Hint::Ready,
        EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Any)) => Hint::Ready,
        EventKind::Create(
            CreateKind::File | CreateKind::Folder | CreateKind::Any | CreateKind::Other,
        ) => Hint::Created,
        _ => return None,
    };
    // inotify also reports a rename within the inbox as `Both` after `To`;
    // `To` alone covers it.
    let name = event.paths.last()?.file_name()?.to_os_string();
    is_request_name(&name).then_some(Message::Candidate(name, hint))
}

/// Sends `msg` without ever waiting: past the channel's capacity the
/// message is dropped and `overflow` set, for the consumer to rescan.
fn deliver(tx: &SyncSender<Message>, overflow: &AtomicBool, msg: Message) {
    match tx.try_send(msg) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => overflow.store(true, Ordering::Release),
        Err(TrySendError::Disconnected(_)) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::Flag;
    use notify::Event;

    fn seen(kind: EventKind, name: &str) -> Option<(String, Hint)> {
        let event = Event::new(kind).add_path(format!("/town/daemon/inbox/{name}").into());
        match message(Ok(event))? {
            Message::Candidate(name, hint) => Some((name.into_string().unwrap(), hint)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn complete_and_created_names_are_told_apart_and_others_ignored() {
        let close = EventKind::Access(AccessKind::Close(AccessMode::Write));
        let moved = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        let created = EventKind::Create(CreateKind::File);
        let ready = Some(("a.json".to_string(), Hint::Ready));
        assert_eq!(seen(close, "a.json"), ready);
        assert_eq!(seen(moved, "a.json"), ready);
        assert_eq!(
            seen(created, "a.json"),
            Some(("a.json".into(), Hint::Created))
        );
        // Writes in progress and names that are no request.
        assert_eq!(seen(moved, ".a.json.tmp"), None);
        assert_eq!(seen(created, "notes.txt"), None);
        // Events that say nothing new: a write under way, a rename's
        // `From` and `Both` halves, a removal.
        let data = EventKind::Modify(ModifyKind::Data(notify::event::DataChange::Any));
        for kind in [
            data,
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            EventKind::Remove(notify::event::RemoveKind::File),
        ] {
            assert_eq!(seen(kind, "a.json"), None, "{kind:?}");
        }
    }

    #[test]
    fn a_lost_event_asks_for_a_rescan() {
        let overflowed = Event::new(EventKind::Other).set_flag(Flag::Rescan);
        assert!(matches!(message(Ok(overflowed)), Some(Message::Rescan(_))));
        let failed = message(Err(notify::Error::generic("gone")));
        assert!(matches!(failed, Some(Message::Rescan(_))));
    }

    #[test]
    fn a_full_channel_costs_a_rescan_never_a_wait() {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let overflow = AtomicBool::new(false);
        deliver(&tx, &overflow, Message::Rescan("one"));
        assert!(!overflow.load(Ordering::Acquire));
        deliver(&tx, &overflow, Message::Rescan("two"));
        assert!(overflow.load(Ordering::Acquire), "the second did not fit");
        assert!(matches!(rx.try_recv(), Ok(Message::Rescan("one"))));
        assert!(rx.try_recv().is_err(), "nothing waits behind it");
        drop(rx);
        deliver(&tx, &overflow, Message::Stop);
    }
}
