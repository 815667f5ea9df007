//! Stand-ins for agents, as small programs the tests (and the agents
//! benchmark) run in tmux panes: one that answers every line it reads,
//! one that never reads its terminal, one in raw mode that ignores all
//! input, a TUI that takes text followed at once by Enter for a paste,
//! and one that asks a person a yes/no question and waits.
//!
//! Each is an argv (no shell between tmux and it, unless it is a shell
//! script); the Python ones are written into a directory first. This file
//! uses only std, so the benchmark can include it.

use std::fs;
use std::path::Path;

/// Answers each line it reads (an idle agent that hears its pokes).
pub const ANSWERING: &str = r#"
import sys
print("answering agent ready", flush=True)
for line in sys.stdin:
    print("ack", flush=True)
"#;

/// Raw mode, no echo, reads nothing: input goes nowhere on screen.
pub const RAW_AND_DEAF: &str = r#"
import sys, time, tty
tty.setraw(0)
sys.stdout.write("raw and deaf\r\n")
sys.stdout.flush()
time.sleep(600)
"#;

/// A TUI in raw mode with its own input line (`> text`, the cursor after
/// it). Text followed by Enter within PASTE seconds of it is a paste: the
/// Enter becomes part of the input. Only an Enter that arrives alone,
/// later, submits. Every read and every submission goes to the log named
/// by argv[1], so a test can tell what it was sent.
pub const PASTE_TUI: &str = r#"
import os, sys, time, tty
PASTE = 0.8
log = open(sys.argv[1], "a", buffering=1)
tty.setraw(0)
buf = ""
last = 0.0
def draw():
    os.write(1, ("\r\x1b[K> " + buf).encode())
os.write(1, b"paste tui ready\r\n")
draw()
while True:
    chunk = os.read(0, 4096)
    if not chunk:
        break
    now = time.monotonic()
    text = chunk.decode(errors="replace")
    log.write("READ %r\n" % text)
    if text == "\r" and now - last > PASTE:
        log.write("SUBMIT %r\n" % buf)
        os.write(1, ("\r\x1b[Kgot: " + buf + "\r\n").encode())
        buf = ""
    else:
        buf += text.replace("\r", "")
        last = now
    draw()
"#;

/// Never reads its terminal: the terminal echoes what is typed.
pub fn never_reads(marker: &str) -> Vec<String> {
    sh(&format!("echo {marker}; exec sleep 600"))
}

/// Asks a yes/no question and waits for the answer (then says it).
pub fn asks_a_person() -> Vec<String> {
    sh(
        "echo 'About to delete the build.'; printf 'Continue? [y/N] '; read answer; \
        echo \"answered: $answer\"; exec sleep 600",
    )
}

/// `sh -c SCRIPT`.
pub fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// `python3 -u DIR/NAME.py ARGS...`, the script written there first.
pub fn python(dir: &Path, name: &str, script: &str, args: &[&str]) -> Vec<String> {
    let path = dir.join(format!("{name}.py"));
    fs::write(&path, script).expect("write an agent script");
    let mut argv = vec![
        "python3".to_string(),
        "-u".into(),
        path.display().to_string(),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    argv
}
