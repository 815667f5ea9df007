//! The command line as people and scripts use it: help, completions and the
//! man page, install, logs, and the output of the commands that need no
//! daemon or a dry-run one (status, requests, send --wait, log formats).

mod support;

mod cli {
    mod check;
    mod completions;
    mod discovery;
    mod docs;
    mod help;
    mod hostile;
    mod install;
    mod live;
    mod logging;
    mod logs;
    mod messages;
    mod requests;
    mod status;
}
