//! The daemon end to end: lifecycle and one instance per town, consuming
//! requests, state.json, execution against a private tmux server, the
//! town-level guards, watching the inbox, log rotation, and what an
//! operator and a service manager see (restart, reload, journald, sd_notify).

mod support;

mod daemon {
    mod agent_processes;
    mod bounds;
    mod config_file;
    mod faults;
    mod guards;
    mod instance;
    mod lifecycle;
    mod liveness;
    mod lock_faults;
    mod log_output;
    mod log_rotation;
    mod metrics;
    mod parallel;
    mod requests;
    mod restart;
    mod state;
    mod status;
    mod supervision;
    mod systemd;
    mod tmux;
    mod town_files;
    mod watch;
}
