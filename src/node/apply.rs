//! A release applies its config. What a release runs with (mounts, the app's env files,
//! `init`, the container's port, the stop timeout) travels with it in its own `release.env`
//! ([`unit::RunSettings`]); what belongs to the environment (the host port, the gap server,
//! the shared entries) is compared at every release with what `setup` installed, and what
//! changed is applied before the gap. What only `setup` can apply (a change of `listen`,
//! Traefik added or removed, a socket's port) stops the release before anything changes,
//! naming the change and the command that applies it. A rollback keeps the environment as it
//! is and runs its release with that release's own settings.

use crate::node::{unit, Node};
use crate::sys::{fsx, systemd::Systemd};
use anyhow::{bail, Context, Result};

/// One difference between the config and what is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvChange {
    /// A shared dir or file the config names is made (empty).
    Shared(String),
    /// The app's unit is rewritten (the host port changed: `from` -> `to`).
    Port { from: Option<u16>, to: u16 },
    /// The app's unit is rewritten for another reason (deploy's own version, say).
    Unit,
    /// The gap server is re-pointed (its port, mode, hold, or the app's port).
    GapServer,
    /// Only `deploy setup` applies it: the release stops before anything changes.
    SetupOnly(String),
}

impl EnvChange {
    /// In words, for `--dry-run` and the release's output.
    pub fn describe(&self) -> String {
        match self {
            EnvChange::Shared(p) => format!("shared/{p} is made"),
            EnvChange::Port { from, to } => format!(
                "the app's port {} -> {to}: its unit is rewritten before the gap (the new port \
                 checked free), the health check and Traefik's router follow it",
                from.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
            ),
            EnvChange::Unit => "the app's unit is rewritten before the gap".into(),
            EnvChange::GapServer => "the gap server is re-pointed before the gap".into(),
            EnvChange::SetupOnly(what) => what.clone(),
        }
    }
}

/// The file in `.deploy/` that says the last stop of the app ran into its timeout.
pub(crate) const KILLED_AT_STOP: &str = "killed-at-stop";

/// Said when a stop ran into its timeout. Pure.
pub fn killed_message(timeout: u64, init: bool) -> String {
    let how = if init {
        "handle SIGTERM in the app (with container.init on, a shell entrypoint must `exec` the \
         app: catatonit signals only its child)"
    } else {
        "run it under an init (container.init: true, the default) or handle SIGTERM"
    };
    format!(
        "the app did not stop on SIGTERM within {timeout}s: it was killed; {how}. Every release \
         and rollback waits that long"
    )
}

/// The host port in an installed unit's `--publish 127.0.0.1:PORT:...`. Pure.
fn published_port(unit_text: &str) -> Option<u16> {
    let rest = unit_text.split("--publish 127.0.0.1:").nth(1)?;
    rest.split(':').next()?.parse().ok()
}

impl Node<'_> {
    /// The run settings a release made now gets.
    pub(crate) fn run_settings(&self) -> unit::RunSettings {
        unit::RunSettings::of(&self.runtime().unit_spec())
    }

    /// The health check `version` was made with (its release.env), else this config's.
    pub(crate) fn release_health(&self, version: &str) -> crate::config::Health {
        std::fs::read_to_string(self.layout.release_env(version))
            .ok()
            .and_then(|t| unit::health_of(&t))
            .unwrap_or_else(|| self.config.health.clone())
    }

    /// Releases made before releases carried their run settings get them once: what the
    /// environment's unit ran them with (this config's), so a rollback to one runs as before.
    pub(crate) fn complete_release_envs(&self) -> Result<()> {
        let Ok(entries) = std::fs::read_dir(self.layout.releases()) else {
            return Ok(());
        };
        let run = self.run_settings();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = self.layout.release_env(&name);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            if let Some(done) = unit::with_run_settings(&text, &run) {
                fsx::write_atomic(&path, done.as_bytes(), 0o600)
                    .with_context(|| format!("cannot complete {}", path.display()))?;
            }
        }
        Ok(())
    }

    /// What differs between this config's environment and what is installed. Reads only.
    pub(crate) fn environment_changes(&self) -> Result<Vec<EnvChange>> {
        let rt = self.runtime();
        let mut changes = Vec::new();
        let dir = rt.user_unit_dir();
        let env = &self.env_name;
        let setup =
            format!("run `deploy setup {env}` to apply it (it does so in a gap of its own)");
        let socket_installed = dir.join(self.names().socket_unit()).exists();
        let socket = self.config.listen == crate::config::Listen::Socket;
        if socket != socket_installed {
            changes.push(EnvChange::SetupOnly(format!(
                "listen changed to {}: {setup}",
                if socket { "socket" } else { "publish" }
            )));
        }
        let gap_installed = dir.join(self.names().gap_unit()).exists();
        match (&self.config.traefik, gap_installed) {
            (Some(_), false) => {
                changes.push(EnvChange::SetupOnly(format!("traefik was added: {setup}")))
            }
            (None, true) => changes.push(EnvChange::SetupOnly(format!(
                "traefik was removed: {setup}"
            ))),
            (Some(t), true) => {
                let installed = std::fs::read_to_string(dir.join(self.names().gap_unit()))?;
                if installed != self.front().gap_unit_text(t)? {
                    changes.push(EnvChange::GapServer);
                }
            }
            (None, false) => {}
        }
        let installed = std::fs::read_to_string(rt.unit_path()).unwrap_or_default();
        let wanted = unit::render(&rt.unit_spec())?;
        if installed != wanted {
            let from = published_port(&installed);
            if socket && socket_installed {
                changes.push(EnvChange::SetupOnly(format!(
                    "the app's unit changed (in socket mode, e.g. its port): {setup}"
                )));
            } else if !socket && from != Some(self.env.port) {
                changes.push(EnvChange::Port {
                    from,
                    to: self.env.port,
                });
            } else {
                changes.push(EnvChange::Unit);
            }
        }
        let shared = self.layout.shared();
        for name in self
            .config
            .shared
            .dirs
            .iter()
            .chain(&self.config.shared.files)
        {
            if std::fs::symlink_metadata(shared.join(name)).is_err() {
                changes.push(EnvChange::Shared(name.clone()));
            }
        }
        Ok(changes)
    }

    /// The changes a release will apply; refused (before anything changes) if any needs
    /// `setup`.
    pub(crate) fn check_environment(&self) -> Result<Vec<EnvChange>> {
        let changes = self.environment_changes()?;
        if let Some(EnvChange::SetupOnly(what)) = changes
            .iter()
            .find(|c| matches!(c, EnvChange::SetupOnly(_)))
        {
            bail!(
                "this release's config changes what only setup applies: {what}; nothing was \
                 changed"
            );
        }
        Ok(changes)
    }

    /// Right before the gap of a release: makes the shared entries, rewrites the app's unit (a
    /// new port checked free first) and re-points the gap server. Nothing here stops or starts
    /// the app.
    pub(crate) fn apply_environment(&self, systemd: &Systemd, changes: &[EnvChange]) -> Result<()> {
        let rt = self.runtime();
        let [rewrite, repoint] = self.apply_steps(changes);
        for change in changes {
            self.ui.info(&format!("   applies: {}", change.describe()));
        }
        if changes.iter().any(|c| matches!(c, EnvChange::Shared(_))) {
            self.prepare_shared()?;
        }
        if let Some(EnvChange::Port { to, .. }) =
            changes.iter().find(|c| matches!(c, EnvChange::Port { .. }))
        {
            self.check_port(systemd, *to, &rt.unit_name())?;
        }
        if let Some(label) = rewrite {
            self.ui.step(&label, || {
                let text = unit::render(&rt.unit_spec())?;
                systemd.install_unit(&rt.user_unit_dir(), &rt.unit_name(), &text)
            })?;
        }
        if let Some(label) = repoint {
            let t = self.config.traefik.as_ref().expect("a gap server: traefik");
            self.ui
                .step(&label, || self.front().install_gap_server(systemd, t))?;
        }
        Ok(())
    }

    /// The step lines applying `changes` shows, in order: the unit rewritten, the gap server
    /// re-pointed (each when a change asks for it).
    fn apply_steps(&self, changes: &[EnvChange]) -> [Option<String>; 2] {
        let rewrite = changes
            .iter()
            .any(|c| matches!(c, EnvChange::Port { .. } | EnvChange::Unit));
        [
            rewrite.then(|| format!("Rewriting {}", self.runtime().unit_name())),
            changes
                .contains(&EnvChange::GapServer)
                .then(|| "Re-pointing the gap server".to_string()),
        ]
    }

    /// The step lines applying `changes` shows.
    pub(crate) fn apply_labels(&self, changes: &[EnvChange]) -> Vec<String> {
        self.apply_steps(changes).into_iter().flatten().collect()
    }

    /// What the last stop that ran into its timeout said, with when.
    pub(crate) fn killed_at_stop(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.layout.meta().join(KILLED_AT_STOP)).ok()?;
        let (at, said) = text.trim().split_once(' ')?;
        Some(format!("at {at}: {said}"))
    }

    /// The shared dirs and files the config names, made when missing (files empty, 0600).
    pub(crate) fn prepare_shared(&self) -> Result<()> {
        let shared = self.layout.shared();
        for d in &self.config.shared.dirs {
            fsx::ensure_dir(&shared.join(d), 0o755)?;
        }
        for f in &self.config.shared.files {
            let p = shared.join(f);
            if std::fs::symlink_metadata(&p).is_err() {
                if let Some(parent) = p.parent() {
                    fsx::ensure_dir(parent, 0o755)?;
                }
                fsx::write_atomic(&p, b"", 0o600)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_port_is_read_from_a_unit() {
        assert_eq!(
            published_port("    --publish 127.0.0.1:18080:${DEPLOY_CONTAINER_PORT} \\\n"),
            Some(18080)
        );
        assert_eq!(
            published_port("    --publish 127.0.0.1:9:8080 \\\n"),
            Some(9)
        );
        assert_eq!(published_port("no publish here"), None);
    }
}
