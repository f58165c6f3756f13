//! Fault injection on a real node: SIGKILL at every step of a release, concurrent releases, and
//! SIGTERM before and during the swap. After each: `current` names a complete release, the site
//! serves, the state file is intact and every row of the app's database is there.

mod common;
use common::{traefik_section, Options, Project};
use std::time::{Duration, Instant};

/// The steps of a release, as the test hook names them (src/signals.rs).
const STEPS: &[&str] = &[
    "after-upload",
    "after-build",
    "after-gap",
    "after-stop",
    "after-switch",
    "after-start",
    "after-health",
];
const SWAP_STEPS: &[&str] = &[
    "after-gap",
    "after-stop",
    "after-switch",
    "after-start",
    "after-health",
];

/// `example-app VERSION hits=N ...` -> (VERSION, N)
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
    assert!(
        state.trim_end().ends_with('}') && state.contains("\"releases\""),
        "state intact: {state}"
    );
}

#[test]
fn sigkill_at_every_step_then_the_next_release_recovers() {
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
    p.deploy(&["release", "v0"]).ok();
    let (_, mut hits) = version_and_hits(&p.body("/"));
    for (i, step) in STEPS.iter().enumerate() {
        let killed = format!("k{i}");
        p.write("assets/greeting.txt", &killed);
        let hook = format!("kill@{step}");
        let r = p.deploy_env(&[("DEPLOY_TEST_HOOK", &hook)], &["release", &killed]);
        assert_eq!(r.code, -1, "{step}: killed by SIGKILL\n{}", r.stderr);
        assert_node_consistent(&p);

        let next = format!("n{i}");
        p.write("assets/greeting.txt", &next);
        let r = p.deploy(&["release", &next]).ok();
        if SWAP_STEPS.contains(step) {
            assert!(
                r.stderr.contains("was interrupted during its swap"),
                "{step}: {}",
                r.stderr
            );
        }
        assert_node_consistent(&p);
        let (version, now) = version_and_hits(&p.body("/"));
        assert_eq!(version, next, "{step}");
        assert_eq!(now, hits + 1, "{step}: every row is still there");
        hits = now;
        let (status, _, body) = p.get_front("/").unwrap();
        assert_eq!(
            status, 200,
            "{step}: Traefik routes to the app again: {body}"
        );
        hits += 1;
    }
    let list = p.deploy(&["releases"]).ok().stdout;
    assert!(
        list.lines()
            .any(|l| l.contains("k6 ") && l.contains("failed")),
        "{list}"
    );
}

#[test]
fn a_second_deploy_fails_fast_naming_the_holder() {
    let p = Project::new("t-lock", 18303, Options::default());
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v1"]).ok();
    let first = p
        .deploy_cmd(
            &[("DEPLOY_TEST_HOOK", "sleep@after-build")],
            &["release", "v2"],
        )
        .spawn()
        .unwrap();
    let lock = p.root().join(".deploy/lock");
    let t = Instant::now();
    while !std::fs::read_to_string(&lock)
        .unwrap_or_default()
        .contains("release v2")
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the first release took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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
    Project::wait(first).ok();
    assert!(p.body("/").starts_with("example-app v2 "));
}

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
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v1"]).ok();

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
    let child = p
        .deploy_cmd(
            &[("DEPLOY_TEST_HOOK", "sleep@after-stop")],
            &["release", "v3"],
        )
        .spawn()
        .unwrap();
    let state = p.root().join(".deploy/state.json");
    let t = Instant::now();
    while !std::fs::read_to_string(&state)
        .unwrap_or_default()
        .contains("\"swap\"")
    {
        assert!(t.elapsed() < Duration::from_secs(20), "the swap began");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, "-TERM");
    signal(&child, "-INT");
    let r = Project::wait(child).failed();
    r.says("interrupted during the swap, which was finished first");
    assert_eq!(p.current().as_deref(), Some("v3"));
    assert!(p.body("/").starts_with("example-app v3 "));
    assert!(!std::fs::read_to_string(&state)
        .unwrap()
        .contains("\"swap\""));
    // The interrupted v2 upload is released cleanly by the next command.
    p.deploy(&["release", "v2"]).ok();
    assert!(p.body("/").starts_with("example-app v2 "));
}

#[test]
fn a_failing_image_build_leaves_the_old_release_serving_untouched() {
    let p = Project::new("t-badbuild", 18306, Options::default());
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v1"]).ok();
    p.body("/");
    p.write(
        "Containerfile",
        "FROM scratch\nCOPY no-such-file /app/x\nENTRYPOINT [\"/app/x\"]\n",
    );
    let r = p.deploy(&["release", "v2"]).failed();
    r.says("podman build of localhost/t-badbuild:v2");
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
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v1"]).ok();
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
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v1"]).ok();
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
