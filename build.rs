//! Records the commit `gt` is built from, for the daemon's `gt_build_info`
//! metric (docs/monitoring.md).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    // A build from a source tarball has no git: its packager can say.
    println!("cargo:rerun-if-env-changed=GT_BUILD_COMMIT");
    let commit = std::env::var("GT_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=GT_BUILD_COMMIT={commit}");
    // A commit or a checkout moves HEAD or appends to its reflog; watching
    // only these keeps the script from running on every source change.
    for file in ["HEAD", "logs/HEAD"] {
        if let Some(path) = git(&["rev-parse", "--git-path", file]) {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}
