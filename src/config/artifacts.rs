//! The artifacts a config names, found in the project directory: each must exist, and no
//! symlink among them may point outside the project (a release is self-contained). The one
//! part of the config that reads the project's files, where the release is made (the laptop,
//! or the node-side run of a local environment).

use super::Config;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The local artifact paths, checked to exist. Trailing slashes are dropped so that rsync
/// copies a directory as itself, under its base name.
pub fn sources(config: &Config, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for a in &config.artifacts {
        let p = dir.join(a.trim_end_matches('/'));
        if std::fs::symlink_metadata(&p).is_err() {
            bail!(
                "artifact `{a}` does not exist (looked for {}): build it first, or fix `artifacts` \
                 in the config",
                p.display()
            );
        }
        out.push(p);
    }
    let project =
        std::fs::canonicalize(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    for p in &out {
        if let Some((link, target)) = escaping_symlink(&project, p)? {
            bail!(
                "{} is a symlink to {}, outside the project {}: a release must be self-contained \
                 (copy the file in, or keep it in shared/)",
                link.display(),
                target.display(),
                project.display()
            );
        }
    }
    Ok(out)
}

/// Resolves `.` and `..` without touching the file system. Pure.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Whether a symlink at `link` (inside `project`) pointing at `target` stays inside. Pure.
pub fn link_stays_inside(project: &Path, link: &Path, target: &Path) -> bool {
    let base = link.parent().unwrap_or(project);
    normalize(&base.join(target)).starts_with(project)
}

/// The first symlink under `path` (itself included) that points outside `project`.
fn escaping_symlink(project: &Path, path: &Path) -> Result<Option<(PathBuf, PathBuf)>> {
    // The artifact's own location, with its parent directories resolved.
    let path = match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)?.join(name),
        _ => path.to_path_buf(),
    };
    let meta = std::fs::symlink_metadata(&path)?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&path)?;
        if !link_stays_inside(project, &path, &target) {
            return Ok(Some((path, target)));
        }
    } else if meta.is_dir() {
        for entry in std::fs::read_dir(&path)? {
            if let Some(found) = escaping_symlink(project, &entry?.path())? {
                return Ok(Some(found));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::artifact_name;

    #[test]
    fn symlinks_must_stay_in_the_project() {
        let project = Path::new("/p");
        assert!(link_stays_inside(
            project,
            Path::new("/p/assets/a"),
            Path::new("b")
        ));
        assert!(link_stays_inside(
            project,
            Path::new("/p/assets/a"),
            Path::new("../dist/x")
        ));
        assert!(!link_stays_inside(
            project,
            Path::new("/p/assets/a"),
            Path::new("../../etc/passwd")
        ));
        assert!(!link_stays_inside(
            project,
            Path::new("/p/assets/a"),
            Path::new("/etc/passwd")
        ));
        assert!(!link_stays_inside(
            project,
            Path::new("/p/a"),
            Path::new("../p2/x")
        ));
        assert_eq!(normalize(Path::new("/p/a/../b/./c")), Path::new("/p/b/c"));
    }

    #[test]
    fn names_are_base_names() {
        assert_eq!(artifact_name("target/release/app").unwrap(), "app");
        assert_eq!(artifact_name("assets/").unwrap(), "assets");
    }
}
