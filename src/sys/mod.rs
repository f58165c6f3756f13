//! Thin wrappers over the outside world: systemd's user manager over D-Bus, Podman, ssh and
//! rsync, crash-safe file operations, and the HTTP health probe.

pub mod fsx;
pub mod health;
pub mod podman;
pub mod ssh;
pub mod systemd;
