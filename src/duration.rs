//! Durations as operators write them (`"500ms"`, `"60s"`, `"15m"`, `"6h"`,
//! a bare number of seconds) and as the daemon prints them back.

use std::time::Duration;

/// Parses `"60s"`, `"15m"`, `"6h"`, `"250ms"`; a bare number means seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
    }
    humantime::parse_duration(text).map_err(|e| {
        format!("{text:?} is not a duration ({e}); use e.g. \"500ms\", \"60s\", \"15m\", \"6h\"")
    })
}

/// Formats a duration the way the config accepts it, rounded for people.
pub(crate) fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return match d.as_millis() {
            0 => "0s".into(),
            ms => format!("{ms}ms"),
        };
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(6 * 3600)), "6h");
        assert_eq!(human(Duration::from_secs(90)), "1m30s");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn parses_what_it_prints() {
        for text in ["250ms", "90s", "15m", "6h", "1.5"] {
            assert!(parse_duration(text).is_ok(), "{text}");
        }
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("soon").is_err());
    }
}
