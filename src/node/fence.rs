//! The fence: one writer of `shared/` at a time. Every process that may write an environment's
//! data is named here:
//!
//! | writer | when | how the fence knows it |
//! |---|---|---|
//! | the app (its unit) | while live | the swap stops it in its gap |
//! | an `in_gap` hook | inside a swap's gap | the swap runs it; `clear` removes a left one |
//! | `deploy exec` | outside gaps | a container labelled [`KIND_LABEL`]` = exec`, created under the fence's lock while it is open, else refused (exit 4) |
//! | a job (its timer, `deploy jobs run`) | outside gaps, while a release is live and not halted | a container labelled [`KIND_LABEL`]` = job` and `deploy.job`, created under the fence's lock while it is open; one that comes due while it is closed waits for it (then runs as the new live release), bounded |
//! | a data restore, a put-back, `migrate-data`, `deploy restore` | inside a gap | the lock, the fence closed |
//! | Litestream | always (it checkpoints) | stopped before data is put back |
//!
//! A swap (and a restore, `migrate-data`) closes the fence right before its gap: from then no
//! exec or job starts, and those already running are waited for (`--lock-wait`), stopped
//! (`--stop-running`) or named in a refusal (exit 4). The fence opens again when the swap is
//! done; a swap whose process died leaves it closed until the swap is put right.

use crate::exit::{self, Code};
use crate::node::request::Writers;
use crate::node::Node;
use anyhow::{anyhow, bail, Context, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What a one-off container is: `hook`, `exec` or `job`.
pub const KIND_LABEL: &str = "deploy.kind";
/// Who started it (user@host where `deploy` was typed).
pub const BY_LABEL: &str = "deploy.by";

/// A one-off container's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Hook,
    Exec,
    Job,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hook => "hook",
            Kind::Exec => "exec",
            Kind::Job => "job",
        }
    }
}

/// A running exec or job container, as a refusal names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub name: String,
    pub kind: String,
    pub by: String,
    pub since: String,
    /// Podman's state: `created` for one made and never started.
    pub state: String,
    /// When it was made, as podman prints it (`2026-11-26 13:19:31.12 +0000 UTC`).
    pub created: String,
    pub command: String,
}

impl Running {
    /// One line of `podman ps --format` ([`LIST_FORMAT`]). Pure.
    fn parse(line: &str) -> Option<Running> {
        let mut f = line.split('|');
        Some(Running {
            name: f.next()?.to_string(),
            kind: f.next()?.to_string(),
            by: f.next()?.to_string(),
            since: f.next()?.to_string(),
            state: f.next()?.to_string(),
            created: f.next()?.to_string(),
            command: f.collect::<Vec<_>>().join("|"),
        })
    }

    /// Made more than a minute before `now` and never started: its client died between
    /// `podman create` and `podman start`. One just made (its start follows at once) is not.
    fn stale_created(&self, now: std::time::SystemTime) -> bool {
        let at = self
            .created
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        self.state == "created"
            && humantime::parse_rfc3339_weak(&at)
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > Duration::from_secs(60))
    }

    fn describe(&self) -> String {
        format!(
            "{} `{}` ({}, started by {}, {}): end it with `podman stop {}`",
            self.kind,
            self.command.trim(),
            self.name,
            if self.by.is_empty() || self.by == "<no value>" {
                "?"
            } else {
                &self.by
            },
            self.since,
            self.name
        )
    }
}

const LIST_FORMAT: &str = "{{.Names}}|{{index .Labels \"deploy.kind\"}}|{{index .Labels \"deploy.by\"}}|{{.RunningFor}}|{{.State}}|{{.Created}}|{{.Command}}";

/// What the fence says, read under its lock.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Gate {
    Open,
    /// A swap's journal (what, in words): under way while its process lives, else unsettled
    /// until it is put right.
    Swap {
        what: String,
        alive: bool,
    },
    /// A swap about to begin, a restore or migrate-data has the data (who): it opens again.
    Closed(String),
}

/// How a job got past the fence: its container made (and, if it had to wait for the fence,
/// what had closed it and for how long), or not (why, in words).
#[derive(Debug)]
pub(crate) enum Passage<T> {
    Through {
        made: T,
        waited: Option<(Duration, String)>,
    },
    Skipped(String),
}

/// The fence closed: open again when dropped.
pub struct Closed {
    marker: PathBuf,
}

impl Drop for Closed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.marker);
    }
}

impl Node<'_> {
    fn fence_lock(&self) -> PathBuf {
        self.layout.meta().join("fence.lock")
    }

    fn fence_marker(&self) -> PathBuf {
        self.layout.meta().join("fence-closed")
    }

    /// Present while no exec or job container of the environment can exist: written by a
    /// closing of the fence that listed none, removed (durably) under the fence's lock before
    /// any is made. A swap that finds it asks podman nothing (a podman process costs 100-250 ms
    /// before the gap); without it (an older deploy's node, an exec since) podman is asked.
    fn none_marker(&self) -> PathBuf {
        self.layout.meta().join("fence-none")
    }

    /// Under the fence's lock, right before a one-off container is made.
    fn may_have_writers(&self) -> Result<()> {
        crate::sys::fsx::remove_durable(&self.none_marker())
    }

    /// Holds the fence's own lock (a short one, never across a build) while `f` runs.
    fn under_fence_lock<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        crate::sys::fsx::with_lock(&self.fence_lock(), f)
    }

    /// What closed the fence, while the one who closed it runs.
    pub(crate) fn fence_closed_by(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.fence_marker()).ok()?;
        crate::node::swap::journal::owner_alive_text(&text)
            .then(|| text.lines().next().unwrap_or_default().to_string())
    }

    /// What the fence says now (call it under the fence's lock): a swap's journal, or the
    /// marker of a closer whose process lives.
    fn gate(&self) -> Result<Gate> {
        if let Some(entries) = self.unfinished_swap()? {
            return Ok(Gate::Swap {
                what: self.swap_report()?.unwrap_or_else(|| "a swap".into()),
                alive: crate::node::publish::entry_owner(&entries).alive(),
            });
        }
        if let Ok(by) = std::fs::read_to_string(self.fence_marker()) {
            if crate::node::swap::journal::owner_alive_text(&by) {
                return Ok(Gate::Closed(
                    by.lines().next().unwrap_or_default().to_string(),
                ));
            }
        }
        Ok(Gate::Open)
    }

    /// `deploy exec`: `create` makes the container (labelled) under the fence's lock, unless
    /// the fence is closed or a swap is unfinished: then nothing is made and the error (exit 4)
    /// says what holds it.
    pub(crate) fn through_fence<T>(&self, create: impl FnOnce() -> Result<T>) -> Result<T> {
        self.under_fence_lock(|| match self.gate()? {
            Gate::Open => {
                self.may_have_writers()?;
                create()
            }
            Gate::Swap { what, .. } => Err(exit::with(
                Code::Locked,
                anyhow!(
                    "{what}: nothing may write the data until it is settled (`deploy status {}`)",
                    self.env_name
                ),
            )),
            Gate::Closed(by) => Err(exit::with(
                Code::Locked,
                anyhow!(
                    "{by} holds the data ({}): try again when it is done, or pass --lock-wait",
                    self.env_name
                ),
            )),
        })
    }

    /// A job: `create` runs under the fence's lock once the fence is open, and makes the
    /// container (or says why not, as its `Err`: nothing live, say). While the fence is closed
    /// (a swap, a restore, migrate-data) this waits for it to open, up to `wait`, so a job that
    /// comes due during a swap runs once it is done, as the release then live. A swap whose
    /// process died (its journal unfinished), a fence closed longer than `wait`, or
    /// SIGTERM/SIGINT while waiting: nothing is made, and why is said.
    pub(crate) fn when_fence_open<T>(
        &self,
        wait: Duration,
        mut create: impl FnMut() -> Result<std::result::Result<T, String>>,
    ) -> Result<Passage<T>> {
        let start = Instant::now();
        let mut first: Option<String> = None;
        loop {
            let closed_by = self.under_fence_lock(|| match self.gate()? {
                Gate::Open => self.may_have_writers().and_then(|()| create()).map(|made| {
                    Ok(match made {
                        Ok(made) => Passage::Through {
                            made,
                            waited: first.clone().map(|by| (start.elapsed(), by)),
                        },
                        Err(why) => Passage::Skipped(why),
                    })
                }),
                Gate::Swap { what, alive: false } => Ok(Ok(Passage::Skipped(format!(
                    "{what}: nothing may write the data until it is settled"
                )))),
                Gate::Swap { what: by, .. } | Gate::Closed(by) => Ok(Err(by)),
            })?;
            let by = match closed_by {
                Ok(passage) => return Ok(passage),
                Err(by) => first.get_or_insert(by).clone(),
            };
            if start.elapsed() >= wait {
                return Ok(Passage::Skipped(format!(
                    "the fence stayed closed for {} ({by})",
                    humantime::format_duration(wait)
                )));
            }
            if crate::signals::interrupted() {
                return Ok(Passage::Skipped(format!(
                    "stopped while it waited for the fence ({by})"
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Closes the fence for `what` (a release, a rollback, a restore, migrate-data): no exec or
    /// job starts from now on. Then the ones running: none, and the fence stays closed until
    /// the returned guard goes; with [`Writers::Stop`], each is stopped (SIGTERM, then its stop
    /// timeout) and removed, confirmed; else they are waited for up to `--lock-wait`; else the
    /// fence opens again and the error (exit 4) names each and how to end it.
    pub(crate) fn close_fence(&self, what: &str, writers: Writers) -> Result<Closed> {
        let marker = self.fence_marker();
        self.under_fence_lock(|| {
            let text = format!(
                "{what}\n{}\n",
                crate::node::swap::journal::Owner::this().to_line()
            );
            crate::sys::fsx::write_atomic(&marker, text.as_bytes(), 0o600)
        })?;
        let closed = Closed { marker };
        let deadline = Instant::now() + self.lock_wait.unwrap_or_default();
        let mut told = false;
        loop {
            // Closed: whoever passed the fence before has made its container (under the lock).
            if self.none_marker().exists() {
                return Ok(closed);
            }
            let running = self.running_writers()?;
            if running.is_empty() {
                crate::sys::fsx::write_atomic(&self.none_marker(), b"", 0o600)?;
                return Ok(closed);
            }
            if writers == Writers::Stop {
                self.stop_writers(&running)?;
                continue;
            }
            if Instant::now() >= deadline {
                let list: Vec<String> = running.iter().map(|r| r.describe()).collect();
                bail!(exit::with(
                    Code::Locked,
                    anyhow!(
                        "{what} waits for what writes {}'s data now:\n  {}\nnothing was \
                         changed; pass --lock-wait DURATION to wait for it, or --stop-running to \
                         stop it first",
                        self.env_name,
                        list.join("\n  ")
                    )
                ));
            }
            if !told {
                self.ui.info(&format!(
                    "   waiting for {} exec/job container(s) to end (--lock-wait)",
                    running.len()
                ));
                told = true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The exec and job containers of this environment that exist now (running or not yet
    /// removed), in one listing. Those made more than a minute ago and never started are
    /// removed on the way (nothing runs in them, and left they would hold the fence for ever).
    pub(crate) fn running_writers(&self) -> Result<Vec<Running>> {
        let label = format!("label={}", self.names().writer_label());
        let lines = crate::sys::podman::lines_of(&[
            "ps",
            "--all",
            "--no-trunc",
            "--filter",
            &label,
            "--format",
            LIST_FORMAT,
        ])
        .context("cannot list the app's one-off containers")?;
        let now = std::time::SystemTime::now();
        let (stale, running): (Vec<Running>, Vec<Running>) = lines
            .iter()
            .map(String::as_str)
            .filter_map(Running::parse)
            .filter(|r| r.kind != Kind::Hook.as_str())
            .partition(|r| r.stale_created(now));
        for r in stale {
            self.ui
                .info(&format!("   removing {}: made, never started", r.name));
            let _ = crate::sys::podman::remove_container_now(&r.name);
        }
        Ok(running)
    }

    /// Stops each (SIGTERM, the app's stop timeout, then a kill) and removes it, confirmed.
    fn stop_writers(&self, running: &[Running]) -> Result<()> {
        for r in running {
            self.ui
                .info(&format!("   stopping {} (--stop-running)", r.describe()));
            crate::sys::podman::stop_and_remove(&r.name, self.config.container.stop_timeout)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_container_names_what_it_runs_and_who_started_it() {
        let r =
            Running::parse(
            "shop_prod_exec_1|exec|ann@laptop|2 minutes ago|running|2026-11-26 13:19:31.12 +0000 UTC|sqlite3 a|b",
        )
        .unwrap();
        assert_eq!(r.command, "sqlite3 a|b");
        let said = r.describe();
        assert!(said.contains("exec `sqlite3 a|b`"), "{said}");
        assert!(
            said.contains("started by ann@laptop, 2 minutes ago"),
            "{said}"
        );
        assert!(said.contains("podman stop shop_prod_exec_1"), "{said}");
        assert!(Running::parse("no fields").is_none());
        let now = humantime::parse_rfc3339_weak("2026-11-26 13:21:00").unwrap();
        assert!(!r.stale_created(now), "a running one is never stale");
        let made = Running {
            state: "created".into(),
            ..r
        };
        assert!(made.stale_created(now), "made 89 s before, never started");
        let just = humantime::parse_rfc3339_weak("2026-11-26 13:19:40").unwrap();
        assert!(
            !made.stale_created(just),
            "made 9 s before: its start follows"
        );
    }
}
