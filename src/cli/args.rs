//! Each command's own arguments (the previews' are in `preview`).

use crate::version::Version;
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;

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
