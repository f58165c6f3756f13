//! The ways a database is snapshotted in the gap itself: a reflink clone, a copy through
//! SQLite's backup API, or (in a put-back made ready before the stop) the file moved.

use super::Method;
use crate::node::schema;
use crate::sys::fsx;
use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};

/// A database (in WAL mode, nothing holding it) moved into the snapshot with its `-wal`, which
/// is then folded into it: its place is about to be taken by a put-back.
pub(super) fn move_database(src: &Path, dst: &Path) -> Result<schema::DbSchema> {
    let side = |p: &Path, s: &str| {
        let mut o = p.as_os_str().to_owned();
        o.push(s);
        PathBuf::from(o)
    };
    fsx::rename_durable(src, dst)?;
    if side(src, "-wal").exists() {
        fsx::rename_durable(&side(src, "-wal"), &side(dst, "-wal"))?;
    }
    let _ = std::fs::remove_file(side(src, "-shm"));
    let copy = Connection::open(dst)?;
    let _: String = copy.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))?;
    schema::read(&copy).with_context(|| format!("cannot read the schema of {}", dst.display()))
}

/// One consistent copy of a live database, through SQLite, in rollback-journal mode; returns
/// the copy's schema. The copy is written without SQLite's own syncs (it is a new file nobody
/// reads yet); the caller syncs it once before it is renamed into place, which keeps the gap
/// short.
pub(super) fn snapshot_database(src: &Path, dst: &Path) -> Result<(schema::DbSchema, Method)> {
    match clone_database(src, dst) {
        Ok(schema) => Ok((schema, Method::Clone)),
        Err(_) => Ok((copy_database(src, dst)?, Method::Copy)),
    }
}

/// A database as a reflink clone of its file and its `-wal` (never `-shm`), taken while a write
/// lock holds it (Litestream, which keeps running, cannot commit meanwhile; a hot rollback
/// journal is rolled back by SQLite first); then the clone's WAL is folded into it, at a cost
/// that grows with the changes in the WAL, not with the database. An error where the file
/// system cannot clone (the caller copies instead).
fn clone_database(src: &Path, dst: &Path) -> Result<schema::DbSchema> {
    // Opened before the connection and closed after it: closing a descriptor of the database
    // would drop the write lock this process holds on it (a rollback journal's lock is there).
    let file = std::fs::File::open(src)
        .with_context(|| format!("cannot open the database {}", src.display()))?;
    let conn = Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .with_context(|| format!("cannot open the database {}", src.display()))?;
    super::no_checkpoint_on_close(&conn)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // A read first: a hot journal left by a kill is rolled back now.
    let _: i64 = conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))?;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let cloned = (|| -> std::io::Result<()> {
        fsx::clone_from(&file, dst)?;
        let mut wal = src.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        if wal.exists() {
            let mut to = dst.as_os_str().to_owned();
            to.push("-wal");
            fsx::clone_file(&wal, Path::new(&to))?;
        }
        Ok(())
    })();
    let _ = conn.execute_batch("ROLLBACK");
    drop(conn);
    drop(file);
    if let Err(e) = cloned {
        let _ = std::fs::remove_file(dst);
        return Err(e).context("no reflink clone here");
    }
    let copy = Connection::open(dst)?;
    let _: String = copy.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))?;
    schema::read(&copy).with_context(|| format!("cannot read the schema of {}", dst.display()))
}

fn copy_database(src: &Path, dst: &Path) -> Result<schema::DbSchema> {
    // Read-write (never create): a `-wal` left by a crash is recovered, not skipped.
    let conn = Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .with_context(|| format!("cannot open the database {}", src.display()))?;
    super::no_checkpoint_on_close(&conn)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let mut copy = Connection::open(dst)?;
    copy.execute_batch("PRAGMA synchronous=OFF; PRAGMA journal_mode=OFF;")?;
    rusqlite::backup::Backup::new(&conn, &mut copy)
        .and_then(|b| b.run_to_completion(i32::MAX, std::time::Duration::ZERO, None))
        .with_context(|| format!("cannot snapshot {} into {}", src.display(), dst.display()))?;
    let _: String = copy.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))?;
    schema::read(&copy).with_context(|| format!("cannot read the schema of {}", dst.display()))
}
