//! Every process of an agent, and the leftovers of agents.
//!
//! The daemon starts an agent with this town's `GT_TOWN_ROOT` and its
//! `GT_ROLE` in its session's environment (`tmux new-session -e`), and
//! everything the agent runs inherits them, whatever session or process
//! group it moves to and whoever it is re-parented to. So the processes of
//! the agent whose tmux session is S are:
//!
//! - its panes' processes and all their descendants;
//! - everything in a pane's session or process group (tmux makes a pane's
//!   process the leader of both): the children of a pane whose process
//!   has exited, which init has adopted, still carry its session id (a PID
//!   is not reused while it names a session or a group, so none of them is
//!   a stranger; a dead pane's PID that is alive again is, and is skipped);
//! - anything carrying this town's `GT_TOWN_ROOT` and a `GT_ROLE` that
//!   names the agent (any spelling: `mayor`, `mayor/`), which finds
//!   children that moved to a session of their own and lost their parent;
//!
//! and never this process, its ancestors or descendants, a tmux server, or
//! anything in the tree, session or process group of another session's live
//! pane, whatever role it carries.
//!
//! A leftover is a process carrying this town's marks that is in no live
//! pane at all: its agent has no live pane (after a daemon crash, or a
//! tmux server killed under agents that ignore SIGHUP), or it has left
//! its agent's pane for good.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{ancestors, descendants, end_all, env_var, environ, processes, Ended, Processes, Stat};
use crate::request::Agent;
use crate::town::TOWN_ENV;

/// The variable naming the agent a process belongs to.
pub(crate) const ROLE_ENV: &str = "GT_ROLE";

/// The longest `GT_ROLE` read: an agent's name is a rig name and a role.
const MAX_ROLE: usize = 256;

/// A pane of the daemon's tmux server: its session, its process, and
/// whether that process has exited (a pane kept after it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pane {
    pub(crate) session: String,
    pub(crate) pid: u32,
    pub(crate) dead: bool,
}

/// Whose agent a process says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mark {
    /// The agent's tmux session.
    session: String,
    /// `GT_ROLE` as the process carries it.
    role: String,
}

/// Why a leftover is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Reason {
    /// Its agent has no live pane: no session, or a dead pane.
    NoLivePane,
    /// Its agent runs, but it is outside that agent's live pane.
    OutsideItsPane,
}

impl Reason {
    pub(crate) const ALL: [Reason; 2] = [Reason::NoLivePane, Reason::OutsideItsPane];

    /// As a metric label and in `status --json`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::NoLivePane => "no_live_pane",
            Reason::OutsideItsPane => "outside_its_pane",
        }
    }

    /// In words, for a person.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Reason::NoLivePane => "its agent has no live pane",
            Reason::OutsideItsPane => "outside its agent's live pane",
        }
    }
}

/// A process carrying this town's marks in no live pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Leftover {
    pub(crate) pid: u32,
    /// When it started (clock ticks after boot): with the PID, it names
    /// this process and no later one that gets its PID.
    pub(crate) start: u64,
    /// `GT_ROLE` as it carries it (a valid agent name).
    pub(crate) role: String,
    /// Its agent's tmux session.
    pub(crate) session: String,
    pub(crate) reason: Reason,
    pub(crate) rss_bytes: u64,
}

/// One look at every process: which carry this town's marks, and which
/// are this process's own kin.
#[derive(Debug)]
pub(crate) struct Census {
    all: Vec<Stat>,
    complete: bool,
    marks: HashMap<u32, Mark>,
    /// This process, its ancestors and its descendants: never ended.
    kin: HashSet<u32>,
}

impl Census {
    /// Every process `found` (read from `/proc` before `panes` were listed:
    /// an agent started in between then has a pane and no processes yet,
    /// never processes and no pane), and the marks of each that no live
    /// pane holds. A process in a live pane's tree, session or group is
    /// that pane's agent's whatever it carries, so its environment is not
    /// read: in a town of busy agents that is most of the host.
    pub(crate) fn take(found: Processes, town_root: &Path, panes: &[Pane]) -> Census {
        let town = TownRoot::new(town_root);
        let mut census = Census::of(found.all, found.complete, HashMap::new());
        let mut held: HashSet<u32> = census.owners(panes).into_keys().collect();
        held.extend(census.servers(panes));
        held.extend(&census.kin);
        census.marks = census
            .all
            .iter()
            .filter(|p| !held.contains(&p.pid))
            .filter_map(|p| Some((p.pid, mark(p.pid, &town)?)))
            .collect();
        census
    }

    fn of(all: Vec<Stat>, complete: bool, marks: HashMap<u32, Mark>) -> Census {
        let me = std::process::id();
        let mut kin: HashSet<u32> = ancestors(&all, me).into_iter().collect();
        kin.extend(descendants(&all, &[me]));
        Census {
            all,
            complete,
            marks,
            kin,
        }
    }

    /// Also spares `pid` and its descendants (for a look made by another
    /// process than the daemon: the daemon, started from an agent's shell,
    /// carries that agent's marks and is no leftover).
    /// `0` (no daemon) spares nothing.
    pub(crate) fn sparing(mut self, pid: u32) -> Census {
        if pid != 0 {
            let theirs = descendants(&self.all, &[pid]);
            self.kin.extend(theirs);
        }
        self
    }

    /// False when there were more processes than one look reads.
    pub(crate) fn complete(&self) -> bool {
        self.complete
    }

    /// Every process of the agent whose tmux session is `session` (see
    /// the module's description), given every pane of the tmux server.
    pub(crate) fn of_agent(&self, session: &str, panes: &[Pane]) -> Vec<u32> {
        let owners = self.owners(panes);
        let servers = self.servers(panes);
        let spare = |pid: &u32| {
            self.kin.contains(pid)
                || servers.contains(pid)
                || owners.get(pid).is_some_and(|owner| *owner != session)
        };
        let own: Vec<&Pane> = panes.iter().filter(|p| p.session == session).collect();
        let leaders: HashSet<u32> = own
            .iter()
            .filter(|p| !p.dead || !self.all.iter().any(|s| s.pid == p.pid))
            .map(|p| p.pid)
            .collect();
        let mut roots: Vec<u32> = own.iter().filter(|p| !p.dead).map(|p| p.pid).collect();
        roots.extend(
            self.all
                .iter()
                .filter(|p| {
                    leaders.contains(&p.session)
                        || leaders.contains(&p.group)
                        || self.marks.get(&p.pid).is_some_and(|m| m.session == session)
                })
                .map(|p| p.pid),
        );
        roots.retain(|p| !spare(p));
        let mut found = descendants(&self.all, &roots);
        found.retain(|p| !spare(p));
        found
    }

    /// The processes carrying this town's marks that are in no live pane,
    /// by PID; those of agents `skip` names (a request is ending or
    /// starting them right now) are left out.
    pub(crate) fn leftovers(&self, panes: &[Pane], skip: impl Fn(&str) -> bool) -> Vec<Leftover> {
        let owners = self.owners(panes);
        let servers = self.servers(panes);
        let live: HashSet<&str> = panes
            .iter()
            .filter(|p| !p.dead)
            .map(|p| p.session.as_str())
            .collect();
        let page = page_size();
        let mut found: Vec<Leftover> = self
            .all
            .iter()
            .filter_map(|p| {
                let mark = self.marks.get(&p.pid)?;
                if self.kin.contains(&p.pid)
                    || servers.contains(&p.pid)
                    || owners.contains_key(&p.pid)
                    || skip(&mark.session)
                {
                    return None;
                }
                Some(Leftover {
                    pid: p.pid,
                    start: p.start,
                    role: mark.role.clone(),
                    session: mark.session.clone(),
                    reason: if live.contains(mark.session.as_str()) {
                        Reason::OutsideItsPane
                    } else {
                        Reason::NoLivePane
                    },
                    rss_bytes: p.rss_pages.saturating_mul(page),
                })
            })
            .collect();
        found.sort_by_key(|l| l.pid);
        found
    }

    /// Process → the session of the live pane whose tree, session or
    /// process group it is in.
    fn owners<'a>(&self, panes: &'a [Pane]) -> HashMap<u32, &'a str> {
        let mut owners = HashMap::new();
        for pane in panes.iter().filter(|p| !p.dead) {
            let mut roots = vec![pane.pid];
            roots.extend(
                self.all
                    .iter()
                    .filter(|p| p.session == pane.pid || p.group == pane.pid)
                    .map(|p| p.pid),
            );
            for pid in descendants(&self.all, &roots) {
                owners.entry(pid).or_insert(pane.session.as_str());
            }
        }
        owners
    }

    /// The tmux servers: the parents of live panes.
    fn servers(&self, panes: &[Pane]) -> HashSet<u32> {
        let live: HashSet<u32> = panes.iter().filter(|p| !p.dead).map(|p| p.pid).collect();
        self.all
            .iter()
            .filter(|p| live.contains(&p.pid))
            .map(|p| p.ppid)
            .collect()
    }
}

/// This town's root as `GT_TOWN_ROOT` may spell it: as the daemon was
/// given it, or resolved; `.` components, repeated and trailing slashes
/// aside. Only our own root is resolved: a value another process carries
/// is compared as text and never looked up, since a path on a mount that
/// does not answer (a dead NFS server, a hung FUSE) would block the look,
/// and with it the heartbeat and every status.
struct TownRoot {
    spellings: Vec<PathBuf>,
}

impl TownRoot {
    fn new(root: &Path) -> TownRoot {
        let mut spellings = vec![lexical(root)];
        if let Ok(resolved) = std::fs::canonicalize(root) {
            spellings.push(lexical(&resolved));
        }
        TownRoot { spellings }
    }

    fn is(&self, value: &[u8]) -> bool {
        let path = lexical(Path::new(OsStr::from_bytes(value)));
        self.spellings.contains(&path)
    }
}

/// `path` without `.` components and extra slashes, as text alone.
fn lexical(path: &Path) -> PathBuf {
    path.components().collect()
}

/// The agent `pid` carries this town's marks for, if any.
fn mark(pid: u32, town: &TownRoot) -> Option<Mark> {
    let env = environ(pid)?;
    let role = env_var(&env, ROLE_ENV).filter(|r| r.len() <= MAX_ROLE)?;
    if !town.is(env_var(&env, TOWN_ENV)?) {
        return None;
    }
    let role = std::str::from_utf8(role).ok()?;
    Some(Mark {
        session: Agent::parse(role).ok()?.session(),
        role: role.to_string(),
    })
}

/// Ends every process of the agent whose tmux session is `session` (see
/// the module's description), given every pane of the tmux server:
/// SIGTERM, SIGKILL to what is left after `grace`.
pub(crate) fn end_agent(town_root: &Path, session: &str, panes: &[Pane], grace: Duration) -> Ended {
    end_all(
        || Census::take(processes(), town_root, panes).of_agent(session, panes),
        grace,
        |_| {},
    )
}

/// Ends `leftovers` and everything under them, as long as each is still
/// the process that was found (same PID, same start): SIGTERM, SIGKILL
/// after `grace`.
pub(crate) fn end_leftovers(leftovers: &[Leftover], grace: Duration) -> Ended {
    let wanted: HashSet<(u32, u64)> = leftovers.iter().map(|l| (l.pid, l.start)).collect();
    end_all(
        || {
            let census = Census::of(processes().all, true, HashMap::new());
            let roots: Vec<u32> = census
                .all
                .iter()
                .filter(|p| wanted.contains(&(p.pid, p.start)))
                .map(|p| p.pid)
                .collect();
            let mut found = descendants(&census.all, &roots);
            found.retain(|p| !census.kin.contains(p));
            found
        },
        grace,
        |_| {},
    )
}

fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: u32, ppid: u32, group: u32, session: u32) -> Stat {
        Stat {
            pid,
            ppid,
            group,
            session,
            start: u64::from(pid) * 10,
            rss_pages: 2,
        }
    }

    fn mayor() -> Mark {
        Mark {
            session: "gt-mayor".into(),
            role: "mayor".into(),
        }
    }

    fn pane(session: &str, pid: u32, dead: bool) -> Pane {
        Pane {
            session: session.into(),
            pid,
            dead,
        }
    }

    /// A made-up host: PIDs that need not exist, so this is the
    /// classification alone.
    fn host(extra: &[Stat]) -> Census {
        let mut all = vec![
            stat(900, 1, 900, 900),   // the tmux server, carrying the marks
            stat(110, 1, 100, 100),   // gt-mayor's dead pane's child, adopted
            stat(120, 1, 100, 100),   // another, carrying no marks
            stat(200, 900, 200, 200), // gt-gastown-witness's live pane
            stat(210, 200, 200, 200), // its child carrying the Mayor's role
            stat(300, 1, 300, 300),   // a Mayor's process in a session of its own
            stat(310, 300, 300, 300), // its child, carrying no marks
            stat(400, 1, 400, 400),   // a stranger
        ];
        all.extend_from_slice(extra);
        let mut marks = HashMap::new();
        for pid in [900, 110, 210, 300] {
            marks.insert(pid, mayor());
        }
        marks.insert(
            200,
            Mark {
                session: "gt-gastown-witness".into(),
                role: "gastown/witness".into(),
            },
        );
        Census {
            all,
            complete: true,
            marks,
            kin: HashSet::new(),
        }
    }

    /// gt-mayor's pane is dead (its process, 100, gone); the Witness runs.
    fn panes() -> [Pane; 2] {
        [
            pane("gt-mayor", 100, true),
            pane("gt-gastown-witness", 200, false),
        ]
    }

    #[test]
    fn an_agents_processes_are_its_panes_sessions_and_marks_and_no_one_elses() {
        let census = host(&[]);
        assert_eq!(census.of_agent("gt-mayor", &panes()), [110, 120, 300, 310]);
        assert_eq!(
            census.of_agent("gt-gastown-witness", &panes()),
            [200, 210],
            "a live pane's tree, whatever its members carry"
        );
        // The dead pane's PID alive again is a stranger's: its session is
        // not the agent's any more (110 still carries the marks).
        let reused = host(&[stat(100, 1, 100, 100)]);
        assert_eq!(reused.of_agent("gt-mayor", &panes()), [110, 300, 310]);
        let kin = Census {
            kin: HashSet::from([300]),
            ..host(&[])
        };
        assert_eq!(kin.of_agent("gt-mayor", &panes()), [110, 120]);
    }

    #[test]
    fn leftovers_are_marked_processes_in_no_live_pane() {
        let census = host(&[]);
        let found = census.leftovers(&panes(), |_| false);
        let pids: Vec<u32> = found.iter().map(|l| l.pid).collect();
        assert_eq!(pids, [110, 300], "{found:?}");
        assert!(found.iter().all(|l| l.reason == Reason::NoLivePane));
        assert!(found.iter().all(|l| l.rss_bytes == 2 * page_size()));
        assert!(census.leftovers(&panes(), |s| s == "gt-mayor").is_empty());
        // Once the Mayor runs again, they are outside its pane.
        let again = [
            pane("gt-mayor", 500, false),
            pane("gt-gastown-witness", 200, false),
        ];
        let found = host(&[stat(500, 900, 500, 500)]).leftovers(&again, |_| false);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().all(|l| l.reason == Reason::OutsideItsPane));
    }

    #[test]
    fn names_and_roots_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let town = TownRoot::new(dir.path());
        assert!(town.is(dir.path().as_os_str().as_bytes()));
        let spelled = dir.path().join(".");
        assert!(town.is(spelled.as_os_str().as_bytes()), "another spelling");
        let slashed = format!("{}//", dir.path().display());
        assert!(town.is(slashed.as_bytes()), "trailing slashes");
        assert!(!town.is(b"/elsewhere"));
        // Through a link: resolved for our own root, never for a value
        // another process carries (a hung mount would block the look).
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        assert!(TownRoot::new(&link).is(dir.path().as_os_str().as_bytes()));
        assert!(!town.is(link.as_os_str().as_bytes()));
        assert_eq!(Reason::NoLivePane.as_str(), "no_live_pane");
    }

    /// Kills its PID when dropped, however the test ends.
    struct Orphan(u32);

    impl Drop for Orphan {
        fn drop(&mut self) {
            crate::process::signal(self.0, rustix::process::Signal::KILL);
        }
    }

    /// Starts `sleep 60` carrying `role` and `town`, orphaned at once (its
    /// parent exits), as an agent's child left behind is.
    fn orphan(role: &str, town: &Path) -> Orphan {
        let out = std::process::Command::new("sh")
            .args(["-c", "sleep 60 </dev/null >/dev/null 2>&1 & echo $!"])
            .env(ROLE_ENV, role)
            .env(TOWN_ENV, town)
            .output()
            .unwrap();
        Orphan(String::from_utf8_lossy(&out.stdout).trim().parse().unwrap())
    }

    #[test]
    fn a_live_process_carrying_the_marks_is_found_and_ended() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let mine = orphan("mayor/", &root);
        let other_town = orphan("mayor", Path::new("/nowhere"));
        let not_an_agent = orphan("gastown/crew/max", &root);
        let census = Census::take(processes(), &root, &[]);
        assert!(census.complete());
        let found = census.leftovers(&[], |_| false);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].pid, found[0].role.as_str()), (mine.0, "mayor/"));
        assert_eq!(found[0].session, "gt-mayor");
        assert!(found[0].rss_bytes > 0);
        assert_eq!(census.of_agent("gt-mayor", &[]), [mine.0]);
        assert!(census.of_agent("gt-deacon", &[]).is_empty());
        // Held by another agent's live pane: its marks are not even read.
        let held = [pane("gt-gastown-witness", mine.0, false)];
        let census = Census::take(processes(), &root, &held);
        assert!(!census.marks.contains_key(&mine.0));
        assert!(census.of_agent("gt-mayor", &held).is_empty());
        assert!(census.leftovers(&held, |_| false).is_empty());
        let ended = end_leftovers(&found, Duration::from_secs(5));
        assert_eq!(ended.ended, 1, "{ended:?}");
        assert!(!crate::process::alive(mine.0));
        assert!(crate::process::alive(other_town.0) && crate::process::alive(not_an_agent.0));
    }

    #[test]
    fn our_own_kin_is_never_an_agents() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .env(ROLE_ENV, "mayor")
            .env(TOWN_ENV, &root)
            .spawn()
            .unwrap();
        let look = Census::take(processes(), &root, &[]);
        let kin = look.kin.len();
        assert_eq!(look.sparing(0).kin.len(), kin, "0 is no daemon");
        let census = Census::take(processes(), &root, &[]);
        let (found, of_agent) = (
            census.leftovers(&[], |_| false),
            census.of_agent("gt-mayor", &[]),
        );
        let _ = child.kill();
        let _ = child.wait();
        assert!(census.kin.contains(&child.id()));
        assert!(
            found.is_empty() && of_agent.is_empty(),
            "{found:?} {of_agent:?}"
        );
    }
}
