//! One Traefik per node user, shared by the apps that use it, and a record of every app of the
//! user.
//!
//! Each app's `deploy setup` keeps what it asks of the server in
//! `~/.local/share/deploy/apps/<app>_<env>.json`: its directory, its ports and, with `traefik:`,
//! its requests of Traefik. Traefik reads one static config and merges none, so with
//! `traefik.manage` setup builds that config from every app's requests ([`merge`]); a request
//! that does not fit another app's is refused before anything changes (exit 3), and so is a
//! port another app uses. A node set up before these records existed is read from what is
//! there ([`seed`]): the apps' units and the static config. Records of apps whose directory is
//! gone are cleared by setup; [`forget`] clears one (what removing an app calls).
//!
//! Traefik is restarted only when its static config changes ([`restart`]), under
//! `traefik.lock` (exclusive); every gap holds that lock shared from before it to after it
//! ([`traefik_lock`]), so a restart never lands inside another app's gap ([`lock`]). Removing
//! the last app that relies on the managed Traefik stops it. What one app asks and when (its
//! record checked and written, its setup and its leaving) is the app's front's, in
//! `node/front/`; this module is given what it needs.

mod handover;
mod lock;
mod merge;
mod restart;
mod seed;

pub use lock::{apps_lock, traefik_lock, UserLock};
pub use merge::{conflicts, merge, merge_leaving_out, overlap, resolver_name, Merged};
pub use restart::{apply, leaving, render_merged, stop_managed, Leaving, Preview, TraefikChange};

use crate::config::port_of;
use crate::sys::fsx;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the apps' records are.
pub fn apps_dir(home: &Path) -> PathBuf {
    fsx::deploy_data(home).join("apps")
}

fn record_file(home: &Path, app: &str, env: &str) -> PathBuf {
    apps_dir(home).join(format!(
        "{}.json",
        crate::names::Names::new(app, env).base()
    ))
}

/// One app in one environment, as the server knows it: what it asks of the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppRecord {
    pub app: String,
    pub env: String,
    /// The app's directory.
    pub path: String,
    pub port: u16,
    /// With `traefik:`: where its gap server listens.
    #[serde(default)]
    pub gap_port: Option<u16>,
    /// The health check's path (unknown for an app seeded from its units).
    #[serde(default)]
    pub health_path: Option<String>,
    #[serde(default)]
    pub traefik: Option<TraefikRequest>,
    /// Made from what the server had (units, Traefik's static config) rather than by the
    /// app's own `deploy setup`.
    #[serde(default)]
    pub seeded: bool,
    pub updated_at: String,
}

/// What an app asks of Traefik.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraefikRequest {
    /// `traefik.manage`: the user's Traefik is deploy's, its static config built from these.
    pub managed: bool,
    pub api: String,
    /// `traefik.dynamic_dir`, `~` expanded.
    pub dynamic_dir: String,
    pub rule: String,
    /// The entry points its router is on (`traefik.entrypoints`).
    pub router_entrypoints: Vec<String>,
    /// `traefik.manage.entrypoints`: name -> address.
    #[serde(default)]
    pub entrypoints: BTreeMap<String, String>,
    #[serde(default)]
    pub acme: Option<AcmeRequest>,
    /// `traefik.acme.ca_certificates`, `~` expanded.
    #[serde(default)]
    pub ca_certificates: Option<String>,
    #[serde(default)]
    pub redirect_https: bool,
    /// Seeded from a static config whose `web` entry point redirected everything to https:
    /// the app relies on it until its own next setup moves the redirect onto its router.
    #[serde(default)]
    pub redirect_web: bool,
}

/// An ACME account, and the name of its resolver in the static config (which the app's router
/// names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcmeRequest {
    pub resolver: String,
    pub email: String,
    pub ca_server: String,
    /// `http` or `tls`.
    pub challenge: String,
}

impl AcmeRequest {
    /// The same account and challenge: one resolver serves both.
    pub fn same_account(&self, other: &AcmeRequest) -> bool {
        (&self.email, &self.ca_server, &self.challenge)
            == (&other.email, &other.ca_server, &other.challenge)
    }
}

impl AppRecord {
    /// `shop (prod, /srv/shop)`: how a message names the app.
    pub fn label(&self) -> String {
        format!("{} ({}, {})", self.app, self.env, self.path)
    }

    /// `shop (prod)`.
    pub fn short_label(&self) -> String {
        format!("{} ({})", self.app, self.env)
    }

    /// Its request of the Traefik deploy manages, if it manages it.
    pub fn managed(&self) -> Option<&TraefikRequest> {
        self.traefik.as_ref().filter(|t| t.managed)
    }

    /// The ports the app listens on: (port, what it is, its key in the config).
    pub fn own_ports(&self) -> Vec<(u16, String, String)> {
        let mut ports = vec![(
            self.port,
            "the port".to_string(),
            format!("environments.{}.port", self.env),
        )];
        if let Some(gap) = self.gap_port {
            ports.push((
                gap,
                "the gap server's port".into(),
                format!("environments.{}.gap_port", self.env),
            ));
        }
        ports
    }

    /// The ports its managed Traefik listens on for it: entry points and API.
    pub fn traefik_ports(&self) -> Vec<(u16, String, String)> {
        let Some(t) = self.managed() else {
            return Vec::new();
        };
        let mut ports: Vec<(u16, String, String)> = t
            .entrypoints
            .iter()
            .filter_map(|(name, address)| {
                Some((
                    port_of(address)?,
                    format!("Traefik's entry point {name}"),
                    format!("traefik.manage.entrypoints.{name}"),
                ))
            })
            .collect();
        if let Some(p) = port_of(&t.api) {
            ports.push((p, "Traefik's API".into(), "traefik.api".into()));
        }
        ports
    }
}

/// Every app of the node user: the records kept, and those seeded from the server for apps
/// that have none yet.
pub struct Registry {
    /// By app and environment.
    pub records: Vec<AppRecord>,
    /// Seeded (or seeded again) now: written by [`Registry::persist`].
    seeds: Vec<AppRecord>,
    /// Records of apps whose directory is gone: removed by [`Registry::persist`].
    stale: Vec<PathBuf>,
}

impl Registry {
    /// Reads the records (changing nothing): those whose app directory is gone are left out,
    /// and apps found on the server without a record of their own setup's are seeded from it.
    pub fn load(home: &Path) -> Result<Registry> {
        let (mut records, mut stale) = read_records(home)?;
        let fresh = seed::from_server(home);
        // A seeded record says what the server has: with the app's units gone, it is gone.
        let (kept, gone): (Vec<_>, Vec<_>) = records.into_iter().partition(|r: &AppRecord| {
            !r.seeded || fresh.iter().any(|f| (&f.app, &f.env) == (&r.app, &r.env))
        });
        records = kept;
        stale.extend(gone.iter().map(|r| record_file(home, &r.app, &r.env)));
        let seeds = reseed(&mut records, fresh);
        records.sort_by(|a, b| (&a.app, &a.env).cmp(&(&b.app, &b.env)));
        Ok(Registry {
            records,
            seeds,
            stale,
        })
    }

    /// Writes the seeded records and clears the stale ones.
    pub fn persist(&self, home: &Path) -> Result<()> {
        for s in &self.seeds {
            save(home, s)?;
        }
        for path in &self.stale {
            fsx::remove_durable(path)?;
        }
        Ok(())
    }

    /// The record of `app` in `env`, if any.
    pub fn get(&self, app: &str, env: &str) -> Option<&AppRecord> {
        self.records.iter().find(|r| r.app == app && r.env == env)
    }

    /// Every other app: not `app` in `env`, nor another name for the same directory (an app
    /// renamed there: the directory is the one being set up).
    pub fn others(&self, app: &str, env: &str, path: &str) -> Vec<&AppRecord> {
        self.records
            .iter()
            .filter(|r| !(r.app == app && r.env == env) && r.path != path)
            .collect()
    }
}

/// The records kept, and the files of those whose app directory is gone.
fn read_records(home: &Path) -> Result<(Vec<AppRecord>, Vec<PathBuf>)> {
    let dir = apps_dir(home);
    let (mut records, mut stale) = (Vec::new(), Vec::new());
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.collect::<std::io::Result<Vec<_>>>()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    for entry in entries {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let record = read_record(&path)?;
        match Path::new(&record.path).is_dir() {
            true => records.push(record),
            false => stale.push(path),
        }
    }
    Ok((records, stale))
}

/// `fresh` (what the server has) into `records`: an app without a record is added, a seeded
/// record is read again (the app's own deploy may be one that keeps no record, and change
/// what it has); a record of the app's own setup is kept. Returns what changed.
fn reseed(records: &mut Vec<AppRecord>, fresh: Vec<AppRecord>) -> Vec<AppRecord> {
    let mut seeds = Vec::new();
    for mut f in fresh {
        match records
            .iter_mut()
            .find(|r| (&r.app, &r.env) == (&f.app, &f.env))
        {
            Some(r) if r.seeded => {
                keep_known_entrypoints(&mut f, r);
                f.updated_at = r.updated_at.clone();
                if *r != f {
                    f.updated_at = crate::sys::now();
                    *r = f.clone();
                    seeds.push(f);
                }
            }
            Some(_) => {}
            None => {
                records.push(f.clone());
                seeds.push(f);
            }
        }
    }
    seeds
}

/// An entry point the router of a seeded app is on but the static config no longer has (an
/// app whose deploy keeps no records rewrote it) keeps the address seen before: it is where
/// that app is served once its Traefik has it again.
fn keep_known_entrypoints(fresh: &mut AppRecord, before: &AppRecord) {
    let (Some(f), Some(b)) = (fresh.traefik.as_mut(), before.traefik.as_ref()) else {
        return;
    };
    for (name, address) in &b.entrypoints {
        let challenge = f.acme.as_ref().is_some_and(|a| a.challenge == "http");
        if f.router_entrypoints.contains(name) || (name == "web" && (f.redirect_web || challenge)) {
            f.entrypoints
                .entry(name.clone())
                .or_insert_with(|| address.clone());
        }
    }
}

fn read_record(path: &Path) -> Result<AppRecord> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is not an app record deploy can read: move it away (the app is seeded again \
             from its units, and its next `deploy setup` writes it anew)",
            path.display()
        )
    })
}

/// Writes an app's record (atomically).
pub fn save(home: &Path, record: &AppRecord) -> Result<()> {
    fsx::ensure_dir(&apps_dir(home), 0o700)?;
    let mut json = serde_json::to_vec_pretty(record)?;
    json.push(b'\n');
    fsx::write_atomic(&record_file(home, &record.app, &record.env), &json, 0o600)
}

/// Forgets `app` in `env`: its ports are free for other apps, and the next `deploy setup` of an
/// app that manages Traefik builds the static config without its requests. What removing an
/// app calls once its units and directory are gone (otherwise it would be seeded again).
pub fn forget(home: &Path, app: &str, env: &str) -> Result<()> {
    fsx::remove_durable(&record_file(home, app, env))
}

/// The record of `app` in `env`, if there is one (a preview's: where its ports are kept).
pub fn record(home: &Path, app: &str, env: &str) -> Result<Option<AppRecord>> {
    let path = record_file(home, app, env);
    match path.exists() {
        true => read_record(&path).map(Some),
        false => Ok(None),
    }
}

/// Runs `f` on every app's records under the records' lock (what setup holds while it checks
/// and writes its record): a preview's ports are chosen and kept so, and no two choices overlap.
pub fn with_records<T>(home: &Path, f: impl FnOnce(&Registry) -> Result<T>) -> Result<T> {
    let _apps = apps_lock(home)?;
    let registry = Registry::load(home)?;
    registry.persist(home)?;
    f(&registry)
}

/// The resolver the router of `app` in `env` names: the one its record has (its `deploy setup`
/// chose it), if any.
pub fn resolver_of(home: &Path, app: &str, env: &str) -> Option<String> {
    let record = read_record(&record_file(home, app, env)).ok()?;
    Some(record.managed()?.acme.as_ref()?.resolver.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("deploy-shared-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_seeded_app_keeps_the_address_of_an_entry_point_its_traefik_lost() {
        let request = |eps: &[(&str, &str)]| TraefikRequest {
            managed: true,
            api: "http://127.0.0.1:8099".into(),
            dynamic_dir: "/d".into(),
            rule: "Host(`a`)".into(),
            router_entrypoints: vec!["web".into()],
            entrypoints: eps
                .iter()
                .map(|(n, a)| (n.to_string(), a.to_string()))
                .collect(),
            acme: None,
            ca_certificates: None,
            redirect_https: false,
            redirect_web: false,
        };
        let record = |t| AppRecord {
            app: "a".into(),
            env: "prod".into(),
            path: "/srv/a".into(),
            port: 9000,
            gap_port: Some(9001),
            health_path: None,
            traefik: Some(t),
            seeded: true,
            updated_at: "then".into(),
        };
        let before = record(request(&[("web", ":80"), ("old", ":81")]));
        let mut fresh = record(request(&[]));
        keep_known_entrypoints(&mut fresh, &before);
        assert_eq!(
            fresh.traefik.unwrap().entrypoints,
            BTreeMap::from([("web".into(), ":80".into())]),
            "what its router is on, nothing else"
        );
    }

    #[test]
    fn records_are_kept_read_and_forgotten_and_stale_ones_cleared() {
        let h = home("records");
        let dir = h.join("apps-dir");
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = AppRecord {
            app: "shop".into(),
            env: "prod".into(),
            path: dir.display().to_string(),
            port: 9000,
            gap_port: None,
            health_path: None,
            traefik: None,
            seeded: false,
            updated_at: "now".into(),
        };
        save(&h, &r).unwrap();
        r.app = "gone".into();
        r.path = h.join("nowhere").display().to_string();
        save(&h, &r).unwrap();
        let reg = Registry::load(&h).unwrap();
        assert_eq!(reg.records.len(), 1);
        assert_eq!(reg.get("shop", "prod").unwrap().port, 9000);
        assert!(reg.others("shop", "prod", "/x").is_empty());
        assert_eq!(reg.others("shop", "test", "/x").len(), 1);
        assert!(reg
            .others("renamed", "prod", &dir.display().to_string())
            .is_empty());
        reg.persist(&h).unwrap();
        assert!(!record_file(&h, "gone", "prod").exists());
        forget(&h, "shop", "prod").unwrap();
        assert!(Registry::load(&h).unwrap().records.is_empty());
        std::fs::remove_dir_all(h).unwrap();
    }
}
