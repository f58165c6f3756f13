//! `deploy migrate-data`: turns an app directory that was deployed in place (binary, assets,
//! `.env` and a `data/` folder with a live SQLite database, side by side) into the release
//! layout: the shared entries move to `shared/`, everything else becomes the first release.
//!
//! The plan is pure ([`plan`]); it is written to `.deploy/migrate.json` before anything moves
//! and records each step's progress, so a rerun after a crash finishes the job. The doers below
//! move (a rename on one filesystem; across filesystems a copy, fsync, byte-for-byte and SQLite
//! verification, then the swap) and check databases.

use crate::node::snapshot;
use crate::sys::fsx;
use crate::sys::systemd::Active;
use anyhow::{bail, Context, Result};
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The migration's journal, in `.deploy/`: present while a migration is under way.
pub const PLAN_FILE: &str = "migrate.json";

/// Names in the app directory that are deploy's own, never part of the old deployment.
pub const OWN: &[&str] = &[".deploy", "releases", "shared", "current"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Pending,
    /// Copied across filesystems, verified and renamed into place; the original is still there.
    Copied,
    Done,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedMove {
    /// The entry, relative to the app directory and to `shared/` (e.g. `data`, `.env`).
    pub entry: String,
    pub dir: bool,
    pub stage: Stage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The first release's name.
    pub release: String,
    /// Shared entries found in the old layout, moved to `shared/`.
    pub moves: Vec<SharedMove>,
    /// Shared entries the old layout lacks: created empty in `shared/`, as `deploy setup` does.
    pub create: Vec<(String, bool)>,
    /// Top-level names that become the release.
    pub release_files: Vec<String>,
}

/// One entry of the app directory as found.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    pub dir: bool,
}

/// The plan for an old layout: `top` is what the app directory holds at its top, `present`
/// says whether a (possibly nested) path exists and is a directory.
pub fn plan(
    top: &[Entry],
    present: impl Fn(&str) -> Option<bool>,
    dirs: &[String],
    files: &[String],
    release: &str,
) -> Result<Plan> {
    let mut moves = Vec::new();
    let mut create = Vec::new();
    for (entry, want_dir) in dirs
        .iter()
        .map(|d| (d, true))
        .chain(files.iter().map(|f| (f, false)))
    {
        match present(entry) {
            Some(is_dir) if is_dir != want_dir => bail!(
                "`{entry}` is a {} in the app directory, but the config lists it under shared.{}",
                if is_dir { "directory" } else { "file" },
                if want_dir { "dirs" } else { "files" }
            ),
            Some(_) => moves.push(SharedMove {
                entry: entry.clone(),
                dir: want_dir,
                stage: Stage::Pending,
            }),
            None => create.push((entry.clone(), want_dir)),
        }
    }
    // Top-level names that hold only shared entries (`config` for `config/master.key`) still go
    // to the release, with the shared entries moved out of them first.
    let release_files: Vec<String> = top
        .iter()
        .map(|e| e.name.clone())
        .filter(|n| !OWN.contains(&n.as_str()))
        .filter(|n| !moves.iter().any(|m| &m.entry == n))
        .collect();
    if release_files.is_empty() {
        bail!("there is nothing in the app directory to make the first release of");
    }
    Ok(Plan {
        release: release.to_string(),
        moves,
        create,
        release_files,
    })
}

/// The plan as the user reads it (`--dry-run`, and before it runs).
pub fn describe(plan: &Plan, root: &Path) -> String {
    let mut out = format!("Plan for {}:\n", root.display());
    for m in &plan.moves {
        out.push_str(&format!(
            "  move   {}{} -> shared/{}{}{}\n",
            m.entry,
            if m.dir { "/" } else { "" },
            m.entry,
            if m.dir { "/" } else { "" },
            match m.stage {
                Stage::Pending => "",
                Stage::Copied => "   (copied, original to remove)",
                Stage::Done => "   (done)",
            }
        ));
    }
    for (entry, dir) in &plan.create {
        out.push_str(&format!(
            "  create shared/{entry}{} (empty: the old layout has none)\n",
            if *dir { "/" } else { "" }
        ));
    }
    for name in &plan.release_files {
        out.push_str(&format!(
            "  move   {name} -> releases/{}/{name}\n",
            plan.release
        ));
    }
    out.push_str(&format!(
        "  link   the shared entries into releases/{r}/, and current -> releases/{r}\n",
        r = plan.release
    ));
    out
}

// ------------------------------------------------------------------------------------ doers

/// Rows of every table of every SQLite database under `path` (a directory or one file), after
/// `PRAGMA integrity_check`. Opening a database applies its `-wal`, so rows only there count.
pub fn check_databases(path: &Path) -> Result<BTreeMap<PathBuf, BTreeMap<String, i64>>> {
    let dbs: Vec<PathBuf> = if path.is_dir() {
        snapshot::databases(path)?
            .into_iter()
            .map(|rel| path.join(rel))
            .collect()
    } else if snapshot::is_sqlite(path) {
        vec![path.to_path_buf()]
    } else {
        Vec::new()
    };
    let mut all = BTreeMap::new();
    for db in dbs {
        let rel = db.strip_prefix(path).unwrap_or(Path::new("")).to_path_buf();
        all.insert(rel, check_database(&db)?);
    }
    Ok(all)
}

fn check_database(db: &Path) -> Result<BTreeMap<String, i64>> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .with_context(|| format!("cannot open the database {}", db.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .with_context(|| format!("cannot check {}", db.display()))?;
    if ok != "ok" {
        bail!("{} fails PRAGMA integrity_check: {ok}", db.display());
    }
    let mut stmt =
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?;
    let tables: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut counts = BTreeMap::new();
    for t in tables {
        let n: i64 = conn.query_row(
            &format!("SELECT COUNT(*) FROM \"{}\"", t.replace('"', "\"\"")),
            [],
            |r| r.get(0),
        )?;
        counts.insert(t, n);
    }
    Ok(counts)
}

/// Whether a shared target is what `deploy setup` creates (an empty directory or file), which a
/// move may replace. Anything else is refused.
pub fn replaceable(target: &Path) -> bool {
    match std::fs::symlink_metadata(target) {
        Err(_) => true,
        Ok(m) if m.is_dir() => std::fs::read_dir(target)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false),
        Ok(m) if m.is_file() => m.len() == 0,
        Ok(_) => false,
    }
}

fn remove_any(path: &Path) -> Result<()> {
    let m = std::fs::symlink_metadata(path)?;
    if m.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
    .with_context(|| format!("cannot remove {}", path.display()))
}

/// Copies a tree with modes, owners, times and links (`cp -a`), then fsyncs every file and
/// directory of the copy.
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let out = duct::cmd!("cp", "-a", "--no-target-directory", from, to)
        .stderr_capture()
        .unchecked()
        .run()
        .context("cannot run cp")?;
    if !out.status.success() {
        bail!(
            "cannot copy {} to {}: {}",
            from.display(),
            to.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    for e in walkdir::WalkDir::new(to).contents_first(true) {
        let e = e?;
        if e.file_type().is_file() || e.file_type().is_dir() {
            std::fs::File::open(e.path())
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot fsync {}", e.path().display()))?;
        }
    }
    Ok(())
}

/// Whether two trees hold the same entries, types, modes, link targets and bytes.
pub fn same_tree(a: &Path, b: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let list = |root: &Path| -> Result<Vec<PathBuf>> {
        let mut v = Vec::new();
        for e in walkdir::WalkDir::new(root).sort_by_file_name() {
            v.push(e?.path().strip_prefix(root).expect("under").to_path_buf());
        }
        Ok(v)
    };
    let (la, lb) = (list(a)?, list(b)?);
    if la != lb {
        bail!(
            "the copy of {} has other entries than the original",
            a.display()
        );
    }
    for rel in la {
        // `rel` is empty for the roots themselves (and a file's root must not get a `/`).
        let at = |root: &Path| {
            if rel.as_os_str().is_empty() {
                root.to_path_buf()
            } else {
                root.join(&rel)
            }
        };
        let (pa, pb) = (at(a), at(b));
        let (ma, mb) = (
            std::fs::symlink_metadata(&pa)?,
            std::fs::symlink_metadata(&pb)?,
        );
        // A directory's size is the filesystem's business; a file's is its content's.
        let sized = !ma.is_dir();
        if ma.file_type() != mb.file_type()
            || ma.mode() != mb.mode()
            || ma.uid() != mb.uid()
            || (sized && ma.len() != mb.len())
        {
            bail!("{} differs from {}", pb.display(), pa.display());
        }
        if ma.file_type().is_symlink() && std::fs::read_link(&pa)? != std::fs::read_link(&pb)? {
            bail!("{} points elsewhere than {}", pb.display(), pa.display());
        }
        if ma.is_file() && !same_bytes(&pa, &pb)? {
            bail!("{} has other bytes than {}", pb.display(), pa.display());
        }
    }
    Ok(())
}

fn same_bytes(a: &Path, b: &Path) -> Result<bool> {
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba)?;
        let mut filled = 0;
        while filled < n {
            let m = fb.read(&mut bb[filled..n])?;
            if m == 0 {
                return Ok(false);
            }
            filled += m;
        }
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(fb.read(&mut bb)? == 0);
        }
    }
}

/// Moves one shared entry from `from` to `to`, verified; `save` records each stage reached.
/// On one filesystem: rename, then the databases are checked (a failure renames it back).
/// Across filesystems: copy beside the target, fsync, compare byte for byte, check the
/// databases, rename into place, and only then remove the original.
pub fn move_entry(
    m: &mut SharedMove,
    from: &Path,
    to: &Path,
    mut save: impl FnMut(&SharedMove) -> Result<()>,
) -> Result<()> {
    if m.stage == Stage::Pending {
        if !from.exists() && std::fs::symlink_metadata(to).is_ok() {
            // Renamed before the stage was recorded.
            check_databases(to)?;
        } else {
            if !replaceable(to) {
                bail!(
                    "{} already exists and is not empty: migrate-data does not overwrite it. Move \
                     it away, or merge it by hand",
                    to.display()
                );
            }
            if std::fs::symlink_metadata(to).is_ok() {
                remove_any(to)?;
            }
            let before = check_databases(from)?;
            fsx::ensure_dir(to.parent().expect("under shared"), 0o755)?;
            match std::fs::rename(from, to) {
                Ok(()) => {
                    fsx::sync_dir(to.parent().expect("parent"))?;
                    fsx::sync_dir(from.parent().expect("parent"))?;
                    let after = check_databases(to);
                    if after.as_ref().ok() != Some(&before) {
                        std::fs::rename(to, from)?;
                        fsx::sync_dir(from.parent().expect("parent"))?;
                        bail!(
                            "after moving {} to {}, its databases did not check out ({}): it \
                             was moved back",
                            from.display(),
                            to.display(),
                            match after {
                                Ok(a) => format!("rows before {before:?}, after {a:?}"),
                                Err(e) => format!("{e:#}"),
                            }
                        );
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
                    let tmp = to.with_file_name(format!(
                        ".migrate-{}.tmp",
                        to.file_name().expect("a name").to_string_lossy()
                    ));
                    if std::fs::symlink_metadata(&tmp).is_ok() {
                        remove_any(&tmp)?;
                    }
                    copy_tree(from, &tmp)?;
                    let verified = same_tree(from, &tmp).and_then(|()| {
                        let after = check_databases(&tmp)?;
                        if after != before {
                            bail!("rows before {before:?}, in the copy {after:?}");
                        }
                        Ok(())
                    });
                    if let Err(e) = verified {
                        let _ = remove_any(&tmp);
                        return Err(e.context(format!(
                            "the copy of {} to {} did not verify: it was removed, the original \
                             is untouched",
                            from.display(),
                            to.display()
                        )));
                    }
                    fsx::rename_durable(&tmp, to)?;
                    m.stage = Stage::Copied;
                    save(m)?;
                    crate::signals::point("migrate-after-copy");
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot move {} to {}", from.display(), to.display())
                    })
                }
            }
        }
    }
    if m.stage == Stage::Copied && std::fs::symlink_metadata(from).is_ok() {
        remove_any(from)?;
        fsx::sync_dir(from.parent().expect("parent"))?;
    }
    m.stage = Stage::Done;
    save(m)
}

/// Processes (of this user; others' are not visible) that have a file under `dir` open: they
/// could write to a database while it moves.
pub fn writers(dir: &Path) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for p in procs.flatten() {
        let pid = p.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if target.starts_with(dir) {
                    let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
                    found.push(format!(
                        "pid {pid} ({}) has {} open",
                        comm.trim(),
                        target.display()
                    ));
                    break;
                }
            }
        }
    }
    found
}

// ------------------------------------------------------------------------- the node's side

/// What `deploy migrate-data` is given.
impl crate::node::Node<'_> {
    fn plan_file(&self) -> PathBuf {
        self.layout.meta().join(PLAN_FILE)
    }

    fn save_plan(&self, plan: &Plan) -> Result<()> {
        fsx::ensure_dir(&self.layout.meta(), 0o700)?;
        let json = serde_json::to_vec_pretty(plan)?;
        fsx::write_atomic(&self.plan_file(), &json, 0o600)
    }

    /// The plan of an interrupted migration, if there is one.
    fn saved_plan(&self) -> Result<Option<Plan>> {
        match std::fs::read(self.plan_file()) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("{} is not a migration plan", self.plan_file().display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context("cannot read the migration plan"),
        }
    }

    /// A new plan for the app directory as it is, or why there is nothing to migrate.
    fn new_plan(&self, release: &str) -> Result<Option<Plan>> {
        let root = &self.layout.root;
        if let Some(current) = self.current()? {
            self.ui.info(&format!(
                "{} is already in the release layout (current -> releases/{current}): nothing \
                 to migrate",
                root.display()
            ));
            return Ok(None);
        }
        if self.layout.releases().is_dir() && !self.releases_on_disk()?.is_empty() {
            bail!(
                "{} has releases but no `current`: it is neither the old layout nor a complete \
                 new one. Run `deploy rollback --to VERSION {}` to make one live",
                root.display(),
                self.env_name
            );
        }
        crate::version::check(release)?;
        let mut top = Vec::new();
        let entries = std::fs::read_dir(root).with_context(|| {
            format!(
                "cannot read {}: is `path` right for {}?",
                root.display(),
                self.env_name
            )
        })?;
        for e in entries {
            let e = e?;
            top.push(Entry {
                name: e.file_name().to_string_lossy().into_owned(),
                dir: e.file_type()?.is_dir(),
            });
        }
        top.sort_by(|a, b| a.name.cmp(&b.name));
        // `deploy setup` may have run first (it makes releases/): its log dir is not the old
        // deployment's.
        if self.layout.releases().is_dir() {
            top.retain(|e| e.name != "log");
        }
        let present = |p: &str| {
            std::fs::symlink_metadata(root.join(p))
                .ok()
                .map(|m| m.is_dir())
        };
        let shared = &self.config.shared;
        let plan = plan(&top, present, &shared.dirs, &shared.files, release)?;
        for m in &plan.moves {
            let target = self.layout.shared().join(&m.entry);
            if !replaceable(&target) {
                bail!(
                    "{} already exists and is not empty, and migrate-data does not overwrite: \
                     move it away (or merge it into {} by hand), then run migrate-data again. \
                     Nothing was changed",
                    target.display(),
                    root.join(&m.entry).display()
                );
            }
        }
        if self.layout.release(release).exists() {
            bail!("releases/{release} already exists: pick another name with --as");
        }
        Ok(Some(plan))
    }

    pub fn migrate_data(&self, req: &crate::cli::MigrateArgs) -> Result<()> {
        let root = self.layout.root.clone();
        if !root.is_dir() {
            bail!(
                "{} does not exist: there is nothing to migrate on {}",
                root.display(),
                self.env_name
            );
        }
        // A dry run takes no lock: creating the lock file would already be a change.
        let _lock = if req.dry_run {
            None
        } else {
            fsx::ensure_dir(&self.layout.meta(), 0o700)?;
            // Not `self.lock()`: that one wants `deploy setup` first, which is optional here.
            Some(crate::node::lock::acquire(
                &self.layout.lock_file(),
                &format!("deploy migrate-data {}", self.env_name),
            )?)
        };
        let resumed = self.saved_plan()?;
        let mut plan = match resumed.clone() {
            Some(p) => p,
            None => match self.new_plan(&req.release)? {
                Some(p) => p,
                None => return Ok(()),
            },
        };
        if req.dry_run {
            print!("{}", describe(&plan, &root));
            println!(
                "{}Dry run: nothing was changed.",
                if resumed.is_some() {
                    "An interrupted migration is under way: the rest of it is shown. "
                } else {
                    ""
                }
            );
            return Ok(());
        }
        if resumed.is_some() {
            self.ui
                .info("   an interrupted migration is under way: finishing it");
        }
        self.ui.info(describe(&plan, &root).trim_end());

        // No writer may have a database open while it moves.
        let systemd = crate::sys::systemd::Systemd::connect()?;
        let unit = self.unit_name();
        let running = systemd
            .state(&unit)
            .map(|s| matches!(s.active, Active::Active | Active::Activating))
            .unwrap_or(false);
        if running {
            self.ui.step(&format!("Stopping {unit}"), || {
                systemd.stop(&unit, self.stop_timeout())
            })?;
        }
        let sources: Vec<PathBuf> = plan
            .moves
            .iter()
            .filter(|m| m.stage == Stage::Pending)
            .map(|m| root.join(&m.entry))
            .collect();
        let busy: Vec<String> = sources.iter().flat_map(|s| writers(s)).collect();
        if !busy.is_empty() {
            bail!(
                "something still has the shared data open, and a database must not move under \
                 a writer: stop it, then run migrate-data again (nothing was changed):\n  {}",
                busy.join("\n  ")
            );
        }
        if resumed.is_none() {
            self.save_plan(&plan)?;
        }
        crate::signals::point("migrate-after-plan");

        let shared = self.layout.shared();
        fsx::ensure_dir(&shared, 0o755)?;
        for i in 0..plan.moves.len() {
            let mut m = plan.moves[i].clone();
            let (from, to) = (root.join(&m.entry), shared.join(&m.entry));
            let label = format!("Moving {} to shared/{}", m.entry, m.entry);
            let mut done = plan.clone();
            self.ui.step(&label, || {
                move_entry(&mut m, &from, &to, |now| {
                    done.moves[i] = now.clone();
                    self.save_plan(&done)
                })
            })?;
            plan.moves[i] = m;
        }
        for (entry, dir) in &plan.create {
            let p = shared.join(entry);
            if std::fs::symlink_metadata(&p).is_err() {
                if *dir {
                    fsx::ensure_dir(&p, 0o755)?;
                } else {
                    fsx::ensure_dir(p.parent().expect("under shared"), 0o755)?;
                    fsx::write_atomic(&p, b"", 0o600)?;
                }
            }
        }
        crate::signals::point("migrate-after-shared");

        let v = plan.release.clone();
        let image = self.image(&v);
        let target = self.layout.release(&v);
        if !target.is_dir() {
            let incoming = self.layout.incoming(&v);
            self.ui
                .step(&format!("Making releases/{v} of the rest"), || {
                    fsx::ensure_dir(&incoming, 0o755)?;
                    for name in &plan.release_files {
                        let from = root.join(name);
                        if std::fs::symlink_metadata(&from).is_ok() {
                            std::fs::rename(&from, incoming.join(name)).with_context(|| {
                                format!("cannot move {} into releases/", from.display())
                            })?;
                        }
                    }
                    fsx::sync_dir(&root)?;
                    crate::signals::point("migrate-after-release-files");
                    crate::node::upload::finish_release_dir(
                        &incoming,
                        &self.config.shared,
                        &self.config.app,
                        &v,
                        &image,
                    )?;
                    fsx::rename_durable(&incoming, &target)
                })?;
        }
        fsx::replace_symlink(
            &self.layout.current(),
            &crate::node::layout::Layout::current_target(&v),
        )?;
        let mut state = self.load_state()?;
        if !state.releases.contains_key(&v) {
            state.add_release(&v, &image);
        }
        state.set_outcome(&v, crate::node::state::Outcome::Ok);
        state.push_event(crate::node::event(
            crate::node::state::Action::MigrateData,
            &v,
            None,
            crate::node::state::EventOutcome::Ok,
            None,
            Some("the in-place deployment became this release"),
        ));
        self.save_state(&state)?;
        std::fs::remove_file(self.plan_file())?;
        fsx::sync_dir(&self.layout.meta())?;

        let has_containerfile = ["Containerfile", "Dockerfile"]
            .iter()
            .any(|f| target.join(f).is_file());
        self.ui.info(&format!(
            "migrated {}: current -> releases/{v}, data in shared/. {}Next: `deploy setup {env}` \
             (if not done yet), then `deploy release VERSION {env}`{}",
            root.display(),
            if running {
                format!("{unit} was stopped and stays stopped until the next release. ")
            } else {
                String::new()
            },
            if has_containerfile {
                format!("; `deploy rollback --to {v}` goes back to it")
            } else {
                format!(
                    ". releases/{v} has no Containerfile, so `deploy rollback --to {v}` cannot \
                     build its image: add one there if you want that"
                )
            },
            env = self.env_name,
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &str, dir: bool) -> Entry {
        Entry {
            name: name.into(),
            dir,
        }
    }

    #[test]
    fn old_files_become_the_release_and_shared_entries_move() {
        let top = [
            e("my-app", false),
            e("assets", true),
            e("data", true),
            e(".env", false),
            e("Containerfile", false),
        ];
        let present = |p: &str| match p {
            "data" => Some(true),
            ".env" => Some(false),
            _ => None,
        };
        let p = plan(
            &top,
            present,
            &["data".into(), "uploads".into()],
            &[".env".into()],
            "legacy",
        )
        .unwrap();
        assert_eq!(
            p.moves.iter().map(|m| m.entry.as_str()).collect::<Vec<_>>(),
            ["data", ".env"]
        );
        assert_eq!(p.create, vec![("uploads".to_string(), true)]);
        assert_eq!(p.release_files, ["my-app", "assets", "Containerfile"]);
        let text = describe(&p, Path::new("/srv/my-app"));
        assert!(text.contains("move   data/ -> shared/data/"), "{text}");
        assert!(text.contains("create shared/uploads/"), "{text}");
        assert!(
            text.contains("move   my-app -> releases/legacy/my-app"),
            "{text}"
        );
    }

    #[test]
    fn a_shared_entry_of_the_wrong_kind_or_nothing_to_release_is_refused() {
        let top = [e("app", false), e("data", false)];
        let err = plan(
            &top,
            |p| (p == "data").then_some(false),
            &["data".into()],
            &[],
            "legacy",
        )
        .unwrap_err();
        assert!(err.to_string().contains("`data` is a file"), "{err}");
        let err = plan(
            &[e("data", true)],
            |_| Some(true),
            &["data".into()],
            &[],
            "legacy",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("nothing in the app directory"),
            "{err}"
        );
    }

    #[test]
    fn trees_compare_by_bytes_and_modes() {
        let d = std::env::temp_dir().join(format!("deploy-migrate-tree-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("a/sub")).unwrap();
        std::fs::write(d.join("a/sub/f"), "hello").unwrap();
        std::os::unix::fs::symlink("sub/f", d.join("a/link")).unwrap();
        copy_tree(&d.join("a"), &d.join("b")).unwrap();
        same_tree(&d.join("a"), &d.join("b")).unwrap();
        std::fs::write(d.join("b/sub/f"), "hellO").unwrap();
        assert!(same_tree(&d.join("a"), &d.join("b")).is_err());
        assert!(replaceable(&d.join("missing")));
        std::fs::create_dir(d.join("empty")).unwrap();
        assert!(replaceable(&d.join("empty")));
        assert!(!replaceable(&d.join("a")));
    }
}
