//! SELinux on this machine: enabled when its file system is mounted (the kernel has a policy
//! loaded: enforcing or permissive), as libselinux and Podman decide. The node reads it when it
//! makes a unit's settings (setup, a release, a hook, an exec, a job); bootstrap's probe reads
//! the same file on the server ([`ENFORCE`]).

use std::path::Path;

/// Exists when SELinux is enabled; holds `1` (enforcing) or `0` (permissive).
pub const ENFORCE: &str = "/sys/fs/selinux/enforce";

/// SELinux's mode, when it is enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforcing,
    Permissive,
}

impl Mode {
    /// The content of [`ENFORCE`]. Pure.
    pub fn parse(enforce: &str) -> Mode {
        match enforce.trim() {
            "1" => Mode::Enforcing,
            _ => Mode::Permissive,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforcing => "enforcing",
            Mode::Permissive => "permissive",
        }
    }
}

/// SELinux's mode here, `None` when it is not enabled (no SELinux file system).
pub fn mode() -> Option<Mode> {
    let path = Path::new(ENFORCE);
    if !path.exists() {
        return None;
    }
    // Readable by every user; an unreadable one is still SELinux enabled.
    Some(Mode::parse(
        &std::fs::read_to_string(path).unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_enforce_file_gives_the_mode() {
        assert_eq!(Mode::parse("1\n"), Mode::Enforcing);
        assert_eq!(Mode::parse("0"), Mode::Permissive);
        assert_eq!(Mode::Enforcing.as_str(), "enforcing");
    }
}
