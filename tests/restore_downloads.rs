//! `deploy restore` downloads the replica's list of databases together with the databases this
//! server replicated last, with a real Litestream: what the replica lists and this server did
//! not is downloaded next; what this server listed and the replica does not (a good replica or
//! a spoiled one) is never put in and fails nothing. Its report splits the databases' span into
//! the downloads, the app's stop between them and the placing.

mod common;
use common::Project;
use std::path::Path;
use std::time::Duration;

fn sql(p: &Project, db: &std::path::Path, q: &str) -> String {
    let r = p.user("sqlite3", &[db.to_str().unwrap(), q]);
    assert_eq!(r.code, 0, "{q}: {}", r.stderr);
    r.stdout.trim().to_string()
}

#[test]
fn the_list_and_the_databases_it_had_download_together_and_only_the_listed_go_in() {
    let p = common::replicated("rs2-dl", 18850, "", 7);
    let replica = std::path::PathBuf::from("/tmp/deploy-tests/replicas/rs2-dl");
    // Two databases replicated once, then gone from shared/ (and from the replica's list).
    let data = p.root().join("shared/data");
    replicate_two_databases_then_remove_and_spoil_them(&p, &replica, &data);
    // This server's own list now names those two and not app.db (Litestream stopped first: it
    // would ship the change to the replica).
    p.user(
        "systemctl",
        &["--user", "stop", "rs2-dl_test_litestream.service"],
    );
    sql(
        &p,
        &p.root().join(".deploy/replica-manifest.db"),
        "DELETE FROM databases; INSERT INTO databases VALUES ('data/bad.db'), ('data/old.db');",
    );
    // What a restore killed earlier left behind goes.
    let stale = p.root().join(".deploy/.restore-1");
    std::fs::create_dir_all(stale.join("data")).unwrap();
    std::fs::write(stale.join("data/leftover"), "x").unwrap();
    common::chown_to_node_user(&stale);

    let r = p.deploy(&["restore", "--overwrite"]).ok();
    r.says("Downloading the list of databases at file://");
    r.says(", and the 2 database(s) it had ... ok");
    r.says("Downloading the 1 other database(s) it lists ... ok");
    r.says("restored 1 database(s)");
    for name in ["old.db", "bad.db"] {
        assert!(!data.join(name).exists(), "{name}, unlisted, went in");
    }
    assert_eq!(p.body("/hits"), "7\n");
    let left: Vec<String> = std::fs::read_dir(p.root().join(".deploy"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".restore-"))
        .collect();
    assert!(left.is_empty(), "scratch directories left: {left:?}");

    the_next_restore_downloads_app_db_with_its_own_list(&p);
}

/// old.db and bad.db replicated once, then gone from shared/ and from the replica's list; bad.db's
/// replica spoiled.
#[track_caller]
fn replicate_two_databases_then_remove_and_spoil_them(p: &Project, replica: &Path, data: &Path) {
    for name in ["old.db", "bad.db"] {
        sql(
            p,
            &data.join(name),
            "PRAGMA journal_mode=WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);",
        );
    }
    p.deploy(&["release", "v2"]).ok();
    std::thread::sleep(Duration::from_millis(2500));
    for name in ["old.db", "bad.db"] {
        for side in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(data.join(format!("{name}{side}")));
        }
    }
    p.deploy(&["release", "v3"]).ok();
    std::thread::sleep(Duration::from_millis(2500));
    let mut spoiled = 0;
    for f in walkdir::WalkDir::new(replica.join("data/bad.db"))
        .into_iter()
        .flatten()
    {
        if f.file_type().is_file() {
            std::fs::write(f.path(), vec![0x5a; 4096]).unwrap();
            spoiled += 1;
        }
    }
    assert!(spoiled > 0, "no replica files of data/bad.db");
}

#[track_caller]
fn the_next_restore_downloads_app_db_with_its_own_list(p: &Project) {
    // Its list is this server's own again: the next restore downloads app.db with it, and says
    // how the span's parts add up.
    let r = p.deploy(&["--json", "restore", "--overwrite"]).ok();
    let done: serde_json::Value = r
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "done")
        .unwrap_or_else(|| panic!("no done event:\n{}", r.stdout));
    let ms = |k: &str| done[k].as_u64().unwrap_or_else(|| panic!("no {k}: {done}"));
    assert_eq!(done["databases"], serde_json::json!(["data/app.db"]));
    assert_eq!(
        ms("databases_own_ms"),
        ms("download_ms") + ms("place_ms"),
        "{done}"
    );
    let parts = ms("download_ms") + ms("stop_ms") + ms("place_ms");
    assert!(parts.abs_diff(ms("databases_ms")) <= 2, "{done}");
    assert!(ms("databases_ms") <= ms("restore_ms"), "{done}");
    assert!(ms("stop_ms") > 0, "the app's stop lies between: {done}");
    // Each `litestream restore` timed on its own, within the downloads' part.
    for each in ["_deploy/manifest.db", "data/app.db"] {
        let took = done["downloads_ms"][each]
            .as_u64()
            .unwrap_or_else(|| panic!("no time of {each}: {done}"));
        assert!(took <= ms("download_ms") + 1, "{done}");
    }
    let steps: Vec<&str> = r
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step")
        .filter_map(|e| e["step"].as_str().map(String::from))
        .filter(|s| s.starts_with("Downloading"))
        .map(|s| {
            if s.contains("it had") {
                "with"
            } else {
                "after"
            }
        })
        .collect();
    assert_eq!(
        steps,
        ["with"],
        "one download step, the databases with the list"
    );
    assert_eq!(p.body("/hits"), "7\n");
}

/// Bytes on disk under `dirs` as `deploy server` counts them: blocks, each file and directory
/// once.
fn disk_of(dirs: &[std::path::PathBuf]) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    dirs.iter()
        .flat_map(|d| walkdir::WalkDir::new(d).into_iter().flatten())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| !m.file_type().is_symlink() && seen.insert((m.dev(), m.ino())))
        .map(|m| m.blocks() * 512)
        .sum()
}

/// The entries of `.deploy/replaced/`, sorted (stamps sort by time).
fn replaced(p: &Project) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(p.root().join(".deploy/replaced"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn what_restores_replaced_is_pruned_to_the_newest_two_and_counted() {
    let p = common::replicated("rs2-prune", 18854, "", 3);
    let aside = p.root().join(".deploy/replaced");
    let mut made = Vec::new();
    for n in 0..3 {
        p.deploy(&["restore", "--overwrite"]).ok();
        made.push(replaced(&p).last().unwrap().clone());
        if n == 0 {
            // A prune killed between its rename and its removal left this.
            let left = aside.join(".pruning-2000-01-01T00:00:00.000Z");
            std::fs::create_dir_all(left.join("data")).unwrap();
            std::fs::write(left.join("data/app.db"), "x").unwrap();
            common::chown_to_node_user(&left);
        }
    }
    // The third restore, once the app was healthy, removed the first's (and the leftover).
    assert_eq!(replaced(&p), made[1..], "made {made:?}");
    // A restore killed while taking its snapshot left one with none complete: the next
    // release, once healthy, removes it and keeps the two.
    let broken = aside.join("2000-01-01T00:00:00.000Z");
    std::fs::create_dir_all(broken.join(".tmp-x")).unwrap();
    common::chown_to_node_user(&broken);
    p.deploy(&["release", "v2"]).ok();
    assert_eq!(replaced(&p), made[1..]);
    for stamp in &made[1..] {
        let kept = std::fs::read_dir(aside.join(stamp)).unwrap().count();
        assert_eq!(kept, 1, "{stamp}: one snapshot each");
    }

    // deploy server counts what is kept with the releases' snapshots.
    let r = p.deploy(&["--json", "server"]).ok();
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let app = doc["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["app"] == "rs2-prune")
        .unwrap_or_else(|| panic!("rs2-prune in {doc}"));
    let mut dirs = vec![aside.clone()];
    for rel in std::fs::read_dir(p.root().join("releases"))
        .unwrap()
        .flatten()
    {
        dirs.push(rel.path().join(".deploy/snapshots"));
    }
    assert!(disk_of(&dirs[..1]) > 0);
    assert_eq!(
        app["disk"]["snapshots"].as_u64().unwrap(),
        disk_of(&dirs),
        "{app}"
    );
}
