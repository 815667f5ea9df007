//! The daemon's result sidecar, as the library defines it. The bench names
//! the library's module only in the `use` below, so that when the sidecar
//! types move, this line is all that changes.

use std::path::{Path, PathBuf};

use gt::outcome::{sidecar_path, Outcome, Sidecar};

/// What every request of a scenario must come out as.
pub struct Expected<'a> {
    pub from: &'a str,
    pub action: &'a str,
    /// The daemon's PID, when the scenario knows it (the baseline's sidecars
    /// carry the script's).
    pub daemon_pid: Option<u32>,
}

/// The bytes of a `processed` sidecar as the daemon writes them, for the
/// limit loop (which writes what the daemon writes, minus the deciding).
pub fn processed_body(from: &str, action: &str, pid: u32) -> Vec<u8> {
    let sidecar = Sidecar {
        outcome: Outcome::Processed,
        error: None,
        from: Some(from.into()),
        action: Some(action.into()),
        session: Some(format!("gt-{from}")),
        finished_at: chrono::Utc::now(),
        daemon_pid: pid,
        original_name: None,
        seq: None,
    };
    let mut body = serde_json::to_vec(&sidecar).expect("a sidecar serializes");
    body.push(b'\n');
    body
}

/// Where the sidecar of the request filed at `request` lives.
pub fn sidecar_of(request: &Path) -> PathBuf {
    sidecar_path(request)
}

/// The sidecar file name of request file `name` (`X.json` → `X.json.result.json`).
pub fn sidecar_name(name: &str) -> String {
    sidecar_of(Path::new(name)).to_string_lossy().into_owned()
}

/// Whether `name` is a sidecar's file name rather than a request's.
pub fn is_sidecar(name: &str) -> bool {
    // The suffix the library adds, taken from the library.
    let request = "r.json";
    name.ends_with(&sidecar_name(request)[request.len()..])
}

/// Reads the sidecar at `path` and says what is wrong with it, if anything:
/// unreadable, not the contract's shape, or not the expected outcome.
pub fn check(path: &Path, want: &Expected) -> Option<String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return Some(format!("cannot read it: {e}")),
    };
    let s: Sidecar = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(e) => {
            return Some(format!(
                "not a valid sidecar ({e}): {}",
                String::from_utf8_lossy(&bytes).trim()
            ))
        }
    };
    let mut wrong = Vec::new();
    if s.outcome != Outcome::Processed {
        wrong.push(format!("outcome {:?}", s.outcome));
    }
    if let Some(error) = &s.error {
        wrong.push(format!("error {error:?}"));
    }
    let shown = |v: &Option<String>| v.as_ref().map_or("null".into(), |v| format!("{v:?}"));
    if s.from.as_deref() != Some(want.from) {
        wrong.push(format!("from {}, expected {:?}", shown(&s.from), want.from));
    }
    if s.action.as_deref() != Some(want.action) {
        wrong.push(format!(
            "action {}, expected {:?}",
            shown(&s.action),
            want.action
        ));
    }
    if let Some(pid) = want.daemon_pid {
        if s.daemon_pid != pid {
            wrong.push(format!(
                "daemon_pid {}, not the daemon's {pid}",
                s.daemon_pid
            ));
        }
    }
    (!wrong.is_empty()).then(|| wrong.join(", "))
}

/// The `error` of the sidecar at `path`, to say why a request failed.
pub fn error_of(path: &Path) -> Option<String> {
    let s: Sidecar = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    s.error
}
