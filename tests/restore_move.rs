//! `deploy restore` is a move of the swap, on a real node with a real Litestream: killed
//! after any of its steps, the server puts the app back with no command (every database whole,
//! Litestream running); "data is there" counts a database whose data is only in its `-wal`;
//! in socket mode no connection starts the app while the databases go in.

mod common;
use common::{replicated, Project};
use std::time::{Duration, Instant};

#[track_caller]
fn db_check(p: &Project) -> (String, i64) {
    let db = p.root().join("shared/data/app.db");
    let ask = |q: &str| {
        p.user("sqlite3", &[db.to_str().unwrap(), q])
            .ok()
            .stdout
            .trim()
            .to_string()
    };
    (
        ask("PRAGMA integrity_check"),
        ask("SELECT COUNT(*) FROM hits").parse().unwrap(),
    )
}

/// The swap's steps of a restore, as `deploy restore --dry-run` prints them.
fn restore_points(p: &Project) -> Vec<String> {
    let plan = p
        .deploy(&["restore", "--overwrite", "--dry-run"])
        .ok()
        .stdout;
    let names: Vec<String> = plan
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("fence:"))
        .skip(1)
        .map(|l| {
            l.trim_start()
                .split(':')
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .filter(|n| !n.is_empty() && !n.starts_with("on failure") && !n.starts_with("Dry run"))
        .collect();
    assert!(
        names.contains(&"restore".to_string()) && names.contains(&"health".to_string()),
        "{names:?} from\n{plan}"
    );
    names
}

#[test]
fn a_restore_killed_after_any_step_is_put_right_by_the_server() {
    let p = replicated("t-rstkill", 18520, "", 5);
    let (_, rows) = db_check(&p);
    for step in restore_points(&p) {
        let hook = format!("kill@after-{step}");
        // --lock-wait: the server's own recovery of the run before may still hold the lock
        // while it starts Litestream again.
        let r = p.deploy_env(
            &[("DEPLOY_TEST_HOOK", &hook)],
            &["restore", "--overwrite", "--lock-wait", "30s"],
        );
        assert_eq!(
            r.signal,
            Some(9),
            "{step}: killed by the signal: {}",
            r.stderr
        );
        assert_ne!(r.code, 0, "{step}: {}", r.stderr);
        // No command: the server's own recovery.
        p.wait_settled(
            Duration::from_secs(30),
            &format!("{step}: the app is not back with no command"),
            |p| p.get("/healthz").is_ok(),
        );
        let (check, now) = db_check(&p);
        assert_eq!(check, "ok", "{step}");
        assert!(now >= rows, "{step}: {now} rows, {rows} before");
        // Litestream is started again right after the recovery has removed its journal.
        let t = Instant::now();
        loop {
            let active = p.user(
                "systemctl",
                &["--user", "is-active", &p.names().replication_unit()],
            );
            if active.stdout.trim() == "active" {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{step}: Litestream does not run again: {}",
                active.stdout
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    p.deploy(&["restore", "--overwrite", "--lock-wait", "30s"])
        .ok()
        .says("restored 1 database(s)");
}

#[test]
fn a_database_whose_data_is_only_in_its_wal_counts_as_data() {
    let p = replicated("t-rstwal", 18522, "", 5);
    common::lose_the_server(&p);
    // What a crash can leave: an empty database file and its whole data in the -wal.
    let data = p.root().join("shared/data");
    let side = data.join("side.db");
    let writer = rusqlite::Connection::open(&side).unwrap();
    writer
        .execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t (x); \
             INSERT INTO t VALUES (1);",
        )
        .unwrap();
    std::fs::write(data.join("app.db"), b"").unwrap();
    std::fs::copy(data.join("side.db-wal"), data.join("app.db-wal")).unwrap();
    drop(writer);
    std::fs::remove_file(&side).unwrap();
    common::chown_to_node_user(&data);
    let r = p.deploy(&["restore"]).failed();
    r.says("has data already (data/app.db)");
    assert_eq!(std::fs::metadata(data.join("app.db")).unwrap().len(), 0);
}

#[test]
fn in_socket_mode_no_connection_starts_the_app_during_a_restore() {
    let p = replicated("t-rstsock", 18524, "listen: socket\n", 5);
    let restore = p
        .deploy_cmd(
            &[("DEPLOY_TEST_HOOK", "sleep@after-stop")],
            &["restore", "--overwrite"],
        )
        .spawn()
        .unwrap();
    p.wait_for_journal("done", "stop");
    // A connection now: it waits in the socket's backlog, and starts nothing.
    let port = p.port;
    let asked = std::thread::spawn(move || {
        ureq::get(format!("http://127.0.0.1:{port}/healthz"))
            .call()
            .map(|r| r.status().as_u16())
    });
    std::thread::sleep(Duration::from_millis(800));
    let running = p.user(
        "podman",
        &[
            "ps",
            "--filter",
            &format!("name=^{}$", p.names().container()),
            "--format",
            "{{.Names}}",
        ],
    );
    assert_eq!(
        running.stdout.trim(),
        "",
        "the app started during the restore"
    );
    Project::wait(restore).ok();
    assert_eq!(asked.join().unwrap().unwrap(), 200, "answered after it");
}
