//! `deploy restore`: every database the replica's manifest lists (as of `--at`) downloaded into
//! a scratch directory in `.deploy/` with `litestream restore`, several at once, then put into
//! `shared/` by a move of the swap (or, with nothing live, renamed in).
//!
//! The list is downloaded together with the databases this server replicated last (its own
//! manifest): on a server that is restored over, or lost its data, that is the replica's list,
//! and the databases' download does not wait for the list's. What the replica does not list is
//! dropped unplaced; what it lists besides is downloaded next.
//!
//! ```text
//! .deploy/.restore-<pid>/litestream.yml    Litestream's config for the downloads
//! .deploy/.restore-<pid>/manifest.db       the replica's list
//! .deploy/.restore-<pid>/fetched/<rel>     each download
//! .deploy/.restore-<pid>/data/<rel>        what the replica lists and had: what goes in
//! .deploy/.restore-<pid>/old/              what the files put in replace (gone with the directory)
//! ```

use crate::config::Replicate;
use crate::node::data::Data;
use crate::node::replicate::{
    litestream_bin, restore_args, run_restore, shown_url, MANIFEST_REPLICA,
};
use crate::node::request::RestoreRequest;
use crate::node::shared_path::SharedRel;
use crate::node::Node;
use crate::sys::{fsx, systemd::Systemd};
use anyhow::{bail, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most this many `litestream restore` processes at once: each one's start and round trips
/// overlap the others', and a server with many databases is not swamped.
const DOWNLOADS_AT_ONCE: usize = 4;

/// One `litestream restore`: the database (its path in Litestream's config) into `out`.
struct Download {
    db: PathBuf,
    out: PathBuf,
}

/// What a download gave: whether the replica had the database, and how long it took.
struct Fetched {
    got: bool,
    took: Duration,
}

/// Runs every download (its directory made first), at most [`DOWNLOADS_AT_ONCE`] at once;
/// each one's result, in order.
fn fetch(
    config: &Path,
    jobs: &[Download],
    at: Option<&str>,
    env: &[(String, String)],
) -> Result<Vec<Result<Fetched>>> {
    let bin = litestream_bin()?;
    for job in jobs {
        std::fs::create_dir_all(job.out.parent().expect("a parent"))?;
    }
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<Fetched>>>> =
        jobs.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..DOWNLOADS_AT_ONCE.min(jobs.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(job) = jobs.get(i) else { break };
                let t = Instant::now();
                let r = run_restore(
                    &bin,
                    restore_args(config, &job.db, &job.out, at),
                    env,
                    &job.out,
                )
                .map(|got| Fetched {
                    got,
                    took: t.elapsed(),
                });
                *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    Ok(results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("every job ran")
        })
        .collect())
}

/// When the parts of a restore's databases' span began and ended: from the first
/// `litestream restore` to the last download, then the placing (the files renamed in).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub first: Instant,
    pub downloaded: Instant,
    pub placing: Instant,
    pub placed: Instant,
}

/// A restore's span in milliseconds, by part (the fields of its `done` event).
#[derive(Debug, PartialEq, Serialize)]
pub(crate) struct SpanParts {
    /// The databases' span: from the first `litestream restore` to the last file in place.
    pub databases_ms: u64,
    /// The downloads: the list of databases and every database (several at once).
    pub download_ms: u64,
    /// Between the downloads and the placing: the fence, the app's stop (behind the gap or the
    /// hold), the snapshot of what is replaced and Litestream's stop.
    pub stop_ms: u64,
    /// The placing: the downloaded files renamed in, their directories synced.
    pub place_ms: u64,
    /// The databases' own time, what `litestream restore -o` alone is compared with: the
    /// downloads and the placing.
    pub databases_own_ms: u64,
}

impl Span {
    /// Pure.
    pub fn parts(&self) -> SpanParts {
        let ms = |a: Instant, b: Instant| b.saturating_duration_since(a).as_millis() as u64;
        let (download_ms, place_ms) = (
            ms(self.first, self.downloaded),
            ms(self.placing, self.placed),
        );
        SpanParts {
            databases_ms: ms(self.first, self.placed),
            download_ms,
            stop_ms: ms(self.downloaded, self.placing),
            place_ms,
            databases_own_ms: download_ms + place_ms,
        }
    }
}

/// What the downloads left in `data/`, ready to go in.
struct Downloaded {
    restored: Vec<SharedRel>,
    /// Each `litestream restore`'s own time, in ms, by what it downloaded.
    took: std::collections::BTreeMap<String, u64>,
    /// A database the replica lists has data in shared/ already.
    replaces: bool,
    first: Instant,
    done: Instant,
}

impl Node<'_> {
    /// `deploy restore`: every database the replica's manifest lists (as of `--at`) into
    /// shared/. Refuses over data unless `--overwrite`, and then keeps a snapshot of what it
    /// replaces first; the app and Litestream are stopped meanwhile and started again.
    pub fn restore(&self, req: &RestoreRequest) -> Result<()> {
        let r = self.config.replicate.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "deploy restore reads the replica of `replicate:`, which this config lacks"
            )
        })?;
        litestream_bin()?;
        let _lock = self.lock(&format!("deploy restore {}", self.env_name))?;
        crate::signals::defer();
        if let Some(what) = self.swap_report()? {
            bail!(
                "{what}: settle it first (`deploy status {}`)",
                self.env_name
            );
        }
        let env = self.replication().litestream_env(req.secrets.as_deref())?;
        self.data().remove_stale_work();
        let work = self
            .layout
            .meta()
            .join(format!(".restore-{}", std::process::id()));
        fsx::ensure_private_dir(&work)?;
        let result = self.restore_into(r, req, &env, &work);
        let _ = std::fs::remove_dir_all(&work);
        result
    }

    fn restore_into(
        &self,
        r: &Replicate,
        req: &RestoreRequest,
        env: &[(String, String)],
        work: &Path,
    ) -> Result<()> {
        let at = match &req.at {
            Some(t) => Some(crate::node::replicate::point_in_time(
                t,
                std::time::SystemTime::now(),
            )?),
            None => None,
        };
        let at = at.as_deref();
        let data = self.data();
        let got = data.download(r, req, env, work, at)?;
        let _fence = self.close_fence(&format!("deploy restore {}", self.env_name), req.writers)?;
        self.placing.set(None);
        match self.current()? {
            // A move of the swap: the live release stopped (Traefik's gap, the socket's hold),
            // what it replaces kept, the databases in, started, its health checked; journaled,
            // so a process that dies is put right like a release's.
            Some(live) => {
                let systemd = Systemd::connect()?;
                // What the server needs to put this move right by itself, as a release has.
                self.install_recovery(&systemd)?;
                let mut state = self.load_state()?;
                let mv = crate::node::swap::Move::restore(&live, work.join("data"), req.overwrite);
                self.publish(
                    &systemd,
                    &mut state,
                    &mv,
                    crate::node::request::Protection::Required,
                )?;
            }
            // Nothing is live (a new server): no app to stop, the files go in place.
            None => data.put_restored(work, got.replaces)?,
        }
        let total_ms = got.first.elapsed().as_millis() as u64;
        let parts = self.placing.get().map(|(placing, placed)| {
            Span {
                first: got.first,
                downloaded: got.done,
                placing,
                placed,
            }
            .parts()
        });
        data.report_restore(r, &got, at, parts, total_ms)
    }
}

impl Data<'_> {
    /// The scratch directories of restores whose process died: under the app's lock, with no
    /// swap unsettled, none of them is anyone's.
    fn remove_stale_work(&self) {
        let Ok(entries) = std::fs::read_dir(self.layout.meta()) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(".restore-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// The line that ends a restore, with its span's parts.
    fn report_restore(
        &self,
        r: &Replicate,
        got: &Downloaded,
        at: Option<&str>,
        parts: Option<SpanParts>,
        total_ms: u64,
    ) -> Result<()> {
        let when = at.map(|t| format!(" as of {t}")).unwrap_or_default();
        let times = match &parts {
            Some(p) => format!(
                "the databases' own {} ms: downloads {} ms, placing {} ms; with the app's stop \
                 between them {} ms from the first download to the last file in place; \
                 {total_ms} ms in all",
                p.databases_own_ms, p.download_ms, p.place_ms, p.databases_ms
            ),
            None => format!("{total_ms} ms in all"),
        };
        let next = if self.current()?.is_some() {
            "the app runs on them".to_string()
        } else {
            format!("now release: `deploy release VERSION {}`", self.env_name)
        };
        let mut facts = serde_json::json!({
            "action": "restore",
            "databases": got.restored.iter().map(SharedRel::to_string).collect::<Vec<_>>(),
            "downloads_ms": got.took,
            "restore_ms": total_ms,
        });
        if let (Some(p), Some(f)) = (&parts, facts.as_object_mut()) {
            if let Ok(serde_json::Value::Object(p)) = serde_json::to_value(p) {
                f.extend(p);
            }
        }
        self.ui.done(
            &format!(
                "restored {} database(s) of {} on {}{when} from {} ({times}); {next}",
                got.restored.len(),
                self.config.app,
                self.env_name,
                shown_url(&r.url),
            ),
            facts,
        );
        Ok(())
    }

    /// The replica's list and every database it lists, downloaded into `work` (its `data/`
    /// holds what goes in); refuses over data without `--overwrite`.
    fn download(
        &self,
        r: &Replicate,
        req: &RestoreRequest,
        env: &[(String, String)],
        work: &Path,
        at: Option<&str>,
    ) -> Result<Downloaded> {
        let repl = self.replication();
        let (shown, shared) = (shown_url(&r.url), self.layout.shared());
        let when = at.map(|t| format!(" as of {t}")).unwrap_or_default();
        let guess = self.guess(req.overwrite);
        let config = work.join("litestream.yml");
        repl.write_litestream_config(r, &config, &guess)?;
        let (fetched, listed) = (work.join("fetched"), work.join("manifest.db"));
        let manifest = Download {
            db: self.layout.meta().join(crate::node::replicate::MANIFEST),
            out: listed.clone(),
        };
        let jobs: Vec<Download> = std::iter::once(manifest)
            .chain(guess.iter().map(|rel| download_of(&shared, &fetched, rel)))
            .collect();
        let label = format!(
            "Downloading the list of databases at {shown}{when}{}",
            match guess.len() {
                0 => String::new(),
                n => format!(", and the {n} database(s) it had"),
            }
        );
        let first = Instant::now();
        // The step fails with the list's download; a guess's is judged once the list is read.
        let (list, results) = self.ui.step(&label, || {
            let mut all = fetch(&config, &jobs, at, env)?;
            let list = all.remove(0)?;
            Ok((list, all))
        })?;
        let mut took = std::collections::BTreeMap::new();
        took.insert(MANIFEST_REPLICA.to_string(), list.took.as_millis() as u64);
        let rels = repl.replica_list(r, list.got, &listed, at)?;
        self.refuse_over_data(&rels, req.overwrite)?;
        let mut fetched_of: Vec<(SharedRel, Result<Fetched>)> =
            guess.into_iter().zip(results).collect();
        let more: Vec<SharedRel> = rels
            .iter()
            .filter(|rel| !fetched_of.iter().any(|(g, _)| g == *rel))
            .cloned()
            .collect();
        if !more.is_empty() {
            repl.write_litestream_config(r, &config, &rels)?;
            let jobs: Vec<Download> = more
                .iter()
                .map(|rel| download_of(&shared, &fetched, rel))
                .collect();
            let label = format!("Downloading the {} other database(s) it lists", more.len());
            let results: Vec<Fetched> = self.ui.step(&label, || {
                fetch(&config, &jobs, at, env)?.into_iter().collect()
            })?;
            fetched_of.extend(more.into_iter().zip(results.into_iter().map(Ok)));
        }
        for (rel, f) in fetched_of
            .iter()
            .filter_map(|(r, f)| Some(r).zip(f.as_ref().ok()))
        {
            took.insert(rel.to_string(), f.took.as_millis() as u64);
        }
        let restored = self.keep_listed(&rels, fetched_of, work, &when)?;
        Ok(Downloaded {
            took,
            replaces: rels
                .iter()
                .any(|rel| crate::node::snapshot::has_data(&shared.join(rel.as_str()))),
            restored,
            first,
            done: Instant::now(),
        })
    }

    /// What is downloaded while the replica's list is: the databases this server replicated
    /// last, unless a restore onto them would be refused anyway (data there, no `--overwrite`).
    fn guess(&self, overwrite: bool) -> Vec<SharedRel> {
        let shared = self.layout.shared();
        let last = self.replication().replicated_last();
        let refused = !overwrite
            && last
                .iter()
                .any(|rel| crate::node::snapshot::has_data(&shared.join(rel.as_str())));
        if refused {
            Vec::new()
        } else {
            last
        }
    }

    /// Every path the replica lists checked where it goes, and none holding data unless
    /// `overwrite` (decided again with the app stopped).
    fn refuse_over_data(&self, rels: &[SharedRel], overwrite: bool) -> Result<()> {
        let shared = self.layout.shared();
        for rel in rels {
            rel.check_target(&shared)
                .map_err(|e| crate::exit::with(crate::exit::Code::Config, e))?;
        }
        let present: Vec<&str> = rels
            .iter()
            .filter(|rel| crate::node::snapshot::has_data(&shared.join(rel.as_str())))
            .map(SharedRel::as_str)
            .collect();
        if !present.is_empty() && !overwrite {
            bail!(
                "{} has data already ({}): nothing was changed. Pass --overwrite to restore over \
                 it (a snapshot of what it replaces is kept first)",
                self.env_name,
                present.join(", ")
            );
        }
        Ok(())
    }

    /// What the replica lists and had, moved from `fetched/` into `data/` (what goes in); a
    /// download of a database it does not list is left behind. The first failed download of a
    /// listed one stops the restore.
    fn keep_listed(
        &self,
        rels: &[SharedRel],
        fetched: Vec<(SharedRel, Result<Fetched>)>,
        work: &Path,
        when: &str,
    ) -> Result<Vec<SharedRel>> {
        let mut restored = Vec::new();
        for (rel, result) in fetched {
            if !rels.contains(&rel) {
                continue;
            }
            let f = result?;
            if !f.got {
                self.ui
                    .info(&format!("   {rel}: the replica has nothing of it{when}"));
                continue;
            }
            let (from, to) = (
                work.join("fetched").join(rel.as_str()),
                work.join("data").join(rel.as_str()),
            );
            std::fs::create_dir_all(to.parent().expect("a parent"))?;
            std::fs::rename(&from, &to)?;
            let size = std::fs::metadata(&to).map(|m| m.len()).unwrap_or(0);
            self.ui.info(&format!(
                "   {rel}: {} KiB in {}",
                size.div_ceil(1024),
                crate::ui::fmt_duration(f.took)
            ));
            restored.push(rel);
        }
        restored.sort();
        Ok(restored)
    }

    /// Puts restored databases in place where nothing is live (a new server): Litestream
    /// stopped, a snapshot of what is replaced kept (`.deploy/replaced/<stamp>`), the files
    /// renamed in; then Litestream started again.
    fn put_restored(&self, work: &Path, replaces: bool) -> Result<()> {
        let repl = self.replication();
        let systemd = Systemd::connect()?;
        repl.stop(&systemd)?;
        if replaces {
            let stamp = crate::node::snapshot::stamp();
            let kept = self.layout.meta().join("replaced");
            fsx::ensure_private_dir(&kept)?;
            let kept = kept.join(&stamp);
            let mut taken = self.ui.step("Snapshot of the data it replaces", || {
                crate::node::snapshot::take(
                    &self.layout.shared(),
                    &kept,
                    "before-restore",
                    crate::node::snapshot::Kind::BeforeRestore,
                    crate::node::snapshot::How::in_gap(),
                )
            })?;
            taken.remove_old();
            self.ui.info(&format!("   kept in {}", taken.dir.display()));
        }
        self.ui.step("Putting the replica's databases in", || {
            self.place_downloaded(&work.join("data"))
        })?;
        // Nothing runs to be healthy: the files are in, what older restores set aside may go.
        self.prune_replaced();
        repl.sync(&systemd)
    }

    /// Renames each database downloaded into `data` (at its path under shared/) over its place
    /// in shared/, with its old `-wal`, `-shm`, `-journal` and Litestream's local state gone:
    /// the fastest way in (no copy), for the app and Litestream stopped. What is replaced is
    /// moved into `old/` beside `data` (freed with the scratch directory, after the gap) where
    /// it can be, else removed. Each directory written is synced once, after its last file (the
    /// files themselves were synced by Litestream). Never through a symbolic link (one at a
    /// database is replaced, and said). Remembers when the placing began and ended.
    pub(crate) fn place_downloaded(&self, data: &Path) -> Result<()> {
        let began = Instant::now();
        let shared = self.layout.shared();
        let rels: Vec<String> = crate::node::snapshot::databases(data)?
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let rels = crate::node::shared_path::parse_all(&rels, "the downloaded data")?;
        // Every place checked before any is written.
        for rel in &rels {
            rel.check_target(&shared)?;
        }
        let old = data.with_file_name("old");
        let mut dirs = std::collections::BTreeSet::new();
        for (n, rel) in rels.iter().enumerate() {
            let (live, links) = rel.for_writing(&shared)?;
            if !links.is_empty() {
                self.ui.warn(&format!(
                    "{rel}: removed the symbolic link(s) {} and put the restored file there (what \
                     they pointed at is untouched)",
                    links
                        .iter()
                        .map(|l| l.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            // A stale `-journal` would be rolled back into the new file, a `-wal` replayed.
            set_aside(&live, &old.join(n.to_string()))?;
            std::fs::rename(data.join(rel.as_str()), &live).map_err(|e| {
                anyhow::anyhow!(
                    "cannot rename the restored {rel} into {}: {e}",
                    live.display()
                )
            })?;
            dirs.insert(live.parent().expect("a directory").to_path_buf());
        }
        for dir in dirs {
            fsx::sync_dir(&dir)?;
        }
        self.placing.set(Some((began, Instant::now())));
        Ok(())
    }
}

/// The download of `rel` into `fetched/`.
fn download_of(shared: &Path, fetched: &Path, rel: &SharedRel) -> Download {
    Download {
        db: shared.join(rel.as_str()),
        out: fetched.join(rel.as_str()),
    }
}

/// What SQLite and Litestream keep beside the database `live`, and `live` itself, out of the
/// way of the file that replaces it: moved into `aside` (the same file system: a rename, the
/// database a second link) where that works, else removed. The caller syncs `live`'s directory.
fn set_aside(live: &Path, aside: &Path) -> Result<()> {
    let name = live
        .file_name()
        .expect("a file")
        .to_string_lossy()
        .into_owned();
    let beside: Vec<PathBuf> = ["-wal", "-shm", "-journal"]
        .iter()
        .map(|s| live.with_file_name(format!("{name}{s}")))
        .chain([live.with_file_name(format!(".{name}-litestream"))])
        .collect();
    if std::fs::symlink_metadata(live).is_err() && beside.iter().all(|p| !p.exists()) {
        return Ok(());
    }
    let moved = std::fs::create_dir_all(aside).is_ok();
    for p in &beside {
        let to = aside.join(p.file_name().expect("a name"));
        if !(moved && std::fs::rename(p, &to).is_ok()) {
            let _ = std::fs::remove_file(p);
            let _ = std::fs::remove_dir_all(p);
        }
        if std::fs::symlink_metadata(p).is_ok() {
            bail!(
                "cannot remove {} (it would be replayed into the restored database)",
                p.display()
            );
        }
    }
    // The database itself: a second link, so the rename over it frees nothing in the gap.
    if moved {
        let _ = std::fs::hard_link(live, aside.join(&name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_span_splits_into_downloads_stop_and_placing() {
        let t = Instant::now();
        let at = |ms| t + Duration::from_millis(ms);
        let span = Span {
            first: t,
            downloaded: at(300),
            placing: at(900),
            placed: at(910),
        };
        assert_eq!(
            span.parts(),
            SpanParts {
                databases_ms: 910,
                download_ms: 300,
                stop_ms: 600,
                place_ms: 10,
                databases_own_ms: 310,
            }
        );
    }

    #[test]
    fn litestream_restore_is_asked_for_one_database_into_its_place() {
        let args = restore_args(
            Path::new("/w/litestream.yml"),
            Path::new("/srv/shop/shared/data/app.db"),
            Path::new("/w/fetched/data/app.db"),
            Some("2026-11-24T06:00:00Z"),
        );
        assert_eq!(
            args.join(" "),
            "restore -config /w/litestream.yml -no-expand-env -if-replica-exists -o \
             /w/fetched/data/app.db -timestamp 2026-11-24T06:00:00Z /srv/shop/shared/data/app.db"
        );
    }

    #[test]
    fn what_a_restored_database_replaces_is_set_aside_whole() {
        let dir = std::env::temp_dir().join(format!("deploy-aside-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let live = dir.join("shared/app.db");
        std::fs::create_dir_all(dir.join("shared/.app.db-litestream/ltx")).unwrap();
        for (name, text) in [
            ("app.db", "db"),
            ("app.db-wal", "wal"),
            ("app.db-shm", "shm"),
        ] {
            std::fs::write(dir.join("shared").join(name), text).unwrap();
        }
        set_aside(&live, &dir.join("old/0")).unwrap();
        let left: Vec<String> = std::fs::read_dir(dir.join("shared"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        // The database stays until the rename over it; nothing else of it.
        assert_eq!(left, ["app.db"]);
        assert_eq!(
            std::fs::read_to_string(dir.join("old/0/app.db-wal")).unwrap(),
            "wal"
        );
        assert!(dir.join("old/0/.app.db-litestream/ltx").is_dir());
        assert_eq!(
            std::fs::read_to_string(dir.join("old/0/app.db")).unwrap(),
            "db"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
