//! The schema of the SQLite data, as a rollback compares it: one fingerprint per database (a
//! SHA-256 of its `sqlite_master` rows and `PRAGMA user_version`), recorded with the data each
//! release leaves (in its snapshot's manifest), and read from `shared/` when a rollback asks
//! whether the release it goes to knows today's data. [`diff`] and [`Change`] say what changed
//! (databases, tables, columns, user_version); they are pure.

use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// The schema of one database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbSchema {
    /// SHA-256 (hex) of the sorted (type, name, sql) rows of `sqlite_master`, without SQLite's
    /// own (`sqlite_%`) and Litestream's (`_litestream_%`) objects and without `rootpage` (a
    /// VACUUM moves pages, the schema stays), followed by `user_version`.
    pub fingerprint: String,
    pub user_version: i64,
    /// Each table's columns, in order: what lets a refusal say which ones came or went.
    #[serde(default)]
    pub tables: BTreeMap<String, Vec<String>>,
}

/// The schema of every database under a directory, by its path there (`data/app.db`).
pub type Schemas = BTreeMap<String, DbSchema>;

/// One row of `sqlite_master` as the fingerprint takes it.
struct Object {
    kind: String,
    name: String,
    sql: Option<String>,
}

/// The fingerprint of sorted objects and a user_version. Each field is length-prefixed, so no
/// two different schemas hash the same bytes. Pure.
fn fingerprint(objects: &[Object], user_version: i64) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    for o in objects {
        field(o.kind.as_bytes());
        field(o.name.as_bytes());
        match &o.sql {
            Some(sql) => field(sql.as_bytes()),
            None => field(b"\0null"),
        }
    }
    field(&user_version.to_le_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The schema of an open database.
pub fn read(conn: &Connection) -> Result<DbSchema> {
    let mut stmt = conn.prepare(
        "SELECT type, name, sql FROM sqlite_master \
         WHERE name NOT GLOB 'sqlite_*' AND name NOT GLOB '_litestream_*' \
           AND tbl_name NOT GLOB '_litestream_*' \
         ORDER BY type, name",
    )?;
    let objects = stmt
        .query_map([], |r| {
            Ok(Object {
                kind: r.get(0)?,
                name: r.get(1)?,
                sql: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let user_version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let mut tables = BTreeMap::new();
    let mut columns = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    for o in objects.iter().filter(|o| o.kind == "table") {
        // A virtual table whose module this SQLite lacks has no columns to list: its sql
        // still counts in the fingerprint.
        let cols = columns
            .query_map([&o.name], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .unwrap_or_default();
        tables.insert(o.name.clone(), cols);
    }
    Ok(DbSchema {
        fingerprint: fingerprint(&objects, user_version),
        user_version,
        tables,
    })
}

/// The schema of one database file, opened read-only (a live one too: a reader never blocks
/// an app in WAL mode, and changes nothing).
pub fn of_file(path: &Path) -> Result<DbSchema> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| {
        format!(
            "cannot open the database {} to read its schema",
            path.display()
        )
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    read(&conn).with_context(|| format!("cannot read the schema of {}", path.display()))
}

/// The schema of every database under `dir` (`shared/`, or a snapshot).
pub fn of_dir(dir: &Path) -> Result<Schemas> {
    let mut all = Schemas::new();
    for rel in crate::node::snapshot::databases(dir)? {
        let schema = of_file(&dir.join(&rel))?;
        all.insert(rel.display().to_string(), schema);
    }
    Ok(all)
}

/// What changed in the data between what a release left (`then`) and today (`now`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A database that is there now and was not then.
    New(String),
    /// A database that was there then and is not now.
    Missing(String),
    /// A database whose schema differs.
    Schema {
        db: String,
        tables_added: Vec<String>,
        tables_removed: Vec<String>,
        /// `table.column`, in tables that were there both times.
        columns_added: Vec<String>,
        columns_removed: Vec<String>,
        /// `(then, now)`, when it differs.
        user_version: Option<(i64, i64)>,
    },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::New(db) => write!(f, "{db}: a database new since then"),
            Change::Missing(db) => write!(f, "{db}: missing now"),
            Change::Schema {
                db,
                tables_added,
                tables_removed,
                columns_added,
                columns_removed,
                user_version,
            } => {
                let mut parts = Vec::new();
                let mut list = |what: &str, items: &[String]| {
                    if !items.is_empty() {
                        let s = if items.len() > 1 { "s" } else { "" };
                        parts.push(format!("{what}{s} {}", items.join(", ")));
                    }
                };
                list("table added:", tables_added);
                list("table removed:", tables_removed);
                list("column added:", columns_added);
                list("column removed:", columns_removed);
                if let Some((then, now)) = user_version {
                    parts.push(format!("user_version {then} -> {now}"));
                }
                if parts.is_empty() {
                    parts.push("indexes, views, triggers or column definitions changed".into());
                }
                write!(f, "{db}: {}", parts.join("; "))
            }
        }
    }
}

/// Names in `a` that are not in `b`.
fn missing_from<'a, T>(
    a: impl Iterator<Item = &'a String>,
    b: &BTreeMap<String, T>,
) -> Vec<String> {
    a.filter(|k| !b.contains_key(*k)).cloned().collect()
}

/// What differs between one database's schema then and now. Pure.
fn db_change(db: &str, then: &DbSchema, now: &DbSchema) -> Change {
    let mut columns_added = Vec::new();
    let mut columns_removed = Vec::new();
    for (table, cols_then) in &then.tables {
        let Some(cols_now) = now.tables.get(table) else {
            continue;
        };
        let col = |c: &String| format!("{table}.{c}");
        columns_added.extend(cols_now.iter().filter(|c| !cols_then.contains(c)).map(col));
        columns_removed.extend(cols_then.iter().filter(|c| !cols_now.contains(c)).map(col));
    }
    Change::Schema {
        db: db.to_string(),
        tables_added: missing_from(now.tables.keys(), &then.tables),
        tables_removed: missing_from(then.tables.keys(), &now.tables),
        columns_added,
        columns_removed,
        user_version: (then.user_version != now.user_version)
            .then_some((then.user_version, now.user_version)),
    }
}

/// What changed from `then` (the data a release left) to `now`; empty when the schemas are
/// the same. A database new since then, or missing now, is a change. Pure.
pub fn diff(then: &Schemas, now: &Schemas) -> Vec<Change> {
    let mut changes = Vec::new();
    for (db, s_then) in then {
        match now.get(db) {
            None => changes.push(Change::Missing(db.clone())),
            Some(s_now) if s_now.fingerprint != s_then.fingerprint => {
                changes.push(db_change(db, s_then, s_now))
            }
            Some(_) => {}
        }
    }
    changes.extend(missing_from(now.keys(), then).into_iter().map(Change::New));
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_of(sql: &str) -> DbSchema {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(sql).unwrap();
        read(&c).unwrap()
    }

    const BASE: &str = "CREATE TABLE hits (id INTEGER PRIMARY KEY, version TEXT UNIQUE);";

    #[test]
    fn the_fingerprint_is_the_schema_not_the_rows_pages_or_litestream() {
        let a = schema_of(BASE);
        let b = schema_of(&format!(
            "{BASE} INSERT INTO hits (version) VALUES ('x'); \
             CREATE TABLE _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER); \
             CREATE TABLE _litestream_lock (id INTEGER); VACUUM;"
        ));
        assert_eq!(a, b);
        assert_eq!(a.tables["hits"], ["id", "version"]);
        let c = schema_of(&format!("{BASE} CREATE INDEX v ON hits (version);"));
        assert_ne!(
            a.fingerprint, c.fingerprint,
            "an index is part of the schema"
        );
        let d = schema_of(&format!("{BASE} PRAGMA user_version = 3;"));
        assert_ne!(a.fingerprint, d.fingerprint);
        assert_eq!(d.user_version, 3);
    }

    #[test]
    fn a_diff_names_tables_columns_user_version_and_databases() {
        let then = Schemas::from([
            ("data/app.db".to_string(), schema_of(BASE)),
            ("data/old.db".to_string(), schema_of(BASE)),
        ]);
        let now = Schemas::from([
            (
                "data/app.db".to_string(),
                schema_of(&format!(
                    "{BASE} ALTER TABLE hits ADD COLUMN extra TEXT; CREATE TABLE added (x); \
                     PRAGMA user_version = 2;"
                )),
            ),
            ("data/new.db".to_string(), schema_of(BASE)),
        ]);
        let changes = diff(&then, &now);
        let said: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            said,
            [
                "data/app.db: table added: added; column added: hits.extra; user_version 0 -> 2",
                "data/old.db: missing now",
                "data/new.db: a database new since then",
            ]
        );
        assert!(diff(&then, &then).is_empty());
        let idx = Schemas::from([(
            "data/app.db".to_string(),
            schema_of(&format!("{BASE} CREATE INDEX v ON hits (version);")),
        )]);
        let base = Schemas::from([("data/app.db".to_string(), schema_of(BASE))]);
        assert_eq!(
            diff(&base, &idx)[0].to_string(),
            "data/app.db: indexes, views, triggers or column definitions changed"
        );
    }
}
