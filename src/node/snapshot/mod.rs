//! Consistent snapshots of the SQLite databases in `shared/`, kept with the release that wrote
//! them, and their restore (`deploy rollback --with-data`, and a failed release's put-back).
//!
//! ```text
//! releases/<version>/.deploy/snapshots/<stamp>/<path in shared>   the newest of its kind
//! releases/<version>/.deploy/snapshots/<stamp>/snapshot.json       its kind and schemas (0600)
//! releases/<version>/.deploy/snapshots/.tmp-<stamp>/              being written: never used
//! ```
//!
//! A snapshot is taken in the gap, after the release that wrote the data has stopped, with
//! SQLite's online backup API (rows still in a `-wal` file included), so it is the data exactly
//! as that release left it. It lives in that release's directory and is pruned with it. Each is
//! labelled by what it is ([`Kind`]): the data the release left, which `rollback --with-data`
//! puts back and whose schema a rollback compares, or data kept for safety only (what was there
//! before a restore; what a release running on data it did not leave left). Taking one removes
//! only the older ones of its own kind.

mod delta;
mod in_gap;
mod put_back;
#[cfg(test)]
mod testutil;
mod wal;

use in_gap::{move_database, snapshot_database};

pub use delta::{pre_copy, PreCopy};
pub use put_back::{
    clear_sidecars, remove_stale, restore, stage_restore, PutBack, Restored, Staged,
};

use crate::node::schema::{self, Schemas};
use crate::sys::fsx;
use anyhow::{Context, Result};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

const TMP_PREFIX: &str = ".tmp-";

/// The manifest in each snapshot: its [`Kind`] and the schema of each database in it.
pub const MANIFEST: &str = "snapshot.json";

/// What a snapshot holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The data the release left at its stop: what `rollback --with-data` puts back, and the
    /// schema a rollback to the release compares with today's. (A snapshot from before
    /// snapshots had manifests is one of these.)
    #[default]
    Left,
    /// What was in `shared/` before a restore put the release's own data back there
    /// (`rollback --with-data --to` the live release, stopped): kept, never restored by
    /// `--with-data`, so the snapshot being restored is never the one replaced.
    BeforeRestore,
    /// What the release left while it ran on data it did not leave (`rollback --keep-data`):
    /// kept, never taken for the data the release itself left.
    LeftOnKeptData,
}

impl Kind {
    /// What a snapshot of this kind, taken for `version`, holds: in step labels and plans.
    pub fn what(self, version: &str) -> String {
        match self {
            Kind::Left => format!("the data {version} leaves"),
            Kind::BeforeRestore => format!("the data there before {version}'s own is restored"),
            Kind::LeftOnKeptData => {
                format!("the data {version} leaves (not its own: it ran with --keep-data)")
            }
        }
    }
}

/// A snapshot's manifest: what it is, and the schema of its databases.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub kind: Kind,
    /// None in a snapshot taken before deploy recorded schemas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schemas: Option<Schemas>,
    /// How its databases were copied (none before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// The size of its databases, in bytes (none before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// With `replicate:`: each database's position in the replica at the stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<BTreeMap<String, ReplicaPosition>>,
}

/// Where the replica of a database was at the stop (Litestream's transaction id, as
/// `litestream restore -txid` takes it), and when the replica was seen to have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaPosition {
    pub txid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_at: Option<String>,
}

/// Each database's position in the replica now (see `replica_position`), asked for once the
/// snapshot has let go of its locks.
pub type Positions<'a> = &'a dyn Fn(&[PathBuf]) -> Option<BTreeMap<String, ReplicaPosition>>;

/// How a snapshot's databases were copied, fastest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Reflink clones (XFS, btrfs): the time does not grow with the database.
    Clone,
    /// The files themselves, moved, their `-wal` folded in: what a failed release left, whose
    /// place its put-back (made ready before the stop) takes.
    Move,
    /// Copied before the stop, brought up to date in the gap from the `-wal` (ext4, WAL
    /// databases): the gap's part grows with the writes since the copy.
    PreCopy,
    /// Full copies through SQLite's backup API in the gap: about 2 ms per MB.
    Copy,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Clone => "clone",
            Method::PreCopy => "pre-copy",
            Method::Copy => "copy",
            Method::Move => "move",
        }
    }
}

impl Manifest {
    /// The manifest of the snapshot `dir`; one without (older than manifests) holds the data
    /// its release left, with no schema recorded.
    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a snapshot manifest", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes it into the snapshot `dir` (atomically, 0600).
    pub fn write(&self, dir: &Path) -> Result<()> {
        fsx::write_atomic(&dir.join(MANIFEST), &self.json()?, 0o600)
    }

    fn json(&self) -> Result<Vec<u8>> {
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        Ok(json)
    }

    /// Writes it into a snapshot being made (`tmp`, not yet renamed to its name: nobody reads
    /// it before the rename that follows), not synced: returns its path, for the caller to sync
    /// with the rest of the snapshot.
    fn write_new(&self, tmp: &Path) -> Result<PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = tmp.join(MANIFEST);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        f.write_all(&self.json()?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

/// A complete snapshot: its stamp (when it was taken), directory and manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub stamp: String,
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Snapshot {
    /// The size of its databases: as recorded, or (a snapshot from before sizes were recorded)
    /// as found on disk.
    pub fn bytes(&self) -> u64 {
        self.manifest.bytes.unwrap_or_else(|| {
            databases(&self.dir)
                .unwrap_or_default()
                .iter()
                .filter_map(|rel| std::fs::metadata(self.dir.join(rel)).ok())
                .map(|m| m.len())
                .sum()
        })
    }
}

/// Whether `dir` (where snapshots go) can take a reflink clone of a file of `shared`: what
/// `deploy check` says. Tries a real one with a small file of each.
pub fn clone_method(shared: &Path, dir: &Path) -> Method {
    let probe = shared.join(format!(".deploy-clone-probe-{}", std::process::id()));
    let copy = dir.join(format!(".deploy-clone-probe-{}", std::process::id()));
    // A new file of its own: never through a link someone put under that name.
    let made = {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&probe)
            .and_then(|mut f| f.write_all(b"probe"))
            .is_ok()
    };
    let works = made && fsx::clone_file(&probe, &copy).is_ok();
    let _ = std::fs::remove_file(&probe);
    let _ = std::fs::remove_file(&copy);
    if works {
        Method::Clone
    } else {
        Method::Copy
    }
}

/// A connection of ours to a live database that never checkpoints when it closes: in the gap
/// ours are the last ones open (the app stopped, Litestream perhaps too), and a checkpoint
/// there (its writes and syncs) would be paid in the gap; the `-wal` stays, for the next
/// release to open as SQLite opens one after any stop.
fn no_checkpoint_on_close(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .map(|_| ())
}

/// Whether a file starts with SQLite's header.
pub fn is_sqlite(path: &Path) -> bool {
    // A regular file only: opening a FIFO someone put there would wait for ever.
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut head = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == b"SQLite format 3\0"
}

/// An empty file beside a non-empty `-wal`: a database whose every page is still in its WAL.
fn only_in_wal(path: &Path) -> bool {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(path).is_ok_and(|m| m.len() == 0)
        && std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0)
}

/// Whether a database file holds data: SQLite's header, or every page still in its `-wal`.
pub fn has_data(path: &Path) -> bool {
    is_sqlite(path) || only_in_wal(path)
}

/// Which of the databases in `snapshot` hold data in `shared` already (their paths under it).
pub fn present_in(snapshot: &Path, shared: &Path) -> Result<Vec<String>> {
    Ok(databases(snapshot)?
        .iter()
        .filter(|rel| has_data(&shared.join(rel)))
        .map(|rel| rel.display().to_string())
        .collect())
}

/// The databases under `dir`, as paths relative to it, in a stable order. Symlinks are not
/// followed: what `shared/` links to elsewhere is not ours to copy.
pub fn databases(dir: &Path) -> Result<Vec<PathBuf>> {
    databases_but_known(dir, |_| false)
}

/// [`databases`], where a file `known` says is a database is taken as one without being opened
/// (a database held by a copy made before the stop: see [`delta`]).
fn databases_but_known(dir: &Path, known: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let ours = entry
            .file_name()
            .to_string_lossy()
            .starts_with(put_back::TEMP_PREFIX);
        let rel = entry.path().strip_prefix(dir).expect("under dir");
        if entry.file_type().is_file() && !ours && (known(rel) || has_data(entry.path())) {
            found.push(rel.to_path_buf());
        }
    }
    Ok(found)
}

/// A snapshot that was written.
#[derive(Debug)]
pub struct Taken {
    pub dir: PathBuf,
    pub databases: usize,
    pub bytes: u64,
    /// The schema of each database, as copied.
    pub schemas: Schemas,
    /// How (none without a database).
    pub method: Option<Method>,
    /// Databases that could not be taken the fast way, and why (they were copied).
    pub notes: Vec<String>,
    /// The replica's positions were recorded: to confirm after the gap.
    pub replica: bool,
    /// Its put-back made ready beside the live files (ext4, WAL databases).
    pub staged: Option<Staged>,
    /// Older snapshots of its kind and unfinished ones, moved out of sight: to remove after
    /// the gap ([`Taken::remove_old`]).
    pub old: Vec<PathBuf>,
}

/// A name for a new snapshot that sorts by time.
pub fn stamp() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// How [`take`] takes each database, past a copy in the gap.
pub struct How<'a> {
    /// Databases copied before the stop: brought up to date instead of copied.
    pub pre: Option<&'a mut PreCopy>,
    /// Databases (paths under `shared/`) about to be replaced by a put-back made ready before
    /// the stop (ext4): moved into the snapshot, not copied (Litestream must be stopped).
    pub moving: &'a dyn Fn(&Path) -> bool,
    /// The replica's positions, asked for once the databases are let go.
    pub positions: Positions<'a>,
}

impl How<'_> {
    /// Each database cloned or copied in the gap.
    pub fn in_gap() -> How<'static> {
        How {
            pre: None,
            moving: &|_| false,
            positions: &|_| None,
        }
    }
}

/// Snapshots every database under `shared` into `snapshots/<stamp>/`, with its manifest (its
/// `kind`, and each copy's schema: the data exactly as it was): written under a temp name,
/// made durable, renamed; older snapshots of the same kind, and unfinished ones, are moved out
/// of sight ([`Taken::remove_old`] removes them, after the gap).
///
/// Durable with as few waits as may be (each sync on a busy disk costs milliseconds): the
/// directories in the temp one are made without a sync each (nobody reads a temp name, and a
/// crash leaves one that is never used); then every file (by `fdatasync` where its mode was
/// set before: a copy made before the stop) and every directory of the snapshot are synced at
/// once, before the rename, whose directory is synced last.
pub fn take(
    shared: &Path,
    snapshots: &Path,
    stamp: &str,
    kind: Kind,
    mut how: How,
) -> Result<Taken> {
    let dbs = databases_but_known(shared, |rel| how.pre.as_ref().is_some_and(|p| p.holds(rel)))?;
    fsx::ensure_dir(snapshots, 0o700)?;
    let tmp = snapshots.join(format!("{TMP_PREFIX}{stamp}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    let mut dirs = std::collections::BTreeSet::from([tmp.clone()]);
    make_dir(&tmp)?;
    let (mut bytes, mut schemas) = (0, Schemas::new());
    let (mut method, mut notes) = (None, Vec::new());
    let (mut data_only, mut whole) = (Vec::new(), Vec::new());
    for rel in &dbs {
        let dst = tmp.join(rel);
        let parent = dst.parent().expect("has a parent");
        for dir in parent.ancestors().take_while(|d| d.starts_with(&tmp)) {
            dirs.insert(dir.to_path_buf());
        }
        make_dir(parent)?;
        let (schema, m) = take_one(&shared.join(rel), rel, &dst, &mut how, &mut notes)?;
        // A snapshot is as slow as its slowest database.
        method = Some(method.map_or(m, |old: Method| old.max(m)));
        schemas.insert(rel.display().to_string(), schema);
        match make_private(&dst)? {
            true => whole.push(dst.clone()),
            false => data_only.push(dst.clone()),
        }
        bytes += std::fs::metadata(&dst)?.len();
    }
    let positions = how.positions;
    let manifest = Manifest {
        kind,
        schemas: Some(schemas.clone()),
        method,
        bytes: Some(bytes),
        replica: positions(&dbs),
    };
    whole.push(manifest.write_new(&tmp)?);
    whole.extend(dirs);
    fsx::sync_together(&data_only, &whole)?;
    let dir = snapshots.join(stamp);
    fsx::rename_durable(&tmp, &dir)?;
    let old = out_of_sight(snapshots, &dir, kind)?;
    let staged = how
        .pre
        .map(|p| p.staged_for(&dir))
        .filter(|s| !s.is_empty());
    Ok(Taken {
        staged,
        dir,
        databases: dbs.len(),
        bytes,
        schemas,
        method,
        notes,
        replica: manifest.replica.is_some(),
        old,
    })
}

/// A directory of a snapshot being made (and its parents), 0700, not synced (see [`take`]).
fn make_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))
}

/// A database in a snapshot made 0600; whether its mode had to change (then its inode is
/// synced whole, not only its data).
fn make_private(db: &Path) -> Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(db)?.permissions().mode() & 0o7777;
    if mode == 0o600 {
        return Ok(false);
    }
    std::fs::set_permissions(db, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private", db.display()))?;
    Ok(true)
}

/// The older snapshots of `kind` beside `taken`, and unfinished ones, renamed out of sight (a
/// temp name, never used; the rename not synced: one a crash undoes is an older snapshot that
/// the next one moves again): what [`Taken::remove_old`] removes.
fn out_of_sight(snapshots: &Path, taken: &Path, kind: Kind) -> Result<Vec<PathBuf>> {
    let mut old = Vec::new();
    for entry in list(snapshots)? {
        if entry == taken {
            continue;
        }
        if is_tmp(&entry) {
            old.push(entry);
        } else if Manifest::read(&entry).is_ok_and(|m| m.kind == kind) {
            let name = entry.file_name().expect("listed").to_string_lossy();
            let aside = snapshots.join(format!("{TMP_PREFIX}old-{name}"));
            std::fs::rename(&entry, &aside)
                .with_context(|| format!("cannot remove the old snapshot {}", entry.display()))?;
            old.push(aside);
        }
    }
    Ok(old)
}

impl Taken {
    /// Removes what [`take`] moved out of sight: the older snapshots of its kind, and
    /// unfinished ones (out of the gap: it takes time with big databases). What is not removed
    /// (a crash) goes with the next snapshot.
    pub fn remove_old(&mut self) {
        remove_dirs(std::mem::take(&mut self.old));
    }
}

/// Removes directories moved out of sight, as far as it can.
pub fn remove_dirs(dirs: Vec<PathBuf>) {
    for d in dirs {
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// One database into the snapshot, the fastest way `how` allows.
fn take_one(
    src: &Path,
    rel: &Path,
    dst: &Path,
    how: &mut How,
    notes: &mut Vec<String>,
) -> Result<(schema::DbSchema, Method)> {
    // Moved only whole: a hot rollback journal beside it would be left behind.
    let mut journal = src.as_os_str().to_owned();
    journal.push("-journal");
    if (how.moving)(rel) && !Path::new(&journal).exists() {
        return Ok((move_database(src, dst)?, Method::Move));
    }
    match how
        .pre
        .as_deref_mut()
        .and_then(|p| delta::finish(p, rel, src, dst))
    {
        Some(Ok(schema)) => Ok((schema, Method::PreCopy)),
        Some(Err(e)) => {
            notes.push(format!("{e:#}: copied in the gap instead"));
            snapshot_database(src, dst)
        }
        None => snapshot_database(src, dst),
    }
}

/// A snapshot still being written (or left so by a crash): never used.
fn is_tmp(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with(TMP_PREFIX))
}

/// Every entry of a snapshots directory, complete or not.
fn list(snapshots: &Path) -> Result<Vec<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(snapshots) else {
        return Ok(Vec::new());
    };
    let mut all = Vec::new();
    for e in entries {
        all.push(e?.path());
    }
    all.sort();
    Ok(all)
}

/// The newest complete snapshot of a kind.
pub fn latest(snapshots: &Path, kind: Kind) -> Result<Option<Snapshot>> {
    for dir in list(snapshots)?.into_iter().rev() {
        if is_tmp(&dir) || !dir.is_dir() {
            continue;
        }
        let manifest = Manifest::read(&dir)?;
        if manifest.kind == kind {
            let stamp = dir
                .file_name()
                .expect("listed")
                .to_string_lossy()
                .into_owned();
            return Ok(Some(Snapshot {
                stamp,
                dir,
                manifest,
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::testutil::{rows, scratch};
    use super::*;
    use rusqlite::Connection;

    /// A snapshot taken in the gap, as a release's.
    fn take_now(shared: &Path, snaps: &Path, stamp: &str, kind: Kind) -> Taken {
        let mut t = take(shared, snaps, stamp, kind, How::in_gap()).unwrap();
        t.remove_old();
        t
    }

    #[test]
    fn snapshot_has_rows_only_in_the_wal_and_restores_them() {
        let d = scratch("wal");
        let shared = d.join("shared");
        std::fs::create_dir_all(shared.join("data/sub")).unwrap();
        std::fs::write(shared.join("data/notes.txt"), "not a database").unwrap();
        let db = shared.join("data/sub/app.db");
        let writer = Connection::open(&db).unwrap();
        writer.pragma_update(None, "journal_mode", "WAL").unwrap();
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        writer.execute("CREATE TABLE t (x)", []).unwrap();
        for i in 0..100 {
            writer.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
        }
        assert!(shared.join("data/sub/app.db-wal").metadata().unwrap().len() > 0);
        assert_eq!(
            databases(&shared).unwrap(),
            vec![PathBuf::from("data/sub/app.db")]
        );

        let snaps = d.join("snapshots");
        let taken = take_now(&shared, &snaps, "2026-01-01T00:00:00.000Z", Kind::Left);
        assert_eq!(taken.databases, 1);
        assert_eq!(taken.schemas["data/sub/app.db"].tables["t"], ["x"]);
        assert_eq!(rows(&taken.dir.join("data/sub/app.db")), 100);

        // Later writes, then the restore puts the snapshot's 100 rows back, WAL mode kept.
        writer.execute("DELETE FROM t WHERE x < 50", []).unwrap();
        drop(writer);
        assert_eq!(rows(&db), 50);
        assert_eq!(restore(&taken.dir, &shared, None).unwrap().how.len(), 1);
        assert_eq!(rows(&db), 100);
        let mode: String = Connection::open(&db)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert!(shared.join("data/notes.txt").exists());
    }

    #[test]
    fn only_the_newest_complete_snapshot_of_each_kind_is_kept_and_used() {
        let d = scratch("newest");
        let shared = d.join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        let db = shared.join("a.db");
        let c = Connection::open(&db).unwrap();
        c.execute("CREATE TABLE t (x)", []).unwrap();
        let snaps = d.join("snapshots");
        let first = take_now(&shared, &snaps, "2026-01-01T00:00:00.000Z", Kind::Left);
        c.execute("INSERT INTO t VALUES (1)", []).unwrap();
        // A crash while writing a later one leaves a temp dir that is never used.
        std::fs::create_dir_all(snaps.join(".tmp-2026-01-03T00:00:00.000Z")).unwrap();
        let left = latest(&snaps, Kind::Left).unwrap().unwrap();
        assert_eq!(left.stamp, "2026-01-01T00:00:00.000Z");
        assert_eq!(rows(&left.dir.join("a.db")), 0);
        assert_eq!(left.manifest.schemas.unwrap()["a.db"].tables["t"], ["x"]);
        // What was there before a restore is kept beside it, and never taken for it.
        let before = take_now(
            &shared,
            &snaps,
            "2026-01-02T00:00:00.000Z",
            Kind::BeforeRestore,
        );
        assert_eq!(list(&snaps).unwrap(), vec![first.dir.clone(), before.dir]);
        assert_eq!(latest(&snaps, Kind::Left).unwrap().unwrap().dir, first.dir);
        let taken = take_now(&shared, &snaps, "2026-01-03T00:00:00.000Z", Kind::Left);
        assert!(!first.dir.exists());
        assert_eq!(list(&snaps).unwrap().len(), 2);
        assert_eq!(rows(&taken.dir.join("a.db")), 1);
        // A snapshot from before manifests holds the data its release left.
        std::fs::remove_file(taken.dir.join(MANIFEST)).unwrap();
        let old = latest(&snaps, Kind::Left).unwrap().unwrap();
        assert_eq!((old.dir, old.manifest.schemas), (taken.dir, None));
    }
}
