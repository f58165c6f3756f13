//! A change of the managed Traefik's static config without an outage: a stop of Traefik closes
//! its listeners at once and then waits up to its grace time (10 s) for the requests and
//! keep-alive connections it has, so a plain restart under load refuses every new connection
//! for that long, for every app it serves. Instead, a second Traefik is started with the new
//! config beside the running one (every entry point with `reusePort`: both listen on the same
//! ports), its API on a port of its own so that it can be asked whether it has loaded the
//! routers; once it serves them, the unit's Traefik is stopped (its clients reconnect to the
//! second), started with the new config and, once it serves the routers, the second stops.
//!
//! A Traefik that starts answers 404 until it has loaded its routers (a fraction of a second):
//! the connections opened to it meanwhile get that. Hence the order: each Traefik starts while
//! the clients are on keep-alive connections to another one that serves (the unit's start
//! waits a moment after its stop, for the reconnections its stop caused to land on the second).

use super::{render_merged, Merged};
use crate::front::traefik::{api_address, Api, LIVE_TIMEOUT, TRAEFIK_UNIT_NAME};
use crate::sys::fsx;
use crate::sys::systemd::{Active, Systemd, Transient};
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The second Traefik, a transient unit of the user's.
pub const HANDOVER_UNIT: &str = "traefik-handover.service";

/// Why the running Traefik cannot be handed over (a plain restart instead), if it cannot:
/// `running` is its static config, `merged` the new one. Pure.
pub fn cannot_hand_over(running: Option<&str>, merged: &Merged) -> Option<&'static str> {
    let Some(running) = running else {
        return Some("no static config was in place");
    };
    let parsed = yaml_serde::from_str::<serde_json::Value>(running).ok();
    let Some(eps) = parsed.as_ref().and_then(|v| v["entryPoints"].as_object()) else {
        return Some("its static config cannot be read");
    };
    if !eps.values().all(|ep| ep["reusePort"] == true) {
        // The first change after an upgrade of deploy: the running one does not share its ports.
        return Some("the running Traefik does not share its ports (no reusePort) yet");
    }
    let api = api_address(&merged.api).ok();
    if eps.get("traefik").and_then(|ep| ep["address"].as_str()) != api.as_deref() {
        return Some("its API moves");
    }
    None
}

/// Where the second Traefik's static config and its copy of `acme.json` go.
fn handover_dir(static_path: &Path) -> PathBuf {
    static_path.with_file_name("handover")
}

/// The second Traefik's static config: the new one, its API on `api_port` (its own, so that it
/// answers as itself), its certificates in a copy of `acme.json` (the unit's Traefik keeps the
/// real one). Pure.
fn handover_config(merged: &Merged, api_port: u16, dir: &Path) -> Result<String> {
    let mut own = merged.clone();
    own.api = format!("http://127.0.0.1:{api_port}");
    render_merged(&own, &dir.join("traefik.yaml"))
}

/// The transient unit of the second Traefik: stopped after 5 minutes whatever happens (a
/// deploy that died during a handover leaves no second Traefik for good). Pure.
fn handover_unit(bin: &Path, config: &Path, ca_certificates: Option<&str>) -> Transient {
    Transient {
        name: HANDOVER_UNIT.into(),
        description: "Traefik with its new static config, while traefik.service restarts".into(),
        argv: vec![
            bin.display().to_string(),
            format!("--configFile={}", config.display()),
        ],
        stop_timeout: Duration::from_secs(30),
        environment: ca_certificates
            .map(|c| format!("LEGO_CA_CERTIFICATES={c}"))
            .into_iter()
            .collect(),
        runtime_max: Some(Duration::from_secs(300)),
    }
}

/// How long the unit stays stopped during a handover: the clients its stop disconnected have
/// reconnected (to the second Traefik) by then.
const SETTLE: Duration = Duration::from_millis(500);

/// What came of a handover that did not fail.
#[derive(Debug)]
pub enum Handed {
    Over,
    /// Nothing was restarted, for this reason: the caller restarts Traefik plainly.
    Not(String),
}

/// Hands the running Traefik over to its new static config (`merged`); `write` puts that
/// config and the unit in place (without restarting it). An error: the unit's restart or its
/// new Traefik failed (the second one is stopped either way).
pub fn hand_over(
    systemd: &Systemd,
    bin: &Path,
    merged: &Merged,
    static_path: &Path,
    write: impl FnOnce() -> Result<()>,
) -> Result<Handed> {
    let unit_api = Api::new(&merged.api);
    let Ok(routers) = unit_api.file_routers() else {
        return Ok(Handed::Not("Traefik does not answer on its API".into()));
    };
    let _ = systemd.stop(HANDOVER_UNIT, Duration::from_secs(30));
    let dir = handover_dir(static_path);
    let second = start_second(systemd, bin, merged, static_path, &dir)
        .and_then(|api| serving(&api, &routers, Some((systemd, HANDOVER_UNIT))));
    let done = match second {
        Ok(()) => write()
            .and_then(|()| restart_unit(systemd))
            .and_then(|()| serving(&unit_api, &routers, None))
            .map(|()| Handed::Over),
        Err(e) => Ok(Handed::Not(format!(
            "the Traefik with the new static config did not come up beside the running one: \
             {e:#}"
        ))),
    };
    let stopped = systemd.stop(HANDOVER_UNIT, Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(&dir);
    let done = done?;
    stopped.context("cannot stop the second Traefik of the handover")?;
    Ok(done)
}

/// The unit's Traefik stopped, then started again after [`SETTLE`].
fn restart_unit(systemd: &Systemd) -> Result<()> {
    let timeout = Duration::from_secs(30);
    systemd.stop(TRAEFIK_UNIT_NAME, timeout)?;
    std::thread::sleep(SETTLE);
    systemd.start(TRAEFIK_UNIT_NAME, timeout)
}

/// Starts the second Traefik; returns its API.
fn start_second(
    systemd: &Systemd,
    bin: &Path,
    merged: &Merged,
    static_path: &Path,
    dir: &Path,
) -> Result<Api> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    fsx::ensure_dir(dir, 0o700)?;
    let config = dir.join("traefik.yaml");
    fsx::write_atomic(
        &config,
        handover_config(merged, port, dir)?.as_bytes(),
        0o600,
    )?;
    if let Ok(acme) = std::fs::read(static_path.with_file_name("acme.json")) {
        fsx::write_atomic(&dir.join("acme.json"), &acme, 0o600)?;
    }
    let unit = handover_unit(bin, &config, merged.ca_certificates.as_deref());
    systemd.start_transient(&unit)?;
    Ok(Api::new(&format!("http://127.0.0.1:{port}")))
}

/// Waits until the Traefik of `api` has loaded `routers` (and its `unit`, if given, runs).
fn serving(api: &Api, routers: &BTreeSet<String>, unit: Option<(&Systemd, &str)>) -> Result<()> {
    let start = Instant::now();
    loop {
        if api
            .file_routers()
            .is_ok_and(|have| have.is_superset(routers))
        {
            return Ok(());
        }
        if let Some((systemd, name)) = unit {
            let active = systemd.state(name).map(|s| s.active);
            if matches!(active, Ok(Active::Failed | Active::Inactive)) {
                bail!("{name} exited (see `journalctl --user -u {name}`)");
            }
        }
        if start.elapsed() > LIVE_TIMEOUT {
            bail!(
                "Traefik at {} did not load the routers {routers:?} within {LIVE_TIMEOUT:?}",
                api.base
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(api: &str) -> Merged {
        Merged {
            entrypoints: [("web".to_string(), "127.0.0.1:8080".to_string())].into(),
            api: api.into(),
            dynamic_dir: "/h/.config/traefik/dynamic".into(),
            resolvers: Default::default(),
            ca_certificates: None,
            redirect_web: false,
            apps: vec![],
        }
    }

    #[test]
    fn a_traefik_is_handed_over_only_when_it_shares_its_ports_and_keeps_its_api() {
        let m = merged("http://127.0.0.1:8099");
        let running = render_merged(&m, Path::new("/h/.config/traefik/traefik.yaml")).unwrap();
        assert_eq!(cannot_hand_over(Some(&running), &m), None);
        // Written by an earlier deploy: no reusePort.
        let before = running.replace("    reusePort: true\n", "");
        assert!(cannot_hand_over(Some(&before), &m)
            .unwrap()
            .contains("does not share its ports"));
        let moved = merged("http://127.0.0.1:8098");
        assert_eq!(
            cannot_hand_over(Some(&running), &moved),
            Some("its API moves")
        );
        assert!(cannot_hand_over(None, &m).is_some());
    }

    #[test]
    fn the_second_traefik_has_its_own_api_and_a_copy_of_the_certificates() {
        let m = merged("http://127.0.0.1:8099");
        let dir = handover_dir(Path::new("/h/.config/traefik/traefik.yaml"));
        assert_eq!(dir, Path::new("/h/.config/traefik/handover"));
        let text = handover_config(&m, 40001, &dir).unwrap();
        let v: serde_json::Value = yaml_serde::from_str(&text).unwrap();
        assert_eq!(v["entryPoints"]["traefik"]["address"], "127.0.0.1:40001");
        assert_eq!(v["entryPoints"]["web"]["address"], "127.0.0.1:8080");
        assert_eq!(v["entryPoints"]["web"]["reusePort"], true);
        assert_eq!(
            v["providers"]["file"]["directory"],
            "/h/.config/traefik/dynamic"
        );
        let unit = handover_unit(Path::new("/t"), &dir.join("traefik.yaml"), Some("/ca"));
        assert_eq!(
            unit.argv,
            [
                "/t",
                "--configFile=/h/.config/traefik/handover/traefik.yaml"
            ]
        );
        assert_eq!(unit.environment, ["LEGO_CA_CERTIFICATES=/ca"]);
        assert_eq!(unit.runtime_max, Some(Duration::from_secs(300)));
    }
}
