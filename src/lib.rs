//! gt daemon: the Gas Town town daemon.
//!
//! The tree follows the process each part runs in:
//! - [`cli`]: the command line (parsing, one file per subcommand); it uses
//!   the library, nothing in the library uses it.
//! - [`daemon`]: inside `gt daemon run`, in data-flow order: watch → claim →
//!   validate → execute → file → count, plus heartbeat, supervision,
//!   monitoring and logging.
//! - [`client`]: what other `gt` commands do to a town: start/stop control,
//!   publish, history.
//! - [`service`]: systemd and launchd units.
//! - The shared core: [`town`] (paths), [`config`], [`duration`],
//!   [`request`] (request and agent identity), [`inbox`] and [`outcome`]
//!   (what is pending, what was filed), [`instance`] (the lock), [`state`],
//!   [`crash_loop`], [`supervision`] (supervision's memory), [`tmux`],
//!   [`process`], [`fs`] (atomic writes and renames, the bounded reader of
//!   files someone else may have put there), [`text`] (untrusted
//!   text made safe to show, and times), and [`testing`] (the test hooks).
#![warn(unreachable_pub)]
// Dev-dependencies are only used by the integration tests.
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod cli;
pub(crate) mod client;
pub mod config;
pub(crate) mod crash_loop;
pub(crate) mod daemon;
pub(crate) mod duration;
pub(crate) mod fs;
pub mod inbox;
pub(crate) mod instance;
pub mod outcome;
pub mod process;
pub mod request;
pub(crate) mod service;
pub mod state;
pub mod supervision;
pub mod testing;
pub mod text;
pub(crate) mod tmux;
pub mod town;
