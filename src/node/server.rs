//! `deploy server [ENV]`: one view of the server: every app of the node user (from the apps'
//! records, and from their units for an app set up before deploy kept records), with its live
//! version and since when, its unit, health, ports, router, replication, last verification and
//! the disk its releases, snapshots and data use; and the managed Traefik they share. As text,
//! or one JSON document with `--json` (fields are added, never renamed or removed).

use crate::front::shared::{AppRecord, Registry};
use crate::names::Names;
use crate::node::data::verify::Verification;
use crate::node::layout::Layout;
use crate::node::state::State;
use crate::node::status::{HealthStatus, UnitStatus};
use crate::node::Node;
use crate::sys::{health, systemd::Systemd};
use anyhow::Result;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct ServerReport {
    /// The node user's home directory.
    pub home: String,
    /// The Traefik deploy manages for the user (`traefik.manage`), if there is one.
    pub traefik: Option<TraefikStatus>,
    /// By app and environment.
    pub apps: Vec<ServerApp>,
}

#[derive(Debug, Serialize)]
pub struct TraefikStatus {
    pub unit: UnitStatus,
    /// Its static config, and what is in it.
    pub config: String,
    pub api: Option<String>,
    /// Name -> address.
    pub entrypoints: BTreeMap<String, String>,
    pub resolvers: Vec<String>,
    /// The apps that ask for it (`app (env)`).
    pub apps: Vec<String>,
    /// What in the apps' requests does not go together (apps set up before deploy shared
    /// Traefik), if anything, as `app: conflict`: that app's next `deploy setup` says what to do.
    pub conflicts: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ServerApp {
    pub app: String,
    pub environment: String,
    pub path: String,
    pub current: Option<String>,
    pub live_since: Option<String>,
    pub unit: UnitStatus,
    /// The health check's answer (none for an app seeded from its units: its path is unknown).
    pub health: Option<HealthStatus>,
    pub port: u16,
    pub gap_port: Option<u16>,
    /// Its router's rule and entry points, with Traefik in front.
    pub rule: Option<String>,
    pub entrypoints: Vec<String>,
    /// With `replicate:`: the state of its Litestream unit (`active`, `failed`...).
    pub replication: Option<String>,
    /// With `replicate:`: its last `deploy verify`.
    pub verification: Option<Verification>,
    pub disk: Disk,
    /// A preview (`ENV/NAME`): what it is a preview of, its data, when it expires.
    pub preview: Option<PreviewOf>,
    /// Read from its units: set up before deploy kept records (its next setup writes one).
    pub seeded: bool,
    /// What could not be read (its state file...).
    pub errors: Vec<String>,
}

/// What a preview is, read from its record.
#[derive(Debug, Serialize)]
pub struct PreviewOf {
    pub of: String,
    pub name: String,
    pub data_from: Option<String>,
    pub expires: String,
}

impl PreviewOf {
    fn read(r: &AppRecord) -> Option<PreviewOf> {
        crate::names::split_preview(&r.env)?;
        let record = crate::node::preview::Record::read(Path::new(&r.path)).ok()??;
        Some(PreviewOf {
            data_from: record.data.as_ref().map(|d| d.said()),
            of: record.from,
            name: record.name,
            expires: record.expires,
        })
    }
}

/// Bytes on disk (blocks, each hard-linked file once).
#[derive(Debug, Default, Serialize)]
pub struct Disk {
    /// `releases/`, but the snapshots in it.
    pub releases: u64,
    /// The data snapshots kept with releases, and what restores replaced (`.deploy/replaced/`).
    pub snapshots: u64,
    /// `shared/`.
    pub data: u64,
}

impl Node<'_> {
    /// `deploy server`: see the module's doc. Reads only.
    pub fn server_report(&self) -> Result<ServerReport> {
        let registry = Registry::load(&self.home)?;
        let systemd = Systemd::connect().map_err(|e| format!("{e:#}"));
        let units = self.runtime().user_unit_dir();
        let apps = registry
            .records
            .iter()
            .map(|r| app_status(r, &systemd, &units))
            .collect();
        Ok(ServerReport {
            home: self.home.display().to_string(),
            traefik: traefik_status(&self.home, &registry, &systemd),
            apps,
        })
    }
}

/// A unit's state as `deploy status` shows it.
fn unit_status(systemd: &Result<Systemd, String>, name: &str) -> UnitStatus {
    let state = systemd
        .as_ref()
        .map_err(|e| e.clone())
        .and_then(|s| s.state(name).map_err(|e| format!("{e:#}")));
    match state {
        Ok(s) => UnitStatus {
            name: name.into(),
            active: s.active.to_string(),
            sub: s.sub,
            error: None,
        },
        Err(e) => UnitStatus {
            name: name.into(),
            active: "unknown".into(),
            sub: "unknown".into(),
            error: Some(e),
        },
    }
}

/// One app, read from its directory and its units.
fn app_status(r: &AppRecord, systemd: &Result<Systemd, String>, units: &Path) -> ServerApp {
    let layout = Layout::new(&r.path);
    let names = Names::new(&r.app, &r.env);
    let mut errors = Vec::new();
    let current = std::fs::read_link(layout.current())
        .ok()
        .and_then(|t| Some(t.file_name()?.to_string_lossy().into_owned()));
    let state = State::of(&layout)
        .map_err(|e| errors.push(format!("{e:#}")))
        .ok();
    let live_since = current
        .as_ref()
        .and_then(|c| state?.releases.get(c)?.deployed_at.clone());
    let health = r.health_path.as_ref().map(|p| {
        let url = health::url(r.port, p);
        match health::probe(&url, Duration::from_secs(2)) {
            Ok(s) => HealthStatus {
                url,
                status: Some(s),
                error: None,
            },
            Err(e) => HealthStatus {
                url,
                status: None,
                error: Some(e),
            },
        }
    });
    let replication = units
        .join(names.replication_unit())
        .exists()
        .then(|| unit_status(systemd, &names.replication_unit()).active);
    let verification =
        std::fs::read_to_string(layout.meta().join(crate::node::data::verify::RESULT_FILE))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
    ServerApp {
        app: r.app.clone(),
        environment: r.env.clone(),
        path: r.path.clone(),
        current,
        live_since,
        unit: unit_status(systemd, &names.unit()),
        health,
        port: r.port,
        gap_port: r.gap_port,
        rule: r.traefik.as_ref().map(|t| t.rule.clone()),
        entrypoints: r
            .traefik
            .as_ref()
            .map(|t| t.router_entrypoints.clone())
            .unwrap_or_default(),
        replication,
        verification,
        disk: disk_use(&layout),
        preview: PreviewOf::read(r),
        seeded: r.seeded,
        errors,
    }
}

/// The managed Traefik: its unit, what its static config has, which apps ask for it.
fn traefik_status(
    home: &Path,
    registry: &Registry,
    systemd: &Result<Systemd, String>,
) -> Option<TraefikStatus> {
    let path = crate::front::managed_static_config(home);
    let text = std::fs::read_to_string(&path).ok()?;
    let config: serde_json::Value = yaml_serde::from_str(&text).unwrap_or_default();
    let mut entrypoints: BTreeMap<String, String> = config["entryPoints"]
        .as_object()
        .map(|eps| {
            eps.iter()
                .filter_map(|(n, e)| Some((n.clone(), e["address"].as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let api = entrypoints.remove("traefik").map(|a| format!("http://{a}"));
    // As setup merges: the apps' own requests first, then what was seeded.
    let (own, seeded): (Vec<&AppRecord>, Vec<&AppRecord>) =
        registry.records.iter().partition(|r| !r.seeded);
    let all: Vec<&AppRecord> = own.into_iter().chain(seeded).collect();
    let (merged, conflicts) = crate::front::shared::merge_leaving_out(&all);
    let apps = merged.map(|m| m.apps).unwrap_or_default();
    Some(TraefikStatus {
        unit: unit_status(systemd, crate::front::traefik::TRAEFIK_UNIT_NAME),
        config: path.display().to_string(),
        api,
        entrypoints,
        resolvers: config["certificatesResolvers"]
            .as_object()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default(),
        apps,
        conflicts,
    })
}

/// What the app's releases, snapshots and data take on disk.
fn disk_use(layout: &Layout) -> Disk {
    let mut seen = HashSet::new();
    let mut disk = Disk::default();
    let releases = layout.releases();
    for (path, bytes) in files(&releases, &mut seen) {
        let rel = path.strip_prefix(&releases).unwrap_or(&path);
        let mut parts = rel.components().skip(1).map(|c| c.as_os_str());
        let snapshot = parts.next() == Some(crate::node::layout::RELEASE_META.as_ref())
            && parts.next() == Some("snapshots".as_ref());
        match snapshot {
            true => disk.snapshots += bytes,
            false => disk.releases += bytes,
        }
    }
    disk.snapshots += files(&layout.meta().join("replaced"), &mut seen)
        .map(|(_, b)| b)
        .sum::<u64>();
    disk.data = files(&layout.shared(), &mut seen).map(|(_, b)| b).sum();
    disk
}

/// Every file and directory under `dir` (no symlink followed) not `seen` yet, with the bytes
/// it takes.
fn files<'a>(
    dir: &Path,
    seen: &'a mut HashSet<(u64, u64)>,
) -> impl Iterator<Item = (std::path::PathBuf, u64)> + 'a {
    use std::os::unix::fs::MetadataExt;
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .flatten()
        .filter_map(move |e| {
            let m = e.metadata().ok()?;
            let new = !m.file_type().is_symlink() && seen.insert((m.dev(), m.ino()));
            new.then(|| (e.into_path(), m.blocks() * 512))
        })
}

/// `12.3 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{value:.1} {}", units[unit]),
    }
}

impl ServerReport {
    pub fn text(&self) -> String {
        let mut out = String::new();
        if let Some(t) = &self.traefik {
            out += &t.text();
        }
        for a in &self.apps {
            out += &a.text();
        }
        if self.apps.is_empty() {
            out += "no app of this user is set up on this server\n";
        }
        out
    }
}

impl TraefikStatus {
    fn text(&self) -> String {
        let eps: Vec<String> = self
            .entrypoints
            .iter()
            .map(|(n, a)| format!("{n} {a}"))
            .collect();
        let mut out = format!(
            "Traefik ({}: {}): API {}, entry points {}\n",
            self.unit.name,
            self.unit.active,
            self.api.as_deref().unwrap_or("-"),
            eps.join(", ")
        );
        if !self.resolvers.is_empty() {
            out += &format!("  resolvers:    {}\n", self.resolvers.join(", "));
        }
        out += &format!("  serves:       {}\n", self.apps.join(", "));
        for c in &self.conflicts {
            out += &format!("  CONFLICT:     {c}\n");
        }
        out + "\n"
    }
}

/// One line of an app in `deploy server`: `  key:         value`.
fn line(k: &str, v: String) -> String {
    format!("  {:<13} {v}\n", format!("{k}:"))
}

impl ServerApp {
    fn text(&self) -> String {
        let out = format!("{} ({})  {}\n", self.app, self.environment, self.path);
        out + &self.running_text() + &self.setup_text() + "\n"
    }

    /// What runs: the preview it is, the live release, the unit, the health check.
    fn running_text(&self) -> String {
        let mut out = String::new();
        if let Some(p) = &self.preview {
            out += &line(
                "preview",
                format!(
                    "of {}, data {}, expires {}",
                    p.of,
                    p.data_from.as_deref().unwrap_or("(none yet)"),
                    p.expires
                ),
            );
        }
        out += &line(
            "live",
            match (&self.current, &self.live_since) {
                (Some(c), Some(s)) => format!("{c} since {s}"),
                (Some(c), None) => c.clone(),
                (None, _) => "(none)".into(),
            },
        );
        let u = &self.unit;
        out += &line(
            "unit",
            match &u.error {
                Some(e) => format!("{}: unknown: {e}", u.name),
                None => format!("{}: {} ({})", u.name, u.active, u.sub),
            },
        );
        if let Some(h) = &self.health {
            out += &line(
                "health",
                match h.status {
                    Some(s) => format!("{}: HTTP {s}", h.url),
                    None => format!(
                        "{}: no answer ({})",
                        h.url,
                        h.error.as_deref().unwrap_or("-")
                    ),
                },
            );
        }
        out
    }

    /// How it is set up: ports, router, replication, verify, disk, and what went wrong.
    fn setup_text(&self) -> String {
        let mut out = String::new();
        let gap = self
            .gap_port
            .map(|g| format!(", gap {g}"))
            .unwrap_or_default();
        out += &line("ports", format!("{}{gap}", self.port));
        if let Some(rule) = &self.rule {
            out += &line(
                "router",
                format!("{rule} on {}", self.entrypoints.join(", ")),
            );
        }
        if let Some(r) = &self.replication {
            out += &line("replication", r.clone());
        }
        if let Some(v) = &self.verification {
            out += &line("verify", v.summary());
        }
        let d = &self.disk;
        out += &line(
            "disk",
            format!(
                "releases {}, snapshots {}, data {}",
                bytes(d.releases),
                bytes(d.snapshots),
                bytes(d.data)
            ),
        );
        if self.seeded {
            out += &line(
                "note",
                "read from its units (set up before deploy kept records: its next `deploy setup` \
                 writes one)"
                    .into(),
            );
        }
        for e in &self.errors {
            out += &line("error", e.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(10 << 20), "10.0 MiB");
    }

    #[test]
    fn disk_use_splits_releases_snapshots_and_data_and_counts_a_hard_link_once() {
        let root = std::env::temp_dir().join(format!("deploy-disk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let l = Layout::new(&root);
        let snaps = l.snapshots("v1");
        for d in [&l.release("v2"), &snaps, &l.shared()] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(l.release("v1").join("app"), vec![1u8; 64 << 10]).unwrap();
        std::fs::hard_link(l.release("v1").join("app"), l.release("v2").join("app")).unwrap();
        std::fs::write(snaps.join("db.sqlite"), vec![2u8; 128 << 10]).unwrap();
        std::fs::write(l.shared().join("db.sqlite"), vec![3u8; 32 << 10]).unwrap();
        let d = disk_use(&l);
        assert!(d.releases >= 64 << 10 && d.releases < 96 << 10, "{d:?}");
        assert!(d.snapshots >= 128 << 10 && d.snapshots < 160 << 10, "{d:?}");
        assert!(d.data >= 32 << 10 && d.data < 64 << 10, "{d:?}");
        std::fs::remove_dir_all(root).unwrap();
    }
}
