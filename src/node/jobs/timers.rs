//! Each job's user timer and the service it starts (`<app>_<env>_job_<name>.timer/.service`),
//! installed by `setup` and every release from the config's jobs; those of jobs no longer in it
//! are removed. Schedules are checked by systemd itself (`systemd-analyze calendar`) on the
//! server, where the timers run: a laptop may have no systemd.

use crate::config::Job;
use crate::exit::{self, Code};
use crate::node::Node;
use crate::sys::systemd::Systemd;
use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

const TIMER_UNIT: &str = include_str!("../../../units/job.timer");
const SERVICE_UNIT: &str = include_str!("../../../units/job.service");

/// What a job's two units are made from.
#[derive(Debug, Clone, Serialize)]
pub struct JobUnits<'a> {
    pub app: &'a str,
    pub env: &'a str,
    pub job: &'a str,
    pub schedule: &'a str,
    pub timer: String,
    pub service: String,
    /// The deploy binary and the config the server keeps (`.deploy/`).
    pub bin: String,
    pub config: String,
    pub results: String,
}

impl JobUnits<'_> {
    /// The timer's and the service's names and texts. Pure.
    pub fn render(&self) -> Result<[(String, String); 2]> {
        Ok([
            (
                self.timer.clone(),
                crate::template::render("job.timer", TIMER_UNIT, self)?,
            ),
            (
                self.service.clone(),
                crate::template::render("job.service", SERVICE_UNIT, self)?,
            ),
        ])
    }
}

/// What `systemd-analyze` said of a schedule it does not take, as an error naming the job's
/// key (exit 3: the config). Pure.
fn bad_schedule(job: &str, schedule: &str, said: &str) -> anyhow::Error {
    exit::with(
        Code::Config,
        anyhow!(
            "jobs.{job}.schedule `{schedule}`: systemd does not take it ({}): write it as \
             OnCalendar= takes it, e.g. hourly, *-*-* 03:00 or *:*:0/30 (`man systemd.time`)",
            said.trim()
        ),
    )
}

impl Node<'_> {
    fn job_units<'j>(&'j self, name: &'j str, job: &'j Job) -> JobUnits<'j> {
        let names = self.names();
        JobUnits {
            app: &self.config.app,
            env: &self.env_name,
            job: name,
            schedule: &job.schedule,
            timer: names.job_timer(name),
            service: names.job_service(name),
            bin: self.kept_bin().display().to_string(),
            config: self.kept_config().display().to_string(),
            results: self.layout.jobs_file().display().to_string(),
        }
    }

    /// Every job's schedule, as systemd takes it (`systemd-analyze calendar`): `check`, `setup`
    /// and a release (before anything changes) ask it on the server.
    pub(crate) fn check_schedules(&self) -> Result<()> {
        for (name, job) in &self.config.jobs {
            let out = duct::cmd!("systemd-analyze", "calendar", &job.schedule)
                .stdout_capture()
                .stderr_capture()
                .unchecked()
                .run()
                .context(
                    "cannot run systemd-analyze (part of systemd), which checks the jobs' \
                     schedules: is systemd installed on this server?",
                )?;
            if !out.status.success() {
                return Err(bad_schedule(
                    name,
                    &job.schedule,
                    &String::from_utf8_lossy(&out.stderr),
                ));
            }
        }
        Ok(())
    }

    /// The jobs whose timers are installed (by their files), this environment's only.
    pub(crate) fn installed_jobs(&self) -> Vec<String> {
        let names = self.names();
        let Ok(entries) = std::fs::read_dir(self.runtime().user_unit_dir()) else {
            return Vec::new();
        };
        let mut jobs: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                let file = e.file_name().to_string_lossy().into_owned();
                names.job_of_timer(&file).map(String::from)
            })
            .collect();
        jobs.sort();
        jobs
    }

    /// Whether the jobs' units differ from what is installed (a job added, changed or gone).
    pub(crate) fn jobs_changed(&self) -> Result<bool> {
        let dir = self.runtime().user_unit_dir();
        let wanted: Vec<&String> = self.config.jobs.keys().collect();
        if self.installed_jobs().iter().ne(wanted.iter().copied()) {
            return Ok(true);
        }
        for (name, job) in &self.config.jobs {
            let units = self.job_units(name, job);
            for (unit, text) in units.render()? {
                if !same_file(&dir.join(&unit), &text) {
                    return Ok(true);
                }
            }
            if !enabled(&dir, &units.timer) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Installs each job's service and timer (written, enabled and the timer restarted when
    /// they changed), then removes the timers and services of jobs no longer in the config. A
    /// run going on stays (it ends as it would have). Needs the kept binary and config
    /// ([`Node::keep_for_server`]).
    pub(crate) fn install_jobs(&self, systemd: &Systemd) -> Result<()> {
        let dir = self.runtime().user_unit_dir();
        for (name, job) in &self.config.jobs {
            let units = self.job_units(name, job);
            let [(timer, timer_text), (service, service_text)] = units.render()?;
            systemd
                .install_triggered(
                    &dir,
                    (&service, &service_text),
                    (&timer, &timer_text),
                    "timers.target",
                )
                .with_context(|| format!("the timer of the job {name} did not start"))?;
        }
        for gone in self.installed_jobs() {
            if self.config.jobs.contains_key(&gone) {
                continue;
            }
            let names = self.names();
            systemd.remove_unit(&dir, &names.job_timer(&gone), Duration::from_secs(10))?;
            systemd.remove_unit(&dir, &names.job_service(&gone), Duration::from_secs(30))?;
            self.ui.info(&format!(
                "   the job {gone} is no longer in the config: its timer was removed"
            ));
        }
        Ok(())
    }
}

fn same_file(path: &Path, text: &str) -> bool {
    std::fs::read_to_string(path).ok().as_deref() == Some(text)
}

/// Whether a timer is enabled (linked into timers.target).
fn enabled(dir: &Path, timer: &str) -> bool {
    dir.join("timers.target.wants").join(timer).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units() -> JobUnits<'static> {
        JobUnits {
            app: "shop",
            env: "prod",
            job: "digest",
            schedule: "*-*-* 03:00",
            timer: "shop_prod_job_digest.timer".into(),
            service: "shop_prod_job_digest.service".into(),
            bin: "/srv/shop/.deploy/bin/deploy".into(),
            config: "/srv/shop/.deploy/config.yaml".into(),
            results: "/srv/shop/.deploy/jobs.json".into(),
        }
    }

    #[test]
    fn a_jobs_timer_starts_its_service_which_runs_the_kept_deploy() {
        let [(timer, timer_text), (service, service_text)] = units().render().unwrap();
        assert_eq!(timer, "shop_prod_job_digest.timer");
        assert_eq!(service, "shop_prod_job_digest.service");
        for line in [
            "\nOnCalendar=*-*-* 03:00\n",
            "\nPersistent=true\n",
            "\nAccuracySec=1s\n",
            "\nUnit=shop_prod_job_digest.service\n",
            "\nWantedBy=timers.target\n",
        ] {
            assert!(timer_text.contains(line), "{line:?} in\n{timer_text}");
        }
        assert!(
            service_text.contains(
                "\nExecStart=/srv/shop/.deploy/bin/deploy --node --resolved -c \
                 /srv/shop/.deploy/config.yaml jobs run-scheduled digest prod\n"
            ),
            "{service_text}"
        );
        assert!(service_text.contains("\nType=oneshot\n"));
        assert!(
            !service_text.contains("[Install]"),
            "only its timer starts it"
        );
        for text in [&timer_text, &service_text] {
            assert!(!text.contains("{{") && !text.contains("{%"), "{text}");
        }
    }

    #[test]
    fn a_schedule_systemd_refuses_names_its_key() {
        let e = bad_schedule(
            "digest",
            "03:00 tomorrow",
            "Failed to parse calendar specification '03:00 tomorrow': Invalid argument\n",
        );
        assert_eq!(crate::exit::code_of(&e), 3);
        let said = format!("{e:#}");
        assert!(
            said.starts_with("jobs.digest.schedule `03:00 tomorrow`: systemd does not take it"),
            "{said}"
        );
        assert!(said.contains("Invalid argument)"), "{said}");
    }
}
