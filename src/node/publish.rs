//! Publishing: the swap of a release or rollback, and the recovery of a swap whose process
//! died, run by the one executor and written into the state's history.

use super::swap::effects::NodeEffects;
use super::swap::exec::{self, Outcome};
use super::swap::journal::{self, Journal};
use super::swap::{self, Kind, Move, Settings};
use super::{event, Node};
use crate::exit::{self, Code};
use crate::node::request::Protection;
use crate::node::state::{self, Action, EventOutcome, State};
use crate::sys::systemd::Systemd;
use anyhow::{anyhow, Result};
use std::path::PathBuf;
use std::time::Duration;

impl Node<'_> {
    fn journal_path(&self) -> PathBuf {
        self.layout.meta().join(journal::FILE)
    }

    /// What a swap's plan depends on.
    pub(crate) fn swap_settings(&self) -> Settings {
        let socket = self.config.listen == crate::config::Listen::Socket;
        Settings {
            // In socket mode Traefik points at the socket, which holds connections itself: the
            // router is never switched.
            protected: self.config.traefik.is_some() && !socket,
            hooks: self.config.hooks.in_gap.clone(),
            // In both modes: the unit's start waits while the swap holds it (see the unit).
            hold: true,
        }
    }

    /// The entries of an unfinished swap's journal, if one was left.
    pub(crate) fn unfinished_swap(&self) -> Result<Option<Vec<swap::Entry>>> {
        journal::read(&self.journal_path())
    }

    /// For `deploy status`: a swap under way, or one whose process died and what the next
    /// command does about it.
    pub(crate) fn swap_report(&self) -> Result<Option<String>> {
        let Some(entries) = self.unfinished_swap()? else {
            return Ok(None);
        };
        let Some(first) = swap::first_move(&entries) else {
            return Ok(None);
        };
        let owner = entry_owner(&entries);
        let pid = owner.pid;
        let what = format!("a {} to {}", first.kind.as_str(), first.target());
        let at = last_step(&entries);
        if owner.alive() && pid != std::process::id() {
            return Ok(Some(format!("{what} is under way (pid {pid}), {at}")));
        }
        let next = match swap::recovery(&entries) {
            Some(m) if m.kind == Kind::Confirm => format!(
                "keeps {}, which had passed its health check",
                first.target()
            ),
            Some(m @ Move { to: Some(_), .. }) => format!("puts {}", putting_back(&m)),
            _ => "stops the app".into(),
        };
        Ok(Some(format!(
            "{what} was interrupted (its process {pid} died {at}): the next release or rollback {next}"
        )))
    }

    /// Runs the swap `mv` (a release or a rollback) and records how it went. Returns the gap.
    pub(crate) fn publish(
        &self,
        systemd: &Systemd,
        state: &mut State,
        mv: &Move,
        protection: Protection,
    ) -> Result<Duration> {
        let repl = self.replication();
        let _traefik = self.front().hold_traefik_shared()?; // no restart of Traefik in the gap
        let journal = Journal::open(&self.journal_path())?;
        let mut fx = NodeEffects::new(self, systemd, protection)?;
        let outcome = exec::swap(&mut fx, journal, mv, &self.swap_settings());
        // Out of the gap: the older snapshots the gap's replaced.
        crate::node::snapshot::remove_dirs(std::mem::take(&mut fx.old_snapshots));
        // Litestream resumes from the data as restored (the replica follows it from now on),
        // and a database the new release created is replicated from here.
        if fx.replication_stopped || matches!(outcome, Outcome::Live { .. }) {
            if let Err(e) = repl.sync(systemd) {
                self.ui.warn(&format!("replication: {e:#}"));
            }
        }
        // After the gap: the replica holds the data at the stop, as a second way back.
        for dir in &fx.replica_to_confirm {
            repl.confirm_replica(dir);
        }
        let logs = fx.failure_log.take().unwrap_or_default();
        let (action, verb) = (mv.kind.action(), mv.kind.as_str());
        let to = mv.target();
        let from = mv.from.clone();
        match outcome {
            Outcome::Live { gap, front } => {
                state.set_outcome(to, state::Outcome::Ok);
                state.set_kept_data(to, mv.kept_data);
                let detail = match (&mv.restore, mv.kept_data) {
                    (Some(_), _) => Some("with its data"),
                    (None, true) => Some("on today's data (--keep-data)"),
                    (None, false) => None,
                };
                state.push_event(event(action, to, from, EventOutcome::Ok, Some(gap), detail));
                self.save_state(state)?;
                // The app is healthy: what older restores set aside may go.
                self.data().prune_replaced();
                match front {
                    None => Ok(gap),
                    Some(e) => Err(e.context(format!(
                        "{to} is live, but Traefik still routes {} to the gap server: run \
                         `deploy maintenance off {}` once Traefik answers",
                        self.config.app, self.env_name
                    ))),
                }
            }
            Outcome::NotStarted(e) => Err(e),
            Outcome::Undone { error, back } => {
                let detail = self.record_failure(state, mv, &error)?;
                let (said, code) = self.went_back(&back);
                Err(exit::with(
                    code,
                    anyhow!("{verb} of {to} failed: {detail}\n{said}.\nThe app's last log lines:\n{logs}"),
                ))
            }
            Outcome::Stuck { error, back_error } => {
                let detail = self.record_failure(state, mv, &error)?;
                Err(exit::with(
                    Code::Failed,
                    anyhow!(
                        "{verb} of {to} failed: {detail}\nputting the previous release back \
                         failed too: {back_error:#}. The next deploy command tries again (pass \
                         --unprotected to it if Traefik is down); `deploy status {}` shows the state, \
                         the app's log is {}.\nThe app's last log lines:\n{logs}",
                        self.env_name,
                        self.layout.app_log(&self.config.app).display()
                    ),
                ))
            }
        }
    }

    /// A failed move goes into the history; returns its error as one line of detail.
    fn record_failure(
        &self,
        state: &mut State,
        mv: &Move,
        error: &anyhow::Error,
    ) -> Result<String> {
        let (to, detail) = (mv.target(), format!("{error:#}"));
        state.set_outcome(to, state::Outcome::Failed);
        let failed = event(
            mv.kind.action(),
            to,
            mv.from.clone(),
            EventOutcome::Failed,
            None,
            Some(&detail),
        );
        state.push_event(failed);
        self.save_state(state)?;
        Ok(detail)
    }

    /// What going back did, in words, and the exit code that says it.
    fn went_back(&self, back: &Move) -> (String, Code) {
        match (back.kind, &back.to) {
            (Kind::Halt, _) => {
                let prev = back.from.as_deref().unwrap_or("the previous release");
                let env = &self.env_name;
                (
                    format!(
                        "The app is stopped: the data may have been changed (by a hook or the \
                         new release's start) and there is no snapshot to put back (backup: \
                         off), so the release before it was not started on that data. Either \
                         start it on this data with `deploy rollback --to VERSION {env}`, or fix \
                         the problem and release again (not {prev}'s version: a new one)"
                    ),
                    Code::Failed,
                )
            }
            (_, Some(prev)) => (
                format!(
                    "{prev} is serving again{}",
                    if back.restore.is_some() {
                        ", with the data it left (what the failed attempt left is kept as its snapshot)"
                    } else {
                        ""
                    }
                ),
                Code::RolledBack,
            ),
            (_, None) => (
                "nothing was live before it; the app is stopped".into(),
                Code::RolledBack,
            ),
        }
    }

    /// A swap whose process died left its journal: put right what it left, as the journal
    /// says (with the data when anything touched it), and record it. With `replaceable`, a
    /// recovery that fails is set aside (the command goes on and replaces it) instead of
    /// stopping the command.
    pub(crate) fn recover(
        &self,
        systemd: &Systemd,
        state: &mut State,
        protection: Protection,
        replaceable: bool,
    ) -> Result<()> {
        let path = self.journal_path();
        if !path.exists() {
            return Ok(());
        }
        let journal = Journal::open(&path)?;
        let entries = journal.entries.clone();
        let Some(first) = swap::first_move(&entries).cloned() else {
            return journal.close();
        };
        let to = first.target().to_string();
        let plan = swap::recovery(&entries);
        self.ui.warn(&interrupted(&first, &entries, &plan));
        state.push_event(event(
            first.kind.action(),
            &to,
            first.from.clone(),
            EventOutcome::Interrupted,
            None,
            Some(&format!(
                "the swap's process died ({})",
                last_step(&entries)
            )),
        ));
        self.save_state(state)?;
        let mut fx = NodeEffects::new(self, systemd, protection)?;
        let _traefik = self.front().hold_traefik_shared()?; // no restart of Traefik in the gap
        let outcome = exec::recover(&mut fx, journal, &self.swap_settings());
        crate::node::snapshot::remove_dirs(std::mem::take(&mut fx.old_snapshots));
        // Litestream runs again on the data as it now is, whatever the recovery did.
        if let Err(e) = self.replication().sync(systemd) {
            self.ui.warn(&format!("replication: {e:#}"));
        }
        self.record_recovery(state, outcome, plan, first, replaceable)
    }

    /// What the recovery of the interrupted swap `first` did (`plan`: what it was to do), into
    /// the state and the history.
    fn record_recovery(
        &self,
        state: &mut State,
        outcome: Outcome,
        plan: Option<Move>,
        first: Move,
        replaceable: bool,
    ) -> Result<()> {
        let to = first.target().to_string();
        let back = |m: &Move| m.to.clone().unwrap_or_default();
        match (outcome, plan) {
            (Outcome::Live { .. }, Some(m)) if m.kind == Kind::Confirm => {
                state.set_outcome(&to, state::Outcome::Ok);
                state.set_kept_data(&to, first.kept_data);
                state.push_event(event(
                    Action::Recover,
                    &to,
                    first.from,
                    EventOutcome::Ok,
                    None,
                    Some("kept: it had passed its health check"),
                ));
            }
            (Outcome::Live { .. }, Some(m)) | (Outcome::Undone { back: m, .. }, _) => {
                state.set_outcome(&to, state::Outcome::Failed);
                let (said, _) = self.went_back(&m);
                self.ui.info(&format!("   {said}"));
                let recovered = event(
                    Action::Recover,
                    &back(&m),
                    Some(to),
                    EventOutcome::Ok,
                    None,
                    None,
                );
                state.push_event(recovered);
            }
            (Outcome::Stuck { back_error, .. }, _) | (Outcome::NotStarted(back_error), _) => {
                return self.recovery_stuck(state, back_error, first, replaceable);
            }
            (Outcome::Live { .. }, None) => {}
        }
        self.save_state(state)
    }

    /// The recovery of `first` failed: recorded; an error that says what to do, or, with
    /// `replaceable`, its journal set aside for the command to replace that swap.
    fn recovery_stuck(
        &self,
        state: &mut State,
        back_error: anyhow::Error,
        first: Move,
        replaceable: bool,
    ) -> Result<()> {
        let to = first.target().to_string();
        state.push_event(event(
            Action::Recover,
            &to,
            first.from,
            EventOutcome::Failed,
            None,
            Some(&format!("{back_error:#}")),
        ));
        self.save_state(state)?;
        let e = back_error.context(format!(
            "recovering the interrupted {} of {to} failed",
            first.kind.as_str()
        ));
        if !replaceable {
            return Err(e.context(format!(
                "run the command again once the cause is fixed (pass --unprotected if \
                 Traefik is down), or replace that swap with `deploy release` or \
                 `deploy rollback --to VERSION {}`",
                self.env_name
            )));
        }
        self.ui
            .warn(&format!("{e:#}: this command replaces that swap"));
        // A stuck recovery leaves its journal: it goes aside for a look.
        let aside = Journal::open(&self.journal_path())?.set_aside()?;
        self.ui
            .info(&format!("   its journal is kept as {}", aside.display()));
        Ok(())
    }
}

/// What is said of the interrupted swap `first` (its journal's `entries`) before its recovery
/// (`plan`). Pure.
fn interrupted(first: &Move, entries: &[swap::Entry], plan: &Option<Move>) -> String {
    let to = first.target();
    format!(
        "a {} to {to} (pid {}) was interrupted during its swap, {}: {}",
        first.kind.as_str(),
        entry_owner(entries).pid,
        last_step(entries),
        match plan {
            Some(m) if m.kind == Kind::Confirm =>
                format!("{to} had passed its health check: checking it again"),
            Some(m) if m.kind == Kind::Halt =>
                "the data may have changed and there is no snapshot: the app stays stopped".into(),
            Some(m @ Move { to: Some(_), .. }) => format!("putting {}", putting_back(m)),
            _ => "nothing was live before it; stopping the app".into(),
        }
    )
}

/// `v1 back with the data it left`: what a move that goes back does, for messages.
fn putting_back(m: &Move) -> String {
    format!(
        "{} back{}",
        m.target(),
        if m.restore.is_some() {
            " with the data it left"
        } else {
            ""
        }
    )
}

pub(crate) fn entry_owner(entries: &[swap::Entry]) -> journal::Owner {
    entries
        .iter()
        .find_map(|e| match e {
            swap::Entry::Move { owner, .. } => Some(owner.clone()),
            _ => None,
        })
        .unwrap_or(journal::Owner::pid(0))
}

/// `in its step "hook"`, from the last step the journal names.
pub(crate) fn last_step(entries: &[swap::Entry]) -> String {
    let step = entries.iter().rev().find_map(|e| match e {
        swap::Entry::Begin { step }
        | swap::Entry::Failed { step, .. }
        | swap::Entry::Done { step, .. } => Some(step.name()),
        swap::Entry::Move { .. } => None,
    });
    match step {
        Some(s) => format!("in its step `{s}`"),
        None => "before its first step".into(),
    }
}
