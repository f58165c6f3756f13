//! The arguments of `deploy preview ...`.

use clap::{Args, Subcommand};

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
