//! Snapshots at any size, on a real node, on this machine's ext4 and on an XFS with reflinks (a
//! loop file): with the app writing until the stop and Litestream running, the snapshot is
//! exactly the data at the stop (copied before the stop and brought up to date in the gap on
//! ext4, cloned on XFS); a SIGKILL in the middle of the copy or of its update leaves the app
//! serving on whole data; the put-back of a failed release and `rollback --with-data` put
//! exactly the snapshot's data back, as a new file with the live one's mode and journal mode;
//! `deploy releases` says each snapshot's size and method, and old snapshots go with their
//! release.

mod common;
use common::{Options, Project};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The checksum of every table of a database but Litestream's (`_litestream_%`), and of its
/// schema, read as the node user (sqlite3's `sha3_query`), without writing it.
fn table_sums(p: &Project, db: &Path) -> String {
    let q = "SELECT name || ' ' || hex(sha3_query('SELECT * FROM \"' || name || '\"')) FROM \
             sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_litestream\\_%' ESCAPE '\\' \
             ORDER BY name; SELECT 'schema ' || hex(sha3_query('SELECT type, name, sql FROM \
             sqlite_master WHERE name NOT LIKE ''\\_litestream\\_%'' ESCAPE ''\\'' ORDER BY \
             name'));";
    let out = p
        .user("sqlite3", &["-readonly", db.to_str().unwrap(), q])
        .ok();
    assert!(
        out.stdout.contains("hits "),
        "{}: {}",
        db.display(),
        out.stdout
    );
    out.stdout
}

/// Rows of the app's table, as the node user.
fn count(p: &Project, db: &Path) -> i64 {
    p.user(
        "sqlite3",
        &[
            "-readonly",
            db.to_str().unwrap(),
            "SELECT COUNT(*) FROM hits",
        ],
    )
    .ok()
    .stdout
    .trim()
    .parse()
    .unwrap()
}

/// About `mb` MB of random rows in the app's table.
fn grow(p: &Project, mb: u32) {
    let db = p.root().join("shared/data/app.db");
    let rows = mb * 1024 * 1024 / 300;
    p.user(
        "sqlite3",
        &[
            db.to_str().unwrap(),
            &format!(
                "INSERT INTO hits (version) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + \
                 1 FROM c WHERE x < {rows}) SELECT hex(randomblob(120)) FROM c;"
            ),
        ],
    )
    .ok();
}

fn live_db(p: &Project) -> PathBuf {
    p.root().join("shared/data/app.db")
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

fn journal_mode(p: &Project) -> String {
    p.user(
        "sqlite3",
        &[live_db(p).to_str().unwrap(), "PRAGMA journal_mode"],
    )
    .ok()
    .stdout
    .trim()
    .to_string()
}

/// A failed release puts back the gap's snapshot, `rollback --with-data` the target's; both
/// exactly, as a new file (`how`: a clone, or a copy made before the stop) with the live file's
/// mode and WAL mode. What the failed release left is kept (`kept`: cloned, or the file moved).
fn the_put_back_is_exact(p: &Project, how: &str, kept: &str) {
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v1"]).ok();
    grow(p, 8);
    for _ in 0..5 {
        p.body("/");
    }
    let db = live_db(p);
    p.user("chmod", &["0640", db.to_str().unwrap()]).ok();

    // v2 migrates (deletes rows) and fails its health check: v1 and its data go back.
    p.write("assets/startup.sql", "DELETE FROM hits WHERE id % 2 = 0;");
    p.write("assets/fail-health", "");
    let (was, rows) = (inode(&db), count(p, &db));
    let r = p.deploy(&["-v", "release", "v2"]).failed();
    r.says(&format!("put back: data/app.db ({how})"));
    let gap = common::only_snapshot(&p.root(), "v1").join("data/app.db");
    assert_eq!(table_sums(p, &db), table_sums(p, &gap), "the data v1 left");
    let failed = common::only_snapshot(&p.root(), "v2");
    assert_eq!(manifest(&failed)["method"], kept);
    assert_eq!(
        count(p, &failed.join("data/app.db")),
        rows - rows / 2,
        "what v2 left"
    );
    assert_ne!(inode(&db), was, "a new file renamed into place");
    assert_eq!(mode_of(&db), 0o640, "the live file's mode");
    assert_eq!(journal_mode(p), "wal");
    assert!(p.body("/").starts_with("example-app v1 "));

    // v3 goes live on it and writes; `rollback --with-data` puts back what v1 left at v3's stop.
    p.remove("assets/startup.sql");
    p.remove("assets/fail-health");
    p.deploy(&["release", "v3"]).ok();
    let left = common::only_snapshot(&p.root(), "v1").join("data/app.db");
    let kept = table_sums(p, &left);
    let rows = count(p, &left);
    for _ in 0..5 {
        p.body("/");
    }
    assert_eq!(count(p, &db), rows + 5);
    let (was, snapshot) = (inode(&db), inode(&left));
    let r = p.deploy(&["-v", "rollback", "--with-data", "--yes"]).ok();
    r.says(&format!("put back: data/app.db ({how})"));
    assert_eq!(table_sums(p, &db), kept, "exactly what v1 left");
    assert_ne!(inode(&db), was, "a new file renamed into place");
    assert_eq!(inode(&left), snapshot, "never the snapshot itself");
    assert_eq!(mode_of(&db), 0o640);
    assert_eq!(journal_mode(p), "wal");
    assert!(p.body("/").starts_with("example-app v1 "));
}

#[test]
fn on_ext4_the_put_back_is_a_copy_made_before_the_stop_renamed_into_place() {
    let p = Project::new("sn2-back", 18800, Options::default());
    the_put_back_is_exact(&p, "copied before the stop", "move");
}

#[test]
fn with_reflinks_the_put_back_is_a_clone_renamed_into_place() {
    let p = Project::new("sn2-backxfs", 18802, Options::default());
    let _disk = common::SmallDisk::xfs(&p.root(), 600);
    the_put_back_is_exact(&p, "clone", "clone");
}

#[test]
fn releases_show_each_snapshots_size_and_method_and_old_snapshots_go_with_their_release() {
    let p = Project::new(
        "sn2-list",
        18804,
        Options {
            keep_releases: 2,
            ..Options::default()
        },
    );
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v1"]).ok();
    grow(&p, 2);
    p.deploy(&["release", "v2"]).ok();
    let snap = common::only_snapshot(&p.root(), "v1");
    let size = std::fs::metadata(snap.join("data/app.db")).unwrap().len();

    let r = p.deploy(&["releases", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let v1 = &v["releases"][1];
    assert_eq!(v1["version"], "v1", "{v}");
    assert_eq!(v1["snapshot_bytes"], size, "{v}");
    assert_eq!(v1["snapshot_method"], "pre-copy", "{v}");
    assert!(v["releases"][0]["snapshot_bytes"].is_null(), "{v}");
    let text = p.deploy(&["releases"]).ok().stdout;
    assert!(
        text.contains(" SIZE ") && text.contains(" METHOD "),
        "{text}"
    );
    let row = text.lines().find(|l| l.contains(" v1 ")).unwrap();
    assert!(
        row.contains(" MiB ") && row.contains(" pre-copy "),
        "{text}"
    );

    // Beyond keep_releases, a release goes with its snapshots.
    for v in ["v3", "v4", "v5"] {
        p.deploy(&["release", v]).ok();
    }
    let releases = p.releases_on_disk();
    assert_eq!(releases, ["v4", "v5"], "{releases:?}");
    assert!(!snap.exists(), "v1's snapshot went with v1");
    let left: Vec<_> = walkdir(&p.root().join("releases"))
        .into_iter()
        .filter(|d| d.ends_with("snapshots"))
        .collect();
    assert_eq!(
        left,
        [p.root().join("releases/v4/.deploy/snapshots")],
        "only the kept releases' snapshots are left"
    );
}

/// Every directory under `dir`.
fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
                all.push(e.path());
            }
        }
    }
    all
}

/// GET / (a row each) as fast as the app answers, until stopped; the answers.
fn writer(port: u16) -> (Arc<AtomicBool>, std::thread::JoinHandle<usize>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut answered = 0;
        while !s.load(Ordering::SeqCst) {
            let ok = ureq::get(format!("http://127.0.0.1:{port}/"))
                .call()
                .is_ok_and(|r| r.status() == 200);
            if ok {
                answered += 1;
            } else {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        answered
    });
    (stop, thread)
}

/// The snapshot's manifest.
fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("snapshot.json")).unwrap()).unwrap()
}

/// With the app writing as fast as it answers and Litestream running, a release whose run dies
/// right after its snapshot (the app stays stopped, its data as at the stop): the snapshot holds
/// exactly the live data, every table but Litestream's. Between the copy before the stop and
/// the stop, rows are added and rows copied already are changed.
fn the_snapshot_is_the_data_at_the_stop(p: &Project, method: &str) {
    let replica = p.file_replica();
    p.add_to_config(&format!(
        "replicate:\n  url: file://{}\n",
        replica.display()
    ));
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v1"]).ok();
    grow(p, 40);
    p.without_server_recovery();
    let db = live_db(p);
    let (stop, thread) = writer(p.port);
    let release = p
        .deploy_cmd(
            &[(
                "DEPLOY_TEST_HOOK",
                "sleep@after-pre-copy,kill@after-snapshot",
            )],
            &["-v", "release", "v2"],
        )
        .spawn()
        .unwrap();
    p.wait_for_journal("done", "pre-copy");
    let copied = count(p, &db);
    // Rows the copy holds already change while the app goes on writing.
    p.user(
        "sqlite3",
        &[
            "-cmd",
            ".timeout 10000",
            db.to_str().unwrap(),
            "UPDATE hits SET version = 'changed ' || id WHERE id % 53 = 0",
        ],
    )
    .ok();
    let r = Project::wait(release);
    stop.store(true, Ordering::SeqCst);
    let answered = thread.join().unwrap();
    r.says("died (signal 9");
    let snap = common::only_snapshot(&p.root(), "v1");
    assert_eq!(manifest(&snap)["method"], method, "{}", r.stderr);
    let at_stop = snap.join("data/app.db");
    assert!(
        count(p, &at_stop) > copied,
        "rows were written between the copy and the stop ({answered} answered)"
    );
    assert_eq!(
        table_sums(p, &db),
        table_sums(p, &at_stop),
        "the snapshot is the data at the stop"
    );
    // The replica's position at the stop is recorded beside it (the run died: unconfirmed).
    let m = manifest(&snap);
    let txid = m["replica"]["data/app.db"]["txid"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(txid.len(), 16, "{m}");
    assert!(m["replica"]["data/app.db"]["confirmed_at"].is_null(), "{m}");

    the_next_release_puts_it_right_and_the_replica_gives_the_stop_back(p, &db, &replica);
}

#[track_caller]
fn the_next_release_puts_it_right_and_the_replica_gives_the_stop_back(
    p: &Project,
    db: &Path,
    replica: &Path,
) {
    // The next release puts the interrupted one right, with every row; after its gap the
    // replica is seen to hold the data at its stop, and gives exactly that data back.
    let rows = count(p, db);
    p.deploy(&["release", "v3"]).ok();
    assert_eq!(count(p, db), rows);
    let snap = common::only_snapshot(&p.root(), "v1");
    let m = manifest(&snap);
    let pos = &m["replica"]["data/app.db"];
    assert!(pos["confirmed_at"].is_string(), "{m}");
    let out = replica.with_file_name(format!("{}-at-stop.db", p.app));
    let _ = std::fs::remove_file(&out);
    p.user(
        "litestream",
        &[
            "restore",
            "-txid",
            pos["txid"].as_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            &format!("file://{}/data/app.db", replica.display()),
        ],
    )
    .ok();
    assert_eq!(
        table_sums(p, &out),
        table_sums(p, &snap.join("data/app.db")),
        "the replica at the recorded position is the data at the stop"
    );
}

#[test]
fn on_ext4_the_snapshot_is_copied_before_the_stop_and_is_the_data_at_the_stop() {
    let p = Project::new("sn2-load", 18806, Options::default());
    the_snapshot_is_the_data_at_the_stop(&p, "pre-copy");
}

#[test]
fn with_reflinks_the_snapshot_is_a_clone_of_the_data_at_the_stop_under_load() {
    let p = Project::new("sn2-loadxfs", 18808, Options::default());
    let _disk = common::SmallDisk::xfs(&p.root(), 700);
    the_snapshot_is_the_data_at_the_stop(&p, "clone");
}

/// Until the app answers as `version` and no swap is left to put right.
#[track_caller]
fn settled_as(p: &Project, version: &str) {
    let t = Instant::now();
    loop {
        let answers = p
            .get("/")
            .is_ok_and(|(s, b)| s == 200 && b.starts_with(&format!("example-app {version} ")));
        if answers && !p.root().join(".deploy/swap.journal").exists() {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the app answers as {version}, with no command"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn integrity(p: &Project) -> String {
    p.user(
        "sqlite3",
        &[live_db(p).to_str().unwrap(), "PRAGMA integrity_check"],
    )
    .ok()
    .stdout
    .trim()
    .to_string()
}

#[test]
fn a_sigkill_in_the_middle_of_the_copy_or_of_its_update_leaves_the_app_serving_on_whole_data() {
    let p = Project::new("sn2-kill", 18810, Options::default());
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v1"]).ok();
    grow(&p, 10);
    let db = live_db(&p);
    for (i, point) in ["in-pre-copy", "in-snapshot"].iter().enumerate() {
        let rows = count(&p, &db);
        let (stop, thread) = writer(p.port);
        std::thread::sleep(Duration::from_millis(300));
        let r = p.deploy_env(
            &[("DEPLOY_TEST_HOOK", &format!("kill@{point}"))],
            &["release", &format!("k{i}")],
        );
        r.says("died (signal 9");
        // With no command, the server puts it right: v1 serves, every row whole.
        settled_as(&p, "v1");
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
        let answered = thread.join().unwrap() as i64;
        assert!(answered > 0, "{point}: the app wrote");
        assert_eq!(integrity(&p), "ok", "{point}");
        assert!(
            count(&p, &db) >= rows + answered,
            "{point}: every row the app said it wrote is there"
        );
    }
    // The next release goes through, its snapshot taken the fast way.
    p.deploy(&["release", "v2"]).ok();
    let snap = common::only_snapshot(&p.root(), "v1");
    assert_eq!(manifest(&snap)["method"], "pre-copy");
}
