//! The migration's doers: moving an entry (a rename on one filesystem; across filesystems a
//! copy, fsync, byte-for-byte and SQLite verification, then the swap), and checking databases.

use super::{SharedMove, Stage};
use crate::node::snapshot;
use crate::sys::fsx;
use anyhow::{bail, Context, Result};
use rusqlite::{Connection, OpenFlags};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Rows of every table of every SQLite database under `path` (a directory or one file), after
/// `PRAGMA integrity_check`. Opening a database applies its `-wal`, so rows only there count.
pub fn check_databases(path: &Path) -> Result<Rows> {
    let dbs: Vec<PathBuf> = if path.is_dir() {
        snapshot::databases(path)?
            .into_iter()
            .map(|rel| path.join(rel))
            .collect()
    } else if snapshot::is_sqlite(path) {
        vec![path.to_path_buf()]
    } else {
        Vec::new()
    };
    let mut all = BTreeMap::new();
    for db in dbs {
        let rel = db.strip_prefix(path).unwrap_or(Path::new("")).to_path_buf();
        all.insert(rel, check_database(&db)?);
    }
    Ok(all)
}

fn check_database(db: &Path) -> Result<BTreeMap<String, i64>> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .with_context(|| format!("cannot open the database {}", db.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .with_context(|| format!("cannot check {}", db.display()))?;
    if ok != "ok" {
        bail!("{} fails PRAGMA integrity_check: {ok}", db.display());
    }
    let mut stmt =
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?;
    let tables: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut counts = BTreeMap::new();
    for t in tables {
        let n: i64 = conn.query_row(
            &format!("SELECT COUNT(*) FROM \"{}\"", t.replace('"', "\"\"")),
            [],
            |r| r.get(0),
        )?;
        counts.insert(t, n);
    }
    Ok(counts)
}

/// Whether a shared target is what `deploy setup` creates (an empty directory or file), which a
/// move may replace. Anything else is refused.
pub fn replaceable(target: &Path) -> bool {
    match std::fs::symlink_metadata(target) {
        Err(_) => true,
        Ok(m) if m.is_dir() => std::fs::read_dir(target)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false),
        Ok(m) if m.is_file() => m.len() == 0,
        Ok(_) => false,
    }
}

fn remove_any(path: &Path) -> Result<()> {
    let m = std::fs::symlink_metadata(path)?;
    if m.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
    .with_context(|| format!("cannot remove {}", path.display()))
}

/// Copies a tree with modes, owners, times and links (`cp -a`), then fsyncs every file and
/// directory of the copy.
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let out = crate::sys::own_group(duct::cmd!("cp", "-a", "--no-target-directory", from, to))
        .stderr_capture()
        .unchecked()
        .run()
        .context("cannot run cp")?;
    if !out.status.success() {
        bail!(
            "cannot copy {} to {}: {}",
            from.display(),
            to.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    for e in walkdir::WalkDir::new(to).contents_first(true) {
        let e = e?;
        if e.file_type().is_file() || e.file_type().is_dir() {
            std::fs::File::open(e.path())
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot fsync {}", e.path().display()))?;
        }
    }
    Ok(())
}

/// Whether two trees hold the same entries, types, modes, link targets and bytes.
pub fn same_tree(a: &Path, b: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let list = |root: &Path| -> Result<Vec<PathBuf>> {
        let mut v = Vec::new();
        for e in walkdir::WalkDir::new(root).sort_by_file_name() {
            v.push(e?.path().strip_prefix(root).expect("under").to_path_buf());
        }
        Ok(v)
    };
    let (la, lb) = (list(a)?, list(b)?);
    if la != lb {
        bail!(
            "the copy of {} has other entries than the original",
            a.display()
        );
    }
    for rel in la {
        // `rel` is empty for the roots themselves (and a file's root must not get a `/`).
        let at = |root: &Path| {
            if rel.as_os_str().is_empty() {
                root.to_path_buf()
            } else {
                root.join(&rel)
            }
        };
        let (pa, pb) = (at(a), at(b));
        let (ma, mb) = (
            std::fs::symlink_metadata(&pa)?,
            std::fs::symlink_metadata(&pb)?,
        );
        // A directory's size is the filesystem's business; a file's is its content's.
        let sized = !ma.is_dir();
        if ma.file_type() != mb.file_type()
            || ma.mode() != mb.mode()
            || ma.uid() != mb.uid()
            || (sized && ma.len() != mb.len())
        {
            bail!("{} differs from {}", pb.display(), pa.display());
        }
        if ma.file_type().is_symlink() && std::fs::read_link(&pa)? != std::fs::read_link(&pb)? {
            bail!("{} points elsewhere than {}", pb.display(), pa.display());
        }
        if ma.is_file() && !same_bytes(&pa, &pb)? {
            bail!("{} has other bytes than {}", pb.display(), pa.display());
        }
    }
    Ok(())
}

fn same_bytes(a: &Path, b: &Path) -> Result<bool> {
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba)?;
        let mut filled = 0;
        while filled < n {
            let m = fb.read(&mut bb[filled..n])?;
            if m == 0 {
                return Ok(false);
            }
            filled += m;
        }
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(fb.read(&mut bb)? == 0);
        }
    }
}

/// Moves one shared entry from `from` to `to`, verified; `save` records each stage reached.
/// On one filesystem: rename, then the databases are checked (a failure renames it back).
/// Across filesystems: copy beside the target, fsync, compare byte for byte, check the
/// databases, rename into place, and only then remove the original.
pub fn move_entry(
    m: &mut SharedMove,
    from: &Path,
    to: &Path,
    mut save: impl FnMut(&SharedMove) -> Result<()>,
) -> Result<()> {
    if m.stage == Stage::Pending {
        if !from.exists() && std::fs::symlink_metadata(to).is_ok() {
            // Renamed before the stage was recorded.
            check_databases(to)?;
        } else if from.exists() && copied_already(from, to) {
            // Copied, verified and renamed into place before the stage was recorded.
            m.stage = Stage::Copied;
            save(m)?;
        } else {
            if !replaceable(to) {
                bail!(
                    "{} already exists and is not empty: migrate-data does not overwrite it. Move \
                     it away, or merge it by hand",
                    to.display()
                );
            }
            if std::fs::symlink_metadata(to).is_ok() {
                remove_any(to)?;
            }
            let before = check_databases(from)?;
            fsx::ensure_dir(to.parent().expect("under shared"), 0o755)?;
            match std::fs::rename(from, to) {
                Ok(()) => check_renamed(from, to, &before)?,
                Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
                    copy_across(from, to, &before)?;
                    crate::signals::point("migrate-after-rename");
                    m.stage = Stage::Copied;
                    save(m)?;
                    crate::signals::point("migrate-after-copy");
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot move {} to {}", from.display(), to.display())
                    })
                }
            }
        }
    }
    if m.stage == Stage::Copied && std::fs::symlink_metadata(from).is_ok() {
        remove_any(from)?;
        fsx::sync_dir(from.parent().expect("parent"))?;
    }
    m.stage = Stage::Done;
    save(m)
}

/// The rows of each table of each database under a path.
type Rows = BTreeMap<PathBuf, BTreeMap<String, i64>>;

/// After a rename on one filesystem: both directories synced, and the databases as they were
/// (`before`), else the entry is moved back.
fn check_renamed(from: &Path, to: &Path, before: &Rows) -> Result<()> {
    fsx::sync_dir(to.parent().expect("parent"))?;
    fsx::sync_dir(from.parent().expect("parent"))?;
    let after = check_databases(to);
    if after.as_ref().ok() == Some(before) {
        return Ok(());
    }
    std::fs::rename(to, from)?;
    fsx::sync_dir(from.parent().expect("parent"))?;
    bail!(
        "after moving {} to {}, its databases did not check out ({}): it was moved back",
        from.display(),
        to.display(),
        match after {
            Ok(a) => format!("rows before {before:?}, after {a:?}"),
            Err(e) => format!("{e:#}"),
        }
    );
}

/// Across filesystems: a copy beside `to`, verified byte for byte and row for row against
/// `before`, then renamed into place (durably); the original stays until the stage is saved.
fn copy_across(from: &Path, to: &Path, before: &Rows) -> Result<()> {
    let tmp = to.with_file_name(format!(
        ".migrate-{}.tmp",
        to.file_name().expect("a name").to_string_lossy()
    ));
    if std::fs::symlink_metadata(&tmp).is_ok() {
        remove_any(&tmp)?;
    }
    copy_tree(from, &tmp)?;
    let verified = same_tree(from, &tmp).and_then(|()| {
        let after = check_databases(&tmp)?;
        if &after != before {
            bail!("rows before {before:?}, in the copy {after:?}");
        }
        Ok(())
    });
    if let Err(e) = verified {
        let _ = remove_any(&tmp);
        return Err(e.context(format!(
            "the copy of {} to {} did not verify: it was removed, the original is untouched",
            from.display(),
            to.display()
        )));
    }
    fsx::rename_durable(&tmp, to)
}

/// Whether `to` is a complete copy of `from` already: the same tree, byte for byte, and the
/// same rows in its databases.
fn copied_already(from: &Path, to: &Path) -> bool {
    std::fs::symlink_metadata(to).is_ok()
        && same_tree(from, to).is_ok()
        && matches!((check_databases(from), check_databases(to)), (Ok(a), Ok(b)) if a == b)
}

/// Processes (of this user; others' are not visible) that have a file under `dir` open: they
/// could write to a database while it moves.
pub fn writers(dir: &Path) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for p in procs.flatten() {
        let pid = p.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if target.starts_with(dir) {
                    let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
                    found.push(format!(
                        "pid {pid} ({}) has {} open",
                        comm.trim(),
                        target.display()
                    ));
                    break;
                }
            }
        }
    }
    found
}

// ------------------------------------------------------------------------- the node's side

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_compare_by_bytes_and_modes() {
        let d = std::env::temp_dir().join(format!("deploy-migrate-tree-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("a/sub")).unwrap();
        std::fs::write(d.join("a/sub/f"), "hello").unwrap();
        std::os::unix::fs::symlink("sub/f", d.join("a/link")).unwrap();
        copy_tree(&d.join("a"), &d.join("b")).unwrap();
        same_tree(&d.join("a"), &d.join("b")).unwrap();
        std::fs::write(d.join("b/sub/f"), "hellO").unwrap();
        assert!(same_tree(&d.join("a"), &d.join("b")).is_err());
        assert!(replaceable(&d.join("missing")));
        std::fs::create_dir(d.join("empty")).unwrap();
        assert!(replaceable(&d.join("empty")));
        assert!(!replaceable(&d.join("a")));
    }
}
