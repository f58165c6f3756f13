//! The node's record of releases and what happened to them, kept in one JSON file that is
//! written atomically. The planning functions here (previous release, pruning) are pure.

use crate::sys::{fsx, now};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    #[serde(default)]
    pub releases: BTreeMap<String, ReleaseRecord>,
    /// Newest last; capped at [`MAX_EVENTS`].
    #[serde(default)]
    pub events: Vec<Event>,
    #[serde(default)]
    pub next_seq: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Uploaded and built, never went live.
    Ready,
    /// Went live and passed its health check (it may since have been replaced).
    Ok,
    /// Failed its start or health check; the previous release was put back.
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReleaseRecord {
    /// Order of creation: the basis of "previous" and of pruning.
    pub seq: u64,
    pub created_at: String,
    pub image: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_at: Option<String>,
    /// It went live last by `rollback --keep-data`: it runs on data it did not leave, so what
    /// it leaves is kept apart from the data it left itself (its record).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kept_data: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub at: String,
    pub action: Action,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub outcome: EventOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Who asked for it (`user@host` of the machine `deploy` was typed on), the git commit of
    /// the project there (if it is a git repository), and the command.
    #[serde(default, flatten)]
    pub origin: Origin,
}

/// Where an event came from: carried from the machine `deploy` was typed on to the node's
/// run in its environment (`DEPLOY_ORIGIN_*`), or read here when typed here.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Origin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub who: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

impl Origin {
    /// The origin of this process's events: from its environment if a front set it, else this
    /// machine's user, the project's git commit, and this command line.
    pub fn current() -> Origin {
        static ORIGIN: std::sync::OnceLock<Origin> = std::sync::OnceLock::new();
        ORIGIN
            .get_or_init(|| {
                let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
                match var("DEPLOY_ORIGIN_WHO") {
                    Some(who) => Origin {
                        who: Some(who),
                        sha: var("DEPLOY_ORIGIN_SHA"),
                        command: var("DEPLOY_ORIGIN_COMMAND"),
                    },
                    None => Origin::here(std::path::Path::new(".")),
                }
            })
            .clone()
    }

    /// This machine's user@host, the git commit of `dir`, and this command line.
    pub fn here(dir: &std::path::Path) -> Origin {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()
            .filter(|u| !u.is_empty())
            .or_else(|| {
                duct::cmd!("id", "-un")
                    .stdout_capture()
                    .read()
                    .ok()
                    .map(|u| u.trim().to_string())
            })
            .unwrap_or_else(|| "?".into());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let sha = duct::cmd!("git", "rev-parse", "--short", "HEAD")
            .dir(dir)
            .stdout_capture()
            .stderr_null()
            .unchecked()
            .run()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty());
        let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--node").collect();
        Origin {
            who: Some(format!("{user}@{}", host.trim())),
            sha,
            command: Some(format!("deploy {}", args.join(" "))),
        }
    }

    /// The variables that carry it to a node-side run.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        [
            ("DEPLOY_ORIGIN_WHO", &self.who),
            ("DEPLOY_ORIGIN_SHA", &self.sha),
            ("DEPLOY_ORIGIN_COMMAND", &self.command),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}

/// What an event was.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Release,
    Rollback,
    /// A later command put right a swap whose process died.
    Recover,
    MigrateData,
    /// `deploy restore`: the databases put back from the replica.
    Restore,
    /// `deploy stop`, `start`, `restart`: the app stopped or started by hand.
    Stop,
    Start,
    Restart,
    /// `deploy prune`.
    Prune,
    /// `deploy remove`.
    Remove,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Action::Release => "release",
            Action::Rollback => "rollback",
            Action::Recover => "recover",
            Action::MigrateData => "migrate-data",
            Action::Restore => "restore",
            Action::Stop => "stop",
            Action::Start => "start",
            Action::Restart => "restart",
            Action::Prune => "prune",
            Action::Remove => "remove",
        })
    }
}

/// How an event ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum EventOutcome {
    /// The release went live (or the recovery put things right).
    Ok,
    /// It failed and what was live before was put back (or the app stopped: the detail says).
    Failed,
    /// It failed before anything live changed (an image build).
    Error,
    /// Its process died during the swap; the next command recovered it.
    Interrupted,
}

impl std::fmt::Display for EventOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            EventOutcome::Ok => "ok",
            EventOutcome::Failed => "failed",
            EventOutcome::Error => "error",
            EventOutcome::Interrupted => "interrupted",
        })
    }
}

pub const MAX_EVENTS: usize = 200;

impl State {
    /// The state of the app laid out as `layout` (its state file; none yet: an empty one).
    pub fn of(layout: &crate::node::layout::Layout) -> Result<State> {
        State::load(&layout.state_file())
    }

    pub fn load(path: &Path) -> Result<State> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "the state file {} is not valid JSON: restore it from a backup, or move it \
                     away to start a new history (releases on disk are kept)",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        fsx::write_atomic(path, &json, 0o600)
    }

    /// Records a new (or rebuilt) release, newest in creation order.
    pub fn add_release(&mut self, version: &str, image: &str) {
        self.next_seq = self.next_seq.max(self.max_seq()) + 1;
        self.releases.insert(
            version.to_string(),
            ReleaseRecord {
                seq: self.next_seq,
                created_at: now(),
                image: image.to_string(),
                outcome: Outcome::Ready,
                deployed_at: None,
                kept_data: false,
            },
        );
    }

    fn max_seq(&self) -> u64 {
        self.releases.values().map(|r| r.seq).max().unwrap_or(0)
    }

    pub fn set_outcome(&mut self, version: &str, outcome: Outcome) {
        if let Some(r) = self.releases.get_mut(version) {
            if outcome == Outcome::Ok {
                r.deployed_at = Some(now());
            }
            r.outcome = outcome;
        }
    }

    /// Records whether `version`, now live, runs on data it did not leave.
    pub fn set_kept_data(&mut self, version: &str, kept: bool) {
        if let Some(r) = self.releases.get_mut(version) {
            r.kept_data = kept;
        }
    }

    /// Whether `version` runs (or last ran) on data it did not leave (`rollback --keep-data`).
    pub fn on_kept_data(&self, version: Option<&str>) -> bool {
        version
            .and_then(|v| self.releases.get(v))
            .is_some_and(|r| r.kept_data)
    }

    pub fn push_event(&mut self, event: Event) {
        self.events.push(event);
        if self.events.len() > MAX_EVENTS {
            let extra = self.events.len() - MAX_EVENTS;
            self.events.drain(..extra);
        }
    }

    fn seq_of(&self, version: &str) -> u64 {
        self.releases.get(version).map(|r| r.seq).unwrap_or(0)
    }

    /// The release to roll back to from `current`. When `current` went live by a release, it is
    /// the release that was live before it; when it went live by a rollback (or its history is
    /// unknown), it is the newest release created before it that did not fail, so that rolling
    /// back again goes further back.
    pub fn previous(&self, on_disk: &[String], current: &str) -> Option<String> {
        let usable = |v: &str| {
            on_disk.iter().any(|d| d == v)
                && self
                    .releases
                    .get(v)
                    .is_none_or(|r| r.outcome != Outcome::Failed)
        };
        let went_live = self
            .events
            .iter()
            .rev()
            .find(|e| e.version == current && e.outcome == EventOutcome::Ok);
        if let Some(Event {
            action,
            from: Some(from),
            ..
        }) = went_live
        {
            if *action == Action::Release && from != current && usable(from) {
                return Some(from.clone());
            }
        }
        let cur = self.seq_of(current);
        let mut candidates: Vec<&String> = on_disk
            .iter()
            .filter(|v| v.as_str() != current)
            .filter(|v| {
                self.releases
                    .get(*v)
                    .is_none_or(|r| r.outcome != Outcome::Failed)
            })
            .filter(|v| self.seq_of(v) < cur || (cur == 0 && v.as_str() < current))
            .collect();
        candidates.sort_by_key(|v| (self.seq_of(v), (*v).clone()));
        candidates.last().map(|v| (*v).clone())
    }

    /// The releases to delete so that `keep` remain, newest by creation first; `current` and
    /// `previous` are never among them. Failed releases count like any other.
    pub fn prune_plan(
        &self,
        on_disk: &[String],
        current: Option<&str>,
        previous: Option<&str>,
        keep: usize,
    ) -> Vec<String> {
        let mut all: Vec<&String> = on_disk.iter().collect();
        all.sort_by_key(|v| std::cmp::Reverse((self.seq_of(v), (*v).clone())));
        let protected = |v: &str| Some(v) == current || Some(v) == previous;
        let kept_protected = all.iter().filter(|v| protected(v)).count();
        let mut room = keep.saturating_sub(kept_protected);
        let mut doomed = Vec::new();
        for v in all {
            if protected(v) {
                continue;
            }
            if room > 0 {
                room -= 1;
            } else {
                doomed.push(v.clone());
            }
        }
        doomed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(versions: &[(&str, Outcome)]) -> (State, Vec<String>) {
        let mut s = State::default();
        for (v, o) in versions {
            s.add_release(v, "img");
            s.set_outcome(v, o.clone());
        }
        (s, versions.iter().map(|(v, _)| v.to_string()).collect())
    }

    #[test]
    fn previous_skips_failed_and_newer() {
        use Outcome::*;
        let (s, disk) = state(&[("v1", Ok), ("v2", Ok), ("v3", Failed), ("v4", Ok)]);
        assert_eq!(s.previous(&disk, "v4").as_deref(), Some("v2"));
        assert_eq!(s.previous(&disk, "v2").as_deref(), Some("v1"));
        assert_eq!(s.previous(&disk, "v1"), None);
    }

    fn went_live(s: &mut State, action: Action, version: &str, from: &str) {
        s.push_event(Event {
            at: now(),
            action,
            version: version.into(),
            from: Some(from.into()),
            outcome: EventOutcome::Ok,
            gap_ms: None,
            detail: None,
            origin: Origin::default(),
        });
    }

    #[test]
    fn previous_follows_what_was_live_before_a_release() {
        use Outcome::*;
        let (mut s, disk) = state(&[("v1", Ok), ("v2", Ok), ("v3", Ok), ("v4", Ok)]);
        went_live(&mut s, Action::Release, "v4", "v3");
        went_live(&mut s, Action::Rollback, "v3", "v4");
        // Rolled back to v3: rolling back again goes further back, not to v4.
        assert_eq!(s.previous(&disk, "v3").as_deref(), Some("v2"));
        // v5 released on top of v3: its previous is v3, not v4 (created later, rolled away from).
        let mut disk = disk;
        s.add_release("v5", "img");
        disk.push("v5".into());
        went_live(&mut s, Action::Release, "v5", "v3");
        assert_eq!(s.previous(&disk, "v5").as_deref(), Some("v3"));
        // A previous that is gone from disk falls back to creation order.
        disk.retain(|v| v != "v3");
        assert_eq!(s.previous(&disk, "v5").as_deref(), Some("v4"));
    }

    #[test]
    fn prune_keeps_newest_current_and_previous() {
        use Outcome::*;
        let (s, disk) = state(&[
            ("v1", Ok),
            ("v2", Ok),
            ("v3", Ok),
            ("v4", Failed),
            ("v5", Ok),
            ("v6", Ok),
        ]);
        // Current v6, previous v5: keep 3 = v6, v5 and the newest other (v4, failed).
        assert_eq!(
            s.prune_plan(&disk, Some("v6"), Some("v5"), 3),
            ["v3", "v2", "v1"]
        );
        // Rolled back to v1: it and its previous survive however old they are.
        let doomed = s.prune_plan(&disk, Some("v2"), Some("v1"), 2);
        assert_eq!(doomed, ["v6", "v5", "v4", "v3"]);
        // Keep 1 still keeps current and previous.
        assert_eq!(s.prune_plan(&disk, Some("v6"), Some("v5"), 1).len(), 4);
        assert!(s.prune_plan(&disk, Some("v6"), Some("v5"), 10).is_empty());
    }

    #[test]
    fn unknown_releases_are_oldest() {
        let (s, mut disk) = state(&[("v1", Outcome::Ok), ("v2", Outcome::Ok)]);
        disk.push("manual".into());
        assert_eq!(s.prune_plan(&disk, Some("v2"), Some("v1"), 2), ["manual"]);
    }

    #[test]
    fn events_are_capped() {
        let mut s = State::default();
        for i in 0..MAX_EVENTS + 5 {
            s.push_event(Event {
                at: now(),
                action: Action::Release,
                version: format!("v{i}"),
                from: None,
                outcome: EventOutcome::Ok,
                gap_ms: None,
                detail: None,
                origin: Origin::default(),
            });
        }
        assert_eq!(s.events.len(), MAX_EVENTS);
        assert_eq!(s.events[0].version, "v5");
    }

    #[test]
    fn roundtrip() {
        let (s, _) = state(&[("v1", Outcome::Ok)]);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<State>(&json).unwrap(), s);
    }
}
