//! The stop-swap-start, the heart of `deploy`, as data: a *move* (a release, a rollback, the
//! put-back after a failure, a recovery) is turned by [`plan`] into a list of [`Step`]s, and one
//! executor ([`exec`]) runs them, writing each step into an append-only [`journal`] before and
//! after it runs. `--dry-run` prints the same plan, the fault-injection points of the tests are
//! the steps' names, and recovery reads the journal to know what a killed swap had done.
//!
//! One rule for data: whenever a step may have changed `shared/` (a data restore, an in-gap
//! hook, the new release having run), going back to the release that was live before restores
//! the snapshot taken in that gap first ([`undo`]). Without a snapshot (`backup: off`) the app is
//! left stopped rather than started on data it may not understand.

pub mod effects;
pub mod exec;
pub mod journal;
pub mod tell;

use crate::node::schema::Schemas;
use crate::node::snapshot::Kind as SnapshotKind;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What a move does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A new release goes live.
    Release,
    /// An earlier release goes live again (`deploy rollback`).
    Rollback,
    /// In the same gap, after a failed step: what was live before goes back.
    PutBack,
    /// A later command puts right a swap whose process died.
    Recover,
    /// A swap whose target had passed its health check before its process died: it is checked
    /// again and kept.
    Confirm,
    /// The data may have changed and there is no snapshot to put back: the app stays stopped.
    Halt,
    /// `deploy restore`: the live release stops, the replica's databases go in, it starts again.
    Restore,
}

impl Kind {
    /// The event a move is recorded as.
    pub fn action(self) -> crate::node::state::Action {
        use crate::node::state::Action;
        match self {
            Kind::Release => Action::Release,
            Kind::Rollback => Action::Rollback,
            Kind::Restore => Action::Restore,
            _ => Action::Recover,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Release => "release",
            Kind::Rollback => "rollback",
            Kind::PutBack => "put-back",
            Kind::Recover => "recover",
            Kind::Confirm => "confirm",
            Kind::Halt => "halt",
            Kind::Restore => "restore",
        }
    }
}

/// One stop-swap-start: to which release (none: the app is stopped and `current` removed, as
/// when nothing was live before a failed first release), from which, with what data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Move {
    pub kind: Kind,
    pub to: Option<String>,
    /// What was live before (the release a failure goes back to).
    pub from: Option<String>,
    /// A data snapshot to put into `shared/` before `to` starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<PathBuf>,
    /// A preview's new data (a whole `shared/`, scrubbed): it replaces `shared/` before `to`
    /// starts (and before the hooks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    /// Keep the data in `shared/` as this release's snapshot first (the data a release leaves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_as: Option<String>,
    /// What that snapshot is: the data `keep_as` left, unless it ran on data it did not leave
    /// or the data is about to be replaced by its own.
    #[serde(default, skip_serializing_if = "is_left")]
    pub keep_kind: SnapshotKind,
    /// Run the `in_gap` hooks before `to` starts.
    #[serde(default)]
    pub hooks: bool,
    /// A restore without `--overwrite`: its `restore` step refuses (and the move is undone) if
    /// a database it brings is there already, decided with the app stopped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub only_into_empty: bool,
    /// `to` runs on data it did not leave (`rollback --keep-data`): what it leaves is never
    /// taken for its own data (the record a later `--with-data` restores and a rollback's
    /// schema check reads).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kept_data: bool,
    /// The schema the data in `shared/` must have once the app has stopped (the one `to` left):
    /// checked in the gap, before anything changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_schema: Option<Schemas>,
}

fn is_left(kind: &SnapshotKind) -> bool {
    *kind == SnapshotKind::Left
}

impl Move {
    /// A move with nothing but its kind and ends: no data kept, restored or checked, no hooks.
    pub fn bare(kind: Kind, to: Option<String>, from: Option<String>) -> Move {
        Move {
            kind,
            to,
            from,
            restore: None,
            data: None,
            keep_as: None,
            keep_kind: SnapshotKind::Left,
            hooks: false,
            only_into_empty: false,
            kept_data: false,
            expect_schema: None,
        }
    }

    /// A release of `to` over `from`; with snapshots on, the data `from` leaves is kept.
    pub fn release(to: &str, from: Option<&str>, snapshots: bool) -> Move {
        Move {
            keep_as: from.filter(|_| snapshots).map(String::from),
            hooks: true,
            ..Move::bare(Kind::Release, Some(to.into()), from.map(String::from))
        }
    }

    /// A rollback to `to`, with its data (`restore`) or not; the data `from` leaves is kept when
    /// snapshots are on, and always when data is put back. Going to the release that is live
    /// (stopped) with its data, what is there is kept as what was there before the restore:
    /// the snapshot being restored is never replaced.
    pub fn rollback(
        to: &str,
        from: Option<&str>,
        restore: Option<PathBuf>,
        snapshots: bool,
    ) -> Move {
        let same = from == Some(to) && restore.is_some();
        Move {
            keep_as: from
                .filter(|_| snapshots || restore.is_some())
                .map(String::from),
            keep_kind: if same {
                SnapshotKind::BeforeRestore
            } else {
                SnapshotKind::Left
            },
            restore,
            ..Move::bare(Kind::Rollback, Some(to.into()), from.map(String::from))
        }
    }

    /// `deploy restore` of `data` (a directory of databases at their paths under shared/) under
    /// the live release `live`; what is replaced is kept first.
    pub fn restore(live: &str, data: PathBuf, overwrite: bool) -> Move {
        Move {
            restore: Some(data),
            keep_as: Some(live.into()),
            keep_kind: SnapshotKind::BeforeRestore,
            only_into_empty: !overwrite,
            ..Move::bare(Kind::Restore, Some(live.into()), Some(live.into()))
        }
    }

    /// A preview's new data (`dir`, a whole `shared/`) replaces `shared/` under the release
    /// `live`, its `in_gap` hooks run on it (ENV's data may be of an older schema); what it
    /// replaces is kept first (`.deploy/replaced/<stamp>`).
    pub fn new_data(live: &str, dir: PathBuf) -> Move {
        Move {
            data: Some(dir),
            hooks: true,
            keep_as: Some(live.into()),
            keep_kind: SnapshotKind::BeforeRestore,
            ..Move::bare(Kind::Restore, Some(live.into()), Some(live.into()))
        }
    }

    /// With a preview's new data (`dir`, a whole `shared/`) in place of `shared/`.
    pub fn with_data(mut self, dir: Option<PathBuf>) -> Move {
        self.data = dir;
        self
    }

    /// `from` ran on data it did not leave (it went live by `rollback --keep-data`): what it
    /// leaves is kept, labelled so.
    pub fn leaving_kept_data(mut self, yes: bool) -> Move {
        if yes && self.keep_kind == SnapshotKind::Left {
            self.keep_kind = SnapshotKind::LeftOnKeptData;
        }
        self
    }

    /// `to` goes live on data it did not leave (`rollback --keep-data`).
    pub fn on_kept_data(mut self) -> Move {
        self.kept_data = true;
        self
    }

    /// The data must have `schemas` once the app stopped, else the move fails (and what was
    /// live is put back).
    pub fn expecting(mut self, schemas: Option<Schemas>) -> Move {
        self.expect_schema = schemas;
        self
    }

    /// The release this move makes live, for messages.
    pub fn target(&self) -> &str {
        self.to.as_deref().unwrap_or("nothing")
    }
}

/// The settings a plan depends on.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Traefik is in front: the router goes to the gap server around the swap.
    pub protected: bool,
    /// The `in_gap` hook commands.
    pub hooks: Vec<String>,
    /// Starts of the app wait (`hold`) from before the stop until the start the swap intends
    /// (`unhold`): in socket mode a connection may start the app, and after a crash or a
    /// reboot in the gap the enabled unit would start `current` on data the swap was changing.
    pub hold: bool,
}

/// One step of a swap. Its [`Step::name`] is what `--dry-run`, the journal, the README and the
/// fault-injection points (`after-<name>`) call it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// Before the stop, while the release being left serves: its SQLite databases in WAL mode
    /// are copied (where the file system cannot clone them), each in a read transaction held
    /// until the snapshot brings the copy up to date in the gap. Changes nothing live.
    PreCopy,
    /// Every one-off container that may write `shared/` (an `in_gap` hook, `deploy exec`) is
    /// removed and confirmed gone: nothing but the release put back writes the data after it.
    Clear,
    /// The release's image exists, or is rebuilt from its directory.
    Image { version: String },
    /// Traefik routes the app to the gap server, confirmed live.
    EnterGap,
    /// (Socket mode) starts of the app wait: a connection cannot start a release now.
    Hold,
    /// (Socket mode) starts of the app go on (the one the swap asks for, or one a connection
    /// asked for meanwhile, of the release now current).
    Unhold,
    /// The app's unit is stopped (over D-Bus, waiting for the job).
    Stop,
    /// The schema of the data in `shared/` is the one the target left (a rollback that keeps
    /// the data): the data did not change under the rollback's check.
    Schema,
    /// The SQLite databases in `shared/` are copied into the release's snapshots, labelled as
    /// `kind`.
    Snapshot {
        of: String,
        #[serde(default, skip_serializing_if = "is_left")]
        kind: SnapshotKind,
    },
    /// A snapshot is put back into `shared/`.
    Restore { snapshot: PathBuf },
    /// A preview's new data, prepared whole (and scrubbed) beside it, becomes `shared/`.
    Data { dir: PathBuf },
    /// An `in_gap` hook runs in a one-off container of the new image.
    Hook { command: String },
    /// `current` points at the release (a new symlink renamed over the old one).
    Switch { to: String },
    /// `current` is removed: nothing is live.
    Unlink,
    /// The app's unit is started.
    Start,
    /// The health check answers 2xx.
    Health,
    /// Traefik routes the app back to it.
    LeaveGap,
}

impl Step {
    pub fn name(&self) -> &'static str {
        match self {
            Step::PreCopy => "pre-copy",
            Step::Clear => "clear",
            Step::Image { .. } => "image",
            Step::EnterGap => "enter-gap",
            Step::Hold => "hold",
            Step::Unhold => "unhold",
            Step::Stop => "stop",
            Step::Schema => "schema",
            Step::Snapshot { .. } => "snapshot",
            Step::Restore { .. } => "restore",
            Step::Data { .. } => "data",
            Step::Hook { .. } => "hook",
            Step::Switch { .. } => "switch",
            Step::Unlink => "unlink",
            Step::Start => "start",
            Step::Health => "health",
            Step::LeaveGap => "leave-gap",
        }
    }

    /// Whether the step may change the data in `shared/`.
    /// `unhold` counts: from it on, a held connection (socket mode) or a boot may start the
    /// release `current` names, before the swap's own start is journaled.
    pub fn touches_data(&self) -> bool {
        matches!(
            self,
            Step::Restore { .. }
                | Step::Data { .. }
                | Step::Hook { .. }
                | Step::Unhold
                | Step::Start
        )
    }
}

/// The steps of a move. Pure.
pub fn plan(mv: &Move, s: &Settings) -> Vec<Step> {
    let mut steps = Vec::new();
    // A snapshot of a running release: most of its copy before the stop.
    if matches!(mv.kind, Kind::Release | Kind::Rollback | Kind::Restore)
        && mv.keep_as.is_some()
        && mv.to.is_some()
    {
        steps.push(Step::PreCopy);
    }
    // Going back (or staying stopped) after a failure or a dead run: a hook or an exec that
    // may still write goes first, before any data is put back or anything starts.
    if matches!(mv.kind, Kind::PutBack | Kind::Recover | Kind::Halt) {
        steps.push(Step::Clear);
    }
    let gap = |steps: &mut Vec<Step>| {
        if s.protected {
            steps.push(Step::EnterGap);
        }
    };
    let hold = |steps: &mut Vec<Step>| {
        if s.hold {
            steps.push(Step::Hold);
        }
    };
    match (mv.kind, &mv.to) {
        // The app stays stopped: in socket mode, starts keep waiting.
        (Kind::Halt, _) => {
            hold(&mut steps);
            steps.push(Step::Stop);
            return steps;
        }
        (Kind::Confirm, _) => steps.push(Step::Health),
        (kind, None) => {
            if kind != Kind::PutBack {
                gap(&mut steps);
            }
            hold(&mut steps);
            steps.extend([Step::Stop, Step::Unlink]);
        }
        (kind, Some(to)) => {
            if matches!(kind, Kind::PutBack | Kind::Recover) {
                steps.push(Step::Image {
                    version: to.clone(),
                });
            }
            // A put-back happens inside the gap its move entered already.
            if kind != Kind::PutBack {
                gap(&mut steps);
            }
            hold(&mut steps);
            steps.push(Step::Stop);
            steps.extend(stopped_steps(mv, s));
            steps.push(Step::Switch { to: to.clone() });
            if s.hold {
                steps.push(Step::Unhold);
            }
            steps.extend([Step::Start, Step::Health]);
        }
    }
    if s.protected {
        steps.push(Step::LeaveGap);
    }
    steps
}

/// What a move does while the app is stopped, before the switch: the schema check, the
/// snapshot of the data the release leaves, the data put back or moved in, the gap's hooks.
/// Pure.
fn stopped_steps(mv: &Move, s: &Settings) -> Vec<Step> {
    let mut steps = Vec::new();
    if mv.expect_schema.is_some() {
        steps.push(Step::Schema);
    }
    if let Some(of) = &mv.keep_as {
        steps.push(Step::Snapshot {
            of: of.clone(),
            kind: mv.keep_kind,
        });
    }
    if let Some(snapshot) = &mv.restore {
        steps.push(Step::Restore {
            snapshot: snapshot.clone(),
        });
    }
    if let Some(dir) = &mv.data {
        steps.push(Step::Data { dir: dir.clone() });
    }
    if mv.hooks {
        steps.extend(s.hooks.iter().map(|c| Step::Hook { command: c.clone() }));
    }
    steps
}

/// What a swap's journal says happened, entry by entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "kebab-case")]
pub enum Entry {
    /// A move begins (the first one of a journal is the swap the command asked for).
    Move {
        #[serde(rename = "move")]
        mv: Move,
        /// The process that runs it (its pid, boot and start time: a pid alone is reused).
        #[serde(flatten)]
        owner: journal::Owner,
        at: String,
    },
    Begin {
        #[serde(flatten)]
        step: Step,
    },
    Done {
        #[serde(flatten)]
        step: Step,
        /// Where a snapshot step put its copy.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot_dir: Option<PathBuf>,
    },
    Failed {
        #[serde(flatten)]
        step: Step,
        error: String,
    },
}

/// The moves of a journal with the entries that followed each.
fn moves(entries: &[Entry]) -> Vec<(&Move, &[Entry])> {
    let starts: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Entry::Move { .. }))
        .map(|(i, _)| i)
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(n, &i)| {
            let end = starts.get(n + 1).copied().unwrap_or(entries.len());
            let Entry::Move { mv, .. } = &entries[i] else {
                unreachable!("filtered above")
            };
            (mv, &entries[i + 1..end])
        })
        .collect()
}

/// The first move of a journal: the swap that was asked for.
pub fn first_move(entries: &[Entry]) -> Option<&Move> {
    moves(entries).first().map(|(m, _)| *m)
}

/// The data snapshot taken in the swap's gap before anything touched the data: what the release
/// that was live before left.
pub fn gap_snapshot(entries: &[Entry]) -> Option<PathBuf> {
    let (first, steps) = moves(entries).into_iter().next()?;
    let of = first.from.as_deref()?;
    steps.iter().find_map(|e| match e {
        Entry::Done {
            step: Step::Snapshot { of: o, .. },
            snapshot_dir,
        } if o == of => snapshot_dir.clone(),
        _ => None,
    })
}

/// Whether any step that may change the data began.
pub fn data_touched(entries: &[Entry]) -> bool {
    entries
        .iter()
        .any(|e| matches!(e, Entry::Begin { step } if step.touches_data()))
}

/// Whether `version`'s own code may have run on the data (a hook of its image, or its start,
/// which may come as soon as starts are let go).
fn ran(entries: &[Entry], version: &str) -> bool {
    moves(entries).iter().any(|(m, steps)| {
        m.to.as_deref() == Some(version)
            && steps.iter().any(|e| {
                matches!(
                    e,
                    Entry::Begin {
                        step: Step::Hook { .. } | Step::Unhold | Step::Start
                    }
                )
            })
    })
}

/// Whether the last move got as far as a passed health check (its target is serving).
pub fn last_move_healthy(entries: &[Entry]) -> bool {
    moves(entries).last().is_some_and(|(m, steps)| {
        m.to.is_some()
            && m.kind != Kind::Halt
            && steps.iter().any(|e| {
                matches!(
                    e,
                    Entry::Done {
                        step: Step::Health,
                        ..
                    }
                )
            })
    })
}

/// The move that goes back to what was live before the journal's swap began, following the one
/// rule for data: `kind` is [`Kind::PutBack`] in the same gap, [`Kind::Recover`] from a later
/// command. Pure.
pub fn undo(entries: &[Entry], kind: Kind) -> Option<Move> {
    let first = first_move(entries)?;
    let failed = first.to.clone();
    let Some(good) = first.from.clone() else {
        // Nothing was live before: nothing is again.
        return Some(Move::bare(kind, None, failed));
    };
    let mut mv = Move::bare(kind, Some(good), failed.clone());
    if data_touched(entries) {
        let Some(snapshot) = gap_snapshot(entries) else {
            return Some(Move {
                kind: Kind::Halt,
                to: None,
                ..mv
            });
        };
        mv.restore = Some(snapshot);
        // What the failed release left is kept as its own snapshot, once.
        let kept = entries.iter().any(|e| {
            matches!(e, Entry::Done { step: Step::Snapshot { of, .. }, .. } if Some(of) == failed.as_ref())
        });
        mv.keep_as = failed.filter(|f| ran(entries, f) && !kept);
        // A release that ran on data it did not leave: what it left is not its own data.
        mv = mv.leaving_kept_data(first.kept_data);
    }
    Some(mv)
}

/// What a later command does about a journal left open: confirm a target that had passed its
/// health check, else undo. Pure.
pub fn recovery(entries: &[Entry]) -> Option<Move> {
    if last_move_healthy(entries) {
        let (last, _) = *moves(entries).last()?;
        let from = first_move(entries)?.from.clone();
        return Some(Move::bare(Kind::Confirm, last.to.clone(), from));
    }
    undo(entries, Kind::Recover)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(protected: bool, hooks: &[&str]) -> Settings {
        Settings {
            protected,
            hooks: hooks.iter().map(|h| h.to_string()).collect(),
            hold: false,
        }
    }

    #[test]
    fn in_socket_mode_starts_wait_from_before_the_stop_to_the_swaps_own_start() {
        let s = Settings {
            protected: false,
            hooks: vec!["migrate".into()],
            hold: true,
        };
        let steps = plan(&Move::release("v2", Some("v1"), true), &s);
        assert_eq!(
            names(&steps),
            [
                "pre-copy", "hold", "stop", "snapshot", "hook", "switch", "unhold", "start",
                "health"
            ]
        );
        let halt = Move::bare(Kind::Halt, None, Some("v2".into()));
        assert_eq!(
            names(&plan(&halt, &s)),
            ["clear", "hold", "stop"],
            "a halted app stays held"
        );
    }

    fn names(steps: &[Step]) -> Vec<&'static str> {
        steps.iter().map(Step::name).collect()
    }

    fn mv_entry(mv: &Move) -> Entry {
        Entry::Move {
            mv: mv.clone(),
            owner: journal::Owner::pid(1),
            at: "t".into(),
        }
    }

    fn begin(step: Step) -> Entry {
        Entry::Begin { step }
    }

    fn done(step: Step) -> Entry {
        Entry::Done {
            step,
            snapshot_dir: None,
        }
    }

    fn snap(of: &str) -> Step {
        Step::Snapshot {
            of: of.into(),
            kind: SnapshotKind::Left,
        }
    }

    fn snapshot_done(of: &str, dir: &str) -> Entry {
        Entry::Done {
            step: snap(of),
            snapshot_dir: Some(dir.into()),
        }
    }

    /// A release of v2 over v1 that stopped the app and kept v1's data (in /snap/v1).
    fn stopped_and_kept(mv: &Move) -> Vec<Entry> {
        vec![
            mv_entry(mv),
            begin(Step::Stop),
            done(Step::Stop),
            begin(snap("v1")),
            snapshot_done("v1", "/snap/v1"),
        ]
    }

    #[test]
    fn a_release_behind_traefik_with_hooks() {
        let mv = Move::release("v2", Some("v1"), true);
        let steps = plan(&mv, &settings(true, &["migrate", "seed"]));
        assert_eq!(
            names(&steps),
            [
                "pre-copy",
                "enter-gap",
                "stop",
                "snapshot",
                "hook",
                "hook",
                "switch",
                "start",
                "health",
                "leave-gap"
            ]
        );
        assert_eq!(steps[3], snap("v1"));
        assert_eq!(
            steps[5],
            Step::Hook {
                command: "seed".into()
            }
        );
    }

    #[test]
    fn a_first_release_and_backup_off_take_no_snapshot() {
        let first = plan(&Move::release("v1", None, true), &settings(false, &[]));
        assert_eq!(names(&first), ["stop", "switch", "start", "health"]);
        let off = plan(
            &Move::release("v2", Some("v1"), false),
            &settings(false, &[]),
        );
        assert_eq!(names(&off), ["stop", "switch", "start", "health"]);
    }

    #[test]
    fn a_rollback_with_data_keeps_what_is_there_and_restores() {
        let mv = Move::rollback("v1", Some("v2"), Some("/s/v1".into()), false);
        let steps = plan(&mv, &settings(false, &["migrate"]));
        assert_eq!(
            names(&steps),
            ["pre-copy", "stop", "snapshot", "restore", "switch", "start", "health"]
        );
        assert_eq!(steps[2], snap("v2"));
    }

    #[test]
    fn a_rollback_with_data_to_the_stopped_live_release_keeps_the_snapshot_it_restores() {
        let mv = Move::rollback("v1", Some("v1"), Some("/s/v1".into()), true);
        let steps = plan(&mv, &settings(false, &[]));
        assert_eq!(
            steps[2],
            Step::Snapshot {
                of: "v1".into(),
                kind: SnapshotKind::BeforeRestore
            },
            "what is there is kept beside the snapshot, not in its place"
        );
        let other = Move::rollback("v1", Some("v2"), Some("/s/v1".into()), true);
        assert_eq!(plan(&other, &settings(false, &[]))[2], snap("v2"));
    }

    #[test]
    fn a_rollback_on_the_same_schema_checks_it_in_the_gap_and_a_failure_restores_nothing() {
        let mv = Move::rollback("v1", Some("v2"), None, true).expecting(Some(Schemas::new()));
        let steps = plan(&mv, &settings(true, &[]));
        assert_eq!(
            names(&steps),
            [
                "pre-copy",
                "enter-gap",
                "stop",
                "schema",
                "snapshot",
                "switch",
                "start",
                "health",
                "leave-gap"
            ]
        );
        let entries = vec![
            mv_entry(&mv),
            done(Step::Stop),
            Entry::Failed {
                step: Step::Schema,
                error: "changed".into(),
            },
        ];
        let back = undo(&entries, Kind::PutBack).unwrap();
        assert_eq!((back.to.as_deref(), back.restore), (Some("v2"), None));
        let read: Move = serde_json::from_str(&serde_json::to_string(&mv).unwrap()).unwrap();
        assert_eq!(read, mv, "the expected schema is journaled with the move");
    }

    #[test]
    fn what_a_release_on_kept_data_leaves_is_never_its_own_record() {
        // v1 went live with --keep-data: leaving it, its data is labelled so.
        let mv = Move::release("v3", Some("v1"), true).leaving_kept_data(true);
        assert_eq!(
            plan(&mv, &settings(false, &[]))[2],
            Step::Snapshot {
                of: "v1".into(),
                kind: SnapshotKind::LeftOnKeptData
            }
        );
        // A --keep-data rollback to v1 that fails: what v1 did to the data is kept so too.
        let mv = Move::rollback("v1", Some("v2"), None, true).on_kept_data();
        let entries = vec![
            mv_entry(&mv),
            snapshot_done("v2", "/snap/v2"),
            begin(Step::Start),
        ];
        let back = undo(&entries, Kind::PutBack).unwrap();
        assert_eq!(back.restore, Some(PathBuf::from("/snap/v2")));
        assert_eq!(back.keep_as.as_deref(), Some("v1"));
        assert_eq!(back.keep_kind, SnapshotKind::LeftOnKeptData);
    }

    #[test]
    fn a_failed_hook_puts_the_previous_release_back_on_the_gap_snapshot() {
        // The hook began (and may have migrated) before `current` was switched: the data is
        // restored all the same.
        let mv = Move::release("v2", Some("v1"), true);
        let mut entries = stopped_and_kept(&mv);
        entries.push(begin(Step::Hook {
            command: "migrate".into(),
        }));
        let back = undo(&entries, Kind::PutBack).unwrap();
        assert_eq!(back.to.as_deref(), Some("v1"));
        assert_eq!(back.restore, Some(PathBuf::from("/snap/v1")));
        assert_eq!(back.keep_as.as_deref(), Some("v2"));
        assert_eq!(
            names(&plan(&back, &settings(true, &["migrate"]))),
            [
                "clear",
                "image",
                "stop",
                "snapshot",
                "restore",
                "switch",
                "start",
                "health",
                "leave-gap"
            ]
        );
    }

    #[test]
    fn a_previews_new_data_goes_in_after_the_snapshot_and_before_the_hooks() {
        let dir = PathBuf::from("/p/.deploy/preview-data.ready");
        let mv = Move::release("v2", Some("v1"), true).with_data(Some(dir.clone()));
        let steps = plan(&mv, &settings(false, &["migrate"]));
        assert_eq!(
            names(&steps),
            ["pre-copy", "stop", "snapshot", "data", "hook", "switch", "start", "health"]
        );
        assert_eq!(steps[3], Step::Data { dir: dir.clone() });
        // The data step failed half-way: v1 goes back on the data it left.
        let mut entries = stopped_and_kept(&mv);
        entries.push(begin(Step::Data { dir: dir.clone() }));
        let back = undo(&entries, Kind::PutBack).unwrap();
        assert_eq!(back.restore, Some(PathBuf::from("/snap/v1")));
        assert_eq!(back.data, None);
        // New data under the live release: what it replaces is kept first.
        let fresh = Move::new_data("v2", dir);
        assert_eq!(
            names(&plan(&fresh, &settings(true, &["migrate"]))),
            [
                "pre-copy",
                "enter-gap",
                "stop",
                "snapshot",
                "data",
                "hook",
                "switch",
                "start",
                "health",
                "leave-gap"
            ]
        );
    }

    #[test]
    fn nothing_touched_the_data_so_nothing_is_restored() {
        let mv = Move::release("v2", Some("v1"), true);
        let entries = vec![mv_entry(&mv), begin(Step::Stop), done(Step::Stop)];
        let back = undo(&entries, Kind::Recover).unwrap();
        assert_eq!(back.restore, None);
        assert_eq!(back.keep_as, None);
        assert_eq!(
            names(&plan(&back, &settings(false, &[]))),
            ["clear", "image", "stop", "switch", "start", "health"]
        );
    }

    #[test]
    fn without_a_snapshot_touched_data_halts() {
        let mv = Move::release("v2", Some("v1"), false);
        let entries = vec![mv_entry(&mv), begin(Step::Stop), begin(Step::Start)];
        let back = undo(&entries, Kind::PutBack).unwrap();
        assert_eq!(back.kind, Kind::Halt);
        assert_eq!(names(&plan(&back, &settings(true, &[]))), ["clear", "stop"]);
    }

    #[test]
    fn a_failed_first_release_stops_the_app_and_unlinks_current() {
        let mv = Move::release("v1", None, true);
        let entries = vec![mv_entry(&mv), begin(Step::Start)];
        let back = undo(&entries, Kind::PutBack).unwrap();
        assert_eq!(back.to, None);
        assert_eq!(
            names(&plan(&back, &settings(true, &[]))),
            ["clear", "stop", "unlink", "leave-gap"]
        );
    }

    #[test]
    fn a_partial_data_restore_is_undone_without_keeping_it() {
        // rollback --with-data died in its restore: v1 never ran, its snapshot is not replaced.
        let mv = Move::rollback("v1", Some("v2"), Some("/s/v1".into()), true);
        let entries = vec![
            mv_entry(&mv),
            done(Step::Stop),
            snapshot_done("v2", "/snap/v2"),
            begin(Step::Restore {
                snapshot: "/s/v1".into(),
            }),
        ];
        let back = recovery(&entries).unwrap();
        assert_eq!(back.kind, Kind::Recover);
        assert_eq!(back.to.as_deref(), Some("v2"));
        assert_eq!(back.restore, Some(PathBuf::from("/snap/v2")));
        assert_eq!(back.keep_as, None);
    }

    #[test]
    fn recovery_after_a_dead_put_back_still_goes_to_the_first_release_and_its_data() {
        let mv = Move::release("v2", Some("v1"), true);
        let mut entries = vec![
            mv_entry(&mv),
            snapshot_done("v1", "/snap/v1"),
            begin(Step::Start),
            Entry::Failed {
                step: Step::Health,
                error: "503".into(),
            },
        ];
        let back = undo(&entries, Kind::PutBack).unwrap();
        entries.push(mv_entry(&back));
        entries.push(snapshot_done("v2", "/snap/v2"));
        entries.push(begin(Step::Restore {
            snapshot: "/snap/v1".into(),
        }));
        let again = recovery(&entries).unwrap();
        assert_eq!(again.to.as_deref(), Some("v1"));
        assert_eq!(again.restore, Some(PathBuf::from("/snap/v1")));
        assert_eq!(again.keep_as, None, "v2's data was kept once already");
    }

    #[test]
    fn a_target_that_passed_its_health_check_is_confirmed() {
        let mv = Move::release("v2", Some("v1"), true);
        let entries = vec![mv_entry(&mv), begin(Step::Start), done(Step::Health)];
        let c = recovery(&entries).unwrap();
        assert_eq!(c.kind, Kind::Confirm);
        assert_eq!(c.to.as_deref(), Some("v2"));
        assert_eq!(
            names(&plan(&c, &settings(true, &[]))),
            ["health", "leave-gap"]
        );
    }

    #[test]
    fn journal_entries_read_back() {
        let e = vec![
            mv_entry(&Move::release("v2", Some("v1"), true)),
            snapshot_done("v1", "/snap"),
            Entry::Failed {
                step: Step::Hook {
                    command: "x".into(),
                },
                error: "boom".into(),
            },
        ];
        for entry in e {
            let line = serde_json::to_string(&entry).unwrap();
            assert_eq!(
                serde_json::from_str::<Entry>(&line).unwrap(),
                entry,
                "{line}"
            );
        }
    }
}
