//! The node's front: Traefik and the gap server. Setting them up, switching the app's router
//! to the gap server around a swap, and maintenance on/off.

pub mod gap;
pub mod shared;
pub mod traefik;

use crate::config::Traefik;
use crate::node::Node;
use crate::sys::fsx;
use crate::sys::systemd::Systemd;
use anyhow::{bail, Context, Result};
use gap::{GAP_FILE, MAINTENANCE_FILE};
use std::path::{Path, PathBuf};
use traefik::{DynamicSpec, Router};

/// Where `traefik.manage` keeps Traefik's static config.
pub(crate) fn managed_static_config(home: &Path) -> PathBuf {
    home.join(".config/traefik/traefik.yaml")
}

/// A program in PATH (or /usr/local/bin, /usr/bin).
pub fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .chain(["/usr/local/bin", "/usr/bin"])
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// The step lines of the front's switches (a swap's, `deploy maintenance`'s), told once.
pub const ENTER_GAP_STEP: &str = "Switching Traefik to the gap server";
pub const LEAVE_GAP_STEP: &str = "Switching Traefik back to the app";
pub const MAINTENANCE_STEP: &str = "Switching Traefik to the maintenance page";

impl Node<'_> {
    fn page_path(&self) -> PathBuf {
        self.layout.meta().join("maintenance.html")
    }

    /// The app's router, when Traefik is configured.
    pub fn router(&self) -> Result<Option<Router>> {
        let Some(t) = &self.config.traefik else {
            return Ok(None);
        };
        let dir = fsx::expand_home(&t.dynamic_dir, &self.home)?;
        let spec = DynamicSpec::new(&self.config.app, &self.env_name, self.env, t, &self.names());
        // The managed Traefik's resolver for this app's ACME account, as its setup chose it.
        let spec = match shared::resolver_of(&self.home, &self.config.app, &self.env_name) {
            Some(resolver) => spec.with_resolver(&resolver),
            None => spec,
        };
        Ok(Some(Router::new(spec, &dir, &t.api)))
    }

    fn in_maintenance(&self) -> bool {
        self.layout.meta().join(MAINTENANCE_FILE).exists()
    }

    /// Before the stop: requests go to the gap server, confirmed live. If Traefik cannot be
    /// switched, the app is not stopped.
    pub fn enter_gap(&self, router: &Router) -> Result<()> {
        self.gap_server_answers(std::time::Duration::from_secs(2))
            .context("the app was not stopped and keeps serving")?;
        gap::set_flag(&self.layout.meta(), GAP_FILE, true)?;
        let switched = self.ui.step(ENTER_GAP_STEP, || router.route(true));
        if let Err(e) = switched {
            let _ = gap::set_flag(&self.layout.meta(), GAP_FILE, false);
            return Err(e.context(
                "Traefik could not be switched to the gap server, so the app was not stopped \
                 and keeps serving",
            ));
        }
        Ok(())
    }

    /// A gap outside a swap (`deploy setup` moving a live app: its listen mode, its storage,
    /// its unit's name): requests go to the gap server while `work` runs and back after it,
    /// and a restart of the user's Traefik by another app's setup waits for it to end, as for
    /// a swap's gap. Without a router, `work` alone.
    pub(crate) fn in_gap<T>(
        &self,
        router: Option<&Router>,
        work: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let Some(r) = router else {
            return work();
        };
        let _traefik = self.hold_traefik_shared()?;
        self.enter_gap(r)?;
        crate::signals::point("in-gap");
        let done = work();
        self.leave_gap(r)?;
        done
    }

    /// The gap server answers (its maintenance path always gets the page, 503) within `wait`.
    fn gap_server_answers(&self, wait: std::time::Duration) -> Result<()> {
        let unit = self.names().gap_unit();
        let url = crate::sys::health::url(self.env.gap_port(), gap::MAINTENANCE_PATH);
        let deadline = std::time::Instant::now() + wait;
        loop {
            match crate::sys::health::probe(&url, std::time::Duration::from_secs(1)) {
                Ok(503) => return Ok(()),
                other if std::time::Instant::now() >= deadline => bail!(
                    "the gap server ({unit}) does not answer on {url} ({other:?}): see \
                     `systemctl --user status {unit}` and run `deploy setup {}`; is port {} free?",
                    self.env_name,
                    self.env.gap_port()
                ),
                _ => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        }
    }

    /// After the new (or restored) release is healthy: held requests go on to it, and the
    /// router goes back to the app (unless maintenance is on).
    pub fn leave_gap(&self, router: &Router) -> Result<()> {
        gap::set_flag(&self.layout.meta(), GAP_FILE, false)?;
        if self.in_maintenance() {
            self.ui
                .info("   maintenance is on: Traefik keeps serving the maintenance page");
            return Ok(());
        }
        self.ui
            .step(LEAVE_GAP_STEP, || router.route(false))
            .map(|_| ())
    }

    /// The gap server's unit as this config makes it.
    pub(crate) fn gap_unit_text(&self, t: &Traefik) -> Result<String> {
        traefik::render_gap_unit(&traefik::GapUnitSpec {
            app: self.config.app.clone(),
            env: self.env_name.clone(),
            root: self.layout.root.display().to_string(),
            deploy_bin: self.kept_bin().display().to_string(),
            gap_port: self.env.gap_port(),
            port: self.env.port,
            mode: t.gap.as_str().into(),
            hold: traefik::millis(t.hold),
            retry_after: t.retry_after.as_secs().max(1),
            control: self.layout.meta().display().to_string(),
            page: self.page_path().display().to_string(),
        })
    }

    /// Installs the gap server's unit and (re)starts it, until it answers.
    pub(crate) fn install_gap_server(&self, systemd: &Systemd, t: &Traefik) -> Result<()> {
        let unit = self.names().gap_unit();
        systemd.install_unit(&self.user_unit_dir(), &unit, &self.gap_unit_text(t)?)?;
        systemd.restart(&unit, std::time::Duration::from_secs(30))?;
        self.gap_server_answers(std::time::Duration::from_secs(10))
    }

    pub fn setup_traefik(&self, systemd: &Systemd, t: &Traefik) -> Result<()> {
        let gap_unit = self.names().gap_unit();
        self.check_port(systemd, self.env.gap_port(), &gap_unit)?;
        self.ui.step("Installing the gap server", || {
            // The binary the gap server runs: the one the server keeps.
            self.keep_for_server()?;
            let page = match &t.maintenance_page {
                Some(p) => {
                    let path = self.project_dir.join(p);
                    std::fs::read(&path).with_context(|| {
                        format!("cannot read traefik.maintenance_page {}", path.display())
                    })?
                }
                None => traefik::render_page(&self.config.app)?.into_bytes(),
            };
            fsx::write_atomic(&self.page_path(), &page, 0o600)?;
            self.install_gap_server(systemd, t)
        })?;
        if t.managed().is_some() {
            self.setup_shared_traefik(systemd)?;
        }
        let router = self.router()?.expect("traefik is configured");
        // A swap whose process died may have left the gap on: the next release or rollback
        // recovers it; until then the router stays on the gap server.
        let to_gap = self.in_maintenance()
            || self.layout.meta().join(GAP_FILE).exists()
            || self.stopped_by_hand().is_some();
        // A managed Traefik may have just been (re)started.
        let wait = if t.managed().is_some() {
            traefik::LIVE_TIMEOUT
        } else {
            std::time::Duration::ZERO
        };
        self.ui.step(
            &format!(
                "Loading router {} into Traefik ({})",
                router.spec.name, t.api
            ),
            || {
                router.api.ping(wait)?;
                router.route(to_gap)
            },
        )?;
        Ok(())
    }

    /// `deploy maintenance on|off`: the maintenance page for everyone, until switched off.
    pub fn maintenance(&self, on: bool) -> Result<()> {
        let router = self.router()?.ok_or_else(|| {
            anyhow::anyhow!("maintenance needs Traefik in front: add a `traefik:` section and run `deploy setup`")
        })?;
        let _lock = self.lock_despite_hold(&format!(
            "deploy maintenance {} {}",
            if on { "on" } else { "off" },
            self.env_name
        ))?;
        let meta = self.layout.meta();
        if on {
            gap::set_flag(&meta, MAINTENANCE_FILE, true)?;
            self.ui.step(MAINTENANCE_STEP, || router.route(true))?;
            self.ui.info(&format!(
                "{} on {} serves the maintenance page",
                self.config.app, self.env_name
            ));
        } else if let Some(s) = self.stopped_by_hand() {
            gap::set_flag(&meta, MAINTENANCE_FILE, false)?;
            self.ui.info(&format!(
                "maintenance is off, but {} on {} is stopped {}: Traefik serves the maintenance \
                 page until `deploy start {}`",
                self.config.app,
                self.env_name,
                s.describe(),
                self.env_name
            ));
        } else {
            self.ui.step(LEAVE_GAP_STEP, || router.route(false))?;
            gap::set_flag(&meta, MAINTENANCE_FILE, false)?;
            self.ui.info(&format!(
                "{} on {} is serving again",
                self.config.app, self.env_name
            ));
        }
        Ok(())
    }
}
