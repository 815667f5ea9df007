//! gt daemon: the Gas Town town daemon.
//!
//! Data flows one way: [`inbox`] (watch and claim) → [`request`] (validate,
//! identity → session) → [`executor`] (tmux) → [`filing`] (processed/failed
//! plus a result sidecar) → [`state`] (counters). [`heartbeat`] pokes agents
//! on its own thread; [`instance`] keeps one daemon per town.

pub mod backoff;
pub mod cli;
pub mod config;
pub mod consumer;
pub mod control;
pub mod daemon;
pub mod executor;
pub mod filing;
pub mod heartbeat;
pub mod history;
pub mod inbox;
pub mod instance;
pub mod ledger;
pub mod logging;
pub mod process;
pub mod publish;
pub mod request;
pub mod retention;
pub mod state;
pub mod stop;
pub mod testing;
pub mod tmux;
pub mod town;
