//! The app's runtime: its unit (and in socket mode its socket unit), its container started
//! and stopped, its image, its listen mode ([`listen`]), Podman's storage under it
//! ([`storage`]), and `deploy start|stop|restart` ([`power`]). [`Runtime`] borrows what it
//! needs of the [`Node`].

pub mod listen;
pub mod power;
pub mod storage;

use crate::node::apply::{killed_message, KILLED_AT_STOP};
use crate::node::borrowed::{owner_of_borrowed, Borrowed};
use crate::node::front::Front;
use crate::node::state::State;
use crate::node::{unit, Node};
use crate::sys::systemd::Systemd;
use crate::sys::{fsx, podman};
use anyhow::{anyhow, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The app's runtime: what it needs of the node, borrowed.
pub struct Runtime<'a>(pub(crate) Borrowed<'a>);
owner_of_borrowed!(Runtime);

impl Node<'_> {
    /// This app's runtime.
    pub fn runtime(&self) -> Runtime<'_> {
        Runtime(self.borrowed())
    }
}

impl Runtime<'_> {
    /// The app's front, from the same borrows.
    fn front(&self) -> Front<'_> {
        Front(self.0)
    }

    /// The version `current` points at, if any.
    fn current(&self) -> Result<Option<String>> {
        self.layout.current_version()
    }

    /// What the app's unit (and an in-gap hook's container) is made from: its mounts labelled
    /// when this server has SELinux enabled.
    pub(crate) fn unit_spec(&self) -> unit::UnitSpec {
        let label = unit::VolumeLabel::of(crate::sys::selinux::mode());
        unit::UnitSpec::new(
            self.config,
            self.layout,
            self.env.port,
            &self.names(),
            label,
        )
    }

    pub(crate) fn unit_name(&self) -> String {
        self.names().unit()
    }

    pub(crate) fn user_unit_dir(&self) -> PathBuf {
        crate::sys::systemd::user_unit_dir(self.home)
    }

    pub(crate) fn unit_path(&self) -> PathBuf {
        self.user_unit_dir().join(self.unit_name())
    }

    pub(crate) fn image(&self, version: &str) -> String {
        self.names().image(version)
    }

    pub(crate) fn stop_timeout(&self) -> Duration {
        self.config.container.stop_timeout + Duration::from_secs(30)
    }

    /// Whether the app's unit runs (or is on its way up or down).
    pub(crate) fn app_running(&self, systemd: &Systemd) -> bool {
        systemd
            .state(&self.unit_name())
            .map(|s| !s.active.is_down())
            .unwrap_or(true)
    }

    /// The image of a release, rebuilt from its release directory if it has gone missing.
    pub(crate) fn ensure_image(&self, state: &State, version: &str) -> Result<String> {
        let image = state
            .releases
            .get(version)
            .map(|r| r.image.clone())
            .unwrap_or_else(|| self.image(version));
        let listed = podman::graph_root_cached(self.home)
            .ok()
            .and_then(|store| podman::image_listed(&store, &image));
        if listed != Some(true) && !podman::image_exists(&image)? {
            let made = self
                .ui
                .step(&format!("Rebuilding missing image {image}"), || {
                    let dir = self.layout.release(version);
                    let work = dir.join(crate::node::layout::RELEASE_META);
                    podman::build(&dir, &image, &work, None, self.ui.verbose)
                })?;
            made.tell(&self.ui);
        }
        Ok(image)
    }

    /// Starts `unit` (the app's, under whatever name it has) and waits for the health check:
    /// what setup does when it moves a live app (names, storage, listen mode).
    pub(crate) fn start_healthy(&self, systemd: &Systemd, unit: &str) -> Result<()> {
        if let Some(warning) = self.start_unit(systemd, unit)? {
            self.ui.warn(&warning);
        }
        let h = &self.config.health;
        let url = crate::sys::health::url(self.env.port, &h.path);
        crate::sys::health::wait_healthy(&url, h.timeout, h.interval, || Ok(())).map(|_| ())
    }

    /// Starts the app's unit. A start that fails is tried once more a second later (what the
    /// unit's `Restart=on-failure` would do, sooner): podman can fail for a moment on a busy
    /// node. Returns the first failure when the second try worked, to be shown as a warning.
    /// A failed start says what podman wrote meanwhile (the unit's stderr goes to
    /// [`Layout::unit_log`]), not only systemd's one word.
    pub(crate) fn start_unit(&self, systemd: &Systemd, unit: &str) -> Result<Option<String>> {
        let first = match self.start_once(systemd, unit, "") {
            Ok(()) => return Ok(None),
            Err(e) => format!("{e:#}"),
        };
        std::thread::sleep(Duration::from_secs(1));
        self.start_once(systemd, unit, " twice")?;
        Ok(Some(format!(
            "the first start failed, the second worked: {first}"
        )))
    }

    fn start_once(&self, systemd: &Systemd, unit: &str, times: &str) -> Result<()> {
        let log = self.layout.unit_log();
        let before = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        systemd.start(unit, START_TIMEOUT).map_err(|e| {
            let said = unit_log_since(&log, before);
            match said.is_empty() {
                true => anyhow!("{e:#}{times}"),
                false => anyhow!("{e:#}{times}; podman said:\n{said}"),
            }
        })
    }

    /// The last lines the app wrote (podman's k8s-file log, prefixes removed).
    pub fn app_log_tail(&self, n: usize) -> String {
        let path = self.layout.app_log(&self.config.app);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(strip_k8s_prefix).collect();
        if lines.is_empty() {
            return format!("  (nothing in {})", path.display());
        }
        quoted(&lines[lines.len().saturating_sub(n)..])
    }

    /// The stop timeout the live release runs with (its release.env), else this config's.
    fn live_stop_timeout(&self) -> u64 {
        std::fs::read_to_string(self.layout.current_release_env())
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("DEPLOY_STOP_TIMEOUT=")?.trim().parse().ok())
            })
            .unwrap_or_else(|| self.config.container.stop_timeout.as_secs().max(1))
    }

    /// After a stop of the app: one that lasted its whole timeout ended with a kill, which is
    /// said now and kept (`deploy status` and `deploy check` say it until a stop is clean).
    pub(crate) fn note_stop(&self, took: std::time::Duration) {
        let timeout = self.live_stop_timeout();
        let file = self.layout.meta().join(KILLED_AT_STOP);
        if took.as_secs_f64() + 0.05 < timeout as f64 {
            let _ = std::fs::remove_file(&file);
            return;
        }
        let said = killed_message(timeout, self.config.container.init);
        self.ui.warn(&said);
        let _ = fsx::write_atomic(
            &file,
            format!("{} {said}\n", crate::sys::now()).as_bytes(),
            0o600,
        );
    }
}

/// How long a start job may take (podman run of an existing image).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The last lines the unit's commands wrote to `log` after its first `from` bytes.
fn unit_log_since(log: &Path, from: u64) -> String {
    use std::io::{Read, Seek};
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(log) {
        let _ = f.seek(std::io::SeekFrom::Start(from));
        let _ = f.take(64 << 10).read_to_string(&mut text);
    }
    quoted(crate::sys::podman::tail(text.trim(), 10).lines())
}

/// Lines of a log, quoted under an error: `  | line`.
fn quoted<S: AsRef<str>>(lines: impl IntoIterator<Item = S>) -> String {
    lines
        .into_iter()
        .map(|l| format!("  | {}", l.as_ref()))
        .collect::<Vec<_>>()
        .join("\n")
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
