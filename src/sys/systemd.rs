//! The user's systemd manager over D-Bus (zbus, blocking): daemon-reload, start and stop with
//! waiting for the job to finish, and unit state.
//!
//! Waiting for a job without a race: subscribe, open the `JobRemoved` stream, then call
//! StartUnit/StopUnit, and keep only the signal whose job path matches. The blocking signal
//! iterator has no timeout, so a thread feeds a channel that is read with a deadline.

use anyhow::{anyhow, bail, Context, Result};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use zbus::blocking::Connection;
use zbus::zvariant::OwnedObjectPath;

/// One change EnableUnitFiles made: (type, symlink, target).
type UnitFileChange = (String, String, String);

// zbus 5, blocking API: zbus 6 removed `zbus::blocking` (and the blocking proxies this macro
// makes). Moving to 6 means these calls become async (`zbus::block_on` around them, or an async
// executor), the `receive_job_removed` iterator a stream, and the deadline in `run_job` a
// timer instead of the thread and channel. Stay on 5 until then.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;
    fn reload(&self) -> zbus::Result<()>;
    fn enable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<(bool, Vec<UnitFileChange>)>;
    fn disable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
    ) -> zbus::Result<Vec<UnitFileChange>>;
    fn start_transient_unit(
        &self,
        name: &str,
        mode: &str,
        properties: &[(&str, zbus::zvariant::Value<'_>)],
        aux: &[(&str, &[(&str, zbus::zvariant::Value<'_>)])],
    ) -> zbus::Result<OwnedObjectPath>;
    fn subscribe(&self) -> zbus::Result<()>;
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
trait Unit {
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn state_change_timestamp(&self) -> zbus::Result<u64>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Timer",
    default_service = "org.freedesktop.systemd1"
)]
trait Timer {
    #[zbus(property, name = "NextElapseUSecRealtime")]
    fn next_elapse_usec_realtime(&self) -> zbus::Result<u64>;
}

/// A transient service: a command run once as a unit of its own (`systemd-run --user`), gone
/// once it ended, whatever its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transient {
    pub name: String,
    pub description: String,
    /// The program (an absolute path) and its arguments.
    pub argv: Vec<String>,
    /// A stop sends SIGTERM to the program only (it ends its children itself), then SIGKILL to
    /// every process left after this long.
    pub stop_timeout: Duration,
    /// `NAME=value` settings of its environment.
    pub environment: Vec<String>,
    /// Stopped after this long whatever happens (`RuntimeMaxSec`), if set.
    pub runtime_max: Option<Duration>,
}

pub struct Systemd {
    conn: Connection,
    manager: ManagerProxyBlocking<'static>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UnitState {
    pub load: String,
    pub active: Active,
    pub sub: String,
    /// Microseconds since the epoch of the last state change (0 if never).
    pub since_us: u64,
}

/// A unit's ActiveState.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Active {
    Active,
    Reloading,
    Inactive,
    Failed,
    Activating,
    Deactivating,
    /// A state this build does not know (systemd adds some now and then).
    Unknown,
}

impl From<&str> for Active {
    fn from(s: &str) -> Active {
        match s {
            "active" => Active::Active,
            "reloading" => Active::Reloading,
            "inactive" => Active::Inactive,
            "failed" => Active::Failed,
            "activating" => Active::Activating,
            "deactivating" => Active::Deactivating,
            _ => Active::Unknown,
        }
    }
}

impl Active {
    pub fn as_str(self) -> &'static str {
        match self {
            Active::Active => "active",
            Active::Reloading => "reloading",
            Active::Inactive => "inactive",
            Active::Failed => "failed",
            Active::Activating => "activating",
            Active::Deactivating => "deactivating",
            Active::Unknown => "unknown",
        }
    }

    /// Not running and not on its way: `inactive` or `failed`.
    pub fn is_down(self) -> bool {
        matches!(self, Active::Inactive | Active::Failed)
    }
}

impl std::fmt::Display for Active {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

/// The address of the user's bus: `DBUS_SESSION_BUS_ADDRESS`, else `$XDG_RUNTIME_DIR/bus`,
/// else `/run/user/UID/bus`.
pub fn bus_address() -> String {
    if let Ok(a) = std::env::var("DBUS_SESSION_BUS_ADDRESS") {
        if !a.is_empty() {
            return a;
        }
    }
    let runtime = std::env::var("XDG_RUNTIME_DIR")
        .ok()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| format!("/run/user/{}", uid()));
    format!("unix:path={runtime}/bus")
}

fn user_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "$USER".into())
}

impl Systemd {
    /// Connects to the user's manager, saying how to fix it when it is not reachable.
    pub fn connect() -> Result<Systemd> {
        let address = bus_address();
        let hint = || {
            format!(
                "cannot reach your systemd user manager on {address}. It runs when you are logged \
                 in, or always once root runs `loginctl enable-linger {}`; XDG_RUNTIME_DIR must be \
                 set (usually /run/user/{})",
                user_name(),
                uid()
            )
        };
        let conn = zbus::blocking::connection::Builder::address(address.as_str())
            .and_then(|b| b.build())
            .with_context(hint)?;
        let manager = ManagerProxyBlocking::new(&conn).with_context(hint)?;
        manager.version().with_context(hint)?;
        // Once per connection: systemd answers AlreadySubscribed to a second call.
        manager.subscribe().context("systemd Subscribe failed")?;
        Ok(Systemd { conn, manager })
    }

    /// daemon-reload; the reply comes when the reload is done.
    pub fn reload(&self) -> Result<()> {
        self.manager
            .reload()
            .context("systemd daemon-reload (user manager) failed")
    }

    /// Writes a unit file (atomically) into the user's unit directory, reloads the manager and
    /// enables the unit, so it also starts with the user's manager (at boot, with lingering).
    /// A timer installed where none was does not catch up on the runs of an earlier one of its
    /// name (a job removed by hand, an app of the same name): see [`forget_timer_runs`].
    pub fn install_unit(&self, dir: &std::path::Path, name: &str, text: &str) -> Result<()> {
        crate::sys::fsx::ensure_dir(dir, 0o755)?;
        if !dir.join(name).exists() {
            forget_timer_runs(name);
        }
        crate::sys::fsx::write_atomic(&dir.join(name), text.as_bytes(), 0o644)?;
        self.reload()?;
        self.manager
            .enable_unit_files(&[name], false, true)
            .with_context(|| format!("cannot enable {name} (systemd EnableUnitFiles)"))?;
        self.reload()
    }

    /// Enables a unit: it starts with the user's manager again (at boot, with lingering).
    pub fn enable(&self, name: &str) -> Result<()> {
        self.manager
            .enable_unit_files(&[name], false, true)
            .with_context(|| format!("cannot enable {name} (systemd EnableUnitFiles)"))?;
        self.reload()
    }

    /// Disables a unit: it no longer starts with the user's manager (a running one runs on).
    pub fn disable(&self, name: &str) -> Result<()> {
        self.manager
            .disable_unit_files(&[name], false)
            .with_context(|| format!("cannot disable {name} (systemd DisableUnitFiles)"))?;
        self.reload()
    }

    /// A service and the unit that starts it (a path unit, a timer): the service written when
    /// its text changed (daemon-reload), the trigger written, enabled and (re)started when its
    /// text changed or it is not enabled (`wanted_by`: its `[Install]` target).
    pub fn install_triggered(
        &self,
        dir: &std::path::Path,
        (service, service_text): (&str, &str),
        (trigger, trigger_text): (&str, &str),
        wanted_by: &str,
    ) -> Result<()> {
        let same = |name: &str, text: &str| {
            std::fs::read_to_string(dir.join(name)).ok().as_deref() == Some(text)
        };
        if !same(service, service_text) {
            crate::sys::fsx::ensure_dir(dir, 0o755)?;
            crate::sys::fsx::write_atomic(&dir.join(service), service_text.as_bytes(), 0o644)?;
            self.reload()?;
        }
        let enabled = dir
            .join(format!("{wanted_by}.wants"))
            .join(trigger)
            .exists();
        if !same(trigger, trigger_text) || !enabled {
            self.install_unit(dir, trigger, trigger_text)?;
            self.restart(trigger, Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Stops a unit, disables it and removes its file: it is gone.
    pub fn remove_unit(&self, dir: &std::path::Path, name: &str, timeout: Duration) -> Result<()> {
        self.stop(name, timeout)?;
        forget_timer_runs(name);
        self.manager
            .disable_unit_files(&[name], false)
            .with_context(|| format!("cannot disable {name} (systemd DisableUnitFiles)"))?;
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => crate::sys::fsx::sync_dir(dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
        let _ = self.manager.reset_failed_unit(name);
        self.reload()
    }

    pub fn start(&self, unit: &str, timeout: Duration) -> Result<()> {
        let _ = self.manager.reset_failed_unit(unit);
        self.run_job("start", unit, timeout, |m| m.start_unit(unit, "replace"))
    }

    pub fn restart(&self, unit: &str, timeout: Duration) -> Result<()> {
        let _ = self.manager.reset_failed_unit(unit);
        self.run_job("restart", unit, timeout, |m| {
            m.restart_unit(unit, "replace")
        })
    }

    pub fn stop(&self, unit: &str, timeout: Duration) -> Result<()> {
        self.run_job("stop", unit, timeout, |m| m.stop_unit(unit, "replace"))
    }

    fn run_job(
        &self,
        verb: &str,
        unit: &str,
        timeout: Duration,
        call: impl FnOnce(&ManagerProxyBlocking<'static>) -> zbus::Result<OwnedObjectPath>,
    ) -> Result<()> {
        let signals = self.manager.receive_job_removed()?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for signal in signals {
                if let Ok(args) = signal.args() {
                    let item = (args.job().to_string(), args.result().to_string());
                    if tx.send(item).is_err() {
                        break;
                    }
                }
            }
        });
        let job = call(&self.manager)
            .with_context(|| format!("systemd refused to {verb} {unit}"))?
            .to_string();
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((path, result)) if path == job => {
                    if result == "done" {
                        return Ok(());
                    }
                    bail!("{verb} of {unit} ended with `{result}`");
                }
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("{verb} of {unit} did not finish within {timeout:?}")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("lost the connection to the systemd user manager during {verb} of {unit}")
                }
            }
        }
    }

    /// Starts `unit` as a transient service and returns once it has started.
    pub fn start_transient(&self, unit: &Transient) -> Result<()> {
        use zbus::zvariant::Value;
        let program = unit.argv.first().cloned().unwrap_or_default();
        let exec: Vec<(String, Vec<String>, bool)> = vec![(program, unit.argv.clone(), false)];
        let mut properties: Vec<(&str, Value)> = vec![
            ("Description", Value::from(unit.description.as_str())),
            ("ExecStart", Value::from(exec)),
            ("CollectMode", Value::from("inactive-or-failed")),
            ("KillMode", Value::from("mixed")),
            (
                "TimeoutStopUSec",
                Value::from(unit.stop_timeout.as_micros() as u64),
            ),
        ];
        if !unit.environment.is_empty() {
            properties.push(("Environment", Value::from(unit.environment.clone())));
        }
        if let Some(max) = unit.runtime_max {
            properties.push(("RuntimeMaxUSec", Value::from(max.as_micros() as u64)));
        }
        self.run_job("start", &unit.name, Duration::from_secs(30), |m| {
            m.start_transient_unit(&unit.name, "fail", &properties, &[])
        })
    }

    /// When a timer comes due next (realtime), if it is loaded and waiting.
    pub fn timer_next(&self, timer: &str) -> Result<Option<std::time::SystemTime>> {
        let path = self
            .manager
            .load_unit(timer)
            .with_context(|| format!("cannot look up {timer}"))?;
        let t = TimerProxyBlocking::builder(&self.conn)
            .path(path)?
            .build()
            .map_err(|e| anyhow!("{e}"))?;
        let usec = t
            .next_elapse_usec_realtime()
            .with_context(|| format!("cannot read when {timer} comes due"))?;
        Ok((usec != 0 && usec != u64::MAX)
            .then(|| std::time::UNIX_EPOCH + Duration::from_micros(usec)))
    }

    pub fn state(&self, unit: &str) -> Result<UnitState> {
        let path = self
            .manager
            .load_unit(unit)
            .with_context(|| format!("cannot look up {unit}"))?;
        let u = UnitProxyBlocking::builder(&self.conn)
            .path(path)?
            .build()
            .map_err(|e| anyhow!("{e}"))?;
        Ok(UnitState {
            load: u.load_state()?,
            active: Active::from(u.active_state()?.as_str()),
            sub: u.sub_state()?,
            since_us: u.state_change_timestamp()?,
        })
    }
}

/// Where user units live: `$XDG_CONFIG_HOME/systemd/user`, else `~/.config/systemd/user`.
pub fn user_unit_dir(home: &std::path::Path) -> std::path::PathBuf {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| home.join(".config"))
        .join("systemd/user")
}

/// Whether systemd takes `expr` as a calendar expression (`OnCalendar=`): asked of
/// `systemd-analyze calendar` on this machine (the server's systemd, which will run the timer).
pub fn check_calendar(expr: &str) -> Result<()> {
    let out = duct::cmd!("systemd-analyze", "calendar", expr)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .context("cannot run systemd-analyze")?;
    if !out.status.success() {
        anyhow::bail!(
            "`{expr}`: {} (e.g. daily, hourly, *-*-* 04:00, *:0/15)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Where the user's manager keeps when a `Persistent=` timer last ran: a timer installed again
/// under the same name would otherwise run at once for every time its schedule passed since.
pub fn timer_stamp(timer: &str) -> Option<std::path::PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".local/share"))
        })?;
    Some(data.join("systemd/timers").join(format!("stamp-{timer}")))
}

/// Forgets the last run of the timer `timer` (nothing for another kind of unit).
pub fn forget_timer_runs(timer: &str) {
    if timer.ends_with(".timer") {
        if let Some(stamp) = timer_stamp(timer) {
            let _ = std::fs::remove_file(stamp);
        }
    }
}
