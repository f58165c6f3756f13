//! What the tests of previews share: taking down what an earlier run left, where a preview
//! lives, reading its rows, GET with a Host and a password, and what of it is left on the node.

use super::{node, Project};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Takes down what an earlier run left of these previews (their records outlive the project),
/// and the app's prune timer.
pub fn forget_previews(p: &Project, names: &[&str], remote: bool) {
    for name in names {
        let args = ["preview", "down", name, "--from", "test"];
        let _ = match remote {
            true => p.deploy_remote(&args),
            false => p.deploy(&args),
        };
        let root = preview_root(p, name);
        let _ = std::fs::remove_dir_all(&root);
        let record = node().home.join(format!(
            ".local/share/deploy/apps/{}_test_preview_{name}.json",
            p.app
        ));
        let _ = std::fs::remove_file(record);
    }
    let timer = format!("{}_test_previews.timer", p.app);
    let _ = p.user("systemctl", &["--user", "disable", "--now", &timer]);
    let _ = std::fs::remove_file(node().home.join(".config/systemd/user").join(&timer));
}

pub fn preview_root(p: &Project, name: &str) -> PathBuf {
    node()
        .home
        .join("tests")
        .join(format!("{}.preview-{name}", p.app))
}

/// The preview's record says it expired long ago.
pub fn expire(p: &Project, name: &str) {
    let file = preview_root(p, name).join(".deploy/preview.json");
    let mut record: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    record["expires"] = "2000-01-01T00:00:00Z".into();
    std::fs::write(&file, record.to_string()).unwrap();
}

/// The last JSON event a command printed.
pub fn last_event(stdout: &str) -> Value {
    serde_json::from_str(stdout.lines().last().expect("an event")).expect("JSON")
}

/// One value of a database that something may be writing, checked whole by SQLite first;
/// read as the node user (a root reader could leave files of root's beside it).
#[track_caller]
pub fn query(p: &Project, db: &Path, sql: &str) -> String {
    let db = db.display().to_string();
    let r = p
        .user(
            "sqlite3",
            &["-readonly", &db, &format!("PRAGMA integrity_check; {sql}")],
        )
        .ok();
    let mut lines = r.stdout.lines();
    assert_eq!(lines.next(), Some("ok"), "{db}: {}", r.stdout);
    lines.next().unwrap_or_default().trim().to_string()
}

/// The rows of `hits`.
#[track_caller]
pub fn count(p: &Project, db: &Path) -> i64 {
    query(p, db, "SELECT COUNT(*) FROM hits;").parse().unwrap()
}

/// GET on a port: (status, body, the X-Robots-Tag header).
pub fn get(port: u16, host: Option<&str>, path: &str) -> (u16, String, Option<String>) {
    get_as(port, host, path, None)
}

/// The same with an `Authorization: Basic` value (base64 of `user:password`).
pub fn get_as(
    port: u16,
    host: Option<&str>,
    path: &str,
    basic: Option<&str>,
) -> (u16, String, Option<String>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .proxy(None)
        .build()
        .into();
    let mut req = agent.get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(h) = host {
        req = req.header("Host", h);
    }
    if let Some(b) = basic {
        req = req.header("Authorization", format!("Basic {b}"));
    }
    let mut r = req.call().unwrap();
    let robots = r
        .headers()
        .get("x-robots-tag")
        .map(|v| v.to_str().unwrap().to_string());
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap(),
        robots,
    )
}

/// Unit files, containers and images whose names hold `base`.
pub fn leftovers(p: &Project, base: &str) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(node().home.join(".config/systemd/user"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(base))
        .collect();
    let containers = p.user("podman", &["ps", "--all", "--format", "{{.Names}}"]);
    let images = p.user(
        "podman",
        &["images", "--format", "{{.Repository}}:{{.Tag}}"],
    );
    found.extend(
        containers
            .stdout
            .lines()
            .chain(images.stdout.lines())
            .filter(|l| l.contains(base))
            .map(String::from),
    );
    let router = node()
        .home
        .join(".config/traefik/dynamic")
        .join(format!("{base}.yaml"));
    if router.exists() {
        found.push(router.display().to_string());
    }
    found
}

/// Whether the app's prune timer (of its `test` environment) is installed and enabled, and
/// active.
pub fn prune_timer(p: &Project) -> (bool, bool) {
    let timer = format!("{}_test_previews.timer", p.app);
    let dir = node().home.join(".config/systemd/user");
    let enabled =
        dir.join(&timer).exists() && dir.join("timers.target.wants").join(&timer).exists();
    let active = p.user("systemctl", &["--user", "is-active", &timer]).stdout;
    (enabled, active.trim() == "active")
}
