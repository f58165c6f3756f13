//! Snapshots at any size, on a real node: where the file system has reflinks (an XFS on a loop
//! file here) a gap's snapshot is a clone of each database and its `-wal`, exactly the data at
//! the stop; `deploy check` says which method the server allows, here and on this machine's own
//! file system (where the WAL database is copied before the stop).

mod common;
use common::{Options, Project};

/// The one snapshot of `version`, and its manifest.
#[track_caller]
fn manifest(p: &Project, version: &str) -> (std::path::PathBuf, serde_json::Value) {
    let dir = common::only_snapshot(&p.root(), version);
    let text = std::fs::read_to_string(dir.join("snapshot.json")).unwrap();
    (dir, serde_json::from_str(&text).unwrap())
}

#[test]
fn on_a_file_system_with_reflinks_the_snapshot_is_a_clone_of_the_data_at_the_stop() {
    let p = Project::new("t-clone", 18560, Options::default());
    let _disk = common::SmallDisk::xfs(&p.root(), 600);
    p.deploy(&["setup"]).ok();
    p.deploy(&["check", "test"])
        .ok()
        .says("snapshots in the gap: reflink clones");
    p.deploy(&["release", "v1"]).ok();
    // About 40 MB of rows, some of them only in the -wal when the release stops it.
    let db = p.root().join("shared/data/app.db");
    p.user(
        "sqlite3",
        &[
            db.to_str().unwrap(),
            "INSERT INTO hits (version) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 \
             FROM c WHERE x < 300000) SELECT printf('%.120c', 'x') FROM c;",
        ],
    )
    .ok();
    for _ in 0..3 {
        p.body("/");
    }
    let rows: i64 = p
        .user(
            "sqlite3",
            &[db.to_str().unwrap(), "SELECT COUNT(*) FROM hits"],
        )
        .ok()
        .stdout
        .trim()
        .parse()
        .unwrap();
    p.deploy(&["release", "v2"]).ok();
    let (dir, m) = manifest(&p, "v1");
    assert_eq!(m["method"], "clone", "{m}");
    let copy = dir.join("data/app.db");
    assert_eq!(
        common::rows(&copy, "hits"),
        rows,
        "the data exactly as v1 left it"
    );
    assert!(
        !dir.join("data/app.db-shm").exists(),
        "-shm is never copied"
    );
    assert!(
        !dir.join("data/app.db-wal").exists(),
        "the clone's WAL is folded into it"
    );
    // And it puts back what it holds.
    p.deploy(&["rollback", "--with-data", "--yes"]).ok();
    assert!(p.body("/").starts_with("example-app v1 "));
}

#[test]
fn without_reflinks_the_snapshot_is_copied_before_the_stop_and_check_says_so() {
    let p = Project::new("t-copysnap", 18562, Options::default());
    p.with_v1_live();
    p.body("/");
    p.deploy(&["check", "test"])
        .ok()
        .says("snapshots in the gap: copies made before the stop");
    p.deploy(&["release", "v2"]).ok();
    let (_, m) = manifest(&p, "v1");
    assert_eq!(m["method"], "pre-copy", "{m}");
}
