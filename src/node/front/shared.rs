//! This app among the node user's apps: its record, checked against the others' and written by
//! `deploy setup`; its part in the Traefik they share (the static config merged and Traefik
//! restarted outside every other app's gap, or stopped when the last app that relies on it
//! leaves); and the shared hold on that Traefik that every gap takes.

use super::Front;
use crate::config::{AcmeChallenge, Traefik};
use crate::exit::{self, Code};
use crate::front::shared::{
    self as user, conflicts, save, AcmeRequest, AppRecord, Leaving, Preview, Registry,
    TraefikChange, TraefikRequest, UserLock,
};
use crate::sys::fsx;
use crate::sys::systemd::Systemd;
use anyhow::{anyhow, Result};

impl Front<'_> {
    /// `deploy check` (and setup, before anything changes): this app's ports and Traefik
    /// requests against every other app of the user; a conflict is a config error (exit 3)
    /// naming the other app and its setting.
    pub fn check_other_apps(&self) -> Result<()> {
        self.checked_record(&Registry::load(self.home)?).map(|_| ())
    }

    /// `deploy setup`, first: the check of [`Front::check_other_apps`], the records seeded and
    /// cleared, and this app's record written (with a managed Traefik, once its static config
    /// is: [`Front::setup_shared_traefik`]).
    pub fn register_app(&self) -> Result<()> {
        let _apps = user::apps_lock(self.home)?;
        let registry = Registry::load(self.home)?;
        registry.persist(self.home)?;
        let mine = self.checked_record(&registry)?;
        match mine.managed() {
            Some(_) => Ok(()),
            None => save(self.home, &mine),
        }
    }

    /// This app's record, checked against the others'.
    fn checked_record(&self, registry: &Registry) -> Result<AppRecord> {
        let others = self.others(registry);
        let mine = self.app_record(registry.get(&self.config.app, self.env_name), &others)?;
        let found = conflicts(&mine, &others);
        if found.is_empty() {
            return Ok(mine);
        }
        Err(exit::with(
            Code::Config,
            anyhow!(
                "{} ({}) conflicts with other apps of this user on the server; nothing was \
                 changed:\n  - {}",
                self.config.app,
                self.env_name,
                found.join("\n  - ")
            ),
        ))
    }

    /// What this config asks of the server.
    fn app_record(&self, previous: Option<&AppRecord>, others: &[&AppRecord]) -> Result<AppRecord> {
        let traefik = match &self.config.traefik {
            Some(t) => Some(self.traefik_request(t, previous, others)?),
            None => None,
        };
        Ok(AppRecord {
            app: self.config.app.clone(),
            env: self.env_name.to_string(),
            path: self.layout.root.display().to_string(),
            port: self.env.port,
            gap_port: self.config.traefik.as_ref().map(|_| self.env.gap_port()),
            health_path: Some(self.config.health.path.clone()),
            traefik,
            seeded: false,
            updated_at: crate::sys::now(),
        })
    }

    fn traefik_request(
        &self,
        t: &Traefik,
        previous: Option<&AppRecord>,
        others: &[&AppRecord],
    ) -> Result<TraefikRequest> {
        let managed = t.managed();
        let acme = match (&t.acme, &managed) {
            (Some(a), Some(_)) => {
                let mut request = AcmeRequest {
                    resolver: String::new(),
                    email: a.email.clone(),
                    ca_server: a.ca_server.clone(),
                    challenge: match a.challenge {
                        AcmeChallenge::Http => "http".into(),
                        AcmeChallenge::Tls => "tls".into(),
                    },
                };
                let before = previous.and_then(|p| p.managed()?.acme.as_ref());
                request.resolver = user::resolver_name(&request, before, others);
                Some(request)
            }
            _ => None,
        };
        let ca_certificates = match t.acme.as_ref().and_then(|a| a.ca_certificates.as_deref()) {
            Some(p) => Some(fsx::expand_home(p, self.home)?.display().to_string()),
            None => None,
        };
        Ok(TraefikRequest {
            managed: managed.is_some(),
            api: t.api.trim_end_matches('/').to_string(),
            dynamic_dir: fsx::expand_home(&t.dynamic_dir, self.home)?
                .display()
                .to_string(),
            rule: t.rule.clone(),
            router_entrypoints: t.entrypoints.clone(),
            entrypoints: managed.map(|m| m.entrypoints).unwrap_or_default(),
            acme,
            ca_certificates,
            redirect_https: t.redirect_https,
            redirect_web: false,
        })
    }

    /// Every other app of the user in `registry` (not this one, nor another name for its
    /// directory).
    fn others<'r>(&self, registry: &'r Registry) -> Vec<&'r AppRecord> {
        let root = self.layout.root.display().to_string();
        registry.others(&self.config.app, self.env_name, &root)
    }

    /// Held from before a gap to after it (a swap's, or one of `deploy setup` or `deploy
    /// restart` moving a live app): a restart of the user's Traefik (by another app's `deploy
    /// setup`) waits for it, and it waits for a restart under way.
    pub fn hold_traefik_shared(&self) -> Result<Option<UserLock>> {
        if self.config.traefik.is_none() {
            return Ok(None);
        }
        user::traefik_lock(self.home, true, || {
            self.ui.info(
                "   another app's `deploy setup` is restarting Traefik: waiting for it before the gap",
            )
        })
        .map(Some)
    }

    /// Held by a restart or a stop of the user's Traefik: waits for every other app's gap to
    /// end, saying so.
    fn hold_traefik_exclusive(&self) -> Result<UserLock> {
        user::traefik_lock(self.home, false, || {
            self.ui.info(
                "   waiting for other apps' swaps to leave their gap (they hold Traefik's lock)",
            )
        })
    }

    /// `traefik.manage`: the user's Traefik runs with the static config every app asks for;
    /// restarted only when that changes (saying which apps it serves), outside every other
    /// app's gap.
    pub(super) fn setup_shared_traefik(&self, systemd: &Systemd) -> Result<()> {
        // Taken first (outside the step's line): it may wait for other apps' gaps to end.
        let lock = self.hold_traefik_exclusive()?;
        let change = self.ui.step(
            "Merging Traefik's static config with the other apps' (traefik.manage)",
            || self.plan_traefik_change(lock),
        )?;
        user::apply(self.ui, systemd, self.home, &change)
    }

    /// Under the Traefik lock (`lock`: no other app is in its gap) and the records' lock: this
    /// app's request checked and recorded, and the static config and unit it makes.
    fn plan_traefik_change(&self, lock: UserLock) -> Result<TraefikChange> {
        let _apps = user::apps_lock(self.home)?;
        let registry = Registry::load(self.home)?;
        registry.persist(self.home)?;
        let preview = self.preview_traefik(&registry)?;
        TraefikChange::record(lock, &registry, preview, self.home)
    }

    /// The static config merged from this app's request and the others' in `registry`, and
    /// whether it changes what runs. Reads, changes nothing.
    fn preview_traefik(&self, registry: &Registry) -> Result<Preview> {
        let mine = self.checked_record(registry)?;
        Preview::new(mine, self.others(registry), self.home)
    }

    /// `setup --dry-run` with traefik.manage: the static config merged with the other apps'
    /// requests (what changes in it), and whether Traefik restarts and whom that touches. A
    /// conflict is the error setup would give (exit 3).
    pub(crate) fn traefik_plan_lines(&self) -> Result<String> {
        let p = self.preview_traefik(&Registry::load(self.home)?)?;
        Ok(p.plan_lines())
    }

    /// What removing this app would do to the managed Traefik: the other apps that rely on it
    /// (their router is on its API), read from the records.
    pub(crate) fn traefik_leaving(&self) -> Result<Leaving> {
        let Some(api) = self.managed_api() else {
            return Ok(Leaving::NotManaged);
        };
        let registry = Registry::load(self.home)?;
        Ok(user::leaving(&api, &self.others(&registry)))
    }

    /// `deploy remove`, once the app's units and record are gone: the managed Traefik is
    /// stopped and disabled when no other app relies on it (checked again under its lock and
    /// the records', so a setup under way either counts or starts it again after).
    pub(crate) fn leave_shared_traefik(&self, systemd: &Systemd) -> Result<Leaving> {
        match self.traefik_leaving()? {
            Leaving::Stopped => {}
            kept => return Ok(kept),
        }
        let _traefik = self.hold_traefik_exclusive()?;
        let _apps = user::apps_lock(self.home)?;
        let leaving = self.traefik_leaving()?;
        if leaving == Leaving::Stopped {
            user::stop_managed(systemd, self.home)?;
        }
        Ok(leaving)
    }

    /// The API of the Traefik this app manages (`traefik.manage`), as its config says it.
    fn managed_api(&self) -> Option<String> {
        let t = self.config.traefik.as_ref()?;
        t.managed()?;
        Some(t.api.trim_end_matches('/').to_string())
    }
}
