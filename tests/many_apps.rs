//! Several apps of one node user, for real: the managed Traefik they share (built from every
//! app's requests, a conflict refused with nothing changed), the ports no two apps may share,
//! a node set up before deploy kept records, and `deploy server`.
//!
//! The managed Traefik is the one every test shares (its API at TRAEFIK_API, its entry point
//! `web` at TRAEFIK_WEB, which these apps share too); these tests add entry points of their own
//! and run one at a time. Another deploy of the node user that keeps no records (an older
//! build's tests running at the same time) rewrites the static config as its own, taking those
//! entry points away for a while.

mod common;
use common::apps::{self, assert_served, refused, set_traefik, traefik_section_at};
use common::{node, NodeUser, Options, Project, TRAEFIK_API, TRAEFIK_WEB};
use std::path::PathBuf;
use std::sync::Mutex;

/// One test at a time: each adds entry points to the one Traefik.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A `traefik:` section managing the shared Traefik: `eps` its entry points (on 127.0.0.1),
/// `router` those of the app's router.
fn traefik(app: &str, eps: &[(&str, u16)], router: &[&str]) -> String {
    traefik_section_at(TRAEFIK_API, app, eps, router)
}

fn project(app: &str, port: u16, traefik_section: Option<String>) -> Project {
    Project::new(
        app,
        port,
        Options {
            traefik: traefik_section,
            ..Options::default()
        },
    )
}

/// The managed Traefik's process.
fn traefik_pid() -> String {
    apps::traefik_pid(&NodeUser::shared())
}

/// The managed Traefik's static config.
#[track_caller]
fn static_config() -> String {
    apps::static_config(&NodeUser::shared())
}

/// An app's record, if it has one.
fn record(app: &str) -> Option<String> {
    apps::record(&NodeUser::shared(), app)
}

fn record_path(app: &str) -> PathBuf {
    apps::record_path(&NodeUser::shared(), app)
}

#[test]
fn two_apps_share_one_traefik_a_conflict_changes_nothing_an_addition_keeps_both() {
    let _serial = serial();
    let a = project(
        "t-many-a",
        19600,
        Some(traefik("t-many-a", &[("web", TRAEFIK_WEB)], &["web"])),
    );
    let b = project(
        "t-many-b",
        19602,
        Some(traefik("t-many-b", &[("web", TRAEFIK_WEB)], &["web"])),
    );
    a.with_v1_live();
    // The same entry point at the same address is shared.
    b.with_v1_live();
    assert_served("t-many-a", TRAEFIK_WEB, "v1");
    assert_served("t-many-b", TRAEFIK_WEB, "v1");

    // b moves the shared entry point: refused before anything changes, naming a.
    let before = (static_config(), record("t-many-b"));
    set_traefik(&b, &traefik("t-many-b", &[("web", 19611)], &["web"]));
    refused(
        b.deploy(&["setup"]),
        "t-many-a",
        "traefik.manage.entrypoints.web: `127.0.0.1:19611` here, but t-many-a",
    );
    assert_eq!((static_config(), record("t-many-b")), before);
    assert_served("t-many-a", TRAEFIK_WEB, "v1");
    assert_served("t-many-b", TRAEFIK_WEB, "v1");
    // check says the same, with the same code.
    refused(b.deploy(&["check", "test"]), "t-many-a", "entrypoints.web");

    // Two names on one address: refused too.
    set_traefik(
        &b,
        &traefik("t-many-b", &[("other", TRAEFIK_WEB)], &["other"]),
    );
    refused(
        b.deploy(&["setup"]),
        "t-many-a",
        "takes the port of t-many-a",
    );

    // A compatible change: b on an entry point of its own. a keeps its own, and both are
    // served; the restart says whom it touches.
    set_traefik(&b, &traefik("t-many-b", &[("mweb2", 19612)], &["mweb2"]));
    let pid = traefik_pid();
    let r = b.deploy(&["setup"]).ok();
    assert_ne!(traefik_pid(), pid, "Traefik was restarted");
    r.says("Restarting Traefik (its static config changed), which serves ");
    r.says("t-many-a (test)");
    r.says("t-many-b (test)");
    let config = static_config();
    assert!(
        config.contains(&format!("web:\n    address: \"127.0.0.1:{TRAEFIK_WEB}\""))
            && config.contains("mweb2:\n    address: \"127.0.0.1:19612\""),
        "{config}"
    );
    assert_served("t-many-a", TRAEFIK_WEB, "v1");
    assert_served("t-many-b", 19612, "v1");
    // A release of b after it keeps both served.
    b.deploy(&["release", "v2"]).ok();
    assert_served("t-many-a", TRAEFIK_WEB, "v1");
    assert_served("t-many-b", 19612, "v2");
    // Nothing changed for Traefik: no restart.
    let pid = traefik_pid();
    let r = a.deploy(&["setup"]).ok();
    r.says("Starting Traefik (its static config is unchanged)");
    assert_eq!(traefik_pid(), pid, "Traefik was not restarted");
}

#[test]
fn a_port_of_another_app_is_refused_running_or_not() {
    let _serial = serial();
    // Every project first: each clears what an earlier run left of it (its ports).
    let idle = project("t-many-idle", 19620, None);
    let same = project("t-many-same", 19620, None);
    let front = project(
        "t-many-front",
        19619,
        Some(traefik("t-many-front", &[("pweb", 19613)], &["pweb"])),
    );
    // Set up, never released: nothing listens on its ports.
    idle.deploy(&["setup"]).ok();
    refused(
        same.deploy(&["setup"]),
        "t-many-idle",
        "environments.test.port: port 19620 is the port of t-many-idle",
    );
    refused(same.deploy(&["check", "test"]), "t-many-idle", "port 19620");
    assert!(record("t-many-same").is_none());
    assert!(!same.root().join("releases").exists(), "nothing was set up");
    // A gap port on another app's port.
    refused(
        front.deploy(&["setup"]),
        "t-many-idle",
        "environments.test.gap_port: port 19620 is the port of t-many-idle",
    );
    // Elsewhere, it is fine, and recorded.
    let yaml = std::fs::read_to_string(front.dir.join("deploy.yaml")).unwrap();
    front.write("deploy.yaml", &yaml.replace("port: 19619", "port: 19622"));
    front.deploy(&["setup"]).ok();
    let rec: serde_json::Value = serde_json::from_str(&record("t-many-front").unwrap()).unwrap();
    assert_eq!(rec["port"], 19622);
    assert_eq!(rec["gap_port"], 19623);
    assert_eq!(
        rec["traefik"]["entrypoints"]["pweb"], "127.0.0.1:19613",
        "{rec}"
    );
}

/// The static config as the code before the records wrote it for an app with one entry point.
fn old_static_config(name: &str, port: u16) -> String {
    let dynamic = node().home.join(".config/traefik/dynamic");
    format!(
        "# Written by deploy (traefik.manage) for the user's Traefik. Do not edit: `deploy setup`\n\
         # rewrites it.\nglobal:\n  checkNewVersion: false\n  sendAnonymousUsage: false\n\
         entryPoints:\n  {name}:\n    address: \"127.0.0.1:{port}\"\n  traefik:\n    address: \
         \"127.0.0.1:{TRAEFIK_API}\"\napi:\n  insecure: true\n  dashboard: false\nproviders:\n  \
         providersThrottleDuration: 100ms\n  file:\n    directory: \"{}\"\n    watch: true\n\
         log:\n  level: INFO\n",
        dynamic.display()
    )
}

#[test]
fn a_node_set_up_before_the_records_is_read_from_its_units_and_static_config() {
    let _serial = serial();
    let one = project(
        "t-many-s1",
        19630,
        Some(traefik("t-many-s1", &[("web", TRAEFIK_WEB)], &["web"])),
    );
    let two = project(
        "t-many-s2",
        19632,
        Some(traefik("t-many-s2", &[("web", TRAEFIK_WEB)], &["web"])),
    );
    for p in [&one, &two] {
        p.with_v1_live();
    }
    assert_served("t-many-s1", TRAEFIK_WEB, "v1");
    // What the code before left: the same units and routers, no records, and the static config
    // of the last setup (the same entry point).
    for app in ["t-many-s1", "t-many-s2"] {
        let _ = std::fs::remove_file(record_path(app));
    }
    let path = node().home.join(".config/traefik/traefik.yaml");
    std::fs::write(&path, old_static_config("web", TRAEFIK_WEB)).unwrap();
    common::chown_to_node_user(&path);

    // The first setup after it knows that s1 is on web: moving web is refused.
    set_traefik(&two, &traefik("t-many-s2", &[("web", 19616)], &["web"]));
    refused(
        two.deploy(&["setup"]),
        "t-many-s1",
        "traefik.manage.entrypoints.web: `127.0.0.1:19616` here, but t-many-s1",
    );
    assert_served("t-many-s1", TRAEFIK_WEB, "v1");
    // Its record was seeded from the server.
    let rec: serde_json::Value = serde_json::from_str(&record("t-many-s1").unwrap()).unwrap();
    assert_eq!(rec["seeded"], true, "{rec}");
    assert_eq!(
        (rec["port"].as_u64(), rec["gap_port"].as_u64()),
        (Some(19630), Some(19631))
    );
    assert_eq!(
        rec["traefik"]["entrypoints"]["web"],
        format!("127.0.0.1:{TRAEFIK_WEB}")
    );
    assert_eq!(rec["traefik"]["rule"], "Host(`t-many-s1.test`)");

    // A new entry point of s2's own: s1 keeps web.
    set_traefik(&two, &traefik("t-many-s2", &[("sweb2", 19617)], &["sweb2"]));
    two.deploy(&["setup"]).ok();
    assert_served("t-many-s1", TRAEFIK_WEB, "v1");
    assert_served("t-many-s2", 19617, "v1");
    // s1's own setup replaces what was seeded.
    one.deploy(&["setup"]).ok();
    let rec: serde_json::Value = serde_json::from_str(&record("t-many-s1").unwrap()).unwrap();
    assert_eq!(rec["seeded"], false, "{rec}");
    assert_eq!(rec["health_path"], "/healthz");
}

#[test]
fn deploy_server_lists_every_app_of_the_user_here_and_over_ssh() {
    let _serial = serial();
    let web = project(
        "t-many-l1",
        19640,
        Some(traefik("t-many-l1", &[("web", TRAEFIK_WEB)], &["web"])),
    );
    let plain = project("t-many-l2", 19642, None);
    web.with_v1_live();
    plain.deploy(&["setup"]).ok();
    let r = web.deploy(&["server", "test"]).ok();
    r.prints("t-many-l1 (test)  ");
    r.prints("t-many-l2 (test)  ");
    r.prints("live:         v1 since ");
    r.prints("health:       http://127.0.0.1:19640/healthz: HTTP 200");
    r.prints("ports:        19640, gap 19641");
    r.prints("router:       Host(`t-many-l1.test`) on web");
    r.prints("ports:        19642\n");
    r.prints(&format!("web 127.0.0.1:{TRAEFIK_WEB}"));
    let r = plain.deploy(&["--json", "server", "test"]).ok();
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let app = |name: &str| {
        doc["apps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["app"] == name)
            .unwrap_or_else(|| panic!("{name} in {doc}"))
            .clone()
    };
    let l1 = app("t-many-l1");
    assert_eq!(l1["current"], "v1");
    assert_eq!(l1["unit"]["active"], "active");
    assert_eq!(l1["health"]["status"], 200);
    assert!(l1["disk"]["releases"].as_u64().unwrap() > 0, "{l1}");
    assert_eq!(app("t-many-l2")["current"], serde_json::Value::Null);
    assert!(doc["traefik"]["apps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == "t-many-l1 (test)"));

    // Over SSH, as every command: the same user's apps.
    let remote = Project::new(
        "t-many-r",
        19644,
        Options {
            remote: true,
            ..Options::default()
        },
    );
    remote.deploy_remote(&["setup"]).ok();
    let r = remote.deploy_remote(&["server", "test"]).ok();
    r.prints("t-many-r (test)  ");
    r.prints("t-many-l1 (test)  ");
}
