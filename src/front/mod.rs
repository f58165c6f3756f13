//! The node's front: Traefik (its configs, its API, the router of an app), the gap server, and
//! the one Traefik the node user's apps share. Builders and runners given what they need; what
//! one app does with them (its router switched to the gap server around a swap, their setup,
//! maintenance on/off) is its front's, in `node/front/`.

pub mod default_cert;
pub mod gap;
pub mod shared;
pub mod traefik;

use std::path::{Path, PathBuf};

/// Where `traefik.manage` keeps Traefik's static config.
pub(crate) fn managed_static_config(home: &Path) -> PathBuf {
    home.join(".config/traefik/traefik.yaml")
}

/// A program in PATH (or /usr/local/bin, /usr/bin).
pub fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .chain(["/usr/local/bin", "/usr/bin"])
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// The step lines of the front's switches (a swap's, `deploy maintenance`'s), told once.
pub const ENTER_GAP_STEP: &str = "Switching Traefik to the gap server";
pub const LEAVE_GAP_STEP: &str = "Switching Traefik back to the app";
pub const MAINTENANCE_STEP: &str = "Switching Traefik to the maintenance page";
