//! Thin wrappers over the outside world: systemd's user manager over D-Bus, Podman, ssh and
//! rsync, crash-safe file operations, the HTTP health probe; and shell quoting (`shell.rs`,
//! pure, used from every layer).

pub mod fsx;
pub mod health;
pub mod podman;
pub mod rsync;
pub mod shell;
pub mod ssh;
pub mod systemd;
