//! `deploy release` on the node, in Capistrano's stages: starting -> updating -> publishing ->
//! finishing.

use super::swap::Move;
use super::{event, Node};
use crate::cli::ReleaseArgs;
use crate::config::Backup;
use crate::node::lock::NodeLock;
use crate::node::state::State;
use crate::node::state::{Action, EventOutcome};
use crate::sys::systemd::Systemd;
use crate::ui::fmt_duration;
use crate::{node::appenv, node::layout, node::unit, node::upload, signals, sys::fsx, sys::podman};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A release being pruned: renamed so, then deleted.
const PRUNING_PREFIX: &str = ".pruning-";

/// Added to a replaced release's image tag while the new one is built (image tags take up to
/// 128 characters; a version's tag at most 109).
const REPLACED_TAG_SUFFIX: &str = ".deploy-replaced";

/// A release under way: what `starting` found, for the stages after it.
struct Run<'r> {
    req: &'r ReleaseArgs,
    _lock: NodeLock,
    systemd: Systemd,
    state: State,
    /// What was live when the release began.
    current: Option<String>,
    sources: Vec<PathBuf>,
    image: String,
    started: Instant,
    /// The release's variables file (env.clear, env.secret): never printed.
    vars: String,
}

impl Node<'_> {
    pub fn release(&self, req: &ReleaseArgs) -> Result<()> {
        let mut run = self.release_starting(req)?;
        self.release_updating(&mut run)?;
        // A preview's new data, scrubbed with the new image before anything live changes.
        let data = self.ready_preview_data(req.version()?.as_str())?;
        let gap = self.release_publishing(&mut run, data)?;
        self.release_finishing(run, gap)
    }

    /// Starting: the version and artifacts are valid, the lock is ours, a dead swap is put
    /// right, and the version may be (re)released.
    fn release_starting<'r>(&self, req: &'r ReleaseArgs) -> Result<Run<'r>> {
        let v = req.version()?.as_str();
        let vars = self.release_vars(req)?;
        let sources = if req.uploaded.is_some() {
            Vec::new()
        } else {
            crate::config::artifacts::sources(self.config, &self.project_dir)?
        };
        let lock = self.lock(&format!("deploy release {v} {}", self.env_name))?;
        self.refuse_if_stopped(&format!("the release of {v}"))?;
        signals::defer();
        self.check_podman()?;
        let systemd = Systemd::connect()?;
        let mut state = self.load_state()?;
        self.recover(&systemd, &mut state, req.unprotected, true)?;
        self.settle_replaced(&mut state)?;
        self.complete_release_envs()?;
        // What only setup can apply stops the release here, before anything changes, as does
        // a job's schedule systemd does not take.
        self.check_environment()?;
        self.check_schedules()?;
        let current = self.current()?;
        if self.layout.release(v).exists() {
            if current.as_deref() == Some(v) {
                bail!("{v} is the live release: release a new version, or roll back first");
            }
            let never_live = state
                .releases
                .get(v)
                .is_some_and(|r| r.outcome == crate::node::state::Outcome::Ready);
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
            } else if !req.replace {
                bail!(
                    "release {v} already exists on {}: pick a new version, or pass --replace to \
                     release it again",
                    self.env_name
                );
            }
        }
        Ok(Run {
            req,
            _lock: lock,
            systemd,
            state,
            current,
            sources,
            image: self.image(v),
            started: Instant::now(),
            vars,
        })
    }

    /// The variables of this release: secrets from the file a laptop sent (`--secrets`, read
    /// and removed) or, on a local environment, from this process's environment.
    fn release_vars(&self, req: &ReleaseArgs) -> Result<String> {
        let secrets = appenv::Secrets::new(req.secrets.as_deref())?;
        appenv::text(&self.config.env, |name| secrets.get(name))
    }

    /// Updating: the artifacts into `releases/.incoming-V` (unchanged files hard-linked to the
    /// live release), `shared/` linked in, renamed to `releases/V`, and its image built. A
    /// failure leaves nothing behind under the version's name (but the release `--replace`
    /// replaces, put back); nothing live changed.
    fn release_updating(&self, run: &mut Run) -> Result<()> {
        let (v, image) = (run.req.version()?.as_str(), run.image.clone());
        let incoming = match &run.req.uploaded {
            Some(id) => self.layout.incoming_run(v, id),
            None => self.layout.incoming(v),
        };
        let target = self.layout.release(v);
        let link_dest = run.current.as_ref().map(|c| self.layout.release(c));
        let label = if run.req.uploaded.is_some() {
            format!("Linking shared/ into {v}")
        } else {
            format!("Uploading {v}")
        };
        let uploaded = self.ui.step(&label, || {
            if run.req.uploaded.is_some() {
                if !incoming.is_dir() {
                    bail!("nothing was uploaded into {}", incoming.display());
                }
            } else {
                upload::rsync_local(&run.sources, &incoming, link_dest.as_deref())?;
            }
            let release_env = unit::release_env(
                &self.config.app,
                v,
                &image,
                Some(&self.unit_spec().current_vars()),
                &self.run_settings(),
            );
            upload::finish_release_dir(
                &incoming,
                &self.config.shared,
                &release_env,
                Some(&run.vars),
            )
        });
        if let Err(e) = uploaded {
            let _ = std::fs::remove_dir_all(&incoming);
            return Err(e.context(format!(
                "the upload of {v} failed: the partial upload was removed, {} keeps serving \
                 what it served",
                self.env_name
            )));
        }
        signals::point("after-upload");
        signals::check("the image build")?;
        // A recorded release of this version (--replace, or built and never live) goes aside
        // until the new one is built; a leftover that was never recorded goes.
        let replacing = target.exists() && run.state.releases.contains_key(v);
        if replacing {
            self.set_aside(v)?;
        } else if target.exists() {
            std::fs::remove_dir_all(&target)
                .with_context(|| format!("cannot remove the old {}", target.display()))?;
        }
        let built = fsx::rename_durable(&incoming, &target)
            .and_then(|()| match replacing {
                true => self.hand_over_snapshots(v),
                false => Ok(()),
            })
            .and_then(|()| self.build_and_sync(v, &image, &target));
        if let Err(e) = built {
            let undone = match replacing {
                true => self.put_back_replaced(v),
                false => {
                    let _ = std::fs::remove_dir_all(&target);
                    Ok(())
                }
            };
            let failed = event(
                Action::Release,
                v,
                run.current.clone(),
                EventOutcome::Error,
                None,
                Some("image build failed"),
            );
            run.state.push_event(failed);
            self.save_state(&run.state)?;
            return match (undone, replacing) {
                (Ok(()), true) => Err(e.context(format!(
                    "the release {v} that was there is back, with its image and data snapshots"
                ))),
                (Ok(()), false) => Err(e),
                (Err(u), _) => Err(e.context(format!(
                    "putting the release {v} that was there back failed too ({u:#}): the next \
                     release or rollback tries again"
                ))),
            };
        }
        if replacing {
            self.drop_replaced(v)?;
        }
        run.state.add_release(v, &image);
        self.save_state(&run.state)?;
        signals::point("after-build");
        Ok(())
    }

    /// The image build, and then its files and layers synced to disk: nothing of the new
    /// release may be lost to a power cut once it is live.
    fn build_and_sync(&self, v: &str, image: &str, target: &Path) -> Result<()> {
        self.ui.step(&format!("Building image {image}"), || {
            podman::build(target, image, self.ui.verbose)
        })?;
        // Whether the image's entrypoint is an init of its own is asked of podman while the
        // sync runs: neither waits for the other.
        let (synced, init) = std::thread::scope(|s| {
            let init = self
                .config
                .container
                .init
                .then(|| s.spawn(|| podman::entrypoint_is_init(image)));
            let synced = self
                .ui
                .step(&format!("Syncing {v} and its image to disk"), || {
                    let store = podman::graph_root_cached(&self.home)?;
                    podman::sync_filesystems(&[target, &store])
                });
            (synced, init.map(|h| h.join()))
        });
        if let Some(Ok(Ok(Some(init)))) = init {
            self.ui.warn(&format!(
                "{image}'s entrypoint {init} is an init of its own, and container.init puts \
                 catatonit in front of it (s6-overlay's /init must be PID 1): set \
                 container.init: false for this image"
            ));
        }
        synced
    }

    /// The temporary name of a replaced release's image while the new one is built.
    fn replaced_image(&self, v: &str) -> String {
        format!("{}{REPLACED_TAG_SUFFIX}", self.image(v))
    }

    /// `--replace`: the release `v` that is there goes aside (`releases/.replaced-V`, out of
    /// every listing) and its image gets a temporary tag, so that both can come back until the
    /// new release is built. Renamed first: a kill in between leaves a directory that
    /// [`Node::settle_replaced`] puts back.
    fn set_aside(&self, v: &str) -> Result<()> {
        fsx::rename_durable(&self.layout.release(v), &self.layout.replaced(v))?;
        let image = self.image(v);
        if podman::image_exists(&image)? {
            podman::tag(&image, &self.replaced_image(v))?;
        }
        Ok(())
    }

    /// `--replace`: the data snapshots of the release set aside go into the new one (the data
    /// that version left is kept: `rollback --with-data --to V` still finds it).
    fn hand_over_snapshots(&self, v: &str) -> Result<()> {
        let old = self
            .layout
            .replaced(v)
            .join(layout::RELEASE_META)
            .join("snapshots");
        if old.exists() {
            fsx::rename_durable(&old, &self.layout.snapshots(v))?;
        }
        Ok(())
    }

    /// Puts back the release `v` that a `--replace` set aside and did not finish: the
    /// snapshots it handed over, its name (the new, unfinished directory removed) and its
    /// image's tag.
    fn put_back_replaced(&self, v: &str) -> Result<()> {
        let (aside, target) = (self.layout.replaced(v), self.layout.release(v));
        let aside_snapshots = aside.join(layout::RELEASE_META).join("snapshots");
        if target.exists() {
            let handed = self.layout.snapshots(v);
            if handed.exists() && !aside_snapshots.exists() {
                fsx::rename_durable(&handed, &aside_snapshots)?;
            }
            self.discard(v, &target)?;
        }
        fsx::rename_durable(&aside, &target)?;
        let temp = self.replaced_image(v);
        if podman::image_exists(&temp)? {
            podman::tag(&temp, &self.image(v))?;
            podman::remove_image(&temp)?;
        }
        Ok(())
    }

    /// The new release is built: the one it replaced goes, its directory out of sight first
    /// (the commit: from here on nothing puts it back), then its files and its image, whose
    /// removal failing is only a warning (a prune finishes the files).
    fn drop_replaced(&self, v: &str) -> Result<()> {
        let gone = self.out_of_sight(v, &self.layout.replaced(v))?;
        if let Err(e) = std::fs::remove_dir_all(&gone) {
            self.ui
                .warn(&format!("cannot remove {}: {e}", gone.display()));
        }
        if let Err(e) = podman::remove_image(&self.replaced_image(v)) {
            self.ui
                .warn(&format!("the replaced release {v}'s image: {e:#}"));
        }
        Ok(())
    }

    /// Renames a directory of release `v` to `releases/.pruning-V`, where a prune removes
    /// what a kill left: never half-deleted under a name a command reads.
    fn out_of_sight(&self, v: &str, dir: &Path) -> Result<PathBuf> {
        let gone = self.layout.releases().join(format!("{PRUNING_PREFIX}{v}"));
        if gone.exists() {
            std::fs::remove_dir_all(&gone)
                .with_context(|| format!("cannot remove {}", gone.display()))?;
        }
        fsx::rename_durable(dir, &gone)?;
        Ok(gone)
    }

    /// Removes a directory of release `v`, out of sight first.
    fn discard(&self, v: &str, dir: &Path) -> Result<()> {
        let gone = self.out_of_sight(v, dir)?;
        std::fs::remove_dir_all(&gone).with_context(|| format!("cannot remove {}", gone.display()))
    }

    /// A `--replace` killed before its new release was built left the release it replaces
    /// aside: it is put back (name, image, snapshots), as a failed build would have.
    pub(crate) fn settle_replaced(&self, state: &mut State) -> Result<()> {
        for e in std::fs::read_dir(self.layout.releases())?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(v) = name.strip_prefix(layout::REPLACED_PREFIX) else {
                continue;
            };
            self.ui.warn(&format!(
                "a release --replace of {v} was interrupted before {v} was built: putting the {v} \
                 that was there back"
            ));
            self.put_back_replaced(v).with_context(|| {
                format!(
                    "cannot put back the release {v} that an interrupted --replace set aside in \
                     {}: move it back to releases/{v} by hand",
                    self.layout.replaced(v).display()
                )
            })?;
            let back = event(
                Action::Release,
                v,
                None,
                EventOutcome::Interrupted,
                None,
                Some("interrupted before it was built: the release it replaced is back"),
            );
            state.push_event(back);
            self.save_state(state)?;
        }
        Ok(())
    }

    /// Publishing: the swap, from what is live to the new release.
    fn release_publishing(&self, run: &mut Run, data: Option<PathBuf>) -> Result<Duration> {
        let v = run.req.version()?.as_str();
        signals::check("the swap")?;
        self.apply_environment(&run.systemd)?;
        self.install_recovery(&run.systemd)?;
        self.sync_verify_timer(&run.systemd)?;
        self.check_port(&run.systemd, self.env.port, &self.unit_name())?;
        self.warn_readable_shared_files();
        let snapshots = self.config.backup == Backup::Snapshot;
        let mv = Move::release(v, run.current.as_deref(), snapshots)
            .leaving_kept_data(run.state.on_kept_data(run.current.as_deref()))
            .with_data(data);
        let _fence = self.close_fence(&format!("the release of {v}"), run.req.stop_running)?;
        let gap = self.publish(&run.systemd, &mut run.state, &mv, run.req.unprotected)?;
        if signals::interrupted() {
            return Err(crate::exit::with(
                crate::exit::Code::Interrupted,
                anyhow!("interrupted during the swap, which was finished first: {v} is live (old releases were not pruned)"),
            ));
        }
        Ok(gap)
    }

    /// Finishing: old releases pruned, and the result. The release is live whatever pruning
    /// does: a failure there is a warning after that is said, and the command succeeds.
    fn release_finishing(&self, mut run: Run, gap: Duration) -> Result<()> {
        let v = run.req.version()?.as_str();
        self.release_jobs(&run.systemd);
        let pruned = self
            .ui
            .step("Pruning old releases", || self.prune(&mut run.state));
        let ((pruned, images), prune_error) = match pruned {
            Ok(p) => (p, None),
            Err(e) => ((Vec::new(), Vec::new()), Some(e)),
        };
        if !pruned.is_empty() {
            self.ui.info(&format!("   removed {}", pruned.join(", ")));
        }
        let total = run.started.elapsed();
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
                "previous": run.current,
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

    /// After the swap (never in its gap): the timers of the config's jobs installed, those of
    /// jobs no longer in it removed. The release is live whatever this does: a failure is a
    /// warning that says how to put it right.
    fn release_jobs(&self, systemd: &Systemd) {
        let changed = match self.jobs_changed() {
            Ok(changed) => changed,
            Err(e) => {
                self.ui
                    .warn(&format!("cannot read the jobs' timers: {e:#}"));
                true
            }
        };
        if !changed {
            return;
        }
        if let Err(e) = self
            .ui
            .step("Installing the jobs' timers", || self.install_jobs(systemd))
        {
            self.ui.warn(&format!(
                "the release is live, but the jobs' timers could not be installed: {e:#}. Run \
                 `deploy setup {}` to install them",
                self.env_name
            ));
        }
    }

    /// Removes the releases beyond `keep_releases`; returns their versions and their images,
    /// which the caller removes.
    pub(super) fn prune(&self, state: &mut State) -> Result<(Vec<String>, Vec<String>)> {
        let on_disk = self.releases_on_disk()?;
        let current = self.current()?;
        let previous = current.as_deref().and_then(|c| state.previous(&on_disk, c));
        let doomed = state.prune_plan(
            &on_disk,
            current.as_deref(),
            previous.as_deref(),
            self.config.keep_releases,
        );
        let mut images = Vec::new();
        for v in &doomed {
            images.push(
                state
                    .releases
                    .get(v)
                    .map(|r| r.image.clone())
                    .unwrap_or_else(|| self.image(v)),
            );
            // Out of sight first (one rename), then deleted: a kill in between never leaves a
            // half-deleted release under its name for a rollback to pick.
            let gone = self.layout.releases().join(format!("{PRUNING_PREFIX}{v}"));
            fsx::rename_durable(&self.layout.release(v), &gone)?;
            state.releases.remove(v);
            std::fs::remove_dir_all(&gone).with_context(|| format!("cannot remove release {v}"))?;
        }
        // Uploads that an interrupted release left (a dropped connection, a kill) and no
        // release has picked up within an hour.
        for e in std::fs::read_dir(self.layout.releases())?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(3600));
            let left_by_a_prune = name.starts_with(PRUNING_PREFIX);
            if (name.starts_with(layout::INCOMING_PREFIX) && stale) || left_by_a_prune {
                std::fs::remove_dir_all(e.path())
                    .with_context(|| format!("cannot remove the stale upload {name}"))?;
            }
        }
        fsx::sync_dir(&self.layout.releases())?;
        self.save_state(state)?;
        Ok((doomed, images))
    }
}
