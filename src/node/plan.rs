//! `--dry-run` for setup, release and rollback: what the command would do, written out (files,
//! command lines, unit and Traefik contents), computed by the same pure functions the command
//! uses, reading the node but changing nothing.

use crate::config::Backup;
use crate::node::layout::Layout;
use crate::node::rollback::{refusal, DataChoice, DataPlan};
use crate::node::swap::{self, Move, Step};
use crate::node::Node;
use crate::version::Version;
use crate::{front::traefik, node::unit, sys::podman};
use anyhow::{anyhow, Result};
use std::fmt::Write;

/// Text shown inside a plan, each line behind `    | `.
pub(crate) fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    | {l}\n")).collect()
}

/// One line of a plan: the step's name, then what it does.
pub(crate) fn line(out: &mut String, name: &str, what: impl std::fmt::Display) {
    let _ = writeln!(out, "  {:<11}{what}", format!("{name}:"));
}

impl Node<'_> {
    /// What one step of a swap does, in words.
    fn describe(&self, step: &Step, mv: &Move) -> Result<String> {
        let unit = self.unit_name();
        Ok(match step {
            Step::PreCopy => format!(
                "before the stop, the SQLite databases in WAL mode in {} are copied (where the \
                 file system cannot clone them), each in a read transaction held until the \
                 snapshot brings the copy up to date, with a second copy beside it for a \
                 put-back by rename{}; free disk checked first",
                self.layout.shared().display(),
                match (mv.kind, &mv.restore) {
                    (swap::Kind::Rollback, Some(_)) => ", and the target's data made ready too",
                    _ => "",
                }
            ),
            Step::Clear => format!(
                "every one-off container labelled {} (in_gap hooks, deploy exec, jobs) is removed, \
                 confirmed gone",
                self.names().writer_label()
            ),
            Step::Image { version } => format!(
                "{} (rebuilt from releases/{version} if missing)",
                self.image(version)
            ),
            Step::EnterGap => {
                let t = self
                    .config
                    .traefik
                    .as_ref()
                    .ok_or_else(|| anyhow!("no traefik"))?;
                format!(
                    "Traefik routes {} to the gap server ({}, {}), confirmed through {}",
                    self.config.app,
                    self.env.gap_port(),
                    t.gap.as_str(),
                    t.api
                )
            }
            Step::Stop => format!("{unit} (over D-Bus, waiting for the job)"),
            Step::Schema => format!(
                "the schema of the SQLite databases in {} is the one {} left (checked before \
                 too); else the rollback fails and what was live starts again",
                self.layout.shared().display(),
                mv.target()
            ),
            Step::Snapshot { .. } if mv.kind == swap::Kind::Restore => format!(
                "the SQLite databases in {} into .deploy/replaced/<stamp>/ (what it replaces)",
                self.layout.shared().display()
            ),
            Step::Restore { .. } if mv.kind == swap::Kind::Restore => format!(
                "the downloaded databases renamed into shared/{}",
                if mv.only_into_empty {
                    "; refused if one is there already (with the app stopped: --overwrite)"
                } else {
                    ""
                }
            ),
            Step::Snapshot { of, kind } => format!(
                "the SQLite databases in {} into releases/{of}/.deploy/snapshots/ ({})",
                self.layout.shared().display(),
                kind.what(of)
            ),
            Step::Restore { snapshot } => format!(
                "the data {} left (snapshot {}) into shared/",
                mv.target(),
                snapshot.file_name().unwrap_or_default().to_string_lossy()
            ),
            Step::Data { dir } => format!(
                "{} (a copy of {}'s data, scrubbed) becomes shared/ (one rename, exchanged)",
                dir.display(),
                self.config
                    .preview_of
                    .as_ref()
                    .map_or("the environment", |o| o.from.as_str())
            ),
            Step::Hook { command } => {
                let spec = self.unit_spec();
                let args = unit::hook_args(
                    &spec,
                    &self.image(mv.target()),
                    (mv.target(), mv.from.as_deref()),
                    command,
                );
                format!(
                    "podman {} (at most {})",
                    crate::sys::shell::sh_join(&args),
                    humantime::format_duration(self.config.hooks.timeout)
                )
            }
            Step::Switch { to } => format!(
                "{} -> {} (symlink + rename, directory fsynced)",
                self.layout.current().display(),
                Layout::current_target(to).display()
            ),
            Step::Unlink => format!("{} is removed", self.layout.current().display()),
            Step::Start => unit,
            Step::Health => format!(
                "GET {} until 2xx, {} at most",
                crate::sys::health::url(self.env.port, &self.config.health.path),
                humantime::format_duration(self.config.health.timeout)
            ),
            Step::LeaveGap => "Traefik routes back to the app".into(),
            Step::Hold => format!(
                "{} exists: a start of the app (a connection to the socket) waits",
                self.layout.hold_file().display()
            ),
            Step::Unhold => format!("{} is removed", self.layout.hold_file().display()),
        })
    }

    /// The steps of a swap, as lines: the same plan the command runs, and what a failure does.
    fn swap_lines(&self, mv: &Move) -> Result<String> {
        let mut out = String::new();
        for step in swap::plan(mv, &self.swap_settings()) {
            line(&mut out, step.name(), self.describe(&step, mv)?);
        }
        let on_failure = match &mv.from {
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
        };
        line(&mut out, "on failure", on_failure);
        Ok(out)
    }

    pub fn setup_plan(&self, reset_storage: bool) -> Result<String> {
        let l = &self.layout;
        let mut out = format!(
            "Plan: setup of {} on {} ({})\n",
            self.config.app,
            self.env_name,
            l.root.display()
        );
        let store = crate::sys::podman::store()?;
        use crate::node::storage::{verdict, Verdict};
        let storage =
            match verdict(&store, &self.names(), reset_storage) {
                Verdict::Fine => format!("{} (nothing to do)", store.driver),
                Verdict::Switch { deleted } => {
                    format!(
                "vfs -> overlay, in a gap, rebuilding the live image; `podman system reset` \
                 deletes: {}",
                if deleted.is_empty() { "nothing".into() } else { deleted.join(", ") }
            )
                }
                Verdict::Keep { would_delete } => format!(
                    "vfs, kept: a switch to overlay would delete {} (`--reset-storage` switches \
                 anyway)",
                    would_delete.join(", ")
                ),
            };
        line(&mut out, "storage", storage);
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
        let spec = self.unit_spec();
        line(
            &mut out,
            "unit",
            format!(
                "{} (enabled, daemon-reload):",
                self.user_unit_dir().join(self.unit_name()).display()
            ),
        );
        out += &indent(&unit::render(&spec)?);
        if let Some(router) = self.router()? {
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
        }
        if self
            .config
            .traefik
            .as_ref()
            .is_some_and(|t| t.managed().is_some())
        {
            out += &self.traefik_plan_lines()?;
        }
        out += &self.jobs_lines()?;
        out += "Dry run: nothing was changed.\n";
        Ok(out)
    }

    /// The jobs' timers a setup or a release (after its swap) installs, and the ones of jobs
    /// no longer in the config it removes; nothing when they are as the config says.
    fn jobs_lines(&self) -> Result<String> {
        let mut out = String::new();
        if !self.jobs_changed()? {
            return Ok(out);
        }
        let dir = self.user_unit_dir();
        for (name, job) in &self.config.jobs {
            let timer = self.names().job_timer(name);
            line(
                &mut out,
                "jobs",
                format!(
                    "{} ({}, enabled, started), starting {}",
                    dir.join(&timer).display(),
                    job.schedule,
                    self.names().job_service(name)
                ),
            );
        }
        for gone in self.installed_jobs() {
            if !self.config.jobs.contains_key(&gone) {
                line(
                    &mut out,
                    "jobs",
                    format!(
                        "{} removed (the job {gone} is no longer in the config)",
                        self.names().job_timer(&gone)
                    ),
                );
            }
        }
        Ok(out)
    }

    pub fn release_plan(&self, version: &Version, uploaded: bool) -> Result<String> {
        let version = version.as_str();
        let current = self.current()?;
        let target = self.layout.release(version);
        let image = self.image(version);
        let mut out = format!(
            "Plan: release {version} of {} to {} ({}), live now: {}\n",
            self.config.app,
            self.env_name,
            self.layout.root.display(),
            current.as_deref().unwrap_or("nothing")
        );
        if target.exists() {
            line(
                &mut out,
                "note",
                format!("releases/{version} exists: refused unless --replace (never when live)"),
            );
        }
        let link_dest = current
            .as_ref()
            .map(|c| self.layout.release(c).display().to_string());
        if uploaded {
            line(
                &mut out,
                "upload",
                format!(
                    "over SSH into {}, --link-dest={}",
                    self.layout.incoming(version).display(),
                    link_dest.as_deref().unwrap_or("(none: a first release)")
                ),
            );
        } else {
            let sources = crate::config::artifacts::sources(self.config, &self.project_dir)?;
            let link_dests: Vec<&str> = link_dest.as_deref().into_iter().collect();
            let args = crate::sys::rsync::upload_args(
                &sources,
                &self.layout.incoming(version).display().to_string(),
                &link_dests,
            );
            line(
                &mut out,
                "upload",
                format!("rsync {}", crate::sys::shell::sh_join(&args)),
            );
        }
        for e in self
            .config
            .shared
            .dirs
            .iter()
            .chain(&self.config.shared.files)
        {
            line(
                &mut out,
                "link",
                format!("{e} -> {}", Layout::shared_link_target(e).display()),
            );
        }
        line(
            &mut out,
            "rename",
            format!(
                "{} -> {}",
                self.layout.incoming(version).display(),
                target.display()
            ),
        );
        line(
            &mut out,
            "run",
            format!(
                "{version} runs with podman {} (its release.env: port {}, stop timeout {}s)",
                self.run_settings().args.join(" "),
                self.config.container.port,
                self.config.container.stop_timeout.as_secs().max(1)
            ),
        );
        for change in self.environment_changes()? {
            line(&mut out, "applies", change.describe());
        }
        line(
            &mut out,
            "build",
            format!(
                "podman {}",
                crate::sys::shell::sh_join(&podman::build_args(&target, &image))
            ),
        );
        let snapshots = self.config.backup == Backup::Snapshot;
        line(
            &mut out,
            "sync",
            format!("sync -f {} (and Podman's image store)", target.display()),
        );
        let kept = self.load_state()?.on_kept_data(current.as_deref());
        let data = self.preview_data_lines(&mut out);
        let mv = Move::release(version, current.as_deref(), snapshots)
            .leaving_kept_data(kept)
            .with_data(data);
        out += &self.swap_lines(&mv)?;
        out += &self.jobs_lines()?;
        line(
            &mut out,
            "prune",
            format!(
                "keep {} releases (never the live or the previous one)",
                self.config.keep_releases
            ),
        );
        out += "Dry run: nothing was built, uploaded or changed.\n";
        Ok(out)
    }

    /// A preview's new data waiting to go in: its scrub's lines, and where it is.
    fn preview_data_lines(&self, out: &mut String) -> Option<std::path::PathBuf> {
        self.config.preview_of.as_ref()?;
        let (stage, dir) = crate::node::preview::data::pending(&self.layout)?;
        if stage == crate::node::preview::data::Stage::Copied {
            for command in &self.config.preview.scrub {
                line(
                    out,
                    "scrub",
                    format!("{command} (a one-off container, on {})", dir.display()),
                );
            }
        }
        Some(crate::node::preview::data::Stage::Ready.dir(&self.layout))
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
