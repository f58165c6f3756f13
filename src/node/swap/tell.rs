//! Each step of a swap in words, in one place: the line it shows while it runs and what
//! `--dry-run` says it does.

use super::{Kind, Move, Step};
use crate::node::layout::Layout;
use crate::node::{unit, Node};
use crate::sys::health;

/// A swap's step as people read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Told {
    /// The line it shows while it runs (`-> LABEL ... ok`).
    pub label: String,
    /// What it does, for `--dry-run`.
    pub what: String,
}

fn told(label: impl Into<String>, what: impl Into<String>) -> Told {
    Told {
        label: label.into(),
        what: what.into(),
    }
}

impl Node<'_> {
    /// The step `step` of the move `mv`, in words.
    pub(crate) fn tell_step(&self, step: &Step, mv: &Move) -> Told {
        let rt = self.runtime();
        let (unit, to, shared) = (rt.unit_name(), mv.target(), self.layout.shared());
        let shared = shared.display();
        match step {
            Step::PreCopy => told(
                "Copying the data before the stop",
                format!(
                    "before the stop, the SQLite databases in WAL mode in {shared} are copied \
                     (where the file system cannot clone them), each in a read transaction held \
                     until the snapshot brings the copy up to date, with a second copy beside it \
                     for a put-back by rename{}; free disk checked first",
                    match (mv.kind, &mv.restore) {
                        (Kind::Rollback, Some(_)) => ", and the target's data made ready too",
                        _ => "",
                    }
                ),
            ),
            Step::Clear => told(
                "Removing the one-off containers (hooks, exec) that may write",
                format!(
                    "every one-off container labelled {} (in_gap hooks, deploy exec, jobs) is \
                     removed, confirmed gone",
                    self.names().writer_label()
                ),
            ),
            Step::Image { version } => told(
                format!("Image of {version}"),
                format!(
                    "{} (rebuilt from releases/{version} if missing)",
                    rt.image(version)
                ),
            ),
            Step::EnterGap => told(crate::front::ENTER_GAP_STEP, self.gap_words()),
            Step::Stop => told(
                format!("Stopping {unit}"),
                format!("{unit} (over D-Bus, waiting for the job)"),
            ),
            Step::Schema => told(
                format!("Checking that the data's schema is the one {to} left"),
                format!(
                    "the schema of the SQLite databases in {shared} is the one {to} left (checked \
                     before too); else the rollback fails and what was live starts again"
                ),
            ),
            Step::Hold
            | Step::Unhold
            | Step::Snapshot { .. }
            | Step::Restore { .. }
            | Step::Data { .. }
            | Step::Switch { .. }
            | Step::Unlink => self.tell_in_gap(step, mv),
            Step::Hook { command } => told(
                format!("Hook in_gap: {command}"),
                self.hook_words(mv, command),
            ),
            Step::Start => told(format!("Starting {unit}"), unit.clone()),
            Step::Health => {
                let url = health::url(self.env.port, &self.config.health.path);
                told(
                    format!("Health check {url}"),
                    format!(
                        "GET {url} until 2xx, {} at most",
                        humantime::format_duration(self.config.health.timeout)
                    ),
                )
            }
            Step::LeaveGap => told(
                crate::front::LEAVE_GAP_STEP,
                "Traefik routes back to the app",
            ),
        }
    }

    /// The steps in the gap that hold starts, change the data in `shared/` or `current`, in
    /// words.
    fn tell_in_gap(&self, step: &Step, mv: &Move) -> Told {
        let (to, shared) = (mv.target(), self.layout.shared());
        let shared = shared.display();
        match step {
            Step::Snapshot { .. } if mv.kind == Kind::Restore => told(
                "Snapshot of the data it replaces",
                format!(
                    "the SQLite databases in {shared} into .deploy/replaced/<stamp>/ (what it \
                     replaces)"
                ),
            ),
            Step::Snapshot { of, kind } => told(
                format!("Snapshot of {}", kind.what(of)),
                format!(
                    "the SQLite databases in {shared} into releases/{of}/.deploy/snapshots/ ({})",
                    kind.what(of)
                ),
            ),
            Step::Restore { .. } if mv.kind == Kind::Restore => told(
                "Putting the replica's databases in",
                format!(
                    "the downloaded databases renamed into shared/{}",
                    match mv.only_into_empty {
                        true => {
                            "; refused if one is there already (with the app stopped: --overwrite)"
                        }
                        false => "",
                    }
                ),
            ),
            Step::Restore { snapshot } => told(
                format!("Restoring the data of {to}"),
                format!(
                    "the data {to} left (snapshot {}) into shared/",
                    snapshot.file_name().unwrap_or_default().to_string_lossy()
                ),
            ),
            Step::Data { dir } => told(
                "Putting the preview's new data in",
                format!(
                    "{} (a copy of {}'s data, scrubbed) becomes shared/ (one rename, exchanged)",
                    dir.display(),
                    self.config
                        .preview_of
                        .as_ref()
                        .map_or("the environment", |o| o.from.as_str())
                ),
            ),
            Step::Hold => told(
                "Holding starts of the app (connections wait)",
                format!(
                    "{} exists: a start of the app (a connection to the socket) waits",
                    self.layout.hold_file().display()
                ),
            ),
            Step::Unhold => told(
                "Letting the app start",
                format!("{} is removed", self.layout.hold_file().display()),
            ),
            Step::Switch { to } => told(
                format!("Switching current to {to}"),
                format!(
                    "{} -> {} (symlink + rename, directory fsynced)",
                    self.layout.current().display(),
                    Layout::current_target(to).display()
                ),
            ),
            Step::Unlink => told(
                "Removing current (nothing was live before)",
                format!("{} is removed", self.layout.current().display()),
            ),
            other => unreachable!("{} is told by tell_step", other.name()),
        }
    }

    /// What the `enter-gap` step does, with this config's Traefik.
    fn gap_words(&self) -> String {
        match &self.config.traefik {
            Some(t) => format!(
                "Traefik routes {} to the gap server ({}, {}), confirmed through {}",
                self.config.app,
                self.env.gap_port(),
                t.gap.as_str(),
                t.api
            ),
            None => "(no traefik: no gap)".into(),
        }
    }

    /// The command line of an `in_gap` hook of `mv`, and its time limit.
    fn hook_words(&self, mv: &Move, command: &str) -> String {
        let rt = self.runtime();
        let args = unit::hook_args(
            &rt.unit_spec(),
            &rt.image(mv.target()),
            (mv.target(), mv.from.as_deref()),
            command,
        );
        format!(
            "podman {} (at most {})",
            crate::sys::shell::sh_join(&args),
            humantime::format_duration(self.config.hooks.timeout)
        )
    }
}
