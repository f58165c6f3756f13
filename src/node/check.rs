//! `deploy check [ENV]`: the config, the artifacts and, with ENV, what the node needs, without
//! changing anything. Every check runs and shows its outcome; the command fails if any did.

use crate::node::Node;
use crate::sys::systemd::Systemd;
use anyhow::Result;
use std::time::Duration;

impl Node<'_> {
    pub fn check(&self) -> Result<()> {
        let mut failed = 0;
        let mut check = |name: &str, f: &dyn Fn() -> Result<()>| {
            if let Err(e) = self.ui.step(name, f) {
                self.ui.warn(&format!("{e:#}"));
                failed += 1;
            }
        };
        check("Checking podman", &|| {
            crate::sys::podman::check_runtime(false).map(|_| ())
        });
        check("Checking Podman's storage", &|| self.check_storage());
        if self.config.container.init {
            check("Checking podman's init (container.init)", &|| {
                crate::sys::podman::init_binary(&self.home).map(|_| ())
            });
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
                self.check_port(s, self.env.port, &self.unit_name())
            });
        }
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
        if self.config.backup == crate::config::Backup::Snapshot && self.layout.shared().is_dir() {
            let method =
                crate::node::snapshot::clone_method(&self.layout.shared(), &self.layout.releases());
            self.ui.info(&format!(
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
            ));
        }
        if !self.config.jobs.is_empty() {
            check("Checking the jobs' schedules (systemd-analyze)", &|| {
                self.check_schedules()
            });
        }
        // A conflict with another app of the user is a config error (exit 3).
        let others = self.ui.step(
            "Checking the other apps of this user (ports, Traefik)",
            || self.check_other_apps(),
        );
        if let Err(e) = &others {
            self.ui.warn(&format!("{e:#}"));
            failed += 1;
        }
        if let Some(said) = self.killed_at_stop() {
            self.ui.warn(&said);
        }
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
}
