//! The one table of config.json's keys: each key's type, default, bounds,
//! whether a reload changes it, and what it does. The table is the source
//! of the defaults ([`Config::default`](super::Config)), of the bounds
//! `check` enforces, of what a reload keeps, of `gt man`'s CONFIGURATION
//! and of docs/configuration.md; unit tests hold it to the `Config`
//! struct. A new key is a field of `Config` plus a row here.

use std::time::Duration;

use crate::duration::{above, exact, human};

/// One key of config.json.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub kind: Kind,
    /// The default, as it would be written in config.json.
    pub default: &'static str,
    pub bounds: Bounds,
    pub reload: Reload,
    /// What it does, in one line of Markdown (`code` for names).
    pub description: &'static str,
}

/// A key's type, as an operator writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Duration,
    Integer,
    Boolean,
    Text,
    /// A list of text.
    Texts,
    /// A command line: text split like a shell would (no shell runs it), or
    /// an argv array.
    Command,
    /// Text naming one thing, or null for none.
    Optional,
    /// An object of role → command line.
    Roles,
    /// An object of name → text.
    TextMap,
    /// One of a few words.
    Choice(&'static [&'static str]),
}

impl Kind {
    fn describe(self) -> String {
        match self {
            Kind::Duration => "duration".into(),
            Kind::Integer => "integer".into(),
            Kind::Boolean => "boolean".into(),
            Kind::Text => "text".into(),
            Kind::Texts => "list of text".into(),
            Kind::Command => "command line".into(),
            Kind::Optional => "text or null".into(),
            Kind::Roles => "object of command lines".into(),
            Kind::TextMap => "object of text".into(),
            Kind::Choice(words) => words.join(" or "),
        }
    }
}

/// What values a key accepts beyond its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bounds {
    None,
    /// From `min` to `max`, both included (`Duration::MAX`: no upper
    /// bound); `why` the bound, shown with a refusal (may be empty).
    Duration {
        min: Duration,
        max: Duration,
        why: &'static str,
    },
    /// A whole number from `min` to `max`, both included.
    Integer {
        min: u64,
        max: u64,
    },
    /// A rule `Config::check` enforces in code, in words.
    Rule(&'static str),
}

/// Whether a running daemon takes a key's new value when it reloads
/// config.json (SIGHUP), or only when it next starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    Live,
    /// Read once at the start: the watcher, the pool, the tmux server, the
    /// log file, supervision, the metrics endpoint and the notifier are set
    /// up then, and a reload keeps the running value.
    AtStart,
}

impl Bounds {
    /// Why `value` (as config.json's JSON would hold it) is out of bounds,
    /// in the words of `check`'s refusal; `None` when it is within them.
    pub(crate) fn refusal(&self, value: &serde_json::Value) -> Option<String> {
        match *self {
            Bounds::Duration { min, max, why } => {
                let d = super::values::duration::deserialize(value).ok()?;
                let why = match why {
                    "" => String::new(),
                    why => format!(" ({why})"),
                };
                if d < min {
                    Some(format!(
                        "must be at least {}, found {}{why}",
                        exact(min),
                        human(d)
                    ))
                } else if d > max {
                    Some(format!(
                        "must be at most {}, found {}{why}",
                        exact(max),
                        above(d, max)
                    ))
                } else {
                    None
                }
            }
            Bounds::Integer { min, max } => {
                let n = value.as_u64()?;
                if n < min {
                    Some(format!("must be at least {min}, found {n}"))
                } else if n > max {
                    Some(format!("must be at most {max}, found {n}"))
                } else {
                    None
                }
            }
            Bounds::None | Bounds::Rule(_) => None,
        }
    }

    /// The bounds in a few words (`1s to 1d`, `at least 1m`), or `None`.
    pub fn describe(&self) -> Option<String> {
        match *self {
            Bounds::None => None,
            Bounds::Duration { min, max, why } => {
                let range = match (min.is_zero(), max == Duration::MAX) {
                    (true, true) => return None,
                    (true, false) => format!("at most {}", exact(max)),
                    (false, true) => format!("at least {}", exact(min)),
                    (false, false) => format!("{} to {}", exact(min), exact(max)),
                };
                Some(match why {
                    "" => range,
                    why => format!("{range} ({why})"),
                })
            }
            Bounds::Integer { min, max: u64::MAX } => Some(format!("at least {min}")),
            Bounds::Integer { min, max } => Some(format!("{min} to {max}")),
            Bounds::Rule(rule) => Some(rule.into()),
        }
    }
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
const fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}
const fn m(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}
const fn h(n: u64) -> Duration {
    Duration::from_secs(3600 * n)
}
const FOREVER: Duration = Duration::MAX;

/// A duration from `min` to `max`; `why`: the reason for the bound.
const fn between(min: Duration, max: Duration, why: &'static str) -> Bounds {
    Bounds::Duration { min, max, why }
}

/// `Outcomes are read back` by `send --wait` and `requests`.
const READ_BACK: &str = "`send --wait` and `requests` read outcomes back";

use Bounds::Rule;
use Reload::*;

/// The permission and yes/no prompts of the common agent programs
/// (docs/agents.md says which program shows each).
const HUMAN_PROMPT_PATTERNS: &str = r#"["Do you want to proceed?", "Do you want to make this edit to", "Do you want to create", "Do you want to overwrite", "Do you want to allow", "Would you like to run the following command?", "Would you like to make the following edits?", "Would you like to grant these permissions?", "Allow execution", "Apply this change?", "(Y)es/(N)o", "(y/n)", "(Y/n)", "(y/N)", "(Y/N)", "[y/n]", "[Y/n]", "[y/N]", "[Y/N]", "(yes/no"]"#;

/// Every key of config.json, in the order the reference lists them.
pub const KEYS: &[Key] = &[
    Key {
        name: "heartbeat_interval",
        kind: Kind::Duration,
        default: r#""60s""#,
        bounds: between(s(1), h(24), "every beat pokes every agent"),
        reload: Live,
        description: "how often to poke the Mayor and the Witnesses and rewrite `state.json`",
    },
    Key {
        name: "mayor_poke_text",
        kind: Kind::Text,
        default: r#""HEARTBEAT: check your rigs""#,
        bounds: Bounds::None,
        reload: Live,
        description: "typed (then Enter) into `gt-mayor` at each heartbeat; empty: the Mayor is not poked",
    },
    Key {
        name: "witness_poke_text",
        kind: Kind::Text,
        default: r#""HEARTBEAT: check your workers""#,
        bounds: Bounds::None,
        reload: Live,
        description: "typed (then Enter) into every `gt-<rig>-witness` at each heartbeat; empty: Witnesses are not poked",
    },
    Key {
        name: "poke_texts",
        kind: Kind::TextMap,
        default: "{}",
        bounds: Rule("keys: an agent (deacon, gastown/refinery) or a role (witness, refinery)"),
        reload: Live,
        description: "who else the heartbeat pokes, with what: `{\"deacon\": \"HEARTBEAT: patrol\", \"refinery\": \"...\"}`; an agent's own entry before its role's, both before the two keys above; empty text: not poked",
    },
    Key {
        name: "max_request_age",
        kind: Kind::Duration,
        default: r#""6h""#,
        bounds: between(s(1), FOREVER, ""),
        reload: Live,
        description: "older requests fail as stale",
    },
    Key {
        name: "rescan_interval",
        kind: Kind::Duration,
        default: r#""30s""#,
        bounds: between(s(1), h(24), "every rescan lists the whole inbox"),
        reload: AtStart,
        description: "a full scan of the inbox, the safety net under notify",
    },
    Key {
        name: "prime_delay",
        kind: Kind::Duration,
        default: r#""2s""#,
        bounds: between(s(0), m(10), "a restart holds its agent's next request this long"),
        reload: Live,
        description: "the wait after creating a session before typing `prime_text`",
    },
    Key {
        name: "kill_grace",
        kind: Kind::Duration,
        default: r#""2s""#,
        bounds: between(s(0), m(10), "ending an agent waits this long"),
        reload: Live,
        description: "SIGTERM to SIGKILL grace when ending a session",
    },
    Key {
        name: "end_leftovers",
        kind: Kind::Boolean,
        default: "false",
        bounds: Bounds::None,
        reload: Live,
        description: "end leftovers (processes carrying this town's `GT_TOWN_ROOT` and an agent's `GT_ROLE` in no live pane, found at each heartbeat and seen twice); false: they are only reported (docs/supervision.md, \"Every process of an agent\")",
    },
    Key {
        name: "restart_window",
        kind: Kind::Duration,
        default: r#""15m""#,
        bounds: between(s(1), FOREVER, ""),
        reload: Live,
        description: "the crash-loop guard's window, within which supervision counts an agent's deaths too",
    },
    Key {
        name: "max_restarts",
        kind: Kind::Integer,
        default: "5",
        bounds: Bounds::None,
        reload: Live,
        description: "cycles and restarts of one session allowed within `restart_window` (supervision's after a crash count too); an agent that died this many times is quarantined",
    },
    Key {
        name: "agent_command",
        kind: Kind::Command,
        default: r#""claude --dangerously-skip-permissions""#,
        bounds: Rule("not empty"),
        reload: Live,
        description: "the agent program, run as the pane's own process",
    },
    Key {
        name: "agent_commands",
        kind: Kind::Roles,
        default: "{}",
        bounds: Rule("roles: mayor, deacon, witness, refinery"),
        reload: Live,
        description: "per-role agent commands, as `agent_command`: `{\"mayor\": \"...\", \"witness\": [...]}`",
    },
    Key {
        name: "prime_text",
        kind: Kind::Text,
        default: r#""gt prime""#,
        bounds: Bounds::None,
        reload: Live,
        description: "typed into a new session after `prime_delay`; empty: nothing is typed",
    },
    Key {
        name: "tmux_socket",
        kind: Kind::Optional,
        default: "null",
        bounds: Rule("a plain name, no /"),
        reload: AtStart,
        description: "a private tmux server (`tmux -L NAME`); null: the default server",
    },
    Key {
        name: "watch_mode",
        kind: Kind::Choice(&["notify", "poll"]),
        default: r#""notify""#,
        bounds: Bounds::None,
        reload: AtStart,
        description: "how the inbox is watched; the daemon polls by itself when notify cannot be set up",
    },
    Key {
        name: "poll_interval",
        kind: Kind::Duration,
        default: r#""1s""#,
        bounds: between(ms(100), h(1), "every poll lists the whole inbox"),
        reload: AtStart,
        description: "the scan interval when polling",
    },
    Key {
        name: "dry_run",
        kind: Kind::Boolean,
        default: "false",
        bounds: Bounds::None,
        reload: AtStart,
        description: "as `--dry-run`: validate and file requests, never touch tmux",
    },
    Key {
        name: "log_max_bytes",
        kind: Kind::Integer,
        default: "10485760",
        bounds: Bounds::Integer {
            min: 1024,
            max: u64::MAX,
        },
        reload: AtStart,
        description: "`daemon.log` is rotated past this size",
    },
    Key {
        name: "log_keep",
        kind: Kind::Integer,
        default: "5",
        bounds: Bounds::None,
        reload: AtStart,
        description: "rotated logs kept (`daemon.log.1` ...)",
    },
    Key {
        name: "keep_processed",
        kind: Kind::Duration,
        default: r#""7d""#,
        bounds: between(m(1), FOREVER, READ_BACK),
        reload: Live,
        description: "processed requests (with their sidecars) older than this are pruned",
    },
    Key {
        name: "keep_failed",
        kind: Kind::Duration,
        default: r#""30d""#,
        bounds: between(m(1), FOREVER, READ_BACK),
        reload: Live,
        description: "failed requests (with their sidecars) older than this are pruned",
    },
    Key {
        name: "max_parallel",
        kind: Kind::Integer,
        default: "32",
        bounds: Bounds::Integer { min: 1, max: 256 },
        reload: AtStart,
        description: "requests for different agents executed at once; one agent's requests always run one at a time, in order",
    },
    Key {
        name: "tmux_timeout",
        kind: Kind::Duration,
        default: r#""10s""#,
        bounds: between(
            ms(100),
            m(1),
            "the service manager's watchdog outlasts any one tmux call",
        ),
        reload: AtStart,
        description: "the longest one tmux command may take; past it the request fails naming tmux and the limit",
    },
    Key {
        name: "write_timeout",
        kind: Kind::Duration,
        default: r#""60s""#,
        bounds: between(ms(100), h(24), ""),
        reload: Live,
        description: "how long a file created directly in the inbox may take to be written",
    },
    Key {
        name: "supervise",
        kind: Kind::Texts,
        default: "[]",
        bounds: Rule("agent names as in a request's from, or \"auto\""),
        reload: AtStart,
        description: "agents to keep alive (`\"auto\"`: every agent whose work directory exists); empty: nothing is restarted unless requested",
    },
    Key {
        name: "supervise_interval",
        kind: Kind::Duration,
        default: r#""10s""#,
        bounds: between(ms(100), FOREVER, ""),
        reload: AtStart,
        description: "how often supervised agents are looked at",
    },
    Key {
        name: "supervise_backoff",
        kind: Kind::Duration,
        default: r#""30s""#,
        bounds: Bounds::None,
        reload: AtStart,
        description: "the wait before restarting an agent that died again, doubling with each death",
    },
    Key {
        name: "supervise_backoff_max",
        kind: Kind::Duration,
        default: r#""10m""#,
        bounds: Bounds::None,
        reload: AtStart,
        description: "the longest that wait grows",
    },
    Key {
        name: "quarantine",
        kind: Kind::Duration,
        default: r#""1h""#,
        bounds: Bounds::None,
        reload: AtStart,
        description: "how long an agent that died `max_restarts` times within `restart_window` is left alone",
    },
    Key {
        name: "stable_after",
        kind: Kind::Duration,
        default: r#""10m""#,
        bounds: Bounds::None,
        reload: AtStart,
        description: "a run this long counts as stable: its death starts the count afresh",
    },
    Key {
        name: "not_a_crash",
        kind: Kind::Texts,
        default: r#"["usage limit"]"#,
        bounds: Bounds::None,
        reload: AtStart,
        description: "text in a dead pane that marks an exit as not a crash: it does not count toward quarantine",
    },
    Key {
        name: "mass_death",
        kind: Kind::Integer,
        default: "3",
        bounds: Bounds::Integer {
            min: 2,
            max: u64::MAX,
        },
        reload: AtStart,
        description: "this many supervised agents dying within `mass_death_window` pause supervision",
    },
    Key {
        name: "mass_death_window",
        kind: Kind::Duration,
        default: r#""30s""#,
        bounds: Bounds::None,
        reload: AtStart,
        description: "the window of `mass_death`",
    },
    Key {
        name: "mass_death_pause",
        kind: Kind::Duration,
        default: r#""10m""#,
        bounds: Bounds::None,
        reload: AtStart,
        description: "how long such a pause lasts, unless `gt daemon supervise resume`",
    },
    Key {
        name: "look_at_agents",
        kind: Kind::Boolean,
        default: "true",
        bounds: Bounds::None,
        reload: AtStart,
        description: "look at the panes of poked and supervised agents (every `supervise_interval`, and before each heartbeat's pokes) for their state; false: pokes are typed unconfirmed, no states",
    },
    Key {
        name: "poke_confirm",
        kind: Kind::Duration,
        default: r#""1s""#,
        bounds: between(ms(100), m(1), ""),
        reload: Live,
        description: "this long after a poke its pane is looked at: text still on the input line gets one more Enter",
    },
    Key {
        name: "answer_within",
        kind: Kind::Duration,
        default: r#""30s""#,
        bounds: between(ms(100), h(1), ""),
        reload: Live,
        description: "a poke is answered when the agent's screen moves within this time after it",
    },
    Key {
        name: "stall_after",
        kind: Kind::Duration,
        default: r#""10m""#,
        bounds: between(s(1), FOREVER, ""),
        reload: Live,
        description: "an agent quiet this long whose last `stall_pokes` pokes went unanswered is stalled",
    },
    Key {
        name: "stall_pokes",
        kind: Kind::Integer,
        default: "2",
        bounds: Bounds::Integer { min: 1, max: 1000 },
        reload: Live,
        description: "unanswered pokes in a row that a stall needs: an agent nobody pokes is never stalled",
    },
    Key {
        name: "stall_action",
        kind: Kind::Choice(&["report", "restart"]),
        default: r#""report""#,
        bounds: Rule("restart needs look_at_agents"),
        reload: AtStart,
        description: "`report`: a stalled agent is shown and notified; `restart`: a supervised one is also captured and restarted as a dead one is",
    },
    Key {
        name: "human_prompt_patterns",
        kind: Kind::Texts,
        default: HUMAN_PROMPT_PATTERNS,
        bounds: Rule("at most 64, of at most 200 characters, not empty"),
        reload: Live,
        description: "text (matched as written): an agent whose screen's last lines hold one waits for a person (docs/agents.md: which program shows each default)",
    },
    Key {
        name: "metrics_listen",
        kind: Kind::Optional,
        default: "null",
        bounds: Rule("IP:PORT on loopback, or an absolute unix socket path of at most 107 bytes"),
        reload: AtStart,
        description: "serve `/metrics` (Prometheus), `/healthz` and `/readyz` there; null: off",
    },
    Key {
        name: "metrics_allow_remote",
        kind: Kind::Boolean,
        default: "false",
        bounds: Bounds::None,
        reload: AtStart,
        description: "allow a `metrics_listen` address that is not loopback (the endpoints have no authentication)",
    },
    Key {
        name: "notify_command",
        kind: Kind::Command,
        default: "null",
        bounds: Bounds::None,
        reload: AtStart,
        description: "run on events a person must act on, the event as JSON on stdin; null: none",
    },
    Key {
        name: "notify_timeout",
        kind: Kind::Duration,
        default: r#""10s""#,
        bounds: between(ms(100), m(10), ""),
        reload: AtStart,
        description: "then `notify_command` is ended with everything it started (its session, and whatever carries its environment mark); of its output only the first 500 bytes are kept",
    },
    Key {
        name: "notify_window",
        kind: Kind::Duration,
        default: r#""1h""#,
        bounds: Bounds::None,
        reload: AtStart,
        description: "the same event is sent at most once within it",
    },
];

/// The row of `name`, if it is a key.
pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// Is `name` a key that only a start reads?
pub fn at_start(name: &str) -> bool {
    find(name).is_some_and(|k| k.reload == Reload::AtStart)
}

/// How docs/configuration.md says it was made; also the test's hint.
pub const REGENERATE: &str = "cargo run -- man --config-markdown > docs/configuration.md";

/// docs/configuration.md: the reference of every key, made from [`KEYS`].
pub fn markdown() -> String {
    let mut out = format!(
        "# Configuration\n\n\
         <!-- Made from the table of keys in src/config/keys.rs; do not edit.\n     \
         After changing that table: {REGENERATE} -->\n\n{INTRO}\n"
    );
    out += "| key | type | default | bounds | on reload | what it does |\n";
    out += "| --- | --- | --- | --- | --- | --- |\n";
    for key in KEYS {
        let cell = |text: &str| text.replace('|', "\\|");
        out += &format!(
            "| `{}` | {} | `{}` | {} | {} | {} |\n",
            key.name,
            cell(&key.kind.describe()),
            cell(key.default),
            cell(&key.bounds.describe().unwrap_or_else(|| "-".into())),
            match key.reload {
                Reload::Live => "changes",
                Reload::AtStart => "next start",
            },
            cell(key.description),
        );
    }
    out
}

const INTRO: &str = "\
`<town>/daemon/config.json` holds one JSON object; every key is optional
(`{}`, or no file at all, means every default). Durations are text such as
`\"500ms\"`, `\"60s\"`, `\"15m\"`, `\"6h\"`, `\"7d\"`, or a number of seconds;
no number is ever negative. An unknown key, a value of the wrong type or one
out of its bounds stops the daemon from starting, with a message naming the
key; text that is not JSON is reported with its line and column, and a top
level that is not an object is refused. The file must be a regular file
(a symbolic link to one is followed) of at most 1 MiB: a FIFO, a device or
a directory is refused without being opened. `gt daemon check` says all
this without starting anything.

SIGHUP (`systemctl reload`, `kill -HUP PID`) reloads the file (see
[Reloading config.json](operations.md#reloading-configjson)): a valid one is in force from
the next request and the next heartbeat, except for the keys marked
*next start*, which keep their running values until `gt daemon restart`;
an invalid one is refused and the running config stays.
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_configuration_md_is_made_from_this_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
        let written = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            written == markdown(),
            "docs/configuration.md is stale (or missing): {REGENERATE}"
        );
    }

    #[test]
    fn names_are_unique_and_described() {
        let mut names: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), KEYS.len(), "a key is listed twice");
        for key in KEYS {
            assert!(!key.description.is_empty(), "{}", key.name);
            assert!(!key.description.contains('\n'), "{}: one line", key.name);
        }
    }

    #[test]
    fn bounds_read_as_the_refusals_say() {
        let d = between(s(1), h(24), "why");
        assert_eq!(d.describe().as_deref(), Some("1s to 1d (why)"));
        let refusal = |b: Bounds, v: serde_json::Value| b.refusal(&v);
        assert_eq!(
            refusal(d, "1ms".into()).as_deref(),
            Some("must be at least 1s, found 1ms (why)")
        );
        assert_eq!(
            refusal(d, "24h500ms".into()).as_deref(),
            Some("must be at most 1d, found 1d0.5s (why)")
        );
        assert_eq!(refusal(d, 60.into()), None);
        let n = Bounds::Integer { min: 1, max: 256 };
        assert_eq!(n.describe().as_deref(), Some("1 to 256"));
        assert_eq!(
            refusal(n, 0.into()).as_deref(),
            Some("must be at least 1, found 0")
        );
        assert_eq!(
            refusal(n, 257.into()).as_deref(),
            Some("must be at most 256, found 257")
        );
        assert_eq!(
            between(s(0), FOREVER, "").describe(),
            None,
            "no bound at all"
        );
    }
}
