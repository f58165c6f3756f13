//! The front of one app in one environment: its router in Traefik and its gap server, switched
//! around a swap (or a move of `deploy setup`), set up, and turned to the maintenance page; its
//! record among the node user's apps, and its part in the Traefik they share ([`shared`]).
//! [`Front`] borrows what it needs of the [`Node`]; the configs, the gap server and the shared
//! Traefik's merging and restart are `front/`'s.

mod shared;

use crate::config::Traefik;
use crate::front::gap::{self, GAP_FILE, MAINTENANCE_FILE};
use crate::front::traefik::{self, DynamicSpec, Router};
use crate::front::{shared as user, ENTER_GAP_STEP, LEAVE_GAP_STEP, MAINTENANCE_STEP};
use crate::node::borrowed::{owner_of_borrowed, Borrowed};
use crate::node::runtime::power::stopped_by_hand;
use crate::node::Node;
use crate::sys::fsx;
use crate::sys::systemd::Systemd;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The app's front: what it needs of the node, borrowed.
pub struct Front<'a>(pub(crate) Borrowed<'a>);
owner_of_borrowed!(Front);

impl Node<'_> {
    /// This app's front.
    pub fn front(&self) -> Front<'_> {
        Front(self.borrowed())
    }

    /// `deploy maintenance on|off`: the maintenance page for everyone, until switched off.
    pub fn maintenance(&self, on: bool) -> Result<()> {
        let front = self.front();
        let router = front.router()?.ok_or_else(|| {
            anyhow::anyhow!("maintenance needs Traefik in front: add a `traefik:` section and run `deploy setup`")
        })?;
        let _lock = self.lock_despite_hold(&format!(
            "deploy maintenance {} {}",
            if on { "on" } else { "off" },
            self.env_name
        ))?;
        front.maintenance(&router, on)
    }
}

impl Front<'_> {
    fn page_path(&self) -> PathBuf {
        self.layout.meta().join("maintenance.html")
    }

    /// The app's router, when Traefik is configured.
    pub fn router(&self) -> Result<Option<Router>> {
        let Some(t) = &self.config.traefik else {
            return Ok(None);
        };
        let dir = fsx::expand_home(&t.dynamic_dir, self.home)?;
        let spec = DynamicSpec::new(&self.config.app, self.env_name, self.env, t, &self.names());
        // The managed Traefik's resolver for this app's ACME account, as its setup chose it.
        let spec = match user::resolver_of(self.home, &self.config.app, self.env_name) {
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
        self.gap_server_answers(Duration::from_secs(2))
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
    fn gap_server_answers(&self, wait: Duration) -> Result<()> {
        let unit = self.names().gap_unit();
        gap::answers(self.env.gap_port(), &unit, self.env_name, wait)
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
            env: self.env_name.to_string(),
            root: self.layout.root.display().to_string(),
            deploy_bin: super::recovery::kept_bin(self.home).display().to_string(),
            gap_port: self.env.gap_port(),
            port: self.env.port,
            mode: t.gap.as_str().into(),
            hold: traefik::millis(t.hold),
            retry_after: t.retry_after.as_secs().max(1),
            control: self.layout.meta().display().to_string(),
            page: self.page_path().display().to_string(),
        })
    }

    /// What a config without a `traefik:` section leaves of a front set up before: the gap
    /// server's unit file and the app's router file (in Traefik's default dynamic directory),
    /// those that exist; `deploy setup` removes them ([`Front::remove_front`]).
    pub(crate) fn front_left(&self) -> Result<Vec<PathBuf>> {
        let unit = crate::sys::systemd::user_unit_dir(self.home).join(self.names().gap_unit());
        let router = self.default_router_file()?;
        Ok([unit, router].into_iter().filter(|p| p.exists()).collect())
    }

    /// The app's router file in Traefik's default dynamic directory (where it is without a
    /// `traefik.dynamic_dir`, and where a config without `traefik:` can still look for it).
    pub(crate) fn default_router_file(&self) -> Result<PathBuf> {
        let dynamic = crate::sys::fsx::expand_home(crate::config::DEFAULT_DYNAMIC_DIR, self.home)?;
        Ok(dynamic.join(self.names().dynamic_file()))
    }

    /// `deploy setup` of a config without a `traefik:` section any more: what
    /// [`Front::front_left`] finds goes, so that Traefik no longer routes to the app and a
    /// release no longer finds a front it would have to set up.
    pub(crate) fn remove_front(&self, systemd: &Systemd) -> Result<()> {
        let left = self.front_left()?;
        if left.is_empty() {
            return Ok(());
        }
        let unit = self.names().gap_unit();
        let step = format!("Removing {unit} and the app's router (no `traefik:` section any more)");
        self.ui.step(&step, || {
            for path in &left {
                match path.file_name() == Some(std::ffi::OsStr::new(&unit)) {
                    true => systemd.remove_unit(
                        path.parent().expect("a unit directory"),
                        &unit,
                        Duration::from_secs(30),
                    )?,
                    false => crate::sys::fsx::remove_durable(path)?,
                }
            }
            Ok(())
        })
    }

    /// Installs the gap server's unit and (re)starts it, until it answers.
    pub(crate) fn install_gap_server(&self, systemd: &Systemd, t: &Traefik) -> Result<()> {
        let unit = self.names().gap_unit();
        let unit_dir = crate::sys::systemd::user_unit_dir(self.home);
        systemd.install_unit(&unit_dir, &unit, &self.gap_unit_text(t)?)?;
        systemd.restart(&unit, Duration::from_secs(30))?;
        self.gap_server_answers(Duration::from_secs(10))
    }

    /// `deploy setup`'s part of the front: the gap server (its page read from `project_dir`,
    /// the binary it runs kept for the server by `keep_bin`), the shared Traefik with
    /// `traefik.manage`, and the app's router, on the gap server while the app is not served.
    pub(crate) fn setup_traefik(
        &self,
        systemd: &Systemd,
        t: &Traefik,
        project_dir: &Path,
        keep_bin: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        self.ui.step("Installing the gap server", || {
            // The binary the gap server runs: the one the server keeps.
            keep_bin()?;
            let page = match &t.maintenance_page {
                Some(p) => {
                    let path = project_dir.join(p);
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
        self.load_router(t)
    }

    /// The app's router into Traefik: on the gap server while maintenance is on, a swap's gap
    /// was left on, or the app is stopped by hand.
    fn load_router(&self, t: &Traefik) -> Result<()> {
        let router = self.router()?.expect("traefik is configured");
        // A swap whose process died may have left the gap on: the next release or rollback
        // recovers it; until then the router stays on the gap server.
        let to_gap = self.in_maintenance()
            || self.layout.meta().join(GAP_FILE).exists()
            || stopped_by_hand(self.layout).is_some();
        // A managed Traefik may have just been (re)started.
        let wait = if t.managed().is_some() {
            traefik::LIVE_TIMEOUT
        } else {
            Duration::ZERO
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

    /// `deploy maintenance on|off` under the deploy lock: `router` to the maintenance page, or
    /// back to the app (unless it is stopped by hand).
    fn maintenance(&self, router: &Router, on: bool) -> Result<()> {
        let meta = self.layout.meta();
        if on {
            gap::set_flag(&meta, MAINTENANCE_FILE, true)?;
            self.ui.step(MAINTENANCE_STEP, || router.route(true))?;
            self.ui.info(&format!(
                "{} on {} serves the maintenance page",
                self.config.app, self.env_name
            ));
        } else if let Some(s) = stopped_by_hand(self.layout) {
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
