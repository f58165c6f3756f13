//! The command line.

use crate::ui::Color;
use crate::version::Version;
use clap::{Args, Parser, Subcommand, ValueEnum};
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

/// `deploy preview ...`.
#[derive(Debug, Args)]
pub struct PreviewArgs {
    #[command(subcommand)]
    pub action: PreviewAction,
}

#[derive(Debug, Subcommand)]
pub enum PreviewAction {
    /// Make the preview NAME of ENV (its ports, its directory beside ENV's, a copy of ENV's
    /// data taken while ENV runs), or find it, then release the working tree into it as
    /// `release` does (version from git by default); its data is kept unless --fresh-data.
    Up(PreviewUpArgs),
    /// The previews of ENV: name, version, URL, port, where their data came from, created,
    /// expires.
    Ls(PreviewEnvArgs),
    /// Take the preview NAME down: its units, timers, containers, images, router and
    /// directory.
    Down(PreviewDownArgs),
    /// Take down the previews of ENV past their `preview.ttl` (what the server's timer runs).
    Prune(PreviewPruneArgs),
    /// On the node: the preview's ports, directory and data, before its setup and release
    /// (not for people).
    #[command(hide = true)]
    Prepare(PreviewPrepareArgs),
    /// On the node: the preview's new data, scrubbed, into its live release (not for people).
    #[command(hide = true)]
    Data(PreviewDataArgs),
}

#[derive(Debug, Args)]
pub struct PreviewUpArgs {
    /// The preview's name (lower-case letters, digits and `-`), e.g. pr-12.
    pub name: String,
    /// The environment it is a preview of (default: the only one).
    #[arg(long, value_name = "ENV")]
    pub from: Option<String>,
    /// The release's name (default: from git, as `release` takes it).
    #[arg(long, value_name = "VERSION")]
    pub version: Option<String>,
    /// Copy ENV's data again (the preview's own is replaced).
    #[arg(long)]
    pub fresh_data: bool,
    /// The data from ENV's replica (`replicate:`) as it was at TIME (RFC 3339, or how long
    /// ago: 10m, 2h), as `deploy restore --at` takes it, instead of a copy of ENV's data now
    /// (the preview's own is replaced).
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// With the version from git: a tree with uncommitted changes.
    #[arg(long)]
    pub allow_dirty: bool,
    /// Do not run `build.command` first.
    #[arg(long)]
    pub skip_build: bool,
    /// Print what it would do; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct PreviewEnvArgs {
    /// The environment (default: the only one).
    pub env: Option<String>,
}

#[derive(Debug, Args)]
pub struct PreviewDownArgs {
    /// The preview's name (or `ENV/NAME`).
    pub name: String,
    /// The environment it is a preview of (default: the only one).
    #[arg(long, value_name = "ENV")]
    pub from: Option<String>,
    /// Print what would be removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct PreviewPruneArgs {
    /// The environment (default: the only one).
    pub env: Option<String>,
    /// Print which previews would go; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct PreviewPrepareArgs {
    /// The preview, as `ENV/NAME`.
    pub env: String,
    #[arg(long)]
    pub fresh_data: bool,
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// The env.secret values sent by the deploy that was typed (the replica's credentials).
    #[arg(long, value_name = "FILE")]
    pub secrets: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct PreviewDataArgs {
    /// The preview, as `ENV/NAME`.
    pub env: String,
}

impl PreviewArgs {
    /// The environment the command reaches the server of: the one previews are of.
    pub fn env(&self) -> Option<&str> {
        match &self.action {
            PreviewAction::Up(a) => a.from.as_deref(),
            PreviewAction::Down(a) => a
                .from
                .as_deref()
                .or_else(|| crate::names::split_preview(&a.name).map(|(f, _)| f)),
            PreviewAction::Ls(a) => a.env.as_deref(),
            PreviewAction::Prune(a) => a.env.as_deref(),
            PreviewAction::Prepare(PreviewPrepareArgs { env, .. })
            | PreviewAction::Data(PreviewDataArgs { env }) => {
                Some(crate::names::split_preview(env).map_or(env.as_str(), |(f, _)| f))
            }
        }
    }
}

/// `deploy init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Write the full annotated example instead, every option explained.
    #[arg(long)]
    pub full: bool,
}

/// `deploy man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `deploy.1` and one page per command (`deploy-release.1`...) into DIR instead.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// A command that takes only the environment.
#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The environment (from `environments:`).
    pub env: Option<String>,
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The environment (from `environments:`).
    pub env: Option<String>,
    /// Print what setup would do (directories, unit and Traefik contents); change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Switch Podman's storage from vfs to overlay even though `podman system reset` deletes
    /// containers, volumes or images that are not this app's (listed first).
    #[arg(long)]
    pub reset_storage: bool,
    /// A remote server: install this deploy binary there instead of this one, e.g. a static
    /// build (`scripts/build-static`) for a server whose glibc is older than this machine's.
    /// It must be the same version as this deploy.
    #[arg(long, value_name = "PATH")]
    pub server_binary: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct BootstrapArgs {
    /// The environment (from `environments:`); its host names the deploy user.
    pub env: Option<String>,
    /// How to log in as root: `root@host[:port]` or an ssh alias of a root login; with
    /// --sudo, a user who may run `sudo -n`.
    #[arg(long, value_name = "DEST", required_unless_present = "local")]
    pub root: Option<String>,
    /// DEST is not root: run every step through `sudo -n` (no password prompt).
    #[arg(long, conflicts_with = "local")]
    pub sudo: bool,
    /// Make this machine a node for USER instead, as root, with no SSH and no config (on the
    /// server itself; `deploy setup` is then the user's to run).
    #[arg(long, value_name = "USER", conflicts_with_all = ["root", "env"])]
    pub local: Option<String>,
    /// The public key the deploy user logs in with (default: the environment's
    /// ssh.identity's .pub, else the first key `ssh-add -L` lists; with --local, none).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// A Traefik binary (linux, the server's architecture) to install as
    /// /usr/local/bin/traefik, instead of the pinned release bootstrap downloads when
    /// traefik.manage needs one (neither apt nor dnf has it).
    #[arg(long, value_name = "PATH")]
    pub traefik_bin: Option<PathBuf>,
    /// A Litestream binary to install as /usr/local/bin/litestream, instead of the pinned
    /// release (for `replicate:`).
    #[arg(long, value_name = "PATH")]
    pub litestream_bin: Option<PathBuf>,
    /// Install these too, whatever the config needs (the pinned releases, unless the server
    /// has them or --traefik-bin/--litestream-bin gives them).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "PROGRAM")]
    pub with: Vec<Program>,
    /// With --local: the tests' node (scripts/node-setup), with what only it gets.
    #[arg(long, hide = true, conflicts_with = "root")]
    pub test_node: bool,
    /// Print every command that would change the server; change nothing (it still logs in
    /// and reads the server, to say what is done already).
    #[arg(long)]
    pub dry_run: bool,
}

/// A program bootstrap installs outside the package manager (`--with`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Program {
    Traefik,
    Litestream,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// The release's name, e.g. v2.0.0; without it, from git (`git describe --always`). A
    /// single argument that names an environment is the environment.
    pub version: Option<Version>,
    pub env: Option<String>,
    /// With the version from git: release a tree with uncommitted changes, as
    /// `<version>-dirty-<UTC time>`.
    #[arg(long)]
    pub allow_dirty: bool,
    /// Release a version that exists already again (not the live one): its data snapshots move
    /// into the new release, and the release it replaces (files, image) stays until the new
    /// one is built, put back if the build fails.
    #[arg(long)]
    pub replace: bool,
    /// Go on without Traefik's gap protection when Traefik cannot be switched (requests in the
    /// gap then fail).
    #[arg(long)]
    pub unprotected: bool,
    /// Stop the app's running `deploy exec` and job containers before the gap (SIGTERM, then
    /// the stop timeout) instead of waiting for them (`--lock-wait`) or refusing (exit 4).
    #[arg(long)]
    pub stop_running: bool,
    /// Do not run `build.command` first.
    #[arg(long)]
    pub skip_build: bool,
    /// Print the plan (upload, build, swap, prune) and change nothing; no build runs.
    #[arg(long)]
    pub dry_run: bool,
    /// On the node: the artifacts were already uploaded into releases/.incoming-VERSION.RUN.
    #[arg(long, hide = true, value_name = "RUN")]
    pub uploaded: Option<String>,
    /// On the node: the env.secret values a laptop sent, in a private file (read, removed).
    #[arg(long, hide = true, value_name = "FILE")]
    pub secrets: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct RollbackArgs {
    pub env: Option<String>,
    /// The release to go back to.
    #[arg(long, value_name = "VERSION")]
    pub to: Option<Version>,
    /// Also put back the SQLite data that release left (its snapshot); the data there now
    /// is kept as a snapshot of the release being left.
    #[arg(long)]
    pub with_data: bool,
    /// Run that release's code on today's data although its schema is not the one that
    /// release left (for apps known to cope with a newer schema); the release's own record of
    /// the data it left is kept.
    #[arg(long, conflicts_with = "with_data")]
    pub keep_data: bool,
    /// Do not ask before replacing the data (--with-data); it never chooses between
    /// --with-data and --keep-data.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Stop the app's running `deploy exec` and job containers before the gap (SIGTERM, then
    /// the stop timeout) instead of waiting for them (`--lock-wait`) or refusing (exit 4).
    #[arg(long)]
    pub stop_running: bool,
    /// On the node: print, as JSON, the question the rollback needs answered about the data
    /// (null: none), and change nothing.
    #[arg(long, hide = true)]
    pub data_question: bool,
    /// Go on without Traefik's gap protection when Traefik cannot be switched.
    #[arg(long)]
    pub unprotected: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    pub env: Option<String>,
    /// Keep stdin open (and a terminal when there is one): an interactive console.
    #[arg(short, long)]
    pub interactive: bool,
    /// The program in the image and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct JobsArgs {
    /// The environment (from `environments:`).
    pub env: Option<String>,
    #[command(subcommand)]
    pub action: Option<JobsAction>,
}

#[derive(Debug, Subcommand)]
pub enum JobsAction {
    /// Run a job now, as its timer would (through the fence, as the live release), its output
    /// here (and in its log); its concurrency applies to a run still going.
    Run(JobArgs),
    /// What a job's timer runs: starts one run in a unit of its own (not for people).
    #[command(hide = true)]
    RunScheduled(JobArgs),
    /// One scheduled run, in the unit `run-scheduled` started (not for people).
    #[command(hide = true)]
    RunUnit(JobArgs),
}

#[derive(Debug, Args)]
pub struct JobArgs {
    /// The job (from `jobs:`).
    pub name: String,
    pub env: Option<String>,
}

impl ReleaseArgs {
    /// The version: given, or (on the laptop, before anything else) from git; a node-side run
    /// is always given one.
    pub fn version(&self) -> anyhow::Result<&Version> {
        self.version
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no version to release: name one (e.g. v2.0.0)"))
    }
}

impl JobsArgs {
    /// The environment named, by the list or by its action.
    pub fn env(&self) -> &Option<String> {
        match &self.action {
            None => &self.env,
            Some(JobsAction::Run(a) | JobsAction::RunScheduled(a) | JobsAction::RunUnit(a)) => {
                &a.env
            }
        }
    }
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    pub env: Option<String>,
    /// How many events, newest first.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub lines: usize,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    pub env: Option<String>,
    /// Keep following the output (Ctrl-C to stop).
    #[arg(short, long)]
    pub follow: bool,
    /// How many of the last lines to show first (default 50; with --since, all of them).
    #[arg(short = 'n', long)]
    pub lines: Option<usize>,
    /// Only the lines written in this last while (e.g. 10m, 2h).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub since: Option<std::time::Duration>,
    /// Only the lines that contain TEXT (as written: no pattern).
    #[arg(long, value_name = "TEXT")]
    pub grep: Option<String>,
    /// The output of the job NAME's runs (`jobs:`), not the app's.
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
}

/// `deploy start|stop|restart [ENV]`.
#[derive(Debug, Args)]
pub struct PowerArgs {
    /// The environment (from `environments:`).
    pub env: Option<String>,
    /// Print what it would do; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `deploy lock acquire|release|status`.
#[derive(Debug, Args)]
pub struct LockArgs {
    #[command(subcommand)]
    pub action: LockAction,
}

#[derive(Debug, Subcommand)]
pub enum LockAction {
    /// Hold the app: deploy's commands that change it refuse (exit 4) until `lock release`.
    Acquire {
        /// The environment (from `environments:`).
        env: Option<String>,
        /// Why, for whoever runs into the hold (e.g. "migrating the orders table by hand").
        #[arg(short, long, value_name = "MESSAGE")]
        message: String,
        /// Print what it would do; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// End the hold (anyone may).
    Release {
        /// The environment (from `environments:`).
        env: Option<String>,
        /// Print what it would do; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Whether the app is held, by whom, since when and why.
    Status {
        /// The environment (from `environments:`).
        env: Option<String>,
    },
}

impl LockArgs {
    /// The environment the lock command names.
    pub fn env(&self) -> &Option<String> {
        match &self.action {
            LockAction::Acquire { env, .. }
            | LockAction::Release { env, .. }
            | LockAction::Status { env } => env,
        }
    }
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The environment (from `environments:`).
    pub env: Option<String>,
    /// Also delete the data: shared/ (databases, .env), the data snapshots and a `file://`
    /// replica. Asks first, unless --yes.
    #[arg(long)]
    pub data: bool,
    /// Also delete everything else of the app on the server: the data (as --data) and the
    /// app's directory (releases, history). Asks first, unless --yes.
    #[arg(long)]
    pub all: bool,
    /// Do not ask before deleting data (--data, --all).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print what would be removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The environment (from `environments:`).
    pub env: Option<String>,
    /// Print what would be removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `maintenance on|off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Debug, Args)]
pub struct MaintenanceArgs {
    pub state: Switch,
    pub env: Option<String>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    pub env: Option<String>,
    /// The data as it was at this time (RFC 3339, e.g. 2026-11-24T06:00:00Z) or that long ago
    /// (e.g. 10m, 2h); default: the newest the replica has.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Restore over the databases there (after a snapshot of them, kept in .deploy/).
    #[arg(long)]
    pub overwrite: bool,
    /// Stop the app's running `deploy exec` and job containers before the gap (SIGTERM, then
    /// the stop timeout) instead of waiting for them (`--lock-wait`) or refusing (exit 4).
    #[arg(long)]
    pub stop_running: bool,
    /// Then release this version (as `deploy release VERSION ENV` does).
    #[arg(long, value_name = "VERSION")]
    pub release: Option<String>,
    /// Print the plan (what is downloaded, the swap that puts it in) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// On the node: env.secret values a laptop sent (the replica's credentials).
    #[arg(long, hide = true, value_name = "FILE")]
    pub secrets: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    pub env: Option<String>,
    /// On the node: env.secret values a laptop sent (the replica's credentials).
    #[arg(long, hide = true, value_name = "FILE")]
    pub secrets: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    pub env: Option<String>,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The first release's name.
    #[arg(long = "as", value_name = "VERSION", default_value = "legacy")]
    pub release: Version,
    /// Do not ask before moving (the plan is shown first).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Stop the app's running `deploy exec` and job containers before the gap (SIGTERM, then
    /// the stop timeout) instead of waiting for them (`--lock-wait`) or refusing (exit 4).
    #[arg(long)]
    pub stop_running: bool,
}

/// The commands that act on no node: they run here and return before an environment is
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
