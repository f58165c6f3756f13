//! A release's version from git, when none is given: `git describe --always` (a tag and how far
//! past it, or the short commit id). A tree with uncommitted changes to tracked files is
//! refused unless `--allow-dirty`, which makes the version unique: `-dirty-<UTC time>`.

use anyhow::{bail, Context, Result};
use std::path::Path;

fn git(dir: &Path, args: &[&str]) -> Result<(bool, String)> {
    let out = duct::cmd("git", args)
        .dir(dir)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .context("cannot run git: name the version (`deploy release VERSION`)")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

/// The version for the tree in `dir`.
pub fn version(dir: &Path, allow_dirty: bool) -> Result<String> {
    let (ok, described) = git(dir, &["describe", "--always"])?;
    if !ok || described.is_empty() {
        bail!(
            "no version was given and {} is not in a git repository with a commit: name one, \
             e.g. `deploy release v1.0.0`",
            dir.display()
        );
    }
    let (_, changes) = git(dir, &["status", "--porcelain", "--untracked-files=no"])?;
    if changes.is_empty() {
        return Ok(described);
    }
    if !allow_dirty {
        bail!(
            "the git tree in {} has uncommitted changes ({}): commit them, name a version, or \
             pass --allow-dirty (the version is then {described}-dirty-<UTC time>)",
            dir.display(),
            changes.lines().count()
        );
    }
    Ok(dirty_version(&described, std::time::SystemTime::now()))
}

/// `v1.2-dirty-20261124T045012`: two dirty builds never share a version. Pure.
pub fn dirty_version(described: &str, at: std::time::SystemTime) -> String {
    let stamp: String = humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    format!("{described}-dirty-{stamp}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dirty_version_is_unique_and_valid() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        let v = dirty_version("v1.2-3-gabc123", at);
        assert!(v.starts_with("v1.2-3-gabc123-dirty-2026"), "{v}");
        crate::version::check(&v).unwrap();
    }
}
