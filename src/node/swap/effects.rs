//! The steps of a swap on this node: systemd over D-Bus, snapshots, in-gap hooks in Podman,
//! `current`, the health check and Traefik. Each is a thin call; what to run, and what to do
//! when one fails, is decided by the plan and the executor.

use super::{exec::Effects, Move, Step};
use crate::front::traefik::Router;
use crate::node::layout::Layout;
use crate::node::request::Protection;
use crate::node::Node;
use crate::sys::systemd::Systemd;
use crate::{node::snapshot, node::unit, signals, sys::fsx, sys::health, sys::podman};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

pub struct NodeEffects<'a> {
    node: &'a Node<'a>,
    systemd: &'a Systemd,
    unit: String,
    router: Option<Router>,
    /// Whether to go on without Traefik's gap protection when Traefik cannot be switched.
    protection: Protection,
    /// Traefik could not be switched and `protection` said to go on: no gap to leave.
    unprotected: bool,
    /// The app's last log lines when the first step failed, before anything was put back.
    pub failure_log: Option<String>,
    /// What made the start need a second try, to warn about once the step's line ends.
    retried: Option<String>,
    /// Litestream was stopped before data was restored: started again after the move.
    pub replication_stopped: bool,
    /// The databases copied before the stop, for the gap's snapshot.
    pre_copied: Option<snapshot::PreCopy>,
    /// Snapshots beside which the replica's position at the stop was recorded: confirmed after
    /// the gap.
    pub replica_to_confirm: Vec<PathBuf>,
    /// Put-backs made ready before the stop or with the gap's snapshot (ext4): a rename each.
    staged: Vec<snapshot::Staged>,
    /// Older snapshots the gap's moved out of sight: removed after the gap.
    pub old_snapshots: Vec<PathBuf>,
}

impl<'a> NodeEffects<'a> {
    pub fn new(node: &'a Node<'a>, systemd: &'a Systemd, protection: Protection) -> Result<Self> {
        Ok(NodeEffects {
            node,
            systemd,
            unit: node.runtime().unit_name(),
            router: node.front().router()?,
            protection,
            unprotected: false,
            failure_log: None,
            retried: None,
            replication_stopped: false,
            pre_copied: None,
            replica_to_confirm: Vec::new(),
            staged: Vec::new(),
            old_snapshots: Vec::new(),
        })
    }

    fn enter_gap(&mut self) -> Result<()> {
        let Some(router) = &self.router else {
            return Ok(());
        };
        let Err(e) = self.node.front().enter_gap(router) else {
            return Ok(());
        };
        if self.protection == Protection::Required {
            return Err(e.context(format!(
                "start Traefik (its API is {}), or pass --unprotected to go on without it: requests \
                 in the gap then fail",
                router.api.base
            )));
        }
        self.node.ui.warn(&format!(
            "{e:#}: going on without Traefik's gap protection (--unprotected)"
        ));
        // What Traefik reads when it comes back routes to the app, not the gap server.
        router.write(false)?;
        self.unprotected = true;
        Ok(())
    }

    /// Where the snapshot of `mv` goes: the release's snapshots (the data `of` leaves), or for
    /// a restore what it replaces (`.deploy/replaced/`, a directory a stamp each).
    fn snapshots_of(&self, of: &str, mv: &Move) -> PathBuf {
        let l = &self.node.layout;
        match mv.kind {
            crate::node::swap::Kind::Restore => l.meta().join("replaced"),
            _ => l.snapshots(of),
        }
    }

    /// Before the stop: the databases copied where the file system cannot clone them.
    fn pre_copy(&mut self, mv: &Move) -> Result<()> {
        let of = mv.keep_as.as_deref().unwrap_or_default();
        let dir = self.snapshots_of(of, mv);
        let shared = self.node.layout.shared();
        fsx::ensure_dir(&dir, 0o700)?;
        if !shared.is_dir() || snapshot::clone_method(&shared, &dir) == snapshot::Method::Clone {
            self.node
                .ui
                .detail("   nothing to copy: the snapshot clones");
            return Ok(());
        }
        // What a killed run left half-made goes first.
        snapshot::remove_stale(&shared);
        // A rollback's data made ready beside the live files before any of them is held open.
        if let (crate::node::swap::Kind::Rollback, Some(target)) = (mv.kind, &mv.restore) {
            let staged = snapshot::stage_restore(target, &shared)?;
            if !staged.is_empty() {
                self.staged.push(staged);
            }
        }
        let pre = snapshot::pre_copy(&shared, &dir, true)?;
        self.node.ui.detail(&format!(
            "   {} database(s), {} KiB",
            pre.databases(),
            pre.bytes.div_ceil(1024)
        ));
        for s in &pre.skipped {
            self.node.ui.detail(&format!("   left to the gap: {s}"));
        }
        self.pre_copied = Some(pre);
        Ok(())
    }

    /// The data in shared/ copied: as the data `of` leaves (its release's snapshots), or for a
    /// restore as what it replaces (`.deploy/replaced/<stamp>/`).
    fn snapshot(&mut self, of: &str, kind: snapshot::Kind, mv: &Move) -> Result<PathBuf> {
        let l = &self.node.layout;
        let stamp = snapshot::stamp();
        let dir = match mv.kind {
            crate::node::swap::Kind::Restore => self.snapshots_of(of, mv).join(&stamp),
            _ => self.snapshots_of(of, mv),
        };
        let node = self.node;
        // A put-back made ready before the stop takes the place of what the failed release
        // left: that is moved into its snapshot, not copied (Litestream stopped first).
        let ready: Vec<PathBuf> = match (&mv.kind, &mv.restore) {
            (crate::node::swap::Kind::PutBack, Some(target)) => self
                .staged
                .iter()
                .filter(|s| s.snapshot == *target)
                .flat_map(|s| s.databases())
                .collect(),
            _ => Vec::new(),
        };
        if !ready.is_empty() && !self.replication_stopped {
            self.replication_stopped = node.replication().stop(self.systemd)?;
        }
        let positions = |rels: &[PathBuf]| node.replication().replica_positions(rels);
        let moving = |rel: &std::path::Path| ready.iter().any(|r| r == rel);
        let t = snapshot::take(
            &l.shared(),
            &dir,
            &stamp,
            kind,
            snapshot::How {
                pre: self.pre_copied.as_mut(),
                moving: &moving,
                positions: &positions,
            },
        );
        // The copies' read transactions end here, whatever happened.
        self.pre_copied = None;
        let mut t = t?;
        self.old_snapshots.append(&mut t.old);
        self.node.ui.detail(&format!(
            "   {} database(s), {} KiB, {}, in {}",
            t.databases,
            t.bytes.div_ceil(1024),
            t.method.map(|m| m.as_str()).unwrap_or("nothing to copy"),
            t.dir.display()
        ));
        for n in &t.notes {
            self.node.ui.warn(n);
        }
        if t.replica {
            self.replica_to_confirm.push(t.dir.clone());
        }
        self.staged.extend(t.staged);
        Ok(t.dir)
    }

    /// The health check of the release `mv` makes live, with that release's own settings.
    fn health(&self, mv: &Move) -> Result<()> {
        let h = &self.node.release_health(mv.target());
        let url = health::url(self.node.env.port, &h.path);
        health::wait_healthy(&url, h.timeout, h.interval, || {
            let s = self.systemd.state(&self.unit)?;
            if s.active.is_down() || s.sub == "auto-restart" {
                bail!("{} is {} ({}): the app exited", self.unit, s.active, s.sub);
            }
            Ok(())
        })
        .map(|_| ())
    }

    fn unlink(&self) -> Result<()> {
        let current = self.node.layout.current();
        if std::fs::symlink_metadata(&current).is_ok() {
            std::fs::remove_file(&current)
                .with_context(|| format!("cannot remove {}", current.display()))?;
            fsx::sync_dir(&self.node.layout.root)?;
        }
        Ok(())
    }

    fn act(&mut self, step: &Step, mv: &Move) -> Result<Option<PathBuf>> {
        let node = self.node;
        match step {
            Step::PreCopy => self.pre_copy(mv),
            Step::Clear => node.clear_writers(),
            Step::Image { version } => node
                .runtime()
                .ensure_image(&node.load_state()?, version)
                .map(|_| ()),
            Step::EnterGap => self.enter_gap(),
            Step::Hold => fsx::write_atomic(&node.layout.hold_file(), b"swap\n", 0o600),
            Step::Unhold => fsx::remove_durable(&node.layout.hold_file()),
            Step::Stop => {
                let t = std::time::Instant::now();
                self.systemd
                    .stop(&self.unit, node.runtime().stop_timeout())?;
                node.runtime().note_stop(t.elapsed());
                Ok(())
            }
            Step::Schema => match &mv.expect_schema {
                Some(expected) => node.schema_unchanged(mv.target(), expected),
                None => Ok(()),
            },
            Step::Snapshot { of, kind } => return self.snapshot(of, *kind, mv).map(Some),
            Step::Restore { snapshot } => {
                // Litestream keeps the databases open: it stops before they are put back.
                if !self.replication_stopped {
                    self.replication_stopped = node.replication().stop(self.systemd)?;
                }
                if mv.only_into_empty {
                    // Decided with the app stopped: a database it wrote meanwhile counts,
                    // and one whose data is only in its -wal.
                    let present = snapshot::present_in(snapshot, &node.layout.shared())?;
                    if !present.is_empty() {
                        bail!(
                            "{} has data already ({}): nothing is replaced without --overwrite \
                             (a snapshot of what it replaces is kept first)",
                            node.env_name,
                            present.join(", ")
                        );
                    }
                }
                if mv.kind == crate::node::swap::Kind::Restore {
                    // The replica's databases, downloaded: renamed in, no copy.
                    return node.data().place_downloaded(snapshot).map(|()| None);
                }
                let staged = self.staged.iter_mut().find(|s| s.snapshot == *snapshot);
                let restored = snapshot::restore(snapshot, &node.layout.shared(), staged)?;
                node.ui.detail(&restored.summary());
                if let Some(w) = restored.warning() {
                    node.ui.warn(&w);
                }
                Ok(())
            }
            Step::Data { dir } => node.place_preview_data(dir),
            Step::Hook { command } => {
                node.run_in_gap_hook((mv.target(), mv.from.as_deref()), command)
            }
            Step::Switch { to } => {
                fsx::replace_symlink(&node.layout.current(), &Layout::current_target(to))
            }
            Step::Unlink => self.unlink(),
            Step::Start => {
                self.retried = node.runtime().start_unit(self.systemd, &self.unit)?;
                Ok(())
            }
            Step::Health => self.health(mv),
            Step::LeaveGap => match &self.router {
                Some(r) if !self.unprotected => node.front().leave_gap(r),
                _ => Ok(()),
            },
        }
        .map(|()| None)
    }
}

impl Effects for NodeEffects<'_> {
    fn run(&mut self, step: &Step, mv: &Move) -> Result<Option<PathBuf>> {
        // The gap steps show their own lines (and say when maintenance keeps the page up).
        if matches!(step, Step::EnterGap | Step::LeaveGap) {
            return self.act(step, mv);
        }
        let label = self.node.tell_step(step, mv).label;
        let ui = self.node.ui;
        let done = ui.step(&label, || self.act(step, mv));
        if let Some(warning) = self.retried.take() {
            ui.warn(&warning);
        }
        done
    }

    fn after(&mut self, step: &Step) {
        signals::after(step.name());
    }

    fn failed(&mut self, _step: &Step, _mv: &Move) {
        if self.failure_log.is_none() {
            self.failure_log = Some(self.node.runtime().app_log_tail(20));
        }
    }
}

impl Node<'_> {
    /// Removes every one-off container of the environment that may write `shared/` (hooks,
    /// exec, jobs), confirmed gone: the `clear` step of a put-back, a recovery and a halt.
    pub(crate) fn clear_writers(&self) -> Result<()> {
        let removed = podman::remove_labelled(&self.names().writer_label())?;
        // One left by a run from before the label existed goes by its name.
        podman::remove_container_now(&self.names().hook_container())?;
        if !removed.is_empty() {
            self.ui.info(&format!("   removed {}", removed.join(", ")));
        }
        Ok(())
    }

    /// One `in_gap` hook: a one-off container of the release's image, in its own process
    /// group (a Ctrl-C does not reach it), for at most `hooks.timeout`. A hook that runs out of
    /// time is removed with its container, confirmed gone, before anything else happens: the
    /// podman client alone going would leave the container writing. A failure carries its
    /// last lines.
    pub(crate) fn run_in_gap_hook(&self, release: (&str, Option<&str>), hook: &str) -> Result<()> {
        self.run_one_off(&self.runtime().unit_spec(), release, hook, "in_gap hook")
    }

    /// One command (`what` says which, in its messages) in a one-off container of `version`'s
    /// image with `spec`'s env and mounts, as an `in_gap` hook runs ([`Self::run_in_gap_hook`]).
    pub(crate) fn run_one_off(
        &self,
        spec: &unit::UnitSpec,
        (version, previous): (&str, Option<&str>),
        hook: &str,
        what: &str,
    ) -> Result<()> {
        let image = self.runtime().image(version);
        let container = spec.hook_container.clone();
        let timeout = self.config.hooks.timeout;
        let handle = crate::sys::own_group(duct::cmd(
            "podman",
            unit::hook_args(spec, &image, (version, previous), hook),
        ))
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .start()
        .context("cannot run podman")?;
        let out = match handle
            .wait_timeout(timeout)
            .context("cannot wait for podman")?
        {
            Some(out) => out.clone(),
            None => {
                // Both go, whatever fails: the client first (it would otherwise wait on), then
                // the container, which the client going does not stop. The put-back's first
                // step (`clear`) removes it again and fails while it cannot.
                let client = handle.kill();
                let removed = podman::remove_container_now(&container);
                let said = match (&client, &removed) {
                    (Ok(()), Ok(())) => format!("its container {container} was removed"),
                    _ => format!(
                        "ending it failed ({}{}): the put-back removes {container} first and \
                         does not go on while it is there",
                        client
                            .as_ref()
                            .err()
                            .map(|e| format!("podman's client: {e}; "))
                            .unwrap_or_default(),
                        removed
                            .as_ref()
                            .err()
                            .map(|e| format!("{e:#}"))
                            .unwrap_or_else(|| "the container was removed".into())
                    ),
                };
                bail!(
                    "the {what} `{hook}` did not finish within {} (hooks.timeout): {said}",
                    humantime::format_duration(timeout)
                );
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        self.ui.detail(text.trim_end());
        if !out.status.success() {
            bail!(
                "the {what} `{hook}` failed ({}):\n{}",
                out.status,
                podman::tail(&text, 20)
            );
        }
        Ok(())
    }
}
