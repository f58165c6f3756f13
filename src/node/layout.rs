//! Where things live on a node. Pure: computes paths, touches nothing.
//!
//! ```text
//! <root>/current -> releases/<version>   the one source of truth for what runs
//! <root>/releases/<version>/             one complete release (artifacts + links into shared/)
//! <root>/releases/.incoming-<version>/   an upload in progress, never visible under its name
//! <root>/releases/.replaced-<version>/   a release being replaced (--replace), until built
//! <root>/shared/                         persistent state, linked into every release
//! <root>/.deploy/state.json, lock        deploy's own records
//! <root>/log/<app>.log                   the app's output
//! <root>/log/job_<name>.log              a job's runs' output
//! <root>/.deploy/jobs.json               the jobs' last runs
//! <root>/.deploy/runs/                   the output of the node-side runs
//! <root>/.deploy/bin/deploy              a remote server: the deploy that setup installed
//! <root>/.deploy/project/<run>/          a remote command's config, removed when it ends
//! ```

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub root: PathBuf,
}

/// The directory inside each release that holds deploy's files (e.g. `release.env`).
/// The name of a release's env file in its [`RELEASE_META`] directory.
pub const RELEASE_ENV: &str = "release.env";

pub const RELEASE_META: &str = ".deploy";
pub const INCOMING_PREFIX: &str = ".incoming-";
/// A directory being removed (a pruned release, an old restore's set-aside): renamed so, out of
/// sight, then deleted; what a kill left under this name is removed by the next prune.
pub const PRUNING_PREFIX: &str = ".pruning-";
pub const REPLACED_PREFIX: &str = ".replaced-";
/// On a remote server: the deploy binary that setup installed, relative to the root.
pub const NODE_BIN: &str = ".deploy/bin/deploy";
/// On a remote server: where each command sent from a laptop keeps its config, one
/// directory per run, relative to the root.
pub const NODE_PROJECT: &str = ".deploy/project";

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }
    pub fn releases(&self) -> PathBuf {
        self.root.join("releases")
    }
    pub fn release(&self, version: &str) -> PathBuf {
        self.releases().join(version)
    }
    /// Where the data snapshots of a release are kept (pruned with it).
    pub fn snapshots(&self, version: &str) -> PathBuf {
        self.release(version).join(RELEASE_META).join("snapshots")
    }
    /// Where one run uploads over SSH: its own directory, so that two laptops releasing at
    /// once never write into each other's upload.
    pub fn incoming_run(&self, version: &str, run: &str) -> PathBuf {
        self.releases()
            .join(format!("{INCOMING_PREFIX}{version}.{run}"))
    }

    /// Where `release --replace` keeps the release it replaces until the new one is built.
    pub fn replaced(&self, version: &str) -> PathBuf {
        self.releases().join(format!("{REPLACED_PREFIX}{version}"))
    }

    pub fn incoming(&self, version: &str) -> PathBuf {
        self.releases().join(format!("{INCOMING_PREFIX}{version}"))
    }
    pub fn shared(&self) -> PathBuf {
        self.root.join("shared")
    }
    pub fn current(&self) -> PathBuf {
        self.root.join("current")
    }
    /// The version `current` points at, if any.
    pub fn current_version(&self) -> Result<Option<String>> {
        match std::fs::read_link(self.current()) {
            Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| {
                format!("{} exists but is not a symlink", self.current().display())
            }),
        }
    }
    pub fn meta(&self) -> PathBuf {
        self.root.join(".deploy")
    }
    pub fn state_file(&self) -> PathBuf {
        self.meta().join("state.json")
    }
    /// While it exists (a swap in socket mode), a start of the app waits: a connection cannot
    /// start a release on data the swap is changing.
    pub fn hold_file(&self) -> PathBuf {
        self.meta().join("hold")
    }

    /// The output of the node-side runs (a remote command's, a local release's).
    pub fn runs(&self) -> PathBuf {
        self.meta().join("runs")
    }
    /// On a remote server: the deploy binary that setup installed.
    pub fn node_bin(&self) -> PathBuf {
        self.root.join(NODE_BIN)
    }
    /// On a remote server: the config directories of the commands sent from laptops.
    pub fn projects(&self) -> PathBuf {
        self.root.join(NODE_PROJECT)
    }
    /// On a remote server: the config directory of one command (its run id).
    pub fn project(&self, run: &str) -> PathBuf {
        self.projects().join(run)
    }

    pub fn lock_file(&self) -> PathBuf {
        self.meta().join("lock")
    }
    pub fn log_dir(&self) -> PathBuf {
        self.root.join("log")
    }
    pub fn app_log(&self, app: &str) -> PathBuf {
        self.log_dir().join(format!("{app}.log"))
    }
    /// The output of every run of the job `name` (`_` is in no app's name: never an app's log).
    pub fn job_log(&self, name: &str) -> PathBuf {
        self.log_dir().join(format!("job_{name}.log"))
    }
    /// The jobs' last runs: when, how long, how each ended (not the release state).
    pub fn jobs_file(&self) -> PathBuf {
        self.meta().join("jobs.json")
    }
    /// Held by a run of the job `name` for its whole life (flock): a run still going.
    pub fn job_lock(&self, name: &str) -> PathBuf {
        self.meta().join("jobs").join(format!("{name}.lock"))
    }
    /// What the unit's own commands (podman, not the app) write to stderr: why a start failed,
    /// readable on a node without journald too.
    pub fn unit_log(&self) -> PathBuf {
        self.log_dir().join("unit.log")
    }
    /// The env file the unit reads through `current`.
    pub fn current_release_env(&self) -> PathBuf {
        self.current().join(RELEASE_META).join(RELEASE_ENV)
    }
    /// A release's own env file (its image, variables file and run settings).
    pub fn release_env(&self, version: &str) -> PathBuf {
        self.release(version).join(RELEASE_META).join(RELEASE_ENV)
    }
    /// What `current` points at, relative to the root (so the tree can be moved).
    pub fn current_target(version: &str) -> PathBuf {
        Path::new("releases").join(version)
    }
    /// The symlink that links a shared entry into a release, relative to the release directory.
    pub fn shared_link_target(entry: &str) -> PathBuf {
        let depth = Path::new(entry).components().count();
        let mut p = PathBuf::from("../..");
        for _ in 1..depth {
            p.push("..");
        }
        p.join("shared").join(entry)
    }
}

/// The app's directory may not be the home directory, `/`, or above the home directory:
/// `migrate-data` would move `.ssh` and `.config` into a release, and pruning it would delete
/// them. Pure.
pub fn check_root(root: &Path, home: &Path) -> Result<()> {
    if root
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        bail!(
            "the app directory {} contains `..`: name it plainly",
            root.display()
        );
    }
    if root == Path::new("/") || home.starts_with(root) {
        bail!(
            "the app directory {} is {} the home directory {}: give the app a directory of its \
             own, such as ~/web/APP",
            root.display(),
            if root == home { "" } else { "above" },
            home.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_home_directory_and_above_are_refused() {
        let home = Path::new("/home/d");
        for bad in ["/", "/home", "/home/d", "/home/d/../x", "/home/./d"] {
            assert!(check_root(Path::new(bad), home).is_err(), "{bad}");
        }
        for good in ["/home/d/web/shop", "/srv/shop", "/home/dd"] {
            assert!(check_root(Path::new(good), home).is_ok(), "{good}");
        }
    }

    #[test]
    fn paths() {
        let l = Layout::new("/srv/app");
        assert_eq!(l.release("v1"), Path::new("/srv/app/releases/v1"));
        assert_eq!(
            l.incoming("v1"),
            Path::new("/srv/app/releases/.incoming-v1")
        );
        assert_eq!(
            l.current_release_env(),
            Path::new("/srv/app/current/.deploy/release.env")
        );
        assert_eq!(Layout::current_target("v2"), Path::new("releases/v2"));
    }

    #[test]
    fn shared_links_climb_out_of_the_release() {
        assert_eq!(
            Layout::shared_link_target("data"),
            Path::new("../../shared/data")
        );
        assert_eq!(
            Layout::shared_link_target("public/uploads"),
            Path::new("../../../shared/public/uploads")
        );
    }
}
