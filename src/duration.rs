//! Durations as operators write them (`"500ms"`, `"60s"`, `"15m"`, `"6h"`,
//! a bare number of seconds) and as the daemon prints them back.
//!
//! Three ways to print one: [`human`] for ages and uptimes (the two largest
//! units, cut down, so `6y330d`, never `60527h36m`), [`exact`] for a setting
//! or a limit (every unit it has), and [`above`] for an age that broke a
//! limit (just precise enough that the comparison shows).

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

const MICRO: u128 = 1_000;
const MILLI: u128 = 1_000_000;
const SECOND: u128 = 1_000_000_000;
const MINUTE: u128 = 60 * SECOND;
const HOUR: u128 = 60 * MINUTE;
const DAY: u128 = 24 * HOUR;
/// A year as the config parser reads `1y`: 365.25 days.
const YEAR: u128 = 36_525 * DAY / 100;

/// The units from years to seconds, largest first.
const UNITS: [(u128, &str); 5] = [
    (YEAR, "y"),
    (DAY, "d"),
    (HOUR, "h"),
    (MINUTE, "m"),
    (SECOND, "s"),
];

/// Formats a duration for people: its two largest units, cut down (never
/// rounded up, so an age is never overstated): `6y330d`, `3d4h`, `1h40m`,
/// `10s`, `250ms`.
pub(crate) fn human(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos < SECOND {
        return match d.as_millis() {
            0 => "0s".into(),
            ms => format!("{ms}ms"),
        };
    }
    exact_nanos(truncated(nanos, human_level(nanos)))
}

/// Precision levels: 0 shows years only, 1 down to days, 2 hours,
/// 3 minutes, 4 whole seconds, 5 to 13 one to nine digits of a second.
const SECONDS_LEVEL: usize = 4;
const FINEST_LEVEL: usize = 13;

/// The level [`human`] shows `nanos` at: one unit below its largest.
fn human_level(nanos: u128) -> usize {
    match UNITS.iter().position(|&(unit, _)| nanos >= unit) {
        Some(i) => (i + 1).min(SECONDS_LEVEL),
        None => SECONDS_LEVEL + 3, // milliseconds
    }
}

/// `nanos` cut down to what `level` shows: whole units from the largest
/// down (a year is not a whole number of days, so the units are taken in
/// turn), then digits of a second.
fn truncated(nanos: u128, level: usize) -> u128 {
    let mut left = nanos;
    let mut kept = 0;
    for &(unit, _) in &UNITS[..=level.min(SECONDS_LEVEL)] {
        kept += left / unit * unit;
        left %= unit;
    }
    if level > SECONDS_LEVEL {
        let grain = 10u128.pow((9 + SECONDS_LEVEL - level) as u32);
        kept += left / grain * grain;
    }
    kept
}

/// Formats a duration with every unit it has, down to the nanosecond:
/// `1h30m`, `10m1s`, `10.9s`, `250ms`. For settings and limits, which must
/// not be shown rounded.
pub(crate) fn exact(d: Duration) -> String {
    exact_nanos(d.as_nanos())
}

fn exact_nanos(nanos: u128) -> String {
    if nanos < SECOND {
        return match nanos {
            0 => "0s".into(),
            n if n % MILLI == 0 => format!("{}ms", n / MILLI),
            n if n % MICRO == 0 => format!("{}us", n / MICRO),
            n => format!("{n}ns"),
        };
    }
    let mut out = String::new();
    let mut left = nanos;
    for &(unit, name) in &UNITS[..UNITS.len() - 1] {
        if left >= unit {
            out += &format!("{}{name}", left / unit);
            left %= unit;
        }
    }
    if left > 0 {
        let (secs, frac) = (left / SECOND, left % SECOND);
        out += &secs.to_string();
        if frac > 0 {
            let digits = format!("{frac:09}");
            out.push('.');
            out.push_str(digits.trim_end_matches('0'));
        }
        out.push('s');
    }
    out
}

/// Formats `d`, known to be more than `limit`, as coarsely as it can while
/// the shown value is still more than `limit` (shown exactly): `1h40m` for
/// 100 minutes against `1h30m`, `10.9s` for 10.9 s against `10s`. Cut down,
/// never rounded up, so what it says is true.
pub(crate) fn above(d: Duration, limit: Duration) -> String {
    let (nanos, limit) = (d.as_nanos(), limit.as_nanos());
    (human_level(nanos)..=FINEST_LEVEL)
        .map(|level| truncated(nanos, level))
        .find(|&shown| shown > limit)
        .map_or_else(|| exact_nanos(nanos), exact_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(secs(6 * 3600)), "6h");
        assert_eq!(human(secs(90)), "1m30s");
        assert_eq!(human(secs(3661)), "1h1m");
        assert_eq!(human(secs(100 * 60)), "1h40m");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::from_millis(10_900)), "10s");
        assert_eq!(human(secs(0)), "0s");
        assert_eq!(human(secs(3 * 86_400 + 4 * 3600 + 59)), "3d4h");
        // An age of 60527h36m reads in years and days.
        assert_eq!(human(secs(60_527 * 3600 + 36 * 60)), "6y330d");
    }

    #[test]
    fn exact_durations() {
        assert_eq!(exact(secs(90 * 60)), "1h30m");
        assert_eq!(exact(secs(3601)), "1h1s");
        assert_eq!(exact(secs(601)), "10m1s");
        assert_eq!(exact(Duration::from_millis(10_900)), "10.9s");
        assert_eq!(exact(Duration::from_millis(250)), "250ms");
        assert_eq!(exact(Duration::from_micros(5)), "5us");
        assert_eq!(exact(secs(6 * 3600)), "6h");
    }

    #[test]
    fn above_shows_just_enough_to_be_true() {
        assert_eq!(above(secs(100 * 60), secs(90 * 60)), "1h40m");
        assert_eq!(above(Duration::from_millis(10_900), secs(10)), "10.9s");
        assert_eq!(above(secs(601), secs(600)), "10m1s");
        assert_eq!(above(secs(7 * 3600), secs(6 * 3600)), "7h");
        assert_eq!(above(secs(7 * 3600 + 59), secs(6 * 3600)), "7h");
        assert_eq!(
            above(Duration::from_nanos(10_000_000_001), secs(10)),
            "10.000000001s"
        );
        assert_eq!(above(secs(3 * 365 * 86_400), secs(6 * 3600)), "2y364d");
        // Whatever the precision, the shown value is above the limit.
        for (d, limit) in [(5_400_001_000_000u64, 5_400), (3_600_500_000_000, 3_600)] {
            let shown = above(Duration::from_nanos(d), secs(limit));
            assert_ne!(shown, exact(secs(limit)), "{shown}");
        }
    }

    #[test]
    fn parses_what_it_prints() {
        for text in ["250ms", "90s", "15m", "6h", "1.5", "1h30m", "10m1s", "3d4h"] {
            assert!(parse_duration(text).is_ok(), "{text}");
        }
        assert_eq!(parse_duration("1h30m").unwrap(), secs(5400));
        assert_eq!(parse_duration("90").unwrap(), secs(90));
        assert!(parse_duration("soon").is_err());
    }
}
