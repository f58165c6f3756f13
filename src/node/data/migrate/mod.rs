//! `deploy migrate-data`: turns an app directory that was deployed in place (binary, assets,
//! `.env` and a `data/` folder with a live SQLite database, side by side) into the release
//! layout: the shared entries move to `shared/`, everything else becomes the first release.
//!
//! The plan is pure ([`plan`]); it is written to `.deploy/migrate.json` before anything moves
//! and records each step's progress, so a rerun after a crash finishes the job. The doers below
//! move (a rename on one filesystem; across filesystems a copy, fsync, byte-for-byte and SQLite
//! verification, then the swap) and check databases.

mod copy;
mod plan;

pub use copy::{check_databases, copy_tree, move_entry, replaceable, same_tree, writers};
pub use plan::{describe, plan, Entry, Plan, SharedMove, Stage};

use crate::node::data::Data;
use crate::node::request::{Consent, MigrateRequest, Mode};
use crate::sys::fsx;
use crate::sys::systemd::Active;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
/// The migration's journal, in `.deploy/`: present while a migration is under way.
pub const PLAN_FILE: &str = "migrate.json";

/// Names in the app directory that are deploy's own, never part of the old deployment.
pub const OWN: &[&str] = &[".deploy", "releases", "shared", "current"];

/// What `deploy migrate-data` is given.
impl crate::node::Node<'_> {
    /// A new plan for the app directory as it is, or why there is nothing to migrate.
    fn new_plan(&self, release: &str) -> Result<Option<Plan>> {
        let root = &self.layout.root;
        if let Some(current) = self.current()? {
            self.ui.info(&format!(
                "{} is already in the release layout (current -> releases/{current}): nothing \
                 to migrate",
                root.display()
            ));
            return Ok(None);
        }
        if self.layout.releases().is_dir() && !self.releases_on_disk()?.is_empty() {
            bail!(
                "{} has releases but no `current`: it is neither the old layout nor a complete \
                 new one. Run `deploy rollback --to VERSION {}` to make one live",
                root.display(),
                self.env_name
            );
        }
        let mut top = Vec::new();
        let entries = std::fs::read_dir(root).with_context(|| {
            format!(
                "cannot read {}: is `path` right for {}?",
                root.display(),
                self.env_name
            )
        })?;
        for e in entries {
            let e = e?;
            top.push(Entry {
                name: e.file_name().to_string_lossy().into_owned(),
                dir: e.file_type()?.is_dir(),
            });
        }
        top.sort_by(|a, b| a.name.cmp(&b.name));
        // `deploy setup` may have run first (it makes releases/): its log dir is not the old
        // deployment's.
        if self.layout.releases().is_dir() {
            top.retain(|e| e.name != "log");
        }
        let present = |p: &str| {
            std::fs::symlink_metadata(root.join(p))
                .ok()
                .map(|m| m.is_dir())
        };
        let shared = &self.config.shared;
        let plan = plan(&top, present, &shared.dirs, &shared.files, release)?;
        for m in &plan.moves {
            let target = self.layout.shared().join(&m.entry);
            if !replaceable(&target) {
                bail!(
                    "{} already exists and is not empty, and migrate-data does not overwrite: \
                     move it away (or merge it into {} by hand), then run migrate-data again. \
                     Nothing was changed",
                    target.display(),
                    root.join(&m.entry).display()
                );
            }
        }
        if self.layout.release(release).exists() {
            bail!("releases/{release} already exists: pick another name with --as");
        }
        Ok(Some(plan))
    }

    /// `deploy migrate-data`, in its named steps: the plan (new, or the one a crash left),
    /// the writers stopped, the shared entries moved one by one (each recorded in the plan),
    /// what is missing created, the rest made the first release, and that release recorded.
    pub fn migrate_data(&self, req: &MigrateRequest) -> Result<()> {
        let root = self.layout.root.clone();
        if !root.is_dir() {
            bail!(
                "{} does not exist: there is nothing to migrate on {}",
                root.display(),
                self.env_name
            );
        }
        // A dry run takes no lock: creating the lock file would already be a change.
        let _lock = match req.mode {
            Mode::DryRun => None,
            Mode::Change => Some(self.migrate_lock()?),
        };
        let data = self.data();
        let resumed = data.saved_plan()?;
        let mut plan = match resumed.clone() {
            Some(p) => p,
            None => match self.new_plan(&req.release)? {
                Some(p) => p,
                None => return Ok(()),
            },
        };
        if req.mode == Mode::DryRun {
            return self.print_migrate_plan(&plan, resumed.is_some());
        }
        self.confirm_migration(&plan, resumed.is_some(), req.consent)?;
        // No writer may have a database open while it moves: no exec or job either.
        let _fence = self.close_fence(
            &format!("deploy migrate-data {}", self.env_name),
            req.writers,
        )?;
        let systemd = crate::sys::systemd::Systemd::connect()?;
        let running = self.quiesce_for_migration(&systemd, &plan)?;
        if resumed.is_none() {
            data.save_plan(&plan)?;
        }
        crate::signals::point("migrate-after-plan");
        data.move_shared(&mut plan)?;
        data.create_missing(&plan)?;
        crate::signals::point("migrate-after-shared");
        let target = self.make_first_release(&plan)?;
        self.record_first_release(&plan.release)?;
        if let Err(e) = self.replication().sync(&systemd) {
            self.ui.warn(&format!("replication: {e:#}"));
        }
        self.tell_migrated(&plan.release, &target, running);
        Ok(())
    }

    /// The node's lock (not `self.lock()`: that one wants `deploy setup` first, which is
    /// optional here).
    fn migrate_lock(&self) -> Result<crate::node::lock::NodeLock> {
        fsx::ensure_dir(&self.layout.meta(), 0o700)?;
        crate::node::lock::acquire(
            &self.layout.lock_file(),
            &format!("deploy migrate-data {}", self.env_name),
            self.lock_wait,
        )
    }

    fn print_migrate_plan(&self, plan: &Plan, resumed: bool) -> Result<()> {
        crate::ui::print(&format!(
            "{}{}Dry run: nothing was changed.\n",
            describe(plan, &self.layout.root),
            if resumed {
                "An interrupted migration is under way: the rest of it is shown. "
            } else {
                ""
            }
        ))?;
        Ok(())
    }

    /// The plan shown, and confirmed unless it resumes an interrupted one or `--yes`.
    fn confirm_migration(&self, plan: &Plan, resumed: bool, consent: Consent) -> Result<()> {
        let root = &self.layout.root;
        if resumed {
            self.ui
                .info("   an interrupted migration is under way: finishing it");
        }
        self.ui.info(describe(plan, root).trim_end());
        let question = format!("Move these entries of {} as shown?", root.display());
        if !resumed && consent == Consent::Ask && !self.ui.ask(&question)? {
            bail!("not confirmed, nothing was moved (pass --yes to confirm without a prompt)");
        }
        Ok(())
    }

    /// The app and Litestream stopped (Litestream resumes once the databases are in
    /// shared/); refused while anything else has what moves open. Whether the app ran.
    fn quiesce_for_migration(
        &self,
        systemd: &crate::sys::systemd::Systemd,
        plan: &Plan,
    ) -> Result<bool> {
        let rt = self.runtime();
        let unit = rt.unit_name();
        let running = systemd
            .state(&unit)
            .map(|s| matches!(s.active, Active::Active | Active::Activating))
            .unwrap_or(false);
        if running {
            self.ui.step(&format!("Stopping {unit}"), || {
                systemd.stop(&unit, rt.stop_timeout())
            })?;
        }
        self.replication().stop(systemd)?;
        let root = &self.layout.root;
        let busy: Vec<String> = plan
            .moves
            .iter()
            .filter(|m| m.stage == Stage::Pending)
            .flat_map(|m| writers(&root.join(&m.entry)))
            .collect();
        if !busy.is_empty() {
            bail!(
                "something still has the shared data open, and a database must not move under \
                 a writer: stop it, then run migrate-data again (nothing was changed):\n  {}",
                busy.join("\n  ")
            );
        }
        Ok(running)
    }

    /// The rest of the app directory becomes `releases/V` (through `.incoming-V`, renamed
    /// whole), and `current` points at it.
    fn make_first_release(&self, plan: &Plan) -> Result<PathBuf> {
        let v = &plan.release;
        let target = self.layout.release(v);
        if !target.is_dir() {
            self.ui
                .step(&format!("Making releases/{v} of the rest"), || {
                    self.release_of_the_rest(plan, &target)
                })?;
        }
        fsx::replace_symlink(
            &self.layout.current(),
            &crate::node::layout::Layout::current_target(v),
        )?;
        Ok(target)
    }

    fn release_of_the_rest(&self, plan: &Plan, target: &std::path::Path) -> Result<()> {
        let (root, v) = (&self.layout.root, &plan.release);
        let incoming = self.layout.incoming(v);
        fsx::ensure_dir(&incoming, 0o755)?;
        for name in &plan.release_files {
            let from = root.join(name);
            if std::fs::symlink_metadata(&from).is_ok() {
                std::fs::rename(&from, incoming.join(name))
                    .with_context(|| format!("cannot move {} into releases/", from.display()))?;
            }
        }
        fsx::sync_dir(root)?;
        crate::signals::point("migrate-after-release-files");
        // Its variables come with its first release (a secret is read there).
        let release_env = crate::node::unit::release_env(
            &self.config.app,
            v,
            &self.runtime().image(v),
            None,
            &self.run_settings(),
        );
        crate::node::upload::finish_release_dir(
            &incoming,
            &self.config.shared,
            &release_env,
            None,
        )?;
        fsx::rename_durable(&incoming, target)
    }

    /// The first release in the state as live, the event recorded, the plan removed.
    fn record_first_release(&self, v: &str) -> Result<()> {
        let mut state = self.load_state()?;
        if !state.releases.contains_key(v) {
            state.add_release(v, &self.runtime().image(v));
        }
        state.set_outcome(v, crate::node::state::Outcome::Ok);
        state.push_event(crate::node::event(
            crate::node::state::Action::MigrateData,
            v,
            None,
            crate::node::state::EventOutcome::Ok,
            None,
            Some("the in-place deployment became this release"),
        ));
        self.save_state(&state)?;
        std::fs::remove_file(self.data().plan_file())?;
        fsx::sync_dir(&self.layout.meta())
    }

    fn tell_migrated(&self, v: &str, target: &std::path::Path, running: bool) {
        let has_containerfile = ["Containerfile", "Dockerfile"]
            .iter()
            .any(|f| target.join(f).is_file());
        self.ui.info(&format!(
            "migrated {}: current -> releases/{v}, data in shared/. {}Next: `deploy setup {env}` \
             (if not done yet), then `deploy release VERSION {env}`{}",
            self.layout.root.display(),
            if running {
                format!(
                    "{} was stopped and stays stopped until the next release. ",
                    self.runtime().unit_name()
                )
            } else {
                String::new()
            },
            if has_containerfile {
                format!("; `deploy rollback --to {v}` goes back to it")
            } else {
                format!(
                    ". releases/{v} has no Containerfile, so `deploy rollback --to {v}` cannot \
                     build its image: add one there if you want that"
                )
            },
            env = self.env_name,
        ));
    }
}

/// The migration's journal and the moves into shared/: the data's part.
impl Data<'_> {
    fn plan_file(&self) -> PathBuf {
        self.layout.meta().join(PLAN_FILE)
    }

    fn save_plan(&self, plan: &Plan) -> Result<()> {
        fsx::ensure_dir(&self.layout.meta(), 0o700)?;
        let json = serde_json::to_vec_pretty(plan)?;
        fsx::write_atomic(&self.plan_file(), &json, 0o600)
    }

    /// The plan of an interrupted migration, if there is one.
    fn saved_plan(&self) -> Result<Option<Plan>> {
        match std::fs::read(self.plan_file()) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("{} is not a migration plan", self.plan_file().display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context("cannot read the migration plan"),
        }
    }

    /// Each shared entry moved into shared/, its progress saved in the plan as it goes.
    fn move_shared(&self, plan: &mut Plan) -> Result<()> {
        let (root, shared) = (&self.layout.root, self.layout.shared());
        fsx::ensure_dir(&shared, 0o755)?;
        for i in 0..plan.moves.len() {
            let mut m = plan.moves[i].clone();
            let (from, to) = (root.join(&m.entry), shared.join(&m.entry));
            let label = format!("Moving {} to shared/{}", m.entry, m.entry);
            let mut done = plan.clone();
            self.ui.step(&label, || {
                move_entry(&mut m, &from, &to, |now| {
                    done.moves[i] = now.clone();
                    self.save_plan(&done)
                })
            })?;
            plan.moves[i] = m;
        }
        Ok(())
    }

    /// The shared entries the old layout lacked, made empty as `deploy setup` makes them.
    fn create_missing(&self, plan: &Plan) -> Result<()> {
        let shared = self.layout.shared();
        for (entry, dir) in &plan.create {
            let p = shared.join(entry);
            if std::fs::symlink_metadata(&p).is_ok() {
                continue;
            }
            if *dir {
                fsx::ensure_dir(&p, 0o755)?;
            } else {
                fsx::ensure_dir(p.parent().expect("under shared"), 0o755)?;
                fsx::write_atomic(&p, b"", 0o600)?;
            }
        }
        Ok(())
    }
}
