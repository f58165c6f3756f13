//! Snapshots where the file system cannot clone (ext4), for databases in WAL mode: the copy is
//! made before the stop, and the gap only brings it up to date.
//!
//! Before the stop, while the old release serves, each database is copied through SQLite's
//! backup API inside a read transaction that stays open until the gap ([`pre_copy`]). While it is
//! open, SQLite never moves a page that changed after it out of the `-wal`: a checkpoint copies
//! no frame past the oldest reader's mark into the database file, and the WAL restarts from its
//! beginning only when no reader needs it (a reader that reads the file alone allows one
//! restart, before any later frame exists). So in the gap, with a write lock held (Litestream
//! keeps running), every page that changed since the copy is in the `-wal`'s frames up to the
//! last commit, and a page's content now is its newest committed frame there ([`finish`]). Every
//! page of those frames gets its newest content (a superset of what changed, which costs a few
//! pages and never a wrong one), the file takes the database's size now, and that is the data at
//! the stop. The cost in the gap grows with the frames in the `-wal`, not with the database.
//!
//! What is committed is SQLite's own record, the `-shm`'s header (both copies the same, its
//! checksum right), checked against the `-wal`: same salts, every frame's salts and running
//! checksum, the last frame a commit of the database's size, its checksum the header's. Anything
//! unexpected (a file replaced since the copy, a header that does not match, a page neither in
//! the copy nor in the `-wal`) is an error, and the caller copies the database in the gap
//! instead: slower, never wrong.

use super::wal::{committed_pages, IndexHeader};
use anyhow::{bail, ensure, Context, Result};
use rusqlite::{Connection, OpenFlags};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Where the copies wait for the gap, in the snapshots' directory (so they are renamed, never
/// copied, into the snapshot); a temp name: one left by a killed run is never used.
pub const DIR: &str = ".tmp-pre-copy";

/// Room kept free beside copies of `need` bytes: an eighth of them and 1 MiB, at most 64 MiB
/// (a small disk with small databases is not refused for a margin of a big one's).
pub(super) fn margin(need: u64) -> u64 {
    (need / 8 + (1 << 20)).min(64 << 20)
}

/// A file's identity: the database must be the same file in the gap as at the copy.
type FileId = (u64, u64);

fn file_id(path: &Path) -> Result<FileId> {
    let m = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok((m.dev(), m.ino()))
}

fn side(db: &Path, suffix: &str) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// One database copied before the stop, its read transaction still open.
///
/// Its `-shm` is read through one descriptor kept open for as long as any connection of this
/// process to the database is: closing a descriptor of a file drops every POSIX lock the
/// process holds on it (SQLite's read marks and write lock live there), so none is opened and
/// closed meanwhile. (The fields drop in order: the connection, then the descriptor.)
struct Held {
    /// Kept open for its read transaction, until the copy is brought up to date.
    _reader: Connection,
    shm: File,
    copy: PathBuf,
    /// A second copy beside the live file, for a put-back by rename (see `put_back::Staged`),
    /// brought up to date with the first.
    spare: Option<PathBuf>,
    ids: (FileId, FileId),
    /// The `-shm`'s header just before the read transaction began: no frame up to its last one
    /// holds a change the copy lacks (the gap reads the frames after it, when the WAL has not
    /// begun again since).
    before: Option<IndexHeader>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(spare) = &self.spare {
            let _ = std::fs::remove_file(spare);
        }
    }
}

/// The copies made before the stop, by database (its path under `shared/`). Dropped, it ends
/// their read transactions and removes what was not taken.
pub struct PreCopy {
    dir: PathBuf,
    held: BTreeMap<PathBuf, Held>,
    /// Spare copies brought up to date in the gap: the put-back of the gap's snapshot.
    ready: BTreeMap<PathBuf, PathBuf>,
    /// Databases left to the gap, and why.
    pub skipped: Vec<String>,
    pub bytes: u64,
}

impl PreCopy {
    pub fn databases(&self) -> usize {
        self.held.len()
    }

    /// Whether `rel` is one of the databases copied: the caller must not open its files (see
    /// [`Held`]).
    pub fn holds(&self, rel: &Path) -> bool {
        self.held.contains_key(rel)
    }

    /// The spare copies brought up to date, as the put-back of the snapshot `dir`.
    pub fn staged_for(&mut self, dir: &Path) -> super::Staged {
        let mut staged = super::Staged::new(dir);
        for (rel, file) in std::mem::take(&mut self.ready) {
            staged.insert(&rel, file);
        }
        staged
    }
}

impl Drop for PreCopy {
    fn drop(&mut self) {
        self.held.clear();
        for f in self.ready.values() {
            let _ = std::fs::remove_file(f);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether a database's header says WAL mode.
fn in_wal_mode(db: &Path) -> bool {
    let mut head = [0u8; 20];
    File::open(db)
        .and_then(|f| f.read_exact_at(&mut head, 0))
        .is_ok()
        && super::is_sqlite(db)
        && head[18] == 2
}

/// Free bytes for an unprivileged user in the file system of `dir`.
pub(super) fn free_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: a zeroed statvfs is a valid out-parameter; `c` is a NUL-terminated path.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot read the free space of {}", dir.display()));
    }
    Ok(s.f_bavail as u64 * s.f_frsize as u64)
}

/// Copies every database in WAL mode under `shared` into `snapshots/.tmp-pre-copy/`, each inside
/// a read transaction that stays open (see the module's text); other databases are left to the
/// gap. Checks the free disk first: an error when the copies would not fit (nothing is stopped
/// yet). A database that cannot be read now (locked by an app in exclusive mode) is skipped.
pub fn pre_copy(shared: &Path, snapshots: &Path, spares: bool) -> Result<PreCopy> {
    let wal: Vec<PathBuf> = super::databases(shared)?
        .into_iter()
        .filter(|rel| in_wal_mode(&shared.join(rel)))
        .collect();
    crate::sys::fsx::ensure_dir(snapshots, 0o700)?;
    let dir = snapshots.join(DIR);
    let _ = std::fs::remove_dir_all(&dir);
    let mut pre = PreCopy {
        dir: dir.clone(),
        held: BTreeMap::new(),
        ready: BTreeMap::new(),
        skipped: Vec::new(),
        bytes: 0,
    };
    if wal.is_empty() {
        return Ok(pre);
    }
    crate::sys::fsx::ensure_dir(&dir, 0o700)?;
    let need: u64 = wal
        .iter()
        .map(|rel| {
            let db = shared.join(rel);
            let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            len(&db) + len(&side(&db, "-wal"))
        })
        .sum();
    let free = free_bytes(&dir)?;
    // The spares (a put-back by rename) only where there is room for them too.
    let spares = spares && free >= 2 * need + margin(2 * need);
    if free < need + margin(need) {
        bail!(
            "not enough free disk for the snapshot of the data: {} MiB needed, {} MiB free in {}; \
             nothing was stopped. Make room (`deploy prune` removes old releases and their \
             snapshots), or set `backup: off`",
            (need + margin(need)).div_ceil(1 << 20),
            free >> 20,
            dir.display()
        );
    }
    for rel in wal {
        let copy = dir.join(rel.to_string_lossy().replace('/', "%"));
        match copy_one(&shared.join(&rel), &copy, spares) {
            Ok(held) => {
                pre.bytes += std::fs::metadata(&copy).map(|m| m.len()).unwrap_or(0);
                pre.held.insert(rel, held);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&copy);
                pre.skipped.push(format!("{}: {e:#}", rel.display()));
            }
        }
    }
    crate::sys::fsx::sync_dir(&dir)?;
    Ok(pre)
}

/// One database copied inside a read transaction left open; the copy synced.
fn copy_one(src: &Path, copy: &Path, spare: bool) -> Result<Held> {
    let early = File::open(side(src, "-shm")).ok();
    let before = early.as_ref().and_then(read_header);
    let conn = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", src.display()))?;
    super::no_checkpoint_on_close(&conn)?;
    conn.busy_timeout(std::time::Duration::from_secs(2))?;
    conn.execute_batch("BEGIN")?;
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    ensure!(mode == "wal", "not in WAL mode ({mode})");
    // The read transaction begins with this read; the files are the ones it reads.
    let _: i64 = conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))?;
    let ids = (file_id(src)?, file_id(&side(src, "-wal"))?);
    let shm = match early {
        Some(f) => f,
        None => File::open(side(src, "-shm")).context("cannot open the -shm")?,
    };
    let mut out = Connection::open(copy)?;
    out.execute_batch("PRAGMA synchronous=OFF; PRAGMA journal_mode=OFF;")?;
    rusqlite::backup::Backup::new(&conn, &mut out)
        .and_then(|b| b.run_to_completion(i32::MAX, std::time::Duration::ZERO, None))
        .with_context(|| format!("cannot copy {}", src.display()))?;
    drop(out);
    crate::signals::point("in-pre-copy");
    // Its mode now, not in the gap: there only its data is synced.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(copy, std::fs::Permissions::from_mode(0o600))?;
    File::open(copy)?
        .sync_all()
        .with_context(|| format!("cannot sync {}", copy.display()))?;
    // Made from the copy, never from the live file (which is not opened: see `Held`).
    let spare = spare
        .then(|| super::put_back::stage_file(copy, src, "spare-", Some(true)))
        .transpose()?
        .flatten();
    Ok(Held {
        _reader: conn,
        shm,
        copy: copy.to_path_buf(),
        spare,
        ids,
        before,
    })
}

/// The `-shm`'s header, if it reads whole within a few tries (a writer may be changing it).
fn read_header(shm: &File) -> Option<IndexHeader> {
    let mut buf = [0u8; 96];
    (0..5).find_map(|_| {
        let read = shm
            .read_exact_at(&mut buf, 0)
            .ok()
            .and_then(|()| IndexHeader::parse(&buf).ok());
        if read.is_none() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        read
    })
}

/// The copy of `rel` made before the stop brought up to the data now and moved to `dst` (see
/// the module's text), with a write lock held on the live database meanwhile; its schema, read
/// under that lock (the copy's, with no other opening). An error leaves `dst` missing: the
/// caller copies the database instead. Not synced (the caller syncs it and its directory).
pub fn finish(
    pre: &mut PreCopy,
    rel: &Path,
    live: &Path,
    dst: &Path,
) -> Option<Result<crate::node::schema::DbSchema>> {
    let mut held = pre.held.remove(rel)?;
    if file_id(live).ok() != Some(held.ids.0) {
        let _ = std::fs::remove_file(&held.copy);
        return Some(Err(anyhow::anyhow!(
            "{}: the database was replaced since the copy",
            rel.display()
        )));
    }
    let conn = match Connection::open_with_flags(
        live,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) {
        Ok(c) => c,
        Err(e) => return Some(Err(e.into())),
    };
    let done = super::no_checkpoint_on_close(&conn)
        .and_then(|()| conn.busy_timeout(std::time::Duration::from_secs(10)))
        .and_then(|()| conn.execute_batch("BEGIN IMMEDIATE"))
        .map_err(anyhow::Error::from)
        .and_then(|()| {
            let r = bring_up_to_date(&conn, &held, live).and_then(|()| {
                crate::node::schema::read(&conn)
                    .with_context(|| format!("cannot read the schema of {}", live.display()))
            });
            let _ = conn.execute_batch("ROLLBACK");
            r
        })
        // Synced by the caller, with its directory.
        .and_then(|schema| {
            std::fs::rename(&held.copy, dst).context("cannot move the copy")?;
            Ok(schema)
        });
    if done.is_err() {
        let _ = std::fs::remove_file(&held.copy);
    } else if let Some(spare) = held.spare.take() {
        pre.ready.insert(rel.to_path_buf(), spare);
    }
    // This connection goes before the held one and its descriptor of the -shm (see `Held`).
    drop(conn);
    drop(held);
    Some(done.with_context(|| format!("the copy of {} made before the stop", rel.display())))
}

/// Under the write lock: the copy gets every page of the committed `-wal` and the size now.
fn bring_up_to_date(conn: &Connection, held: &Held, live: &Path) -> Result<()> {
    let (wal_path, shm_path) = (side(live, "-wal"), side(live, "-shm"));
    ensure!(
        (file_id(live)?, file_id(&wal_path)?) == held.ids,
        "the database was replaced since the copy"
    );
    let page_size: u32 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let page_count: u32 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    ensure!(
        file_id(&shm_path)? == (held.shm.metadata()?.dev(), held.shm.metadata()?.ino()),
        "the -shm was replaced since the copy"
    );
    let mut shm = [0u8; 96];
    held.shm
        .read_exact_at(&mut shm, 0)
        .with_context(|| format!("cannot read {}", shm_path.display()))?;
    let hdr = IndexHeader::parse(&shm)?;
    // No frame committed: nothing changed since the copy (a change after it would be in a frame
    // that nothing could have taken away meanwhile), and a fresh header's sizes are not set yet.
    ensure!(
        hdr.max_frame == 0 || (hdr.page_size == page_size && hdr.n_page == page_count),
        "the -shm's header (page size {}, {} pages) is not the database's ({page_size}, \
         {page_count})",
        hdr.page_size,
        hdr.n_page
    );
    let wal =
        File::open(&wal_path).with_context(|| format!("cannot read {}", wal_path.display()))?;
    let pages = committed_pages(&wal, &hdr, held.before.as_ref())?;
    apply(
        &held.copy,
        held.spare.as_deref(),
        &wal,
        &pages,
        (page_size, page_count),
    )
}

/// Writes each page's newest content into the copy (and the spare), gives them the database's
/// size, and marks the copy a rollback-journal database (a snapshot has no `-wal`; the spare
/// stays in WAL mode, as the live file).
fn apply(
    copy: &Path,
    spare: Option<&Path>,
    wal: &File,
    pages: &BTreeMap<u32, u64>,
    (size, count): (u32, u32),
) -> Result<()> {
    let open = |p: &Path| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(p)
            .with_context(|| format!("cannot open {}", p.display()))
    };
    let mut files = vec![open(copy)?];
    if let Some(s) = spare {
        files.push(open(s)?);
    }
    let size64 = size as u64;
    let had = (files[0].metadata()?.len() / size64) as u32;
    ensure!(
        !pages.is_empty() || had == count,
        "the database has {count} pages, the copy {had}, and no frame says why"
    );
    // SQLite never writes the page that holds the lock byte (at 1 GiB).
    let lock_page = (0x4000_0000 / size) + 1;
    if let Some(p) = (had + 1..=count).find(|p| *p != lock_page && !pages.contains_key(p)) {
        bail!("page {p} is neither in the copy nor in the -wal");
    }
    let mut buf = vec![0u8; size as usize];
    for (i, (pgno, at)) in pages.iter().filter(|(p, _)| **p <= count).enumerate() {
        wal.read_exact_at(&mut buf, *at)?;
        for f in &files {
            f.write_all_at(&buf, (*pgno as u64 - 1) * size64)?;
        }
        if i == pages.len() / 2 {
            crate::signals::point("in-snapshot");
        }
    }
    for f in &files {
        f.set_len(count as u64 * size64)?;
    }
    files[0].write_all_at(&[1, 1], 18)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testutil::scratch;
    use super::*;

    /// Every row of every table, in order: the data, whatever the pages.
    fn dump(db: &Path) -> Vec<String> {
        let c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let mut out = Vec::new();
        for t in ["a", "b"] {
            let mut st = c
                .prepare(&format!("SELECT * FROM {t} ORDER BY rowid"))
                .unwrap();
            let rows = st
                .query_map([], |r| {
                    Ok(format!("{:?}/{:?}", r.get_ref(0)?, r.get_ref(1)?))
                })
                .unwrap();
            out.extend(rows.map(|r| format!("{t}: {}", r.unwrap())));
        }
        out
    }

    /// A test's directory, its `shared/` and snapshots, and a WAL database there with two
    /// empty tables, open.
    fn app_db(name: &str) -> (PathBuf, PathBuf, PathBuf, PathBuf, Connection) {
        let d = scratch(&format!("delta-{name}"));
        let (shared, snaps) = (d.join("shared"), d.join("snaps"));
        std::fs::create_dir_all(&shared).unwrap();
        let db = shared.join("app.db");
        let w = writer(&db);
        w.execute_batch("CREATE TABLE a (k, v); CREATE TABLE b (k, v);")
            .unwrap();
        (d, shared, snaps, db, w)
    }

    fn writer(db: &Path) -> Connection {
        let w = Connection::open(db).unwrap();
        w.pragma_update(None, "journal_mode", "WAL").unwrap();
        w
    }

    fn fill(w: &Connection, table: &str, from: i64, n: i64) {
        w.execute_batch("BEGIN").unwrap();
        for i in from..from + n {
            w.execute(
                &format!("INSERT INTO {table} VALUES (?1, hex(randomblob(200)))"),
                [i],
            )
            .unwrap();
        }
        w.execute_batch("COMMIT").unwrap();
    }

    fn salts(db: &Path) -> Vec<u8> {
        std::fs::read(side(db, "-wal")).unwrap()[16..24].to_vec()
    }

    /// The copy, finished, against the database now: `before` runs before the copy, `change`
    /// between the copy and the snapshot; `restarts`: whether the WAL began again meanwhile.
    fn snapshot_equals_the_data(
        name: &str,
        before: fn(&Connection),
        change: fn(&Connection),
        restarts: bool,
    ) {
        let (d, shared, snaps, db, w) = app_db(name);
        fill(&w, "a", 0, 2000);
        fill(&w, "b", 0, 500);
        before(&w);
        let mut pre = pre_copy(&shared, &snaps, true).unwrap();
        assert_eq!((pre.databases(), pre.skipped.len()), (1, 0));
        let salt = salts(&db);
        change(&w);
        assert_eq!(salts(&db) != salt, restarts, "the WAL began again");
        let dst = d.join("snapshot.db");
        finish(&mut pre, Path::new("app.db"), &db, &dst)
            .unwrap()
            .unwrap();
        assert_eq!(dump(&dst), dump(&db));
        // The spare, beside the live file: the same data, in WAL mode, ready to be renamed.
        let staged = pre.staged_for(&d);
        let spare = shared.join(".deploy-put-back-spare-app.db");
        assert!(!staged.is_empty() && spare.exists());
        assert_eq!(dump(&spare), dump(&db));
        let wal: String = Connection::open_with_flags(&spare, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(wal, "wal");
        drop(staged);
        assert!(!spare.exists(), "an unused spare is removed");
        let c = Connection::open(&dst).unwrap();
        let check: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let mode: String = c
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "delete", "a snapshot has no -wal");
        drop(pre);
        assert!(!snaps.join(DIR).exists());
    }

    #[test]
    fn rows_added_changed_and_deleted_after_the_copy_are_in_the_snapshot() {
        snapshot_equals_the_data(
            "change",
            |_| {},
            |w| {
                fill(w, "a", 5000, 300);
                w.execute("UPDATE a SET v = 'changed' WHERE k % 7 = 0", [])
                    .unwrap();
                w.execute("DELETE FROM b WHERE k % 3 = 0", []).unwrap();
            },
            false,
        );
    }

    #[test]
    fn checkpoints_after_the_copy_and_a_smaller_database_are_followed() {
        snapshot_equals_the_data(
            "checkpoint",
            |_| {},
            |w| {
                w.execute("UPDATE a SET v = 'x' WHERE k < 100", []).unwrap();
                // A checkpoint copies what it may into the file, the WAL goes on after it.
                let _: (i64, i64, i64) = w
                    .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .unwrap();
                w.execute("DELETE FROM a WHERE k > 100", []).unwrap();
                w.execute_batch("VACUUM").unwrap();
                fill(w, "b", 9000, 50);
            },
            false,
        );
    }

    #[test]
    fn a_database_fully_checkpointed_at_the_copy_follows_a_restarted_wal() {
        snapshot_equals_the_data(
            "restart",
            // Everything checkpointed: the copy reads the file alone.
            |w| {
                let _: i64 = w
                    .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(0))
                    .unwrap();
            },
            // The next write begins the WAL again from its start, with new salts.
            |w| {
                fill(w, "b", 8000, 100);
                w.execute("UPDATE b SET v = 'y'", []).unwrap();
                fill(w, "a", 7000, 10);
            },
            true,
        );
    }

    #[test]
    fn a_wal_of_many_index_blocks_is_followed() {
        snapshot_equals_the_data(
            "big",
            |w| {
                w.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
                fill(w, "a", 100_000, 20_000);
            },
            |w| {
                fill(w, "b", 100_000, 20_000);
                w.execute("UPDATE a SET v = 'z' WHERE k % 11 = 0", [])
                    .unwrap();
            },
            false,
        );
    }

    #[test]
    fn a_database_nobody_had_open_and_nobody_wrote_since_is_the_copy() {
        // Closed by all, its -wal folded in and gone: the copy's connection opens it first (a
        // fresh -shm, whose header's sizes are not set yet), and nothing writes until the gap.
        let (d, shared, snaps, db, w) = app_db("fresh");
        fill(&w, "a", 0, 300);
        drop(w);
        assert!(!side(&db, "-wal").exists());
        let mut pre = pre_copy(&shared, &snaps, false).unwrap();
        let dst = d.join("snapshot.db");
        finish(&mut pre, Path::new("app.db"), &db, &dst)
            .unwrap()
            .unwrap();
        assert_eq!(dump(&dst), dump(&db));
    }

    #[test]
    fn a_database_replaced_since_the_copy_is_refused() {
        let (d, shared, snaps, db, w) = app_db("replaced");
        fill(&w, "a", 0, 10);
        let mut pre = pre_copy(&shared, &snaps, true).unwrap();
        drop(w);
        let other = shared.join("other.db");
        let o = writer(&other);
        o.execute_batch("CREATE TABLE a (k, v);").unwrap();
        drop(o);
        std::fs::rename(&other, &db).unwrap();
        let dst = d.join("snapshot.db");
        let e = finish(&mut pre, Path::new("app.db"), &db, &dst)
            .unwrap()
            .unwrap_err();
        assert!(format!("{e:#}").contains("replaced"), "{e:#}");
        assert!(!dst.exists());
    }
}
