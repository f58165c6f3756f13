//! What runs on the server: setup, the release and rollback stages, the swap (a plan and its
//! executor, in `swap/`), and what is deployed. It acts on this machine, as the user who owns
//! the app.
//!
//! A release reads as Capistrano's flow: starting (checks, the lock, recovering a dead swap)
//! -> updating (upload, image build) -> publishing (the swap) -> finishing (prune, report).
//! A rollback: starting -> reverting (the target and its data) -> publishing.

pub mod appenv;
pub(crate) mod apply;
pub mod borrowed;
pub mod check;
pub mod data;
mod exec;
pub mod fence;
pub mod front;
pub mod hold;
pub mod jobs;
pub mod layout;
pub mod lock;
pub mod logs;
pub mod plan;
pub mod preview;
pub(crate) mod prune;
mod publish;
mod recovery;
mod release;
pub mod remove;
mod rename;
pub mod replicate;
pub mod request;
pub mod rollback;
pub mod runtime;
pub mod schema;
pub mod server;
pub mod shared_path;
pub mod snapshot;
pub mod state;
pub mod status;
pub mod swap;
pub mod unit;
pub mod upload;

use crate::config::{Config, Environment};
use crate::node::state::{Action, Event, EventOutcome, State};
use crate::sys::systemd::Active;
use crate::sys::systemd::Systemd;
use crate::ui::Ui;
use crate::{sys::fsx, sys::podman};
use anyhow::{anyhow, bail, Context, Result};
use layout::Layout;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Node<'a> {
    pub config: &'a Config,
    pub env_name: String,
    pub env: &'a Environment,
    pub layout: Layout,
    pub home: PathBuf,
    /// The directory of the config file (the maintenance page is relative to it).
    pub project_dir: PathBuf,
    pub ui: Ui,
    /// How long to wait for another deploy's lock (`--lock-wait`); none: fail at once.
    pub lock_wait: Option<Duration>,
    /// The config as this run resolved it (what the server keeps to act by itself).
    pub config_text: Option<String>,
    /// When a restore's placing began and its last database was in place (its span's parts,
    /// for the report).
    pub(crate) placing: data::Placing,
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
        let root = fsx::expand_home(&env.path, &home)?;
        layout::check_root(&root, &home)
            .map_err(|e| crate::exit::with(crate::exit::Code::Config, e))?;
        Ok(Node {
            config,
            env_name,
            env,
            layout: Layout::new(root),
            home,
            project_dir: project_dir.to_path_buf(),
            ui,
            lock_wait: None,
            config_text: None,
            placing: std::cell::Cell::new(None),
        })
    }

    /// What an owner of a part of the app borrows of this node.
    pub(crate) fn borrowed(&self) -> borrowed::Borrowed<'_> {
        borrowed::Borrowed {
            config: self.config,
            env_name: &self.env_name,
            env: self.env,
            layout: &self.layout,
            home: &self.home,
            ui: self.ui,
        }
    }

    /// The names of this app in this environment (units, containers, images, routers).
    pub fn names(&self) -> crate::names::Names {
        crate::names::Names::new(&self.config.app, &self.env_name)
    }

    /// The version `current` points at, if any.
    pub fn current(&self) -> Result<Option<String>> {
        self.layout.current_version()
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

    /// The deploy lock for `what`, a command that changes the environment: refused (exit 4)
    /// while it is held by hand (`deploy lock acquire`), before and after any wait for the lock
    /// (`--lock-wait` never waits for a hold by hand).
    pub(crate) fn lock(&self, what: &str) -> Result<lock::NodeLock> {
        self.require_setup()?;
        self.refuse_if_held(what)?;
        let lock = self.take_lock(what)?;
        self.refuse_if_held(what)?;
        Ok(lock)
    }

    /// The deploy lock for a command that a hold by hand lets through (`deploy maintenance`,
    /// which whoever holds it may need).
    pub(crate) fn lock_despite_hold(&self, what: &str) -> Result<lock::NodeLock> {
        self.require_setup()?;
        self.take_lock(what)
    }

    /// The lock, in a directory known to be there.
    fn take_lock(&self, what: &str) -> Result<lock::NodeLock> {
        let lock = lock::acquire(&self.layout.lock_file(), what, self.lock_wait)?;
        if self
            .layout
            .meta()
            .join(crate::node::data::migrate::PLAN_FILE)
            .exists()
        {
            bail!(
                "a `deploy migrate-data` on {} was interrupted: run it again to finish it first",
                self.env_name
            );
        }
        Ok(lock)
    }

    pub(crate) fn load_state(&self) -> Result<State> {
        State::of(&self.layout)
    }

    pub(crate) fn save_state(&self, state: &State) -> Result<()> {
        state.save(&self.layout.state_file())
    }

    // ---------------------------------------------------------------- checks

    /// Fails when `port` on 127.0.0.1 is taken while `unit` (its rightful owner) is not
    /// running: another process has it, and the app could not start.
    pub(crate) fn check_port(&self, systemd: &Systemd, port: u16, unit: &str) -> Result<()> {
        let running = |u: &str| {
            systemd
                .state(u)
                .map(|s| {
                    matches!(
                        s.active,
                        Active::Active | Active::Activating | Active::Deactivating
                    )
                })
                .unwrap_or(false)
        };
        // In socket mode the port's holder is the app's own socket unit.
        let socket = unit.strip_suffix(".service").map(|b| format!("{b}.socket"));
        let owner_running = running(unit) || socket.is_some_and(|s| running(&s));
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

    pub fn setup(&self, reset_storage: bool) -> Result<()> {
        let l = &self.layout;
        let root = l.root.display().to_string();
        if let Some(bad) = root
            .chars()
            .find(|c| crate::config::UNSAFE_PATH_CHARS.contains(*c))
        {
            bail!("the app directory {root} contains {bad:?}, which unit files cannot carry");
        }
        // A schedule systemd does not take stops setup before anything is written.
        if !self.config.jobs.is_empty() {
            self.ui
                .step("Checking the jobs' schedules", || self.check_schedules())?;
        }
        // The lock first, in the only directories it needs: nothing else is written, and no
        // unit stopped or started, while another deploy works here.
        fsx::ensure_dir(&l.root, 0o755)?;
        fsx::ensure_private_dir(&l.meta())?;
        let _lock = self.take_lock(&format!("deploy setup {}", self.env_name))?;
        self.ui.step(
            "Checking the other apps of this user (ports, Traefik)",
            || self.front().register_app(),
        )?;
        let systemd = self
            .ui
            .step("Connecting to the systemd user manager", Systemd::connect)?;
        // A swap whose process died is put right before setup touches the units.
        if self.unfinished_swap()?.is_some() {
            let mut state = self.load_state()?;
            self.recover(&systemd, &mut state, request::Protection::Required, false)?;
        }
        self.ui.step(&format!("Preparing {root}"), || {
            for d in [&l.releases(), &l.shared(), &l.log_dir()] {
                fsx::ensure_dir(d, 0o755)?;
            }
            self.prepare_shared()?;
            self.complete_release_envs()
        })?;
        self.setup_server(&systemd, reset_storage)?;
        self.setup_app(&systemd)?;
        self.setup_replication_and_jobs(&systemd)?;
        self.ui.info(&format!(
            "{} is ready on {root}: release with `deploy release VERSION {}`",
            self.config.app, self.env_name
        ));
        Ok(())
    }

    /// What the server runs for every app: the recovery of a dead swap, verify's timer, rsync,
    /// Podman and its storage.
    fn setup_server(&self, systemd: &Systemd, reset_storage: bool) -> Result<()> {
        self.ui.step(
            "Installing the recovery of a swap whose process dies",
            || self.install_recovery(systemd),
        )?;
        self.sync_verify_timer(systemd)?;
        self.ui
            .step("Checking rsync", crate::sys::rsync::check_installed)?;
        self.check_podman()?;
        self.runtime().setup_storage(systemd, reset_storage)
    }

    /// The app's unit (kept stopped until a release), its listening, its Traefik router, and
    /// an app set up by an older deploy moved to today's layout.
    fn setup_app(&self, systemd: &Systemd) -> Result<()> {
        let rt = self.runtime();
        let legacy = self.has_legacy_app();
        self.remove_legacy_gap_server(systemd)?;
        if !legacy {
            self.check_port(systemd, self.env.port, &rt.unit_name())?;
        }
        self.warn_readable_shared_files();
        let unit_path = rt.unit_path();
        self.ui
            .step(&format!("Writing {}", unit_path.display()), || {
                let spec = rt.unit_spec();
                let text = unit::render(&spec)?;
                systemd.install_unit(&rt.user_unit_dir(), &rt.unit_name(), &text)
            })?;
        rt.setup_listen(systemd)?;
        if let Some(t) = &self.config.traefik {
            self.check_port(systemd, self.env.gap_port(), &self.names().gap_unit())?;
            let keep_bin = || self.keep_for_server();
            self.front()
                .setup_traefik(systemd, t, &self.project_dir, keep_bin)?;
            self.remove_legacy_router(t)?;
        } else {
            self.front().remove_front(systemd)?;
        }
        if legacy {
            self.move_legacy_app(systemd)?;
        }
        rt.keep_stopped(systemd)
    }

    /// Litestream beside the app (or none), and the jobs' timers.
    fn setup_replication_and_jobs(&self, systemd: &Systemd) -> Result<()> {
        let repl = self.replication();
        if let Some(r) = &self.config.replicate {
            let unit = self.names().replication_unit();
            self.ui.step(
                &format!(
                    "Replicating the databases to {} ({unit})",
                    replicate::shown_url(&r.url)
                ),
                || repl.sync(systemd),
            )?;
        } else {
            repl.sync(systemd)?;
        }
        if self.jobs_changed()? {
            self.ui
                .step(jobs::INSTALL_STEP, || self.install_jobs(systemd))?;
        }
        Ok(())
    }
}

pub(crate) fn event(
    action: Action,
    version: &str,
    from: Option<String>,
    outcome: EventOutcome,
    gap: Option<Duration>,
    detail: Option<&str>,
) -> Event {
    Event {
        at: crate::sys::now(),
        action,
        version: version.into(),
        from,
        outcome,
        gap_ms: gap.map(|g| g.as_millis() as u64),
        detail: detail.map(String::from),
        origin: crate::node::state::Origin::current(),
    }
}
