//! `deploy release` on the node, in Capistrano's stages: starting -> updating -> publishing ->
//! finishing. Starting (checks, the lock, a dead swap put right) reads what the plan depends
//! on; [`stages::plan`] makes the list of the stages, and one loop runs them, each by its own
//! thin function, reaching the fault-injection point `after-<name>` once it is done (the
//! swap's executor reaches its steps' own).

mod dirs;
pub mod stages;
pub mod tell;

use super::swap::Move;
use super::{event, Node};
use crate::node::lock::NodeLock;
use crate::node::request::{Artifacts, Existing, ReleaseRequest};
use crate::node::state::{Action, EventOutcome, Outcome, State};
use crate::sys::systemd::Systemd;
use crate::ui::fmt_duration;
use crate::{
    node::appenv, node::unit, node::upload, signals, sys::assemble, sys::fsx, sys::podman,
};
use anyhow::{anyhow, bail, Context, Result};
use stages::{Facts, Stage};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A release under way: what `starting` found, and what the stages leave for the next ones.
struct Run<'r> {
    req: &'r ReleaseRequest,
    _lock: NodeLock,
    systemd: Systemd,
    state: State,
    /// What the plan was made of (the version, what was live when the release began, ...).
    facts: Facts,
    sources: Vec<PathBuf>,
    /// Where the upload is until it is renamed to `releases/V`.
    incoming: PathBuf,
    image: String,
    started: Instant,
    /// The release's variables file (env.clear, env.secret): never printed.
    vars: String,
    /// A recorded release of this version is set aside (`--replace`) until the new one is
    /// built.
    replacing: bool,
    /// The swap's gap.
    gap: Duration,
    /// What the prune removed (releases, and their images, removed after the result), or why
    /// it failed.
    pruned: Result<(Vec<String>, Vec<String>)>,
}

impl Node<'_> {
    pub fn release(&self, req: &ReleaseRequest) -> Result<()> {
        let mut run = self.release_starting(req)?;
        for stage in &stages::plan(&run.facts) {
            if let Some(before) = stage.interruptible() {
                signals::check(before)?;
            }
            let told = self.tell_stage(&run.facts, stage)?;
            let steps: Vec<&str> = told
                .iter()
                .flat_map(|t| &t.steps)
                .map(|s| s.as_str())
                .collect();
            self.run_stage(&mut run, stage, &steps)?;
            if !matches!(stage, Stage::Swap { .. }) {
                signals::after(stage.name());
            }
        }
        self.release_finished(run)
    }

    /// One stage of the release, shown by its step lines `steps` (from [`Node::tell_stage`]).
    fn run_stage(&self, run: &mut Run, stage: &Stage, steps: &[&str]) -> Result<()> {
        let step = steps.first().copied().unwrap_or_default();
        match stage {
            Stage::Upload { .. } => self.upload_stage(run, step),
            Stage::Rename => {
                self.make_room(run)?;
                self.updating(run, |n, run| n.rename_stage(run))
            }
            Stage::Build => self.updating(run, |n, run| n.build_stage(run, step)),
            Stage::Sync => {
                self.updating(run, |n, run| n.sync_stage(run, step))?;
                self.record_built(run)
            }
            Stage::Scrub { .. } => self.ready_preview_data(&run.facts.version).map(drop),
            Stage::Apply { changes } => self.apply_environment(&run.systemd, changes),
            Stage::Swap { mv, .. } => self.swap_stage(run, mv),
            Stage::Jobs => {
                self.jobs_stage(run, step);
                Ok(())
            }
            Stage::Prune => {
                run.pruned = self.ui.step(step, || self.prune(&mut run.state));
                Ok(())
            }
        }
    }

    /// The release's image, assembled on top of the live release's when it can.
    fn build_stage(&self, run: &mut Run, step: &str) -> Result<()> {
        let target = self.layout.release(&run.facts.version);
        let work = target.join(crate::node::layout::RELEASE_META);
        let live = run.facts.current.as_ref().and_then(|c| {
            let image = run.state.releases.get(c)?.image.clone();
            Some((self.layout.release(c), image))
        });
        let previous = live
            .as_ref()
            .map(|(dir, image)| assemble::Previous { dir, image });
        let made = self.ui.step(step, || {
            podman::build(&target, &run.image, &work, previous, self.ui.verbose)
        })?;
        made.tell(&self.ui);
        Ok(())
    }

    /// Starting: the version and artifacts are valid, the lock is ours, a dead swap is put
    /// right, and the version may be (re)released; what the plan depends on is read.
    fn release_starting<'r>(&self, req: &'r ReleaseRequest) -> Result<Run<'r>> {
        let rt = self.runtime();
        let v = req.version.as_str();
        let vars = self.release_vars(req)?;
        let sent = req.artifacts != Artifacts::Here;
        let sources = match &req.artifacts {
            Artifacts::Uploaded(_) => Vec::new(),
            Artifacts::Here => crate::config::artifacts::sources(self.config, &self.project_dir)?,
        };
        let lock = self.lock(&format!("deploy release {v} {}", self.env_name))?;
        rt.refuse_if_stopped(&format!("the release of {v}"))?;
        signals::defer();
        self.check_podman()?;
        let systemd = Systemd::connect()?;
        let mut state = self.load_state()?;
        self.recover(&systemd, &mut state, req.protection, true)?;
        self.settle_replaced(&mut state)?;
        self.complete_release_envs()?;
        if self.config.preview_of.is_some() {
            crate::node::preview::data::clear_leftovers(&self.layout)?;
        }
        // What only setup can apply stops the release here, before anything changes, as does
        // a job's schedule systemd does not take.
        let changes = self.check_environment()?;
        self.check_schedules()?;
        let current = self.current()?;
        self.may_release(v, current.as_deref(), &state, req.existing)?;
        let facts = self.release_facts(v, sent, current, &state, changes)?;
        Ok(Run {
            req,
            _lock: lock,
            systemd,
            state,
            facts,
            sources,
            incoming: match &req.artifacts {
                Artifacts::Uploaded(id) => self.layout.incoming_run(v, id),
                Artifacts::Here => self.layout.incoming(v),
            },
            image: rt.image(v),
            started: Instant::now(),
            vars,
            replacing: false,
            gap: Duration::ZERO,
            pruned: Ok((Vec::new(), Vec::new())),
        })
    }

    /// Whether `v` may be released: never the live release; one that exists only again with
    /// `--replace`, unless it never went live or is the leftover of an interrupted release.
    fn may_release(
        &self,
        v: &str,
        current: Option<&str>,
        state: &State,
        existing: Existing,
    ) -> Result<()> {
        if !self.layout.release(v).exists() {
            return Ok(());
        }
        if current == Some(v) {
            bail!("{v} is the live release: release a new version, or roll back first");
        }
        let never_live = state
            .releases
            .get(v)
            .is_some_and(|r| r.outcome == Outcome::Ready);
        if !state.releases.contains_key(v) {
            // Killed after its upload was renamed into place, before it was recorded.
            self.ui.info(&format!(
                "   releases/{v} is the leftover of an interrupted release: replacing it"
            ));
        } else if never_live {
            // Built, then refused before its swap (Traefik down, say): it never ran.
            self.ui.info(&format!(
                "   releases/{v} was built but never went live: replacing it"
            ));
        } else if existing == Existing::Refuse {
            bail!(
                "release {v} already exists on {}: pick a new version, or pass --replace to \
                 release it again",
                self.env_name
            );
        }
        Ok(())
    }

    /// The variables of this release: secrets from the file a laptop sent (`--secrets`, read
    /// and removed) or, on a local environment, from this process's environment.
    fn release_vars(&self, req: &ReleaseRequest) -> Result<String> {
        let secrets =
            appenv::SecretValues::on_node(req.secrets.as_deref(), &self.config.env.secret)?;
        appenv::text(&self.config.env, &secrets)
    }

    /// Updating, the upload: the artifacts into the upload's directory (unchanged files
    /// hard-linked to the live release), or the one sent over SSH found, and `shared/` linked
    /// in. A failure removes the partial upload; nothing live changed.
    fn upload_stage(&self, run: &Run, step: &str) -> Result<()> {
        let (v, incoming) = (run.facts.version.as_str(), &run.incoming);
        let link_dest = run.facts.current.as_ref().map(|c| self.layout.release(c));
        let uploaded = self.ui.step(step, || {
            if let Artifacts::Uploaded(_) = run.req.artifacts {
                if !incoming.is_dir() {
                    bail!("nothing was uploaded into {}", incoming.display());
                }
            } else {
                upload::rsync_local(&run.sources, incoming, link_dest.as_deref())?;
            }
            let release_env = unit::release_env(
                &self.config.app,
                v,
                &run.image,
                Some(&self.runtime().unit_spec().current_vars()),
                &self.run_settings(),
            );
            upload::finish_release_dir(incoming, &self.config.shared, &release_env, Some(&run.vars))
        });
        uploaded.map_err(|e| {
            let _ = std::fs::remove_dir_all(incoming);
            e.context(format!(
                "the upload of {v} failed: the partial upload was removed, {} keeps serving \
                 what it served",
                self.env_name
            ))
        })
    }

    /// Before the rename: a recorded release of this version (--replace, or built and never
    /// live) goes aside until the new one is built; a leftover that was never recorded goes.
    fn make_room(&self, run: &mut Run) -> Result<()> {
        let v = run.facts.version.as_str();
        let target = self.layout.release(v);
        run.replacing = target.exists() && run.state.releases.contains_key(v);
        if run.replacing {
            self.set_aside(v)?;
        } else if target.exists() {
            std::fs::remove_dir_all(&target)
                .with_context(|| format!("cannot remove the old {}", target.display()))?;
        }
        Ok(())
    }

    /// The upload renamed to `releases/V`; a replaced release's data snapshots handed over.
    fn rename_stage(&self, run: &mut Run) -> Result<()> {
        let v = run.facts.version.as_str();
        fsx::rename_durable(&run.incoming, &self.layout.release(v))?;
        match run.replacing {
            true => self.hand_over_snapshots(v),
            false => Ok(()),
        }
    }

    /// The release's files and its image synced to disk: nothing of the new release may be
    /// lost to a power cut once it is live. What the release's start and stop need to know of
    /// its image is asked of podman meanwhile: whether its entrypoint is an init of its own,
    /// and its stop signal, which goes into its `release.env` (the unit's stop sends it).
    fn sync_stage(&self, run: &Run, step: &str) -> Result<()> {
        let (target, image) = (self.layout.release(&run.facts.version), run.image.as_str());
        let (synced, facts) = std::thread::scope(|s| {
            let facts = s.spawn(|| podman::image_run(image));
            let synced = self.ui.step(step, || {
                let store = podman::graph_root_cached(&self.home)?;
                podman::sync_filesystems(&[&target, &store])
            });
            (synced, facts.join())
        });
        synced?;
        let Ok(Ok(facts)) = facts else {
            return Ok(());
        };
        if let Some(init) = facts.own_init.filter(|_| self.config.container.init) {
            self.ui.warn(&format!(
                "{image}'s entrypoint {init} is an init of its own, and container.init puts \
                 catatonit in front of it (s6-overlay's /init must be PID 1): set \
                 container.init: false for this image"
            ));
        }
        if let Some(signal) = facts.stop_signal {
            let path = self.layout.release_env(&run.facts.version);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            fsx::write_atomic(
                &path,
                unit::with_stop_signal(&text, signal).as_bytes(),
                0o600,
            )?;
        }
        Ok(())
    }

    /// A stage of updating after the rename: on a failure nothing is left under the version's
    /// name (the release `--replace` replaces is put back) and the failure is recorded.
    fn updating(
        &self,
        run: &mut Run,
        stage: impl FnOnce(&Self, &mut Run) -> Result<()>,
    ) -> Result<()> {
        let Err(e) = stage(self, run) else {
            return Ok(());
        };
        let v = run.facts.version.clone();
        let undone = match run.replacing {
            true => self.put_back_replaced(&v),
            false => {
                let _ = std::fs::remove_dir_all(self.layout.release(&v));
                Ok(())
            }
        };
        let current = run.facts.current.clone();
        let failed = event(
            Action::Release,
            &v,
            current,
            EventOutcome::Error,
            None,
            Some("image build failed"),
        );
        run.state.push_event(failed);
        self.save_state(&run.state)?;
        match (undone, run.replacing) {
            (Ok(()), true) => Err(e.context(format!(
                "the release {v} that was there is back, with its image and data snapshots"
            ))),
            (Ok(()), false) => Err(e),
            (Err(u), _) => Err(e.context(format!(
                "putting the release {v} that was there back failed too ({u:#}): the next \
                 release or rollback tries again"
            ))),
        }
    }

    /// The new release is built: the one it replaced goes, and it is recorded.
    fn record_built(&self, run: &mut Run) -> Result<()> {
        let v = run.facts.version.as_str();
        if run.replacing {
            self.drop_replaced(v)?;
        }
        run.state.add_release(v, &run.image);
        self.save_state(&run.state)
    }

    /// Publishing: the server's recovery refreshed, the fence closed, the swap.
    fn swap_stage(&self, run: &mut Run, mv: &Move) -> Result<()> {
        let v = run.facts.version.as_str();
        self.install_recovery(&run.systemd)?;
        self.sync_verify_timer(&run.systemd)?;
        self.check_port(&run.systemd, self.env.port, &self.runtime().unit_name())?;
        self.warn_readable_shared_files();
        let _fence = self.close_fence(&format!("the release of {v}"), run.req.writers)?;
        run.gap = self.publish(&run.systemd, &mut run.state, mv, run.req.protection)?;
        if signals::interrupted() {
            return Err(crate::exit::with(
                crate::exit::Code::Interrupted,
                anyhow!("interrupted during the swap, which was finished first: {v} is live (old releases were not pruned)"),
            ));
        }
        Ok(())
    }

    /// After the swap (never in its gap): the jobs' timers installed. The release is live
    /// whatever this does: a failure is a warning that says how to put it right.
    fn jobs_stage(&self, run: &Run, step: &str) {
        if let Err(e) = self.ui.step(step, || self.install_jobs(&run.systemd)) {
            self.ui.warn(&format!(
                "the release is live, but the jobs' timers could not be installed: {e:#}. Run \
                 `deploy setup {}` to install them",
                self.env_name
            ));
        }
    }

    /// Finishing: the result. The release is live whatever pruning did: a failure there is a
    /// warning after that is said, and the command succeeds.
    fn release_finished(&self, run: Run) -> Result<()> {
        let v = run.facts.version.as_str();
        let ((pruned, images), prune_error) = match run.pruned {
            Ok(p) => (p, None),
            Err(e) => ((Vec::new(), Vec::new()), Some(e)),
        };
        if !pruned.is_empty() {
            self.ui.info(&format!("   removed {}", pruned.join(", ")));
        }
        let (total, gap) = (run.started.elapsed(), run.gap);
        self.ui.done(
            &format!(
                "{} {v} is live on {} ({} in all, gap {})",
                self.config.app,
                self.env_name,
                fmt_duration(total),
                fmt_duration(gap)
            ),
            serde_json::json!({
                "action": "release",
                "version": v,
                "previous": run.facts.current,
                "environment": self.env_name,
                "total_ms": total.as_millis() as u64,
                "gap_ms": gap.as_millis() as u64,
                "pruned": pruned,
            }),
        );
        // The pruned releases' images go after the result is out: removing an image of a real
        // app's size takes seconds, and nothing waits for it but the lock.
        for image in images {
            if let Err(e) = podman::remove_image(&image) {
                self.ui.warn(&format!("{e:#}"));
            }
        }
        if let Some(e) = prune_error {
            self.ui.warn(&format!(
                "{v} is live, but pruning old releases failed: {e:#}. Nothing else is affected; \
                 the next release prunes again"
            ));
        }
        Ok(())
    }
}
