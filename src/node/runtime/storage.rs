//! Podman's storage driver. With no `storage.conf`, rootless Podman may pick `vfs`, where every
//! container and image layer is a full copy: a Debian-based image of 300 MB then takes ~10 s to
//! start and every build copies it whole. `overlay` (native on kernels from 5.13, else through
//! fuse-overlayfs) starts the same image in well under a second. `deploy check` and `deploy
//! setup` say so; setup switches by itself only when nothing can be lost, or when asked
//! (`--reset-storage`), and then does it inside a gap and rebuilds the live release's image.

use crate::names::Names;
use crate::node::runtime::Runtime;
use crate::sys::podman::{self, Store};
use crate::sys::systemd::Systemd;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// What setup does about the driver. Pure.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Overlay (or anything that is not vfs): nothing to do.
    Fine,
    /// vfs, and a reset loses nothing that cannot be rebuilt (or it was asked for).
    Switch { deleted: Vec<String> },
    /// vfs, and a reset would delete these: explained, left as it is.
    Keep { would_delete: Vec<String> },
}

/// Everything a `podman system reset` deletes that is not this app's own (its container, its
/// releases' images, build cache): that is what would be lost. Pure.
pub fn verdict(store: &Store, names: &Names, asked: bool) -> Verdict {
    if store.driver != "vfs" {
        return Verdict::Fine;
    }
    let repo = format!("{}:", names.image_repository());
    let everything: Vec<String> = store
        .containers
        .iter()
        .map(|c| format!("container {c}"))
        .chain(store.volumes.iter().map(|v| format!("volume {v}")))
        .chain(store.images.iter().map(|i| format!("image {i}")))
        .collect();
    let lost: Vec<String> = store
        .containers
        .iter()
        .filter(|c| **c != names.container())
        .map(|c| format!("container {c}"))
        .chain(store.volumes.iter().map(|v| format!("volume {v}")))
        .chain(
            store
                .images
                .iter()
                .filter(|i| !i.starts_with(&repo) && !i.starts_with("<none>"))
                .map(|i| format!("image {i}")),
        )
        .collect();
    if lost.is_empty() || asked {
        Verdict::Switch {
            deleted: everything,
        }
    } else {
        Verdict::Keep { would_delete: lost }
    }
}

/// The `storage.conf` Podman reads for this user.
fn storage_conf() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("CONTAINERS_STORAGE_CONF") {
        return Ok(p.into());
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .map_or_else(|| crate::node::home_dir().map(|h| h.join(".config")), Ok)?;
    Ok(config.join("containers/storage.conf"))
}

/// Rootless native overlay needs Linux 5.13; before that, fuse-overlayfs.
fn native_overlay() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (5, 13)
}

/// `storage.conf` with `driver = "overlay"`, everything else in it kept. Pure.
pub fn with_overlay(text: &str, native: bool) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut in_storage = false;
    let mut set = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            if in_storage && !set {
                lines.push("driver = \"overlay\"".into());
                set = true;
            }
            in_storage = t == "[storage]";
        }
        if in_storage && t.starts_with("driver") && t.contains('=') {
            lines.push("driver = \"overlay\"".into());
            set = true;
            continue;
        }
        lines.push(line.to_string());
    }
    if in_storage && !set {
        lines.push("driver = \"overlay\"".into());
        set = true;
    }
    if !set {
        lines.extend(["[storage]".to_string(), "driver = \"overlay\"".into()]);
    }
    if !native && !text.contains("mount_program") {
        lines.extend([
            "[storage.options.overlay]".to_string(),
            "mount_program = \"/usr/bin/fuse-overlayfs\"".into(),
        ]);
    }
    lines.join("\n") + "\n"
}

pub const VFS_COST: &str = "Podman stores images with the vfs driver: every container and image \
    layer is a full copy, so a Debian-based image of 300 MB takes ~10 s to start (the gap of \
    every release) where overlay takes under a second";

impl Runtime<'_> {
    /// `deploy check`: the driver, with the fix when it is vfs.
    pub(crate) fn check_storage(&self) -> Result<()> {
        let driver = podman::storage_driver()?;
        if driver == "vfs" {
            bail!(
                "{VFS_COST}. Fix: `deploy setup {} --reset-storage` (it lists what `podman \
                 system reset` deletes, then switches to overlay in a gap and rebuilds the live \
                 image), or by hand: `driver = \"overlay\"` under [storage] in {} and `podman \
                 system reset`",
                self.env_name,
                storage_conf()?.display()
            );
        }
        Ok(())
    }

    /// `deploy setup`: on vfs, switches to overlay when nothing can be lost or when asked;
    /// otherwise says what a switch would delete and how to ask for it.
    pub(crate) fn setup_storage(&self, systemd: &Systemd, asked: bool) -> Result<()> {
        let store = podman::store()?;
        match verdict(&store, &self.names(), asked) {
            Verdict::Fine => Ok(()),
            Verdict::Keep { would_delete } => {
                self.ui.warn(&format!(
                    "{VFS_COST}. Switching to overlay needs `podman system reset`, which would \
                     delete what is not this app's: {}. Nothing was changed; `deploy setup {} \
                     --reset-storage` switches anyway",
                    would_delete.join(", "),
                    self.env_name
                ));
                Ok(())
            }
            Verdict::Switch { deleted } => self.switch_to_overlay(systemd, &deleted),
        }
    }

    fn switch_to_overlay(&self, systemd: &Systemd, deleted: &[String]) -> Result<()> {
        let front = self.front();
        self.ui.info(&format!(
            "   switching Podman's storage from vfs to overlay; `podman system reset` deletes: {}",
            if deleted.is_empty() {
                "nothing".into()
            } else {
                deleted.join(", ")
            }
        ));
        let live = self.current()?;
        let router = front.router()?.filter(|_| live.is_some());
        front
            .in_gap(router.as_ref(), || {
                self.ui.step("Switching Podman's storage to overlay", || {
                    self.reset_to_overlay(systemd, live.is_some())
                })?;
                match &live {
                    Some(v) => self.ui.step(
                        &format!("Rebuilding the image of {v} and starting it"),
                        || {
                            let state = crate::node::state::State::of(self.layout)?;
                            self.ensure_image(&state, v)?;
                            self.start_healthy(systemd, &self.unit_name())
                        },
                    ),
                    None => Ok(()),
                }
            })
            .context("switching Podman's storage to overlay")
    }

    /// The app stopped (when `live`), Podman's store reset and its storage.conf on overlay.
    fn reset_to_overlay(&self, systemd: &Systemd, live: bool) -> Result<()> {
        if live {
            systemd.stop(&self.unit_name(), self.stop_timeout())?;
        }
        podman::reset_store()?;
        let conf = storage_conf()?;
        let text = std::fs::read_to_string(&conf).unwrap_or_default();
        if let Some(dir) = conf.parent() {
            crate::sys::fsx::ensure_dir(dir, 0o755)?;
        }
        crate::sys::fsx::write_atomic(
            &conf,
            with_overlay(&text, native_overlay()).as_bytes(),
            0o644,
        )?;
        let now = podman::storage_driver()?;
        if now != "overlay" {
            bail!(
                "{} says driver = overlay, but Podman still uses {now}",
                conf.display()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(driver: &str, containers: &[&str], images: &[&str]) -> Store {
        Store {
            driver: driver.into(),
            containers: containers.iter().map(|s| s.to_string()).collect(),
            volumes: Vec::new(),
            images: images.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn only_what_cannot_be_rebuilt_stops_a_switch() {
        let n = Names::new("shop", "prod");
        assert_eq!(
            verdict(&store("overlay", &["x"], &["y"]), &n, false),
            Verdict::Fine
        );
        let own = store(
            "vfs",
            &["shop_prod"],
            &["localhost/shop_prod:v1", "<none>:<none>"],
        );
        assert!(matches!(verdict(&own, &n, false), Verdict::Switch { .. }));
        let other = store("vfs", &["shop_prod"], &["localhost/debian-python:12"]);
        assert_eq!(
            verdict(&other, &n, false),
            Verdict::Keep {
                would_delete: vec!["image localhost/debian-python:12".into()]
            }
        );
        let Verdict::Switch { deleted } = verdict(&other, &n, true) else {
            panic!("asked for")
        };
        assert!(deleted.contains(&"image localhost/debian-python:12".to_string()));
        let staging = store("vfs", &["shop_staging"], &[]);
        assert!(matches!(verdict(&staging, &n, false), Verdict::Keep { .. }));
    }

    #[test]
    fn the_driver_is_set_and_the_rest_kept() {
        assert_eq!(with_overlay("", true), "[storage]\ndriver = \"overlay\"\n");
        assert_eq!(
            with_overlay("[storage]\ndriver = \"vfs\"\nrunroot = \"/r\"\n", true),
            "[storage]\ndriver = \"overlay\"\nrunroot = \"/r\"\n"
        );
        assert_eq!(
            with_overlay("[engine]\nx = 1\n", false),
            "[engine]\nx = 1\n[storage]\ndriver = \"overlay\"\n[storage.options.overlay]\nmount_program = \"/usr/bin/fuse-overlayfs\"\n"
        );
    }
}
