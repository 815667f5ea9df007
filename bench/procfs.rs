//! Readings from /proc: CPU times, memory, context switches, machine facts.

use std::path::Path;
use std::process::Command;

/// CPU times of a process in clock ticks (`/proc/<pid>/stat` fields 14–17).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    pub utime: u64,
    pub stime: u64,
    pub cutime: u64,
    pub cstime: u64,
}

pub fn cpu_times(pid: i32) -> Option<CpuTimes> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: skip past
    // the last ')'. What follows starts at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(CpuTimes {
        utime: field(14)?,
        stime: field(15)?,
        cutime: field(16)?,
        cstime: field(17)?,
    })
}

/// A `kB` line of `/proc/<pid>/status`, such as `VmHWM` or `VmRSS`, in KiB.
pub fn status_kib(pid: i32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field(&status, key)
}

fn status_field(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Context switches (voluntary + involuntary) summed over the live threads of
/// a process: each is a wake-up, so their rate shows busy polling.
pub fn context_switches(pid: i32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .map(|status| {
            status_field(&status, "voluntary_ctxt_switches").unwrap_or(0)
                + status_field(&status, "nonvoluntary_ctxt_switches").unwrap_or(0)
        })
        .sum()
}

/// Number of live threads of a process.
pub fn threads(pid: i32) -> Option<u64> {
    status_kib(pid, "Threads")
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// The filesystem type of the mount holding `dir` (from /proc/mounts; the
/// longest mount point that is a prefix of the canonical path).
pub fn fs_type(dir: &Path) -> String {
    let Ok(dir) = dir.canonicalize() else {
        return "?".into();
    };
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let mut parts = line.split_whitespace();
        let (Some(_dev), Some(mnt), Some(fstype)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let mnt = mnt.replace("\\040", " ");
        if dir.starts_with(&mnt) && best.as_ref().is_none_or(|(len, _)| mnt.len() >= *len) {
            best = Some((mnt.len(), fstype.to_string()));
        }
    }
    best.map(|(_, t)| t).unwrap_or_else(|| "?".into())
}

fn first_line_with(path: &str, prefix: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// The commit this bench was built from, short, marked when the work tree
/// has uncommitted changes; `?` outside a git checkout.
pub fn commit() -> String {
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .is_some_and(|o| !o.stdout.is_empty());
    match commit {
        Some(c) if dirty => format!("{c} (with uncommitted changes)"),
        Some(c) => c,
        None => "?".into(),
    }
}

/// CPU time of all live threads of `pid`, in seconds, from their
/// schedstat (nanoseconds on a CPU): finer than the 10 ms ticks of
/// /proc/PID/stat.
#[allow(dead_code)] // the daemon bench reads clock ticks
pub fn threads_cpu(pid: i32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum::<u64>() as f64
        / 1e9
}

/// The lines a one-binary bench's report starts with: the command it was
/// run with, then [`machine_info`].
#[allow(dead_code)] // the daemon bench compares several binaries
pub fn report_head(bench: &str, gt: crate::binary::GtBin, how_run: &str) -> Vec<String> {
    let given: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let given = if given.is_empty() {
        String::new()
    } else {
        format!(" -- {}", given.join(" "))
    };
    let mut lines = vec![format!("Command: `cargo bench --bench {bench}{given}`\n")];
    lines.extend(machine_info(&[gt], how_run));
    lines
}

/// Lines describing the machine and each binary (`how_run` follows its
/// name: how the bench runs it), for the report.
pub fn machine_info(gts: &[crate::binary::GtBin], how_run: &str) -> Vec<String> {
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let cpu = first_line_with("/proc/cpuinfo", "model name").unwrap_or_else(|| "?".into());
    let mem = first_line_with("/proc/meminfo", "MemTotal")
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "?".into());
    let queue = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into());
    let dirty = [
        "dirty_background_ratio",
        "dirty_ratio",
        "dirty_expire_centisecs",
    ]
    .map(|k| {
        let v = std::fs::read_to_string(format!("/proc/sys/vm/{k}"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into());
        format!("{k} {v}")
    })
    .join(", ");
    let mut lines = vec![
        format!("- CPU: {cpu}, {nproc} cores (nproc); memory {mem}"),
        format!("- load average at start: {load} (other work on the machine skews the figures, ext4 most)"),
        format!("- kernel: Linux {kernel}; inotify max_queued_events {queue}; vm {dirty}"),
    ];
    for gt in gts {
        let version = Command::new(&gt.path)
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "?".into());
        let what = if gt.built {
            format!("commit {}, release build (the bench's own)", commit())
        } else {
            format!("`{}`", gt.path.display())
        };
        lines.push(format!(
            "- daemon{}: `{version}`, {what}{how_run}",
            if gts.len() > 1 {
                format!(" \"{}\"", gt.label)
            } else {
                String::new()
            }
        ));
    }
    lines.push(format!(
        "- date: {}",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    ));
    lines
}

/// The thread of process `pid` named `name` (its `comm`), if there is one.
pub fn thread_named(pid: i32, name: &str) -> Option<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .find(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })?
        .file_name()
        .to_str()?
        .parse()
        .ok()
}

/// The scheduler state of a thread (`/proc/PID/task/TID/stat` field 3):
/// `R` running, `S` sleeping, `D` waiting in the kernel uninterruptibly
/// (for the disk, say).
pub fn thread_state(pid: i32, tid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}
