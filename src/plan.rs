//! `--dry-run` for setup, release and rollback: what the command would do, written out (files,
//! command lines, unit and Traefik contents), computed by the same pure functions the command
//! uses, reading the node but changing nothing.

use crate::config::Backup;
use crate::layout::Layout;
use crate::node::Node;
use crate::{podman, traefik, unit, upload};
use anyhow::{anyhow, Result};
use std::fmt::Write;

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    | {l}\n")).collect()
}

impl Node<'_> {
    /// The steps of a swap to `to`, as lines.
    fn swap_lines(&self, to: &str, from: Option<&str>, data: Option<&str>, hooks: bool) -> String {
        let mut out = String::new();
        let unit = self.unit_name();
        if let Some(t) = &self.config.traefik {
            let _ = writeln!(
                out,
                "  gap:      Traefik routes {} to the gap server ({}, {}), confirmed through {}",
                self.config.app,
                self.env.gap_port(),
                t.gap.as_str(),
                t.api
            );
        }
        let _ = writeln!(out, "  stop:     {unit} (over D-Bus, waiting for the job)");
        if let Some(f) = from.filter(|_| self.config.backup == Backup::Snapshot || data.is_some()) {
            let _ = writeln!(
                out,
                "  snapshot: the SQLite databases in {} into releases/{f}/.deploy/snapshots/",
                self.layout.shared().display()
            );
        }
        if let Some(stamp) = data {
            let _ = writeln!(
                out,
                "  restore:  the data {to} left (snapshot {stamp}) into shared/"
            );
        }
        if hooks {
            for h in &self.config.hooks.in_gap {
                let spec = unit::UnitSpec::new(self.config, &self.layout, self.env.port);
                let args = unit::hook_args(&spec, &self.image(to), to, h);
                let _ = writeln!(out, "  in_gap:   podman {}", crate::ssh::sh_join(&args));
            }
        }
        let _ = writeln!(
            out,
            "  switch:   {} -> {} (symlink + rename, directory fsynced)",
            self.layout.current().display(),
            Layout::current_target(to).display()
        );
        let _ = writeln!(out, "  start:    {unit}");
        let _ = writeln!(
            out,
            "  health:   GET {} until 2xx, {} at most; else {}",
            crate::health::url(self.env.port, &self.config.health.path),
            humantime::format_duration(self.config.health.timeout),
            match from {
                Some(f) => format!("{f} is put back the same way"),
                None => "the app is stopped (nothing was live before)".into(),
            }
        );
        if self.config.traefik.is_some() {
            let _ = writeln!(out, "  gap end:  Traefik routes back to the app");
        }
        out
    }

    pub fn setup_plan(&self) -> Result<String> {
        let l = &self.layout;
        let mut out = format!(
            "Plan: setup of {} on {} ({})\n",
            self.config.app,
            self.env_name,
            l.root.display()
        );
        for d in [l.releases(), l.shared(), l.log_dir(), l.meta()] {
            let _ = writeln!(out, "  mkdir:    {}", d.display());
        }
        for d in &self.config.shared.dirs {
            let _ = writeln!(out, "  mkdir:    {}", l.shared().join(d).display());
        }
        for f in &self.config.shared.files {
            let _ = writeln!(
                out,
                "  file:     {} (empty, mode 0600, if missing)",
                l.shared().join(f).display()
            );
        }
        let spec = unit::UnitSpec::new(self.config, l, self.env.port);
        let _ = writeln!(
            out,
            "  unit:     {} (enabled, daemon-reload):",
            self.user_unit_dir().join(self.unit_name()).display()
        );
        out += &indent(&unit::render(&spec)?);
        if let Some(router) = self.router()? {
            let _ = writeln!(
                out,
                "  traefik:  {} (and the gap server unit {}):",
                router.file.display(),
                traefik::gap_unit_name(&self.config.app)
            );
            out += &indent(&traefik::render_dynamic(&router.spec, false)?);
        }
        out += "Dry run: nothing was changed.\n";
        Ok(out)
    }

    pub fn release_plan(&self, version: &str, uploaded: bool) -> Result<String> {
        crate::version::check(version)?;
        let current = self.current()?;
        let target = self.layout.release(version);
        let image = self.image(version);
        let mut out = format!(
            "Plan: release {version} of {} to {} ({}), live now: {}\n",
            self.config.app,
            self.env_name,
            self.layout.root.display(),
            current.as_deref().unwrap_or("nothing")
        );
        if target.exists() {
            let _ = writeln!(
                out,
                "  note:     releases/{version} exists: refused unless --force (never when live)"
            );
        }
        let link_dest = current
            .as_ref()
            .map(|c| self.layout.release(c).display().to_string());
        if uploaded {
            let _ = writeln!(
                out,
                "  upload:   over SSH into {}, --link-dest={}",
                self.layout.incoming(version).display(),
                link_dest.as_deref().unwrap_or("(none: a first release)")
            );
        } else {
            let sources = upload::artifact_sources(self.config, &self.project_dir)?;
            let args = upload::rsync_args(
                &sources,
                &self.layout.incoming(version).display().to_string(),
                link_dest.as_deref(),
            );
            let _ = writeln!(out, "  upload:   rsync {}", crate::ssh::sh_join(&args));
        }
        for e in self
            .config
            .shared
            .dirs
            .iter()
            .chain(&self.config.shared.files)
        {
            let _ = writeln!(
                out,
                "  link:     {e} -> {}",
                Layout::shared_link_target(e).display()
            );
        }
        let _ = writeln!(
            out,
            "  rename:   {} -> {}",
            self.layout.incoming(version).display(),
            target.display()
        );
        let _ = writeln!(
            out,
            "  build:    podman {}",
            crate::ssh::sh_join(&podman::build_args(&target, &image))
        );
        out += &self.swap_lines(version, current.as_deref(), None, true);
        let _ = writeln!(
            out,
            "  prune:    keep {} releases (never the live or the previous one)",
            self.config.keep_releases
        );
        out += "Dry run: nothing was built, uploaded or changed.\n";
        Ok(out)
    }

    pub fn rollback_plan(&self, to: Option<&str>, with_data: bool) -> Result<String> {
        self.require_setup()?;
        let state = self.load_state()?;
        let on_disk = self.releases_on_disk()?;
        let current = self.current()?;
        let target = match to {
            Some(t) => t.to_string(),
            None => current
                .as_deref()
                .and_then(|c| state.previous(&on_disk, c))
                .ok_or_else(|| anyhow!("there is no release to roll back to"))?,
        };
        if !on_disk.contains(&target) {
            return Err(anyhow!("there is no release {target} on {}", self.env_name));
        }
        let stamp = if with_data {
            Some(
                crate::snapshot::latest(&self.layout.snapshots(&target))?
                    .map(|(s, _)| s)
                    .ok_or_else(|| anyhow!("there is no data snapshot of {target}"))?,
            )
        } else {
            None
        };
        let mut out = format!(
            "Plan: rollback of {} on {} to {target}, from {}\n",
            self.config.app,
            self.env_name,
            current.as_deref().unwrap_or("nothing")
        );
        out += &self.swap_lines(&target, current.as_deref(), stamp.as_deref(), false);
        out += "Dry run: nothing was changed.\n";
        Ok(out)
    }
}
