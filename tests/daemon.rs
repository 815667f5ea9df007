//! The daemon end to end: lifecycle and one instance per town, consuming
//! requests, state.json, execution against a private tmux server, the
//! town-level guards, watching the inbox, and log rotation.

mod support;

mod daemon {
    mod faults;
    mod guards;
    mod instance;
    mod lifecycle;
    mod lock_faults;
    mod log_rotation;
    mod metrics;
    mod parallel;
    mod requests;
    mod state;
    mod supervision;
    mod tmux;
    mod watch;
}
