//! A reboot in a swap's gap, on a real node: the user's manager is stopped (every container
//! removed) and started again. Alone in its binary: the "reboot" stops every app of the node.

mod common;
use common::{Options, Project};
use std::time::{Duration, Instant};

#[track_caller]
fn columns(p: &Project) -> String {
    let db = p.root().join("shared/data/app.db");
    p.user(
        "sqlite3",
        &[
            db.to_str().unwrap(),
            "SELECT group_concat(name) FROM pragma_table_info('hits')",
        ],
    )
    .ok()
    .stdout
    .trim()
    .to_string()
}

#[test]
fn a_reboot_in_the_gap_starts_nothing_on_changed_data_and_the_server_recovers() {
    let p = Project::new("t-reboot", 18446, Options::default());
    p.with_v1_live();
    p.body("/");
    let before = columns(&p);
    p.add_to_config("hooks:\n  in_gap:\n    - /app/example-app run-sql /app/assets/migrate.sql\n");
    p.write(
        "assets/migrate.sql",
        "ALTER TABLE hits ADD COLUMN extra TEXT;",
    );
    // The machine goes down right after the migration: keep the server from recovering before
    // the "reboot" (its watcher is stopped), then reboot the user's world.
    p.without_server_recovery();
    let r = p.deploy_env(
        &[("DEPLOY_TEST_HOOK", "kill@after-hook")],
        &["release", "v2"],
    );
    assert_ne!(r.code, 0);
    assert_ne!(columns(&p), before, "the migration ran");
    common::reboot_user_manager();
    // At boot: the unit waits, the server's recovery puts v1 back on the data it had.
    let t = Instant::now();
    loop {
        if let Ok((200, body)) = p.get("/") {
            if body.starts_with("example-app v1 ") {
                break;
            }
            panic!("after the reboot the app answered {body}");
        }
        assert!(t.elapsed() < Duration::from_secs(90), "v1 never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(columns(&p), before, "v1 runs on the schema it knows");
    assert!(!p.root().join(".deploy/swap.journal").exists());
}
