//! A data file's path under `shared/` as it comes from outside deploy's own hands (a replica's
//! manifest, a snapshot's listing, the databases found on disk), checked once before anything
//! is written there: relative, inside `shared/`, plain characters ([`SharedRel::parse`]); and
//! nothing on the way a symbolic link when it is written ([`SharedRel::for_writing`]). The app
//! runs as the node user and can put a link where its database was: deploy never writes
//! through one.

use anyhow::{bail, Context, Result};
use std::path::{Component, Path, PathBuf};

/// The files SQLite keeps beside a database, written when it is opened.
const SIDE_FILES: &[&str] = &["-wal", "-shm", "-journal"];

/// A relative path inside `shared/` (e.g. `data/app.db`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SharedRel(String);

impl SharedRel {
    /// Checks a path from outside: relative, every part a plain name (no `..`, `.`, empty part or
    /// leading `/`), no control character or backslash. Pure.
    pub fn parse(text: &str) -> std::result::Result<SharedRel, String> {
        let bad = |why: &str| Err(format!("`{}` {why}", text.escape_debug()));
        if text.is_empty() {
            return bad("is empty");
        }
        if let Some(c) = text.chars().find(|c| c.is_control() || *c == '\\') {
            return bad(&format!("contains {c:?}"));
        }
        if text.starts_with('/') {
            return bad("is an absolute path: only paths inside shared/ are taken");
        }
        if text.ends_with('/') || text.contains("//") {
            return bad("has an empty part");
        }
        if !Path::new(text)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        {
            return bad("leaves shared/ or names a directory itself (`..` or `.`)");
        }
        Ok(SharedRel(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the file under `shared` may be replaced by a database, checked without changing
    /// anything: no directory on the way a symbolic link or not a directory, and the file
    /// itself missing, a symbolic link (replaced when written), or a database already (its
    /// header, or its data in a `-wal`); never another kind of file (a FIFO, a device) or a
    /// file of something else (`.env`, an upload), which no snapshot would keep.
    pub fn check_target(&self, shared: &Path) -> Result<()> {
        let file = self.walk(shared, false)?;
        let Ok(m) = std::fs::symlink_metadata(&file) else {
            return Ok(());
        };
        if m.file_type().is_symlink() {
            return Ok(());
        }
        if !m.is_file() {
            bail!(
                "{} is not a regular file: no database is put there; nothing was changed",
                file.display()
            );
        }
        if m.len() > 0 && !crate::node::snapshot::has_data(&file) {
            bail!(
                "{} is not an SQLite database, and a database was to replace it: nothing was \
                 changed (a replica names only databases)",
                file.display()
            );
        }
        Ok(())
    }

    /// The file under `shared`, made ready to be written: no directory on the way (`shared`
    /// itself included) is a symbolic link or anything but a directory (refused, naming it);
    /// a link at the file itself or at SQLite's files beside it is removed (what it points at
    /// is left alone) and returned, so the caller can say so. Missing directories are made.
    pub fn for_writing(&self, shared: &Path) -> Result<(PathBuf, Vec<PathBuf>)> {
        let file = self.walk(shared, true)?;
        let (dir, name) = (
            file.parent().expect("under shared").to_path_buf(),
            file.file_name()
                .expect("a name")
                .to_string_lossy()
                .into_owned(),
        );
        let mut removed = Vec::new();
        for side in std::iter::once("").chain(SIDE_FILES.iter().copied()) {
            let p = dir.join(format!("{name}{side}"));
            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
                std::fs::remove_file(&p)
                    .with_context(|| format!("cannot remove the symbolic link {}", p.display()))?;
                removed.push(p);
            }
        }
        Ok((file, removed))
    }
}

impl SharedRel {
    /// The file's path under `shared`, every directory on the way checked (none a symbolic link
    /// or anything but a directory); a missing one made when `make`, else left missing.
    fn walk(&self, shared: &Path, make: bool) -> Result<PathBuf> {
        let mut dir = shared.to_path_buf();
        refuse_link_dir(&dir)?;
        let parts: Vec<&str> = self.0.split('/').collect();
        let (name, dirs) = parts.split_last().expect("a non-empty path");
        for part in dirs {
            dir.push(part);
            match std::fs::symlink_metadata(&dir) {
                Ok(_) => refuse_link_dir(&dir)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if make {
                        std::fs::create_dir(&dir)
                            .with_context(|| format!("cannot create {}", dir.display()))?;
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
            }
        }
        Ok(dir.join(name))
    }
}

impl std::fmt::Display for SharedRel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An existing directory on a data path that is a symbolic link (or not a directory): refused.
fn refuse_link_dir(dir: &Path) -> Result<()> {
    let m =
        std::fs::symlink_metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if m.file_type().is_symlink() {
        bail!(
            "{} is a symbolic link (to {}): deploy writes no data through one; make it a real \
             directory (move what it points at there), then run the command again",
            dir.display(),
            std::fs::read_link(dir)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into())
        );
    }
    if !m.is_dir() {
        bail!(
            "{} is not a directory: a data file was to be written under it",
            dir.display()
        );
    }
    Ok(())
}

/// Each of `texts` checked; the first bad one stops everything, named with `what`.
pub fn parse_all(texts: &[String], what: &str) -> Result<Vec<SharedRel>> {
    texts
        .iter()
        .map(|t| {
            SharedRel::parse(t).map_err(|e| {
                anyhow::anyhow!(
                    "{what} lists {e}: nothing was changed; only files inside shared/ are written"
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_inside_shared_are_taken() {
        for good in ["data/app.db", "app.db", "a/b/c.sqlite3", "x..y/z.db"] {
            assert!(SharedRel::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../../pwned.db",
            "data/../../x.db",
            "/home/u/.ssh/authorized_keys",
            "./app.db",
            "data//app.db",
            "data/",
            "data/app.db\n",
            "a\0b",
            "a\\b",
            "..",
        ] {
            assert!(SharedRel::parse(bad).is_err(), "{bad:?}");
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("deploy-shared-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("shared")).unwrap();
        d
    }

    #[test]
    fn a_link_on_the_way_is_refused_and_a_link_at_the_file_is_replaced() {
        let d = scratch("links");
        let shared = d.join("shared");
        let outside = d.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keys"), "precious").unwrap();

        std::os::unix::fs::symlink(&outside, shared.join("data")).unwrap();
        let rel = SharedRel::parse("data/app.db").unwrap();
        let e = rel.for_writing(&shared).unwrap_err().to_string();
        assert!(e.contains("is a symbolic link"), "{e}");

        std::fs::remove_file(shared.join("data")).unwrap();
        std::fs::create_dir(shared.join("data")).unwrap();
        std::os::unix::fs::symlink(outside.join("keys"), shared.join("data/app.db")).unwrap();
        std::os::unix::fs::symlink(outside.join("keys"), shared.join("data/app.db-wal")).unwrap();
        let (file, removed) = rel.for_writing(&shared).unwrap();
        assert_eq!(file, shared.join("data/app.db"));
        assert_eq!(removed.len(), 2);
        assert!(std::fs::symlink_metadata(&file).is_err());
        assert_eq!(
            std::fs::read_to_string(outside.join("keys")).unwrap(),
            "precious"
        );

        let (file, removed) = SharedRel::parse("new/sub/x.db")
            .unwrap()
            .for_writing(&shared)
            .unwrap();
        assert!(removed.is_empty() && file.parent().unwrap().is_dir());
        let _ = std::fs::remove_dir_all(&d);
    }
}
