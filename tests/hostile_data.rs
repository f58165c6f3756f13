//! Values from outside deploy's hands stay values on a real node: a replica's list of
//! databases names nothing outside `shared/`, a symbolic link the app put in `shared/` is never
//! written through, an SFTP password in `replicate.url` goes only into Litestream's 0600 config,
//! and `setup` writes nothing before it holds the lock and settles a dead swap first.

mod common;
use common::{node, Options, Project};
use std::process::Command;

#[test]
fn a_replica_listing_a_path_outside_shared_is_refused_before_anything_is_written() {
    let p = Project::new("t-evilrep", 18420, Options::default());
    let replica = p.file_replica();
    p.add_to_config(&format!(
        "replicate:\n  url: file://{}\n",
        replica.display()
    ));
    p.deploy(&["setup"]).ok();

    // Whoever can write the replica lists `../../pwned.db` and replicates a database there.
    let work = std::path::PathBuf::from("/tmp/deploy-tests/evil-replica");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    common::chown_to_node_user(&work);
    let manifest = work.join("manifest.db");
    let pwned = work.join("pwned.db");
    for (db, sql) in [
        (
            &manifest,
            "CREATE TABLE databases (path TEXT PRIMARY KEY); \
             INSERT INTO databases VALUES ('../../pwned.db');",
        ),
        (
            &pwned,
            "CREATE TABLE owned (x); INSERT INTO owned VALUES (1);",
        ),
    ] {
        p.user("sqlite3", &[db.to_str().unwrap(), sql]).ok();
    }
    let config = work.join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      url: file://{}/_deploy/manifest.db\n  \
             - path: {}\n    replica:\n      url: file://{}/../../pwned.db\n",
            manifest.display(),
            replica.display(),
            pwned.display(),
            replica.display()
        ),
    )
    .unwrap();
    common::chown_to_node_user(&config);
    let litestream = which("litestream");
    p.user(
        &litestream,
        &[
            "replicate",
            "-config",
            config.to_str().unwrap(),
            "-exec",
            "sleep 4",
        ],
    );

    let target = node().home.join("tests/pwned.db");
    let _ = std::fs::remove_file(&target);
    let r = p.deploy(&["restore"]).failed();
    assert_eq!(r.code, 3, "{}", r.stderr);
    r.says("`../../pwned.db` leaves shared/");
    r.says("nothing was changed");
    assert!(!target.exists(), "{} was written", target.display());
    let _ = std::fs::remove_dir_all(&work);
}

#[track_caller]
fn which(program: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .unwrap();
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!path.is_empty(), "{program} is not installed");
    path
}

#[test]
fn a_link_the_app_put_where_its_database_was_is_replaced_never_written_through() {
    let p = Project::new("t-datalink", 18422, Options::default());
    p.with_v1_live();
    for _ in 0..3 {
        p.body("/");
    }
    p.deploy(&["release", "v2"]).ok();

    // The app (the node user's uid) replaces its database by a link to a file it should not
    // reach; a rollback with the data v1 left must not write there.
    let precious = node().home.join("tests/t-datalink-precious");
    std::fs::write(&precious, "ssh-ed25519 AAAA precious\n").unwrap();
    common::chown_to_node_user(&precious);
    let db = p.root().join("shared/data/app.db");
    p.user("systemctl", &["--user", "stop", &p.unit()]).ok();
    std::fs::remove_file(&db).unwrap();
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(p.root().join(format!("shared/data/app.db{side}")));
    }
    std::os::unix::fs::symlink(&precious, &db).unwrap();
    let r = p.deploy(&["rollback", "--with-data", "--yes"]).ok();
    r.says("replaced symbolic link(s) in shared/");
    assert_eq!(
        std::fs::read_to_string(&precious).unwrap(),
        "ssh-ed25519 AAAA precious\n",
        "the link's target was written"
    );
    assert!(std::fs::symlink_metadata(&db).unwrap().is_file());
    assert_eq!(common::rows(&db, "hits"), 3, "the data v1 left");
    let _ = std::fs::remove_file(&precious);
}

#[test]
fn an_sftp_password_goes_only_into_litestreams_private_config() {
    let p = Project::new("t-sftppw", 18424, Options::default());
    p.add_to_config(
        "replicate:\n  url: sftp://backup:s3cr%40t-pw@127.0.0.1:2222/srv/backups/shop\n",
    );
    let secret_forms = ["s3cr%40t-pw", "s3cr@t-pw"];
    let plan = p.deploy(&["setup", "--dry-run"]).ok();
    let config = p.deploy(&["config"]).ok();
    config.prints("url: sftp://backup@127.0.0.1:2222/srv/backups/shop");
    let r = p.deploy(&["--json", "setup"]).ok();
    r.prints("sftp://backup@127.0.0.1:2222/srv/backups/shop");
    let unit = std::fs::read_to_string(
        node()
            .home
            .join(".config/systemd/user")
            .join(p.names().replication_unit()),
    )
    .unwrap();
    for s in secret_forms {
        for (what, text) in [
            ("setup --dry-run", plan.stdout.as_str()),
            ("config", config.stdout.as_str()),
            ("setup --json", r.stdout.as_str()),
            ("its stderr", r.stderr.as_str()),
            ("the unit", unit.as_str()),
        ] {
            assert!(!text.contains(s), "{what} shows the password: {text}");
        }
    }
    let config = p.root().join(".deploy/litestream.yml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("password: s3cr@t-pw"), "{text}");
    assert!(!text.contains("s3cr%40t-pw"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn setup_writes_nothing_while_another_deploy_holds_the_lock_and_settles_a_dead_swap() {
    let p = Project::new("t-setuplock", 18426, Options::default());
    p.deploy(&["setup"]).ok();
    // Setup, not the server's own recovery, is to put the dead swap right here.
    p.without_server_recovery();
    p.deploy(&["release", "v1"]).ok();
    p.body("/");

    // Another deploy holds the lock: setup of a new shared dir and file writes nothing.
    let config = std::fs::read_to_string(p.dir.join("deploy.yaml")).unwrap();
    p.write(
        "deploy.yaml",
        &config
            .replace("dirs: [data]", "dirs: [data, uploads]")
            .replace("files: [.env]", "files: [.env, extra.txt]"),
    );
    let lock = p.root().join(".deploy/lock");
    let holder = common::as_user(
        std::path::Path::new("/usr/bin/flock"),
        &[lock.to_str().unwrap(), "sleep", "6"],
        std::path::Path::new("/tmp"),
    )
    .spawn()
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let r = p.deploy(&["setup"]).failed();
    assert_eq!(r.code, 4, "{}", r.stderr);
    for made in ["shared/uploads", "shared/extra.txt"] {
        assert!(
            !p.root().join(made).exists(),
            "{made} was made under another's lock"
        );
    }
    let _ = common::Project::wait(holder);

    // A release whose node-side run died in its gap: setup puts it right before anything else.
    let r = p.deploy_env(
        &[("DEPLOY_TEST_HOOK", "kill@after-stop")],
        &["release", "v2"],
    );
    assert_ne!(r.code, 0);
    assert!(p.root().join(".deploy/swap.journal").exists());
    let r = p.deploy(&["setup"]).ok();
    r.says("was interrupted during its swap");
    assert!(!p.root().join(".deploy/swap.journal").exists());
    assert_eq!(p.current().as_deref(), Some("v1"));
    assert!(p.body("/").starts_with("example-app v1 "));
    assert!(p.root().join("shared/uploads").is_dir());
    assert!(p.root().join("shared/extra.txt").is_file());
}
