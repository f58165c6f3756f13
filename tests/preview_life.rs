//! A preview's life on a real node: the server's prune timer (installed by `preview up`, its
//! service taking an expired preview down, gone with the last preview), `deploy server`
//! listing previews, `deploy remove` taking them down; basic authentication through a real
//! Traefik, and a rollback of a preview.

mod common;
use common::previews::{
    expire, forget_previews, get, get_as, leftovers, preview_root, prune_timer,
};
use common::{node, traefik_section, Options, Project, TRAEFIK_WEB};
use serde_json::Value;

#[test]
fn the_servers_timer_prunes_an_expired_preview_and_remove_takes_the_others_down() {
    let app = "pv-life";
    let p = Project::new(app, 18962, Options::default());
    p.add_to_config("preview:\n  ports: 18964-18969\n  ttl: 1h\n");
    forget_previews(&p, &["pr-a", "pr-b"], false);
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v1"]).ok();
    assert_eq!(prune_timer(&p), (false, false));
    p.deploy(&["preview", "up", "pr-a", "--version", "v2"]).ok();
    assert_eq!(prune_timer(&p), (true, true), "preview up installs it");
    p.deploy(&["preview", "up", "pr-b", "--version", "v2"]).ok();

    // deploy server lists them, as previews of test.
    let report: Value = serde_json::from_str(&p.deploy(&["server", "--json"]).ok().stdout).unwrap();
    let listed = |env: &str| {
        report["apps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["app"] == app && a["environment"] == env)
            .cloned()
            .unwrap_or_else(|| panic!("{env} is not in {report}"))
    };
    let a = listed("test/pr-a");
    assert_eq!(a["preview"]["of"], "test", "{a}");
    assert!(a["preview"]["expires"].is_string(), "{a}");
    assert!(a["current"] == "v2" && a["port"] == 18964, "{a}");
    assert!(listed("test")["preview"].is_null());
    p.deploy(&["server"])
        .ok()
        .prints("preview:      of test, data test at ");

    // pr-a is past its time: the timer's service (started here rather than in 15 minutes)
    // takes it down, and only it.
    expire(&p, "pr-a");
    p.user("systemctl", &["--user", "start", &prune_service(&p)])
        .ok();
    assert_eq!(
        leftovers(&p, &format!("{app}_test_preview_pr-a")),
        Vec::<String>::new()
    );
    assert!(!preview_root(&p, "pr-a").exists());
    assert!(p.body_at(18966, "/").contains("v2"), "pr-b runs on");
    assert_eq!(prune_timer(&p), (true, true), "pr-b is left");

    // deploy remove takes test's previews down first, wholly, and the timer with the last.
    p.deploy(&["remove", "--dry-run"])
        .ok()
        .prints("previews:  test/pr-b (each taken down wholly first");
    p.deploy(&["remove"]).ok();
    assert_eq!(
        leftovers(&p, &format!("{app}_test_preview_pr-b")),
        Vec::<String>::new()
    );
    assert!(!preview_root(&p, "pr-b").exists());
    assert_eq!(prune_timer(&p), (false, false));
    assert!(!node()
        .home
        .join(format!(".local/share/deploy/previews/{app}_test.yaml"))
        .exists());
    assert!(p.get("/").is_err(), "test itself was removed");
}

/// `alice:s3cret` and `alice:wrong`, as a browser sends them.
const ALICE: &str = "YWxpY2U6czNjcmV0";
const WRONG: &str = "YWxpY2U6d3Jvbmc=";

#[test]
fn a_preview_asks_for_its_password_through_traefik_and_rolls_back() {
    let app = "pv-auth";
    let p = Project::new(
        app,
        18970,
        Options {
            traefik: Some(traefik_section(app, "hold", "")),
            ..Options::default()
        },
    );
    // htpasswd's SHA-1 line for s3cret.
    p.add_to_config(&format!(
        "preview:\n  ports: 18972-18975\n  host: \"{{name}}.{app}.test\"\n  basic_auth:\n    \
         - \"alice:{{SHA}}/vNB+F2HQ559kaLUZbmHHvZrXpg=\"\n"
    ));
    forget_previews(&p, &["pr-1"], false);
    p.deploy(&["setup"]).ok();
    p.deploy(&["release", "v1"]).ok();
    p.write("assets/greeting.txt", "hello two");
    p.deploy(&["preview", "up", "pr-1", "--version", "v2"]).ok();
    let host = format!("pr-1.{app}.test");
    let through = |basic: Option<&str>| get_as(TRAEFIK_WEB, Some(&host), "/", basic);

    let (status, _, _) = through(None);
    assert_eq!(status, 401, "without a password");
    assert_eq!(through(Some(WRONG)).0, 401, "with a wrong one");
    let (status, body, robots) = through(Some(ALICE));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("v2"), "{body}");
    assert_eq!(robots.as_deref(), Some("noindex, nofollow"));
    let (status, body, _) = get(TRAEFIK_WEB, Some(&format!("{app}.test")), "/");
    assert_eq!((status, body.contains("v1")), (200, true), "prod asks none");

    // A rollback of the preview: its previous release, behind the same password.
    p.write("assets/greeting.txt", "hello three");
    p.deploy(&["preview", "up", "pr-1", "--version", "v3"]).ok();
    assert!(through(Some(ALICE)).1.contains("v3"));
    p.deploy(&["rollback", "test/pr-1"]).ok();
    let (status, body, _) = through(Some(ALICE));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("v2") && body.contains("hello two"), "{body}");
    assert_eq!(through(None).0, 401);
    assert!(p.body_at(18972, "/").contains("v2"));
    p.deploy(&["releases", "test/pr-1"]).ok().prints("v3");
    assert!(get(TRAEFIK_WEB, Some(&format!("{app}.test")), "/")
        .1
        .contains("v1"));

    // Past its time, the timer's service takes the last preview down, and the timer and
    // itself with it.
    expire(&p, "pr-1");
    p.user("systemctl", &["--user", "start", &prune_service(&p)])
        .ok();
    assert!(!preview_root(&p, "pr-1").exists());
    assert_eq!(prune_timer(&p), (false, false));
    assert!(!node()
        .home
        .join(".config/systemd/user")
        .join(prune_service(&p))
        .exists());
    assert_eq!(through(Some(ALICE)).0, 404);
}

fn prune_service(p: &Project) -> String {
    format!("{}_test_previews.service", p.app)
}
