//! One writer, always, on a real node: a `deploy exec` that writes while a release comes stops
//! the release (exit 4, named), is waited for with `--lock-wait` or stopped with
//! `--stop-running`, and still holds the fence when its client is gone; no row of it lands
//! after the new release's first answer. A swap's process that dies is put right by the server
//! with no command typed, in both listen modes, and after a restart of the user's manager.

mod common;
use common::{Options, Project};
use std::process::Child;

use std::time::{Duration, Instant};

/// `deploy exec` writing a row tagged `tag` every 20 ms for `secs`, spawned; returns once its
/// first row is in.
fn exec_writer(p: &Project, tag: &str, secs: u32) -> Child {
    let child = p
        .deploy_cmd(
            &[],
            &[
                "exec",
                "--",
                "/app/example-app",
                "write-rows",
                "20",
                &secs.to_string(),
                tag,
            ],
        )
        .spawn()
        .unwrap();
    let t = Instant::now();
    while rows_of(p, tag) == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the exec never wrote"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn rows_of(p: &Project, tag: &str) -> i64 {
    let db = p.root().join("shared/data/app.db");
    if !db.exists() {
        return 0;
    }
    p.sql(&format!(
        "SELECT COUNT(*) FROM hits WHERE version = '{tag}'"
    ))
    .parse()
    .unwrap_or(0)
}

/// No row tagged `writer` came after the first row of `release` (ids grow with time).
#[track_caller]
fn none_after(p: &Project, writer: &str, release: &str) {
    let last: i64 = p
        .sql(&format!(
            "SELECT COALESCE(MAX(id), 0) FROM hits WHERE version = '{writer}'"
        ))
        .parse()
        .unwrap();
    let first: i64 = p
        .sql(&format!(
            "SELECT MIN(id) FROM hits WHERE version = '{release}'"
        ))
        .parse()
        .unwrap();
    assert!(
        last < first,
        "a row of {writer} (id {last}) after {release}'s first answer (id {first})"
    );
}

#[test]
fn an_exec_that_writes_holds_a_release_until_it_ends_or_is_stopped() {
    let p = Project::new("t-fence", 18440, Options::default());
    p.with_v1_live();
    p.body("/");

    // Without --lock-wait: stopped at once, exit 4, the exec named with how to end it.
    // Long enough to outlast a release's upload and build on a busy machine.
    let exec = exec_writer(&p, "e1", 25);
    let t = Instant::now();
    let r = p.deploy(&["release", "v2"]).failed();
    assert_eq!(r.code, 4, "{}", r.stderr);
    r.says("exec `write-rows 20 25 e1` (t-fence_test_exec_");
    r.says("podman stop t-fence_test_exec_");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert_eq!(p.current().as_deref(), Some("v1"), "nothing changed");

    // With --lock-wait: it waits for the exec to end, then releases.
    p.deploy(&["release", "v2", "--lock-wait", "60s"])
        .ok()
        .says("waiting for 1 exec/job container(s) to end");
    Project::wait(exec).ok();
    p.body("/");
    none_after(&p, "e1", "v2");

    // --stop-running: the exec is stopped first, and writes nothing after.
    let exec = exec_writer(&p, "e2", 60);
    let t = Instant::now();
    p.deploy(&["release", "v3", "--stop-running"])
        .ok()
        .says("(--stop-running)");
    assert!(t.elapsed() < Duration::from_secs(40), "{:?}", t.elapsed());
    let _ = Project::wait(exec);
    p.body("/");
    none_after(&p, "e2", "v3");

    // An exec whose client is gone (a dropped connection) still holds the fence.
    let mut exec = exec_writer(&p, "e3", 60);
    let _ = exec.kill();
    let _ = exec.wait();
    std::thread::sleep(Duration::from_millis(300));
    let before = rows_of(&p, "e3");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        rows_of(&p, "e3") > before,
        "the container goes on without its client"
    );
    let r = p.deploy(&["rollback"]).failed();
    assert_eq!(r.code, 4, "{}", r.stderr);
    r.says("write-rows 20 60 e3");
    p.deploy(&["rollback", "--stop-running"]).ok();
    assert_eq!(p.current().as_deref(), Some("v2"));
    let left = p.user(
        "podman",
        &[
            "ps",
            "-a",
            "--filter",
            &format!("label={}", p.names().writer_label()),
            "-q",
        ],
    );
    assert_eq!(left.stdout.trim(), "", "no exec container left");
}

/// Waits until the app answers as `version`; how long it took.
#[track_caller]
pub fn answers_as(p: &Project, version: &str, within: Duration) -> Duration {
    let t = Instant::now();
    loop {
        if let Ok((200, body)) = p.get("/") {
            if body.starts_with(&format!("example-app {version} ")) {
                return t.elapsed();
            }
        }
        assert!(
            t.elapsed() < within,
            "the app did not answer as {version} within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Once the swap's journal says `step` began, SIGKILLs the node-side run (its pid is in the
/// journal): what the OOM killer or a crash does.
fn kill_the_run_in(p: &Project, step: &str) {
    let text = p.wait_for_journal("begin", step);
    let pid = text
        .split("\"pid\":")
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .expect("the run's pid in the journal");
    std::thread::sleep(Duration::from_millis(300));
    std::process::Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap();
}

fn columns(p: &Project) -> String {
    p.sql("SELECT group_concat(name) FROM pragma_table_info('hits')")
}

/// The node-side run SIGKILLed while an in-gap migration works, and after the health check:
/// with no command typed, the server puts the data back and the previous release serves, or
/// keeps the new release that had passed its check.
fn recovers_alone(p: &Project) {
    p.with_v1_live();
    p.body("/");
    let before = columns(p);
    p.add_to_config("hooks:\n  in_gap:\n    - /app/example-app run-sql /app/assets/migrate.sql\n");
    // Slow: it runs while the node-side run is killed under it.
    p.write(
        "assets/migrate.sql",
        "ALTER TABLE hits ADD COLUMN extra TEXT; \
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 30000000) \
         SELECT COUNT(*) FROM c;",
    );
    let release = p.deploy_cmd(&[], &["release", "v2"]).spawn().unwrap();
    kill_the_run_in(p, "hook");
    let _ = Project::wait(release);
    // The hook goes on in its own container; the run that drove it is dead. No command now.
    let took = answers_as(p, "v1", Duration::from_secs(30));
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert_eq!(columns(p), before, "the migration's changes are gone");
    // The journal goes once the recovery has finished (after its health check).
    let t = Instant::now();
    while p.root().join(".deploy/swap.journal").exists() {
        assert!(t.elapsed() < Duration::from_secs(20), "the journal stays");
        std::thread::sleep(Duration::from_millis(100));
    }
    let hook = p.user(
        "podman",
        &["container", "exists", &p.names().hook_container()],
    );
    assert_eq!(hook.code, 1, "no hook container left");

    // Killed after its health check passed: the new release is kept.
    p.write("assets/migrate.sql", "SELECT 1;");
    let r = p.deploy_env(
        &[("DEPLOY_TEST_HOOK", "kill@after-health")],
        &["release", "v3"],
    );
    assert_ne!(r.code, 0);
    answers_as(p, "v3", Duration::from_secs(20));
    let t = Instant::now();
    while p.root().join(".deploy/swap.journal").exists() {
        assert!(t.elapsed() < Duration::from_secs(20), "the journal stays");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_dead_swap_is_put_right_by_the_server_with_no_command_typed() {
    let p = Project::new("t-alone", 18442, Options::default());
    recovers_alone(&p);
}

#[test]
fn a_dead_swap_is_put_right_by_the_server_in_socket_mode_too() {
    let p = Project::new("t-alonesock", 18444, Options::default());
    p.add_to_config("listen: socket\n");
    recovers_alone(&p);
}

#[test]
fn a_release_killed_after_any_step_is_put_right_by_the_server_with_no_command() {
    let p = Project::new("t-aloneall", 18448, Options::default());
    killed_after_each_swap_step(&p, &[]);
}

#[test]
fn a_release_killed_after_its_hold_or_unhold_in_socket_mode_is_put_right_by_the_server() {
    let p = Project::new("t-alonehold", 18458, Options::default());
    p.add_to_config("listen: socket\n");
    killed_after_each_swap_step(&p, &["hold", "unhold"]);
}

/// Kills a release after each step of its swap (as its `--dry-run --json` plans it; only
/// those named in `only`, unless empty): with no command, the server puts it right.
#[track_caller]
fn killed_after_each_swap_step(p: &Project, only: &[&str]) {
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v0"]).ok();
    let steps: Vec<_> = p
        .release_plan("k0")
        .into_iter()
        .filter(|s| s.swap && (only.is_empty() || only.contains(&s.name.as_str())))
        .collect();
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"stop") || !only.is_empty(), "{names:?}");
    assert!(only.iter().all(|n| names.contains(n)), "{names:?}");
    for (i, planned) in steps.iter().enumerate() {
        let (step, v) = (&planned.name, format!("k{i}"));
        let r = p.deploy_env(
            &[("DEPLOY_TEST_HOOK", &format!("kill@{}", planned.point))],
            &["release", &v],
        );
        assert_ne!(r.code, 0, "{step}");
        r.says("died (signal 9");
        // No command: the app answers, as the previous release or as v (once it had passed
        // its health check), and the journal goes.
        p.wait_settled(
            Duration::from_secs(20),
            &format!("after {step}: the app is not back with no command"),
            |p| p.get("/healthz").is_ok(),
        );
    }
}
