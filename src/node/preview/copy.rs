//! A preview's data: a copy of its environment's `shared/`, taken while the environment runs.
//!
//! Each SQLite database is copied with SQLite's online backup API from a **read-only**
//! connection, in one step: one read transaction, so the copy is the database as one commit
//! left it; in WAL mode the environment's writers go on meanwhile (a reader never blocks them),
//! in rollback-journal mode they wait for the copy (about 2 ms per MB). Nothing is ever opened
//! for writing in the environment's directory. Litestream's state directories (`.NAME-litestream`)
//! and a database's `-wal`, `-shm` and `-journal` files are not copied (the copy has their rows);
//! `.env` (the environment's secrets) only with `preview.copy_env`; a symbolic link never (what
//! it points at may be the environment's own file). Other files are copied as they are.

use crate::sys::fsx;
use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};

/// What a copy took.
#[derive(Debug, Default, PartialEq)]
pub struct Copied {
    /// Databases, as paths under `shared/`.
    pub databases: Vec<String>,
    /// Other files.
    pub files: usize,
    /// What was left out on purpose, and why (`path: why`).
    pub skipped: Vec<String>,
}

/// Whether `name` is what Litestream keeps beside a database (`.app.db-litestream`).
fn litestream_state(name: &str) -> bool {
    name.starts_with('.') && name.ends_with("-litestream")
}

/// A database's companion file (`-wal`, `-shm`, `-journal`) when the database is beside it.
fn companion(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let Some(name) = name else {
        return false;
    };
    ["-wal", "-shm", "-journal"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .is_some_and(|db| crate::node::snapshot::has_data(&path.with_file_name(db)))
    })
}

/// Copies `src` (an environment's `shared/`) into `dst` (a new directory), as the module says
/// (not synced to disk: [`sync_tree`] once the copy is complete).
pub fn copy_shared(src: &Path, dst: &Path, copy_env: bool) -> Result<Copied> {
    let mut copied = Copied::default();
    fsx::ensure_dir(dst, 0o755)?;
    let walk = walkdir::WalkDir::new(src)
        .follow_links(false)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            !(e.file_type().is_dir() && litestream_state(&e.file_name().to_string_lossy()))
        });
    for entry in walk {
        let entry = entry.with_context(|| format!("cannot read {}", src.display()))?;
        let rel = entry
            .path()
            .strip_prefix(src)
            .expect("under src")
            .to_path_buf();
        let to = dst.join(&rel);
        let kind = entry.file_type();
        if kind.is_dir() {
            fsx::ensure_dir(&to, mode_of(entry.path())?)?;
        } else if kind.is_symlink() {
            copied
                .skipped
                .push(format!("{}: a symbolic link", rel.display()));
        } else if !kind.is_file() {
            copied
                .skipped
                .push(format!("{}: not a regular file", rel.display()));
        } else if rel == Path::new(".env") && !copy_env {
            copied
                .skipped
                .push(".env: the environment's secrets (preview.copy_env)".into());
        } else if companion(entry.path()) {
            continue;
        } else if crate::node::snapshot::has_data(entry.path()) {
            copy_database(entry.path(), &to)?;
            copied.databases.push(rel.display().to_string());
        } else {
            std::fs::copy(entry.path(), &to).with_context(|| {
                format!("cannot copy {} to {}", entry.path().display(), to.display())
            })?;
            copied.files += 1;
        }
    }
    Ok(copied)
}

/// With `copy_env`, the environment's `.env` (in `src`, its `shared/`) into `dst` (what a
/// restore from the replica, which holds databases only, takes of the rest).
pub fn copy_env_file(src: &Path, dst: &Path, copy_env: bool) -> Result<()> {
    let env = src.join(".env");
    // Never through a symbolic link (what it points at may be anything of the environment's).
    let regular = std::fs::symlink_metadata(&env).is_ok_and(|m| m.is_file());
    if !copy_env || !regular {
        return Ok(());
    }
    fsx::ensure_dir(dst, 0o755)?;
    std::fs::copy(&env, dst.join(".env"))
        .with_context(|| format!("cannot copy {}", env.display()))?;
    Ok(())
}

fn mode_of(path: &Path) -> Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o7777)
}

/// One database, from a read-only connection in one backup step, into a new file in the
/// source's journal mode, with the source's permissions.
pub fn copy_database(src: &Path, dst: &Path) -> Result<()> {
    let from = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open the database {} to read it", src.display()))?;
    from.busy_timeout(std::time::Duration::from_secs(10))?;
    let mode: String = from.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    let _ = std::fs::remove_file(dst);
    let mut to = Connection::open(dst)?;
    to.execute_batch("PRAGMA synchronous=OFF; PRAGMA journal_mode=OFF;")?;
    rusqlite::backup::Backup::new(&from, &mut to)
        .and_then(|b| b.run_to_completion(i32::MAX, std::time::Duration::ZERO, None))
        .with_context(|| format!("cannot copy the database {}", src.display()))?;
    drop(from);
    let mode = match mode.as_str() {
        "wal" => "WAL",
        _ => "DELETE",
    };
    let _: String = to.query_row(&format!("PRAGMA journal_mode={mode}"), [], |r| r.get(0))?;
    drop(to);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(mode_of(src)?))?;
    Ok(())
}

/// Every file and directory under `dir` on disk.
pub fn sync_tree(dir: &Path) -> Result<()> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for e in walkdir::WalkDir::new(dir).follow_links(false) {
        let e = e?;
        if e.file_type().is_file() {
            std::fs::File::open(e.path())?.sync_all()?;
        } else if e.file_type().is_dir() {
            dirs.push(e.into_path());
        }
    }
    dirs.iter().try_for_each(|d| fsx::sync_dir(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_has_every_committed_row_and_nothing_of_the_environments_own() {
        let d = std::env::temp_dir().join(format!("deploy-preview-copy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let src = d.join("shared");
        std::fs::create_dir_all(src.join("data/.app.db-litestream/ltx")).unwrap();
        std::fs::write(src.join(".env"), "TOKEN=secret\n").unwrap();
        std::fs::write(src.join("data/notes.txt"), "notes").unwrap();
        std::fs::write(src.join("data/.app.db-litestream/ltx/0001.ltx"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("data/link")).unwrap();
        // A writer in WAL mode, its rows still in the -wal, and a database closed cleanly.
        let writer = Connection::open(src.join("data/app.db")).unwrap();
        writer.pragma_update(None, "journal_mode", "WAL").unwrap();
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        writer.execute("CREATE TABLE t (x)", []).unwrap();
        for i in 0..50 {
            writer.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
        }
        let other = Connection::open(src.join("other.db")).unwrap();
        other.pragma_update(None, "journal_mode", "WAL").unwrap();
        other.execute("CREATE TABLE u (y)", []).unwrap();
        drop(other);
        // A write transaction of the environment's stays open while the copy reads.
        writer
            .execute_batch("BEGIN; INSERT INTO t VALUES (999);")
            .unwrap();
        let dst = d.join("copy");
        let c = copy_shared(&src, &dst, false).unwrap();
        writer.execute_batch("COMMIT").unwrap();
        assert_eq!(c.databases, ["data/app.db", "other.db"]);
        assert_eq!(c.files, 1);
        assert_eq!(c.skipped.len(), 2, "{:?}", c.skipped);
        let rows = |p: &Path| -> i64 {
            Connection::open(p)
                .unwrap()
                .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(rows(&dst.join("data/app.db")), 50, "committed rows only");
        let mode: String = Connection::open(dst.join("data/app.db"))
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert!(!dst.join(".env").exists());
        assert!(!dst.join("data/.app.db-litestream").exists());
        assert!(!dst.join("data/link").exists());
        assert!(!dst.join("data/app.db-wal").exists());
        assert_eq!(
            rows(&src.join("data/app.db")),
            51,
            "the environment's own untouched"
        );
        let again = copy_shared(&src, &d.join("copy2"), true).unwrap();
        assert!(d.join("copy2/.env").exists());
        assert_eq!(again.skipped.len(), 1);
        std::fs::remove_dir_all(d).unwrap();
    }
}
