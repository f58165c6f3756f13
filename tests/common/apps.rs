//! Several apps of one node user sharing its managed Traefik: their `traefik:` sections, what
//! that Traefik serves, its process and files, and the apps' records.

use super::{NodeUser, Project, Run};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A `traefik:` section managing the user's Traefik (its API on 127.0.0.1:`api`): `eps` its
/// entry points (on 127.0.0.1), `router` those of the app's router.
pub fn traefik_section_at(api: u16, app: &str, eps: &[(&str, u16)], router: &[&str]) -> String {
    let eps: String = eps
        .iter()
        .map(|(name, port)| format!("      {name}: 127.0.0.1:{port}\n"))
        .collect();
    format!(
        "traefik:\n  api: http://127.0.0.1:{api}\n  rule: Host(`{app}.test`)\n  \
         entrypoints: [{}]\n  manage:\n    entrypoints:\n{eps}",
        router.join(", ")
    )
}

/// Replaces the project's `traefik:` section (the last one of its config).
pub fn set_traefik(p: &Project, section: &str) {
    let yaml = std::fs::read_to_string(p.dir.join("deploy.yaml")).unwrap();
    let base = &yaml[..yaml.find("traefik:").expect("a traefik section")];
    p.write("deploy.yaml", &format!("{base}{section}"));
}

/// GET / through Traefik's entry point on `port` with the app's Host: the body of a 200 from
/// the app, waited for (a restart of Traefik takes a moment), or what came instead.
pub fn served(app: &str, port: u16) -> Result<String, String> {
    let agent = super::agent_for(Duration::from_secs(3));
    let t = Instant::now();
    loop {
        let answer = agent
            .get(format!("http://127.0.0.1:{port}/"))
            .header("Host", format!("{app}.test"))
            .call()
            .map_err(|e| e.to_string())
            .map(|mut r| {
                let body = r.body_mut().read_to_string().unwrap_or_default();
                (r.status().as_u16(), body)
            });
        match answer {
            Ok((200, body)) if body.starts_with("example-app ") => return Ok(body),
            other if t.elapsed() > Duration::from_secs(20) => return Err(format!("{other:?}")),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[track_caller]
pub fn assert_served(app: &str, port: u16, version: &str) {
    let body = served(app, port).unwrap_or_else(|e| panic!("{app} on :{port}: {e}"));
    assert!(
        body.starts_with(&format!("example-app {version} ")),
        "{app} on :{port}: {body}"
    );
}

/// A property of one of the user's units (`systemctl --user show -p NAME --value`).
pub fn unit_property(user: &NodeUser, unit: &str, name: &str) -> String {
    let out = user
        .command(
            std::path::Path::new("systemctl"),
            &["--user", "show", "-p", name, "--value", unit],
            std::path::Path::new("/"),
            &[],
        )
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The user's managed Traefik's process (`0` when it does not run).
pub fn traefik_pid(user: &NodeUser) -> String {
    unit_property(user, "traefik.service", "MainPID")
}

/// The user's managed Traefik's static config.
pub fn static_config(user: &NodeUser) -> String {
    std::fs::read_to_string(user.home.join(".config/traefik/traefik.yaml")).unwrap()
}

/// An app's record (environment `test`), if it has one.
pub fn record(user: &NodeUser, app: &str) -> Option<String> {
    std::fs::read_to_string(record_path(user, app)).ok()
}

pub fn record_path(user: &NodeUser, app: &str) -> PathBuf {
    user.home
        .join(format!(".local/share/deploy/apps/{app}_test.json"))
}

/// A refusal for a conflict with another app: exit 3, naming it.
#[track_caller]
pub fn refused(r: Run, other: &str, setting: &str) {
    assert_eq!(r.code, 3, "a config error:\n{}", r.stderr);
    r.says(&format!("{other} (test, "));
    r.says(setting);
    r.says("nothing was changed");
}
