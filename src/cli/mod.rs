//! The command line: the options every command takes and the commands (`Command`); each
//! command's own arguments are in `args` (and `preview`, the previews'), made the node's
//! requests in `requests`.

mod args;
mod preview;
mod requests;

pub use args::*;
pub use preview::*;

use crate::ui::Color;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "deploy",
    version,
    about = "Atomic releases of one app to one Linux server: rootless Podman, systemd user units, instant rollback",
    after_help = "Configuration is read from ./deploy.yaml (or -c FILE); ENV may be left out when it defines one environment."
)]
pub struct Cli {
    /// The configuration file.
    #[arg(
        short,
        long,
        global = true,
        env = "DEPLOY_CONFIG",
        default_value = crate::config::DEFAULT_FILE
    )]
    pub config: PathBuf,
    /// Wait up to this long for another deploy of the app to finish (e.g. 5m), instead of
    /// failing at once (CI pipelines that overlap).
    #[arg(long, global = true, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub lock_wait: Option<std::time::Duration>,
    /// Colours on a terminal: auto (unless NO_COLOR is set), always, never.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
    /// Show the output of builds and other details.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Print only errors and the final result.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Machine-readable output on stdout: `releases`, `status` and `server` print one JSON
    /// document; the other commands print one JSON event per line (see the README).
    #[arg(long, global = true)]
    pub json: bool,
    /// Run the node-side steps here: how `deploy` runs itself on a remote environment's server.
    #[arg(long, global = true, hide = true)]
    pub node: bool,
    /// The config file is one that the deploy which sent it resolved already (a remote node's):
    /// its values are taken as they are, nothing in them expanded again.
    #[arg(long, global = true, hide = true, requires = "node")]
    pub resolved: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Prepare the node: directories, shared files, the app's systemd user unit.
    Setup(SetupArgs),
    /// Make a fresh server a node, over SSH as root (or this machine: --local USER): packages,
    /// the deploy user (subordinate ids, lingering, its systemd manager), rootless Podman on
    /// overlay, Traefik and Litestream where needed, your key; then setup.
    Bootstrap(BootstrapArgs),
    /// Print a completion script: `deploy completions bash > /etc/bash_completion.d/deploy`.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff): `deploy man > deploy.1`; with --dir, one page per command.
    Man(ManArgs),
    /// Start the app again after `deploy stop` (its units enabled again, the health check
    /// waited for, Traefik back on the app).
    Start(PowerArgs),
    /// Stop the app until `deploy start`, across reboots too (its units disabled); with Traefik,
    /// the maintenance page meanwhile.
    Stop(PowerArgs),
    /// Restart the app's container (with Traefik, requests wait in the gap server meanwhile).
    Restart(PowerArgs),
    /// Hold the app by hand (`acquire -m MESSAGE`): release, rollback, restore, start, stop,
    /// prune and remove refuse until `release`; `status` says who holds it and why.
    Lock(LockArgs),
    /// Remove the app from the server: its units, containers, images, Traefik router and
    /// Litestream config, and its previews (taken down wholly). Keeps shared/, the releases and
    /// the replica unless --data or --all.
    Remove(RemoveArgs),
    /// Remove the releases beyond `keep_releases`, their images and the app's dangling images.
    Prune(PruneArgs),
    /// Write a commented deploy.yaml here (and a Containerfile for a single binary if none).
    Init(InitArgs),
    /// Check the config and the artifacts, and with ENV what the node needs; changes nothing.
    Check(EnvArgs),
    /// Print the configuration as ENV sees it: its overrides merged, `${VAR}` expanded, the
    /// env.secret names with whether each is set here (never a value).
    Config(EnvArgs),
    /// Ship VERSION: build, upload, podman build, stop-swap-start, health check, prune.
    Release(ReleaseArgs),
    /// Go back to the previous release (or the one named with --to).
    Rollback(RollbackArgs),
    /// List the releases on the node, newest first; `*` marks the live one.
    Releases(EnvArgs),
    /// What is live, the unit's state and the health check's answer.
    Status(EnvArgs),
    /// What happened, newest first: releases, rollbacks, recoveries, who and from which commit.
    History(HistoryArgs),
    /// Every app of the node user on ENV's server: live version, unit, health, ports, router,
    /// replication, last verification, disk used; and the Traefik they share.
    Server(EnvArgs),
    /// Run a command in a one-off container of the live release, with the app's env and
    /// mounts (a console, a one-time task): `deploy exec prod -- /app/my-app console`.
    Exec(ExecArgs),
    /// The app's own output: its last lines, and with -f what follows, as it comes (a job's
    /// runs' output with --job NAME).
    Logs(LogsArgs),
    /// The periodic jobs (`jobs:`): each one's schedule, next run, last run, its result and
    /// duration; `deploy jobs run NAME` runs one now.
    Jobs(JobsArgs),
    /// Serve the maintenance page to everyone (on), or the app again (off). Needs `traefik:`.
    Maintenance(MaintenanceArgs),
    /// Restore every database the replica lists (`replicate:`), as of now or `--at` a time:
    /// onto a fresh server after `deploy setup`, or over data with `--overwrite` (a snapshot of
    /// what it replaces is kept first).
    Restore(RestoreArgs),
    /// Convert an app directory deployed in place (binary, assets, .env, data/) into releases/
    /// and shared/, losing nothing: the shared entries move to shared/, the rest becomes the
    /// first release. Resumes an interrupted migration; does nothing on the new layout.
    MigrateData(MigrateArgs),
    /// The gap server that `deploy setup` runs as a user unit beside the app (not for people).
    #[command(hide = true)]
    GapServer(crate::front::gap::Options),
    /// Check the replica: restore every database into a scratch copy on the server, check it
    /// with SQLite, and how far it is behind the live data (exit 7 when a check fails).
    Verify(VerifyArgs),
    /// Puts right a swap whose process died, once the lock is free: what the server's own
    /// `<app>_<env>_recover.service` runs (not for people).
    #[command(hide = true)]
    Recover(EnvArgs),
    /// Previews: the app of the working tree on a copy of an environment's data, on its server,
    /// beside it (`up`, `ls`, `down`, `prune`). A preview is the environment `ENV/NAME` of
    /// every other command (`deploy logs prod/pr-12`).
    Preview(PreviewArgs),
    /// The points of `migrate-data` that the fault-injection tests stop at (`DEPLOY_TEST_HOOK`),
    /// one per line; a release's are its `--dry-run` steps (not for people).
    #[command(hide = true)]
    TestPoints,
}

/// chosen. One list, used as the pattern wherever a match over the commands needs it.
#[macro_export]
macro_rules! no_node_commands {
    () => {
        $crate::cli::Command::GapServer(_)
            | $crate::cli::Command::TestPoints
            | $crate::cli::Command::Init(_)
            | $crate::cli::Command::Check(_)
            | $crate::cli::Command::Config(_)
            | $crate::cli::Command::Completions { .. }
            | $crate::cli::Command::Man(_)
            // Reaches its server itself (as root), then runs `deploy setup`.
            | $crate::cli::Command::Bootstrap(_)
    };
}

impl Command {
    /// The environment a command for a node names (`Some(None)`: the only one); `None` for the
    /// commands that need no node (init, check, completions, man, the gap server).
    pub fn env(&self) -> Option<Option<&str>> {
        let env = match self {
            Command::Setup(a) => &a.env,
            Command::Release(a) => &a.env,
            Command::Rollback(a) => &a.env,
            Command::Releases(a) | Command::Status(a) | Command::Recover(a) => &a.env,
            Command::Server(a) => &a.env,
            Command::History(a) => &a.env,
            Command::Exec(a) => &a.env,
            Command::Maintenance(a) => &a.env,
            Command::MigrateData(a) => &a.env,
            Command::Restore(a) => &a.env,
            Command::Verify(a) => &a.env,
            Command::Logs(a) => &a.env,
            Command::Jobs(a) => a.env(),
            Command::Start(a) | Command::Stop(a) | Command::Restart(a) => &a.env,
            Command::Lock(a) => a.env(),
            Command::Remove(a) => &a.env,
            Command::Prune(a) => &a.env,
            Command::Preview(a) => return Some(a.env()),
            crate::no_node_commands!() => return None,
        };
        Some(env.as_deref())
    }
}
