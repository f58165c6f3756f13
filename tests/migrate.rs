//! `deploy migrate-data` on a real node: an app deployed in place, with a live SQLite database in
//! WAL mode holding rows that are only in its `-wal` file, becomes releases/ + shared/, losing
//! nothing; across filesystems; interrupted at every step and rerun; refusals.

mod common;
use common::{Options, Project};
use std::path::Path;

/// Rows the old database has: 100 in the main file, 50 more only in the WAL.
const OLD_ROWS: i64 = 150;

/// An app deployed in place, as the node user: binary, assets, templates, Containerfile, `.env`
/// and `data/app.db` (WAL mode, the last 50 rows only in the WAL).
fn make_old_layout(p: &Project) {
    let root = p.root();
    let script = format!(
        r#"set -e
mkdir -p {root}/data {root}/assets {root}/templates
cp {dir}/dist/example-app {root}/example-app
cp -r {dir}/assets/. {root}/assets/
cp {dir}/Containerfile {root}/Containerfile
echo SECRET=old > {root}/.env
chmod 600 {root}/.env
echo '<p>old template</p>' > {root}/templates/page.html
python3 - {root}/data/app.db <<'PY'
import os, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("PRAGMA journal_mode=WAL")
c.execute("CREATE TABLE hits (id INTEGER PRIMARY KEY, at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, version TEXT NOT NULL)")
c.executemany("INSERT INTO hits (version) VALUES (?)", [("old",)] * 100)
c.commit()
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
c.execute("PRAGMA wal_autocheckpoint=0")
c.executemany("INSERT INTO hits (version) VALUES (?)", [("wal",)] * 50)
c.commit()
os._exit(0)  # no close, no checkpoint: the last 50 rows stay in app.db-wal
PY
"#,
        root = root.display(),
        dir = p.dir.display()
    );
    p.user("mkdir", &["-p", &root.display().to_string()]);
    let r = p.user("sh", &["-c", &script]);
    assert_eq!(r.code, 0, "{r:?}");
    let wal = std::fs::metadata(root.join("data/app.db-wal")).unwrap();
    assert!(wal.len() > 0, "rows only in the WAL");
    assert_eq!(
        common::rows(&root.join("data/app.db"), "hits"),
        100,
        "the main file alone has 100"
    );
}

#[track_caller]
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The new layout, complete, with every old row and file.
#[track_caller]
fn assert_migrated(p: &Project) {
    let root = p.root();
    assert_eq!(p.current().as_deref(), Some("legacy"));
    assert_eq!(
        names(&root),
        [".deploy", "current", "releases", "shared"],
        "nothing of the old layout is left beside the new one"
    );
    let legacy = root.join("releases/legacy");
    assert!(legacy.join("example-app").is_file());
    assert!(legacy.join("assets/greeting.txt").is_file());
    assert_eq!(
        std::fs::read_to_string(legacy.join("templates/page.html")).unwrap(),
        "<p>old template</p>\n"
    );
    assert!(std::fs::symlink_metadata(legacy.join("data"))
        .unwrap()
        .file_type()
        .is_symlink());
    let env = root.join("shared/.env");
    assert_eq!(std::fs::read_to_string(&env).unwrap(), "SECRET=old\n");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = std::fs::metadata(&env).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o600, "mode kept");
    assert_eq!(m.uid(), common::node().uid, "owner kept");
    assert!(
        names(&root.join("shared"))
            .iter()
            .all(|n| !n.starts_with(".migrate")),
        "no temp copies left: {:?}",
        names(&root.join("shared"))
    );
    let db = root.join("shared/data/app.db");
    let wal = root.join("shared/data/app.db-wal");
    if wal.exists() && std::fs::metadata(&wal).unwrap().len() > 0 {
        // Still in WAL form: count through SQLite as the node user.
        let r = p.user(
            "python3",
            &[
                "-c",
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute('PRAGMA integrity_check').fetchone()[0], c.execute('SELECT COUNT(*) FROM hits').fetchone()[0])",
                &db.display().to_string(),
            ],
        );
        assert_eq!(r.stdout.trim(), format!("ok {OLD_ROWS}"), "{r:?}");
    } else {
        assert_eq!(
            common::rows(&db, "hits"),
            OLD_ROWS,
            "every row, the WAL's too"
        );
    }
}

#[test]
fn an_in_place_deployment_becomes_releases_and_shared_and_a_release_sees_every_row() {
    let p = Project::new("t-migrate", 18310, Options::default());
    make_old_layout(&p);
    let before = names(&p.root());

    let r = p.deploy(&["migrate-data", "--dry-run"]).ok();
    r.prints("move   data/ -> shared/data/");
    r.prints("move   .env -> shared/.env");
    r.prints("move   example-app -> releases/legacy/example-app");
    r.prints("Dry run: nothing was changed.");
    assert_eq!(names(&p.root()), before, "the dry run changed nothing");

    // It asks; with no terminal to answer, nothing moves.
    let r = p.deploy(&["migrate-data"]).failed();
    r.says("move   data/ -> shared/data/");
    r.says("not confirmed, nothing was moved (pass --yes");
    let mut after = names(&p.root());
    after.retain(|n| n != ".deploy"); // the lock it took
    assert_eq!(after, before, "nothing moved without a yes");

    let r = p.deploy(&["migrate-data", "--yes"]).ok();
    r.says("Moving data to shared/data ... ok");
    r.says("current -> releases/legacy");
    assert_migrated(&p);

    // Idempotent.
    let r = p.deploy(&["migrate-data", "--yes"]).ok();
    r.says("nothing to migrate");
    assert_migrated(&p);

    // The first real release runs on the migrated data and sees every old row.
    p.with_v1_live();
    assert_eq!(p.body("/hits"), format!("{OLD_ROWS}\n"));
    let r = p.deploy(&["releases"]).ok();
    r.prints("legacy");
    // And the old version is one rollback away (its image built from its own files).
    p.deploy(&["rollback", "--to", "legacy"]).ok();
    assert!(p.body("/").starts_with("example-app legacy "));
    assert_eq!(p.body("/hits"), format!("{}\n", OLD_ROWS + 1));
}

#[test]
fn across_filesystems_and_interrupted_at_every_step_a_rerun_finishes_the_job() {
    // The points, from the binary (one source): a kill between the copy's rename and the
    // saving of its stage leaves both copies, which the rerun takes as the stage done.
    let points = common::Project::new("t-migpoints", 18313, Options::default())
        .deploy(&["test-points"])
        .ok()
        .stdout;
    let steps: Vec<&str> = points.lines().collect();
    assert!(steps.contains(&"migrate-after-rename"), "{steps:?}");
    for (i, step) in steps.iter().enumerate() {
        let p = Project::new(&format!("t-migfs{i}"), 18311, Options::default());
        make_old_layout(&p);
        // shared/ is another filesystem (a tmpfs), so data/ is copied, verified, then swapped.
        let _disk = common::SmallDisk::mount(&p.root().join("shared"), "64m");
        let r = p.deploy_env(
            &[("DEPLOY_TEST_HOOK", &format!("kill@{step}"))],
            &["migrate-data", "--yes"],
        );
        assert_eq!(r.signal, Some(9), "killed at {step} by the signal: {r:?}");
        let r = p.deploy(&["migrate-data", "--yes"]).ok();
        assert!(
            r.stderr.contains("an interrupted migration is under way"),
            "{step}: {}",
            r.stderr
        );
        assert_migrated(&p);
    }
}

#[test]
fn what_it_would_overwrite_or_a_live_writer_is_refused_and_nothing_changes() {
    let p = Project::new("t-migrefuse", 18312, Options::default());
    make_old_layout(&p);
    // A process that has the database open (the old app, started by hand).
    let mut holder = common::as_user(
        Path::new("python3"),
        &[
            "-c",
            "import sqlite3,sys,time; c=sqlite3.connect(sys.argv[1]); c.execute('SELECT 1 FROM hits').fetchone(); time.sleep(60)",
            &p.root().join("data/app.db").display().to_string(),
        ],
        &p.dir,
    )
    .spawn()
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let before = names(&p.root());
    let r = p.deploy(&["migrate-data", "--yes"]).failed();
    let _ = holder.kill();
    let _ = holder.wait();
    r.says("has the shared data open");
    r.says("(python3) has");
    let after: Vec<String> = names(&p.root())
        .into_iter()
        .filter(|n| n != ".deploy") // the lock file
        .collect();
    assert_eq!(after, before, "nothing moved");

    // shared/data already holds something: migrate-data does not overwrite it.
    p.user(
        "mkdir",
        &["-p", &p.root().join("shared/data").display().to_string()],
    );
    p.user(
        "touch",
        &[&p.root().join("shared/data/other.db").display().to_string()],
    );
    let r = p.deploy(&["migrate-data", "--yes"]).failed();
    r.says("already exists and is not empty");
    r.says("Nothing was changed");
    assert!(p.root().join("data/app.db").is_file());
    assert!(!p.root().join("releases").exists());
    assert!(p.current().is_none());
}

#[test]
fn migrate_data_on_a_node_that_replicates_hands_the_moved_data_to_litestream() {
    let p = Project::new("t-migrep", 18386, Options::default());
    let replica = p.file_replica();
    p.add_to_config(&format!(
        "replicate:\n  url: file://{}\n",
        replica.display()
    ));
    make_old_layout(&p);
    p.deploy(&["setup"]).ok();
    p.deploy(&["migrate-data", "--yes"]).ok();
    p.deploy(&["status"])
        .ok()
        .prints("replication:  data/app.db: replicating");
    p.deploy(&["release", "v1"]).ok();
    assert_eq!(p.body("/hits"), format!("{OLD_ROWS}\n"));
    std::thread::sleep(std::time::Duration::from_millis(2500));
    common::lose_the_server(&p);
    p.deploy(&["restore"]).ok();
    assert_eq!(
        p.body("/hits"),
        format!("{OLD_ROWS}\n"),
        "every migrated row, from the replica"
    );
}
