//! What `deploy restore` set aside: `.deploy/replaced/<stamp>/`, a snapshot of the data each
//! restore replaced. The newest [`KEEP`] are kept; older ones go at the end of a later restore
//! or release, once the app is healthy (or, with nothing live, once the restore's files are
//! in).
//!
//! ```text
//! .deploy/replaced/<stamp>/<stamp>/...     what a restore replaced (a snapshot)
//! .deploy/replaced/.pruning-<stamp>/       being removed: never used, removed by the next prune
//! ```

use crate::node::data::Data;
use crate::node::snapshot::{self, Kind};
use crate::sys::fsx;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// How many are kept: the newest is the way back from the last restore; the one before it is
/// the way back from two restores in a row (a restore to the wrong point in time, then
/// another: what was there before both is in the older one).
pub const KEEP: usize = 2;

use crate::node::layout::PRUNING_PREFIX as PRUNING;

impl Data<'_> {
    /// Removes what restores set aside but the newest [`KEEP`]; says what went. A failure is a
    /// warning: nothing depends on it.
    pub(crate) fn prune_replaced(&self) {
        match prune(&self.layout.meta().join("replaced"), KEEP) {
            Ok(gone) if !gone.is_empty() => self.ui.detail(&format!(
                "   removed {} older snapshot(s) of data restores replaced (the newest {KEEP} \
                 kept)",
                gone.len()
            )),
            Ok(_) => {}
            Err(e) => self.ui.warn(&format!(
                "the older snapshots of data restores replaced: {e:#}"
            )),
        }
    }
}

/// In `dir`, the entries that hold a complete snapshot, newest first, but the `keep` newest,
/// and those that hold none (a restore killed while taking it), are renamed out of sight
/// (`.pruning-<name>`, the renames synced), then removed; so are `.pruning-` entries a crash
/// left. Other hidden entries (the copy made before a restore's stop) are not touched. Returns
/// the entries removed (by their names before).
pub fn prune(dir: &Path, keep: usize) -> Result<Vec<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut stamps = Vec::new();
    let mut gone = Vec::new();
    for e in entries {
        let e = e.with_context(|| format!("cannot read {}", dir.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(PRUNING) {
            gone.push(e.path());
        } else if !name.starts_with('.') && e.file_type()?.is_dir() {
            stamps.push(e.path());
        }
    }
    // Stamps sort by time.
    stamps.sort();
    let complete =
        |p: &PathBuf| snapshot::latest(p, Kind::BeforeRestore).is_ok_and(|s| s.is_some());
    let (whole, broken): (Vec<PathBuf>, Vec<PathBuf>) = stamps.into_iter().partition(complete);
    let old = whole.len().saturating_sub(keep);
    let doomed: Vec<PathBuf> = whole.into_iter().take(old).chain(broken).collect();
    let mut removed = Vec::new();
    for d in &doomed {
        let name = d.file_name().expect("listed").to_string_lossy();
        let aside = dir.join(format!("{PRUNING}{name}"));
        std::fs::rename(d, &aside)
            .with_context(|| format!("cannot move {} out of sight", d.display()))?;
        gone.push(aside);
        removed.push(d.clone());
    }
    if !doomed.is_empty() {
        fsx::sync_dir(dir)?;
    }
    for g in gone {
        std::fs::remove_dir_all(&g).with_context(|| format!("cannot remove {}", g.display()))?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let d = std::env::temp_dir().join(format!("deploy-replaced-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A complete snapshot of what a restore replaced, as `take` leaves it.
    fn kept(dir: &Path, stamp: &str) {
        let snap = dir.join(stamp).join(stamp);
        std::fs::create_dir_all(&snap).unwrap();
        snapshot::Manifest {
            kind: Kind::BeforeRestore,
            ..Default::default()
        }
        .write(&snap)
        .unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn the_newest_two_are_kept_and_what_a_crash_left_goes() {
        let d = scratch();
        for s in ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"] {
            kept(&d, s);
        }
        // A restore killed while taking its snapshot; a prune killed before its removal; a
        // copy made before a restore's stop (not the prune's to touch).
        std::fs::create_dir_all(d.join("2026-01-05/.tmp-x")).unwrap();
        std::fs::create_dir_all(d.join(".pruning-2025-12-31/a")).unwrap();
        std::fs::create_dir_all(d.join(".tmp-pre-copy")).unwrap();
        let gone = prune(&d, KEEP).unwrap();
        let gone: Vec<String> = gone
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(gone, ["2026-01-01", "2026-01-02", "2026-01-05"]);
        assert_eq!(names(&d), [".tmp-pre-copy", "2026-01-03", "2026-01-04"]);
        // Nothing more to do: nothing goes.
        assert!(prune(&d, KEEP).unwrap().is_empty());
        assert_eq!(names(&d).len(), 3);
        assert!(prune(&d.join("missing"), KEEP).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }
}
