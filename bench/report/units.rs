//! How the report writes numbers: counts with thousands separators, rates,
//! durations in the unit that reads best, ratios, percentiles.

use std::time::Duration;

/// 20000 → "20,000".
pub fn int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn rate(r: f64) -> String {
    if r >= 100.0 {
        format!("{} req/s", int(r.round() as u64))
    } else {
        format!("{r:.1} req/s")
    }
}

pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.3}")
    } else if ms < 1000.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

pub fn ratio(x: f64) -> String {
    if x >= 10.0 {
        format!("{}×", int(x.round() as u64))
    } else {
        format!("{x:.2}×")
    }
}

/// Nearest-rank percentile of a sample.
pub fn pct(samples: &[Duration], q: f64) -> Duration {
    let mut v = samples.to_vec();
    v.sort();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// p50 / p99 / max in ms.
pub fn lat3(l: &[Duration]) -> String {
    format!(
        "{} / {} / {} ms",
        ms(pct(l, 0.50)),
        ms(pct(l, 0.99)),
        ms(pct(l, 1.0))
    )
}

/// A duration in the unit that reads best: ms below a second, else s.
pub fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", ms(d))
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// p50 / p99 (and max), each in [`human`] units.
pub fn lat_human(l: &[Duration], max: bool) -> String {
    let mut parts = vec![human(pct(l, 0.50)), human(pct(l, 0.99))];
    if max {
        parts.push(human(pct(l, 1.0)));
    }
    parts.join(" / ")
}
