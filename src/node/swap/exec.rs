//! The one executor of swap plans. It knows nothing of systemd, Podman or Traefik: it runs the
//! steps through [`Effects`], journals each before and after, and on a failure runs the move
//! that [`super::undo`] chooses. Its failure paths are tested here against a recording fake.

use super::journal::Journal;
use super::{plan, recovery, undo, Entry, Kind, Move, Settings, Step};
use crate::sys::now;
use anyhow::Result;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What the steps do to the world.
pub trait Effects {
    /// Runs one step of `mv`; a snapshot step returns where it put its copy.
    fn run(&mut self, step: &Step, mv: &Move) -> Result<Option<PathBuf>>;
    /// A step is done and journaled (the fault-injection point `after-<name>`).
    fn after(&mut self, _step: &Step) {}
    /// A step of `mv` failed, before anything is put back (the moment to read the app's log).
    fn failed(&mut self, _step: &Step, _mv: &Move) {}
}

/// How a swap ended.
#[derive(Debug)]
pub enum Outcome {
    /// The move's target is live. `gap`: from the stop to the health check's answer.
    Live {
        gap: Duration,
        /// Traefik could not be switched back to the app.
        front: Option<anyhow::Error>,
    },
    /// The gap could not be entered: nothing was stopped or changed.
    NotStarted(anyhow::Error),
    /// The move failed; `back` ran and the app is in a defined state again (what was live
    /// before serving, nothing live, or the app stopped: [`Kind::Halt`]).
    Undone { error: anyhow::Error, back: Move },
    /// The move failed and going back failed too: the journal stays for the next command.
    Stuck {
        error: anyhow::Error,
        back_error: anyhow::Error,
    },
}

/// A step that failed, and why.
struct Failure {
    step: Step,
    error: anyhow::Error,
}

/// Runs one move's plan, journaled; stops at the first failed step. Returns the gap.
fn run_move(
    fx: &mut dyn Effects,
    journal: &mut Journal,
    mv: &Move,
    s: &Settings,
) -> std::result::Result<Duration, Failure> {
    let fail = |step: &Step, error| Failure {
        step: step.clone(),
        error,
    };
    let steps = plan(mv, s);
    let first = steps.first().cloned().unwrap_or(Step::Stop);
    journal
        .append(Entry::Move {
            mv: mv.clone(),
            owner: super::journal::Owner::this(),
            at: now(),
        })
        .map_err(|e| fail(&first, e))?;
    let (mut stopped, mut gap) = (None, Duration::ZERO);
    for step in &steps {
        journal
            .append(Entry::Begin { step: step.clone() })
            .map_err(|e| fail(step, e))?;
        if *step == Step::Stop {
            stopped = Some(Instant::now());
        }
        match fx.run(step, mv) {
            Ok(snapshot_dir) => {
                if *step == Step::Health {
                    gap = stopped.map(|t| t.elapsed()).unwrap_or_default();
                }
                journal
                    .append_unsynced(Entry::Done {
                        step: step.clone(),
                        snapshot_dir,
                    })
                    .map_err(|e| fail(step, e))?;
                fx.after(step);
            }
            Err(error) => {
                fx.failed(step, mv);
                let _ = journal.append(Entry::Failed {
                    step: step.clone(),
                    error: format!("{error:#}"),
                });
                return Err(fail(step, error));
            }
        }
    }
    Ok(gap)
}

/// Runs `mv` to the end: its target live, or what was live before put back.
pub fn swap(fx: &mut dyn Effects, mut journal: Journal, mv: &Move, s: &Settings) -> Outcome {
    match run_move(fx, &mut journal, mv, s) {
        Ok(gap) => live(journal, gap, None),
        // Nothing was stopped or changed yet.
        Err(f) if matches!(f.step, Step::PreCopy | Step::EnterGap) => {
            let _ = journal.close();
            Outcome::NotStarted(f.error)
        }
        Err(f) if f.step == Step::LeaveGap => live(journal, Duration::ZERO, Some(f.error)),
        Err(f) => go_back(fx, journal, s, f.error),
    }
}

/// Puts right what a dead swap's journal describes: a target that passed its health check is
/// checked again and kept, anything else is undone.
pub fn recover(fx: &mut dyn Effects, mut journal: Journal, s: &Settings) -> Outcome {
    let Some(mv) = recovery(&journal.entries) else {
        // A journal without a move: the swap died before it began.
        let _ = journal.close();
        return Outcome::Live {
            gap: Duration::ZERO,
            front: None,
        };
    };
    match run_move(fx, &mut journal, &mv, s) {
        Ok(gap) => live(journal, gap, None),
        Err(f) if f.step == Step::LeaveGap => live(journal, Duration::ZERO, Some(f.error)),
        Err(f) if mv.kind == Kind::Confirm => go_back(fx, journal, s, f.error),
        Err(f) => Outcome::Stuck {
            error: anyhow::anyhow!("the interrupted swap could not be recovered"),
            back_error: f.error,
        },
    }
}

fn live(journal: Journal, gap: Duration, front: Option<anyhow::Error>) -> Outcome {
    match journal.close() {
        Ok(()) => Outcome::Live { gap, front },
        Err(e) => Outcome::Live {
            gap,
            front: Some(front.unwrap_or(e)),
        },
    }
}

fn go_back(
    fx: &mut dyn Effects,
    mut journal: Journal,
    s: &Settings,
    error: anyhow::Error,
) -> Outcome {
    let back = undo(&journal.entries, Kind::PutBack).expect("the journal has its move");
    match run_move(fx, &mut journal, &back, s) {
        Err(f) if f.step != Step::LeaveGap => Outcome::Stuck {
            error,
            back_error: f.error,
        },
        _ => {
            let _ = journal.close();
            Outcome::Undone { error, back }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::journal;
    use super::*;

    /// Records every step; fails the steps it is told to (the nth time they run).
    #[derive(Default)]
    struct Fake {
        log: Vec<String>,
        fail: Vec<(String, usize)>,
        seen: std::collections::HashMap<String, usize>,
    }

    impl Fake {
        fn failing(steps: &[(&str, usize)]) -> Fake {
            Fake {
                fail: steps.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
                ..Fake::default()
            }
        }
    }

    impl Effects for Fake {
        fn run(&mut self, step: &Step, mv: &Move) -> Result<Option<PathBuf>> {
            let label = match step {
                Step::Snapshot { of, .. } => format!("snapshot {of}"),
                Step::Restore { snapshot } => format!("restore {}", snapshot.display()),
                Step::Switch { to } => format!("switch {to}"),
                Step::Hook { command } => format!("hook {command}"),
                Step::Start => format!("start {}", mv.target()),
                other => other.name().to_string(),
            };
            self.log.push(label.clone());
            let n = self.seen.entry(step.name().to_string()).or_default();
            *n += 1;
            if self.fail.contains(&(step.name().to_string(), *n)) {
                anyhow::bail!("{label} failed");
            }
            Ok(match step {
                Step::Snapshot { of, .. } => Some(PathBuf::from(format!("/snap/{of}"))),
                _ => None,
            })
        }
    }

    fn journal_at(name: &str) -> (PathBuf, Journal) {
        let dir = std::env::temp_dir().join(format!("deploy-exec-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(journal::FILE);
        let j = Journal::open(&path).unwrap();
        (path, j)
    }

    fn settings(hooks: &[&str]) -> Settings {
        Settings {
            protected: true,
            hooks: hooks.iter().map(|h| h.to_string()).collect(),
            hold: false,
        }
    }

    #[test]
    fn a_release_runs_its_plan_and_closes_the_journal() {
        let (path, j) = journal_at("ok");
        let mut fx = Fake::default();
        let out = swap(
            &mut fx,
            j,
            &Move::release("v2", Some("v1"), true),
            &settings(&[]),
        );
        assert!(matches!(out, Outcome::Live { front: None, .. }), "{out:?}");
        assert_eq!(
            fx.log,
            [
                "pre-copy",
                "enter-gap",
                "stop",
                "snapshot v1",
                "switch v2",
                "start v2",
                "health",
                "leave-gap"
            ]
        );
        assert!(!path.exists());
    }

    #[test]
    fn a_failing_second_hook_restores_the_gap_snapshot_before_the_previous_release_starts() {
        let (path, j) = journal_at("hook");
        let mut fx = Fake::failing(&[("hook", 2)]);
        let mv = Move::release("v2", Some("v1"), true);
        let out = swap(&mut fx, j, &mv, &settings(&["migrate", "seed"]));
        let Outcome::Undone { back, .. } = out else {
            panic!("{out:?}")
        };
        assert_eq!(back.to.as_deref(), Some("v1"));
        assert_eq!(
            fx.log,
            [
                "pre-copy",
                "enter-gap",
                "stop",
                "snapshot v1",
                "hook migrate",
                "hook seed",
                // The put-back, in the same gap:
                "clear",
                "image",
                "stop",
                "snapshot v2",
                "restore /snap/v1",
                "switch v1",
                "start v1",
                "health",
                "leave-gap"
            ]
        );
        assert!(!path.exists());
    }

    #[test]
    fn a_hook_that_cannot_be_removed_stops_the_put_back_before_data_or_a_start() {
        let (path, j) = journal_at("clear");
        // The hook runs out of time and its container will not go: the put-back's first step.
        let mut fx = Fake::failing(&[("hook", 1), ("clear", 1)]);
        let mv = Move::release("v2", Some("v1"), true);
        let out = swap(&mut fx, j, &mv, &settings(&["migrate"]));
        assert!(matches!(out, Outcome::Stuck { .. }), "{out:?}");
        assert_eq!(
            fx.log,
            [
                "pre-copy",
                "enter-gap",
                "stop",
                "snapshot v1",
                "hook migrate",
                "clear"
            ]
        );
        assert!(path.exists(), "the journal stays for the next command");
    }

    #[test]
    fn without_backup_touched_data_leaves_the_app_stopped() {
        let (_, j) = journal_at("halt");
        let mut fx = Fake::failing(&[("health", 1)]);
        let out = swap(
            &mut fx,
            j,
            &Move::release("v2", Some("v1"), false),
            &settings(&[]),
        );
        let Outcome::Undone { back, .. } = out else {
            panic!("{out:?}")
        };
        assert_eq!(back.kind, Kind::Halt);
        assert_eq!(
            fx.log,
            [
                "enter-gap",
                "stop",
                "switch v2",
                "start v2",
                "health",
                "clear",
                "stop"
            ]
        );
    }

    #[test]
    fn a_failed_put_back_keeps_the_journal_and_the_next_command_recovers_with_data() {
        let (path, j) = journal_at("stuck");
        // The health check fails twice: the new release's, then the put-back's.
        let mut fx = Fake::failing(&[("health", 1), ("health", 2)]);
        let out = swap(
            &mut fx,
            j,
            &Move::release("v2", Some("v1"), true),
            &settings(&[]),
        );
        assert!(matches!(out, Outcome::Stuck { .. }), "{out:?}");
        assert!(path.exists(), "the journal stays for the next command");

        let j = Journal::open(&path).unwrap();
        let mut fx = Fake::default();
        let out = recover(&mut fx, j, &settings(&[]));
        assert!(matches!(out, Outcome::Live { .. }), "{out:?}");
        assert_eq!(
            fx.log,
            [
                "clear",
                "image",
                "enter-gap",
                "stop",
                "restore /snap/v1",
                "switch v1",
                "start v1",
                "health",
                "leave-gap"
            ],
            "v2's data was kept by the first put-back already"
        );
        assert!(!path.exists());
    }

    #[test]
    fn a_swap_killed_after_its_health_check_is_confirmed_not_undone() {
        let (path, mut j) = journal_at("confirm");
        let mv = Move::release("v2", Some("v1"), true);
        j.append(Entry::Move {
            mv,
            owner: crate::node::swap::journal::Owner::pid(1),
            at: now(),
        })
        .unwrap();
        for step in [Step::Stop, Step::Start, Step::Health] {
            j.append(Entry::Begin { step: step.clone() }).unwrap();
            j.append(Entry::Done {
                step,
                snapshot_dir: None,
            })
            .unwrap();
        }
        drop(j);
        let mut fx = Fake::default();
        let out = recover(&mut fx, Journal::open(&path).unwrap(), &settings(&[]));
        assert!(matches!(out, Outcome::Live { .. }), "{out:?}");
        assert_eq!(fx.log, ["health", "leave-gap"]);
    }

    #[test]
    fn a_confirmation_that_fails_undoes_the_swap() {
        let (path, mut j) = journal_at("confirm-fails");
        j.append(Entry::Move {
            mv: Move::release("v2", Some("v1"), true),
            owner: crate::node::swap::journal::Owner::pid(1),
            at: now(),
        })
        .unwrap();
        j.append(Entry::Done {
            step: Step::Snapshot {
                of: "v1".into(),
                kind: Default::default(),
            },
            snapshot_dir: Some("/snap/v1".into()),
        })
        .unwrap();
        j.append(Entry::Begin { step: Step::Start }).unwrap();
        j.append(Entry::Done {
            step: Step::Health,
            snapshot_dir: None,
        })
        .unwrap();
        drop(j);
        let mut fx = Fake::failing(&[("health", 1)]);
        let out = recover(&mut fx, Journal::open(&path).unwrap(), &settings(&[]));
        assert!(matches!(out, Outcome::Undone { .. }), "{out:?}");
        assert!(
            fx.log.contains(&"restore /snap/v1".to_string()),
            "{:?}",
            fx.log
        );
        assert!(fx.log.contains(&"snapshot v2".to_string()), "{:?}", fx.log);
    }

    #[test]
    fn a_failed_copy_before_the_stop_changes_nothing() {
        let (path, j) = journal_at("pre-copy");
        let mut fx = Fake::failing(&[("pre-copy", 1)]);
        let mv = Move::release("v2", Some("v1"), true);
        let out = swap(&mut fx, j, &mv, &settings(&[]));
        assert!(matches!(out, Outcome::NotStarted(_)), "{out:?}");
        assert_eq!(fx.log, ["pre-copy"], "nothing stopped, nothing put back");
        assert!(!path.exists());
    }

    #[test]
    fn traefik_down_changes_nothing_and_a_failed_gap_end_keeps_the_release() {
        let (_, j) = journal_at("front");
        let mut fx = Fake::failing(&[("enter-gap", 1)]);
        let out = swap(
            &mut fx,
            j,
            &Move::release("v2", Some("v1"), true),
            &settings(&[]),
        );
        assert!(matches!(out, Outcome::NotStarted(_)), "{out:?}");
        assert_eq!(fx.log, ["pre-copy", "enter-gap"]);

        let (_, j) = journal_at("front-back");
        let mut fx = Fake::failing(&[("leave-gap", 1)]);
        let out = swap(
            &mut fx,
            j,
            &Move::release("v2", Some("v1"), true),
            &settings(&[]),
        );
        assert!(
            matches!(out, Outcome::Live { front: Some(_), .. }),
            "{out:?}"
        );
    }
}
