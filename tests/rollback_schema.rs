//! Snapshots that are never destroyed by accident (`release --replace`, `rollback --with-data`
//! to the stopped live release), and a rollback that knows the schema of the data: on a real
//! node, with a migration run in the gap by the example app (`run-sql`).

mod common;
use common::{Options, Project};
use std::path::{Path, PathBuf};

/// The snapshots of a release: (directory, kind from its manifest), oldest first.
fn snapshots(p: &Project, version: &str) -> Vec<(PathBuf, String)> {
    let dir = p
        .root()
        .join("releases")
        .join(version)
        .join(".deploy/snapshots");
    let mut all: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    all.sort();
    all.into_iter()
        .map(|d| {
            let manifest = std::fs::read_to_string(d.join("snapshot.json")).unwrap_or_default();
            let kind = serde_json::from_str::<serde_json::Value>(&manifest)
                .ok()
                .and_then(|m| m["kind"].as_str().map(String::from))
                .unwrap_or_else(|| "left".into());
            (d, kind)
        })
        .collect()
}

/// The one snapshot of a kind a release has.
#[track_caller]
fn snapshot_of(p: &Project, version: &str, kind: &str) -> PathBuf {
    let all = snapshots(p, version);
    let of: Vec<&PathBuf> = all
        .iter()
        .filter(|(_, k)| k == kind)
        .map(|(d, _)| d)
        .collect();
    assert_eq!(of.len(), 1, "{version}: one {kind} snapshot in {all:?}");
    of[0].clone()
}

/// The columns of the hits table, read with the sqlite3 shell as the node user.
fn columns(p: &Project, db: &Path) -> String {
    let db = db.to_str().unwrap();
    let out = p
        .user(
            "sqlite3",
            &[db, "SELECT name FROM pragma_table_info('hits')"],
        )
        .ok();
    out.stdout.split_whitespace().collect::<Vec<_>>().join(",")
}

fn live_db(p: &Project) -> PathBuf {
    p.root().join("shared/data/app.db")
}

fn hits(p: &Project) -> String {
    p.body("/hits").trim().to_string()
}

/// v1 with 3 hits, then v2, whose in-gap migration adds a column; 2 more hits on v2.
fn migrated(app: &str, port: u16) -> Project {
    let p = Project::new(app, port, Options::default());
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v1"]).ok();
    for _ in 0..3 {
        p.body("/");
    }
    p.add_to_config("hooks:\n  in_gap:\n    - /app/example-app run-sql /app/assets/migrate.sql\n");
    p.write(
        "assets/migrate.sql",
        "ALTER TABLE hits ADD COLUMN extra TEXT;",
    );
    p.deploy(&["release", "v2"]).ok();
    for _ in 0..2 {
        p.body("/");
    }
    assert_eq!(columns(&p, &live_db(&p)), "id,at,version,extra");
    p
}

#[test]
fn release_replace_keeps_the_snapshots_and_a_failed_build_keeps_the_old_release() {
    let p = Project::new("t-sch-replace", 18460, Options::default());
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v1"]).ok();
    for _ in 0..3 {
        p.body("/");
    }
    p.deploy(&["release", "v2"]).ok();
    let v1_snap = common::only_snapshot(&p.root(), "v1");
    assert_eq!(common::rows(&v1_snap.join("data/app.db"), "hits"), 3);

    // v1 again, rebuilt: the data v1 left stays with it, moved into the new directory.
    p.write("assets/greeting.txt", "hello again");
    let r = p.deploy(&["release", "v1", "--replace"]).ok();
    r.says("t-sch-replace v1 is live");
    assert_eq!(common::only_snapshot(&p.root(), "v1"), v1_snap);
    assert_eq!(common::rows(&v1_snap.join("data/app.db"), "hits"), 3);
    assert!(p.body("/").contains("greeting=hello again"));

    // v2 again, and its build fails: the v2 that was there is back, files, image and snapshot.
    let v2_snap = common::only_snapshot(&p.root(), "v2");
    let good = std::fs::read_to_string(p.dir.join("Containerfile")).unwrap();
    p.write("assets/greeting.txt", "hello broken");
    p.write(
        "Containerfile",
        "FROM scratch\nCOPY no-such-file /app/x\nENTRYPOINT [\"/app/x\"]\n",
    );
    let r = p.deploy(&["release", "v2", "--replace"]).failed();
    r.says("no-such-file");
    r.says("the release v2 that was there is back, with its image and data snapshots");
    let v2 = p.root().join("releases/v2");
    assert_eq!(
        std::fs::read_to_string(v2.join("assets/greeting.txt")).unwrap(),
        "hello one"
    );
    assert_eq!(common::only_snapshot(&p.root(), "v2"), v2_snap);
    assert!(p.image_exists("v2"), "v2's image keeps its name");
    assert!(
        !p.image_exists("v2.deploy-replaced"),
        "the temporary tag is gone"
    );
    assert_eq!(
        p.releases_on_disk(),
        ["v1", "v2"],
        "nothing set aside is left"
    );
    assert_eq!(p.current().as_deref(), Some("v1"));
    p.write("Containerfile", &good);
    p.deploy(&["rollback", "--to", "v2"]).ok();
    assert!(
        p.body("/").contains("greeting=hello one"),
        "the old v2 runs"
    );
    common::assert_private(&p.root());
}

#[test]
fn rollback_with_data_to_the_stopped_live_release_restores_the_data_it_left() {
    let p = Project::new("t-sch-stopped", 18461, Options::default());
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v1"]).ok();
    for _ in 0..3 {
        p.body("/");
    }
    p.deploy(&["release", "v2"]).ok();
    p.deploy(&["rollback"]).ok();
    assert_eq!(p.current().as_deref(), Some("v1"));
    for _ in 0..3 {
        p.body("/");
    }
    assert_eq!(hits(&p), "6");
    let left = snapshot_of(&p, "v1", "left");
    assert_eq!(common::rows(&left.join("data/app.db"), "hits"), 3);
    p.user("systemctl", &["--user", "stop", &p.unit()]).ok();

    let r = p
        .deploy(&["rollback", "--to", "v1", "--with-data", "--yes"])
        .ok();
    r.says("Restoring the data of v1");
    assert_eq!(p.current().as_deref(), Some("v1"));
    assert_eq!(hits(&p), "3", "the data v1 left, as it left it");
    // Both kept: the data v1 left, and what was there before the restore.
    assert_eq!(snapshot_of(&p, "v1", "left"), left);
    let before = snapshot_of(&p, "v1", "before-restore");
    assert_eq!(common::rows(&before.join("data/app.db"), "hits"), 6);
}

#[test]
fn a_rollback_across_a_schema_change_needs_a_choice_and_changes_nothing_without_one() {
    let p = migrated("t-sch-choice", 18462);
    assert_eq!(hits(&p), "5");

    for args in [&["rollback"][..], &["rollback", "--yes"]] {
        let r = p.deploy(args).failed();
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        r.says("the schema of the data changed since v1 left it");
        r.says("data/app.db: column added: hits.extra");
        r.says("--with-data  v1 and the data it left at");
        r.says("everything written since then stays only in a kept snapshot");
        r.says("--keep-data  v1's code on today's data");
        r.says("Nothing changed");
        assert!(!r.stderr.contains("Stopping"), "{}", r.stderr);
        assert_eq!(p.current().as_deref(), Some("v2"));
        assert!(p.body("/").starts_with("example-app v2 "));
    }
    let r = p.deploy(&["--json", "rollback"]).failed();
    let last = r.stdout.lines().last().unwrap_or_default();
    let event: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(event["event"], "error", "{last}");
    assert_eq!(event["exit_code"], 1, "{last}");
    assert!(
        event["message"]
            .as_str()
            .unwrap()
            .contains("column added: hits.extra"),
        "{last}"
    );
    assert_eq!(p.current().as_deref(), Some("v2"));
    assert_eq!(hits(&p), "7", "every row still there (and the two probes')");

    // `deploy releases` shows where the schema changed.
    let list = p.deploy(&["releases"]).ok().stdout;
    let v1_row = list.lines().find(|l| l.starts_with("  v1")).unwrap();
    assert!(v1_row.trim_end().ends_with("changed"), "{list}");
    let json = p.deploy(&["releases", "--json"]).ok().stdout;
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let row = |v: &str| {
        doc["releases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["version"] == v)
            .unwrap()
            .clone()
    };
    assert_eq!(row("v1")["schema_changed"], true, "{json}");
    assert_eq!(
        row("v2")["schema_changed"],
        serde_json::Value::Null,
        "{json}"
    );

    // On a terminal it asks; the answer 1 is --with-data.
    let out = on_a_terminal(&p, "rollback", "1\n");
    assert!(out.contains("1: --with-data, 2: --keep-data"), "{out}");
    assert!(
        out.contains("to v1 from v2, with the data it left"),
        "{out}"
    );
    assert_eq!(hits(&p), "3");
}

/// `deploy ARGS` on a terminal (`script` gives it one), answering `input`: what it showed.
fn on_a_terminal(p: &Project, args: &str, input: &str) -> String {
    use std::io::Write;
    let command = format!("{} {args}", common::node().deploy.display());
    let mut child = common::as_user(
        Path::new("script"),
        &["-qec", &command, "/dev/null"],
        &p.dir,
    )
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    // Kept open until the command ends: an end of input would answer for it.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn keep_data_runs_the_old_code_on_todays_data_and_with_data_restores_what_it_left() {
    let p = migrated("t-sch-ways", 18463);
    let v1_left = snapshot_of(&p, "v1", "left");

    let r = p.deploy(&["rollback", "--keep-data"]).ok();
    r.says("to v1 from v2, on today's data");
    assert_eq!(p.current().as_deref(), Some("v1"));
    assert_eq!(p.body("/").split_whitespace().nth(2), Some("hits=6"));
    assert_eq!(columns(&p, &live_db(&p)), "id,at,version,extra");

    // Back to v2: the same schema as the data v2 left, so no choice is needed. What v1 left
    // on data it did not make is kept apart from the data v1 left itself.
    let r = p.deploy(&["rollback", "--to", "v2"]).ok();
    r.says("Checking that the data's schema is the one v2 left");
    assert_eq!(snapshot_of(&p, "v1", "left"), v1_left);
    snapshot_of(&p, "v1", "left-on-kept-data");

    // v1 with the data it left: 3 rows, no extra column; v2's rows are kept as its snapshot.
    let r = p
        .deploy(&["rollback", "--to", "v1", "--with-data", "--yes"])
        .ok();
    r.says("to v1 from v2, with the data it left");
    assert_eq!(p.current().as_deref(), Some("v1"));
    assert_eq!(hits(&p), "3");
    assert_eq!(columns(&p, &live_db(&p)), "id,at,version");
    let v2_left = snapshot_of(&p, "v2", "left");
    assert_eq!(common::rows(&v2_left.join("data/app.db"), "hits"), 6);
}

#[test]
fn a_rollback_on_the_same_schema_goes_ahead_and_one_to_a_release_without_a_record_warns() {
    let p = Project::new("t-sch-same", 18464, Options::default());
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v1"]).ok();
    p.body("/");
    p.deploy(&["release", "v2"]).ok();
    p.body("/");
    let r = p.deploy(&["rollback"]).ok();
    r.says("Checking that the data's schema is the one v1 left");
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    assert_eq!(p.current().as_deref(), Some("v1"));
    assert_eq!(hits(&p), "2");

    // v2's snapshot as an older deploy wrote it (no manifest), and a schema v2 never saw.
    let v2_left = snapshot_of(&p, "v2", "left");
    std::fs::remove_file(v2_left.join("snapshot.json")).unwrap();
    let db = live_db(&p);
    p.user(
        "sqlite3",
        &[
            db.to_str().unwrap(),
            "ALTER TABLE hits ADD COLUMN extra TEXT",
        ],
    )
    .ok();
    let r = p.deploy(&["rollback", "--to", "v2"]).ok();
    r.says("warning: v2 recorded no schema of the data it left");
    assert_eq!(p.current().as_deref(), Some("v2"));
    assert_eq!(hits(&p), "2");
}

#[test]
fn a_schema_that_changes_after_the_check_puts_the_live_release_back() {
    let p = Project::new("t-sch-gap", 18465, Options::default());
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v1"]).ok();
    p.deploy(&["release", "v2"]).ok();
    p.body("/");
    // The rollback checked the schema before the stop; in the gap, something changes it.
    let child = p
        .deploy_cmd(&[("DEPLOY_TEST_HOOK", "sleep@after-stop")], &["rollback"])
        .spawn()
        .unwrap();
    common::wait_for_step(&p, "stop");
    let db = live_db(&p);
    p.user(
        "sqlite3",
        &[db.to_str().unwrap(), "CREATE TABLE sneaked (x)"],
    )
    .ok();
    let r = Project::wait(child).failed();
    assert_eq!(r.code, 5, "{}", r.stderr);
    r.says("the schema of the data changed after the rollback checked it");
    r.says("data/app.db: table added: sneaked");
    r.says("v2 is serving again");
    assert_eq!(p.current().as_deref(), Some("v2"));
    assert_eq!(hits(&p), "1");
}
