//! `deploy rollback` on the node, in stages: starting -> reverting (the target and its data)
//! -> publishing. The target, and what happens to the data, are chosen by functions that
//! `--dry-run` uses too.
//!
//! The data: a rollback compares the schema of the data the target left (recorded with its
//! snapshot) with today's. The same, it goes ahead and checks again in the gap; different, it
//! needs a choice, `--with-data` (the data the target left) or `--keep-data` (its code on
//! today's data), and without one it changes nothing. A target that recorded no schema (a
//! snapshot older than schemas, `backup: off`) goes ahead with a warning.

use super::swap::Move;
use super::Node;
use crate::config::Backup;
use crate::exit::{self, Code};
use crate::node::request::{Consent, RollbackRequest};
use crate::node::schema::{self, Change, Schemas};
use crate::node::snapshot::{self, Snapshot};
use crate::node::state::State;
use crate::signals;
use crate::sys::systemd::Systemd;
use crate::ui::fmt_duration;
use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant, SystemTime};

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

/// What the user said about the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataChoice {
    /// Nothing: the data stays if its schema is the target's.
    Unsaid,
    /// `--with-data`: the data the target left is put back.
    WithData,
    /// `--keep-data`: the target's code runs on today's data, whatever its schema.
    KeepData,
}

/// What a rollback does with the data in `shared/`.
#[derive(Debug, Clone, PartialEq)]
pub enum DataPlan {
    /// It stays. `expect`: the schema the target left, which the data has (checked again in
    /// the gap); none when the target recorded none.
    Stay { expect: Option<Schemas> },
    /// The data the target left is put back (`--with-data`).
    Restore(Snapshot),
    /// It stays though its schema may differ (`--keep-data`).
    Keep,
    /// Its schema is not the one the target left, and neither was chosen: the rollback asks
    /// (on a terminal, before it runs) or refuses.
    Ask(DataQuestion),
}

/// A rollback that needs a choice about the data: its target, and why, with the two ways on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataQuestion {
    pub target: String,
    /// What changed and the two ways on (`--with-data`, `--keep-data`).
    pub text: String,
}

/// `12m 5s ago`, for a snapshot's stamp. Pure apart from the clock.
fn age(stamp: &str) -> String {
    humantime::parse_rfc3339(stamp)
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .map(|d| {
            let secs = Duration::from_secs(d.as_secs());
            format!("{} ago", humantime::format_duration(secs))
        })
        .unwrap_or_else(|| "at an unknown time".into())
}

/// What changed since `target` left the data `left`, and the two ways on. Pure apart from the
/// clock (the snapshot's age).
pub fn question_text(target: &str, left: &Snapshot, changes: &[Change]) -> String {
    let list: String = changes.iter().map(|c| format!("\n  {c}")).collect();
    format!(
        "the schema of the data changed since {target} left it:{list}\n\
         a rollback to {target} goes on in one of two ways:\n  \
         --with-data  {target} and the data it left at {} ({}): everything written since \
         then stays only in a kept snapshot\n  \
         --keep-data  {target}'s code on today's data, for an app known to cope with the newer \
         schema",
        left.stamp,
        age(&left.stamp)
    )
}

/// What the rollback does with the data, from the choice, the newest data the target left
/// (`left`) and today's schema (`now`, read only when it counts). Returns a warning to show
/// when the target recorded no schema. Pure.
pub fn decide(
    choice: DataChoice,
    target: &str,
    left: Option<Snapshot>,
    now: impl FnOnce() -> Result<Schemas>,
) -> Result<(DataPlan, Option<String>)> {
    match choice {
        DataChoice::KeepData => return Ok((DataPlan::Keep, None)),
        DataChoice::WithData => {
            let left = left.ok_or_else(|| {
                anyhow!(
                    "there is no data snapshot of {target}: one is taken when a release is \
                     replaced (with `backup: snapshot`), and {target} has not been since it ran. \
                     Roll back without --with-data"
                )
            })?;
            return Ok((DataPlan::Restore(left), None));
        }
        DataChoice::Unsaid => {}
    }
    let Some((left, then)) = left.and_then(|l| l.manifest.schemas.clone().map(|s| (l, s))) else {
        let warning = format!(
            "{target} recorded no schema of the data it left (it ran before deploy recorded \
             schemas, or with `backup: off`): rolling back without checking that it knows \
             today's data"
        );
        return Ok((DataPlan::Stay { expect: None }, Some(warning)));
    };
    let changes = schema::diff(&then, &now()?);
    if !changes.is_empty() {
        let text = question_text(target, &left, &changes);
        let target = target.to_string();
        return Ok((DataPlan::Ask(DataQuestion { target, text }), None));
    }
    Ok((DataPlan::Stay { expect: Some(then) }, None))
}

/// A rollback that needed a choice about the data and got none: it changes nothing (exit 1).
pub fn refusal(q: &DataQuestion) -> anyhow::Error {
    exit::with(
        Code::Failed,
        anyhow!(
            "{}\nNothing changed: roll back again with --with-data or --keep-data (--yes chooses \
             neither)",
            q.text
        ),
    )
}

impl Node<'_> {
    /// The rollback's target, as the real command and `--dry-run` choose it.
    pub(crate) fn rollback_target(
        &self,
        systemd: Option<&Systemd>,
        state: &State,
        to: Option<&str>,
    ) -> Result<String> {
        let running = systemd.is_none_or(|s| self.runtime().app_running(s));
        target(
            state,
            &self.releases_on_disk()?,
            self.current()?.as_deref(),
            to,
            running,
            &self.env_name,
        )
    }

    /// Today's schema of the data: every database in `shared/`, opened read-only.
    pub(crate) fn schema_now(&self) -> Result<Schemas> {
        schema::of_dir(&self.layout.shared())
    }

    /// What a rollback to `target` does with the data, as the command and `--dry-run` decide
    /// it. Changes nothing.
    pub(crate) fn rollback_data(
        &self,
        target: &str,
        choice: DataChoice,
    ) -> Result<(DataPlan, Option<String>)> {
        let left = snapshot::latest(&self.layout.snapshots(target), snapshot::Kind::Left)?;
        decide(choice, target, left, || self.schema_now())
    }

    /// The move of a rollback to `target` with `data`, as the command and `--dry-run` plan it.
    pub(crate) fn rollback_move(
        &self,
        state: &State,
        target: &str,
        current: Option<&str>,
        data: &DataPlan,
    ) -> Move {
        let snapshots = self.config.backup == Backup::Snapshot;
        let restore = match data {
            DataPlan::Restore(s) => Some(s.dir.clone()),
            _ => None,
        };
        let mv = Move::rollback(target, current, restore, snapshots)
            .leaving_kept_data(state.on_kept_data(current));
        match data {
            DataPlan::Stay { expect } => mv.expecting(expect.clone()),
            DataPlan::Keep => mv.on_kept_data(),
            DataPlan::Restore(_) | DataPlan::Ask(_) => mv,
        }
    }

    /// For a rollback not told what to do with the data: the question it needs answered
    /// (the schema changed since the target left its data), if any. Read-only: what asks
    /// first, where there is a terminal, before the rollback runs.
    pub fn data_question(&self, to: Option<&str>) -> Result<Option<DataQuestion>> {
        self.require_setup()?;
        let state = self.load_state()?;
        let systemd = Systemd::connect().ok();
        let target = self.rollback_target(systemd.as_ref(), &state, to)?;
        Ok(match self.rollback_data(&target, DataChoice::Unsaid)?.0 {
            DataPlan::Ask(q) => Some(q),
            _ => None,
        })
    }

    /// The `schema` step of a rollback's gap: the data, now that the app stopped, still has
    /// the schema `target` left (nothing changed it since the check before the stop).
    pub(crate) fn schema_unchanged(&self, target: &str, expected: &Schemas) -> Result<()> {
        let changes = schema::diff(expected, &self.schema_now()?);
        if changes.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        bail!(
            "the schema of the data changed after the rollback checked it: {} ({target} left \
             another). Roll back again, to choose --with-data or --keep-data",
            list.join("; ")
        )
    }

    pub fn rollback(&self, req: &RollbackRequest) -> Result<()> {
        let rt = self.runtime();
        // Starting.
        let _lock = self.lock(&format!("deploy rollback {}", self.env_name))?;
        rt.refuse_if_stopped("the rollback")?;
        signals::defer();
        self.check_podman()?;
        let systemd = Systemd::connect()?;
        let mut state = self.load_state()?;
        self.recover(&systemd, &mut state, req.protection, req.to.is_some())?;
        self.settle_replaced(&mut state)?;
        // Releases run with their own settings; one made before they carried them gets them.
        self.complete_release_envs()?;
        // Reverting: the target, its image and its data.
        let current = self.current()?;
        let target = self.rollback_target(Some(&systemd), &state, req.to.as_deref())?;
        let (data, warning) = self.rollback_data(&target, req.data)?;
        if let Some(w) = warning {
            self.ui.warn(&w);
        }
        match &data {
            DataPlan::Ask(q) => return Err(refusal(q)),
            DataPlan::Restore(left) => {
                self.confirm_data_restore(&target, left, current.as_deref(), req.consent)?
            }
            DataPlan::Stay { .. } | DataPlan::Keep => {}
        }
        let image = rt.ensure_image(&state, &target)?;
        if !state.releases.contains_key(&target) {
            state.add_release(&target, &image);
        }
        // Publishing.
        let started = Instant::now();
        let mv = self.rollback_move(&state, &target, current.as_deref(), &data);
        self.install_recovery(&systemd)?;
        let _fence = self.close_fence(&format!("the rollback to {target}"), req.writers)?;
        let gap = self.publish(&systemd, &mut state, &mv, req.protection)?;
        let total = started.elapsed();
        self.ui.done(
            &format!(
                "rolled back {} on {} to {target}{}{} ({} in all, gap {})",
                self.config.app,
                self.env_name,
                current
                    .as_deref()
                    .map(|c| format!(" from {c}"))
                    .unwrap_or_default(),
                match data {
                    DataPlan::Restore(_) => ", with the data it left",
                    DataPlan::Keep => ", on today's data",
                    DataPlan::Stay { .. } | DataPlan::Ask(_) => "",
                },
                fmt_duration(total),
                fmt_duration(gap)
            ),
            serde_json::json!({
                "action": "rollback",
                "version": target,
                "previous": current,
                "environment": self.env_name,
                "with_data": req.data == DataChoice::WithData,
                "keep_data": req.data == DataChoice::KeepData,
                "total_ms": total.as_millis() as u64,
                "gap_ms": gap.as_millis() as u64,
            }),
        );
        Ok(())
    }

    /// `rollback --with-data`: the user said yes to replacing the data with `left`.
    fn confirm_data_restore(
        &self,
        target: &str,
        left: &Snapshot,
        current: Option<&str>,
        consent: Consent,
    ) -> Result<()> {
        let kept_as = if current == Some(target) {
            format!("what was there before the restore, with {target}")
        } else {
            format!("a snapshot of {}", current.unwrap_or("the live release"))
        };
        let question = format!(
            "--with-data replaces the SQLite databases in {} with the snapshot {target} left at \
             {} ({}); the data there now is kept as {kept_as}",
            self.layout.shared().display(),
            left.stamp,
            age(&left.stamp)
        );
        if consent == Consent::Given {
            self.ui.info(&format!("   {question}"));
            return Ok(());
        }
        if !self.ui.ask(&format!("{question}. Go on?"))? {
            bail!("{question}: not confirmed, nothing changed (pass --yes to confirm without a prompt)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::schema::DbSchema;
    use crate::node::snapshot::{Kind, Manifest};

    fn schemas(fingerprint: &str, columns: &[&str]) -> Schemas {
        let tables = [(
            "hits".to_string(),
            columns.iter().map(|c| c.to_string()).collect(),
        )];
        Schemas::from([(
            "data/app.db".to_string(),
            DbSchema {
                fingerprint: fingerprint.into(),
                user_version: 0,
                tables: tables.into(),
            },
        )])
    }

    fn left(schemas: Option<Schemas>) -> Option<Snapshot> {
        Some(Snapshot {
            stamp: "2026-01-01T00:00:00.000Z".into(),
            dir: "/s/v1".into(),
            manifest: Manifest {
                kind: Kind::Left,
                schemas,
                method: None,
                bytes: None,
                replica: None,
            },
        })
    }

    #[test]
    fn the_data_stays_on_the_same_schema_and_a_changed_one_needs_a_choice() {
        let then = schemas("a", &["id"]);
        let (plan, warning) = decide(DataChoice::Unsaid, "v1", left(Some(then.clone())), || {
            Ok(then.clone())
        })
        .unwrap();
        assert_eq!(
            plan,
            DataPlan::Stay {
                expect: Some(then.clone())
            }
        );
        assert_eq!(warning, None);

        let now = || Ok(schemas("b", &["id", "extra"]));
        let (plan, _) = decide(DataChoice::Unsaid, "v1", left(Some(then.clone())), now).unwrap();
        let DataPlan::Ask(q) = plan else {
            panic!("{plan:?}")
        };
        assert_eq!(q.target, "v1");
        assert!(
            q.text.contains("data/app.db: column added: hits.extra"),
            "{}",
            q.text
        );
        assert!(q
            .text
            .contains("--with-data  v1 and the data it left at 2026-01-01T00:00:00.000Z ("));
        assert!(q.text.contains("--keep-data  v1's code on today's data"));
        let e = format!("{:#}", refusal(&q));
        assert!(
            e.contains("Nothing changed") && e.contains("--yes chooses neither"),
            "{e}"
        );

        // Either choice goes on, whatever the schema.
        let (plan, _) = decide(DataChoice::KeepData, "v1", left(Some(then.clone())), now).unwrap();
        assert_eq!(plan, DataPlan::Keep);
        let (plan, _) = decide(DataChoice::WithData, "v1", left(Some(then)), now).unwrap();
        assert!(matches!(plan, DataPlan::Restore(s) if s.dir == std::path::Path::new("/s/v1")));
    }

    #[test]
    fn a_release_with_no_recorded_schema_goes_ahead_with_a_warning() {
        let unread = || -> Result<Schemas> { panic!("today's schema is not read") };
        for l in [left(None), None] {
            let (plan, warning) = decide(DataChoice::Unsaid, "v1", l, unread).unwrap();
            assert_eq!(plan, DataPlan::Stay { expect: None });
            assert!(warning.unwrap().contains("v1 recorded no schema"));
        }
        let e = decide(DataChoice::WithData, "v1", None, unread).unwrap_err();
        assert!(format!("{e}").contains("there is no data snapshot of v1"));
    }

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
