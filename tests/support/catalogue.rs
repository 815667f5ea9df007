//! The request fixture catalogue: `fixtures/cases.json` and the files it
//! lists, with their placeholders filled in (see `fixtures/README.md`).

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Path under `fixtures/`, e.g. `invalid/empty.json`.
    pub file: String,
    /// `processed` or `failed`.
    pub outcome: String,
    /// For failed cases: the reason, exactly as a person reads it in the
    /// sidecar.
    #[serde(default)]
    pub reason: Option<String>,
    /// For failed cases whose reason holds a clock-dependent age instead:
    /// the pieces around it, in order.
    #[serde(default)]
    pub reason_contains: Option<Vec<String>>,
    /// For processed cases: what the request maps to.
    #[serde(default)]
    pub session: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub action: Option<String>,
    /// The bytes are produced by [`generate`] instead of read from `file`.
    #[serde(default)]
    pub generate: Option<String>,
    /// `"file"`: the outcome depends on the file, not on its bytes as a
    /// request, so only the daemon can judge it.
    #[serde(default)]
    pub layer: Option<String>,
}

impl Case {
    pub fn parse_layer_applies(&self) -> bool {
        self.layer.as_deref() != Some("file")
    }

    /// Whether `actual` is the reason this case expects; `Err` says how not.
    pub fn check_reason(&self, actual: &str) -> Result<(), String> {
        match (&self.reason, &self.reason_contains) {
            (Some(want), None) if actual == want => Ok(()),
            (Some(want), None) => Err(format!("reason {actual:?}, expected {want:?}")),
            (None, Some(pieces)) => {
                let mut rest = actual;
                for piece in pieces {
                    match rest.find(piece.as_str()) {
                        Some(i) => rest = &rest[i + piece.len()..],
                        None => {
                            return Err(format!(
                                "reason {actual:?} does not hold {pieces:?} in order"
                            ))
                        }
                    }
                }
                Ok(())
            }
            _ => Err(format!(
                "{}: a failed case names exactly one of reason, reason_contains",
                self.file
            )),
        }
    }

    /// The name the case is dropped into an inbox under (unique across
    /// folders): `valid/mayor-cycle.json` -> `valid--mayor-cycle.json`.
    pub fn inbox_name(&self) -> String {
        self.file.replace('/', "--")
    }
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

pub fn cases() -> Vec<Case> {
    let text =
        fs::read_to_string(fixtures_dir().join("cases.json")).expect("read fixtures/cases.json");
    let cases: Vec<Case> = serde_json::from_str(&text).expect("fixtures/cases.json is malformed");
    assert!(!cases.is_empty());
    cases
}

pub fn now_text(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Bytes for a case with the placeholders filled in.
pub fn case_bytes(case: &Case, now: DateTime<Utc>) -> Vec<u8> {
    let raw = match &case.generate {
        Some(kind) => generate(kind, now),
        None => fs::read(fixtures_dir().join(&case.file))
            .unwrap_or_else(|e| panic!("{}: {e}", case.file)),
    };
    let seven_hours_ago = now - chrono::Duration::hours(7) - chrono::Duration::seconds(1);
    let raw = replace(&raw, b"__NOW-7h__", now_text(seven_hours_ago).as_bytes());
    replace(&raw, b"__NOW__", now_text(now).as_bytes())
}

/// Generated fixtures, too big (or too exact) to commit.
fn generate(kind: &str, now: DateTime<Utc>) -> Vec<u8> {
    let request = |pad: usize| {
        format!(
            r#"{{"from":"mayor","action":"shutdown","timestamp":"{}","pad":"{}"}}"#,
            now_text(now),
            "a".repeat(pad)
        )
        .into_bytes()
    };
    let padded_to = |len: usize| {
        let bytes = request(len - request(0).len());
        assert_eq!(bytes.len(), len);
        bytes
    };
    match kind {
        // Deeper than any recursive parser's stack, unclosed, under the size cap.
        "unclosed_nesting_60k" => format!("{{\"x\":{}", "[".repeat(60_000)).into_bytes(),
        "brackets_1mb" => vec![b'['; 1024 * 1024],
        "valid_request_padded_to_64kib" => padded_to(64 * 1024),
        "valid_request_padded_to_64kib_plus_1" => padded_to(64 * 1024 + 1),
        other => panic!("fixtures/cases.json: unknown generator {other:?}"),
    }
}

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}
