//! What the snapshot module's unit tests share.

use rusqlite::Connection;
use std::path::{Path, PathBuf};

/// A fresh directory of its own for a test.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("deploy-snapshot-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The rows of the table `t`.
pub fn rows(db: &Path) -> i64 {
    Connection::open(db)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
        .unwrap()
}
