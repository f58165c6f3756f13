//! `--dry-run` for setup, release and rollback: what the command would do, written out (files,
//! command lines, unit and Traefik contents), computed by the same pure functions the command
//! uses, reading the node but changing nothing.

use crate::node::rollback::{refusal, DataChoice, DataPlan};
use crate::node::swap::{self, Move};
use crate::node::Node;
use crate::ui::{indent, line};
use crate::{front::traefik, node::unit};
use anyhow::{anyhow, Result};

impl Node<'_> {
    /// The steps of a swap, as lines: the same plan the command runs, and what a failure does.
    fn swap_lines(&self, mv: &Move) -> Result<String> {
        let mut out = String::new();
        for step in swap::plan(mv, &self.swap_settings()) {
            line(&mut out, step.name(), self.tell_step(&step, mv).what);
        }
        line(&mut out, "on failure", self.on_failure(mv));
        Ok(out)
    }

    /// What a failure of the swap `mv` does, in words.
    pub(crate) fn on_failure(&self, mv: &Move) -> String {
        match &mv.from {
            None => "the app is stopped and current removed (nothing was live before)".into(),
            Some(f) if mv.keep_as.is_some() => format!(
                "{f} is put back the same way, on the data of this gap's snapshot when a hook or \
                 {} may have changed it",
                mv.target()
            ),
            Some(f) => format!(
                "{f} is put back the same way; if a hook or {} may have changed the data (there \
                 is no snapshot: backup: off), the app stays stopped instead",
                mv.target()
            ),
        }
    }

    /// What setup does to the podman store, in words.
    fn storage_words(&self, reset_storage: bool) -> Result<String> {
        use crate::node::runtime::storage::{verdict, Verdict};
        let store = crate::sys::podman::store()?;
        Ok(match verdict(&store, &self.names(), reset_storage) {
            Verdict::Fine => format!("{} (nothing to do)", store.driver),
            Verdict::Switch { deleted } => format!(
                "vfs -> overlay, in a gap, rebuilding the live image; `podman system reset` \
                 deletes: {}",
                if deleted.is_empty() {
                    "nothing".into()
                } else {
                    deleted.join(", ")
                }
            ),
            Verdict::Keep { would_delete } => format!(
                "vfs, kept: a switch to overlay would delete {} (`--reset-storage` switches \
                 anyway)",
                would_delete.join(", ")
            ),
        })
    }

    pub fn setup_plan(&self, reset_storage: bool) -> Result<String> {
        let rt = self.runtime();
        let front = self.front();
        let l = &self.layout;
        let mut out = format!(
            "Plan: setup of {} on {} ({})\n",
            self.config.app,
            self.env_name,
            l.root.display()
        );
        line(&mut out, "storage", self.storage_words(reset_storage)?);
        for d in [l.releases(), l.shared(), l.log_dir(), l.meta()] {
            line(&mut out, "mkdir", d.display());
        }
        for d in &self.config.shared.dirs {
            line(&mut out, "mkdir", l.shared().join(d).display());
        }
        for f in &self.config.shared.files {
            line(
                &mut out,
                "file",
                format!(
                    "{} (empty, mode 0600, if missing)",
                    l.shared().join(f).display()
                ),
            );
        }
        let spec = rt.unit_spec();
        line(
            &mut out,
            "unit",
            format!(
                "{} (enabled, daemon-reload):",
                rt.user_unit_dir().join(rt.unit_name()).display()
            ),
        );
        out += &indent(&unit::render(&spec)?);
        if let Some(router) = front.router()? {
            line(
                &mut out,
                "traefik",
                format!(
                    "{} (and the gap server unit {}):",
                    router.file.display(),
                    self.names().gap_unit()
                ),
            );
            out += &indent(&traefik::render_dynamic(&router.spec, false)?);
        } else {
            let left = front.front_left()?;
            if !left.is_empty() {
                let paths: Vec<String> = left.iter().map(|p| p.display().to_string()).collect();
                line(
                    &mut out,
                    "traefik",
                    format!(
                        "removed (no `traefik:` section any more): {}",
                        paths.join(", ")
                    ),
                );
            }
        }
        if self
            .config
            .traefik
            .as_ref()
            .is_some_and(|t| t.managed().is_some())
        {
            out += &front.traefik_plan_lines()?;
        }
        if self.jobs_changed()? {
            for (name, what) in self.jobs_lines() {
                line(&mut out, name, what);
            }
        }
        out += "Dry run: nothing was changed.\n";
        Ok(out)
    }

    /// The jobs' timers a setup or a release (after its swap) installs, and the ones of jobs
    /// no longer in the config it removes.
    pub(crate) fn jobs_lines(&self) -> Vec<(&'static str, String)> {
        let dir = self.runtime().user_unit_dir();
        let names = self.names();
        let mut out = Vec::new();
        for (name, job) in &self.config.jobs {
            let timer = dir.join(names.job_timer(name));
            out.push((
                "jobs",
                format!(
                    "{} ({}, enabled, started), starting {}",
                    timer.display(),
                    job.schedule,
                    names.job_service(name)
                ),
            ));
        }
        for gone in self.installed_jobs() {
            if !self.config.jobs.contains_key(&gone) {
                out.push((
                    "jobs",
                    format!(
                        "{} removed (the job {gone} is no longer in the config)",
                        names.job_timer(&gone)
                    ),
                ));
            }
        }
        out
    }

    /// `deploy restore --dry-run`: what is downloaded, and the swap that puts it in.
    pub fn restore_plan(&self, overwrite: bool) -> Result<String> {
        self.require_setup()?;
        let r = self
            .config
            .replicate
            .as_ref()
            .ok_or_else(|| anyhow!("deploy restore reads the replica of `replicate:`"))?;
        let shown = crate::config::replica_url::shown_url(&r.url);
        let mut out = format!(
            "Plan: restore of {} on {} from {shown}\n",
            self.config.app, self.env_name
        );
        line(
            &mut out,
            "download",
            format!(
                "{shown}/{} (the list of databases) and meanwhile the databases this server \
                 replicated last, then each other database it lists (paths inside shared/ only; \
                 what it does not list is dropped), into .deploy/.restore-<pid>/ with litestream \
                 restore, several at once",
                crate::node::replicate::MANIFEST_REPLICA
            ),
        );
        line(
            &mut out,
            "fence",
            "closed: exec and jobs wait (--stop-running stops them)",
        );
        match self.current()? {
            Some(live) => {
                let mv = Move::restore(&live, self.layout.meta().join(".restore-<pid>/data"), overwrite);
                out += &self.swap_lines(&mv)?;
            }
            None => line(
                &mut out,
                "put",
                "nothing is live: the databases are renamed into shared/ (Litestream stopped meanwhile)",
            ),
        }
        out += "Dry run: nothing was downloaded or changed.\n";
        Ok(out)
    }

    pub fn rollback_plan(&self, to: Option<&str>, choice: DataChoice) -> Result<String> {
        self.require_setup()?;
        let state = self.load_state()?;
        let current = self.current()?;
        let systemd = crate::sys::systemd::Systemd::connect().ok();
        let target = self.rollback_target(systemd.as_ref(), &state, to)?;
        let (data, warning) = self.rollback_data(&target, choice)?;
        if let DataPlan::Ask(q) = &data {
            return Err(refusal(q));
        }
        let mut out = format!(
            "Plan: rollback of {} on {} to {target}, from {}\n",
            self.config.app,
            self.env_name,
            current.as_deref().unwrap_or("nothing")
        );
        if let Some(w) = warning {
            line(&mut out, "note", w);
        }
        out += &self.swap_lines(&self.rollback_move(&state, &target, current.as_deref(), &data))?;
        out += "Dry run: nothing was changed.\n";
        Ok(out)
    }
}
