//! The daemon end to end: lifecycle and one instance per town, consuming
//! requests, state.json, execution against a private tmux server, the
//! town-level guards, watching the inbox, and log rotation.

mod support;

mod daemon {
    mod guards;
    mod instance;
    mod lifecycle;
    mod log_rotation;
    mod requests;
    mod state;
    mod tmux;
    mod watch;
}
