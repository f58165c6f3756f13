//! `deploy start|stop|restart`: the app stopped by hand until it is started again, and a
//! restart of its container. They only stop and start the app (no swap, no data moves), under
//! the deploy lock, and are refused while the environment is held by hand.
//!
//! A stop lasts: the app's unit (and in socket mode its socket unit) is disabled, so neither a
//! reboot nor the user's manager starting again brings it back, and `.deploy/stopped` says who
//! stopped it and since when (`deploy status` shows it). With Traefik the gap server serves the
//! maintenance page meanwhile (it reads that file as it reads `maintenance`). A release or a
//! rollback refuses while the app is stopped: `deploy start` first.

use crate::config::Listen;
use crate::front::gap::{self, MAINTENANCE_FILE, STOPPED_FILE};
use crate::node::layout::Layout;
use crate::node::runtime::Runtime;
use crate::node::state::Action;
use crate::node::{event, Node};
use crate::sys::systemd::Systemd;
use crate::ui::fmt_duration;
use crate::ui::line;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Which of the three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    Start,
    Stop,
    Restart,
}

impl Power {
    pub fn verb(self) -> &'static str {
        match self {
            Power::Start => "start",
            Power::Stop => "stop",
            Power::Restart => "restart",
        }
    }

    fn action(self) -> Action {
        match self {
            Power::Start => Action::Start,
            Power::Stop => Action::Stop,
            Power::Restart => Action::Restart,
        }
    }
}

/// Who stopped the app by hand, and since when (`.deploy/stopped`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopped {
    pub who: String,
    pub since: String,
}

impl Stopped {
    /// `by deploy stop (WHO, since SINCE)`. Pure.
    pub fn describe(&self) -> String {
        format!("by deploy stop ({}, since {})", self.who, self.since)
    }
}

/// What a plan of start, stop or restart names: the units and the front.
#[derive(Debug, Clone)]
pub struct PlanSpec {
    pub app: String,
    pub env: String,
    pub service: String,
    /// The socket unit, in socket mode.
    pub socket: Option<String>,
    pub health_url: String,
    /// With Traefik: its router's name.
    pub router: Option<String>,
}

/// `deploy start|stop|restart --dry-run`. Pure.
pub fn plan(p: Power, s: &PlanSpec) -> String {
    let units = match &s.socket {
        Some(socket) => format!("{socket} {}", s.service),
        None => s.service.clone(),
    };
    let mut out = match p {
        Power::Stop => format!(
            "Plan: stop {} on {} until `deploy start {}`\n",
            s.app, s.env, s.env
        ),
        _ => format!("Plan: {} {} on {}\n", p.verb(), s.app, s.env),
    };
    let front = |out: &mut String, what: &str| {
        if let Some(r) = &s.router {
            line(out, "front", format!("Traefik routes {r} {what}"));
        }
    };
    match p {
        Power::Stop => {
            front(&mut out, "to the maintenance page (the gap server)");
            line(
                &mut out,
                "disable",
                format!("{units} (not started at boot)"),
            );
            line(&mut out, "stop", &units);
        }
        Power::Start => {
            line(&mut out, "enable", &units);
            line(&mut out, "start", &units);
            line(&mut out, "health", format!("GET {}", s.health_url));
            front(&mut out, "to the app again (unless maintenance is on)");
        }
        Power::Restart => {
            front(&mut out, "to the gap server meanwhile");
            line(&mut out, "restart", &s.service);
            line(&mut out, "health", format!("GET {}", s.health_url));
            front(&mut out, "to the app again (unless maintenance is on)");
        }
    }
    out += "Dry run: nothing was changed.\n";
    out
}

/// The units a stop disables and a start enables, socket first.
fn units_of(s: &PlanSpec) -> Vec<String> {
    s.socket.iter().chain([&s.service]).cloned().collect()
}

/// Who stopped the app of `layout` by hand, if it is stopped.
pub(crate) fn stopped_by_hand(layout: &Layout) -> Option<Stopped> {
    let text = std::fs::read(layout.meta().join(STOPPED_FILE)).ok()?;
    serde_json::from_slice(&text).ok().or_else(|| {
        Some(Stopped {
            who: "?".into(),
            since: "?".into(),
        })
    })
}

impl Node<'_> {
    /// `--dry-run` of start, stop or restart.
    pub fn power_plan(&self, p: Power) -> Result<String> {
        self.require_setup()?;
        Ok(plan(p, &self.runtime().plan_spec()))
    }

    /// `deploy start|stop|restart`.
    pub fn power(&self, p: Power) -> Result<()> {
        let rt = self.runtime();
        let _lock = self.lock(&format!("deploy {} {}", p.verb(), self.env_name))?;
        if let Some(what) = self.swap_report()? {
            bail!(
                "{what}: settle it first (`deploy status {}`)",
                self.env_name
            );
        }
        let systemd = Systemd::connect()?;
        let started = Instant::now();
        let said = match p {
            Power::Stop => rt.stop_by_hand(&systemd)?,
            Power::Start => rt.start_by_hand(&systemd)?,
            Power::Restart => rt.restart_by_hand(&systemd)?,
        };
        let Some(message) = said else {
            return Ok(());
        };
        let mut state = self.load_state()?;
        let version = self.current()?.unwrap_or_default();
        let outcome = crate::node::state::EventOutcome::Ok;
        state.push_event(event(p.action(), &version, None, outcome, None, None));
        self.save_state(&state)?;
        let total = started.elapsed();
        self.ui.done(
            &format!("{message} ({})", fmt_duration(total)),
            serde_json::json!({"action": p.verb(), "environment": self.env_name,
                "version": self.current()?, "total_ms": total.as_millis() as u64}),
        );
        Ok(())
    }
}

impl Runtime<'_> {
    fn plan_spec(&self) -> PlanSpec {
        let names = self.names();
        PlanSpec {
            app: self.config.app.clone(),
            env: self.env_name.to_string(),
            service: names.unit(),
            socket: (self.config.listen == Listen::Socket).then(|| names.socket_unit()),
            health_url: crate::sys::health::url(self.env.port, &self.config.health.path),
            router: self.config.traefik.as_ref().map(|_| names.router()),
        }
    }

    /// Who stopped the app by hand, if it is stopped.
    pub(crate) fn stopped_by_hand(&self) -> Option<Stopped> {
        stopped_by_hand(self.layout)
    }

    /// Fails while the app is stopped by hand: what would start it (a release, a rollback)
    /// waits for `deploy start`.
    pub(crate) fn refuse_if_stopped(&self, what: &str) -> Result<()> {
        match self.stopped_by_hand() {
            Some(s) => bail!(
                "{what} would start {} on {}, which is stopped {}: `deploy start {}` first. \
                 Nothing was changed",
                self.config.app,
                self.env_name,
                s.describe(),
                self.env_name
            ),
            None => Ok(()),
        }
    }

    /// Stops the app until `deploy start`; `None` when it was stopped already (said so).
    fn stop_by_hand(&self, systemd: &Systemd) -> Result<Option<String>> {
        if let Some(s) = self.stopped_by_hand() {
            self.ui.done(
                &format!(
                    "{} on {} is stopped already, {}",
                    self.config.app,
                    self.env_name,
                    s.describe()
                ),
                serde_json::json!({"action": "stop", "environment": self.env_name,
                    "already": true}),
            );
            return Ok(None);
        }
        let spec = self.plan_spec();
        let mark = Stopped {
            who: crate::node::state::Origin::current()
                .who
                .unwrap_or_else(|| "?".into()),
            since: crate::sys::now(),
        };
        // The mark first: the gap server serves the page from now on, and a stop cut off
        // half-way is still a stop that `deploy start` ends.
        let file = self.layout.meta().join(STOPPED_FILE);
        crate::sys::fsx::write_atomic(&file, &serde_json::to_vec(&mark)?, 0o600)?;
        if let Some(router) = self.front().router()? {
            let routed = self
                .ui
                .step(crate::front::MAINTENANCE_STEP, || router.route(true));
            if let Err(e) = routed {
                let _ = crate::sys::fsx::remove_durable(&file);
                return Err(e.context("Traefik could not be switched, so the app was not stopped"));
            }
        }
        let units = units_of(&spec);
        self.ui
            .step(&format!("Disabling {}", units.join(" ")), || {
                units.iter().try_for_each(|u| systemd.disable(u))
            })?;
        for unit in &units {
            self.ui.step(&format!("Stopping {unit}"), || {
                let t = Instant::now();
                systemd.stop(unit, self.stop_timeout())?;
                if *unit == spec.service {
                    self.note_stop(t.elapsed());
                }
                Ok(())
            })?;
        }
        Ok(Some(format!(
            "{} on {} is stopped until `deploy start {}`{}",
            self.config.app,
            self.env_name,
            self.env_name,
            if spec.router.is_some() {
                ": Traefik serves the maintenance page"
            } else {
                ""
            }
        )))
    }

    /// The live release, or why there is none to start.
    fn released(&self) -> Result<String> {
        self.current()?.ok_or_else(|| {
            anyhow!(
                "nothing is released on {} yet: `deploy release VERSION {}` starts the app",
                self.env_name,
                self.env_name
            )
        })
    }

    /// Starts the app (stopped by hand or not), waits for its health check and routes Traefik
    /// back to it; `None` when it runs already and was not stopped (said so).
    fn start_by_hand(&self, systemd: &Systemd) -> Result<Option<String>> {
        let current = self.released()?;
        let spec = self.plan_spec();
        let stopped = self.stopped_by_hand();
        if stopped.is_none() && self.app_running(systemd) {
            self.ui.done(
                &format!(
                    "{} {current} on {} runs already (`deploy restart {}` restarts it)",
                    self.config.app, self.env_name, self.env_name
                ),
                serde_json::json!({"action": "start", "environment": self.env_name,
                    "already": true}),
            );
            return Ok(None);
        }
        let units = units_of(&spec);
        self.ui.step(&format!("Enabling {}", units.join(" ")), || {
            units.iter().try_for_each(|u| systemd.enable(u))
        })?;
        let started = self.ui.step(&format!("Starting {}", units.join(" ")), || {
            if let Some(socket) = &spec.socket {
                systemd.start(socket, Duration::from_secs(30))?;
            }
            self.start_healthy(systemd, &spec.service)
        });
        if let Err(e) = started {
            if stopped.is_some() {
                // Back to what it was: stopped, and staying so.
                for unit in &units {
                    let _ = systemd.stop(unit, self.stop_timeout());
                    let _ = systemd.disable(unit);
                }
            }
            return Err(e.context(format!(
                "{current} did not start or answer its health check{} (`deploy logs {}` shows \
                 its output)",
                if stopped.is_some() {
                    ": it stays stopped"
                } else {
                    ""
                },
                self.env_name
            )));
        }
        self.route_back()?;
        crate::sys::fsx::remove_durable(&self.layout.meta().join(STOPPED_FILE))?;
        Ok(Some(format!(
            "{} {current} on {} is started",
            self.config.app, self.env_name
        )))
    }

    /// Restarts the app's container; with Traefik, requests wait in the gap server meanwhile.
    fn restart_by_hand(&self, systemd: &Systemd) -> Result<Option<String>> {
        let front = self.front();
        if let Some(s) = self.stopped_by_hand() {
            bail!(
                "{} on {} is stopped {}: `deploy start {}` starts it",
                self.config.app,
                self.env_name,
                s.describe(),
                self.env_name
            );
        }
        let current = self.released()?;
        let router = front.router()?;
        // Held until the app answers again: no restart of Traefik in this gap.
        let _traefik = match &router {
            Some(_) => front.hold_traefik_shared()?,
            None => None,
        };
        if let Some(r) = &router {
            front.enter_gap(r)?;
        }
        let unit = self.unit_name();
        let restarted = self.ui.step(&format!("Restarting {unit}"), || {
            let t = Instant::now();
            systemd.stop(&unit, self.stop_timeout())?;
            self.note_stop(t.elapsed());
            self.start_healthy(systemd, &unit)
        });
        match (&router, &restarted) {
            (Some(r), Ok(())) => front.leave_gap(r)?,
            (Some(_), Err(_)) => self.ui.warn(
                "Traefik stays on the gap server until the app answers again (a release, a \
                 rollback or `deploy restart` that works routes it back)",
            ),
            _ => {}
        }
        restarted.with_context(|| {
            format!(
                "{current} did not start again or answer its health check (`deploy logs {}` \
                 shows its output; `deploy rollback {}` goes back to the release before)",
                self.env_name, self.env_name
            )
        })?;
        Ok(Some(format!(
            "{} {current} on {} is restarted",
            self.config.app, self.env_name
        )))
    }

    /// After a start: Traefik routes to the app again, unless maintenance is on.
    fn route_back(&self) -> Result<()> {
        let Some(router) = self.front().router()? else {
            return Ok(());
        };
        gap::set_flag(&self.layout.meta(), gap::GAP_FILE, false)?;
        if self.layout.meta().join(MAINTENANCE_FILE).exists() {
            self.ui
                .info("   maintenance is on: Traefik keeps serving the maintenance page");
            return Ok(());
        }
        self.ui
            .step(crate::front::LEAVE_GAP_STEP, || router.route(false))
            .map(|_| ())
    }

    /// After setup rewrote and enabled the units: a stopped app stays stopped.
    pub(crate) fn keep_stopped(&self, systemd: &Systemd) -> Result<()> {
        if self.stopped_by_hand().is_none() {
            return Ok(());
        }
        for unit in units_of(&self.plan_spec()) {
            systemd.disable(&unit)?;
            systemd.stop(&unit, self.stop_timeout())?;
        }
        self.ui.info(&format!(
            "   {} stays stopped until `deploy start {}`",
            self.config.app, self.env_name
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(socket: bool, traefik: bool) -> PlanSpec {
        PlanSpec {
            app: "shop".into(),
            env: "prod".into(),
            service: "shop_prod.service".into(),
            socket: socket.then(|| "shop_prod.socket".into()),
            health_url: "http://127.0.0.1:8080/healthz".into(),
            router: traefik.then(|| "shop_prod".into()),
        }
    }

    #[test]
    fn a_stop_disables_the_socket_too_and_pages_through_traefik() {
        let p = plan(Power::Stop, &spec(true, true));
        assert_eq!(
            p,
            "Plan: stop shop on prod until `deploy start prod`\n  \
             front:     Traefik routes shop_prod to the maintenance page (the gap server)\n  \
             disable:   shop_prod.socket shop_prod.service (not started at boot)\n  \
             stop:      shop_prod.socket shop_prod.service\n\
             Dry run: nothing was changed.\n"
        );
        let p = plan(Power::Start, &spec(false, false));
        assert!(p.contains("  enable:    shop_prod.service\n"), "{p}");
        assert!(
            p.contains("  health:    GET http://127.0.0.1:8080/healthz\n"),
            "{p}"
        );
        assert!(!p.contains("front"), "{p}");
        let p = plan(Power::Restart, &spec(true, true));
        assert!(p.contains("  restart:   shop_prod.service\n"), "{p}");
        assert!(!p.contains("socket"), "a restart keeps the port: {p}");
    }

    #[test]
    fn a_stop_says_who_and_since_when() {
        let s = Stopped {
            who: "ann@laptop".into(),
            since: "2026-11-24T06:00:00Z".into(),
        };
        assert_eq!(
            s.describe(),
            "by deploy stop (ann@laptop, since 2026-11-24T06:00:00Z)"
        );
    }
}
