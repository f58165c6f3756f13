//! `deploy setup` on a node whose app still runs under the names of an earlier deploy
//! (`<app>.service`, the container `<app>`, `localhost/<app>:<tag>`, `<app>-gap.service`, the
//! router `<app>-<env>`): everything moves to the one naming scheme (`names`), and the app moves
//! inside a gap (the old unit stops before the new one starts), so two copies of it never run on
//! one database.

use super::Node;
use crate::names::legacy;
use crate::node::unit;
use crate::sys::{fsx, podman, systemd::Systemd};
use anyhow::{Context, Result};
use std::time::Duration;

impl Node<'_> {
    /// The legacy unit of this app in this environment, if its file is there: it names this
    /// environment's directory (another environment of the app had the same unit name).
    fn legacy_unit(&self) -> Option<String> {
        let rt = self.runtime();
        let name = legacy::unit(&self.config.app);
        let text = std::fs::read_to_string(rt.user_unit_dir().join(&name)).ok()?;
        let ours = format!("{}/current/", self.layout.root.display());
        (text.contains(&ours) && name != rt.unit_name()).then_some(name)
    }

    /// Whether the app still runs under its legacy unit (see [`Node::move_legacy_app`]).
    pub(crate) fn has_legacy_app(&self) -> bool {
        self.legacy_unit().is_some()
    }

    /// Before the new units are written: a legacy gap server of this environment lets go of
    /// its port.
    pub(crate) fn remove_legacy_gap_server(&self, systemd: &Systemd) -> Result<()> {
        let rt = self.runtime();
        let gap = legacy::gap_unit(&self.config.app);
        let ours = format!("--control {}", self.layout.meta().display());
        let text = std::fs::read_to_string(rt.user_unit_dir().join(&gap)).unwrap_or_default();
        if !text.contains(&ours) {
            return Ok(());
        }
        self.ui.step(
            &format!("Removing {gap} (now {})", self.names().gap_unit()),
            || systemd.remove_unit(&rt.user_unit_dir(), &gap, Duration::from_secs(30)),
        )
    }

    /// After the app's router is live under its new name: the legacy router's file goes (two
    /// routers with one rule would split the traffic, one of them not switched in a gap).
    pub(crate) fn remove_legacy_router(&self, t: &crate::config::Traefik) -> Result<()> {
        let dir = crate::sys::fsx::expand_home(&t.dynamic_dir, &self.home)?;
        let old = dir.join(format!(
            "{}.yaml",
            legacy::router(&self.config.app, &self.env_name)
        ));
        let ours = format!(
            "Written by deploy for {} ({})",
            self.config.app, self.env_name
        );
        let text = std::fs::read_to_string(&old).unwrap_or_default();
        if old.file_name() == Some(std::ffi::OsStr::new(&self.names().dynamic_file()))
            || !text.contains(&ours)
        {
            return Ok(());
        }
        std::fs::remove_file(&old).with_context(|| format!("cannot remove {}", old.display()))?;
        fsx::sync_dir(&dir)
    }

    /// After the new units are written: every release's image is tagged with its new name and
    /// its `release.env` names it, then, in a gap, the legacy unit stops and goes, and the new
    /// one starts and is health-checked.
    pub(crate) fn move_legacy_app(&self, systemd: &Systemd) -> Result<()> {
        let rt = self.runtime();
        let front = self.front();
        let Some(old) = self.legacy_unit() else {
            return Ok(());
        };
        let new = rt.unit_name();
        self.ui.step(
            &format!(
                "Tagging the releases' images as {}",
                self.names().image_repository()
            ),
            || self.retag_images(),
        )?;
        let router = front.router()?;
        front.in_gap(router.as_ref(), || {
            self.ui
                .step(&format!("Moving the app from {old} to {new}"), || {
                    systemd.remove_unit(&rt.user_unit_dir(), &old, rt.stop_timeout())?;
                    if self.current()?.is_some() {
                        rt.start_healthy(systemd, &new)?;
                    }
                    Ok(())
                })
        })
    }

    /// `localhost/<app>:<tag>` becomes `localhost/<app>_<env>:<tag>` for every release, in
    /// Podman, in each release's `release.env` and in the state.
    fn retag_images(&self) -> Result<()> {
        let rt = self.runtime();
        let mut state = self.load_state()?;
        let old_repo = format!("{}:", legacy::image_repository(&self.config.app));
        for version in self.releases_on_disk()? {
            let new = rt.image(&version);
            let old = state
                .releases
                .get(&version)
                .map(|r| r.image.clone())
                .filter(|i| i.starts_with(&old_repo));
            if let Some(old) = &old {
                if podman::image_exists(old)? {
                    podman::tag(old, &new)?;
                }
            }
            let env_file = self.layout.release(&version).join(".deploy/release.env");
            if env_file.exists() {
                let spec = rt.unit_spec();
                let vars = std::path::Path::new(&spec.release_vars(&version))
                    .exists()
                    .then(|| spec.current_vars());
                let text = unit::release_env(
                    &self.config.app,
                    &version,
                    &new,
                    vars.as_deref(),
                    &self.run_settings(),
                );
                fsx::write_atomic(&env_file, text.as_bytes(), 0o600)?;
            }
            if let Some(r) = state.releases.get_mut(&version) {
                r.image = new;
            }
        }
        self.save_state(&state)
    }
}
