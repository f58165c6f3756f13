//! The release lifecycle on a real node: rootless Podman, a real `systemd --user`, real HTTP.

mod common;
use common::{Options, Project};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[test]
fn release_v1_v2_keeps_data_and_rolls_back() {
    let p = Project::new("t-lifecycle", 18101, Options::default());
    p.deploy(&["setup", "test"]).ok();
    p.deploy(&["setup", "test"]).ok(); // idempotent
    let root = p.root();
    let env = std::fs::metadata(root.join("shared/.env")).unwrap();
    assert_eq!(env.permissions().mode() & 0o777, 0o600);
    let unit_file = common::node()
        .home
        .join(".config/systemd/user")
        .join(p.unit());
    let unit_before = std::fs::read_to_string(&unit_file).unwrap();
    let enabled = p.user("systemctl", &["--user", "is-enabled", &p.unit()]);
    assert_eq!(
        enabled.stdout.trim(),
        "enabled",
        "the unit starts with the user's manager (at boot): {enabled:?}"
    );

    let r = p.deploy(&["release", "v1", "test"]).ok();
    r.says("t-lifecycle v1 is live on test");
    assert_eq!(p.current().as_deref(), Some("v1"));
    assert_eq!(p.body("/"), "example-app v1 hits=1 greeting=hello one\n");
    assert_eq!(p.body("/"), "example-app v1 hits=2 greeting=hello one\n");

    v2_keeps_the_rows_and_hard_links_the_unchanged_binary(&p, &root);
    releases_lists_them_and_rollbacks_go_both_ways(&p);
    a_missing_image_is_rebuilt_for_a_rollback(&p);
    let s = p.deploy(&["status"]).ok().stdout;
    assert!(s.contains("current:      v2"), "{s}");
    assert!(
        s.contains("t-lifecycle_test.service: active (running"),
        "{s}"
    );
    assert!(s.contains("HTTP 200"), "{s}");
    assert!(s.contains("last:         rollback v2 ok"), "{s}");

    common::assert_private(&root);
    let unit_after = std::fs::read_to_string(&unit_file).unwrap();
    assert_eq!(
        unit_before, unit_after,
        "the unit never changes between releases"
    );
}

#[track_caller]
fn v2_keeps_the_rows_and_hard_links_the_unchanged_binary(p: &Project, root: &Path) {
    // v2 changes an asset; the binary is unchanged and must be a hard link, not a copy.
    p.write("assets/greeting.txt", "hello two");
    p.deploy(&["release", "v2"]).ok(); // the only environment may be left out
    assert_eq!(p.current().as_deref(), Some("v2"));
    assert_eq!(
        p.body("/"),
        "example-app v2 hits=3 greeting=hello two\n",
        "rows in shared/data survive"
    );
    let ino = |v: &str| {
        std::fs::metadata(root.join("releases").join(v).join("example-app"))
            .unwrap()
            .ino()
    };
    assert_eq!(
        ino("v1"),
        ino("v2"),
        "unchanged artifact is hard-linked to the previous release"
    );
    assert!(std::fs::symlink_metadata(root.join("releases/v2/data"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_link(root.join("current")).unwrap(),
        std::path::Path::new("releases/v2")
    );
}

#[track_caller]
fn releases_lists_them_and_rollbacks_go_both_ways(p: &Project) {
    let r = p.deploy(&["releases"]).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        lines[1].starts_with("* v2") && lines[1].contains(" ok "),
        "{}",
        r.stdout
    );
    assert!(lines[2].starts_with("  v1"), "{}", r.stdout);

    let r = p.deploy(&["rollback"]).ok();
    r.says("to v1 from v2");
    assert_eq!(p.current().as_deref(), Some("v1"));
    assert_eq!(p.body("/"), "example-app v1 hits=4 greeting=hello one\n");

    let r = p.deploy(&["rollback", "test", "--to", "v2"]).ok();
    r.says("to v2 from v1");
    assert!(p.body("/").starts_with("example-app v2 hits=5"));
}

#[track_caller]
fn a_missing_image_is_rebuilt_for_a_rollback(p: &Project) {
    // An image gone (removed by hand) is built again from its release directory: the store's
    // own index no longer lists it, and podman confirms.
    p.user(
        "podman",
        &["image", "rm", "--force", "localhost/t-lifecycle_test:v1"],
    )
    .ok();
    p.deploy(&["rollback"])
        .ok()
        .says("Rebuilding missing image localhost/t-lifecycle_test:v1");
    assert!(p.body("/").starts_with("example-app v1 hits=6"));
    let r = p.deploy(&["rollback", "test", "--to", "v2"]).ok();
    assert!(!r.stderr.contains("Rebuilding"), "{}", r.stderr);
}

#[test]
fn failed_health_check_puts_the_previous_release_back() {
    let p = Project::new(
        "t-unhealthy",
        18102,
        Options {
            health_timeout: "3s",
            ..Options::default()
        },
    );
    p.with_v1_live();
    p.body("/");

    // v2 "migrates" the data (deletes every row), then fails its health check.
    p.write("assets/fail-health", "");
    p.write("assets/startup.sql", "DELETE FROM hits;");
    let r = p.deploy(&["release", "v2"]).failed();
    r.says("release of v2 failed");
    r.says("HTTP 500");
    r.says("v1 is serving again");
    assert!(
        r.stderr.contains("| example-app v2 listening on :8080"),
        "app's log lines: {}",
        r.stderr
    );
    assert_eq!(p.current().as_deref(), Some("v1"));
    assert_eq!(
        p.body("/"),
        "example-app v1 hits=2 greeting=hello one\n",
        "v1 is back with the data it left, not the data v2 changed"
    );
    // What v2 did to the data is kept, as v2's snapshot.
    let v2_snap = common::only_snapshot(&p.root(), "v2");
    assert_eq!(common::rows(&v2_snap.join("data/app.db"), "hits"), 0);
    let list = p.deploy(&["releases"]).ok().stdout;
    assert!(
        list.lines()
            .any(|l| l.starts_with("  v2") && l.contains("failed")),
        "{list}"
    );
    assert!(list.lines().any(|l| l.starts_with("* v1")), "{list}");

    // A plain rollback skips the failed release: v1 has nothing before it.
    let r = p.deploy(&["rollback"]).failed();
    r.says("no release before v1");

    // Fixed, the next release goes live.
    p.remove("assets/fail-health");
    p.remove("assets/startup.sql");
    p.deploy(&["release", "v3"]).ok();
    assert!(p.body("/").starts_with("example-app v3 hits=3"));

    a_container_that_cannot_start_says_why(&p);
}

#[track_caller]
fn a_container_that_cannot_start_says_why(p: &Project) {
    // A container that cannot start at all: the error says what podman said, not only
    // systemd's one word.
    let good = std::fs::read_to_string(p.dir.join("Containerfile")).unwrap();
    p.write(
        "Containerfile",
        &good.replace(
            "ENTRYPOINT [\"/app/example-app\"]",
            "ENTRYPOINT [\"/app/no-such-binary\"]",
        ),
    );
    let r = p.deploy(&["release", "v4"]).failed();
    // Under the init (container.init, the default) the container starts and the init says why
    // the app could not, in the app's log lines the error quotes.
    r.says("the app exited");
    r.says("failed to exec pid1: No such file or directory");
    r.says("v3 is serving again");
    // Without it, podman itself fails the start.
    let config = std::fs::read_to_string(p.dir.join("deploy.yaml")).unwrap();
    p.write(
        "deploy.yaml",
        &config.replace(
            "  stop_timeout: 5s\n",
            "  stop_timeout: 5s\n  init: false\n",
        ),
    );
    let r = p.deploy(&["release", "v5"]).failed();
    r.says("start of t-unhealthy_test.service ended with `failed` twice; podman said:");
    r.says("no-such-binary");
    r.says("v3 is serving again");
    assert!(p.body("/").starts_with("example-app v3 hits=4"));
}

#[test]
fn a_failed_first_release_leaves_nothing_live() {
    let p = Project::new(
        "t-firstfail",
        18103,
        Options {
            health_timeout: "2s",
            ..Options::default()
        },
    );
    p.deploy(&["setup"]).ok();
    p.write("assets/fail-health", "");
    let r = p.deploy(&["release", "v1"]).failed();
    r.says("nothing was live before it");
    assert_eq!(p.current(), None);
    assert!(
        p.get("/").is_err(),
        "the failed release is not left running"
    );
    p.remove("assets/fail-health");
    let r = p.deploy(&["release", "v1"]).failed();
    r.says("already exists");
    p.deploy(&["release", "v1", "--replace"]).ok();
    assert!(p.body("/").starts_with("example-app v1 "));
}

#[test]
fn pruning_keeps_keep_releases() {
    let p = Project::new(
        "t-prune",
        18104,
        Options {
            keep_releases: 2,
            ..Options::default()
        },
    );
    p.deploy(&["setup"]).ok();
    for v in ["v1", "v2", "v3", "v4"] {
        p.deploy(&["release", v]).ok();
    }
    assert_eq!(p.releases_on_disk(), ["v3", "v4"]);
    assert!(
        !p.image_exists("v1") && !p.image_exists("v2"),
        "pruned images are removed"
    );
    assert!(p.image_exists("v3") && p.image_exists("v4"));

    // Rolled back to v3, a new release keeps v3 (previous) and v5 (current) only... and keeps
    // the live one whatever its age.
    p.deploy(&["rollback"]).ok();
    assert_eq!(p.current().as_deref(), Some("v3"));
    p.deploy(&["release", "v5"]).ok();
    assert_eq!(p.releases_on_disk(), ["v3", "v5"]);
    p.deploy(&["rollback"]).ok();
    assert_eq!(p.current().as_deref(), Some("v3"));
    assert!(p.body("/").starts_with("example-app v3 "));

    // A release that cannot be pruned (a directory in it the node user may not remove) does
    // not make a live release look failed: it is said live, after_release runs, exit 0.
    let stuck = p.root().join("releases/v5/assets/root-owned");
    std::fs::create_dir_all(stuck.join("inner")).unwrap();
    p.add_to_config("hooks:\n  after_release: [\"echo ran > after.txt\"]\n");
    p.deploy(&["release", "v6"]).ok();
    let r = p.deploy(&["release", "v7"]).ok();
    r.says("t-prune v7 is live on test");
    r.says("v7 is live, but pruning old releases failed");
    assert_eq!(
        std::fs::read_to_string(p.dir.join("after.txt")).unwrap(),
        "ran\n"
    );
    assert!(p.body("/").starts_with("example-app v7 "));
    // The release went out of sight before its deletion failed: no half-deleted v5 remains.
    assert!(!p.root().join("releases/v5").exists());
    let renamed = p.root().join("releases/.pruning-v5/assets/root-owned");
    std::fs::remove_dir_all(&renamed).unwrap();
    // The next prune takes what that one left.
    p.deploy(&["release", "v8"]).ok();
    assert!(!p.root().join("releases/.pruning-v5").exists());
}

#[test]
fn bad_versions_and_unknown_environments_are_refused() {
    let p = Project::new("t-refuse", 18105, Options::default());
    p.deploy(&["setup"]).ok();
    for bad in ["../evil", ".hidden", "a/b", "..", "v 1", "-x"] {
        let r = p.deploy(&["release", "--", bad]).failed();
        assert!(
            r.stderr.contains("is not a valid version"),
            "{bad}: {}",
            r.stderr
        );
    }
    // An app directory above the home directory (or the home directory itself) is refused:
    // migrate-data and pruning would move and delete the user's own files.
    let yaml = std::fs::read_to_string(p.dir.join("deploy.yaml")).unwrap();
    p.write(
        "deploy.yaml",
        &yaml.replace("path: ~/tests/t-refuse", "path: /home"),
    );
    let r = p.deploy(&["migrate-data", "--dry-run"]).failed();
    assert_eq!(r.code, 3, "{}", r.stderr);
    r.says("is above the home directory /home/deployer");
    p.write("deploy.yaml", &yaml);

    let r = p.deploy(&["release", "v1", "staging"]).failed();
    r.says("unknown environment `staging`");
    r.says("`test`");
    assert!(
        p.releases_on_disk().is_empty(),
        "nothing was created: {:?}",
        p.releases_on_disk()
    );
    assert_eq!(p.current(), None);

    let r = p.deploy(&["rollback", "--to", "v9"]).failed();
    r.says("there is no release v9");

    // Releasing before setup says what to do.
    let q = Project::new("t-nosetup", 18106, Options::default());
    let r = q.deploy(&["release", "v1"]).failed();
    r.says("run `deploy setup test` first");
}

#[test]
fn a_missing_artifact_uploads_nothing() {
    let p = Project::new("t-artifact", 18107, Options::default());
    p.deploy(&["setup"]).ok();
    std::fs::remove_file(p.dir.join("dist/example-app")).unwrap();
    let r = p.deploy(&["release", "v1"]).failed();
    r.says("artifact `dist/example-app` does not exist");
    assert!(p.releases_on_disk().is_empty());
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let p = Project::new("t-badinput", 18108, Options::default());
    // A port taken by another process: setup says so and what to do.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", 18108)).unwrap();
    let r = p.deploy(&["setup"]).failed();
    r.says("port 18108 on 127.0.0.1 is in use by another process");
    drop(squatter);
    p.deploy(&["setup"]).ok();

    // A symlink in the artifacts that points outside the project.
    std::os::unix::fs::symlink("/etc/passwd", p.dir.join("assets/passwd")).unwrap();
    let r = p.deploy(&["release", "v1"]).failed();
    r.says("outside the project");
    r.says("assets/passwd");
    assert!(p.releases_on_disk().is_empty(), "nothing uploaded");
    std::fs::remove_file(p.dir.join("assets/passwd")).unwrap();
    // One inside the project is fine.
    std::os::unix::fs::symlink("greeting.txt", p.dir.join("assets/hello.txt")).unwrap();

    // A world-readable env file: a warning, not a refusal.
    let env = p.root().join("shared/.env");
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = p.deploy(&["release", "v1"]).ok();
    assert!(
        r.stderr.contains("readable by every user") && r.stderr.contains("chmod 600"),
        "{}",
        r.stderr
    );
    assert!(p.body("/").starts_with("example-app v1 "));
}

#[test]
fn rollback_with_data_puts_back_what_that_release_left() {
    let p = Project::new("t-withdata", 18109, Options::default());
    p.with_v1_live();
    for _ in 0..3 {
        p.body("/");
    }
    let r = p.deploy(&["release", "v2", "-v"]).ok();
    r.says("Snapshot of the data v1 leaves");
    let v1_snap = common::only_snapshot(&p.root(), "v1");
    assert_eq!(common::rows(&v1_snap.join("data/app.db"), "hits"), 3);
    for _ in 0..4 {
        p.body("/");
    }
    assert_eq!(p.body("/hits"), "7\n");

    // Without a terminal to ask on, and without --yes, nothing changes.
    let r = p.deploy(&["rollback", "--with-data"]).failed();
    r.says("not confirmed, nothing changed");
    r.says("--yes");
    assert_eq!(p.current().as_deref(), Some("v2"));
    assert_eq!(p.body("/hits"), "7\n");

    let r = p.deploy(&["rollback", "--with-data", "--yes"]).ok();
    r.says("Restoring the data of v1");
    assert_eq!(p.current().as_deref(), Some("v1"));
    assert_eq!(p.body("/hits"), "3\n", "v1's data as v1 left it");
    // Nothing lost: v2's data was kept as v2's snapshot, and comes back with it.
    let v2_snap = common::only_snapshot(&p.root(), "v2");
    assert_eq!(common::rows(&v2_snap.join("data/app.db"), "hits"), 7);
    p.deploy(&["rollback", "--to", "v2", "--with-data", "--yes"])
        .ok();
    assert_eq!(p.body("/hits"), "7\n");

    // A plain rollback keeps the data as it is.
    p.deploy(&["rollback"]).ok();
    assert_eq!(p.body("/hits"), "7\n");

    // backup: off takes no snapshot, so v3 has none to go back to.
    p.deploy(&["release", "v3"]).ok();
    let yaml = std::fs::read_to_string(p.dir.join("deploy.yaml")).unwrap();
    p.write("deploy.yaml", &format!("{yaml}backup: off\n"));
    p.deploy(&["release", "v4"]).ok();
    assert!(!p.root().join("releases/v3/.deploy/snapshots").exists());
    let r = p
        .deploy(&["rollback", "--to", "v3", "--with-data", "--yes"])
        .failed();
    r.says("there is no data snapshot of v3");
    assert_eq!(p.current().as_deref(), Some("v4"));
}

/// An app released by an earlier deploy, under the names it used (`<app>.service`, the
/// container `<app>`, `localhost/<app>:<tag>`), made by hand from a release of this one.
fn make_legacy(p: &Project, version: &str) {
    let units = common::node().home.join(".config/systemd/user");
    let new_unit = units.join(p.unit());
    let text = std::fs::read_to_string(&new_unit).unwrap();
    p.user("systemctl", &["--user", "disable", "--now", &p.unit()])
        .ok();
    std::fs::remove_file(&new_unit).unwrap();
    let legacy = units.join(deploy::names::legacy::unit(&p.app));
    std::fs::write(
        &legacy,
        text.replace(
            &format!("--name {}", p.names().container()),
            &format!("--name {}", p.app),
        ),
    )
    .unwrap();
    let (new_image, old_image) = (
        p.names().image(version),
        format!(
            "{}:{version}",
            deploy::names::legacy::image_repository(&p.app)
        ),
    );
    p.user("podman", &["tag", &new_image, &old_image]).ok();
    p.user("podman", &["rmi", &new_image]).ok();
    for file in [
        p.root()
            .join(format!("releases/{version}/.deploy/release.env")),
        p.root().join(".deploy/state.json"),
    ] {
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, text.replace(&new_image, &old_image)).unwrap();
    }
    common::chown_to_node_user(&units);
    common::chown_to_node_user(&p.root());
    p.user("systemctl", &["--user", "daemon-reload"]).ok();
    p.user(
        "systemctl",
        &["--user", "enable", "--now", &format!("{}.service", p.app)],
    )
    .ok();
}

#[test]
fn setup_moves_an_app_from_the_old_names_to_the_naming_scheme_in_a_gap() {
    let p = Project::new("t-legacy", 18346, Options::default());
    p.with_v1_live();
    make_legacy(&p, "v1");
    let t = std::time::Instant::now();
    while p.get("/").map(|(s, _)| s) != Ok(200) {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "the legacy unit serves"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    p.body("/");
    let rows_before = p.body("/hits");

    let r = p.deploy(&["setup"]).ok();
    r.says("Moving the app from t-legacy.service to t-legacy_test.service");
    assert!(
        !common::node()
            .home
            .join(".config/systemd/user/t-legacy.service")
            .exists(),
        "the old unit is gone"
    );
    let containers = p
        .user("podman", &["ps", "--format", "{{.Names}}"])
        .ok()
        .stdout;
    let ours: Vec<&str> = containers
        .lines()
        .filter(|n| n.starts_with("t-legacy"))
        .collect();
    assert_eq!(
        ours,
        ["t-legacy_test"],
        "one copy of the app, under its new name"
    );
    assert!(p.image_exists("v1"), "the image has its new name");
    assert_eq!(p.body("/hits"), rows_before, "the data stayed");
    p.deploy(&["release", "v2"]).ok();
    p.deploy(&["rollback"]).ok();
    assert!(p.body("/").starts_with("example-app v1 "));
}

#[test]
fn the_node_runs_overlay_and_a_vfs_store_is_explained_with_its_fix() {
    let p = Project::new("t-storage", 18348, Options::default());
    let driver = p
        .user(
            "podman",
            &["info", "--format", "{{.Store.GraphDriverName}}"],
        )
        .ok();
    assert_eq!(
        driver.stdout.trim(),
        "overlay",
        "scripts/node-setup configures overlay"
    );
    p.deploy(&["check", "test"])
        .ok()
        .says("Checking Podman's storage ... ok");

    let base = a_vfs_store_of_its_own();
    let config = base.join("config");
    let data = base.join("data");
    let env = [
        ("XDG_CONFIG_HOME", config.to_str().unwrap()),
        ("XDG_DATA_HOME", data.to_str().unwrap()),
    ];
    let r = p.deploy_env(&env, &["check", "test"]).failed();
    r.says("Checking Podman's storage ... failed");
    r.says("vfs driver");
    r.says("deploy setup test --reset-storage");
    r.says("driver = \"overlay\"");
    // setup's plan: an empty store switches by itself...
    let r = p.deploy_env(&env, &["setup", "--dry-run"]).ok();
    r.prints("storage:   vfs -> overlay");
    // ...one with something that is not the app's does not, unless asked.
    let imported = p.user(
        "sh",
        &[
            "-c",
            &format!(
                "XDG_CONFIG_HOME={} XDG_DATA_HOME={} podman import /dev/null localhost/someone-elses:1 \
                 || tar -cf - -T /dev/null | XDG_CONFIG_HOME={} XDG_DATA_HOME={} podman import - localhost/someone-elses:1",
                config.display(),
                data.display(),
                config.display(),
                data.display()
            ),
        ],
    );
    assert_eq!(imported.code, 0, "{imported:?}");
    let r = p.deploy_env(&env, &["setup", "--dry-run"]).ok();
    r.prints("vfs, kept: a switch to overlay would delete image localhost/someone-elses:1");
    let r = p
        .deploy_env(&env, &["setup", "--dry-run", "--reset-storage"])
        .ok();
    r.prints("storage:   vfs -> overlay");
    let _ = p.user(
        "sh",
        &[
            "-c",
            &format!(
                "XDG_CONFIG_HOME={} XDG_DATA_HOME={} podman system reset --force",
                config.display(),
                data.display()
            ),
        ],
    );
}

/// Where the store's config and data are.
#[track_caller]
fn a_vfs_store_of_its_own() -> PathBuf {
    // A store of its own on vfs (Podman's config and data in other XDG directories).
    let n = common::node();
    let base = std::path::PathBuf::from("/tmp/deploy-tests/vfs-store");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(base.join("config/containers")).unwrap();
    std::fs::create_dir_all(base.join("data")).unwrap();
    // Its own engine temp dir too: `podman system reset` of this store removes it, and the
    // node's (which the other tests' running containers use) must not go with it.
    let conf = std::fs::read_to_string(n.home.join(".config/containers/containers.conf")).unwrap();
    assert!(conf.trim_start().starts_with("[engine]"), "{conf}");
    std::fs::write(
        base.join("config/containers/containers.conf"),
        conf.replacen(
            "[engine]\n",
            &format!(
                "[engine]\ntmp_dir = \"/run/user/{}/deploy-tests-vfs-tmp\"\n",
                n.uid
            ),
            1,
        ),
    )
    .unwrap();
    std::fs::write(
        base.join("config/containers/storage.conf"),
        format!(
            "[storage]\ndriver = \"vfs\"\nrunroot = \"/run/user/{}/deploy-tests-vfs\"\n",
            n.uid
        ),
    )
    .unwrap();
    common::chown_to_node_user(&base);
    base
}

#[test]
fn copy_dot_just_works_and_the_image_holds_no_deploy_files_or_shared_links() {
    let p = Project::new("t-copyall", 18350, Options::default());
    // The most common line there is: the whole build context into the image.
    p.write(
        "Containerfile",
        "FROM scratch\nCOPY . /app\nWORKDIR /app\nENTRYPOINT [\"/app/example-app\"]\n",
    );
    p.write(".dockerignore", "**/*.tmp\n");
    p.write("assets/scratch.tmp", "not for the image");
    let yaml = std::fs::read_to_string(p.dir.join("deploy.yaml")).unwrap();
    p.write(
        "deploy.yaml",
        &yaml.replace(
            "  - Containerfile\n",
            "  - Containerfile\n  - .dockerignore\n",
        ),
    );
    // The example app lives at /app/example-app once its directory is copied whole.
    std::fs::rename(p.dir.join("dist/example-app"), p.dir.join("example-app")).unwrap();
    let yaml = std::fs::read_to_string(p.dir.join("deploy.yaml")).unwrap();
    p.write(
        "deploy.yaml",
        &yaml.replace("  - dist/example-app\n", "  - example-app\n"),
    );
    // The release's variables file (in its .deploy/) stays out of the image too.
    p.add_to_config("env:\n  secret: [GREETING]\n");
    p.deploy(&["setup"]).ok();
    p.deploy_env(&[("GREETING", "from-the-shell")], &["release", "v1"])
        .ok();
    p.body("/");
    p.deploy_env(&[("GREETING", "from-the-shell")], &["release", "v2"])
        .ok();
    assert!(p.root().join("releases/v2/.deploy/env").is_file());
    assert_eq!(
        p.body("/hits"),
        "1\n",
        "the data is mounted where the app looks"
    );
    assert!(p.root().join("releases/v1/.deploy/snapshots").is_dir());
    // What is in the image: the app's files, none of deploy's, no links into shared/.
    let id = p
        .user("podman", &["create", &p.names().image("v2")])
        .ok()
        .stdout;
    let listing = p
        .user(
            "sh",
            &["-c", &format!("podman export {} | tar -t", id.trim())],
        )
        .ok()
        .stdout;
    let _ = p.user("podman", &["rm", id.trim()]);
    assert!(listing.lines().any(|l| l == "app/example-app"), "{listing}");
    for absent in [
        "app/.deploy",
        "app/data",
        "app/.env",
        "app/assets/scratch.tmp",
    ] {
        assert!(
            !listing.lines().any(|l| l.trim_end_matches('/') == absent),
            "{absent} is in the image:\n{listing}"
        );
    }
}

#[test]
fn exec_runs_a_one_off_container_of_the_live_release_with_its_data() {
    let p = Project::new("t-exec", 18354, Options::default());
    p.deploy(&["setup"]).ok();
    let run_sql = [
        "exec",
        "--",
        "/app/example-app",
        "run-sql",
        "/app/assets/x.sql",
    ];
    p.deploy(&run_sql)
        .failed()
        .says("nothing is live on test yet");
    p.write(
        "assets/x.sql",
        "INSERT INTO hits (version) VALUES ('exec');",
    );
    p.deploy(&["release", "v1"]).ok();
    let r = p.deploy(&run_sql).ok();
    r.prints("run-sql: ok");
    assert_eq!(
        p.body("/hits"),
        "1\n",
        "the row the exec wrote, in the app's data"
    );
    // The command's exit code is deploy's.
    let r = p.deploy(&["exec", "--", "/app/example-app", "run-sql", "/no/such.sql"]);
    assert_ne!(r.code, 0);
    // While a swap is unfinished, it waits its turn (the server's own recovery kept off this
    // made-up journal).
    p.without_server_recovery();
    let journal = p.root().join(".deploy/swap.journal");
    std::fs::write(
        &journal,
        "{\"t\":\"move\",\"move\":{\"kind\":\"release\",\"to\":\"v2\",\"from\":\"v1\",\"hooks\":true},\"pid\":999999,\"at\":\"x\"}\n",
    )
    .unwrap();
    p.deploy(&run_sql).failed().says("was interrupted");
    std::fs::remove_file(&journal).unwrap();
}

#[test]
fn staging_and_prod_of_one_app_live_side_by_side_each_with_its_overrides() {
    let p = Project::new(
        "t-envs",
        18370,
        Options {
            traefik: Some(common::traefik_section("t-envs", "maintenance", "")),
            ..Options::default()
        },
    );
    // `prod` on its own path and port, overriding a scalar, a map key and Traefik's rule.
    let config = std::fs::read_to_string(p.dir.join("deploy.yaml")).unwrap();
    p.write(
        "deploy.yaml",
        &config.replace(
            "environments:\n",
            "environments:\n  prod:\n    host: local\n    path: ~/tests/t-envs-prod\n    port: 18372\n\
             \x20   keep_releases: 1\n    health:\n      timeout: 7s\n    traefik:\n      rule: Host(`t-envs-prod.test`)\n",
        ),
    );
    let config = p.deploy(&["config", "prod"]).ok().stdout;
    assert!(
        config.contains("keep_releases: 1") && config.contains("timeout: 7s"),
        "{config}"
    );
    assert!(
        config.contains("t-envs-prod.test") && config.contains("path: /healthz"),
        "{config}"
    );
    for env in ["test", "prod"] {
        p.deploy(&["setup", env]).ok();
        p.deploy(&["release", "v1", env]).ok();
    }
    p.deploy(&["release", "v2", "test"]).ok();
    let front = |host: &str| {
        let (status, _, body) = common::get_front_as(host, "/").unwrap();
        format!("{body} (HTTP {status} for {host})")
    };
    let answer = front("t-envs.test");
    assert!(answer.starts_with("example-app v2 "), "{answer}");
    let answer = front("t-envs-prod.test");
    assert!(answer.starts_with("example-app v1 "), "{answer}");
    assert!(p.body_at(18372, "/").starts_with("example-app v1 "));
    // Each keeps its own releases: prod keeps one (and the previous, as always).
    p.deploy(&["release", "v3", "prod"]).ok();
    p.deploy(&["release", "v4", "prod"]).ok();
    let mut prod_releases: Vec<_> = std::fs::read_dir(p.root_of("prod").join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    prod_releases.sort();
    assert_eq!(prod_releases, vec!["v3".to_string(), "v4".to_string()]);
    assert_eq!(
        p.releases_on_disk(),
        vec!["v1".to_string(), "v2".to_string()]
    );
    // A rollback of one leaves the other alone; both units run side by side.
    p.deploy(&["rollback", "test"]).ok();
    let answer = front("t-envs.test");
    assert!(answer.starts_with("example-app v1 "), "{answer}");
    let answer = front("t-envs-prod.test");
    assert!(answer.starts_with("example-app v4 "), "{answer}");
    for env in ["test", "prod"] {
        let unit = deploy::names::Names::new(&p.app, env).unit();
        let r = p.user("systemctl", &["--user", "is-active", &unit]);
        assert_eq!(r.stdout.trim(), "active", "{unit}");
    }
    p.deploy(&["status", "prod"]).ok().prints("v4");
}

#[test]
fn env_clear_and_secret_reach_the_app_and_nothing_else() {
    let p = Project::new("t-secrets", 18374, Options::default());
    p.add_to_config("env:\n  clear:\n    RUST_LOG: info\n  secret: [GREETING]\n");
    p.deploy(&["setup"]).ok();
    let shared_env = p.root().join("shared/.env");
    std::fs::write(&shared_env, "GREETING=from-shared\nOTHER=1\n").unwrap();
    common::chown_to_node_user(&shared_env);
    // Unset, it is named, and nothing is built or uploaded.
    let r = p.deploy(&["release", "v1"]).failed();
    r.says("env.secret `GREETING` is not set in this shell");
    assert!(p.releases_on_disk().is_empty());

    let (one, two) = ("s3cret-one-9f1c", "s3cret-two-77ab");
    let r = p
        .deploy_env(&[("GREETING", one)], &["-v", "release", "v1"])
        .ok();
    // The release's value wins over shared/.env's.
    assert!(p.body("/").contains(&format!("greeting={one}")));
    let vars = p.root().join("releases/v1/.deploy/env");
    let mode = std::fs::metadata(&vars).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Never printed: not in -v, --json or --dry-run output.
    let dry = p
        .deploy_env(&[("GREETING", one)], &["release", "v2", "--dry-run"])
        .ok();
    let json = p.deploy(&["--json", "history"]).ok();
    for out in [&r.stdout, &r.stderr, &dry.stdout, &dry.stderr, &json.stdout] {
        assert!(!out.contains(one), "a secret in the output: {out}");
    }
    // Never on a command line: none holds it at any moment of a release (/proc scanned over
    // and over from its start to its end: the build, the swap, the start).
    let mut child = p
        .deploy_cmd(&[("GREETING", two)], &["release", "v2"])
        .spawn()
        .unwrap();
    // The test's own `setpriv ... env GREETING=...` carries it until it execs deploy (same pid):
    // the scans start once that pid is deploy.
    let exe = std::path::PathBuf::from(format!("/proc/{}/exe", child.id()));
    while std::fs::read_link(&exe).is_ok_and(|e| !e.to_string_lossy().contains("deploy")) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let mut scans = 0;
    while child.try_wait().unwrap().is_none() {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&cmdline).contains(two),
                "a command line holds the secret: {}",
                String::from_utf8_lossy(&cmdline)
            );
        }
        scans += 1;
    }
    assert!(scans > 10, "only {scans} scans of /proc during the release");
    Project::wait(child).ok();
    assert!(p.body("/").contains(&format!("greeting={two}")));
    // Nothing of deploy's own holds it, but the release's variables file.
    let found = p.user(
        "grep",
        &["-rl", two, p.root().join(".deploy").to_str().unwrap()],
    );
    assert_eq!(found.stdout, "", "{}", found.stdout);
    // A rollback brings back the values that release was released with.
    p.deploy(&["rollback"]).ok();
    assert!(p.body("/").contains(&format!("greeting={one}")));
    // `deploy config` names the secret, never its value.
    let c = p.deploy_env(&[("GREETING", one)], &["config"]).ok();
    assert!(
        c.stdout.contains("GREETING: (set here)") && !c.stdout.contains(one),
        "{}",
        c.stdout
    );
}

#[test]
fn every_step_a_release_shows_is_in_its_dry_run_in_the_same_order_and_words() {
    let p = Project::new(
        "t-toldonce",
        18470,
        Options {
            traefik: Some(common::traefik_section("t-toldonce", "maintenance", "")),
            ..Options::default()
        },
    );
    p.with_v1_live();
    let planned: Vec<String> = p
        .release_plan("v2")
        .into_iter()
        .flat_map(|s| s.steps)
        .collect();
    let r = p.deploy(&["release", "v2", "--json"]).ok();
    let shown: Vec<String> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "step")
        .map(|e| e["step"].as_str().unwrap().to_string())
        .collect();
    assert!(
        shown.iter().any(|s| s.starts_with("Stopping ")),
        "{}",
        r.stdout
    );
    assert_eq!(shown, planned, "{}", r.stdout);
}
