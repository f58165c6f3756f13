//! `deploy rollback` on the node, in stages: starting -> reverting (the target and its data)
//! -> publishing. The target is chosen by one function that `--dry-run` uses too.

use super::swap::Move;
use super::Node;
use crate::cli::RollbackArgs;
use crate::config::Backup;
use crate::node::state::State;
use crate::sys::systemd::Systemd;
use crate::ui::fmt_duration;
use crate::{node::snapshot, signals, version};
use anyhow::{anyhow, bail, Result};
use std::path::PathBuf;
use std::time::Instant;

/// The release a rollback goes to: the one named (which must be on disk, and not the live one
/// while the app runs: a stopped app may be started on its live release again), else the one
/// before the live one. Pure.
pub fn target(
    state: &State,
    on_disk: &[String],
    current: Option<&str>,
    to: Option<&str>,
    running: bool,
    env: &str,
) -> Result<String> {
    if let Some(t) = to {
        version::check(t)?;
        if !on_disk.iter().any(|v| v == t) {
            bail!(
                "there is no release {t} on {env}: it has {}",
                if on_disk.is_empty() {
                    "none".into()
                } else {
                    on_disk.join(", ")
                }
            );
        }
        if current == Some(t) && running {
            bail!("{t} is already the live release");
        }
        return Ok(t.to_string());
    }
    let cur = current
        .ok_or_else(|| anyhow!("nothing is live on {env} yet: there is nothing to roll back"))?;
    state.previous(on_disk, cur).ok_or_else(|| {
        anyhow!(
            "there is no release before {cur} to roll back to (releases: {}); name one with --to",
            on_disk.join(", ")
        )
    })
}

impl Node<'_> {
    /// Whether the app's unit runs (or is on its way up or down).
    pub(crate) fn app_running(&self, systemd: &Systemd) -> bool {
        systemd
            .state(&self.unit_name())
            .map(|s| !s.active.is_down())
            .unwrap_or(true)
    }

    /// The rollback's target, as the real command and `--dry-run` choose it.
    pub(crate) fn rollback_target(
        &self,
        systemd: Option<&Systemd>,
        state: &State,
        to: Option<&str>,
    ) -> Result<String> {
        let running = systemd.is_none_or(|s| self.app_running(s));
        target(
            state,
            &self.releases_on_disk()?,
            self.current()?.as_deref(),
            to,
            running,
            &self.env_name,
        )
    }

    pub fn rollback(&self, req: &RollbackArgs) -> Result<()> {
        // Starting.
        let _lock = self.lock(&format!("deploy rollback {}", self.env_name))?;
        self.refuse_if_stopped("the rollback")?;
        signals::defer();
        self.check_podman()?;
        let systemd = Systemd::connect()?;
        let mut state = self.load_state()?;
        self.recover(&systemd, &mut state, req.unprotected, req.to.is_some())?;
        // Releases run with their own settings; one made before they carried them gets them.
        self.complete_release_envs()?;
        // Reverting: the target, its image and its data.
        let current = self.current()?;
        let target = self.rollback_target(Some(&systemd), &state, req.to.as_deref())?;
        let restore = if req.with_data {
            Some(self.confirm_data_restore(&target, current.as_deref(), req.yes)?)
        } else {
            None
        };
        let image = self.ensure_image(&state, &target)?;
        if !state.releases.contains_key(&target) {
            state.add_release(&target, &image);
        }
        // Publishing.
        let started = Instant::now();
        let snapshots = self.config.backup == Backup::Snapshot;
        let mv = Move::rollback(&target, current.as_deref(), restore, snapshots);
        self.install_recovery(&systemd)?;
        let _fence = self.close_fence(&format!("the rollback to {target}"), req.stop_running)?;
        let gap = self.publish(&systemd, &mut state, &mv, req.unprotected)?;
        let total = started.elapsed();
        self.ui.done(
            &format!(
                "rolled back {} on {} to {target}{} ({} in all, gap {})",
                self.config.app,
                self.env_name,
                current
                    .as_deref()
                    .map(|c| format!(" from {c}"))
                    .unwrap_or_default(),
                fmt_duration(total),
                fmt_duration(gap)
            ),
            serde_json::json!({
                "action": "rollback",
                "version": target,
                "previous": current,
                "environment": self.env_name,
                "with_data": req.with_data,
                "total_ms": total.as_millis() as u64,
                "gap_ms": gap.as_millis() as u64,
            }),
        );
        Ok(())
    }

    /// `rollback --with-data`: the target's newest snapshot, once the user said yes.
    fn confirm_data_restore(
        &self,
        target: &str,
        current: Option<&str>,
        yes: bool,
    ) -> Result<PathBuf> {
        let (stamp, dir) = snapshot::latest(&self.layout.snapshots(target))?.ok_or_else(|| {
            anyhow!(
                "there is no data snapshot of {target}: one is taken when a release is replaced \
                 (with `backup: snapshot`), and {target} has not been since it ran. Roll back \
                 without --with-data"
            )
        })?;
        let question = format!(
            "--with-data replaces the SQLite databases in {} with the snapshot {target} left at \
             {stamp}; the data there now is kept as a snapshot of {}",
            self.layout.shared().display(),
            current.unwrap_or("the live release")
        );
        if yes {
            self.ui.info(&format!("   {question}"));
            return Ok(dir);
        }
        if !self.ui.ask(&format!("{question}. Go on?"))? {
            bail!("{question}: not confirmed, nothing changed (pass --yes to confirm without a prompt)");
        }
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_release_is_refused_while_it_runs_and_started_again_when_stopped() {
        let mut s = State::default();
        s.add_release("v1", "i");
        s.add_release("v2", "i");
        let disk = vec!["v1".to_string(), "v2".to_string()];
        let e = target(&s, &disk, Some("v2"), Some("v2"), true, "prod").unwrap_err();
        assert!(format!("{e}").contains("already the live release"));
        assert_eq!(
            target(&s, &disk, Some("v2"), Some("v2"), false, "prod").unwrap(),
            "v2"
        );
        assert_eq!(
            target(&s, &disk, Some("v2"), None, true, "prod").unwrap(),
            "v1"
        );
        let e = target(&s, &disk, Some("v2"), Some("v9"), true, "prod").unwrap_err();
        assert!(format!("{e}").contains("there is no release v9 on prod"));
    }
}
