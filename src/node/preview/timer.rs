//! The server's own `deploy preview prune ENV`: a user timer per app and environment
//! (`<app>_<env>_previews.timer`) and the service it starts, which runs the kept deploy with the
//! environment's config as the last `deploy preview up` of it sent it
//! (`~/.local/share/deploy/previews/<app>_<env>.yaml`, 0600). `preview up` installs them; the
//! `preview down` of the environment's last preview (a prune's too) removes them. Both under
//! the lock of the node user's app records, where a preview's record is made and forgotten:
//! a preview never lives without the timer.

use crate::front::shared;
use crate::names::Names;
use crate::sys::{fsx, systemd::Systemd};
use anyhow::Result;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TIMER: &str = include_str!("../../../units/previews.timer");
const SERVICE: &str = include_str!("../../../units/previews.service");

/// When the timer comes due: a preview goes at most this long after it expired.
const SCHEDULE: &str = "*:0/15";
pub const EVERY: &str = "15 minutes";

/// What the two units are made from.
#[derive(Debug, Serialize)]
pub struct PruneUnits {
    pub app: String,
    pub env: String,
    pub timer: String,
    pub service: String,
    pub schedule: &'static str,
    pub every: &'static str,
    /// The deploy binary and the config the service runs with.
    pub bin: String,
    pub config: String,
}

impl PruneUnits {
    pub fn new(home: &Path, app: &str, env: &str) -> PruneUnits {
        let names = Names::new(app, env);
        PruneUnits {
            app: app.into(),
            env: env.into(),
            timer: names.previews_timer(),
            service: names.previews_service(),
            schedule: SCHEDULE,
            every: EVERY,
            bin: crate::node::recovery::kept_bin(home).display().to_string(),
            config: config_file(home, app, env).display().to_string(),
        }
    }

    /// The timer's and the service's texts. Pure.
    pub fn render(&self) -> Result<(String, String)> {
        Ok((
            crate::template::render("previews.timer", TIMER, self)?,
            crate::template::render("previews.service", SERVICE, self)?,
        ))
    }
}

/// The config the prune of `app`'s previews of `env` runs with.
pub fn config_file(home: &Path, app: &str, env: &str) -> PathBuf {
    crate::sys::fsx::deploy_data(home)
        .join("previews")
        .join(format!("{}.yaml", Names::new(app, env).base()))
}

/// Whether `app` has a preview of `env` among the records.
fn has_previews(registry: &shared::Registry, app: &str, env: &str) -> bool {
    registry
        .records
        .iter()
        .any(|r| r.app == app && crate::names::split_preview(&r.env).is_some_and(|(f, _)| f == env))
}

/// `preview up`: the config kept, the binary kept, the service and the timer written when
/// they changed, the timer enabled and started.
pub fn install(home: &Path, app: &str, env: &str, config_text: &str) -> Result<()> {
    shared::with_records(home, |_| {
        let units = PruneUnits::new(home, app, env);
        let config = config_file(home, app, env);
        if std::fs::read_to_string(&config).ok().as_deref() != Some(config_text) {
            fsx::ensure_private_dir(config.parent().expect("a directory"))?;
            fsx::write_atomic(&config, config_text.as_bytes(), 0o600)?;
        }
        crate::node::recovery::keep_bin(home)?;
        let (timer_text, service_text) = units.render()?;
        let systemd = Systemd::connect()?;
        systemd.install_triggered(
            &crate::sys::systemd::user_unit_dir(home),
            (&units.service, &service_text),
            (&units.timer, &timer_text),
            "timers.target",
        )
    })
}

/// After a preview of `env` went: with none left, the timer (stopped, disabled, deleted), the
/// service's file (a run of it going on, this one maybe, ends as it would have) and the kept
/// config go. Returns whether they went.
pub fn remove_if_last(home: &Path, app: &str, env: &str) -> Result<bool> {
    shared::with_records(home, |registry| {
        if has_previews(registry, app, env) {
            return Ok(false);
        }
        let units = PruneUnits::new(home, app, env);
        let dir = crate::sys::systemd::user_unit_dir(home);
        let config = config_file(home, app, env);
        if !dir.join(&units.timer).exists() && !config.exists() {
            return Ok(false);
        }
        let systemd = Systemd::connect()?;
        systemd.remove_unit(&dir, &units.timer, Duration::from_secs(10))?;
        fsx::remove_durable(&dir.join(&units.service))?;
        systemd.reload()?;
        fsx::remove_durable(&config)?;
        Ok(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timer_starts_a_prune_of_the_environments_previews_with_the_kept_config() {
        let units = PruneUnits::new(Path::new("/home/d"), "shop", "prod");
        assert_eq!(units.timer, "shop_prod_previews.timer");
        assert_eq!(units.service, "shop_prod_previews.service");
        let (timer, service) = units.render().unwrap();
        for line in [
            "\nOnCalendar=*:0/15\n",
            "\nPersistent=true\n",
            "\nUnit=shop_prod_previews.service\n",
            "\nWantedBy=timers.target\n",
        ] {
            assert!(timer.contains(line), "{line:?} in\n{timer}");
        }
        assert!(
            service.contains(&format!(
                "\nExecStart={} --node --resolved -c \
                 /home/d/.local/share/deploy/previews/shop_prod.yaml preview prune prod\n",
                units.bin
            )),
            "{service}"
        );
        assert!(service.contains("\nType=oneshot\n"));
        assert!(!service.contains("[Install]"), "only its timer starts it");
        for text in [&timer, &service] {
            assert!(!text.contains("{{") && !text.contains("{%"), "{text}");
        }
    }
}
