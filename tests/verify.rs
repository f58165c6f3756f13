//! `deploy verify` with a real Litestream on a real node: it passes on a good replica and says
//! so in `deploy status`; it fails (exit 7), naming the database, on a replica whose files were
//! overwritten with garbage, one that fell behind (Litestream stopped while the app writes), and
//! one missing a database.

mod common;
use common::Project;
use std::time::Duration;

/// Replicated, with verify's `max_lag` short.
fn replicated(app: &str, port: u16) -> Project {
    common::replicated(app, port, "verify:\n  max_lag: 3s\n", 5)
}

#[test]
fn verify_passes_on_a_good_replica_and_names_what_fails() {
    let p = replicated("t-verify", 18530);
    let r = p.deploy(&["verify"]).ok();
    r.says("data/app.db: ok");
    r.says("restores every database");
    p.deploy(&["status"])
        .ok()
        .prints("verify:       passed at ");

    // Behind: Litestream stopped while the app writes.
    p.user(
        "systemctl",
        &["--user", "stop", &p.names().replication_unit()],
    )
    .ok();
    std::thread::sleep(Duration::from_secs(5));
    for _ in 0..5 {
        p.body("/");
    }
    let r = p.deploy(&["verify"]).failed();
    assert_eq!(r.code, 7, "{}", r.stderr);
    r.says("data/app.db:");
    r.says("behind the live database (verify.max_lag 3s)");
    p.deploy(&["status"])
        .ok()
        .prints("verify:       FAILED at ");

    // A database the replica does not have.
    p.user(
        "systemctl",
        &["--user", "start", &p.names().replication_unit()],
    )
    .ok();
    let extra = p.root().join("shared/data/extra.db");
    p.user(
        "sqlite3",
        &[
            extra.to_str().unwrap(),
            "CREATE TABLE t (x); INSERT INTO t VALUES (1);",
        ],
    )
    .ok();
    std::thread::sleep(Duration::from_millis(2500));
    let r = p.deploy(&["verify"]).failed();
    assert_eq!(r.code, 7, "{}", r.stderr);
    r.says("data/extra.db: missing from the replica");
}

#[test]
fn verify_fails_on_a_replica_overwritten_with_garbage() {
    let p = replicated("t-verifybad", 18532);
    p.deploy(&["verify"]).ok();
    let replica = std::path::PathBuf::from("/tmp/deploy-tests/replicas/t-verifybad/data/app.db");
    let mut spoiled = 0;
    for f in walkdir::WalkDir::new(&replica).into_iter().flatten() {
        if f.file_type().is_file() {
            std::fs::write(f.path(), vec![0x5a; 4096]).unwrap();
            spoiled += 1;
        }
    }
    assert!(spoiled > 0, "no replica files under {}", replica.display());
    let r = p.deploy(&["verify"]).failed();
    assert_eq!(r.code, 7, "{}", r.stderr);
    r.says("data/app.db:");
    assert!(
        r.stderr.contains("does not restore") || r.stderr.contains("corrupt"),
        "{}",
        r.stderr
    );
}

#[test]
fn verify_runs_on_its_timer_and_status_shows_it() {
    let p = common::replicated(
        "t-verifytimer",
        18534,
        "verify:\n  schedule: \"*:*:0/3\"\n",
        3,
    );
    let t = std::time::Instant::now();
    loop {
        let status = p.deploy(&["status"]).ok().stdout;
        if status.contains("verify:       passed at ") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "the timer never verified: {status}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // The schedule gone from the config, the next release removes its timer.
    let config = std::fs::read_to_string(p.dir.join("deploy.yaml")).unwrap();
    p.write(
        "deploy.yaml",
        &config.replace("verify:\n  schedule: \"*:*:0/3\"\n", ""),
    );
    p.deploy(&["release", "v2"]).ok();
    let timer = common::node()
        .home
        .join(".config/systemd/user")
        .join(p.names().verify_timer());
    assert!(!timer.exists(), "the timer is gone");
}
