//! Test hooks: the only switches the test suite and the benchmark can flip
//! in a running daemon, read once when `gt daemon run` starts.
//!
//! A hook is honoured only when [`ENABLE`] is also set to `1`, so a stray
//! variable in a production environment changes nothing; any hook that is
//! honoured is logged as a warning at start-up. Tests and the benchmark set
//! them through these names, never by spelling them out.

use std::time::Duration;

/// Must be `1` for any hook below to be honoured.
pub const ENABLE: &str = "GT_TESTING";
/// Sleep this many milliseconds after claiming each request (widens the
/// window in which a crash finds requests in `processing/`).
pub const REQUEST_DELAY_MS: &str = "GT_TEST_REQUEST_DELAY_MS";
/// `1`: ignore SIGTERM, so `stop` must fall back to SIGKILL.
pub const IGNORE_SIGTERM: &str = "GT_TEST_IGNORE_SIGTERM";
/// `1`: behave as if the kernel refused the inbox watch (watch limits).
pub const NOTIFY_FAIL: &str = "GT_TEST_NOTIFY_FAIL";
/// A tiny event channel, to prove that dropped events cost a rescan.
pub const CHANNEL_CAPACITY: &str = "GT_TEST_CHANNEL_CAPACITY";
/// Sleep this many milliseconds after taking the lock, before announcing
/// that the daemon is up (a start-up that outlasts `start --timeout`).
pub const START_DELAY_MS: &str = "GT_TEST_START_DELAY_MS";
/// A GET of `/panic` makes the metrics endpoint panic; it restarts this
/// many milliseconds later (long enough for a test to see it down).
pub const ENDPOINT_PANIC_MS: &str = "GT_TEST_ENDPOINT_PANIC_MS";

/// Every variable this module reads, [`ENABLE`] first: tests clear them all
/// from a daemon's environment unless they mean to set one.
pub const NAMES: &[&str] = &[
    ENABLE,
    REQUEST_DELAY_MS,
    IGNORE_SIGTERM,
    NOTIFY_FAIL,
    CHANNEL_CAPACITY,
    START_DELAY_MS,
    ENDPOINT_PANIC_MS,
];

/// The hooks in force for one daemon; all off by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    pub request_delay: Option<Duration>,
    pub ignore_sigterm: bool,
    pub notify_fail: bool,
    pub channel_capacity: Option<usize>,
    pub start_delay: Option<Duration>,
    pub endpoint_panic: Option<Duration>,
}

impl Hooks {
    /// Reads the hooks from the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the hooks through `lookup` (the environment, or a table in a
    /// unit test). Without `GT_TESTING=1` every hook is off.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        if lookup(ENABLE).as_deref() != Some("1") {
            return Hooks::default();
        }
        let flag = |name| lookup(name).as_deref() == Some("1");
        Hooks {
            request_delay: lookup(REQUEST_DELAY_MS)
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis),
            ignore_sigterm: flag(IGNORE_SIGTERM),
            notify_fail: flag(NOTIFY_FAIL),
            channel_capacity: lookup(CHANNEL_CAPACITY).and_then(|v| v.parse().ok()),
            start_delay: lookup(START_DELAY_MS)
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis),
            endpoint_panic: lookup(ENDPOINT_PANIC_MS)
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis),
        }
    }

    /// One line per hook in force, for the start-up warning.
    pub fn active(&self) -> Vec<String> {
        let mut on = Vec::new();
        if let Some(d) = self.request_delay {
            on.push(format!("{REQUEST_DELAY_MS}={}", d.as_millis()));
        }
        if self.ignore_sigterm {
            on.push(format!("{IGNORE_SIGTERM}=1"));
        }
        if self.notify_fail {
            on.push(format!("{NOTIFY_FAIL}=1"));
        }
        if let Some(c) = self.channel_capacity {
            on.push(format!("{CHANNEL_CAPACITY}={c}"));
        }
        if let Some(d) = self.start_delay {
            on.push(format!("{START_DELAY_MS}={}", d.as_millis()));
        }
        if let Some(d) = self.endpoint_panic {
            on.push(format!("{ENDPOINT_PANIC_MS}={}", d.as_millis()));
        }
        on
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn hooks(pairs: &[(&str, &str)]) -> Hooks {
        let table: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Hooks::from_lookup(|name| table.get(name).cloned())
    }

    #[test]
    fn hooks_need_the_testing_switch() {
        let set = [
            (REQUEST_DELAY_MS, "5"),
            (IGNORE_SIGTERM, "1"),
            (NOTIFY_FAIL, "1"),
            (CHANNEL_CAPACITY, "2"),
            (START_DELAY_MS, "7"),
            (ENDPOINT_PANIC_MS, "9"),
        ];
        assert_eq!(hooks(&set), Hooks::default());
        let mut enabled = set.to_vec();
        enabled.push((ENABLE, "1"));
        let on = hooks(&enabled);
        assert_eq!(on.request_delay, Some(Duration::from_millis(5)));
        assert!(on.ignore_sigterm && on.notify_fail);
        assert_eq!(on.channel_capacity, Some(2));
        assert_eq!(on.start_delay, Some(Duration::from_millis(7)));
        assert_eq!(on.endpoint_panic, Some(Duration::from_millis(9)));
        assert_eq!(on.active().len(), 6);
    }
}
