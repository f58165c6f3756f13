//! File-system steps that must survive a crash: write to a temp name, fsync, rename, fsync the
//! directory. `current` is switched by creating a new symlink under a temp name and renaming it
//! over the old one (rename(2) is atomic), never by `ln -sfn` (unlink + symlink). Also `~/`
//! expanded in a configured path.

use anyhow::{bail, Context, Result};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// fsyncs a directory, so that renames and creations in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot fsync directory {}", dir.display()))
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `contents` to `path` atomically with the given mode.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    write_through(&temp_name(path), path, contents, mode)
}

/// As [`write_atomic`], its temporary file in `staging` (a directory on the same file system)
/// instead of beside `path`: for a directory that something watches (Traefik's file provider
/// reloads on any event in its directory, and the temporary file's own events would spend the
/// throttle window the rename needs, delaying it by up to that window). `staging` is made
/// readable by all, as the watched directory is: a reader that walks it must not fail on it.
pub fn write_atomic_staged(path: &Path, staging: &Path, contents: &[u8], mode: u32) -> Result<()> {
    ensure_dir(staging, 0o755)?;
    let tmp = staging.join(temp_name(path).file_name().expect("a file name"));
    write_through(&tmp, path, contents, mode)
}

/// Writes `contents` to `tmp`, fsyncs it and renames it to `path`, whose directory is fsynced.
fn write_through(tmp: &Path, path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let tmp = tmp.to_path_buf();
    let result = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    sync_dir(parent(path))
}

/// Opens a lock file for reading and writing, made 0600 when missing, its contents kept (a
/// holder's words in it are read by the next one).
pub fn open_lock_file(path: &Path) -> Result<fs::File> {
    OpenOptions::new()
        .mode(0o600)
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))
}

/// Runs `f` holding an exclusive flock on the file `lock` (made 0600 when missing): a short
/// critical section between processes (never across a build). The kernel lets go of it if the
/// process dies.
pub fn with_lock<T>(lock: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let file = open_lock_file(lock)?;
    file.lock()
        .with_context(|| format!("cannot lock {}", lock.display()))?;
    let out = f();
    drop(file);
    out
}

/// Points the symlink `link` at `target` atomically (symlink under a temp name + rename).
pub fn replace_symlink(link: &Path, target: &Path) -> Result<()> {
    let tmp = temp_name(link);
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .with_context(|| format!("cannot create symlink {}", tmp.display()))?;
    if let Err(e) = fs::rename(&tmp, link) {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot switch {}", link.display()));
    }
    sync_dir(parent(link))
}

/// Makes files and directories durable at once, a thread each: `data_only` files by
/// `fdatasync` (their content and size, not their times), the others and the directories by
/// `fsync`. Concurrent syncs of one file system share its journal's commits (on ext4), where
/// one after the other each waits for its own.
pub fn sync_together(data_only: &[PathBuf], whole: &[PathBuf]) -> Result<()> {
    let sync = |p: &PathBuf, data: bool| {
        File::open(p)
            .and_then(|f| if data { f.sync_data() } else { f.sync_all() })
            .with_context(|| format!("cannot fsync {}", p.display()))
    };
    std::thread::scope(|s| {
        let mut all: Vec<_> = data_only
            .iter()
            .map(|p| s.spawn(move || sync(p, true)))
            .collect();
        all.extend(whole.iter().map(|p| s.spawn(move || sync(p, false))));
        all.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a sync panicked")))
            })
            .collect::<Result<Vec<()>>>()
            .map(|_| ())
    })
}

/// Renames a file or directory and makes the rename durable.
pub fn rename_durable(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to)
        .with_context(|| format!("cannot rename {} to {}", from.display(), to.display()))?;
    sync_dir(parent(to))
}

/// Exchanges two paths of one file system in one step (`renameat2` with `RENAME_EXCHANGE`):
/// at every moment each name holds one of the two, whole. Durable.
pub fn exchange(a: &Path, b: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes());
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: two NUL-terminated paths that live over the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot exchange {} and {}", a.display(), b.display()));
    }
    sync_dir(parent(a))?;
    if parent(a) != parent(b) {
        sync_dir(parent(b))?;
    }
    Ok(())
}

/// Creates a directory (and parents) with the given mode if it does not exist.
pub fn ensure_dir(dir: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    sync_dir(parent(dir))
}

/// Removes a file (if it is there), durably.
pub fn remove_durable(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(parent(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

/// A directory only its owner may enter (`.deploy/` and what is in it): made 0700, or set to
/// 0700 when an earlier deploy made it wider.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    ensure_dir(dir, 0o700)?;
    let mode = fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private", dir.display()))?;
    }
    Ok(())
}

/// `dst` made a reflink clone of `src` (FICLONE: the same blocks, copied only when one side is
/// written later), created 0600. An error where the file system cannot (ext4: EOPNOTSUPP or
/// EINVAL; another mount: EXDEV); nothing is left at `dst` then.
pub fn clone_file(src: &Path, dst: &Path) -> std::io::Result<()> {
    clone_from(&File::open(src)?, dst)
}

/// [`clone_file`] from a file already open: for a database whose locks this process holds
/// (closing any descriptor of a file drops every POSIX lock the process has on it).
pub fn clone_from(from: &File, dst: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let to = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dst)?;
    // SAFETY: both descriptors are open for the call; FICLONE reads the source's descriptor.
    let r = unsafe { libc::ioctl(to.as_raw_fd(), libc::FICLONE as _, from.as_raw_fd()) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        drop(to);
        let _ = fs::remove_file(dst);
        return Err(e);
    }
    Ok(())
}

/// Expands a leading `~` with the given home directory.
pub fn expand_home(path: &str, home: &Path) -> Result<PathBuf> {
    if path == "~" {
        return Ok(home.to_path_buf());
    }
    if let Some(rest) = path.strip_prefix("~/") {
        return Ok(home.join(rest.trim_end_matches('/')));
    }
    if !path.starts_with('/') {
        bail!("`{path}` must be absolute or start with `~/`");
    }
    Ok(PathBuf::from(path))
}

/// What deploy keeps for the node user, not for one app: `~/.local/share/deploy`.
pub fn deploy_data(home: &Path) -> PathBuf {
    home.join(".local/share/deploy")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("deploy-fsx-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_staged_write_puts_nothing_in_the_watched_directory_but_the_file() {
        let d = tmpdir("staged");
        let watched = d.join("dynamic");
        fs::create_dir_all(&watched).unwrap();
        let staging = watched.join(".staging");
        let path = watched.join("app.yaml");
        write_atomic_staged(&path, &staging, b"one", 0o644).unwrap();
        write_atomic_staged(&path, &staging, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mut names: Vec<String> = fs::read_dir(&watched)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [".staging", "app.yaml"]);
        assert_eq!(fs::read_dir(&staging).unwrap().count(), 0);
        let mode = fs::metadata(&staging).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o755,
            "readable by a Traefik that walks the directory"
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let d = tmpdir("write");
        let f = d.join("state.json");
        write_atomic(&f, b"one", 0o600).unwrap();
        write_atomic(&f, b"two", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&f).unwrap(), "two");
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1, "no temp file left");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn symlink_is_replaced_in_place() {
        let d = tmpdir("link");
        let link = d.join("current");
        replace_symlink(&link, Path::new("releases/v1")).unwrap();
        replace_symlink(&link, Path::new("releases/v2")).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("releases/v2"));
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn home_expansion() {
        let h = Path::new("/home/u");
        assert_eq!(
            expand_home("~/web/a", h).unwrap(),
            Path::new("/home/u/web/a")
        );
        assert_eq!(expand_home("~", h).unwrap(), Path::new("/home/u"));
        assert_eq!(expand_home("/srv/a", h).unwrap(), Path::new("/srv/a"));
        assert!(expand_home("web/a", h).is_err());
    }
}
