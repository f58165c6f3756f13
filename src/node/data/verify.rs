//! `deploy verify [ENV]`: a backup that proves itself. Every database the replica's manifest
//! lists is restored (its newest state) into a temporary directory on the server, never
//! `shared/`; SQLite checks it (`PRAGMA integrity_check`); and it is compared with the live
//! database by time: how far the replica's last transaction is behind the live database's last
//! write. A database missing from the replica, a corrupt one, or one further behind than
//! `verify.max_lag` fails the check (exit 7). The result is kept for `deploy status`.

use crate::exit::{self, Code};
use crate::node::data::Data;
use crate::node::shared_path::SharedRel;
use crate::node::Node;
use crate::sys::fsx;
use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

const TIMER: &str = include_str!("../../../units/verify.timer");
const SERVICE: &str = include_str!("../../../units/verify.service");

/// Where the last verification's result is kept, in `.deploy/`.
pub(crate) const RESULT_FILE: &str = "verify.json";

/// One database's verification.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DbCheck {
    pub database: String,
    /// `ok`, or what is wrong.
    pub result: String,
    /// How far the replica is behind the live database's last write.
    pub lag_ms: Option<u64>,
    /// The restored copy's size and how long its restore took.
    pub bytes: u64,
    pub ms: u64,
}

/// A whole verification, as kept and shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Verification {
    pub at: String,
    pub ok: bool,
    pub databases: Vec<DbCheck>,
}

impl Verification {
    /// One line for `deploy status`.
    pub fn summary(&self) -> String {
        let worst_lag = self.databases.iter().filter_map(|d| d.lag_ms).max();
        let failed: Vec<String> = self
            .databases
            .iter()
            .filter(|d| d.result != "ok")
            .map(|d| format!("{}: {}", d.database, d.result))
            .collect();
        format!(
            "{} at {}{}{}",
            if self.ok { "passed" } else { "FAILED" },
            self.at,
            worst_lag
                .map(|l| format!(", replica {} behind", fmt_ms(l)))
                .unwrap_or_default(),
            if failed.is_empty() {
                String::new()
            } else {
                format!(" ({})", failed.join("; "))
            }
        )
    }
}

fn fmt_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// The lag of a replica whose newest file was written at `replica` behind a live database
/// last written at `live`: zero when the replica is newer. Pure.
pub fn lag(live: SystemTime, replica: SystemTime) -> Duration {
    live.duration_since(replica).unwrap_or_default()
}

/// When the live database (or its `-wal`) was last written.
fn last_write(db: &Path) -> Option<SystemTime> {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    [db.to_path_buf(), wal.into()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max()
}

impl Node<'_> {
    /// With `verify.schedule` (and `replicate:`), its user timer and service, written and
    /// started when they changed; without, removed. Run by setup and every release.
    pub(crate) fn sync_verify_timer(&self, systemd: &crate::sys::systemd::Systemd) -> Result<()> {
        let rt = self.runtime();
        let names = self.names();
        let (timer, service) = (names.verify_timer(), names.verify_service());
        let dir = rt.user_unit_dir();
        let schedule = self
            .config
            .verify
            .schedule
            .as_ref()
            .filter(|_| self.config.replicate.is_some());
        let Some(schedule) = schedule else {
            if dir.join(&timer).exists() {
                systemd.remove_unit(&dir, &timer, Duration::from_secs(10))?;
                systemd.remove_unit(&dir, &service, Duration::from_secs(60))?;
            }
            return Ok(());
        };
        crate::sys::systemd::check_calendar(schedule)
            .context("verify.schedule is not a calendar expression systemd takes")?;
        self.keep_for_server()?;
        let ctx = minijinja::context! {
            app => &self.config.app,
            env => &self.env_name,
            schedule => crate::template::systemd_escape(schedule),
            bin => self.kept_bin().display().to_string(),
            config => self.kept_config().display().to_string(),
            shared_env => self.layout.shared().join(".env").display().to_string(),
            release_vars => rt.unit_spec().current_vars(),
        };
        let service_text = crate::template::render("verify.service", SERVICE, &ctx)?;
        let timer_text = crate::template::render("verify.timer", TIMER, &ctx)?;
        systemd.install_triggered(
            &dir,
            (&service, &service_text),
            (&timer, &timer_text),
            "timers.target",
        )
    }

    /// `deploy verify`: see the module's doc. Skipped, saying so, while a swap or a restore
    /// runs (the fence is closed or a journal is open).
    pub fn verify(&self, secrets: Option<&Path>) -> Result<()> {
        self.require_setup()?;
        let r = self.config.replicate.as_ref().ok_or_else(|| {
            anyhow!("deploy verify checks the replica of `replicate:`, which this config lacks")
        })?;
        if let Some(busy) = self.data_busy()? {
            self.ui.done(
                &format!("verify skipped: {busy}"),
                serde_json::json!({"action": "verify", "skipped": busy}),
            );
            return Ok(());
        }
        let env = self.replication().litestream_env(secrets)?;
        let work = self
            .layout
            .meta()
            .join(format!(".verify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        fsx::ensure_private_dir(&work)?;
        let result = self.data().verify_into(r, &env, &work);
        let _ = std::fs::remove_dir_all(&work);
        let v = result?;
        fsx::write_atomic(
            &self.layout.meta().join(RESULT_FILE),
            serde_json::to_string_pretty(&v)?.as_bytes(),
            0o600,
        )?;
        let shown = crate::config::replica_url::shown_url(&r.url);
        let json = serde_json::json!({"action": "verify", "ok": v.ok, "databases": v.databases});
        if v.ok {
            self.ui.done(
                &format!(
                    "the replica at {shown} restores every database of {} on {}, whole and in time",
                    self.config.app, self.env_name
                ),
                json,
            );
            Ok(())
        } else {
            Err(exit::with(
                Code::BackupFailed,
                anyhow!(
                    "the backup of {} on {} failed its check: {}",
                    self.config.app,
                    self.env_name,
                    v.summary()
                ),
            ))
        }
    }

    /// Why the data is not to be read now (a swap or a restore under way), if so.
    fn data_busy(&self) -> Result<Option<String>> {
        if let Some(what) = self.swap_report()? {
            return Ok(Some(what));
        }
        Ok(self.fence_closed_by())
    }
}

impl Data<'_> {
    /// The last verification, if any.
    pub(crate) fn last_verification(&self) -> Option<Verification> {
        let text = std::fs::read_to_string(self.layout.meta().join(RESULT_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn verify_into(
        &self,
        r: &crate::config::Replicate,
        env: &[(String, String)],
        work: &Path,
    ) -> Result<Verification> {
        let max_lag = self.config.verify.max_lag;
        let (config, listed) = self.replication().replica_manifest(r, env, work, None)?;
        let mut databases = Vec::new();
        let shared = self.layout.shared();
        let mut names: Vec<String> = listed.iter().map(SharedRel::to_string).collect();
        for rel in &listed {
            databases.push(self.verify_one(&config, rel, env, work, max_lag)?);
        }
        // A database of shared/ the replica does not list is not backed up.
        for live in crate::node::snapshot::databases(&shared)? {
            let live = live.display().to_string();
            if !names.contains(&live) {
                databases.push(DbCheck {
                    database: live.clone(),
                    result: "missing from the replica".into(),
                    lag_ms: None,
                    bytes: 0,
                    ms: 0,
                });
                names.push(live);
            }
        }
        let ok = databases.iter().all(|d| d.result == "ok");
        Ok(Verification {
            at: crate::sys::now(),
            ok,
            databases,
        })
    }

    fn verify_one(
        &self,
        config: &Path,
        rel: &SharedRel,
        env: &[(String, String)],
        work: &Path,
        max_lag: Duration,
    ) -> Result<DbCheck> {
        let live = self.layout.shared().join(rel.as_str());
        let out = work.join("data").join(rel.as_str());
        std::fs::create_dir_all(out.parent().expect("a parent"))?;
        let t = Instant::now();
        // A replica that does not restore is what this looks for: a result, not an error.
        let restored = self
            .ui
            .step(&format!("Restoring {rel} into a scratch copy"), || {
                Ok(self
                    .replication()
                    .litestream_restore(config, &live, &out, None, env))
            })?;
        let ms = t.elapsed().as_millis() as u64;
        let mut check = DbCheck {
            database: rel.to_string(),
            result: "ok".into(),
            lag_ms: None,
            bytes: std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0),
            ms,
        };
        match restored {
            Ok(true) => {}
            Ok(false) => {
                check.result = "missing from the replica".into();
                return Ok(check);
            }
            Err(e) => {
                check.result = format!("does not restore: {}", one_line(&format!("{e:#}")));
                return Ok(check);
            }
        }
        let integrity = integrity(&out);
        if integrity != "ok" {
            check.result = format!("corrupt: {integrity}");
            return Ok(check);
        }
        let replica = self.replica_position(config, &live, env)?;
        if let Some(behind) = self.lag_of(&live, &replica) {
            check.lag_ms = Some(behind.as_millis() as u64);
            if behind > max_lag {
                check.result = format!(
                    "{} behind the live database (verify.max_lag {})",
                    fmt_ms(behind.as_millis() as u64),
                    humantime::format_duration(max_lag)
                );
            }
        }
        self.ui.info(&format!(
            "   {rel}: {}, {} KiB in {}{}",
            check.result,
            check.bytes.div_ceil(1024),
            fmt_ms(ms),
            check
                .lag_ms
                .map(|l| format!(", {} behind", fmt_ms(l)))
                .unwrap_or_default()
        ));
        Ok(check)
    }

    /// How far the replica is behind the live database, by Litestream's positions: while
    /// Litestream runs, nothing when the replica has the transaction it last saw locally, else
    /// the time since the replica's newest file; while it does not run, the time the live
    /// database was written after the replica's newest file (nothing replicates it then).
    fn lag_of(&self, live: &Path, replica: &Position) -> Option<Duration> {
        let newest = replica.newest?;
        let now = SystemTime::now();
        if self.litestream_answers() {
            let local = self.local_txid(live)?;
            return Some(if local <= replica.max_txid {
                Duration::ZERO
            } else {
                lag(now, newest)
            });
        }
        last_write(live).map(|w| lag(w, newest))
    }

    /// Whether the replication daemon answers on its control socket.
    fn litestream_answers(&self) -> bool {
        let Ok(bin) = crate::node::replicate::litestream_bin() else {
            return false;
        };
        duct::cmd!(
            bin,
            "info",
            "-timeout",
            "1",
            "-socket",
            self.replication().litestream_socket()
        )
        .stdout_null()
        .stderr_null()
        .unchecked()
        .run()
        .is_ok_and(|o| o.status.success())
    }

    /// The last transaction Litestream took in from the live database (its local state).
    fn local_txid(&self, live: &Path) -> Option<u64> {
        let bin = crate::node::replicate::litestream_bin().ok()?;
        let out = duct::cmd!(
            bin,
            "status",
            "-config",
            self.replication().litestream_config(),
            "-no-expand-env",
            "-json",
            live
        )
        .stdout_capture()
        .stderr_null()
        .unchecked()
        .run()
        .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v.as_array()?
            .first()?
            .get("local_txid")?
            .as_str()
            .and_then(|t| u64::from_str_radix(t, 16).ok())
    }

    /// The replica's position for the database `db` (its path in the config).
    fn replica_position(
        &self,
        config: &Path,
        db: &Path,
        env: &[(String, String)],
    ) -> Result<Position> {
        let bin = crate::node::replicate::litestream_bin()?;
        let args: Vec<String> = vec![
            "ltx".into(),
            "-config".into(),
            config.display().to_string(),
            "-no-expand-env".into(),
            "-json".into(),
            "-level".into(),
            "all".into(),
            db.display().to_string(),
        ];
        let run = crate::node::replicate::litestream_cmd(&bin, args, env)
            .stdout_capture()
            .stderr_null()
            .unchecked()
            .run()
            .context("cannot run litestream")?;
        Ok(Position::of_ltx(&String::from_utf8_lossy(&run.stdout)))
    }
}

/// Where a replica is: its last transaction and when its newest file was written.
#[derive(Debug, Default, PartialEq)]
struct Position {
    max_txid: u64,
    newest: Option<SystemTime>,
}

impl Position {
    /// From `litestream ltx -json -level all`. Pure.
    fn of_ltx(json: &str) -> Position {
        let files: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
        Position {
            max_txid: files
                .iter()
                .filter_map(|f| f["max_txid"].as_str())
                .filter_map(|t| u64::from_str_radix(t, 16).ok())
                .max()
                .unwrap_or(0),
            newest: files
                .iter()
                .filter_map(|f| f["timestamp"].as_str())
                .filter_map(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok())
                .max(),
        }
    }
}

/// An error's text on one line (Litestream's output has many).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// SQLite's own check of a database file: `ok`, or its first complaint.
fn integrity(db: &Path) -> String {
    let checked = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .and_then(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0)));
    match checked {
        Ok(s) => s,
        Err(e) => format!("{e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_is_how_far_the_replica_is_behind_the_last_write() {
        let t = humantime::parse_rfc3339("2026-11-26T10:00:00Z").unwrap();
        assert_eq!(lag(t + Duration::from_secs(90), t), Duration::from_secs(90));
        assert_eq!(lag(t, t + Duration::from_secs(5)), Duration::ZERO);
        let json = r#"[{"level":0,"max_txid":"000000000000000a","timestamp":"2026-11-26T10:47:18Z"},
                       {"level":9,"max_txid":"0000000000000003","timestamp":"2026-11-26T10:47:20Z"}]"#;
        assert_eq!(
            Position::of_ltx(json),
            Position {
                max_txid: 10,
                newest: Some(humantime::parse_rfc3339("2026-11-26T10:47:20Z").unwrap())
            }
        );
        assert_eq!(Position::of_ltx("not json"), Position::default());
    }

    #[test]
    fn a_summary_names_what_failed() {
        let v = Verification {
            at: "t".into(),
            ok: false,
            databases: vec![DbCheck {
                database: "data/app.db".into(),
                result: "corrupt: database disk image is malformed".into(),
                lag_ms: Some(1500),
                bytes: 1,
                ms: 2,
            }],
        };
        let s = v.summary();
        assert!(s.starts_with("FAILED at t, replica 1.5s behind"), "{s}");
        assert!(s.contains("data/app.db: corrupt"), "{s}");
    }
}
