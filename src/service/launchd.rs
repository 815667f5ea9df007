//! The launchd plist: `KeepAlive` on failure, stdout and stderr to the
//! town's log.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::{canonical, launchd_label, plain, scope_mark, Scope, ServiceError, NOFILE};
use crate::town::{Town, TOWN_ENV};

pub(crate) fn domain(scope: Scope) -> String {
    match scope {
        Scope::User => format!("gui/{}", rustix::process::getuid().as_raw()),
        Scope::System => "system".into(),
    }
}

/// (`sudo ` when needed, launchctl domain).
pub(crate) fn command_parts(scope: Scope) -> (&'static str, String) {
    let sudo = if scope == Scope::System && !rustix::process::geteuid().is_root() {
        "sudo "
    } else {
        ""
    };
    (sudo, domain(scope))
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The launchd plist text for `town`, running `exe`.
pub(crate) fn plist(town: &Town, exe: &Path, scope: Scope) -> Result<String, ServiceError> {
    let town = &canonical(town);
    const F: &str = "launchd plist";
    let root = plain("town path", town.root(), F)?;
    let exe = plain("gt binary path", exe, F)?;
    let log = town.log_file();
    let log = plain("log path", &log, F)?;
    let s = |v: &str| format!("<string>{}</string>", xml_escape(v));

    let mut p = String::new();
    p.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    p.push_str(
        "<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \
         \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n",
    );
    // (No "--" may appear inside an XML comment.)
    let _ = writeln!(
        p,
        "<!-- Written by gt daemon install ({}); remove it with gt daemon uninstall. -->",
        scope_mark(scope)
    );
    p.push_str("<plist version=\"1.0\">\n<dict>\n");
    let _ = writeln!(p, "\t<key>Label</key>\n\t{}", s(&launchd_label(town)));
    p.push_str("\t<key>ProgramArguments</key>\n\t<array>\n");
    for arg in [exe, "--town", root, "daemon", "run"] {
        let _ = writeln!(p, "\t\t{}", s(arg));
    }
    p.push_str("\t</array>\n");
    let _ = writeln!(p, "\t<key>WorkingDirectory</key>\n\t{}", s(root));
    p.push_str("\t<key>EnvironmentVariables</key>\n\t<dict>\n");
    let _ = writeln!(p, "\t\t<key>{TOWN_ENV}</key>\n\t\t{}", s(root));
    if let Some(path) = std::env::var_os("PATH").and_then(|p| p.into_string().ok()) {
        if !path.is_empty() && !path.chars().any(char::is_control) {
            let _ = writeln!(p, "\t\t<key>PATH</key>\n\t\t{}", s(&path));
        }
    }
    p.push_str("\t</dict>\n");
    if scope == Scope::System {
        if let Some(user) = std::fs::metadata(town.root())
            .ok()
            .and_then(|m| owner_name(m.uid()))
        {
            let _ = writeln!(p, "\t<key>UserName</key>\n\t{}", s(&user));
        }
    }
    p.push_str("\t<key>RunAtLoad</key>\n\t<true/>\n");
    p.push_str("\t<key>KeepAlive</key>\n\t<dict>\n\t\t<key>SuccessfulExit</key>\n\t\t<false/>\n\t</dict>\n");
    p.push_str("\t<key>ThrottleInterval</key>\n\t<integer>5</integer>\n");
    p.push_str("\t<key>ExitTimeOut</key>\n\t<integer>30</integer>\n");
    // launchd gives a job 256 descriptors unless told otherwise: little
    // room for requests, tmux calls, the ledger and the metrics endpoint.
    let _ = writeln!(
        p,
        "\t<key>SoftResourceLimits</key>\n\t<dict>\n\t\t<key>NumberOfFiles</key>\n\t\t<integer>{NOFILE}</integer>\n\t</dict>"
    );
    let _ = writeln!(p, "\t<key>StandardOutPath</key>\n\t{}", s(log));
    let _ = writeln!(p, "\t<key>StandardErrorPath</key>\n\t{}", s(log));
    p.push_str("</dict>\n</plist>\n");
    Ok(p)
}

/// The login name of a non-root `uid`, via `id -nu`.
fn owner_name(uid: u32) -> Option<String> {
    if uid == 0 {
        return None;
    }
    let out = Command::new("id")
        .args(["-nu", &uid.to_string()])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let name = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !name.is_empty()).then_some(name)
}
