//! A preview's new data on its way into `shared/`: copied (or restored from the replica) beside
//! it, scrubbed in a one-off container of the release about to run on it, then put in by the
//! swap's `data` step, with the app stopped, as one exchange of directories. `shared/` only ever
//! holds data that went through `preview.scrub`: a copy that is not scrubbed whole never gets
//! there, so a failed scrub leaves the preview serving what it served.
//!
//! ```text
//! <preview>/.deploy/preview-data.incoming/   being copied (a leftover is deleted)
//! <preview>/.deploy/preview-data.copied/     whole, not scrubbed yet: waits for a release
//! <preview>/.deploy/preview-data.scrubbing/  being scrubbed (a leftover is deleted)
//! <preview>/.deploy/preview-data.ready/      scrubbed: the swap's `data` step takes it
//! <preview>/.deploy/preview-data.placing/    in the `data` step (a leftover is deleted)
//! ```

use super::Record;
use crate::node::layout::Layout;
use crate::node::request::{Protection, Writers};
use crate::node::Node;
use crate::sys::fsx;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Where a preview's new data is on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Incoming,
    Copied,
    Scrubbing,
    Ready,
    Placing,
}

impl Stage {
    pub fn dir(self, l: &Layout) -> PathBuf {
        let state = match self {
            Stage::Incoming => "incoming",
            Stage::Copied => "copied",
            Stage::Scrubbing => "scrubbing",
            Stage::Ready => "ready",
            Stage::Placing => "placing",
        };
        l.meta().join(format!("preview-data.{state}"))
    }
}

fn delete(dir: &Path) -> Result<()> {
    match dir.exists() {
        true => {
            std::fs::remove_dir_all(dir).with_context(|| format!("cannot delete {}", dir.display()))
        }
        false => Ok(()),
    }
}

/// What a run that was cut off left: a partial copy, a partial scrub, a copy half put in. None
/// is ever used.
pub fn clear_leftovers(l: &Layout) -> Result<()> {
    [Stage::Incoming, Stage::Scrubbing, Stage::Placing]
        .iter()
        .try_for_each(|s| delete(&s.dir(l)))
}

/// The new data waiting to go in, if any: scrubbed already, or not yet.
pub fn pending(l: &Layout) -> Option<(Stage, PathBuf)> {
    [Stage::Ready, Stage::Copied]
        .into_iter()
        .map(|s| (s, s.dir(l)))
        .find(|(_, d)| d.is_dir())
}

/// Every copy on its way deleted (a new one replaces them, or the preview goes).
pub fn drop_all(l: &Layout) -> Result<()> {
    clear_leftovers(l)?;
    [Stage::Copied, Stage::Ready]
        .iter()
        .try_for_each(|s| delete(&s.dir(l)))
}

/// The step line of one scrub command.
pub fn scrub_label(command: &str) -> String {
    format!("Scrub: {command}")
}

impl Node<'_> {
    /// A preview's new data made ready for `version` (whose image is built): the copy waiting
    /// for it scrubbed with `preview.scrub`, each command in a one-off container of that image
    /// on the copy (never on `shared/`). `None` when no new data waits (or this is no
    /// preview). A failed command deletes the copy: nothing of the preview changed.
    pub(crate) fn ready_preview_data(&self, version: &str) -> Result<Option<PathBuf>> {
        let Some(of) = &self.config.preview_of else {
            return Ok(None);
        };
        let l = &self.layout;
        clear_leftovers(l)?;
        let copied = match pending(l) {
            None => return Ok(None),
            Some((Stage::Ready, dir)) => return Ok(Some(dir)),
            Some((_, dir)) => dir,
        };
        let scrubbing = Stage::Scrubbing.dir(l);
        fsx::rename_durable(&copied, &scrubbing)?;
        let spec = self.scrub_spec(&scrubbing);
        for command in &self.config.preview.scrub {
            let ran = self.ui.step(&scrub_label(command), || {
                self.run_one_off(&spec, (version, None), command, "preview.scrub command")
            });
            if let Err(e) = ran {
                delete(&scrubbing)?;
                forget_pending(&l.root)?;
                return Err(e.context(format!(
                    "the new copy of {}'s data was deleted unscrubbed; nothing of {} changed. \
                     Fix preview.scrub, then `deploy preview up {} --from {} --fresh-data` \
                     copies again",
                    of.from, self.env_name, of.name, of.from
                )));
            }
        }
        let ready = Stage::Ready.dir(l);
        fsx::rename_durable(&scrubbing, &ready)?;
        Ok(Some(ready))
    }

    /// `deploy preview up` when its version is live already: the new data waiting, scrubbed
    /// with the live release's image, put in by a swap of the live release (stopped, what it
    /// replaces kept, the data in, the `in_gap` hooks, started, its health checked); nothing
    /// to do when no data waits or nothing is live (the next release takes it).
    pub fn preview_new_data(&self) -> Result<()> {
        let _lock = self.lock(&format!("deploy preview up {}", self.env_name))?;
        crate::signals::defer();
        let Some(live) = self.current()? else {
            return Ok(());
        };
        if pending(&self.layout).is_none() {
            return Ok(());
        }
        if let Some(what) = self.swap_report()? {
            bail!(
                "{what}: settle it first (`deploy status {}`)",
                self.env_name
            );
        }
        let Some(dir) = self.ready_preview_data(&live)? else {
            return Ok(());
        };
        let _fence = self.close_fence(&format!("new data for {}", self.env_name), Writers::Wait)?;
        let systemd = crate::sys::systemd::Systemd::connect()?;
        self.install_recovery(&systemd)?;
        let mut state = self.load_state()?;
        let mv = crate::node::swap::Move::new_data(&live, dir);
        let gap = self.publish(&systemd, &mut state, &mv, Protection::Required)?;
        self.ui.info(&format!(
            "   {live} runs on the new data (gap {})",
            crate::ui::fmt_duration(gap)
        ));
        Ok(())
    }

    /// `deploy preview up --at`: every database of this environment's replica as of `at` (a
    /// time, or how long ago) into `into` (a preview's new data), at its path under shared/;
    /// `work`: a scratch directory. Nothing of this environment is written. Returns the time
    /// as RFC 3339 and the databases.
    pub(crate) fn download_replica(
        &self,
        at: &str,
        secrets: Option<&Path>,
        (work, into): (&Path, &Path),
    ) -> Result<(String, Vec<String>)> {
        let r = self.config.replicate.as_ref().ok_or_else(|| {
            crate::exit::with(
                crate::exit::Code::Config,
                anyhow::anyhow!(
                    "--at restores {}'s data from its replica, and its config has no                      `replicate:`: leave --at out to copy its data as it is now",
                    self.env_name
                ),
            )
        })?;
        crate::node::replicate::litestream_bin()?;
        let at = crate::node::replicate::point_in_time(at, std::time::SystemTime::now())?;
        let env = self.replication().litestream_env(secrets)?;
        fsx::ensure_private_dir(work)?;
        let (config, rels) = self
            .replication()
            .replica_manifest(r, &env, work, Some(&at))?;
        let got = self
            .replication()
            .download_each(&config, &rels, into, Some(&at), &env)?;
        Ok((at, got.iter().map(|r| r.to_string()).collect()))
    }

    /// The app's spec with its mounts and `shared/.env` in `data` instead of `shared/`.
    fn scrub_spec(&self, data: &Path) -> crate::node::unit::UnitSpec {
        let shared = self.layout.shared();
        let moved = |p: &str| match Path::new(p).strip_prefix(&shared) {
            Ok(rel) => data.join(rel).display().to_string(),
            Err(_) => p.to_string(),
        };
        let mut spec = self.runtime().unit_spec();
        for m in &mut spec.mounts {
            m.host = moved(&m.host);
        }
        spec.env_file = spec.env_file.as_deref().map(moved);
        spec
    }

    /// The swap's `data` step: `dir` (the ready copy) becomes `shared/` in one exchange of the
    /// two directories, and what was there is deleted (the gap's snapshot kept its databases).
    pub(crate) fn place_preview_data(&self, dir: &Path) -> Result<()> {
        let l = &self.layout;
        let placing = Stage::Placing.dir(l);
        delete(&placing)?;
        if !dir.is_dir() {
            bail!("{} is not there: no new data to put in", dir.display());
        }
        fsx::rename_durable(dir, &placing)?;
        fsx::ensure_dir(&l.shared(), 0o755)?;
        fsx::exchange(&placing, &l.shared())?;
        delete(&placing)?;
        if let Some(mut r) = Record::read(&l.root)? {
            if let Some(p) = r.pending.take() {
                r.data = Some(p);
            }
            r.write(&l.root)?;
        }
        Ok(())
    }
}

/// The record without the data that was on its way.
fn forget_pending(root: &Path) -> Result<()> {
    if let Some(mut r) = Record::read(root)? {
        r.pending = None;
        r.write(root)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_go_and_a_ready_copy_is_taken_before_a_copied_one() {
        let d = std::env::temp_dir().join(format!("deploy-pv-data-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let l = Layout::new(&d);
        for s in [
            Stage::Incoming,
            Stage::Copied,
            Stage::Scrubbing,
            Stage::Placing,
        ] {
            std::fs::create_dir_all(s.dir(&l)).unwrap();
        }
        clear_leftovers(&l).unwrap();
        assert!(!Stage::Incoming.dir(&l).exists() && !Stage::Scrubbing.dir(&l).exists());
        assert!(!Stage::Placing.dir(&l).exists());
        assert_eq!(pending(&l).map(|(s, _)| s), Some(Stage::Copied));
        std::fs::create_dir_all(Stage::Ready.dir(&l)).unwrap();
        assert_eq!(pending(&l).map(|(s, _)| s), Some(Stage::Ready));
        drop_all(&l).unwrap();
        assert_eq!(pending(&l), None);
        std::fs::remove_dir_all(d).unwrap();
    }
}
