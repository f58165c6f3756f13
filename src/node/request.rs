//! What the node's commands are asked to do: plain requests with only what the node reads,
//! typed. The command line's arguments become these once, where they are parsed (cli/); the
//! node knows nothing of clap.

use crate::node::rollback::DataChoice;
use crate::version::Version;
use std::path::PathBuf;

/// What a swap (a release, a rollback, a restore, migrate-data) does with the app's running
/// `deploy exec` and job containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Writers {
    /// Waits for them (up to `--lock-wait`), else refuses (exit 4).
    #[default]
    Wait,
    /// `--stop-running`: stops them first (SIGTERM, then the stop timeout).
    Stop,
}

/// Whether a swap may go on when Traefik cannot be switched to the gap server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protection {
    /// It refuses: requests in the gap would fail.
    #[default]
    Required,
    /// `--unprotected`: it goes on without (requests in the gap then fail).
    Optional,
}

/// What a command that deletes or replaces data may ask first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consent {
    /// Asks where there is a terminal, else refuses.
    #[default]
    Ask,
    /// `--yes`: given beforehand.
    Given,
}

/// A release whose version exists already on the node (not the live one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Existing {
    /// It refuses (unless that one never went live).
    #[default]
    Refuse,
    /// `--replace`: released again, the one it replaces set aside until the new one is built.
    Replace,
}

/// Where a release's artifacts are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Artifacts {
    /// Here: the config's `artifacts`, relative to the project's directory.
    Here,
    /// Sent over SSH already, into `releases/.incoming-VERSION.RUN` (`RUN` given).
    Uploaded(String),
}

/// `deploy release VERSION ENV`, on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRequest {
    pub version: Version,
    pub existing: Existing,
    pub protection: Protection,
    pub writers: Writers,
    pub artifacts: Artifacts,
    /// The env.secret values a laptop sent, in a private file (read, removed); `None`: from
    /// this process's environment.
    pub secrets: Option<PathBuf>,
}

/// `deploy rollback ENV`, on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackRequest {
    /// The release to go back to; `None`: the previous one.
    pub to: Option<Version>,
    pub data: DataChoice,
    /// For `--with-data`, which replaces the data.
    pub consent: Consent,
    pub writers: Writers,
    pub protection: Protection,
}

/// Whether a `deploy exec` container keeps its stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stdin {
    /// Closed: a one-time task.
    #[default]
    Closed,
    /// `--interactive`: kept open (and a terminal when there is one), a console.
    Open,
}

/// `deploy exec ENV -- CMD...`, on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    pub stdin: Stdin,
    /// The program in the image and its arguments.
    pub command: Vec<String>,
}

/// What `deploy remove` deletes besides what runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// The app's units, containers, images and router; its data and releases stay.
    #[default]
    App,
    /// `--data`: its data too (shared/, the data snapshots, a `file://` replica).
    Data,
    /// `--all`: its data and its whole directory (releases, history).
    All,
}

impl Scope {
    /// Whether the data goes (`--data` or `--all`).
    pub fn data(self) -> bool {
        self != Scope::App
    }

    /// Whether the app's whole directory goes (`--all`).
    pub fn all(self) -> bool {
        self == Scope::All
    }
}

/// `deploy remove ENV`, on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoveRequest {
    pub scope: Scope,
    /// For `--data` and `--all`.
    pub consent: Consent,
}

/// `deploy restore ENV`, on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRequest {
    /// The data as it was at this time (RFC 3339) or that long ago; `None`: the newest.
    pub at: Option<String>,
    /// Restore over the databases there (after a snapshot of them).
    pub overwrite: bool,
    pub writers: Writers,
    /// The env.secret values a laptop sent (the replica's credentials), in a private file.
    pub secrets: Option<PathBuf>,
}

/// Whether a command changes anything or only prints its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Change,
    /// `--dry-run`: the plan printed, nothing changed.
    DryRun,
}

/// `deploy migrate-data ENV`, on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateRequest {
    pub mode: Mode,
    /// The first release's name.
    pub release: Version,
    /// For the moves (the plan is shown first).
    pub consent: Consent,
    pub writers: Writers,
}
