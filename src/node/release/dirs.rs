//! The directories of a release under way: one a `--replace` sets aside and puts back, one
//! that goes out of sight before it is deleted, and the releases a prune removes.

use crate::node::layout;
use crate::node::state::{Action, EventOutcome, State};
use crate::node::{event, Node};
use crate::sys::{fsx, podman};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

use layout::PRUNING_PREFIX;

/// Added to a replaced release's image tag while the new one is built (image tags take up to
/// 128 characters; a version's tag at most 109).
const REPLACED_TAG_SUFFIX: &str = ".deploy-replaced";

impl Node<'_> {
    /// The temporary name of a replaced release's image while the new one is built.
    fn replaced_image(&self, v: &str) -> String {
        format!("{}{REPLACED_TAG_SUFFIX}", self.runtime().image(v))
    }

    /// `--replace`: the release `v` that is there goes aside (`releases/.replaced-V`, out of
    /// every listing) and its image gets a temporary tag, so that both can come back until the
    /// new release is built. Renamed first: a kill in between leaves a directory that
    /// [`Node::settle_replaced`] puts back.
    pub(super) fn set_aside(&self, v: &str) -> Result<()> {
        fsx::rename_durable(&self.layout.release(v), &self.layout.replaced(v))?;
        let image = self.runtime().image(v);
        if podman::image_exists(&image)? {
            podman::tag(&image, &self.replaced_image(v))?;
        }
        Ok(())
    }

    /// `--replace`: the data snapshots of the release set aside go into the new one (the data
    /// that version left is kept: `rollback --with-data --to V` still finds it).
    pub(super) fn hand_over_snapshots(&self, v: &str) -> Result<()> {
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
    pub(super) fn put_back_replaced(&self, v: &str) -> Result<()> {
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
            podman::tag(&temp, &self.runtime().image(v))?;
            podman::remove_image(&temp)?;
        }
        Ok(())
    }

    /// The new release is built: the one it replaced goes, its directory out of sight first
    /// (the commit: from here on nothing puts it back), then its files and its image, whose
    /// removal failing is only a warning (a prune finishes the files).
    pub(super) fn drop_replaced(&self, v: &str) -> Result<()> {
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

    /// Removes the releases beyond `keep_releases`; returns their versions and their images,
    /// which the caller removes.
    pub(crate) fn prune(&self, state: &mut State) -> Result<(Vec<String>, Vec<String>)> {
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
                    .unwrap_or_else(|| self.runtime().image(v)),
            );
            // Out of sight first (one rename), then deleted: a kill in between never leaves a
            // half-deleted release under its name for a rollback to pick.
            self.discard(v, &self.layout.release(v))?;
            state.releases.remove(v);
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
