//! The everyday commands on a real node: start, stop and restart; a hold by hand (`deploy
//! lock`); remove; prune; `logs --since/--grep`; and the same over SSH.

mod common;
use common::{traefik_section, Options, Project};
use serde_json::Value;

/// Whether a user unit is enabled (starts at boot) and active, as systemctl says.
fn unit_state(p: &Project, unit: &str) -> (String, String) {
    let enabled = p.user("systemctl", &["--user", "is-enabled", unit]);
    let active = p.user("systemctl", &["--user", "is-active", unit]);
    (
        enabled.stdout.trim().to_string(),
        active.stdout.trim().to_string(),
    )
}

#[test]
fn stop_lasts_until_start_with_the_maintenance_page_meanwhile() {
    let app = "t-day-power";
    let p = Project::new(
        app,
        18500,
        Options {
            traefik: Some(traefik_section(app, "hold", "")),
            ..Options::default()
        },
    );
    p.with_v1_live();
    assert_eq!(p.get_front("/").unwrap().0, 200);

    let r = p.deploy(&["stop", "--dry-run"]).ok();
    r.prints("Plan: stop t-day-power on test until `deploy start test`");
    r.prints(&format!("  disable:   {} (not started at boot)", p.unit()));
    assert_eq!(
        unit_state(&p, &p.unit()).1,
        "active",
        "a dry run stops nothing"
    );

    let r = p.deploy(&["stop"]).ok();
    r.says("t-day-power on test is stopped until `deploy start test`");
    assert_eq!(
        unit_state(&p, &p.unit()),
        ("disabled".into(), "inactive".into()),
        "stopped, and not started at boot"
    );
    let (status, _, body) = p.get_front("/").unwrap();
    assert_eq!(status, 503, "the maintenance page while stopped: {body}");
    let r = p.deploy(&["status"]).ok();
    r.prints("stopped:      by deploy stop (");
    let r = p.deploy(&["status", "--json"]).ok();
    let s: Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(s["stopped"]["since"].is_string(), "{s}");
    // Setup rewrites the units and keeps the app stopped; a release waits for `start`.
    p.deploy(&["setup"]).ok().says("stays stopped");
    assert_eq!(unit_state(&p, &p.unit()).0, "disabled");
    p.deploy(&["release", "v2"])
        .failed()
        .says("`deploy start test` first");
    p.deploy(&["restart"]).failed().says("`deploy start test`");
    p.deploy(&["stop"]).ok().says("is stopped already");

    let r = p.deploy(&["start", "--json"]).ok();
    let done: Value = serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(done["action"], "start");
    assert_eq!(done["version"], "v1");
    assert_eq!(
        unit_state(&p, &p.unit()),
        ("enabled".into(), "active".into())
    );
    assert_eq!(p.get_front("/").unwrap().0, 200);
    assert!(p
        .deploy(&["status", "--json"])
        .ok()
        .stdout
        .contains("\"stopped\": null"));
    p.deploy(&["start"]).ok().says("runs already");

    let hits = || p.body("/hits").trim().parse::<u64>().unwrap();
    let before = hits();
    let r = p.deploy(&["restart"]).ok();
    r.says(&format!("Restarting {} ... ok", p.unit()));
    r.says("t-day-power v1 on test is restarted");
    assert_eq!(p.get_front("/").unwrap().0, 200);
    assert!(hits() > before);
    let r = p.deploy(&["history"]).ok();
    for action in ["restart", "start", "stop"] {
        assert!(
            r.stdout
                .lines()
                .any(|l| l.contains(&format!("  {action:<8} v1"))),
            "{action}: {}",
            r.stdout
        );
    }
}

#[test]
fn a_stop_in_socket_mode_closes_the_socket_too() {
    let p = Project::new("t-day-sock", 18502, Options::default());
    p.add_to_config("listen: socket\n");
    p.with_v1_live();
    let socket = &p.names().socket_unit();
    p.deploy(&["stop"]).ok();
    assert_eq!(
        unit_state(&p, socket),
        ("disabled".into(), "inactive".into())
    );
    assert!(p.get("/").is_err(), "nothing listens while stopped");
    p.deploy(&["start"]).ok();
    assert_eq!(unit_state(&p, socket), ("enabled".into(), "active".into()));
    assert_eq!(p.get("/").unwrap().0, 200);
}

#[test]
fn a_hold_by_hand_refuses_changes_until_released() {
    let p = Project::new("t-day-hold", 18504, Options::default());
    p.with_v1_live();
    p.deploy(&["release", "v2"]).ok();
    p.deploy(&["lock", "status"])
        .ok()
        .prints("t-day-hold on test is not held");
    p.deploy(&["lock", "acquire", "-m", ""])
        .failed()
        .says("says why");
    p.deploy(&["lock", "acquire", "-m", "x", "--dry-run"])
        .ok()
        .prints("Plan: hold t-day-hold on test by hand: \"x\"");
    assert!(!p.root().join(".deploy/hold-by-hand").exists());
    let r = p
        .deploy(&["lock", "acquire", "-m", "fixing the hits table"])
        .ok();
    r.says("t-day-hold on test is held by hand: \"fixing the hits table\" (by deployer@");
    assert!(p.root().join(".deploy/hold-by-hand").is_file());
    let r = p.deploy(&["lock", "acquire", "-m", "again"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    r.says("held by hand already");

    for args in [
        &["release", "v3"][..],
        &["rollback"],
        &["stop"],
        &["start"],
        &["restart"],
        &["prune"],
        &["remove"],
    ] {
        let t = std::time::Instant::now();
        let mut with_wait = args.to_vec();
        with_wait.extend(["--lock-wait", "30s"]);
        let r = p.deploy(&with_wait);
        assert_eq!(r.code, 4, "{args:?}: {}", r.stderr);
        r.says("is held by hand: \"fixing the hits table\" (by deployer@");
        r.says(" since ");
        r.says("`deploy lock release test`");
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "{args:?}: --lock-wait never waits on a hold by hand"
        );
    }
    assert_eq!(p.current().as_deref(), Some("v2"), "nothing changed");
    // Reading and maintenance go on; the status says who holds it.
    p.deploy(&["status"])
        .ok()
        .prints("held:         by hand: \"fixing the hits table\"");
    let r = p.deploy(&["lock", "status", "--json"]).ok();
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["held"], true);
    assert_eq!(v["hold"]["message"], "fixing the hits table");
    assert!(v["hold"]["who"].as_str().unwrap().starts_with("deployer@"));

    p.deploy(&["lock", "release"])
        .ok()
        .says("is no longer held (was \"fixing the hits table\"");
    p.deploy(&["lock", "release"]).ok().says("was not held");
    p.deploy(&["rollback"]).ok();
    assert_eq!(p.current().as_deref(), Some("v1"));
}

#[test]
fn prune_removes_old_releases_their_images_and_dangling_ones() {
    let p = Project::new("t-day-prune", 18506, Options::default());
    p.deploy(&["setup"]).ok();
    for v in ["v1", "v2", "v3"] {
        p.deploy(&["release", v]).ok();
    }
    p.deploy(&["rollback", "--to", "v1"]).ok();
    // An image of the app that lost its name (as a build over an existing tag leaves one):
    // built from v2 with the app's label, then untagged.
    let ctx = std::path::PathBuf::from("/tmp/deploy-tests/t-day-prune-dangling");
    let _ = std::fs::remove_dir_all(&ctx);
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        format!("FROM {}\nLABEL dangling=yes\n", p.names().image("v2")),
    )
    .unwrap();
    common::chown_to_node_user(&ctx);
    p.user(
        "podman",
        &[
            "build",
            "-q",
            // No cache to look up: a lookup fails when another test's image goes away under it.
            "--layers=false",
            "--label",
            &format!("deploy.image={}", p.names().image("v2")),
            "-t",
            "localhost/t-day-prune-dangling:x",
            ctx.to_str().unwrap(),
        ],
    )
    .ok();
    p.user("podman", &["untag", "localhost/t-day-prune-dangling:x"])
        .ok();
    // Tried again while another test's image goes away under the listing (podman 4 fails it).
    let dangling = || {
        let args = [
            "images",
            "--filter",
            "dangling=true",
            "--filter",
            &format!("label=deploy.image={}", p.names().image("v2")),
            "-q",
        ];
        let mut r = p.user("podman", &args);
        for _ in 0..10 {
            if r.code == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
            r = p.user("podman", &args);
        }
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout.trim().to_string()
    };
    assert_ne!(dangling(), "", "a dangling image of the app");
    let yaml = std::fs::read_to_string(p.dir.join("deploy.yaml")).unwrap();
    p.write(
        "deploy.yaml",
        &yaml.replace("keep_releases: 5", "keep_releases: 1"),
    );
    let r = p.deploy(&["prune", "--dry-run"]).ok();
    // v1 is live and was released first: nothing came before it to keep.
    r.prints("Plan: prune t-day-prune on test\n  releases:  v3, v2 (and their images)");
    assert!(p.image_exists("v3"), "a dry run removes nothing");
    let r = p.deploy(&["prune", "--json"]).ok();
    let done: Value = serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(done["pruned"], serde_json::json!(["v3", "v2"]));
    assert!(!done["dangling"].as_array().unwrap().is_empty(), "{done}");
    assert_eq!(p.releases_on_disk(), ["v1"], "the live one stays");
    assert!(!p.image_exists("v3") && !p.image_exists("v2") && p.image_exists("v1"));
    assert_eq!(dangling(), "");
}

#[test]
fn remove_takes_what_runs_and_keeps_the_data_unless_told() {
    let app = "t-day-rm";
    let p = Project::new(
        app,
        18508,
        Options {
            traefik: Some(traefik_section(app, "maintenance", "")),
            ..Options::default()
        },
    );
    p.with_v1_live();
    assert!(p.body("/").contains("hits=1"));
    let home = common::node().home.clone();
    let units = home.join(".config/systemd/user");
    let names = p.names();
    let router = home
        .join(".config/traefik/dynamic")
        .join(names.dynamic_file());
    assert!(router.is_file() && units.join(names.gap_unit()).is_file());

    let r = p.deploy(&["remove", "--dry-run"]).ok();
    r.prints("Plan: remove t-day-rm from test");
    r.prints(&names.recover_path_unit());
    r.prints("  kept:      shared/, the releases");
    assert!(units.join(names.unit()).is_file());
    // Data goes only when confirmed; off a terminal that is --yes.
    p.deploy(&["remove", "--data"])
        .failed()
        .says("not confirmed, nothing was removed");
    assert!(p.image_exists("v1"));

    let r = p.deploy(&["remove"]).ok();
    r.says("removed t-day-rm from test: ");
    for unit in [
        names.unit(),
        names.gap_unit(),
        names.recover_path_unit(),
        names.recover_unit(),
    ] {
        assert!(!units.join(&unit).exists(), "{unit} is left");
    }
    assert!(!router.exists(), "the router is left");
    assert!(!p.image_exists("v1"), "the image is left");
    assert!(p.get("/").is_err(), "the app still answers");
    assert!(
        home.join(".config/traefik/traefik.yaml").is_file(),
        "the shared Traefik stays"
    );
    assert!(p.root().join("shared/data").is_dir() && p.root().join("releases/v1").is_dir());
    assert!(p.deploy(&["history"]).ok().stdout.contains("remove"));

    // It comes back as it was, data and all.
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v2"]).ok();
    assert!(p.body("/").contains("hits=2"), "the data was kept");

    p.deploy(&["remove", "--data", "--yes"]).ok();
    assert!(!p.root().join("shared").exists() && p.root().join("releases/v2").is_dir());
    p.deploy(&["remove", "--all", "--yes"]).ok();
    assert!(!p.root().exists());
}

#[test]
fn logs_since_and_grep() {
    let p = Project::new("t-day-logs", 18510, Options::default());
    p.with_v1_live();
    p.deploy(&["release", "v2"]).ok();
    let r = p.deploy(&["logs", "--grep", "listening"]).ok();
    assert_eq!(
        r.stdout.lines().collect::<Vec<_>>(),
        [
            "example-app v1 listening on :8080",
            "example-app v2 listening on :8080"
        ]
    );
    let r = p
        .deploy(&["logs", "--since", "1h", "--grep", "stopped"])
        .ok();
    assert_eq!(r.stdout, "example-app v1: stopped\n");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let r = p.deploy(&["logs", "--since", "1s"]).ok();
    assert_eq!(r.stdout, "", "nothing written in the last second");
    p.deploy(&["logs", "--since", "ten"])
        .failed()
        .says("--since");
}

#[test]
fn start_stop_lock_and_prune_over_ssh() {
    let p = Project::new(
        "t-day-ssh",
        18512,
        Options {
            remote: true,
            ..Options::default()
        },
    );
    p.deploy_remote(&["setup"]).ok();
    p.deploy_remote(&["release", "v1"]).ok();
    p.deploy_remote(&["stop", "--dry-run"])
        .ok()
        .prints("Plan: stop t-day-ssh on test");
    p.deploy_remote(&["stop"]).ok().says("is stopped until");
    assert!(p.get("/").is_err());
    p.deploy_remote(&["status"])
        .ok()
        .prints("stopped:      by deploy stop (root@");
    p.deploy_remote(&["start"]).ok();
    assert_eq!(p.get("/").unwrap().0, 200);

    p.deploy_remote(&["lock", "acquire", "-m", "by hand over ssh"])
        .ok();
    let r = p.deploy_remote(&["restart"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    r.says("\"by hand over ssh\" (by root@");
    p.deploy_remote(&["lock", "status"])
        .ok()
        .prints("is held by hand: \"by hand over ssh\"");
    p.deploy_remote(&["lock", "release"]).ok();
    p.deploy_remote(&["restart"]).ok();

    p.deploy_remote(&["release", "v2"]).ok();
    p.deploy_remote(&["release", "v3"]).ok();
    let yaml = std::fs::read_to_string(p.dir.join("deploy.yaml")).unwrap();
    p.write(
        "deploy.yaml",
        &yaml.replace("keep_releases: 5", "keep_releases: 1"),
    );
    p.deploy_remote(&["prune"]).ok().says("1 release(s) (v1)");
    assert_eq!(p.releases_on_disk(), ["v2", "v3"]);
    p.deploy_remote(&["remove", "--all"])
        .failed()
        .says("not confirmed, nothing was removed");
    p.deploy_remote(&["remove", "--all", "--yes"])
        .ok()
        .says("removed t-day-ssh from test");
    assert!(!p.root().exists());
}
