//! The node-side steps: setup, the release lifecycle (upload, build, stop-swap-start, health
//! check, prune or roll back), rollback, and what is deployed. They act on this machine, as the
//! user who owns the app.

use crate::config::{Backup, Config, Environment};
use crate::layout::{self, Layout};
use crate::state::{Event, Outcome, State, Swap};
use crate::systemd::Systemd;
use crate::ui::{fmt_duration, Ui};
use crate::{fsx, health, lock, podman, signals, snapshot, unit, upload, version};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a start job may take (podman run of an existing image).
const START_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Node<'a> {
    pub config: &'a Config,
    pub env_name: String,
    pub env: &'a Environment,
    pub layout: Layout,
    pub home: PathBuf,
    /// The directory of the config file (the maintenance page is relative to it).
    pub project_dir: PathBuf,
    pub ui: Ui,
}

/// One stop-swap-start: what does it, to which release, from which.
pub(crate) struct Move<'a> {
    pub action: &'a str,
    pub to: &'a str,
    pub from: Option<&'a str>,
    /// A snapshot of `to`'s data to put back in the gap (`rollback --with-data`).
    pub restore: Option<PathBuf>,
    /// Go on without Traefik's gap protection when Traefik cannot be switched.
    pub force: bool,
    /// Run `hooks.in_gap` before `to` starts (a release; not a rollback or a put-back).
    pub hooks: bool,
}

/// What `deploy rollback` is given.
pub struct RollbackRequest<'a> {
    pub to: Option<&'a str>,
    pub with_data: bool,
    pub yes: bool,
    pub force: bool,
}

/// What `deploy release` is given.
pub struct ReleaseRequest<'a> {
    pub version: &'a str,
    pub force: bool,
    /// The artifacts are already in `releases/.incoming-VERSION` (uploaded over SSH).
    pub uploaded: bool,
    /// The project directory the artifacts are relative to.
    pub project_dir: &'a Path,
}

pub fn home_dir() -> Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("HOME is not set: deploy needs it to find the app's directory"))
}

impl<'a> Node<'a> {
    pub fn new(
        config: &'a Config,
        env_name: String,
        env: &'a Environment,
        project_dir: &Path,
        ui: Ui,
    ) -> Result<Self> {
        let home = home_dir()?;
        let root = layout::expand_home(&env.path, &home)?;
        Ok(Node {
            config,
            env_name,
            env,
            layout: Layout::new(root),
            home,
            project_dir: project_dir.to_path_buf(),
            ui,
        })
    }

    pub(crate) fn unit_name(&self) -> String {
        unit::unit_name(&self.config.app)
    }

    pub(crate) fn user_unit_dir(&self) -> PathBuf {
        crate::systemd::user_unit_dir(&self.home)
    }

    fn unit_path(&self) -> PathBuf {
        self.user_unit_dir().join(self.unit_name())
    }

    pub(crate) fn image(&self, version: &str) -> String {
        version::image_ref(&self.config.app, version)
    }

    pub(crate) fn stop_timeout(&self) -> Duration {
        self.config.container.stop_timeout + Duration::from_secs(30)
    }

    /// The version `current` points at, if any.
    pub fn current(&self) -> Result<Option<String>> {
        match std::fs::read_link(self.layout.current()) {
            Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| {
                format!(
                    "{} exists but is not a symlink",
                    self.layout.current().display()
                )
            }),
        }
    }

    /// The complete releases on disk (not the incoming ones).
    pub fn releases_on_disk(&self) -> Result<Vec<String>> {
        let dir = self.layout.releases();
        let mut out = Vec::new();
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && entry.file_type()?.is_dir() {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    pub(crate) fn require_setup(&self) -> Result<()> {
        if !self.layout.meta().is_dir() || !self.layout.releases().is_dir() {
            bail!(
                "{} is not set up for deploy: run `deploy setup {}` first",
                self.layout.root.display(),
                self.env_name
            );
        }
        Ok(())
    }

    pub(crate) fn lock(&self, what: &str) -> Result<lock::NodeLock> {
        self.require_setup()?;
        let lock = lock::acquire(&self.layout.lock_file(), what)?;
        if self.layout.meta().join(crate::migrate::PLAN_FILE).exists() {
            bail!(
                "a `deploy migrate-data` on {} was interrupted: run it again to finish it first",
                self.env_name
            );
        }
        Ok(lock)
    }

    pub(crate) fn load_state(&self) -> Result<State> {
        State::load(&self.layout.state_file())
    }

    pub(crate) fn save_state(&self, state: &State) -> Result<()> {
        state.save(&self.layout.state_file())
    }

    // ---------------------------------------------------------------- checks

    /// Fails when `port` on 127.0.0.1 is taken while `unit` (its rightful owner) is not
    /// running: another process has it, and the app could not start.
    pub(crate) fn check_port(&self, systemd: &Systemd, port: u16, unit: &str) -> Result<()> {
        let owner_running = systemd
            .state(unit)
            .map(|s| s.active == "active" || s.active == "activating" || s.active == "deactivating")
            .unwrap_or(false);
        if owner_running {
            return Ok(());
        }
        match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
                "port {port} on 127.0.0.1 is in use by another process, so {unit} could not \
                 listen there: stop that process (`ss -ltnp 'sport = :{port}'` shows it) or \
                 choose another port in the config"
            ),
            Err(e) => Err(e).with_context(|| format!("cannot check port {port}")),
        }
    }

    /// Warns about shared files every user of the machine can read (`.env` holds secrets).
    /// Rootless Podman works, or is made to (a stale state after a reboot), and says so.
    fn check_podman(&self) -> Result<()> {
        if podman::check_runtime(true)? {
            self.ui.info(
                "   podman's state was stale (its containers died with a reboot or a crash): \
                 reset it with `podman system migrate`",
            );
        }
        Ok(())
    }

    fn warn_readable_shared_files(&self) {
        use std::os::unix::fs::PermissionsExt;
        for f in &self.config.shared.files {
            let path = self.layout.shared().join(f);
            if let Ok(m) = std::fs::metadata(&path) {
                if m.permissions().mode() & 0o004 != 0 {
                    self.ui.warn(&format!(
                        "{} is readable by every user of this machine (mode {:o}): `chmod 600 {}`",
                        path.display(),
                        m.permissions().mode() & 0o777,
                        path.display()
                    ));
                }
            }
        }
    }

    // ---------------------------------------------------------------- setup

    pub fn setup(&self) -> Result<()> {
        let l = &self.layout;
        let root = l.root.display().to_string();
        if let Some(bad) = root
            .chars()
            .find(|c| crate::config::UNSAFE_PATH_CHARS.contains(*c))
        {
            bail!("the app directory {root} contains {bad:?}, which unit files cannot carry");
        }
        self.ui.step(&format!("Preparing {root}"), || {
            for d in [&l.root, &l.releases(), &l.shared(), &l.log_dir()] {
                fsx::ensure_dir(d, 0o755)?;
            }
            fsx::ensure_dir(&l.meta(), 0o700)?;
            for d in &self.config.shared.dirs {
                fsx::ensure_dir(&l.shared().join(d), 0o755)?;
            }
            for f in &self.config.shared.files {
                let p = l.shared().join(f);
                if std::fs::symlink_metadata(&p).is_err() {
                    if let Some(parent) = p.parent() {
                        fsx::ensure_dir(parent, 0o755)?;
                    }
                    fsx::write_atomic(&p, b"", 0o600)?;
                }
            }
            Ok(())
        })?;
        self.ui.step("Checking rsync", upload::check_rsync)?;
        self.check_podman()?;
        let systemd = self
            .ui
            .step("Connecting to the systemd user manager", Systemd::connect)?;
        self.check_port(&systemd, self.env.port, &self.unit_name())?;
        self.warn_readable_shared_files();
        let unit_path = self.unit_path();
        self.ui
            .step(&format!("Writing {}", unit_path.display()), || {
                let spec = unit::UnitSpec::new(self.config, l, self.env.port);
                let text = unit::render(&spec)?;
                systemd.install_unit(&self.user_unit_dir(), &self.unit_name(), &text)
            })?;
        if let Some(t) = &self.config.traefik {
            self.setup_traefik(&systemd, t)?;
        }
        self.ui.info(&format!(
            "{} is ready on {root}: release with `deploy release VERSION {}`",
            self.config.app, self.env_name
        ));
        Ok(())
    }

    // ---------------------------------------------------------------- release

    pub fn release(&self, req: &ReleaseRequest) -> Result<()> {
        let v = req.version;
        version::check(v)?;
        let sources = if req.uploaded {
            Vec::new()
        } else {
            upload::artifact_sources(self.config, req.project_dir)?
        };
        let _lock = self.lock(&format!("deploy release {v} {}", self.env_name))?;
        signals::defer();
        self.check_podman()?;
        let systemd = Systemd::connect()?;
        let mut state = self.load_state()?;
        self.recover(&systemd, &mut state)?;
        let current = self.current()?;
        let target = self.layout.release(v);
        if target.exists() {
            if current.as_deref() == Some(v) {
                bail!("{v} is the live release: release a new version, or roll back first");
            }
            if !state.releases.contains_key(v) {
                // Killed after its upload was renamed into place, before it was recorded.
                self.ui.info(&format!(
                    "   releases/{v} is the leftover of an interrupted release: replacing it"
                ));
            } else if !req.force {
                bail!(
                    "release {v} already exists on {}: pick a new version, or pass --force to \
                     replace it",
                    self.env_name
                );
            }
        }
        let image = self.image(v);
        let started = Instant::now();

        let incoming = self.layout.incoming(v);
        let link_dest = current.as_ref().map(|c| self.layout.release(c));
        let label = if req.uploaded {
            format!("Linking shared/ into {v}")
        } else {
            format!("Uploading {v}")
        };
        let uploaded = self.ui.step(&label, || {
            if req.uploaded {
                if !incoming.is_dir() {
                    bail!("nothing was uploaded into {}", incoming.display());
                }
            } else {
                upload::rsync_local(&sources, &incoming, link_dest.as_deref())?;
            }
            upload::finish_release_dir(&incoming, &self.config.shared, &self.config.app, v, &image)
        });
        if let Err(e) = uploaded {
            // A failed upload (a full disk, say) leaves nothing behind; nothing live changed.
            let _ = std::fs::remove_dir_all(&incoming);
            return Err(e.context(format!(
                "the upload of {v} failed: the partial upload was removed, {} keeps serving \
                 what it served",
                self.env_name
            )));
        }
        signals::point("after-upload");
        signals::check("the image build")?;
        if target.exists() {
            // --force on a release that is not live: it goes, the new upload takes its name.
            std::fs::remove_dir_all(&target)
                .with_context(|| format!("cannot remove the old {}", target.display()))?;
        }
        fsx::rename_durable(&incoming, &target)?;
        let built = self.ui.step(&format!("Building image {image}"), || {
            podman::build(&target, &image, self.ui.verbose)
        });
        if let Err(e) = built {
            // The old release keeps serving; the failed build leaves nothing behind under a
            // real name, so the same version can be released again once fixed.
            let _ = std::fs::remove_dir_all(&target);
            state.push_event(event(
                "release",
                v,
                current.clone(),
                "error",
                None,
                Some("image build failed"),
            ));
            self.save_state(&state)?;
            return Err(e);
        }
        state.add_release(v, &image);
        self.save_state(&state)?;
        signals::point("after-build");
        signals::check("the swap")?;
        self.check_port(&systemd, self.env.port, &self.unit_name())?;
        self.warn_readable_shared_files();

        let gap = self.swap(
            &systemd,
            &mut state,
            &Move {
                action: "release",
                to: v,
                from: current.as_deref(),
                restore: None,
                force: req.force,
                hooks: true,
            },
        )?;
        if signals::interrupted() {
            return Err(crate::exit::with(
                crate::exit::Code::Interrupted,
                anyhow!("interrupted during the swap, which was finished first: {v} is live (old releases were not pruned)"),
            ));
        }

        let pruned = self
            .ui
            .step("Pruning old releases", || self.prune(&mut state))?;
        if !pruned.is_empty() {
            self.ui.info(&format!("   removed {}", pruned.join(", ")));
        }
        let total = started.elapsed();
        self.ui.done(
            &format!(
                "{} {v} is live on {} ({} in all, gap {})",
                self.config.app,
                self.env_name,
                fmt_duration(total),
                fmt_duration(gap)
            ),
            serde_json::json!({
                "action": "release",
                "version": v,
                "previous": current,
                "environment": self.env_name,
                "total_ms": total.as_millis() as u64,
                "gap_ms": gap.as_millis() as u64,
                "pruned": pruned,
            }),
        );
        Ok(())
    }

    /// Stop-swap-start behind Traefik: the router goes to the gap server first (and the app is
    /// not stopped unless that is confirmed live), and back to the app after.
    fn swap(&self, systemd: &Systemd, state: &mut State, mv: &Move) -> Result<Duration> {
        // Recorded before anything changes and cleared after everything is back in order: a
        // command killed in between leaves this for the next one to recover from.
        state.swap = Some(Swap {
            action: mv.action.into(),
            to: mv.to.into(),
            from: mv.from.map(String::from),
            started_at: crate::state::now(),
            pid: std::process::id(),
        });
        self.save_state(state)?;
        let result = self.swap_protected(systemd, state, mv);
        state.swap = None;
        self.save_state(state)?;
        result
    }

    fn swap_protected(&self, systemd: &Systemd, state: &mut State, mv: &Move) -> Result<Duration> {
        let Some(router) = self.router()? else {
            return self.swap_unprotected(systemd, state, mv);
        };
        if let Err(e) = self.enter_gap(&router) {
            if !mv.force {
                return Err(e.context(format!(
                    "start Traefik (its API is {}), or pass --force to go on without it: \
                     requests in the gap then fail",
                    router.api.base
                )));
            }
            self.ui.warn(&format!(
                "{e:#}: going on without Traefik's gap protection (--force)"
            ));
            // What Traefik reads when it comes back routes to the app, not the gap server.
            router.write(false)?;
            return self.swap_unprotected(systemd, state, mv);
        }
        signals::point("after-gap");
        let outcome = self.swap_unprotected(systemd, state, mv);
        let back = self.leave_gap(&router);
        match (outcome, back) {
            (Ok(gap), Ok(())) => Ok(gap),
            (Ok(_), Err(e)) => Err(e.context(format!(
                "{} is live, but Traefik still routes {} to the gap server: run `deploy \
                 maintenance off {}` once Traefik answers",
                mv.to, router.spec.name, self.env_name
            ))),
            (Err(e), Ok(())) => Err(e),
            (Err(e), Err(b)) => Err(e.context(format!("switching Traefik back failed too: {b:#}"))),
        }
    }

    /// Stop-swap-start to `mv.to`, health-checked; on failure `mv.from` is put back the same
    /// way, with the data it left when `mv.to` may have changed it. Returns the gap: from the
    /// stop to the new release answering its health check.
    fn swap_unprotected(
        &self,
        systemd: &Systemd,
        state: &mut State,
        mv: &Move,
    ) -> Result<Duration> {
        let (action, to, from) = (mv.action, mv.to, mv.from);
        let unit = self.unit_name();
        let t0 = Instant::now();
        let mut taken = None;
        let result = self.stop_switch_start(
            systemd,
            &unit,
            to,
            (mv.restore.as_deref(), mv.hooks),
            &mut taken,
        );
        let gap = t0.elapsed();
        match result {
            Ok(()) => {
                state.set_outcome(to, Outcome::Ok);
                state.push_event(event(
                    action,
                    to,
                    from.map(String::from),
                    "ok",
                    Some(gap),
                    mv.restore.as_ref().map(|_| "with its data"),
                ));
                self.save_state(state)?;
                Ok(gap)
            }
            Err(e) => {
                let logs = self.app_log_tail(20);
                let restored = match from {
                    Some(prev) => {
                        self.ui
                            .info(&format!("{action} of {to} failed: putting {prev} back"));
                        // `to` ran, and may have changed the data (a migration): `prev` gets
                        // back the data it left, and `to`'s is kept as `to`'s snapshot.
                        let ran = self.current().ok().flatten().as_deref() == Some(to);
                        let data = taken.filter(|_| ran);
                        self.ensure_image(state, prev)
                            .and_then(|_| {
                                self.stop_switch_start(
                                    systemd,
                                    &unit,
                                    prev,
                                    (data.as_deref(), false),
                                    &mut None,
                                )
                            })
                            .map(|()| format!("{prev} is serving again"))
                    }
                    None => systemd.stop(&unit, self.stop_timeout()).and_then(|()| {
                        // Nothing was live before: `current` goes, so nothing claims to be live.
                        std::fs::remove_file(self.layout.current())?;
                        fsx::sync_dir(&self.layout.root)?;
                        Ok("nothing was live before it; the app is stopped".to_string())
                    }),
                };
                state.set_outcome(to, Outcome::Failed);
                let detail = format!("{e:#}");
                state.push_event(event(
                    action,
                    to,
                    from.map(String::from),
                    "failed",
                    None,
                    Some(&detail),
                ));
                self.save_state(state)?;
                let (restored, code) = match restored {
                    Ok(msg) => (msg, crate::exit::Code::RolledBack),
                    Err(r) => (
                        format!(
                            "putting the previous release back failed too: {r:#}. Check \
                             `deploy status {}` and the app's log {}",
                            self.env_name,
                            self.layout.app_log(&self.config.app).display()
                        ),
                        crate::exit::Code::Failed,
                    ),
                };
                Err(crate::exit::with(
                    code,
                    anyhow!(
                        "{action} of {to} failed: {detail}\n{restored}.\nThe app's last log lines:\n{logs}"
                    ),
                ))
            }
        }
    }

    /// One `in_gap` hook: a one-off container of the release's image; a failure carries its
    /// last lines.
    fn run_in_gap_hook(&self, version: &str, hook: &str) -> Result<()> {
        let spec = unit::UnitSpec::new(self.config, &self.layout, self.env.port);
        let image = self.image(version);
        let out = duct::cmd("podman", unit::hook_args(&spec, &image, version, hook))
            .stderr_to_stdout()
            .stdout_capture()
            .unchecked()
            .run()
            .context("cannot run podman")?;
        let text = String::from_utf8_lossy(&out.stdout);
        self.ui.detail(text.trim_end());
        if !out.status.success() {
            bail!(
                "the in_gap hook `{hook}` failed ({}):\n{}",
                out.status,
                podman::tail(&text, 20)
            );
        }
        Ok(())
    }

    /// The image of a release, rebuilt from its release directory if it has gone missing.
    fn ensure_image(&self, state: &State, version: &str) -> Result<String> {
        let image = state
            .releases
            .get(version)
            .map(|r| r.image.clone())
            .unwrap_or_else(|| self.image(version));
        if !podman::image_exists(&image)? {
            self.ui
                .step(&format!("Rebuilding missing image {image}"), || {
                    podman::build(&self.layout.release(version), &image, self.ui.verbose)
                })?;
        }
        Ok(image)
    }

    /// Stop, snapshot the data the stopped release leaves (into `taken`), put back `restore`
    /// if given, run the `in_gap` hooks if asked, switch `current`, start, health-check.
    fn stop_switch_start(
        &self,
        systemd: &Systemd,
        unit: &str,
        version: &str,
        (restore, hooks): (Option<&Path>, bool),
        taken: &mut Option<PathBuf>,
    ) -> Result<()> {
        self.ui.step(&format!("Stopping {unit}"), || {
            systemd.stop(unit, self.stop_timeout())
        })?;
        signals::point("after-stop");
        let leaving = self.current()?.filter(|l| l != version);
        let snapshot_on = self.config.backup == Backup::Snapshot || restore.is_some();
        if let Some(l) = leaving.filter(|_| snapshot_on) {
            let snapshots = self.layout.snapshots(&l);
            let t = self
                .ui
                .step(&format!("Snapshot of the data {l} leaves"), || {
                    snapshot::take(&self.layout.shared(), &snapshots, &snapshot::stamp())
                })?;
            self.ui.detail(&format!(
                "   {} database(s), {} KiB, in {}",
                t.databases,
                t.bytes.div_ceil(1024),
                t.dir.display()
            ));
            *taken = Some(t.dir);
        }
        if let Some(snap) = restore {
            self.ui
                .step(&format!("Restoring the data of {version}"), || {
                    snapshot::restore(snap, &self.layout.shared())
                })?;
        }
        if hooks {
            for hook in &self.config.hooks.in_gap {
                self.ui.step(&format!("Hook in_gap: {hook}"), || {
                    self.run_in_gap_hook(version, hook)
                })?;
            }
        }
        self.ui
            .step(&format!("Switching current to {version}"), || {
                fsx::replace_symlink(&self.layout.current(), &Layout::current_target(version))
            })?;
        signals::point("after-switch");
        self.ui.step(&format!("Starting {unit}"), || {
            systemd.start(unit, START_TIMEOUT)
        })?;
        signals::point("after-start");
        let url = health::url(self.env.port, &self.config.health.path);
        let healthy = self.ui.step(&format!("Health check {url}"), || {
            let h = &self.config.health;
            health::wait_healthy(&url, h.timeout, h.interval, || {
                let s = systemd.state(unit)?;
                if s.active == "failed" || s.active == "inactive" || s.sub == "auto-restart" {
                    bail!("{unit} is {} ({}): the app exited", s.active, s.sub);
                }
                Ok(())
            })
            .map(|_| ())
        });
        signals::point("after-health");
        healthy
    }

    /// An earlier release or rollback that was killed during its swap left `state.swap` behind
    /// (the unit may be stopped, `current` may name a release that never passed its health
    /// check): the release that was live before it is put back, the same way, and said so.
    fn recover(&self, systemd: &Systemd, state: &mut State) -> Result<()> {
        let Some(swap) = state.swap.take() else {
            return Ok(());
        };
        // A recovery that was itself interrupted still has its target to put back.
        let back = if swap.action == "recover" {
            Some(swap.to.clone())
        } else {
            swap.from.clone()
        }
        .filter(|f| self.layout.release(f).is_dir());
        self.ui.warn(&format!(
            "a {} to {} (pid {}, started {}) was interrupted during its swap: {}",
            swap.action,
            swap.to,
            swap.pid,
            swap.started_at,
            match &back {
                Some(b) => format!("putting {b} back"),
                None => "nothing was live before it; stopping the app".into(),
            }
        ));
        if back.as_deref() != Some(swap.to.as_str()) {
            state.set_outcome(&swap.to, Outcome::Failed);
        }
        state.push_event(event(
            &swap.action,
            &swap.to,
            swap.from.clone(),
            "interrupted",
            None,
            Some("the command was killed during the swap"),
        ));
        self.save_state(state)?;
        match back {
            Some(prev) => {
                self.ensure_image(state, &prev)?;
                let mv = Move {
                    action: "recover",
                    to: &prev,
                    from: None,
                    restore: None,
                    force: false,
                    hooks: false,
                };
                self.swap(systemd, state, &mv)?;
            }
            None => {
                systemd.stop(&self.unit_name(), self.stop_timeout())?;
                if std::fs::symlink_metadata(self.layout.current()).is_ok() {
                    std::fs::remove_file(self.layout.current())?;
                    fsx::sync_dir(&self.layout.root)?;
                }
                if let Some(router) = self.router()? {
                    self.leave_gap(&router)?;
                }
            }
        }
        Ok(())
    }

    /// The last lines the app wrote (podman's k8s-file log, prefixes removed).
    pub fn app_log_tail(&self, n: usize) -> String {
        let path = self.layout.app_log(&self.config.app);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(strip_k8s_prefix).collect();
        if lines.is_empty() {
            return format!("  (nothing in {})", path.display());
        }
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| format!("  | {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn prune(&self, state: &mut State) -> Result<Vec<String>> {
        let on_disk = self.releases_on_disk()?;
        let current = self.current()?;
        let previous = current.as_deref().and_then(|c| state.previous(&on_disk, c));
        let doomed = state.prune_plan(
            &on_disk,
            current.as_deref(),
            previous.as_deref(),
            self.config.keep_releases,
        );
        for v in &doomed {
            let image = state
                .releases
                .get(v)
                .map(|r| r.image.clone())
                .unwrap_or_else(|| self.image(v));
            std::fs::remove_dir_all(self.layout.release(v))
                .with_context(|| format!("cannot remove release {v}"))?;
            if let Err(e) = podman::remove_image(&image) {
                self.ui.warn(&format!("{e:#}"));
            }
            state.releases.remove(v);
        }
        // Uploads that an interrupted release left (a dropped connection, a kill) and no
        // release has picked up within an hour.
        for e in std::fs::read_dir(self.layout.releases())?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(3600));
            if name.starts_with(layout::INCOMING_PREFIX) && stale {
                std::fs::remove_dir_all(e.path())
                    .with_context(|| format!("cannot remove the stale upload {name}"))?;
            }
        }
        fsx::sync_dir(&self.layout.releases())?;
        self.save_state(state)?;
        Ok(doomed)
    }

    // ---------------------------------------------------------------- rollback

    pub fn rollback(&self, req: &RollbackRequest) -> Result<()> {
        let to = req.to;
        let _lock = self.lock(&format!("deploy rollback {}", self.env_name))?;
        signals::defer();
        self.check_podman()?;
        let systemd = Systemd::connect()?;
        let mut state = self.load_state()?;
        self.recover(&systemd, &mut state)?;
        let on_disk = self.releases_on_disk()?;
        let current = self.current()?;
        let target = match to {
            Some(t) => {
                version::check(t)?;
                if !on_disk.iter().any(|v| v == t) {
                    bail!(
                        "there is no release {t} on {}: it has {}",
                        self.env_name,
                        if on_disk.is_empty() {
                            "none".into()
                        } else {
                            on_disk.join(", ")
                        }
                    );
                }
                if current.as_deref() == Some(t) {
                    bail!("{t} is already the live release");
                }
                t.to_string()
            }
            None => {
                let cur = current.as_deref().ok_or_else(|| {
                    anyhow!(
                        "nothing is live on {} yet: there is nothing to roll back",
                        self.env_name
                    )
                })?;
                state.previous(&on_disk, cur).ok_or_else(|| {
                    anyhow!(
                        "there is no release before {cur} to roll back to (releases: {}); name \
                         one with --to",
                        on_disk.join(", ")
                    )
                })?
            }
        };
        let restore = if req.with_data {
            Some(self.confirm_data_restore(&target, current.as_deref(), req.yes)?)
        } else {
            None
        };
        let image = self.ensure_image(&state, &target)?;
        if !state.releases.contains_key(&target) {
            state.add_release(&target, &image);
        }
        let started = Instant::now();
        let gap = self.swap(
            &systemd,
            &mut state,
            &Move {
                action: "rollback",
                to: &target,
                from: current.as_deref(),
                restore,
                force: req.force,
                hooks: false,
            },
        )?;
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

pub(crate) fn event(
    action: &str,
    version: &str,
    from: Option<String>,
    outcome: &str,
    gap: Option<Duration>,
    detail: Option<&str>,
) -> Event {
    Event {
        at: crate::state::now(),
        action: action.into(),
        version: version.into(),
        from,
        outcome: outcome.into(),
        gap_ms: gap.map(|g| g.as_millis() as u64),
        detail: detail.map(String::from),
    }
}

/// `2026-11-22T19:05:25.32+00:00 stdout F hello` -> `hello`.
pub fn strip_k8s_prefix(line: &str) -> String {
    let mut parts = line.splitn(4, ' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), Some("stdout" | "stderr"), Some(_), Some(msg)) => msg.to_string(),
        _ => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k8s_log_prefix_is_stripped() {
        assert_eq!(
            strip_k8s_prefix("2026-11-22T19:05:25.322677983+00:00 stdout F hello log"),
            "hello log"
        );
        assert_eq!(strip_k8s_prefix("plain line"), "plain line");
    }
}
