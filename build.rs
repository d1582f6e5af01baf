//! Records the git commit the binary is built from, for `bunq-ipsync --version`.
//!
//! `BUNQ_IPSYNC_GIT_COMMIT` wins (a container build has no `.git`: the Containerfile passes its
//! `REVISION` build arg); else `git rev-parse --short=12 HEAD` in the source tree; else nothing,
//! and `--version` prints just the version. Sets `BUNQ_IPSYNC_COMMIT` (empty when unknown) and
//! `BUNQ_IPSYNC_VERSION` (`0.1.0` or `0.1.0 (commit 0123456789ab)`) for the crate.

use std::path::PathBuf;
use std::process::Command;

const OVERRIDE: &str = "BUNQ_IPSYNC_GIT_COMMIT";

fn main() {
    println!("cargo:rerun-if-env-changed={OVERRIDE}");
    println!("cargo:rerun-if-changed=build.rs");
    let commit = match std::env::var(OVERRIDE) {
        Ok(value) => value.trim().to_owned(),
        Err(_) => from_git().unwrap_or_default(),
    };
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let line = if commit.is_empty() {
        version
    } else {
        format!("{version} (commit {commit})")
    };
    println!("cargo:rustc-env=BUNQ_IPSYNC_COMMIT={commit}");
    println!("cargo:rustc-env=BUNQ_IPSYNC_VERSION={line}");
}

/// The short commit of HEAD, and rebuild triggers on the files that move when HEAD does.
fn from_git() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let output = Command::new("git").args(args).output().ok()?;
        let text = String::from_utf8(output.stdout).ok()?;
        (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    // HEAD lives in the (worktree's) git dir, the branch refs in the common dir.
    // Only files that exist: cargo reruns the script on every build for a missing one.
    let watch = |path: PathBuf| {
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    };
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        watch(PathBuf::from(dir).join("HEAD"));
    }
    if let (Some(common), Some(head_ref)) = (
        git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]),
        git(&["symbolic-ref", "-q", "HEAD"]),
    ) {
        let common = PathBuf::from(common);
        watch(common.join(head_ref));
        watch(common.join("packed-refs"));
    }
    Some(commit)
}
