//! A release applies the config it carries, with no `deploy setup`: a mount and a shared dir
//! added, a mount removed (its data kept), the port changed; a rollback and a put-back run
//! each release with its own mounts. And an app that ignores SIGTERM stops at once under the
//! default init, while without it the kill at the stop timeout is said.

mod common;
use common::{Options, Project};

/// The container paths mounted into the app's running container.
fn mounts(p: &Project) -> String {
    p.user(
        "podman",
        &[
            "inspect",
            &p.names().container(),
            "--format",
            "{{range .Mounts}}{{.Destination}} {{end}}",
        ],
    )
    .ok()
    .stdout
}

#[track_caller]
fn edit_config(p: &Project, from: &str, to: &str) {
    let config = std::fs::read_to_string(p.dir.join("deploy.yaml")).unwrap();
    assert!(config.contains(from), "{from:?} not in {config}");
    p.write("deploy.yaml", &config.replacen(from, to, 1));
}

/// The gap a release or rollback reported (`gap 385ms`), in ms.
#[track_caller]
fn gap_ms(r: &common::Run) -> u64 {
    let text = r.stderr.clone() + &r.stdout;
    let at = text.rfind("gap ").expect("a gap in the output");
    let n: String = text[at + 4..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let unit = &text[at + 4 + n.len()..];
    let n: f64 = n.parse().unwrap();
    if unit.starts_with("ms") {
        n as u64
    } else {
        (n * 1000.0) as u64
    }
}

#[test]
fn a_release_applies_mounts_shared_dirs_and_the_port_and_a_rollback_runs_its_own() {
    let p = Project::new("t-applies", 18430, Options::default());
    p.with_v1_live();
    assert!(!mounts(&p).contains("/app/uploads"));

    // A shared dir and its mount added: the release alone makes and mounts it.
    edit_config(&p, "dirs: [data]", "dirs: [data, uploads]");
    edit_config(
        &p,
        "    data: /app/data\n",
        "    data: /app/data\n    uploads: /app/uploads\n",
    );
    let plan = p.deploy(&["release", "v2", "--dry-run"]).ok();
    plan.prints("applies:");
    plan.prints("shared/uploads is made");
    plan.prints("--volume /home/deployer/tests/t-applies/shared/uploads:/app/uploads");
    p.deploy(&["release", "v2"]).ok();
    assert!(p.root().join("shared/uploads").is_dir());
    assert!(mounts(&p).contains("/app/uploads"), "{}", mounts(&p));
    std::fs::write(p.root().join("shared/uploads/kept.txt"), "an upload").unwrap();

    // A rollback runs v1 as it was made: without the mount.
    p.deploy(&["rollback"]).ok();
    assert_eq!(p.current().as_deref(), Some("v1"));
    assert!(!mounts(&p).contains("/app/uploads"), "{}", mounts(&p));
    p.deploy(&["rollback", "--to", "v2"]).ok();
    assert!(mounts(&p).contains("/app/uploads"));

    // The mount removed: the release runs without it, the data stays.
    edit_config(&p, "    uploads: /app/uploads\n", "");
    p.deploy(&["release", "v3"]).ok();
    assert!(!mounts(&p).contains("/app/uploads"));
    assert_eq!(
        std::fs::read_to_string(p.root().join("shared/uploads/kept.txt")).unwrap(),
        "an upload"
    );

    // The port changed: the release moves the app to it.
    edit_config(&p, "port: 18430\n", "port: 18435\n");
    p.deploy(&["release", "v4"])
        .ok()
        .says("the app's port 18430 -> 18435");
    assert!(p.body_at(18435, "/").starts_with("example-app v4 "));
    assert!(p.get("/").is_err(), "nothing answers on the old port");
}

#[test]
fn a_put_back_after_a_release_that_added_a_mount_runs_the_previous_release_without_it() {
    let p = Project::new("t-putmount", 18437, Options::default());
    p.with_v1_live();
    edit_config(&p, "dirs: [data]", "dirs: [data, extra]");
    edit_config(
        &p,
        "    data: /app/data\n",
        "    data: /app/data\n    extra: /app/extra\n",
    );
    p.write("assets/fail-health", "");
    let r = p.deploy(&["release", "v2"]).failed();
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert_eq!(p.current().as_deref(), Some("v1"));
    assert!(!mounts(&p).contains("/app/extra"), "{}", mounts(&p));
    assert!(p.body("/").starts_with("example-app v1 "));
}

#[test]
fn an_app_that_ignores_sigterm_stops_at_once_under_the_init_and_a_kill_is_said_without() {
    let p = Project::new("t-sigterm", 18439, Options::default());
    p.add_to_config("env:\n  clear:\n    IGNORE_SIGTERM: \"1\"\n");
    p.with_v1_live();
    let r = p.deploy(&["release", "v2"]).ok();
    let gap = gap_ms(&r);
    assert!(gap < 3000, "a gap of {gap} ms with the init:\n{}", r.stderr);
    assert!(
        !r.stderr.contains("did not stop on SIGTERM"),
        "{}",
        r.stderr
    );

    // Without the init the app is PID 1 and ignores SIGTERM: the stop waits out its 5 s.
    edit_config(
        &p,
        "  stop_timeout: 5s\n",
        "  stop_timeout: 5s\n  init: false\n",
    );
    p.deploy(&["release", "v3"]).ok();
    let r = p.deploy(&["release", "v4"]).ok();
    r.says("the app did not stop on SIGTERM within 5s: it was killed");
    assert!(gap_ms(&r) >= 5000, "{}", r.stderr);
    p.deploy(&["status"])
        .ok()
        .prints("did not stop on SIGTERM within 5s");
    p.deploy(&["check", "test"])
        .ok()
        .says("did not stop on SIGTERM within 5s");
}

#[test]
fn the_images_stop_signal_is_what_the_unit_stops_the_app_with() {
    // The app ignores SIGTERM as PID 1 (no init) but stops on SIGINT, its image's STOPSIGNAL:
    // the unit's stop sends that, so it stops at once instead of waiting out its 5 s.
    let p = Project::new("t-stopsig", 18441, Options::default());
    p.add_to_config("env:\n  clear:\n    IGNORE_SIGTERM: \"1\"\n");
    edit_config(
        &p,
        "  stop_timeout: 5s\n",
        "  stop_timeout: 5s\n  init: false\n",
    );
    let containerfile = std::fs::read_to_string(p.dir.join("Containerfile")).unwrap();
    p.write(
        "Containerfile",
        &format!("{containerfile}STOPSIGNAL SIGINT\n"),
    );
    p.with_v1_live();
    let env = std::fs::read_to_string(p.root().join("releases/v1/.deploy/release.env")).unwrap();
    assert!(env.ends_with("\nDEPLOY_STOP_SIGNAL=2\n"), "{env}");
    let r = p.deploy(&["release", "v2"]).ok();
    let gap = gap_ms(&r);
    assert!(gap < 3000, "a gap of {gap} ms:\n{}", r.stderr);
    assert!(!r.stderr.contains("did not stop"), "{}", r.stderr);

    // A release that names no signal (made before releases did) is stopped by `podman stop`,
    // which asks the image: the same.
    let v2_env = p.root().join("releases/v2/.deploy/release.env");
    let text = std::fs::read_to_string(&v2_env).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("DEPLOY_STOP_SIGNAL="))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&v2_env, without).unwrap();
    let r = p.deploy(&["release", "v3"]).ok();
    assert!(gap_ms(&r) < 3000, "{}", r.stderr);
    assert!(!r.stderr.contains("did not stop"), "{}", r.stderr);
}
