//! A release as data: [`plan`] turns the request and what the server holds into the list of
//! [`Stage`]s, the swap's steps inside it, and one executor (`Node::release`) runs them in
//! order. `--dry-run` prints the same list, each stage's live step line comes from it
//! (`Node::tell_stage`), and the fault-injection points of the tests are its names
//! (`after-<name>`). Pure.

use crate::node::apply::EnvChange;
use crate::node::swap::{self, Move, Step};
use std::path::PathBuf;

/// One stage of a release, in the order it runs. Its [`Stage::name`] is the `--dry-run`
/// line's and the fault-injection point's (`after-<name>`); a swap's steps are named by
/// their own names.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// The artifacts into `releases/.incoming-V` (unchanged files hard-linked to the live
    /// release's), or the upload sent over SSH (`sent`) found; either way `shared/` linked in
    /// with the release's `release.env`.
    Upload { sent: bool },
    /// The upload renamed to `releases/V` (a recorded release of the same version set aside
    /// first, a leftover of an interrupted one removed).
    Rename,
    /// The release's image built.
    Build,
    /// The release's files and its image synced to disk, and the release recorded.
    Sync,
    /// A preview's new data scrubbed: each `preview.scrub` command in a one-off container of
    /// the new image, on the copy, which then is ready for the swap's `data` step.
    Scrub { commands: Vec<String> },
    /// What differs in the environment applied before the gap (nothing stopped).
    Apply { changes: Vec<EnvChange> },
    /// The swap from what is live to the new release: one journaled run of the swap's
    /// executor, its steps planned by [`swap::plan`].
    Swap { mv: Move, steps: Vec<Step> },
    /// The jobs' timers installed (those of jobs no longer in the config removed).
    Jobs,
    /// Releases beyond `keep_releases` removed.
    Prune,
}

impl Stage {
    pub fn name(&self) -> &'static str {
        match self {
            Stage::Upload { .. } => "upload",
            Stage::Rename => "rename",
            Stage::Build => "build",
            Stage::Sync => "sync",
            Stage::Scrub { .. } => "scrub",
            Stage::Apply { .. } => "apply",
            Stage::Swap { .. } => "swap",
            Stage::Jobs => "jobs",
            Stage::Prune => "prune",
        }
    }

    /// What an interruption (SIGTERM, SIGINT) before this stage stops the release short of:
    /// before the swap, it stops at these stage boundaries, changing nothing live.
    pub fn interruptible(&self) -> Option<&'static str> {
        match self {
            Stage::Rename => Some("the image build"),
            Stage::Apply { .. } | Stage::Swap { .. } => Some("the swap"),
            _ => None,
        }
    }

    /// The names of the points a run reaches in this stage, in order: `after-<name>`, or for
    /// the swap one per step (`after-<step>`, reached by the swap's executor).
    pub fn points(&self) -> Vec<String> {
        match self {
            Stage::Swap { steps, .. } => steps
                .iter()
                .map(|s| format!("after-{}", s.name()))
                .collect(),
            other => vec![format!("after-{}", other.name())],
        }
    }
}

/// A preview's new data waiting to go in with this release.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewData {
    /// Copied, not scrubbed yet: these scrub commands run first (none: it is only made ready).
    pub to_scrub: Option<Vec<String>>,
    /// Where it is once scrubbed: the swap's `data` step takes it.
    pub ready: PathBuf,
}

/// What a release's plan depends on: the request and what the server holds.
#[derive(Debug, Clone)]
pub struct Facts {
    pub version: String,
    /// What is live now.
    pub current: Option<String>,
    /// The upload was sent over SSH before the node-side run (`--uploaded`).
    pub sent: bool,
    /// `backup: snapshot`: the data the live release leaves is kept.
    pub snapshots: bool,
    /// The live release runs on data it did not leave (`rollback --keep-data`).
    pub on_kept_data: bool,
    /// A preview's new data waiting.
    pub preview_data: Option<PreviewData>,
    /// What differs in the environment (none needing `setup`: that refuses earlier).
    pub changes: Vec<EnvChange>,
    /// The jobs' timers differ from what the config says.
    pub jobs_changed: bool,
    /// What the swap's plan depends on.
    pub swap: swap::Settings,
}

/// The stages of a release. Pure.
pub fn plan(f: &Facts) -> Vec<Stage> {
    let mut stages = vec![
        Stage::Upload { sent: f.sent },
        Stage::Rename,
        Stage::Build,
        Stage::Sync,
    ];
    let data = f.preview_data.as_ref();
    if let Some(commands) = data.and_then(|d| d.to_scrub.clone()) {
        stages.push(Stage::Scrub { commands });
    }
    if !f.changes.is_empty() {
        stages.push(Stage::Apply {
            changes: f.changes.clone(),
        });
    }
    let mv = Move::release(&f.version, f.current.as_deref(), f.snapshots)
        .leaving_kept_data(f.on_kept_data)
        .with_data(data.map(|d| d.ready.clone()));
    let steps = swap::plan(&mv, &f.swap);
    stages.push(Stage::Swap { mv, steps });
    if f.jobs_changed {
        stages.push(Stage::Jobs);
    }
    stages.push(Stage::Prune);
    stages
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            version: "v2".into(),
            current: Some("v1".into()),
            sent: false,
            snapshots: true,
            on_kept_data: false,
            preview_data: None,
            changes: Vec::new(),
            jobs_changed: false,
            swap: swap::Settings {
                protected: true,
                hooks: vec!["migrate".into()],
                hold: true,
            },
        }
    }

    fn names(stages: &[Stage]) -> Vec<&'static str> {
        stages.iter().map(Stage::name).collect()
    }

    #[test]
    fn a_release_over_a_live_one() {
        let stages = plan(&facts());
        assert_eq!(
            names(&stages),
            ["upload", "rename", "build", "sync", "swap", "prune"]
        );
        let Stage::Swap { mv, steps } = &stages[4] else {
            panic!("{stages:?}")
        };
        assert_eq!(mv, &Move::release("v2", Some("v1"), true));
        assert_eq!(steps, &swap::plan(mv, &facts().swap));
        let points: Vec<String> = stages.iter().flat_map(Stage::points).collect();
        assert_eq!(
            points,
            [
                "after-upload",
                "after-rename",
                "after-build",
                "after-sync",
                "after-pre-copy",
                "after-enter-gap",
                "after-hold",
                "after-stop",
                "after-snapshot",
                "after-hook",
                "after-switch",
                "after-unhold",
                "after-start",
                "after-health",
                "after-leave-gap",
                "after-prune"
            ]
        );
    }

    #[test]
    fn a_first_release_sent_over_ssh() {
        let f = Facts {
            current: None,
            sent: true,
            ..facts()
        };
        let stages = plan(&f);
        assert_eq!(stages[0], Stage::Upload { sent: true });
        let Stage::Swap { mv, .. } = &stages[4] else {
            panic!("{stages:?}")
        };
        assert_eq!((mv.from.as_deref(), &mv.keep_as), (None, &None));
    }

    #[test]
    fn a_preview_with_data_to_scrub_changes_jobs_and_the_environment() {
        let f = Facts {
            preview_data: Some(PreviewData {
                to_scrub: Some(vec!["a".into(), "b".into()]),
                ready: "/r".into(),
            }),
            changes: vec![EnvChange::Unit],
            jobs_changed: true,
            on_kept_data: true,
            ..facts()
        };
        let stages = plan(&f);
        assert_eq!(
            names(&stages),
            ["upload", "rename", "build", "sync", "scrub", "apply", "swap", "jobs", "prune"]
        );
        assert_eq!(
            stages[4],
            Stage::Scrub {
                commands: vec!["a".into(), "b".into()]
            }
        );
        let Stage::Swap { mv, steps } = &stages[6] else {
            panic!("{stages:?}")
        };
        assert_eq!(mv.data.as_deref(), Some(std::path::Path::new("/r")));
        assert_eq!(mv.keep_kind, crate::node::snapshot::Kind::LeftOnKeptData);
        assert!(steps.iter().any(|s| s.name() == "data"));
    }

    #[test]
    fn scrubbed_data_waiting_goes_in_without_a_scrub() {
        let f = Facts {
            preview_data: Some(PreviewData {
                to_scrub: None,
                ready: "/r".into(),
            }),
            ..facts()
        };
        assert_eq!(
            names(&plan(&f)),
            ["upload", "rename", "build", "sync", "swap", "prune"]
        );
    }
}
