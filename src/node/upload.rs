//! Putting a release's files on the node: rsync into `releases/.incoming-VERSION`, hard-linking
//! unchanged files to the current release (`--link-dest`), then linking `shared/` into it.

use crate::config::Shared;
use crate::node::layout::{Layout, RELEASE_META};
use crate::sys::{fsx, rsync};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Uploads into the incoming directory (created or resumed).
pub fn rsync_local(sources: &[PathBuf], dest: &Path, link_dest: Option<&Path>) -> Result<()> {
    fsx::ensure_dir(dest, 0o755)?;
    let link_dests: Vec<String> = link_dest
        .map(|l| l.display().to_string())
        .into_iter()
        .collect();
    let dest = dest.display().to_string();
    let args = rsync::upload_args(sources, &dest, &link_dests);
    rsync::run(args, Path::new("/"), &dest).map(|_| ())
}

/// Completes an uploaded directory: deploy's env file (`release_env`, see
/// [`unit::release_env`]), the app's variables (`vars`, see [`crate::node::appenv`]), both
/// 0600 in its `.deploy/`, and the links into `shared/`.
pub fn finish_release_dir(
    dir: &Path,
    shared: &Shared,
    release_env: &str,
    vars: Option<&str>,
) -> Result<()> {
    let meta = dir.join(RELEASE_META);
    fsx::ensure_private_dir(&meta)?;
    if let Some(vars) = vars {
        fsx::write_atomic(
            &meta.join(crate::node::appenv::FILE),
            vars.as_bytes(),
            0o600,
        )?;
    }
    fsx::write_atomic(
        &meta.join(crate::node::layout::RELEASE_ENV),
        release_env.as_bytes(),
        0o600,
    )?;
    for entry in shared.dirs.iter().chain(&shared.files) {
        let link = dir.join(entry);
        if let Some(parent) = link.parent() {
            fsx::ensure_dir(parent, 0o755)?;
        }
        match std::fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() => std::fs::remove_file(&link)?,
            Ok(_) => bail!(
                "the release contains `{entry}`, which is shared: remove it from the artifacts \
                 (shared entries live in shared/ and are linked into every release)"
            ),
            Err(_) => {}
        }
        std::os::unix::fs::symlink(Layout::shared_link_target(entry), &link)
            .with_context(|| format!("cannot link {} into shared/", link.display()))?;
    }
    let own = [".containerignore", ".dockerignore"]
        .iter()
        .find_map(|f| std::fs::read_to_string(dir.join(f)).ok());
    let entries: Vec<&str> = shared
        .dirs
        .iter()
        .chain(&shared.files)
        .map(String::as_str)
        .collect();
    fsx::write_atomic(
        &dir.join(".containerignore"),
        container_ignore(own.as_deref(), &entries).as_bytes(),
        0o644,
    )?;
    fsx::sync_dir(dir)
}

/// The build context's ignore file: the app's own rules (Podman reads only one file, so
/// replacing them would drop them), then deploy's own files and the links into `shared/`, which
/// `COPY . /app` must not put into the image (data snapshots; links that would hide the mount
/// of the data where the app looks). Pure.
pub fn container_ignore(own: Option<&str>, shared_entries: &[&str]) -> String {
    const OURS: &str = "# Added by deploy";
    // The app's rules only: what an earlier pass over this directory added is dropped.
    let own = own.map(|o| o.split(OURS).next().unwrap_or_default().trim_end());
    let mut text = own
        .filter(|o| !o.is_empty())
        .map(|o| format!("{o}\n"))
        .unwrap_or_default();
    text += OURS;
    text += ": its own files and the links into shared/ stay out of the image.\n";
    text += &format!("{RELEASE_META}\n.containerignore\n");
    for e in shared_entries {
        text += &format!("{}\n", e.trim_end_matches('/'));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_context_ignores_deploys_files_and_shared_links_and_keeps_the_apps_rules() {
        let t = container_ignore(Some("target\n*.log"), &["data", ".env"]);
        assert!(t.starts_with("target\n*.log\n"), "{t}");
        for line in [".deploy", "data", ".env"] {
            assert!(t.lines().any(|l| l == line), "{line} in {t}");
        }
        assert!(container_ignore(None, &[]).contains("\n.deploy\n"));
        assert_eq!(
            container_ignore(Some(&t), &["data", ".env"]),
            t,
            "added once"
        );
    }
}
