//! Off-site replication of the SQLite databases in `shared/` with Litestream, and what
//! `deploy restore` (restore.rs) and `deploy verify` read of the replica: its list of databases
//! and one `litestream restore`.
//!
//! ```text
//! <path>/.deploy/litestream.yml        Litestream's config (0600): every database in shared/
//! <path>/.deploy/replica-manifest.db   the list of the databases, replicated like them
//! <url>/<path under shared/>           each database's replica
//! <url>/_deploy/manifest.db            the manifest's: what a fresh server restores
//! ```
//!
//! Litestream runs as the user unit `<app>_<env>_litestream.service` beside the app. It keeps
//! the databases open, so a restore of data (`rollback --with-data`, a put-back with data,
//! `migrate-data`, `deploy restore`) stops it first and starts it after.
//!
//! [`Replication`] borrows what it needs of the [`Node`]. `read`: what `deploy restore` and
//! `deploy verify` read of the replica; `position`: the replica's position beside a snapshot.

mod position;
mod read;

pub use read::{litestream_cmd, point_in_time, restore_args, run_restore};

use crate::config::Replicate;
use crate::node::borrowed::{owner_of_borrowed, Borrowed};
use crate::node::shared_path::SharedRel;
use crate::node::Node;
use crate::sys::{fsx, systemd::Systemd};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

const UNIT: &str = include_str!("../../../units/litestream.service");

/// The manifest's file in `.deploy/`, and its replica under the URL.
pub const MANIFEST: &str = "replica-manifest.db";
pub const MANIFEST_REPLICA: &str = "_deploy/manifest.db";

/// A database's replica: `<url>/<its path under shared/>`. Pure.
pub fn replica_url(base: &str, rel: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), rel)
}

pub use crate::config::replica_url::{shown_url, split_password};

#[derive(Serialize)]
struct LsConfig {
    socket: LsSocket,
    dbs: Vec<LsDb>,
}

#[derive(Serialize)]
struct LsSocket {
    enabled: bool,
    path: String,
}

#[derive(Serialize)]
struct LsDb {
    path: String,
    replica: LsReplica,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct LsReplica {
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    force_path_style: Option<bool>,
}

/// Litestream's config: each of `dbs` (its path here, its path under shared/ or the
/// manifest's replica name) to its replica, and the control socket `deploy status` asks. Pure.
pub fn config_text(
    r: &Replicate,
    key_path: Option<&str>,
    socket: &Path,
    dbs: &[(String, String)],
) -> Result<String> {
    let (url, password) = split_password(&r.url);
    let config = LsConfig {
        socket: LsSocket {
            enabled: true,
            path: socket.display().to_string(),
        },
        dbs: dbs
            .iter()
            .map(|(path, rel)| LsDb {
                path: path.clone(),
                replica: LsReplica {
                    url: replica_url(&url, rel),
                    password: password.clone(),
                    key_path: key_path.map(String::from),
                    host_key: r.host_key.clone(),
                    endpoint: r.endpoint.clone(),
                    region: r.region.clone(),
                    force_path_style: r.endpoint.as_ref().map(|_| true),
                },
            })
            .collect(),
    };
    Ok(format!(
        "# Written by deploy (replicate:). Do not edit: `deploy setup` and releases rewrite it.\n{}",
        yaml_serde::to_string(&config)?
    ))
}

/// Writes the manifest's list of databases (paths under shared/), in one transaction, when it
/// changed. Every entry is checked as a restore checks it: none names a place outside shared/.
fn write_manifest(path: &Path, rels: &[String]) -> Result<bool> {
    crate::node::shared_path::parse_all(rels, "the list of databases to replicate")?;
    let mut db = rusqlite::Connection::open(path)
        .with_context(|| format!("cannot open the manifest {}", path.display()))?;
    db.busy_timeout(Duration::from_secs(10))?;
    let _: String = db.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    db.execute_batch("CREATE TABLE IF NOT EXISTS databases (path TEXT PRIMARY KEY)")?;
    let had = read_manifest_conn(&db)?;
    if had == rels {
        return Ok(false);
    }
    let tx = db.transaction()?;
    tx.execute("DELETE FROM databases", [])?;
    for rel in rels {
        tx.execute("INSERT INTO databases (path) VALUES (?1)", [rel])?;
    }
    tx.commit()?;
    Ok(true)
}

fn read_manifest_conn(db: &rusqlite::Connection) -> Result<Vec<String>> {
    let mut q = db.prepare("SELECT path FROM databases ORDER BY path")?;
    let rows = q.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// Where Litestream is on this node.
pub fn litestream_bin() -> Result<PathBuf> {
    crate::front::find_in_path("litestream").ok_or_else(|| {
        anyhow::anyhow!(
            "litestream is not installed (replicate: needs it): `deploy bootstrap` installs \
             it (a pinned release, checked; on the server as root: deploy bootstrap --local \
             USER --with litestream), or put a Litestream 0.5 binary in /usr/local/bin"
        )
    })
}

/// The app's replication: what it needs of the node, borrowed.
pub struct Replication<'a>(pub(crate) Borrowed<'a>);
owner_of_borrowed!(Replication);

impl Node<'_> {
    /// This app's replication.
    pub fn replication(&self) -> Replication<'_> {
        Replication(self.borrowed())
    }
}

impl Replication<'_> {
    fn user_unit_dir(&self) -> PathBuf {
        crate::sys::systemd::user_unit_dir(self.home)
    }

    pub(crate) fn litestream_config(&self) -> PathBuf {
        self.layout.meta().join("litestream.yml")
    }

    pub(crate) fn litestream_socket(&self) -> PathBuf {
        self.layout.meta().join("litestream.sock")
    }

    fn manifest(&self) -> PathBuf {
        self.layout.meta().join(MANIFEST)
    }

    /// The databases under shared/, as paths under it; one whose name no restore would take
    /// (a control character, say) is left out of replication, with a warning.
    fn shared_databases(&self) -> Result<Vec<String>> {
        let mut dbs = Vec::new();
        for p in crate::node::snapshot::databases(&self.layout.shared())? {
            let text = p.to_string_lossy();
            match SharedRel::parse(&text) {
                Ok(rel) if rel.as_str() == MANIFEST_REPLICA => self.ui.warn(&format!(
                    "shared/{rel}: not replicated (its place in the replica is the list of \
                     databases'; rename it)"
                )),
                Ok(rel) => dbs.push(rel.to_string()),
                Err(e) => self.ui.warn(&format!(
                    "shared/{e}: not replicated (rename it to a plain name)"
                )),
            }
        }
        Ok(dbs)
    }

    /// The config for `dbs` (paths under shared/) and the manifest.
    fn litestream_text(&self, r: &Replicate, dbs: &[String]) -> Result<String> {
        let key = match &r.key {
            Some(k) => Some(crate::sys::fsx::expand_home(k, self.home)?),
            None => None,
        };
        let shared = self.layout.shared();
        let mut all: Vec<(String, String)> = dbs
            .iter()
            .map(|rel| (shared.join(rel).display().to_string(), rel.clone()))
            .collect();
        all.push((
            self.manifest().display().to_string(),
            MANIFEST_REPLICA.to_string(),
        ));
        config_text(
            r,
            key.as_ref().map(|k| k.display().to_string()).as_deref(),
            &self.litestream_socket(),
            &all,
        )
    }

    /// With `replicate:`, Litestream's config for every database in shared/ now (one created
    /// since is picked up here), the manifest, and its unit, (re)started when either changed;
    /// without it, a unit left from before is removed. Run by setup and after each release.
    pub fn sync(&self, systemd: &Systemd) -> Result<()> {
        let unit = self.names().replication_unit();
        let Some(r) = &self.config.replicate else {
            if self.user_unit_dir().join(&unit).exists() {
                systemd.remove_unit(&self.user_unit_dir(), &unit, Duration::from_secs(40))?;
            }
            return Ok(());
        };
        let bin = litestream_bin()?;
        let dbs = self.shared_databases()?;
        let text = self.litestream_text(r, &dbs)?;
        let config = self.litestream_config();
        let changed = std::fs::read_to_string(&config).ok().as_deref() != Some(text.as_str());
        if changed {
            fsx::write_atomic(&config, text.as_bytes(), 0o600)?;
        }
        let unit_text = crate::template::render(
            "litestream.service",
            UNIT,
            minijinja::context! {
                app => &self.config.app,
                env => self.env_name,
                url => shown_url(&r.url),
                config => config.display().to_string(),
                manifest => self.manifest().display().to_string(),
                shared_env => self.layout.shared().join(".env").display().to_string(),
                release_vars => crate::node::unit::current_vars(&self.layout.root.display().to_string()),
                bin => bin.display().to_string(),
            },
        )?;
        let unit_changed = std::fs::read_to_string(self.user_unit_dir().join(&unit))
            .ok()
            .as_deref()
            != Some(unit_text.as_str());
        // Enabled like the app's (WantedBy=default.target): a unit someone disabled is enabled
        // again, an unchanged enabled one costs no daemon-reload.
        let enabled = self
            .user_unit_dir()
            .join("default.target.wants")
            .join(&unit)
            .exists();
        if unit_changed || !enabled {
            systemd.install_unit(&self.user_unit_dir(), &unit, &unit_text)?;
        }
        if dbs.is_empty() {
            // Nothing to replicate yet (a fresh server, before its release or its `deploy
            // restore`): starting now would replicate an empty list of databases over the one
            // that a restore needs.
            return Ok(());
        }
        write_manifest(&self.manifest(), &dbs)?;
        if changed || unit_changed {
            systemd.restart(&unit, Duration::from_secs(30))?;
        } else if systemd.state(&unit)?.active.is_down() {
            systemd.start(&unit, Duration::from_secs(30))?;
        } else {
            // Running on this very config (after most releases): nothing to wait for.
            return Ok(());
        }
        self.wait_for_litestream(&bin, &unit)
    }

    /// Until Litestream answers on its control socket (it replicates then), at most 15 s.
    fn wait_for_litestream(&self, bin: &Path, unit: &str) -> Result<()> {
        let socket = self.litestream_socket();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let answers = duct::cmd!(bin, "info", "-timeout", "1", "-socket", &socket)
                .stdout_null()
                .stderr_null()
                .unchecked()
                .run()
                .is_ok_and(|o| o.status.success());
            if answers {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "{unit} started but Litestream does not answer on {}: see \
                     `systemctl --user status {unit}`",
                    socket.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops Litestream before data is put back under it; returns whether it ran.
    pub fn stop(&self, systemd: &Systemd) -> Result<bool> {
        if self.config.replicate.is_none() {
            return Ok(false);
        }
        let unit = self.names().replication_unit();
        if !self.user_unit_dir().join(&unit).exists() {
            return Ok(false);
        }
        systemd
            .stop(&unit, Duration::from_secs(40))
            .with_context(|| format!("cannot stop {unit} before the data is restored"))?;
        Ok(true)
    }

    /// Per database: Litestream's own word (from its control socket) and how long ago it last
    /// synced; `None` without `replicate:`.
    pub fn status(&self) -> Option<Vec<DbReplication>> {
        self.config.replicate.as_ref()?;
        let socket = self.litestream_socket();
        let out = litestream_bin().ok().and_then(|bin| {
            duct::cmd!(bin, "list", "-json", "-timeout", "3", "-socket", &socket)
                .stdout_capture()
                .stderr_null()
                .unchecked()
                .run()
                .ok()
        });
        let listed: serde_json::Value = out
            .filter(|o| o.status.success())
            .and_then(|o| serde_json::from_slice(&o.stdout).ok())
            .unwrap_or_default();
        let shared = self.layout.shared();
        let dbs = self.shared_databases().unwrap_or_default();
        Some(
            dbs.iter()
                .map(|rel| {
                    let path = shared.join(rel).display().to_string();
                    let entry = listed["databases"]
                        .as_array()
                        .and_then(|a| a.iter().find(|d| d["path"] == path.as_str()));
                    let lag = entry
                        .and_then(|e| e["last_sync_at"].as_str())
                        .and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok())
                        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok());
                    DbReplication {
                        database: rel.clone(),
                        status: entry
                            .and_then(|e| e["status"].as_str())
                            .unwrap_or("not replicating (Litestream does not answer)")
                            .to_string(),
                        behind_ms: lag.map(|d| d.as_millis() as u64),
                    }
                })
                .collect(),
        )
    }
}

/// One database's replication, as `deploy status` shows it.
#[derive(Debug, Serialize)]
pub struct DbReplication {
    pub database: String,
    /// Litestream's word: `replicating`, or why not.
    pub status: String,
    /// Since its last sync to the replica (Litestream's `last_sync_at`).
    pub behind_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_database_goes_to_its_own_path_under_the_url() {
        let r = Replicate {
            url: "s3://bucket/shop/".into(),
            key: None,
            host_key: None,
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: Some("us-east-1".into()),
        };
        let text = config_text(
            &r,
            None,
            Path::new("/srv/shop/.deploy/litestream.sock"),
            &[
                ("/srv/shop/shared/data/app.db".into(), "data/app.db".into()),
                (
                    "/srv/shop/.deploy/replica-manifest.db".into(),
                    MANIFEST_REPLICA.into(),
                ),
            ],
        )
        .unwrap();
        let v: serde_json::Value = yaml_serde::from_str(&text).unwrap();
        assert_eq!(
            v["dbs"][0]["replica"]["url"],
            "s3://bucket/shop/data/app.db"
        );
        assert_eq!(v["dbs"][0]["replica"]["force-path-style"], true);
        assert_eq!(v["dbs"][0]["replica"]["endpoint"], "http://127.0.0.1:9000");
        assert_eq!(
            v["dbs"][1]["replica"]["url"],
            "s3://bucket/shop/_deploy/manifest.db"
        );
        assert_eq!(v["socket"]["path"], "/srv/shop/.deploy/litestream.sock");
        assert!(v["dbs"][0]["replica"].get("key-path").is_none());
    }

    #[test]
    fn the_manifest_lists_what_there_is_and_changes_only_when_that_does() {
        let dir = std::env::temp_dir().join(format!("deploy-manifest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let m = dir.join(MANIFEST);
        let list = vec!["data/a.db".to_string(), "data/b.db".to_string()];
        assert!(write_manifest(&m, &list).unwrap());
        assert!(!write_manifest(&m, &list).unwrap());
        let db = rusqlite::Connection::open(&m).unwrap();
        assert_eq!(read_manifest_conn(&db).unwrap(), list);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
