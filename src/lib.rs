//! gt daemon: the Gas Town town daemon.
//!
//! Data flows one way: [`inbox`] (watch and claim) → [`request`] (validate,
//! identity → session) → [`executor`] (tmux) → [`filing`] (processed/failed
//! plus a result sidecar) → [`state`] (counters). [`heartbeat`] pokes agents
//! on its own thread; [`instance`] keeps one daemon per town.

pub mod cli;
pub mod config;
pub mod town;
