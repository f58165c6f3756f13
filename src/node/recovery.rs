//! Recovery without a command. A swap's process that dies (SIGKILL, the OOM killer, a reboot)
//! is put right by the server within seconds, by the plan a later command would run: a user
//! unit watches for a swap journal (`<app>_<env>_recover.path`) and its service waits for the
//! deploy lock, which the swap's process holds while it lives. Once the lock is its own, a
//! journal still there is a swap whose process died: it recovers it as `release` would first.
//! The app's unit meanwhile cannot start `current` on data the swap was changing: its start
//! waits while the swap holds it (the `hold` file), at boot too.
//!
//! What the server needs to act alone: the resolved config in `.deploy/` and the deploy binary
//! (one per user and build), written by setup and every release and rollback (never in a run's
//! own directory, which the run removes). The jobs' timers run them too.

use crate::node::request::Protection;
use crate::node::Node;
use crate::sys::{fsx, systemd::Systemd};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

const PATH_UNIT: &str = include_str!("../../units/recover.path");
const SERVICE_UNIT: &str = include_str!("../../units/recover.service");

/// How many times a recovery that did nothing yet is tried (3 s apart).
const RETRIES: usize = 20;

/// How long the watcher waits for the lock: a swap's whole life, hooks included.
const WATCH_LOCK_WAIT: Duration = Duration::from_secs(24 * 3600);

impl Node<'_> {
    /// The config the server acts on by itself (0600): the one this run resolved.
    pub(crate) fn kept_config(&self) -> PathBuf {
        self.layout.meta().join("config.yaml")
    }

    /// The deploy binary the server's own units run ([`kept_bin`]).
    pub(crate) fn kept_bin(&self) -> PathBuf {
        kept_bin(&self.home)
    }

    /// Keeps this run's resolved config (in `.deploy/`, 0600) and this binary ([`keep_bin`]),
    /// each written only when missing or changed.
    pub(crate) fn keep_for_server(&self) -> Result<()> {
        if let Some(text) = &self.config_text {
            let path = self.kept_config();
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                fsx::write_atomic(&path, text.as_bytes(), 0o600)?;
            }
        }
        keep_bin(&self.home).map(|_| ())
    }

    fn recovery_units(&self) -> Result<[(String, String); 2]> {
        let names = self.names();
        let (path_unit, service) = (names.recover_path_unit(), names.recover_unit());
        let ctx = minijinja::context! {
            app => &self.config.app,
            env => &self.env_name,
            journal => self.layout.meta().join(crate::node::swap::journal::FILE).display().to_string(),
            service => &service,
            path_unit => &path_unit,
            bin => self.kept_bin().display().to_string(),
            config => self.kept_config().display().to_string(),
        };
        Ok([
            (
                path_unit.clone(),
                crate::template::render("recover.path", PATH_UNIT, &ctx)?,
            ),
            (
                service,
                crate::template::render("recover.service", SERVICE_UNIT, &ctx)?,
            ),
        ])
    }

    /// What the server needs to recover by itself: the kept config and binary, and the
    /// watcher's units (written, enabled and started when they changed). Setup, releases and
    /// rollbacks run it before their swap.
    pub(crate) fn install_recovery(&self, systemd: &Systemd) -> Result<()> {
        self.keep_for_server()?;
        let [(path_unit, path_text), (service, service_text)] = self.recovery_units()?;
        systemd.install_triggered(
            &self.runtime().user_unit_dir(),
            (&service, &service_text),
            (&path_unit, &path_text),
            "default.target",
        )
    }

    /// `deploy recover ENV` (the watcher's service): while the swap's process lives, it only
    /// watches (a finished swap removes its journal before it lets go of the lock, so the
    /// watcher never takes the lock from the next command); once that process is gone and the
    /// journal is still there, it takes the lock and puts the swap right, as `release` would
    /// first. Never acts on anything else.
    pub fn recover_unattended(&self) -> Result<()> {
        loop {
            let Some(entries) = self.unfinished_swap()? else {
                return Ok(());
            };
            if !crate::node::publish::entry_owner(&entries).alive() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let lock = crate::node::lock::acquire(
            &self.layout.lock_file(),
            &format!("deploy recover {} (the server's own)", self.env_name),
            Some(WATCH_LOCK_WAIT),
        )?;
        let Some(before) = self.unfinished_swap()? else {
            // A command typed meanwhile put it right.
            return Ok(());
        };
        self.check_podman()?;
        let systemd = Systemd::connect()?;
        // Tried again only while nothing was done (Traefik not up yet at boot, say): a
        // recovery that began to stop, restore or start and failed is left to the next
        // command, never tried over and over on the live data.
        for attempt in 0..RETRIES {
            let mut state = self.load_state()?;
            let Err(e) = self.recover(&systemd, &mut state, Protection::Required, false) else {
                return Ok(());
            };
            let after = self.unfinished_swap()?.unwrap_or_default();
            let acted = after.iter().skip(before.len()).any(|e| {
                matches!(e, crate::node::swap::Entry::Begin { step }
                    if *step == crate::node::swap::Step::Stop || step.touches_data())
            });
            if acted || after.is_empty() || attempt + 1 == RETRIES {
                self.ui.warn(&format!(
                    "{e:#}\nthe server leaves this swap to the next deploy command"
                ));
                break;
            }
            std::thread::sleep(Duration::from_secs(3));
        }
        // Stays until the journal is gone or replaced, so the path unit does not start this
        // service again and again on a swap it could not put right.
        drop(lock);
        let first = before.first().cloned();
        while let Some(now) = self.unfinished_swap()? {
            if now.first().cloned() != first {
                return Ok(());
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        Ok(())
    }
}

/// How long a kept binary no unit names stays: another deploy may have kept it and not yet
/// written the units that run it.
const KEPT_BIN_GRACE: Duration = Duration::from_secs(3600);

/// The kept binaries (but `new`) that no unit file of the user names any more and that were
/// kept more than `grace` ago go: each build of deploy leaves one, and every unit
/// is rewritten to the newest by the next setup or release. Best effort: a binary that stays
/// costs disk, never correctness.
fn prune_kept_bins(dir: &Path, units: &Path, new: &Path, grace: Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let named = unit_texts(units);
    for entry in entries.flatten() {
        let path = entry.path();
        let file = entry.file_name();
        if path == new || !file.to_string_lossy().starts_with("deploy-") {
            continue;
        }
        let old = entry.metadata().is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            let changed = std::time::UNIX_EPOCH + Duration::from_secs(m.ctime().max(0) as u64);
            changed.elapsed().is_ok_and(|age| age >= grace)
        });
        if old && !named.contains(&path.display().to_string()) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Every unit file's text under `dir` (drop-in directories included), joined.
fn unit_texts(dir: &Path) -> String {
    let mut text = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return text;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && path.extension().is_some_and(|e| e == "d") {
            text.push_str(&unit_texts(&path));
        } else if let Ok(t) = std::fs::read_to_string(&path) {
            text.push_str(&t);
            text.push('\n');
        }
    }
    text
}

/// The deploy binary the server's own units run (the gap server, recovery, jobs, the previews'
/// prune): one per user and build, outside any app's directory (`~/.local/share/deploy/bin/`),
/// named by its version, size and time, so that each build is kept once and a unit never runs
/// one that was replaced under it.
pub(crate) fn kept_bin(home: &Path) -> PathBuf {
    let dir = crate::sys::fsx::deploy_data(home).join("bin");
    // Run from there already (a timer's or the recovery's service): that one.
    if let Ok(exe) = std::env::current_exe() {
        if exe.parent() == Some(dir.as_path()) {
            return exe;
        }
    }
    let stamp = std::env::current_exe()
        .and_then(std::fs::metadata)
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            format!("{}-{}", m.len(), m.mtime())
        })
        .unwrap_or_default();
    dir.join(format!("deploy-{}-{stamp}", env!("CARGO_PKG_VERSION")))
}

/// This binary kept as [`kept_bin`] (a hard link where the file system allows, else a copy),
/// when it is not there yet; returns its path.
pub(crate) fn keep_bin(home: &Path) -> Result<PathBuf> {
    let bin = kept_bin(home);
    if bin.exists() {
        return Ok(bin);
    }
    let exe = std::env::current_exe().context("cannot find this deploy binary")?;
    let dir = bin.parent().expect("bin dir");
    fsx::ensure_dir(dir, 0o700)?;
    let tmp = dir.join(format!(".deploy.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(&exe, &tmp).is_err() {
        std::fs::copy(&exe, &tmp)
            .with_context(|| format!("cannot copy {} to {}", exe.display(), tmp.display()))?;
        // The copy keeps the build's time, which names it.
        let built = std::fs::metadata(&exe)?.modified()?;
        let copy = std::fs::OpenOptions::new().write(true).open(&tmp)?;
        copy.set_modified(built)?;
        copy.sync_all()?;
    }
    fsx::rename_durable(&tmp, &bin)?;
    prune_kept_bins(
        dir,
        &home.join(".config/systemd/user"),
        &bin,
        KEPT_BIN_GRACE,
    );
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_binaries_no_unit_names_go_and_the_others_stay() {
        let root = std::env::temp_dir().join(format!("deploy-kept-{}", std::process::id()));
        let (bin, units) = (root.join("bin"), root.join("units"));
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(units.join("a.service.d")).unwrap();
        for name in [
            "deploy-1-old",
            "deploy-1-named",
            "deploy-1-dropin",
            "deploy-1-new",
            "x",
        ] {
            std::fs::write(bin.join(name), "").unwrap();
        }
        let named = |n: &str| format!("ExecStart={} gap-server\n", bin.join(n).display());
        std::fs::write(units.join("a.service"), named("deploy-1-named")).unwrap();
        std::fs::write(units.join("a.service.d/o.conf"), named("deploy-1-dropin")).unwrap();
        prune_kept_bins(
            &bin,
            &units,
            &bin.join("deploy-1-new"),
            Duration::from_secs(3600),
        );
        assert!(bin.join("deploy-1-old").exists(), "kept within the grace");
        prune_kept_bins(&bin, &units, &bin.join("deploy-1-new"), Duration::ZERO);
        let mut left: Vec<String> = std::fs::read_dir(&bin)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["deploy-1-dropin", "deploy-1-named", "deploy-1-new", "x"]
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
