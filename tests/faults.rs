//! Fault injection on a real node: SIGKILL at every step of a release, concurrent releases, and
//! SIGTERM before and during the swap. After each: `current` names a complete release, the site
//! serves, the state file is intact and every row of the app's database is there.

mod common;
use common::{traefik_section, wait_for_text, Options, Project};
use std::time::{Duration, Instant};

/// `deploy release VERSION`, spawned, pausing 2 s after the swap's step `step` (the test
/// hook); returns once the step is done.
#[track_caller]
fn release_paused_after(p: &Project, step: &str, version: &str) -> std::process::Child {
    let child = p
        .deploy_cmd(
            &[("DEPLOY_TEST_HOOK", &format!("sleep@after-{step}"))],
            &["release", version],
        )
        .spawn()
        .unwrap();
    p.wait_for_journal("done", step);
    child
}

/// `example-app VERSION hits=N ...` -> (VERSION, N)
#[track_caller]
fn version_and_hits(body: &str) -> (String, u64) {
    let mut words = body.split_whitespace();
    let version = words.nth(1).unwrap_or_default().to_string();
    let hits = words
        .next()
        .and_then(|w| w.strip_prefix("hits="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no hits in {body:?}"));
    (version, hits)
}

#[track_caller]
fn assert_node_consistent(p: &Project) {
    let root = p.root();
    let current = p.current().expect("`current` names a release");
    let dir = root.join("releases").join(&current);
    assert!(dir.join("example-app").is_file(), "{current} is complete");
    assert!(
        dir.join(".deploy/release.env").is_file(),
        "{current} is complete"
    );
    for v in p.releases_on_disk().iter().filter(|v| !v.starts_with('.')) {
        let d = root.join("releases").join(v);
        assert!(
            d.join(".deploy/release.env").is_file() && d.join("example-app").is_file(),
            "no partial release under a real name: {v}"
        );
    }
    let state = std::fs::read_to_string(root.join(".deploy/state.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&state)
        .unwrap_or_else(|e| panic!("the state is not whole JSON ({e}): {state}"));
    assert!(
        parsed["releases"].is_object() && parsed["releases"].get(&current).is_some(),
        "the state knows the live release {current}: {state}"
    );
}

/// The journal a run killed at `point` (`after-<step>`) left names that step as its last one
/// done: the kill happened where it was meant to.
#[track_caller]
fn journal_ends_at(p: &Project, point: &str) {
    let Some(step) = point.strip_prefix("after-") else {
        return;
    };
    let journal = std::fs::read_to_string(p.root().join(".deploy/swap.journal"))
        .unwrap_or_else(|e| panic!("{point}: no journal left by the killed run ({e})"));
    let last = journal.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("{{\"t\":\"done\",\"step\":\"{step}\"")),
        "{point}: the journal's last entry is {last}"
    );
}

#[test]
fn sigkill_of_the_node_side_run_at_every_step_then_the_next_release_recovers() {
    let p = Project::new(
        "t-kill",
        18301,
        Options {
            health_timeout: "10s",
            traefik: Some(traefik_section("t-kill", "maintenance", "")),
            ..Options::default()
        },
    );
    p.deploy(&["setup"]).ok();
    // The next command recovers here (the server's own recovery has a test of its own).
    p.without_server_recovery();
    p.deploy(&["release", "v0"]).ok();
    let (_, mut hits) = version_and_hits(&p.body("/"));
    // Every point of the plan, taken from the command (one source: the planner).
    let plan = p.release_plan("k0");
    assert!(
        ["after-upload", "after-stop", "after-health", "after-prune"]
            .iter()
            .all(|n| plan.iter().any(|s| s.point == *n)),
        "{plan:?}"
    );
    for (i, planned) in plan.iter().enumerate() {
        let (point, in_swap) = (&planned.point, planned.swap);
        let killed = format!("k{i}");
        p.write("assets/greeting.txt", &killed);
        let hook = format!("kill@{point}");
        let r = p
            .deploy_env(&[("DEPLOY_TEST_HOOK", &hook)], &["release", &killed])
            .failed();
        r.says("died (signal 9");
        assert_node_consistent(&p);
        if in_swap {
            journal_ends_at(&p, point);
            let status = p.deploy(&["status"]).ok().stdout;
            assert!(status.contains("was interrupted"), "{point}: {status}");
        }

        let next = format!("n{i}");
        p.write("assets/greeting.txt", &next);
        let r = p.deploy(&["release", &next]).ok();
        if in_swap {
            r.says("was interrupted during its swap");
        }
        // A release that had passed its health check is kept; any earlier step is undone.
        let kept = ["after-health", "after-leave-gap"].contains(&point.as_str());
        let list = p.deploy(&["releases"]).ok().stdout;
        let row = list
            .lines()
            .find(|l| l.contains(&format!(" {killed} ")))
            .unwrap_or_default();
        if in_swap {
            assert_eq!(row.contains("failed"), !kept, "{point}: {list}");
        }
        assert_node_consistent(&p);
        let (version, now) = version_and_hits(&p.body("/"));
        assert_eq!(version, next, "{point}");
        assert_eq!(now, hits + 1, "{point}: every row is still there");
        hits = now;
        let (status, _, body) = p.get_front("/").unwrap();
        assert_eq!(
            status, 200,
            "{point}: Traefik routes to the app again: {body}"
        );
        hits += 1;
    }
}

#[test]
fn sigkill_of_the_command_you_typed_never_leaves_the_app_down() {
    let p = Project::new(
        "t-killfront",
        18340,
        Options {
            traefik: Some(traefik_section("t-killfront", "maintenance", "")),
            ..Options::default()
        },
    );
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v0"]).ok();
    let steps = p.release_plan("f0").into_iter().filter(|s| s.swap);
    for (i, planned) in steps.enumerate() {
        let (point, step) = (&planned.point, &planned.name);
        let v = format!("f{i}");
        let hook = format!("sleep@{point}");
        let child = p
            .deploy_cmd(&[("DEPLOY_TEST_HOOK", &hook)], &["release", &v])
            .spawn()
            .unwrap();
        p.wait_for_journal("done", step);
        signal(&child, "-KILL");
        let killed_at = Instant::now();
        Project::wait(child);
        // With no further command, the release goes on to its end and the app answers.
        loop {
            let answer = p
                .get("/")
                .ok()
                .filter(|(s, b)| *s == 200 && b.starts_with(&format!("example-app {v} ")));
            let journal = p.root().join(".deploy/swap.journal");
            if answer.is_some() && !journal.exists() {
                break;
            }
            assert!(
                killed_at.elapsed() < Duration::from_secs(10),
                "{point}: the app answers {v} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The run finishes (prune, report) and lets go of the lock.
        let lock = p.root().join(".deploy/lock");
        while !std::process::Command::new("flock")
            .args(["-n"])
            .arg(&lock)
            .arg("true")
            .status()
            .unwrap()
            .success()
        {
            assert!(
                killed_at.elapsed() < Duration::from_secs(30),
                "{point}: the run ends"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_node_consistent(&p);
        assert_eq!(p.current().as_deref(), Some(v.as_str()), "{point}");
    }
}

#[test]
fn a_second_deploy_fails_fast_naming_the_holder() {
    let p = Project::new("t-lock", 18303, Options::default());
    p.with_v1_live();
    let first = p
        .deploy_cmd(
            &[("DEPLOY_TEST_HOOK", "sleep@after-build")],
            &["release", "v2"],
        )
        .spawn()
        .unwrap();
    let lock = p.root().join(".deploy/lock");
    wait_for_text(&lock, "release v2", Duration::from_secs(20));
    let t = Instant::now();
    let r = p.deploy(&["rollback"]).failed();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "fails fast: {:?}",
        t.elapsed()
    );
    r.says("another deploy is running");
    assert!(
        r.stderr.contains("`deploy release v2 test` (pid"),
        "names the holder: {}",
        r.stderr
    );
    // setup too waits its turn: run in another's gap it would restart what the swap uses.
    let r = p.deploy(&["setup"]).failed();
    assert_eq!(r.code, 4, "{}", r.stderr);
    r.says("another deploy is running");
    // With --lock-wait a second deploy waits for the first, then goes on.
    let r = p.deploy(&["--lock-wait", "60s", "release", "v3"]).ok();
    r.says("waiting for it (--lock-wait)");
    Project::wait(first).ok();
    assert!(p.body("/").starts_with("example-app v3 "));
    p.deploy(&["rollback", "--to", "v2"]).ok();
    assert!(p.body("/").starts_with("example-app v2 "));
}

#[test]
fn a_start_that_fails_for_a_moment_is_tried_again_and_the_release_goes_live() {
    let p = Project::new("t-portbusy", 18356, Options::default());
    p.with_v1_live();
    // Another process takes the app's port while it is stopped, until the first start has
    // failed on it.
    let child = release_paused_after(&p, "stop", "v2");
    let taken = std::net::TcpListener::bind(("127.0.0.1", p.port)).expect("the port is free");
    wait_for_text(
        &p.root().join("log/unit.log"),
        "address already in use",
        Duration::from_secs(60),
    );
    drop(taken);
    let r = Project::wait(child).ok();
    r.says("warning: the first start failed, the second worked");
    r.says("podman said:");
    r.says("address already in use");
    assert_eq!(p.current().as_deref(), Some("v2"));
    assert!(p.body("/").starts_with("example-app v2 "));

    // Taken for good, the start fails twice and v2 is put back, with podman's words.
    let child = release_paused_after(&p, "stop", "v3");
    let taken = std::net::TcpListener::bind(("127.0.0.1", p.port)).expect("the port is free");
    let journal = p.root().join(".deploy/swap.journal");
    wait_for_text(
        &journal,
        "\"step\":\"switch\",\"to\":\"v2\"",
        Duration::from_secs(60),
    );
    drop(taken);
    let r = Project::wait(child).failed();
    r.says("ended with `failed` twice; podman said:");
    r.says("address already in use");
    r.says("v2 is serving again");
    assert!(p.body("/").starts_with("example-app v2 "));
}

#[track_caller]
fn signal(child: &std::process::Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn sigterm_before_the_swap_changes_nothing_and_during_it_finishes_it() {
    let p = Project::new("t-term", 18305, Options::default());
    p.with_v1_live();

    // Before the swap: it stops at the next step boundary; v1 keeps serving.
    let child = p
        .deploy_cmd(
            &[("DEPLOY_TEST_HOOK", "sleep@after-upload")],
            &["release", "v2"],
        )
        .spawn()
        .unwrap();
    let incoming = p.root().join("releases/.incoming-v2");
    let t = Instant::now();
    while !incoming.exists() {
        assert!(t.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, "-TERM");
    let r = Project::wait(child).failed();
    r.says("interrupted before the image build");
    assert_eq!(p.current().as_deref(), Some("v1"));
    assert!(p.body("/").starts_with("example-app v1 "));

    // During the swap: it is finished, then the command exits non-zero saying so.
    let child = release_paused_after(&p, "stop", "v3");
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, "-TERM");
    signal(&child, "-INT");
    let r = Project::wait(child).failed();
    r.says("interrupted during the swap, which was finished first");
    assert_eq!(p.current().as_deref(), Some("v3"));
    assert!(p.body("/").starts_with("example-app v3 "));
    assert!(!p.root().join(".deploy/swap.journal").exists());
    // The interrupted v2 upload is released cleanly by the next command.
    p.deploy(&["release", "v2"]).ok();
    assert!(p.body("/").starts_with("example-app v2 "));
}

#[test]
fn a_failing_image_build_leaves_the_old_release_serving_untouched() {
    let p = Project::new("t-badbuild", 18306, Options::default());
    p.with_v1_live();
    p.body("/");
    p.write(
        "Containerfile",
        "FROM scratch\nCOPY no-such-file /app/x\nENTRYPOINT [\"/app/x\"]\n",
    );
    let r = p.deploy(&["release", "v2"]).failed();
    r.says(&format!("podman build of {}", p.names().image("v2")));
    assert!(
        r.stderr.contains("no-such-file"),
        "the build's last lines: {}",
        r.stderr
    );
    assert!(!r.stderr.contains("Stopping"), "{}", r.stderr);
    assert_eq!(p.current().as_deref(), Some("v1"));
    assert_eq!(p.body("/hits"), "1\n");
    assert!(!p.root().join("releases/v2").exists());
    assert_node_consistent(&p);
    // Fixed, the same version goes out.
    std::fs::copy(
        common::repo().join("examples/app/Containerfile"),
        p.dir.join("Containerfile"),
    )
    .unwrap();
    p.deploy(&["release", "v2"]).ok();
    assert_eq!(p.body("/hits"), "1\n");
}

#[test]
fn an_unreachable_user_manager_is_explained_and_nothing_changes() {
    let p = Project::new("t-nomanager", 18307, Options::default());
    p.with_v1_live();
    let uid = common::node().uid;
    let gone = format!("unix:path=/run/user/{uid}/no-such-bus");
    for args in [&["release", "v2"][..], &["rollback"], &["setup"]] {
        let r = p.deploy_env(&[("DBUS_SESSION_BUS_ADDRESS", &gone)], args);
        assert_ne!(r.code, 0, "{args:?}");
        assert!(
            r.stderr.contains("cannot reach your systemd user manager")
                && r.stderr.contains("loginctl enable-linger deployer")
                && r.stderr.contains("XDG_RUNTIME_DIR"),
            "{args:?}: {}",
            r.stderr
        );
    }
    assert_eq!(p.current().as_deref(), Some("v1"));
    assert_eq!(p.releases_on_disk(), vec!["v1".to_string()]);
    assert!(p.body("/").starts_with("example-app v1 "));
}

#[test]
fn a_full_disk_during_the_upload_removes_the_partial_release() {
    let p = Project::new("t-diskfull", 18308, Options::default());
    // Room for one release (the binary is about 4 MB) and the data, not for a 16 MB asset.
    let _disk = common::SmallDisk::mount(&p.root(), "12m");
    p.with_v1_live();
    for _ in 0..3 {
        p.body("/");
    }
    p.write("assets/big.bin", &"x".repeat(16 << 20));
    let r = p.deploy(&["release", "v2"]).failed();
    r.says("No space left on device");
    r.says("the disk is full");
    r.says("the partial upload was removed");
    assert_eq!(p.releases_on_disk(), vec!["v1".to_string()]);
    assert_eq!(p.current().as_deref(), Some("v1"));
    assert_eq!(p.body("/hits"), "3\n");
    assert_node_consistent(&p);
    // With the space back, the next release goes out.
    p.remove("assets/big.bin");
    p.deploy(&["release", "v2"]).ok();
    assert_eq!(p.body("/hits"), "3\n");
}

/// The app's schema and its number of rows, read with the sqlite3 shell as the node user.
#[track_caller]
fn schema_and_rows(p: &Project) -> (String, String) {
    let db = p.root().join("shared/data/app.db");
    let db = db.to_str().unwrap();
    let schema = p
        .user(
            "sqlite3",
            &[db, "SELECT sql FROM sqlite_master ORDER BY name"],
        )
        .ok();
    let rows = p.user("sqlite3", &[db, "SELECT COUNT(*) FROM hits"]).ok();
    (schema.stdout, rows.stdout)
}

#[test]
fn a_migration_in_the_gap_is_undone_when_a_later_hook_fails_or_its_process_dies() {
    let p = Project::new("t-hookdata", 18342, Options::default());
    p.deploy(&["setup"]).ok();
    p.without_server_recovery();
    p.deploy(&["release", "v1"]).ok();
    for _ in 0..3 {
        p.body("/");
    }
    let before = schema_and_rows(&p);
    assert!(before.1.trim() == "3", "{before:?}");
    p.add_to_config(
        "hooks:\n  in_gap:\n    - /app/example-app run-sql /app/assets/migrate.sql\n    \
         - /app/example-app run-sql /app/assets/seed.sql\n",
    );
    p.write(
        "assets/migrate.sql",
        "ALTER TABLE hits ADD COLUMN extra TEXT; CREATE TABLE added (x); \
         INSERT INTO hits (version) VALUES ('m1'), ('m2');",
    );
    p.write("assets/seed.sql", "INSERT INTO no_such_table VALUES (1);");

    // The second hook fails after the first changed the schema and added rows: v1 starts on
    // exactly the schema and rows it had.
    let r = p.deploy(&["release", "v2"]).failed();
    assert_eq!(r.code, 5, "{}", r.stderr);
    r.says("no such table: no_such_table");
    r.says("v1 is serving again, with the data it left");
    assert_eq!(p.current().as_deref(), Some("v1"));
    assert_eq!(schema_and_rows(&p), before);
    assert!(
        common::only_snapshot(&p.root(), "v2")
            .join("data/app.db")
            .is_file(),
        "what the failed attempt left is kept as its snapshot"
    );

    // The node-side process dies right after the migration: the next command restores the data.
    p.write("assets/seed.sql", "SELECT 1;");
    let r = p
        .deploy_env(
            &[("DEPLOY_TEST_HOOK", "kill@after-hook")],
            &["release", "v3"],
        )
        .failed();
    r.says("died (signal 9");
    let status = p.deploy(&["status"]).ok().stdout;
    assert!(
        status.contains("puts v1 back with the data it left"),
        "{status}"
    );
    // The next release recovers first: had v3's migration stayed, v4's own ALTER TABLE would
    // fail on the column that exists already.
    let r = p.deploy(&["release", "v4"]).ok();
    r.says("was interrupted during its swap, in its step `hook`");
    r.says("putting v1 back with the data it left");
    assert_eq!(p.current().as_deref(), Some("v4"));
    assert_eq!(
        schema_and_rows(&p).1.trim(),
        "5",
        "3 rows, and v4's migration's 2"
    );
}

#[test]
fn a_hung_in_gap_hook_is_removed_after_hooks_timeout_and_the_previous_release_serves() {
    let p = Project::new("t-hookhang", 18344, Options::default());
    p.with_v1_live();
    p.body("/");
    p.add_to_config(
        "hooks:\n  timeout: 3s\n  in_gap:\n    - /app/example-app run-sql /app/assets/hang.sql\n",
    );
    // Inserts rows for ever, in one transaction that never commits.
    p.write(
        "assets/hang.sql",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
         INSERT INTO hits (version) SELECT 'hung' FROM c;",
    );
    let t = Instant::now();
    let r = p.deploy(&["release", "v2"]).failed();
    assert_eq!(r.code, 5, "{}", r.stderr);
    r.says("did not finish within 3s (hooks.timeout)");
    r.says("v1 is serving again");
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    let gone = p.user(
        "podman",
        &["container", "exists", &p.names().hook_container()],
    );
    assert_eq!(gone.code, 1, "the hook's container is gone");
    assert_eq!(p.current().as_deref(), Some("v1"));
    assert_eq!(p.body("/hits"), "1\n", "v1's one row, nothing of the hook");
}

#[test]
fn a_recovery_that_cannot_succeed_is_replaced_by_a_release_not_a_dead_end() {
    let p = Project::new("t-stuck", 18352, Options::default());
    p.deploy(&["setup"]).ok();
    p.without_server_recovery();
    p.deploy(&["release", "v1"]).ok();
    let r = p.deploy_env(
        &[("DEPLOY_TEST_HOOK", "kill@after-stop")],
        &["release", "v2"],
    );
    assert_ne!(r.code, 0);
    // What was live before is gone, directory and image: putting it back cannot work.
    std::fs::remove_dir_all(p.root().join("releases/v1")).unwrap();
    // --force: the stopped container may still be on its way out (podman removes it after the
    // stop job, --rm).
    p.user("podman", &["rmi", "--force", &p.names().image("v1")])
        .ok();
    let r = p.deploy(&["rollback"]).failed();
    r.says("recovering the interrupted release of v2 failed");
    r.says("`deploy rollback --to VERSION test`");
    assert!(
        p.root().join(".deploy/swap.journal").exists(),
        "the journal stays"
    );
    let r = p.deploy(&["release", "v3"]).ok();
    r.says("this command replaces that swap");
    assert!(p.body("/").starts_with("example-app v3 "));
    assert!(!p.root().join(".deploy/swap.journal").exists());
    let aside = std::fs::read_dir(p.root().join(".deploy"))
        .unwrap()
        .flatten()
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("swap.journal.abandoned-")
        });
    assert!(aside, "the abandoned journal is kept aside for a look");
}

#[test]
fn a_run_killed_in_its_put_back_is_put_right_by_the_server() {
    let p = Project::new("t-killback", 18354, Options::default());
    p.with_v1_live();
    for _ in 0..3 {
        p.body("/");
    }
    // v2 fails its health check; the put-back's stop (the second stop of the run) is where the
    // run dies.
    p.write("assets/fail-health", "");
    // The server's recovery waits until the journal was read here, then is let go.
    p.without_server_recovery();
    let r = p.deploy_env(
        &[("DEPLOY_TEST_HOOK", "kill@after-stop#2")],
        &["release", "v2"],
    );
    assert_ne!(r.code, 0);
    r.says("died (signal 9");
    // It died in the put-back, after its stop: the journal says so.
    let journal =
        std::fs::read_to_string(p.root().join(".deploy/swap.journal")).unwrap_or_default();
    assert!(journal.contains("\"kind\":\"put-back\""), "{journal}");
    assert!(
        journal
            .trim_end()
            .ends_with("{\"t\":\"done\",\"step\":\"stop\"}"),
        "{journal}"
    );
    p.user(
        "systemctl",
        &["--user", "start", &p.names().recover_path_unit()],
    )
    .ok();
    // No command: the server's own recovery puts v1 back on its data.
    p.wait_settled(Duration::from_secs(30), "v1 is not back", |p| {
        p.get("/")
            .is_ok_and(|(s, b)| s == 200 && b.starts_with("example-app v1 "))
    });
    assert_node_consistent(&p);
    assert_eq!(
        p.body("/hits"),
        "4\n",
        "v1's rows, one more for the check above"
    );
}
