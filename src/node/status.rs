//! What is deployed: `deploy releases` and `deploy status`, as text for people or as JSON
//! (`--json`) for scripts. The JSON shapes are documented in the README and kept stable: fields
//! are added, never renamed or removed.

use crate::node::schema;
use crate::node::snapshot::Kind;
use crate::node::state::{Event, Outcome};
use crate::node::Node;
use crate::sys::health;
use crate::sys::systemd::Systemd;
use anyhow::Result;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct Releases {
    pub app: String,
    pub environment: String,
    pub current: Option<String>,
    /// Newest first.
    pub releases: Vec<ReleaseRow>,
}

#[derive(Debug, Serialize)]
pub struct ReleaseRow {
    pub version: String,
    pub current: bool,
    /// `ok`, `failed`, `ready` (built, never live) or `unknown`.
    pub outcome: String,
    pub created_at: Option<String>,
    pub last_live_at: Option<String>,
    /// When the newest data snapshot of this release was taken, if it has one.
    pub snapshot_at: Option<String>,
    /// Its size (its databases), in bytes.
    pub snapshot_bytes: Option<u64>,
    /// How it was taken: `clone`, `pre-copy` or `copy` (null in one older than the record).
    pub snapshot_method: Option<crate::node::snapshot::Method>,
    /// Whether the schema of the data this release left differs from today's data (a
    /// rollback to it then needs --with-data or --keep-data); null when it recorded none.
    pub schema_changed: Option<bool>,
}

/// `deploy history`: the node's events, newest first.
#[derive(Debug, Serialize)]
pub struct History {
    pub app: String,
    pub environment: String,
    pub events: Vec<Event>,
}

impl History {
    pub fn text(&self) -> String {
        let mut out = String::new();
        for e in &self.events {
            let from = e
                .from
                .as_deref()
                .map(|f| format!(" from {f}"))
                .unwrap_or_default();
            let gap = e.gap_ms.map(|g| format!(", gap {g}ms")).unwrap_or_default();
            out += &format!(
                "{}  {:<8} {}{from}: {}{gap}\n",
                e.at, e.action, e.version, e.outcome
            );
            let o = &e.origin;
            let by: Vec<String> = [
                o.who.clone(),
                o.sha.as_ref().map(|s| format!("at {s}")),
                o.command.as_ref().map(|c| format!("`{c}`")),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !by.is_empty() {
                out += &format!("                      by {}\n", by.join(" "));
            }
            if let Some(d) = &e.detail {
                out += &format!("                      {d}\n");
            }
        }
        if out.is_empty() {
            out = "nothing has happened yet\n".into();
        }
        out
    }
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub app: String,
    pub environment: String,
    pub host: String,
    pub path: String,
    pub current: Option<String>,
    pub live_since: Option<String>,
    pub unit: UnitStatus,
    pub health: HealthStatus,
    pub last: Option<Event>,
    /// A swap under way, or one whose process died (the next release or rollback recovers it).
    pub interrupted: Option<String>,
    /// The last stop of the app ran into its timeout and killed it (until a stop is clean).
    pub killed_at_stop: Option<String>,
    /// With `replicate:`: the last `deploy verify` (when, passed or failed, the replica's lag).
    pub verification: Option<crate::node::data::verify::Verification>,
    /// With `replicate:`: each database, as Litestream's control socket reports it.
    pub replication: Option<Vec<crate::node::replicate::DbReplication>>,
    /// The jobs whose last run failed or ran out of time (`deploy jobs` shows them all).
    pub failed_jobs: Vec<crate::node::jobs::report::FailedJob>,
    /// Stopped by `deploy stop`: by whom, since when (until `deploy start`).
    pub stopped: Option<crate::node::runtime::power::Stopped>,
    /// Held by hand (`deploy lock acquire`): why, by whom, since when.
    pub held: Option<crate::node::hold::Hold>,
}

#[derive(Debug, Serialize)]
pub struct UnitStatus {
    pub name: String,
    /// systemd's ActiveState (`active`, `inactive`, `failed`...), or `unknown`.
    pub active: String,
    pub sub: String,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct HealthStatus {
    pub url: String,
    /// The HTTP status, or none when nothing answered.
    pub status: Option<u16>,
    pub error: Option<String>,
}

fn outcome_word(o: Option<&Outcome>) -> &'static str {
    match o {
        Some(Outcome::Ok) => "ok",
        Some(Outcome::Failed) => "failed",
        Some(Outcome::Ready) => "ready",
        None => "unknown",
    }
}

impl Releases {
    pub fn text(&self) -> String {
        let mut out = format!(
            "{:<2}{:<24} {:<8} {:<22} {:<22} {:<24} {:<10} {:<8} {}\n",
            "",
            "VERSION",
            "OUTCOME",
            "CREATED",
            "LAST LIVE",
            "DATA SNAPSHOT",
            "SIZE",
            "METHOD",
            "SCHEMA"
        );
        for r in &self.releases {
            out += &format!(
                "{:<2}{:<24} {:<8} {:<22} {:<22} {:<24} {:<10} {:<8} {}\n",
                if r.current { "*" } else { "" },
                r.version,
                r.outcome,
                r.created_at.as_deref().unwrap_or("-"),
                r.last_live_at.as_deref().unwrap_or("-"),
                r.snapshot_at.as_deref().unwrap_or("-"),
                r.snapshot_bytes
                    .map(crate::node::server::bytes)
                    .unwrap_or_else(|| "-".into()),
                match (&r.snapshot_at, r.snapshot_method) {
                    (_, Some(m)) => m.as_str(),
                    (Some(_), None) => "?",
                    (None, None) => "-",
                },
                match r.schema_changed {
                    Some(true) => "changed",
                    Some(false) => "same",
                    None => "-",
                },
            );
        }
        if self.releases.is_empty() {
            out += "  (no releases yet)\n";
        }
        out
    }
}

impl Status {
    pub fn text(&self) -> String {
        let mut out = String::new();
        out += &format!("app:          {}\n", self.app);
        out += &format!("environment:  {} ({})\n", self.environment, self.host);
        out += &format!("path:         {}\n", self.path);
        out += &format!(
            "current:      {}\n",
            self.current.as_deref().unwrap_or("(none)")
        );
        if let Some(since) = &self.live_since {
            out += &format!("live since:   {since}\n");
        }
        let u = &self.unit;
        out += &match &u.error {
            Some(e) => format!("unit:         {}: unknown: {e}\n", u.name),
            None => format!("unit:         {}: {} ({})\n", u.name, u.active, u.sub),
        };
        let h = &self.health;
        out += &match (h.status, &h.error) {
            (Some(s), _) => format!("health:       {}: HTTP {s}\n", h.url),
            (None, e) => format!(
                "health:       {}: no answer ({})\n",
                h.url,
                e.as_deref().unwrap_or("-")
            ),
        };
        out + &self.events_text()
    }

    /// What happened: the last action, an interrupted swap, a stop, a hold, the last stop's
    /// kill, verify, failed jobs, replication.
    fn events_text(&self) -> String {
        let mut out = String::new();
        if let Some(e) = &self.last {
            out += &format!(
                "last:         {} {} {} at {}{}\n",
                e.action,
                e.version,
                e.outcome,
                e.at,
                e.gap_ms
                    .map(|g| format!(" (gap {g}ms)"))
                    .unwrap_or_default()
            );
        }
        if let Some(i) = &self.interrupted {
            out += &format!("interrupted:  {i}\n");
        }
        if let Some(s) = &self.stopped {
            out += &format!(
                "stopped:      {} (`deploy start {}` starts it)\n",
                s.describe(),
                self.environment
            );
        }
        if let Some(h) = &self.held {
            out += &format!("held:         by hand: {}\n", h.describe());
        }
        if let Some(k) = &self.killed_at_stop {
            out += &format!("last stop:    {k}\n");
        }
        if let Some(v) = &self.verification {
            out += &format!("verify:       {}\n", v.summary());
        }
        for j in &self.failed_jobs {
            out += &format!(
                "job failed:   {}: {} at {}{}; `deploy logs --job {}` shows its output\n",
                j.job,
                j.result,
                j.started_at,
                j.why
                    .as_deref()
                    .map(|w| format!(" ({w})"))
                    .unwrap_or_default(),
                j.job
            );
        }
        out + &self.replication_text()
    }

    fn replication_text(&self) -> String {
        let mut out = String::new();
        if let Some(dbs) = &self.replication {
            if dbs.is_empty() {
                out += "replication:  no database in shared/ yet\n";
            }
            for d in dbs {
                let behind = d
                    .behind_ms
                    .map(|ms| format!(", last sync {}ms ago", ms))
                    .unwrap_or_default();
                out += &format!("replication:  {}: {}{behind}\n", d.database, d.status);
            }
        }
        out
    }
}

impl Node<'_> {
    pub fn history_report(&self, n: usize) -> Result<History> {
        self.require_setup()?;
        let state = self.load_state()?;
        Ok(History {
            app: self.config.app.clone(),
            environment: self.env_name.clone(),
            events: state.events.iter().rev().take(n).cloned().collect(),
        })
    }

    pub fn releases_report(&self) -> Result<Releases> {
        self.require_setup()?;
        let state = self.load_state()?;
        let mut on_disk = self.releases_on_disk()?;
        let current = self.current()?;
        on_disk
            .sort_by_key(|v| std::cmp::Reverse(state.releases.get(v).map(|r| r.seq).unwrap_or(0)));
        let now = self.schema_now().ok();
        let releases = on_disk
            .iter()
            .map(|v| {
                let r = state.releases.get(v);
                let left = crate::node::snapshot::latest(&self.layout.snapshots(v), Kind::Left)
                    .ok()
                    .flatten();
                let then = left.as_ref().and_then(|l| l.manifest.schemas.as_ref());
                ReleaseRow {
                    version: v.clone(),
                    current: current.as_deref() == Some(v),
                    outcome: outcome_word(r.map(|r| &r.outcome)).into(),
                    created_at: r.map(|r| r.created_at.clone()),
                    last_live_at: r.and_then(|r| r.deployed_at.clone()),
                    schema_changed: then
                        .zip(now.as_ref())
                        .map(|(then, now)| !schema::diff(then, now).is_empty()),
                    snapshot_bytes: left.as_ref().map(|l| l.bytes()),
                    snapshot_method: left.as_ref().and_then(|l| l.manifest.method),
                    snapshot_at: left.map(|l| l.stamp),
                }
            })
            .collect();
        Ok(Releases {
            app: self.config.app.clone(),
            environment: self.env_name.clone(),
            current,
            releases,
        })
    }

    pub fn status_report(&self) -> Result<Status> {
        let rt = self.runtime();
        self.require_setup()?;
        let state = self.load_state()?;
        let current = self.current()?;
        let name = rt.unit_name();
        let unit = match Systemd::connect().and_then(|s| s.state(&name)) {
            Ok(s) => UnitStatus {
                name,
                active: s.active.to_string(),
                sub: s.sub,
                error: None,
            },
            Err(e) => UnitStatus {
                name,
                active: "unknown".into(),
                sub: "unknown".into(),
                error: Some(format!("{e:#}")),
            },
        };
        let url = health::url(self.env.port, &self.config.health.path);
        let health = match health::probe(&url, Duration::from_secs(2)) {
            Ok(s) => HealthStatus {
                url,
                status: Some(s),
                error: None,
            },
            Err(e) => HealthStatus {
                url,
                status: None,
                error: Some(e.to_string()),
            },
        };
        Ok(Status {
            app: self.config.app.clone(),
            environment: self.env_name.clone(),
            host: self.env.host.clone(),
            path: self.layout.root.display().to_string(),
            live_since: current
                .as_deref()
                .and_then(|c| state.releases.get(c))
                .and_then(|r| r.deployed_at.clone()),
            current,
            unit,
            health,
            last: state.events.last().cloned(),
            interrupted: self.swap_report()?,
            killed_at_stop: self.killed_at_stop(),
            verification: self.data().last_verification(),
            replication: self.replication().status(),
            failed_jobs: self.failed_jobs(),
            stopped: rt.stopped_by_hand(),
            held: self.held_by_hand()?,
        })
    }
}
