//! Previews on the server: `deploy preview up` (its ports, its directory, its data), `ls`,
//! `down` and `prune`.
//!
//! A preview `ENV/NAME` is an environment of its own ([`crate::config::preview`]): the
//! commands of an environment act on it as on any other. What is its own:
//!
//! ```text
//! ~/.local/share/deploy/apps/<app>_<env>_preview_<name>.json   its record: its ports (the
//!                                                               one source of them)
//! <ENV path>.preview-<name>/                                    its directory, as an
//! <ENV path>.preview-<name>/.deploy/preview.json                environment's, and what it
//!                                                               is a preview of, since when,
//!                                                               until when, its data's origin
//! ```
//!
//! Its ports are chosen under the lock of the node user's app records, as the first pair of
//! `preview.ports` that no app's record holds and nothing listens on; `preview.max` previews of
//! one environment at most.

pub mod copy;
pub mod data;
pub mod timer;

use crate::config::{Config, PortRange};
use crate::front::shared::{self, AppRecord, Registry};
use crate::node::layout::{self, Layout};
use crate::sys::fsx;
use crate::ui::Ui;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A preview's own record, in its `.deploy/`.
pub const FILE: &str = "preview.json";

/// What a preview is, kept in its directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The environment it is a preview of.
    pub from: String,
    pub name: String,
    pub created: String,
    /// Its last `deploy preview up`.
    pub updated: String,
    /// When `deploy preview prune` takes it down: its last `up` and `preview.ttl`.
    pub expires: String,
    /// Where its data came from, and when.
    #[serde(default)]
    pub data: Option<DataOrigin>,
    /// New data on its way in (copied, not in `shared/` yet: [`data`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<DataOrigin>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataOrigin {
    /// The environment's data it is a copy of.
    pub environment: String,
    /// When it was copied.
    pub copied: String,
    /// The databases copied (paths under shared/).
    pub databases: Vec<String>,
    /// Restored from the environment's replica as of this time (`--at`), not copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

impl DataOrigin {
    /// `prod at TIME`, or `prod's replica as of TIME`.
    pub fn said(&self) -> String {
        match &self.at {
            Some(at) => format!("{}'s replica as of {at}", self.environment),
            None => format!("{} at {}", self.environment, self.copied),
        }
    }
}

impl Record {
    pub fn read(root: &Path) -> Result<Option<Record>> {
        let path = Layout::new(root).meta().join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("{} is not a preview's record", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    fn write(&self, root: &Path) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        fsx::write_atomic(&Layout::new(root).meta().join(FILE), &json, 0o600)
    }

    /// Whether it is past its time at `now`.
    pub fn expired(&self, now: SystemTime) -> bool {
        humantime::parse_rfc3339(&self.expires).is_ok_and(|t| t <= now)
    }
}

fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The preview's ports from its record into its config: what every command on a preview
/// does on the server before anything else.
pub fn with_ports(config: &mut Config, env: &str, home: &Path) -> Result<()> {
    let of = config.preview_of.clone().context("not a preview")?;
    let Some(r) = shared::record(home, &config.app, env)? else {
        bail!(
            "there is no preview {} of {} on this server: `deploy preview up {} --from {}` makes \
             it (`deploy preview ls {}` lists those there are)",
            of.name,
            of.from,
            of.name,
            of.from,
            of.from
        );
    };
    set_ports(config, env, r.port, r.gap_port.unwrap_or(r.port + 1));
    Ok(())
}

fn set_ports(config: &mut Config, env: &str, port: u16, gap: u16) {
    if let Some(e) = config.environments.get_mut(env) {
        e.port = port;
        e.gap_port = Some(gap);
    }
}

/// The first pair of `range` that no other app's record holds and `free` says nothing
/// listens on; refused when `from` has `max` previews already. Pure but for `free`.
pub fn choose_ports(
    others: &[&AppRecord],
    (app, from): (&str, &str),
    range: PortRange,
    max: usize,
    free: impl Fn(u16) -> bool,
) -> Result<(u16, u16)> {
    let siblings: Vec<String> = others
        .iter()
        .filter(|r| r.app == app)
        .filter_map(|r| crate::names::split_preview(&r.env))
        .filter(|(f, _)| *f == from)
        .map(|(_, n)| n.to_string())
        .collect();
    if siblings.len() >= max {
        bail!(
            "{from} has {} previews already ({}), preview.max is {max}: take one down first \
             (`deploy preview down NAME --from {from}`)",
            siblings.len(),
            siblings.join(", ")
        );
    }
    let taken: Vec<u16> = others
        .iter()
        .flat_map(|r| r.own_ports().into_iter().chain(r.traefik_ports()))
        .map(|(p, _, _)| p)
        .collect();
    range
        .pairs()
        .find(|(p, g)| !taken.contains(p) && !taken.contains(g) && free(*p) && free(*g))
        .ok_or_else(|| {
            anyhow!(
                "no two free ports are left in preview.ports {range} for a preview of {from}: \
                 widen the range, or take a preview down"
            )
        })
}

/// Whether nothing listens on `port` on 127.0.0.1.
fn bindable(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// What `deploy preview up` does on the server before the preview's setup and release: its
/// ports (chosen once, kept in its record), its directory and record, its new data when it is
/// new, when `fresh` asks or `replica` gives a time (put in by its next swap, [`data`]), and
/// the server's timer that prunes the previews of its environment. Returns whether new data
/// was made.
pub struct Prepare<'a> {
    pub config: &'a mut Config,
    pub env_name: &'a str,
    pub home: &'a Path,
    pub ui: Ui,
    pub lock_wait: Option<Duration>,
    pub fresh: bool,
    /// `--at`: the data from the environment's replica, not a copy.
    pub replica: Option<FromReplica<'a>>,
    /// The environment's resolved config, which the server's prune timer runs with.
    pub prune_config: String,
}

/// `--at`: a preview's data restored from its environment's replica as of a time.
pub struct FromReplica<'a> {
    /// The environment's node (its config has `replicate:`).
    pub node: &'a crate::node::Node<'a>,
    pub at: &'a str,
    /// The env.secret values sent (the replica's credentials), if any.
    pub secrets: Option<&'a Path>,
}

impl Prepare<'_> {
    pub fn run(self) -> Result<bool> {
        let of = self.config.preview_of.clone().context("not a preview")?;
        let env = &self.config.environments[self.env_name];
        let root = crate::sys::fsx::expand_home(&env.path, self.home)?;
        layout::check_root(&root, self.home)
            .map_err(|e| crate::exit::with(crate::exit::Code::Config, e))?;
        let source = crate::sys::fsx::expand_home(&of.from_path, self.home)?.join("shared");
        if !source.is_dir() {
            bail!(
                "{} is not set up on this server ({} is missing): a preview copies its data",
                of.from,
                source.display()
            );
        }
        let l = Layout::new(&root);
        let (port, gap) = self.ui.step(
            &format!(
                "Choosing the ports of {} (preview.ports {})",
                self.env_name, of.ports
            ),
            || self.ports(&root),
        )?;
        self.ui.info(&format!("   port {port}, gap port {gap}"));
        set_ports(self.config, self.env_name, port, gap);
        let _lock = crate::node::lock::acquire(
            &l.lock_file(),
            &format!("deploy preview up {}", self.env_name),
            self.lock_wait,
        )?;
        data::clear_leftovers(&l)?;
        let before = Record::read(&root)?;
        let now = SystemTime::now();
        let waiting = data::pending(&l).is_some();
        let had = before.as_ref().is_some_and(|b| b.data.is_some());
        let copy = self.fresh || self.replica.is_some() || (!had && !waiting);
        let pending = match copy {
            true => Some(self.new_data(&source, &l, &of.from)?),
            false => before
                .as_ref()
                .and_then(|b| b.pending.clone())
                .filter(|_| waiting),
        };
        let record = Record {
            from: of.from.clone(),
            name: of.name.clone(),
            created: before
                .as_ref()
                .map(|b| b.created.clone())
                .unwrap_or_else(|| stamp(now)),
            updated: stamp(now),
            expires: stamp(now + self.config.preview.ttl),
            data: before.and_then(|b| b.data),
            pending,
        };
        record.write(&root)?;
        self.ui.step("Installing the server's prune timer", || {
            timer::install(self.home, &self.config.app, &of.from, &self.prune_config)
        })?;
        Ok(copy)
    }

    /// Its ports: those its record holds, or the first free pair (its record written then).
    fn ports(&self, root: &Path) -> Result<(u16, u16)> {
        let of = self.config.preview_of.as_ref().context("not a preview")?;
        let app = &self.config.app;
        shared::with_records(self.home, |registry: &Registry| {
            if let Some(r) = registry.get(app, self.env_name) {
                fsx::ensure_private_dir(&Layout::new(root).meta())?;
                return Ok((r.port, r.gap_port.unwrap_or(r.port + 1)));
            }
            let path = root.display().to_string();
            let others = registry.others(app, self.env_name, &path);
            let (port, gap) = choose_ports(
                &others,
                (app, &of.from),
                of.ports,
                self.config.preview.max,
                bindable,
            )?;
            // Its directory first: a record whose directory is not there is cleared as stale.
            fsx::ensure_dir(root, 0o755)?;
            fsx::ensure_private_dir(&Layout::new(root).meta())?;
            let record = AppRecord {
                app: app.clone(),
                env: self.env_name.to_string(),
                path,
                port,
                gap_port: Some(gap),
                health_path: Some(self.config.health.path.clone()),
                traefik: None,
                seeded: false,
                updated_at: crate::sys::now(),
            };
            shared::save(self.home, &record)?;
            Ok((port, gap))
        })
    }

    /// ENV's data, copied (or restored from its replica as of `--at`) into the preview's
    /// `.deploy/preview-data.copied`, which replaces any copy that waited there: what the
    /// preview's next swap scrubs and puts in. ENV's files are only read.
    fn new_data(&self, source: &Path, l: &Layout, from: &str) -> Result<DataOrigin> {
        data::drop_all(l)?;
        let incoming = data::Stage::Incoming.dir(l);
        let copy_env = self.config.preview.copy_env;
        let (databases, at) = match &self.replica {
            None => {
                let copied = self.ui.step(
                    &format!(
                        "Copying {from}'s data (SQLite's backup API, read-only, while {from} runs)"
                    ),
                    || copy::copy_shared(source, &incoming, copy_env),
                )?;
                self.ui.info(&format!(
                    "   {} database(s), {} other file(s)",
                    copied.databases.len(),
                    copied.files
                ));
                for s in &copied.skipped {
                    self.ui.detail(&format!("   not copied: {s}"));
                }
                (copied.databases, None)
            }
            Some(r) => {
                let work = l.meta().join(format!(".replica-{}", std::process::id()));
                let got = r.node.download_replica(r.at, r.secrets, (&work, &incoming));
                let _ = std::fs::remove_dir_all(&work);
                let (at, databases) = got?;
                copy::copy_env_file(source, &incoming, copy_env)?;
                (databases, Some(at))
            }
        };
        for d in &self.config.shared.dirs {
            fsx::ensure_dir(&incoming.join(d), 0o755)?;
        }
        for f in &self.config.shared.files {
            let path = incoming.join(f);
            if !path.exists() {
                fsx::write_atomic(&path, b"", 0o600)?;
            }
        }
        copy::sync_tree(&incoming)?;
        fsx::rename_durable(&incoming, &data::Stage::Copied.dir(l))?;
        Ok(DataOrigin {
            environment: from.to_string(),
            copied: stamp(SystemTime::now()),
            databases,
            at,
        })
    }
}

/// One preview, as `deploy preview ls` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Listed {
    pub name: String,
    /// What commands take as its environment (`prod/pr-12`).
    pub environment: String,
    pub from: String,
    pub path: String,
    /// The live release.
    pub version: Option<String>,
    pub url: String,
    pub port: u16,
    pub gap_port: Option<u16>,
    /// `ENV at TIME`, or `ENV's replica as of TIME` (`--at`).
    pub data_from: Option<String>,
    /// New data copied and not in yet (its next swap puts it in), where it came from.
    #[serde(default)]
    pub data_pending: Option<String>,
    pub created: Option<String>,
    pub expires: Option<String>,
    pub expired: bool,
}

/// The previews of `app` on this server (of `from` only, when given), by name.
pub fn list(config: &Config, home: &Path, from: Option<&str>) -> Result<Vec<Listed>> {
    let registry = Registry::load(home)?;
    let now = SystemTime::now();
    let mut out = Vec::new();
    for r in registry.records.iter().filter(|r| r.app == config.app) {
        let Some((f, name)) = crate::names::split_preview(&r.env) else {
            continue;
        };
        if from.is_some_and(|want| want != f) {
            continue;
        }
        let root = PathBuf::from(&r.path);
        let record = Record::read(&root).ok().flatten();
        let version = std::fs::read_link(Layout::new(&root).current())
            .ok()
            .and_then(|t| Some(t.file_name()?.to_string_lossy().into_owned()));
        out.push(Listed {
            name: name.to_string(),
            environment: r.env.clone(),
            from: f.to_string(),
            path: r.path.clone(),
            version,
            url: url(config, name, r.port),
            port: r.port,
            gap_port: r.gap_port,
            data_from: record
                .as_ref()
                .and_then(|x| x.data.as_ref())
                .map(DataOrigin::said),
            data_pending: record
                .as_ref()
                .and_then(|x| x.pending.as_ref())
                .map(DataOrigin::said),
            created: record.as_ref().map(|x| x.created.clone()),
            expires: record.as_ref().map(|x| x.expires.clone()),
            expired: record.as_ref().is_some_and(|x| x.expired(now)),
        });
    }
    out.sort_by(|a, b| (&a.from, &a.name).cmp(&(&b.from, &b.name)));
    Ok(out)
}

/// Where a preview answers: its router's host through Traefik (https with `tls` or ACME, the
/// entry point's port when it is not the scheme's), or its port on the server's loopback.
pub fn url(config: &Config, name: &str, port: u16) -> String {
    let (Some(t), Some(host)) = (&config.traefik, &config.preview.host) else {
        return format!("http://127.0.0.1:{port}/");
    };
    let https = t.acme.is_some()
        || t.tls
            .as_ref()
            .is_some_and(|v| v != &serde_json::Value::Bool(false));
    let (scheme, standard) = match https {
        true => ("https", 443),
        false => ("http", 80),
    };
    let entry_port = t.managed().and_then(|m| {
        t.entrypoints
            .iter()
            .find_map(|e| m.entrypoints.get(e).and_then(|a| crate::config::port_of(a)))
    });
    let at = match entry_port {
        Some(p) if p != standard => format!(":{p}"),
        _ => String::new(),
    };
    format!("{scheme}://{}{at}/", host.replace("{name}", name))
}

/// `deploy preview ls` as text.
pub fn text(listed: &[Listed]) -> String {
    if listed.is_empty() {
        return "no preview\n".into();
    }
    let mut out = format!(
        "  {:<16} {:<14} {:<40} {:<6} {:<32} {}\n",
        "NAME", "VERSION", "URL", "PORT", "DATA FROM", "EXPIRES"
    );
    for l in listed {
        out += &format!(
            "  {:<16} {:<14} {:<40} {:<6} {:<32} {}{}\n",
            l.environment,
            l.version.as_deref().unwrap_or("-"),
            l.url,
            l.port,
            l.data_from.as_deref().unwrap_or("-"),
            l.expires.as_deref().unwrap_or("-"),
            if l.expired { " (expired)" } else { "" }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(app: &str, env: &str, port: u16) -> AppRecord {
        AppRecord {
            app: app.into(),
            env: env.into(),
            path: format!("/srv/{app}-{env}"),
            port,
            gap_port: Some(port + 1),
            health_path: None,
            traefik: None,
            seeded: false,
            updated_at: "now".into(),
        }
    }

    #[test]
    fn ports_are_the_first_free_pair_and_max_is_kept() {
        let range = PortRange::parse("100-109").unwrap();
        let prod = rec("shop", "prod", 98);
        let one = rec("shop", "prod/pr-1", 100);
        let other_app = rec("blog", "prod", 104);
        let others = [&prod, &one, &other_app];
        let all_free = |_| true;
        assert_eq!(
            choose_ports(&others, ("shop", "prod"), range, 5, all_free).unwrap(),
            (102, 103)
        );
        // Something else listens on 102: the next pair that no app holds.
        assert_eq!(
            choose_ports(&others, ("shop", "prod"), range, 5, |p| p != 102).unwrap(),
            (106, 107)
        );
        let e = choose_ports(&others, ("shop", "prod"), range, 1, all_free).unwrap_err();
        assert!(format!("{e}").contains("preview.max is 1"), "{e}");
        // Another environment's previews do not count against this one's max.
        assert!(choose_ports(&others, ("shop", "staging"), range, 1, all_free).is_ok());
        let e = choose_ports(&others, ("shop", "prod"), range, 5, |_| false).unwrap_err();
        assert!(format!("{e}").contains("no two free ports"), "{e}");
    }

    #[test]
    fn a_record_expires_at_its_time() {
        let r = Record {
            from: "prod".into(),
            name: "pr-1".into(),
            created: "2026-01-01T00:00:00Z".into(),
            updated: "2026-01-01T00:00:00Z".into(),
            expires: "2026-01-08T00:00:00Z".into(),
            data: None,
            pending: None,
        };
        let at = |s: &str| humantime::parse_rfc3339(s).unwrap();
        assert!(!r.expired(at("2026-01-07T23:59:59Z")));
        assert!(r.expired(at("2026-01-08T00:00:00Z")));
    }
}
