//! Previews on a real node: `deploy preview up` on a copy of an environment's data taken while
//! it writes, the preview serving the new version on its rows, its writes never reaching the
//! environment, a release of the environment beside it, `ls`, every environment command on it,
//! two previews on different ports, `preview.max`, `down` leaving nothing, `prune`; over SSH.

mod common;
use common::previews::{count, expire, forget_previews, get, last_event, leftovers, preview_root};
use common::{get_front_as, traefik_section, Options, Project};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn a_preview_runs_the_new_version_on_a_copy_of_prods_data_taken_while_prod_writes() {
    let app = "pv-main";
    let p = Project::new(
        app,
        18900,
        Options {
            traefik: Some(traefik_section(app, "hold", "")),
            ..Options::default()
        },
    );
    p.add_to_config(&format!(
        "preview:\n  host: \"{{name}}.{app}.test\"\n  max: 2\n  env:\n    clear: {{MODE: preview}}\n"
    ));
    forget_previews(&p, &["pr-1", "pr-2", "pr-3"], false);
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v1"]).ok();
    let prod_db = p.root().join("shared/data/app.db");

    let (r, before, after) = preview_up_while_prod_writes(&p, app, &prod_db);
    let done = last_event(&r.stdout);
    assert_eq!(done["action"], "preview-up", "{done}");
    assert_eq!(done["environment"], "test/pr-1");
    assert_eq!(done["url"], format!("http://pr-1.{app}.test:18400/"));
    let port = done["port"].as_u64().unwrap() as u16;
    assert_eq!(port, 18902, "the first pair after prod's port and gap port");

    let (root, copied) = a_consistent_copy_of_prods_rows(&p, before, after);
    the_new_version_on_prods_rows(&p, app, port, &prod_db, copied);
    every_environment_command_takes_it(&p);
    // Prod releases beside it; the preview keeps running its own.
    p.write("assets/greeting.txt", "hello three");
    p.deploy(&["release", "v3"]).ok();
    assert!(get(18400, Some(&format!("{app}.test")), "/")
        .1
        .contains("v3"));
    assert!(get(port, None, "/").1.contains("v2"));

    up_again_keeps_its_data_unless_fresh(&p, port, &root, &prod_db);
    let second = a_second_preview_and_not_a_third(&p);
    down_and_prune_leave_nothing(&p, app, &root, second);
}

/// `preview up pr-1` of v2 while prod writes: its output, and prod's rows before and after.
#[track_caller]
fn preview_up_while_prod_writes(p: &Project, app: &str, prod_db: &Path) -> (common::Run, i64, i64) {
    // Prod answers (and writes a row) every 20 ms through Traefik while the preview is made.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, host) = (stop.clone(), format!("{app}.test"));
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                match get_front_as(&host, "/") {
                    Ok((200, _, _)) => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (ok, failed)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let before = count(p, prod_db);
    p.write("assets/greeting.txt", "hello preview");
    let r = p
        .deploy(&["preview", "up", "pr-1", "--version", "v2", "--json"])
        .ok();
    let after = count(p, prod_db);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = writer.join().unwrap();
    assert!(
        failed.is_empty(),
        "prod failed while a preview was made: {failed:?}"
    );
    assert!(ok > 20, "prod answered {ok} requests");

    (r, before, after)
}

/// The preview's root and the rows its copy has.
#[track_caller]
fn a_consistent_copy_of_prods_rows(p: &Project, before: i64, after: i64) -> (PathBuf, i64) {
    // A consistent copy (SQLite checks it whole) of prod's rows of that moment.
    let root = preview_root(p, "pr-1");
    let copied = count(p, &root.join("shared/data/app.db"));
    assert!(
        before <= copied && copied <= after,
        "the copy has {copied} rows, prod had {before} before and {after} after"
    );
    assert!(
        !root.join("shared/.env").exists()
            || std::fs::read_to_string(root.join("shared/.env"))
                .unwrap()
                .is_empty(),
        "prod's .env is not copied"
    );

    (root, copied)
}

#[track_caller]
fn the_new_version_on_prods_rows(p: &Project, app: &str, port: u16, prod_db: &Path, copied: i64) {
    // The new version, on prod's rows; its writes are its own.
    let (status, body, _) = get(port, None, "/");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("v2") && body.contains("hello preview"),
        "{body}"
    );
    let hits: i64 = get(port, None, "/hits").1.trim().parse().unwrap();
    assert!(hits > copied, "{hits} rows: prod's {copied} and its own");
    let prod_rows = count(p, prod_db);
    for _ in 0..5 {
        assert_eq!(get(port, None, "/").0, 200);
    }
    assert_eq!(
        count(p, prod_db),
        prod_rows,
        "the preview's writes reach prod"
    );
    let (status, body, robots) = get(18400, Some(&format!("pr-1.{app}.test")), "/");
    assert_eq!(status, 200, "through Traefik: {body}");
    assert_eq!(robots.as_deref(), Some("noindex, nofollow"));
    assert!(get(18400, Some(&format!("{app}.test")), "/")
        .1
        .contains("v1"));
}

#[track_caller]
fn every_environment_command_takes_it(p: &Project) {
    // Every environment command takes it as its environment.
    p.deploy(&["status", "test/pr-1"]).ok().prints("v2");
    p.deploy(&["releases", "test/pr-1"]).ok().prints("v2");
    let ls = p.deploy(&["preview", "ls", "--json"]).ok();
    let listed: Value = serde_json::from_str(&ls.stdout).unwrap();
    assert_eq!(listed[0]["name"], "pr-1", "{listed}");
    assert_eq!(listed[0]["version"], "v2");
    assert!(listed[0]["data_from"]
        .as_str()
        .unwrap()
        .starts_with("test at "));
    assert!(listed[0]["expires"].is_string());
    p.deploy(&[
        "exec",
        "test/pr-1",
        "--",
        "/app/example-app",
        "write-row-version",
        "exec",
    ])
    .ok();
}

#[track_caller]
fn up_again_keeps_its_data_unless_fresh(p: &Project, port: u16, root: &Path, prod_db: &Path) {
    // `up` again: the new version on the preview's own data (kept).
    let own = count(p, &root.join("shared/data/app.db"));
    p.deploy(&["preview", "up", "pr-1", "--version", "v4"]).ok();
    let (_, body, _) = get(port, None, "/");
    assert!(body.contains("v4"), "{body}");
    assert!(
        count(p, &root.join("shared/data/app.db")) > own,
        "its data was kept"
    );
    // --fresh-data: prod's rows again.
    p.deploy(&["preview", "up", "pr-1", "--version", "v4", "--fresh-data"])
        .ok()
        .says("v4 is live on test/pr-1 already");
    let fresh = count(p, &root.join("shared/data/app.db"));
    assert_eq!(fresh, count(p, prod_db), "prod's rows, as they are now");
}

/// The second preview's port.
#[track_caller]
fn a_second_preview_and_not_a_third(p: &Project) -> u16 {
    // A second preview: ports of its own; a third is beyond preview.max.
    let r = p
        .deploy(&["preview", "up", "pr-2", "--version", "v4", "--json"])
        .ok();
    let second = last_event(&r.stdout)["port"].as_u64().unwrap() as u16;
    assert_eq!(second, 18904);
    assert!(get(second, None, "/").1.contains("v4"));
    p.deploy(&["preview", "up", "pr-3", "--version", "v4"])
        .failed()
        .says("preview.max is 2");
    assert!(!preview_root(p, "pr-3").exists());

    second
}

#[track_caller]
fn down_and_prune_leave_nothing(p: &Project, app: &str, root: &Path, second: u16) {
    // Down leaves nothing of it; the other preview and prod run on.
    let base = format!("{app}_test_preview_pr-1");
    assert!(!leftovers(p, &base).is_empty());
    p.deploy(&["preview", "down", "pr-1"]).ok();
    assert_eq!(leftovers(p, &base), Vec::<String>::new());
    assert!(!root.exists());
    assert!(get(second, None, "/").1.contains("v4"));
    assert!(get(18400, Some(&format!("{app}.test")), "/")
        .1
        .contains("v3"));
    p.deploy(&["status", "test/pr-1"])
        .failed()
        .says("there is no preview pr-1 of test");

    // Past its ttl, prune takes it down.
    expire(p, "pr-2");
    p.deploy(&["preview", "prune", "--dry-run"])
        .ok()
        .prints("would take down test/pr-2");
    p.deploy(&["preview", "prune"]).ok();
    assert_eq!(
        leftovers(p, &format!("{app}_test_preview_pr-2")),
        Vec::<String>::new()
    );
    assert!(p
        .deploy(&["preview", "ls"])
        .ok()
        .stdout
        .contains("no preview"));
}

#[test]
fn a_preview_over_ssh() {
    let app = "pv-ssh";
    let p = Project::new(
        app,
        18940,
        Options {
            remote: true,
            ..Options::default()
        },
    );
    forget_previews(&p, &["pr-9"], true);
    p.deploy_remote(&["setup"]).ok();
    p.deploy_remote(&["release", "v1"]).ok();
    for _ in 0..3 {
        p.body("/");
    }
    let r = p
        .deploy_remote(&["preview", "up", "pr-9", "--version", "v2", "--json"])
        .ok();
    let done = last_event(&r.stdout);
    assert_eq!(done["url"], "http://127.0.0.1:18942/", "{done}");
    let body = p.body_at(18942, "/");
    assert!(body.contains("v2"), "{body}");
    p.deploy_remote(&["logs", "test/pr-9", "-n", "5"]).ok();
    p.deploy_remote(&["preview", "ls"]).ok().prints("test/pr-9");
    p.deploy_remote(&["preview", "down", "test/pr-9"]).ok();
    assert_eq!(
        leftovers(&p, &format!("{app}_test_preview_pr-9")),
        Vec::<String>::new()
    );
    assert!(!preview_root(&p, "pr-9").exists());
    assert!(p.body("/").contains("v1"));
}
