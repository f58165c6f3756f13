//! `deploy`: Capistrano-style atomic releases of one app to one Linux server, with rootless
//! Podman containers run by systemd user units.
//!
//! Where things run:
//! - [`local`]: where you type: command dispatch, the build, local hooks, `init`, driving a
//!   remote node over SSH, following a detached node-side run;
//! - [`node`]: on the server: setup, the release and rollback stages, the swap (a pure plan, one
//!   journaled executor), state, lock, snapshots, layout, migrate-data, status, logs;
//! - [`front`]: Traefik and the gap server;
//! - [`sys`]: thin wrappers over the outside world: systemd (D-Bus), Podman, rsync/ssh, files,
//!   the HTTP health probe;
//! - [`config`]: the configuration, parsed and validated per section.

pub mod cli;
pub mod config;
pub mod exit;
pub mod front;
pub mod help;
#[cfg(test)]
mod layers;
pub mod local;
pub mod names;
pub mod node;
pub mod signals;
pub mod sys;
pub mod template;
pub mod ui;
pub mod version;

/// Runs a parsed command line; the process's exit code comes from the error ([`exit::code_of`]).
pub fn run(cli: cli::Cli) -> anyhow::Result<()> {
    local::commands::run(cli)
}
