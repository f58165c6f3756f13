//! `deploy check [ENV]`: the config, the artifacts and, with ENV, what the node needs, without
//! changing anything. Every check runs and shows its outcome; the command fails if any did.

use crate::node::Node;
use crate::sys::systemd::Systemd;
use anyhow::Result;
use std::time::Duration;

/// Runs one check and shows its outcome (the name, then ok or why not); counts the failures.
type Check<'c> = dyn FnMut(&str, &dyn Fn() -> Result<()>) + 'c;

impl Node<'_> {
    pub fn check(&self) -> Result<()> {
        let mut failed = 0;
        let mut check = |name: &str, f: &dyn Fn() -> Result<()>| {
            if let Err(e) = self.ui.step(name, f) {
                self.ui.warn(&format!("{e:#}"));
                failed += 1;
            }
        };
        self.check_system(&mut check);
        self.check_services(&mut check);
        if let Some(note) = self.snapshot_method_note() {
            self.ui.info(&note);
        }
        if !self.config.jobs.is_empty() {
            check("Checking the jobs' schedules (systemd-analyze)", &|| {
                self.check_schedules()
            });
        }
        // A conflict with another app of the user is a config error (exit 3).
        let others = self.ui.step(
            "Checking the other apps of this user (ports, Traefik)",
            || self.front().check_other_apps(),
        );
        if let Err(e) = &others {
            self.ui.warn(&format!("{e:#}"));
            failed += 1;
        }
        if let Some(said) = self.killed_at_stop() {
            self.ui.warn(&said);
        }
        self.say_set_up()?;
        if failed > 0 {
            let e = anyhow::anyhow!("{failed} check(s) failed on {}", self.env_name);
            return Err(match others {
                Err(_) => crate::exit::with(crate::exit::Code::Config, e),
                Ok(()) => e,
            });
        }
        self.ui.done(
            &format!("{} is ready for {}", self.env_name, self.config.app),
            serde_json::json!({"action": "check", "environment": self.env_name}),
        );
        Ok(())
    }

    /// Podman (its storage, its init), rsync, the systemd user manager and the app's port.
    fn check_system(&self, check: &mut Check) {
        let rt = self.runtime();
        check("Checking podman", &|| {
            crate::sys::podman::check_runtime(false).map(|_| ())
        });
        check("Checking Podman's storage", &|| rt.check_storage());
        if self.config.container.init {
            check("Checking podman's init (container.init)", &|| {
                crate::sys::podman::init_binary(&self.home).map(|_| ())
            });
        }
        if !self.config.container.mounts.is_empty() {
            self.say_volume_labels();
        }
        check("Checking rsync", &crate::sys::rsync::check_installed);
        let systemd = Systemd::connect();
        check("Connecting to the systemd user manager", &|| {
            systemd
                .as_ref()
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!("{e:#}"))
        });
        if let Ok(s) = &systemd {
            check(&format!("Checking port {}", self.env.port), &|| {
                self.check_port(s, self.env.port, &rt.unit_name())
            });
        }
    }

    /// What the config asks for beside the app: Traefik's API, Litestream, verify's schedule.
    fn check_services(&self, check: &mut Check) {
        if let Some(t) = &self.config.traefik {
            check(&format!("Checking Traefik's API at {}", t.api), &|| {
                crate::front::traefik::Api::new(&t.api).ping(Duration::from_secs(2))
            });
        }
        if self.config.replicate.is_some() {
            check("Checking litestream (replicate:)", &|| {
                crate::node::replicate::litestream_bin().map(|_| ())
            });
        }
        if let Some(schedule) = &self.config.verify.schedule {
            check("Checking verify.schedule", &|| {
                crate::sys::systemd::check_calendar(schedule)
            });
        }
    }

    /// How snapshots are taken in the gap on this file system (`backup: snapshot`, once set up).
    fn snapshot_method_note(&self) -> Option<String> {
        if self.config.backup != crate::config::Backup::Snapshot || !self.layout.shared().is_dir() {
            return None;
        }
        let method =
            crate::node::snapshot::clone_method(&self.layout.shared(), &self.layout.releases());
        Some(format!(
            "   snapshots in the gap: {}",
            match method {
                crate::node::snapshot::Method::Clone => {
                    "reflink clones (the gap does not grow with the database)"
                }
                _ => {
                    "copies made before the stop and brought up to date in the gap from the \
                     -wal (WAL databases: the gap grows with the writes since the copy); \
                     other databases copied in the gap, about 2 ms per MB (this file system \
                     has no reflinks: XFS or btrfs would)"
                }
            }
        ))
    }

    /// Whether the app directory is set up, and what is live there.
    fn say_set_up(&self) -> Result<()> {
        let set_up = self.layout.releases().is_dir();
        self.ui.info(&format!(
            "   {}: {}",
            self.layout.root.display(),
            if set_up {
                format!(
                    "set up, live: {}",
                    self.current()?.unwrap_or_else(|| "nothing yet".into())
                )
            } else {
                format!("not set up yet: `deploy setup {}`", self.env_name)
            }
        ));
        Ok(())
    }

    /// Whether the app's volumes are labelled for SELinux, the live release's included.
    fn say_volume_labels(&self) {
        let live = std::fs::read_to_string(self.layout.current_release_env()).ok();
        let (said, fine) =
            volume_labels_said(crate::sys::selinux::mode(), live.as_deref(), &self.env_name);
        match fine {
            true => self.ui.info(&said),
            false => self.ui.warn(&said),
        }
    }
}

/// What `deploy check` says of the app's volumes and SELinux (`mode`), given the live
/// release's `release.env`; `false` when the live release mounts them unlabelled where SELinux
/// needs labels. Pure.
pub fn volume_labels_said(
    mode: Option<crate::sys::selinux::Mode>,
    live: Option<&str>,
    env: &str,
) -> (String, bool) {
    let Some(mode) = mode else {
        return (
            "   volumes: not labelled (SELinux is not enabled here: no label needed)".into(),
            true,
        );
    };
    let mode = mode.as_str();
    let unlabelled = live.map(crate::node::unit::unlabelled_volumes);
    match unlabelled.filter(|u| !u.is_empty()) {
        None => (
            format!(
                "   volumes: labelled for the app's containers (SELinux is {mode} here: mounted \
                 with :z)"
            ),
            true,
        ),
        Some(u) => (
            format!(
                "SELinux is {mode} here, but the live release mounts {} without a label (it was \
                 made before deploy labelled them): the app may be denied its files; \
                 `deploy release {env}` labels them (:z)",
                u.join(", ")
            ),
            false,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::selinux::Mode;

    #[test]
    fn check_says_whether_the_volumes_are_labelled() {
        let old = "DEPLOY_ARGS=--volume /srv/a/shared/data:/data\n";
        let new = "DEPLOY_ARGS=--volume /srv/a/shared/data:/data:z\n";
        let (said, fine) = volume_labels_said(None, Some(old), "prod");
        assert!(
            fine && said.contains("not labelled (SELinux is not enabled"),
            "{said}"
        );
        for live in [None, Some(new)] {
            let (said, fine) = volume_labels_said(Some(Mode::Enforcing), live, "prod");
            assert!(
                fine && said.contains("labelled for the app's containers (SELinux is enforcing")
            );
        }
        let (said, fine) = volume_labels_said(Some(Mode::Permissive), Some(old), "prod");
        assert!(!fine, "{said}");
        assert!(
            said.contains("mounts /srv/a/shared/data:/data without a label"),
            "{said}"
        );
        assert!(said.contains("`deploy release prod` labels them"), "{said}");
    }
}
