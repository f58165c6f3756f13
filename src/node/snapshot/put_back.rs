//! The put-back: a snapshot's databases into `shared/` (a failed release's, `rollback
//! --with-data`). Each goes in as a whole new file renamed over the live one: a reflink clone of
//! the snapshot where the file system has them, else a fresh copy, synced; never the snapshot
//! itself (it stays what it is, for the next time). Before the rename the live `-wal`, `-shm`
//! and `-journal` are removed (a stale `-wal` beside the new file would be replayed into it) and
//! Litestream's local state for it (the caller has stopped Litestream; it starts afresh from the
//! file). The new file takes the live one's mode, group and journal mode; where the live file
//! belongs to another user (an app that runs as a user of its own), which a new file of ours
//! cannot take, the snapshot is written into it through SQLite's backup API instead.

use super::databases;
use crate::node::shared_path::{self, SharedRel};
use crate::sys::fsx;
use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags, MAIN_DB};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The start of the name of a database being put back, beside the live one (one file system,
/// so the rename is atomic). Never taken for a database of the app.
pub const TEMP_PREFIX: &str = ".deploy-put-back-";

/// The files SQLite keeps beside a database; none may outlive the file it belongs to.
const SIDECARS: &[&str] = &["-wal", "-shm", "-journal"];

/// How a database went back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutBack {
    /// A reflink clone of the snapshot, renamed into place.
    Clone,
    /// A fresh copy of the snapshot, synced, renamed into place.
    Copy,
    /// A copy made before the stop (and, for the gap's snapshot, brought up to date with it),
    /// renamed into place.
    Staged,
    /// The live file belongs to another user: the snapshot written into it, through SQLite.
    InPlace,
}

impl PutBack {
    pub fn as_str(self) -> &'static str {
        match self {
            PutBack::Clone => "clone",
            PutBack::Copy => "copy",
            PutBack::Staged => "copied before the stop",
            PutBack::InPlace => "in place (the file is another user's)",
        }
    }
}

/// What the live file had that the new one keeps.
#[derive(Debug, Clone, Copy)]
struct Had {
    mode: u32,
    uid: u32,
    gid: u32,
    /// In WAL mode (the header says so, or its data is all in its `-wal`).
    wal: bool,
}

/// The live file's mode, owner and journal mode; none when it is missing. Opens the file: never
/// while this process holds a connection to it (see [`had_wal`]).
fn had(live: &Path) -> Result<Option<Had>> {
    let mut head = [0u8; 20];
    let wal = match File::open(live).and_then(|f| f.read_exact_at(&mut head, 0)) {
        Ok(()) => super::is_sqlite(live) && head[18] == 2,
        Err(_) => super::has_data(live),
    };
    had_wal(live, wal)
}

/// [`had`] of a database known to be in WAL mode or not, without opening it (closing a
/// descriptor of it would drop this process's locks on it).
fn had_wal(live: &Path, wal: bool) -> Result<Option<Had>> {
    let m = match std::fs::symlink_metadata(live) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", live.display())),
    };
    Ok(Some(Had {
        mode: m.permissions().mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        wal,
    }))
}

/// Where a database is written before it is renamed over `live` (`tag`: what for, so that the
/// put-backs prepared before the stop and the one made in the gap never share a name).
pub fn temp_for(live: &Path, tag: &str) -> PathBuf {
    let name = live.file_name().expect("a file").to_string_lossy();
    live.with_file_name(format!("{TEMP_PREFIX}{tag}{name}"))
}

/// Put-backs made before the stop where the file system cannot clone (ext4): for each database
/// (its path under `shared/`), a whole file beside the live one that already is `snapshot`'s
/// copy, with the live file's mode, owner and journal mode, so that the put-back is a rename.
/// The ones not used are removed when it is dropped.
#[derive(Debug)]
pub struct Staged {
    pub snapshot: PathBuf,
    files: BTreeMap<PathBuf, PathBuf>,
}

impl Staged {
    pub fn new(snapshot: &Path) -> Staged {
        Staged {
            snapshot: snapshot.to_path_buf(),
            files: BTreeMap::new(),
        }
    }

    pub fn insert(&mut self, rel: &Path, file: PathBuf) {
        self.files.insert(rel.to_path_buf(), file);
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The databases made ready (paths under `shared/`).
    pub fn databases(&self) -> Vec<PathBuf> {
        self.files.keys().cloned().collect()
    }

    /// The file made for `rel` of `snapshot`, taken out.
    fn take(&mut self, snapshot: &Path, rel: &Path) -> Option<PathBuf> {
        (self.snapshot == snapshot)
            .then(|| self.files.remove(rel))
            .flatten()
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        for f in self.files.values() {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// A copy of `from` beside `live`, named for `tag`, made as the put-back's file (the live file's
/// mode, owner and journal mode, synced); none when it cannot take the live file's owner.
/// `wal`: the live database's journal mode when known (it is then never opened).
pub fn stage_file(
    from: &Path,
    live: &Path,
    tag: &str,
    wal: Option<bool>,
) -> Result<Option<PathBuf>> {
    let had = match wal {
        Some(w) => had_wal(live, w)?,
        None => had(live)?,
    };
    let q = temp_for(live, tag);
    let _ = std::fs::remove_file(&q);
    copy_new(from, &q)?;
    match finish(&q, had) {
        Ok(true) => Ok(Some(q)),
        other => {
            let _ = std::fs::remove_file(&q);
            other.map(|_| None)
        }
    }
}

/// Before the stop of a `rollback --with-data`: each database of `snapshot` made ready beside
/// its live one (see [`Staged`]). One that cannot be made is left to the gap.
pub fn stage_restore(snapshot: &Path, shared: &Path) -> Result<Staged> {
    let mut staged = Staged::new(snapshot);
    let dbs = databases(snapshot)?;
    let need: u64 = dbs
        .iter()
        .filter_map(|rel| std::fs::metadata(snapshot.join(rel)).ok())
        .map(|m| m.len())
        .sum();
    if super::delta::free_bytes(shared)? < need + super::delta::margin(need) {
        return Ok(staged);
    }
    for rel in dbs {
        // Nothing of shared/ changes before the stop: a path the gap would have to change first
        // (a symbolic link where the database is) is left to the gap.
        let Ok(r) = SharedRel::parse(&rel.to_string_lossy()) else {
            continue;
        };
        let live = shared.join(&rel);
        let linked = std::fs::symlink_metadata(&live).is_ok_and(|m| m.file_type().is_symlink());
        if r.check_target(shared).is_err() || linked || !live.parent().is_some_and(Path::is_dir) {
            continue;
        }
        if let Some(q) = stage_file(&snapshot.join(&rel), &live, "target-", None)? {
            staged.insert(&rel, q);
        }
    }
    Ok(staged)
}

/// Removes put-back files a killed run left under `shared`.
pub fn remove_stale(shared: &Path) {
    for entry in walkdir::WalkDir::new(shared)
        .follow_links(false)
        .into_iter()
        .flatten()
    {
        let ours = entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX);
        if ours && entry.file_type().is_file() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Removes what SQLite and Litestream keep beside `live` (its `-wal`, `-shm`, `-journal`, and
/// Litestream's local state), durably: nothing of the old file is replayed into a new one.
/// Litestream must be stopped.
pub fn clear_sidecars(live: &Path) -> Result<()> {
    let name = live.file_name().expect("a file").to_string_lossy();
    for side in SIDECARS {
        let p = live.with_file_name(format!("{name}{side}"));
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {}", p.display()))
            }
            _ => {}
        }
    }
    let state = live.with_file_name(format!(".{name}-litestream"));
    match std::fs::remove_dir_all(&state) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove {}", state.display()))
        }
        _ => {}
    }
    fsx::sync_dir(live.parent().expect("a directory"))
}

/// A new file at `to` with the bytes of `from` (the kernel copies: `copy_file_range`).
fn copy_new(from: &Path, to: &Path) -> Result<()> {
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(to)
        .with_context(|| format!("cannot create {}", to.display()))?;
    let mut src = File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
    std::io::copy(&mut src, &mut out)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Gives the new file what the live one had (journal mode, mode, group) and syncs it. False
/// when it cannot take the live file's owner.
fn finish(tmp: &Path, had: Option<Had>) -> Result<bool> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(tmp)
        .with_context(|| format!("cannot open {}", tmp.display()))?;
    if let Some(h) = had {
        // SAFETY: geteuid and getegid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        if h.uid != uid && uid != 0 {
            return Ok(false);
        }
        if (h.uid, h.gid) != (uid, gid)
            && std::os::unix::fs::fchown(&f, Some(h.uid), Some(h.gid)).is_err()
        {
            return Ok(false);
        }
        if h.wal {
            // The header's read and write versions: 2 is WAL mode (a WAL database whose
            // `-wal` is empty, as SQLite leaves one after a checkpoint).
            f.write_all_at(&[2, 2], 18)?;
        }
        f.set_permissions(std::fs::Permissions::from_mode(h.mode))?;
    } else {
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    f.sync_all()
        .with_context(|| format!("cannot sync {}", tmp.display()))?;
    Ok(true)
}

/// A file made before the stop renamed over the live one (synced first: the gap may have
/// written into it).
fn put_back_staged(file: &Path, live: &Path) -> Result<PutBack> {
    File::open(file)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot sync {}", file.display()))?;
    clear_sidecars(live)?;
    fsx::rename_durable(file, live)?;
    Ok(PutBack::Staged)
}

/// One database of a snapshot over the live one; says how.
fn put_back_database(src: &Path, live: &Path) -> Result<PutBack> {
    let had = had(live)?;
    let tmp = temp_for(live, "");
    let _ = std::fs::remove_file(&tmp);
    let how = match fsx::clone_file(src, &tmp) {
        Ok(()) => PutBack::Clone,
        Err(_) => {
            copy_new(src, &tmp)?;
            PutBack::Copy
        }
    };
    let placed = finish(&tmp, had).and_then(|owned| {
        if owned {
            clear_sidecars(live)?;
            fsx::rename_durable(&tmp, live)?;
        }
        Ok(owned)
    });
    match placed {
        Ok(true) => Ok(how),
        Ok(false) => {
            let _ = std::fs::remove_file(&tmp);
            restore_in_place(src, live)?;
            Ok(PutBack::InPlace)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// The snapshot written into the live file through SQLite's backup API (one transaction, its
/// `-wal` handled by SQLite), the live journal mode kept: for a file we cannot replace.
fn restore_in_place(src: &Path, live: &Path) -> Result<()> {
    let mut conn = Connection::open_with_flags(
        live,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .with_context(|| format!("cannot open the database {}", live.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    conn.restore(MAIN_DB, src, None::<fn(rusqlite::backup::Progress)>)
        .with_context(|| format!("cannot restore {} from {}", live.display(), src.display()))?;
    let _: String = conn.query_row(&format!("PRAGMA journal_mode={mode}"), [], |r| r.get(0))?;
    Ok(())
}

/// Puts every database of a snapshot back into `shared` (see the module's text). Databases in
/// `shared` that the snapshot does not have are left alone. Nothing is written through a
/// symbolic link ([`SharedRel::for_writing`]): a link where a database was is replaced by the
/// database (returned, to be told), a linked directory on the way refused before anything is
/// written. Litestream must be stopped.
pub fn restore(
    snapshot: &Path,
    shared: &Path,
    mut staged: Option<&mut Staged>,
) -> Result<Restored> {
    let dbs = databases(snapshot)?
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>();
    let dbs = shared_path::parse_all(&dbs, "the snapshot")?;
    // Every place checked before any is written.
    for rel in &dbs {
        rel.check_target(shared)?;
    }
    let mut targets = Vec::new();
    let mut links = Vec::new();
    for rel in &dbs {
        let (live, removed) = rel.for_writing(shared)?;
        links.extend(removed);
        targets.push((rel, live));
    }
    let mut how = Vec::new();
    for (rel, live) in &targets {
        let src = snapshot.join(rel.as_str());
        let ready = staged
            .as_deref_mut()
            .and_then(|s| s.take(snapshot, Path::new(rel.as_str())));
        let done = match ready {
            Some(file) => put_back_staged(&file, live),
            None => put_back_database(&src, live),
        }
        .with_context(|| {
            format!(
                "cannot put {} back from {}",
                live.display(),
                snapshot.display()
            )
        })?;
        how.push(((*rel).clone(), done));
    }
    Ok(Restored {
        how,
        replaced_links: links,
    })
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    /// Each database put back, and how.
    pub how: Vec<(SharedRel, PutBack)>,
    /// Symbolic links that stood where a database goes, removed (what they point at untouched).
    pub replaced_links: Vec<PathBuf>,
}

impl Restored {
    /// One line of detail: how many went back, and how.
    pub fn summary(&self) -> String {
        let each: Vec<String> = self
            .how
            .iter()
            .map(|(rel, how)| format!("{rel} ({})", how.as_str()))
            .collect();
        format!(
            "   {} database(s) put back: {}",
            self.how.len(),
            each.join(", ")
        )
    }

    /// A warning for the links replaced, if any.
    pub fn warning(&self) -> Option<String> {
        (!self.replaced_links.is_empty()).then(|| {
            format!(
                "replaced symbolic link(s) in shared/ by the restored data, never writing through \
                 them: {}",
                self.replaced_links
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{rows, scratch};
    use super::*;

    #[test]
    fn a_put_back_is_a_new_file_with_the_live_ones_mode_and_journal_mode_and_no_stale_wal() {
        let d = scratch("put-back-mode");
        let (snap, shared) = (d.join("snap"), d.join("shared"));
        std::fs::create_dir_all(snap.join("data")).unwrap();
        std::fs::create_dir_all(shared.join("data")).unwrap();
        let s = Connection::open(snap.join("data/app.db")).unwrap();
        s.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1), (2);")
            .unwrap();
        drop(s);
        let live = shared.join("data/app.db");
        let w = Connection::open(&live).unwrap();
        w.pragma_update(None, "journal_mode", "WAL").unwrap();
        w.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        w.execute_batch("CREATE TABLE t (x);").unwrap();
        for i in 0..50 {
            w.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
        }
        std::fs::set_permissions(&live, std::fs::Permissions::from_mode(0o640)).unwrap();
        let state = shared.join("data/.app.db-litestream");
        std::fs::create_dir_all(&state).unwrap();
        // A -wal left as a killed app leaves it (its 50 rows would go into the new file).
        let wal = shared.join("data/app.db-wal");
        let frames = std::fs::read(&wal).unwrap();
        assert!(!frames.is_empty());
        drop(w);
        std::fs::write(&wal, frames).unwrap();
        let before = std::fs::metadata(snap.join("data/app.db")).unwrap();

        let r = restore(&snap, &shared, None).unwrap();
        assert_eq!(r.how.len(), 1);
        assert_eq!(rows(&live), 2, "the snapshot's rows, no stale WAL replayed");
        let m = std::fs::metadata(&live).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o640);
        let mode: String = Connection::open(&live)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert!(!state.exists(), "Litestream's state goes with the old file");
        assert!(!temp_for(&live, "").exists());
        let after = std::fs::metadata(snap.join("data/app.db")).unwrap();
        assert_eq!(
            (before.ino(), before.len(), before.permissions().mode()),
            (after.ino(), after.len(), after.permissions().mode()),
            "the snapshot itself is untouched"
        );
        assert_eq!(databases(&shared).unwrap(), [PathBuf::from("data/app.db")]);
    }
}
