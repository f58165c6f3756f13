//! The one layer an assembled image adds to its base: what each `COPY` puts where, as `podman
//! build` would, with every directory above it (the base's own metadata kept), read from the
//! build context. What the base holds at those places is asked beforehand ([`probe_paths`]).

use super::recipe::{Recipe, Refusal};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What the base image has at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InBase {
    Missing,
    /// A directory, with its mode bits, owner and modification time.
    Dir(Meta),
    /// Anything else (a file, a symbolic link): a `COPY` there is left to `podman build`.
    Other,
}

/// The metadata a layer's entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
}

/// An entry of the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir(Meta),
    /// A file of the context, copied with its mode and time, owned by root.
    File(PathBuf, Meta, Inode),
    /// A symbolic link, its target as it is.
    Link(PathBuf, Meta),
}

/// Which file of the release directories a file entry is, and its size: a release's unchanged
/// files are hard links to the last release's (`rsync --link-dest`), so the same inode is the
/// same content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inode {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
}

/// The layer: entries by absolute path without its leading `/`, parents first.
pub type Layer = BTreeMap<String, Entry>;

fn refuse<T>(why: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(why.into()))
}

/// The paths whose kind in the base the layer depends on: each destination, where a file of
/// it would go, each `WORKDIR`, and every directory above them. Pure.
pub fn probe_paths(r: &Recipe) -> Vec<String> {
    let mut out = Vec::new();
    for c in &r.copies {
        let dest = c.dest.trim_end_matches('/');
        for s in &c.sources {
            let name = s.rsplit('/').next().unwrap_or_default();
            if !name.is_empty() {
                out.push(format!("{dest}/{name}"));
            }
        }
        out.push(dest.to_string());
    }
    out.extend(r.workdirs.iter().cloned());
    let mut all: Vec<String> = out.iter().flat_map(|p| with_ancestors(p)).collect();
    all.sort();
    all.dedup();
    all
}

/// `/a/b/c` -> `/a`, `/a/b`, `/a/b/c` (the root left out).
pub(super) fn with_ancestors(p: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = String::new();
    for part in p.split('/').filter(|s| !s.is_empty()) {
        at.push('/');
        at.push_str(part);
        out.push(at.clone());
    }
    out
}

/// Builds the layer of `recipe` from the context `ctx`, without the paths `ignored`; `base`
/// answers for the paths [`probe_paths`] named (all missing for `FROM scratch`).
pub fn plan(
    r: &Recipe,
    ctx: &Path,
    ignored: &[String],
    base: &HashMap<String, InBase>,
    now: u64,
) -> Result<Layer, Refusal> {
    let mut b = Builder {
        layer: Layer::new(),
        base,
        ignored,
        now,
    };
    for c in &r.copies {
        if r.base.is_some() && c.dest.trim_end_matches('/').is_empty() {
            return refuse("a COPY into / on a base image");
        }
        let many = c.sources.len() > 1;
        for s in &c.sources {
            b.copy(ctx, s, &c.dest, many)?;
        }
    }
    for w in &r.workdirs {
        b.dir(w)?;
    }
    Ok(b.layer)
}

struct Builder<'a> {
    layer: Layer,
    base: &'a HashMap<String, InBase>,
    ignored: &'a [String],
    now: u64,
}

impl Builder<'_> {
    fn is_ignored(&self, rel: &str) -> bool {
        self.ignored.iter().any(|i| {
            rel == i
                || rel
                    .strip_prefix(i.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        })
    }

    fn in_base(&self, abs: &str) -> InBase {
        // Not asked: treated as something else, so that it is never guessed at.
        self.base.get(abs).copied().unwrap_or(InBase::Other)
    }

    /// Makes sure `abs` (absolute) is a directory of the layer, and every one above it.
    fn dir(&mut self, abs: &str) -> Result<(), Refusal> {
        for a in with_ancestors(abs) {
            let key = a[1..].to_string();
            match self.layer.get(&key) {
                Some(Entry::Dir(_)) => continue,
                Some(_) => return refuse(format!("a file where {a} must be a directory")),
                None => {}
            }
            let meta = match self.in_base(&a) {
                InBase::Dir(m) => m,
                InBase::Missing => Meta {
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    mtime: self.now,
                },
                InBase::Other => return refuse(format!("{a} is not a directory in the base")),
            };
            self.layer.insert(key, Entry::Dir(meta));
        }
        Ok(())
    }

    fn is_dir(&self, abs: &str) -> bool {
        matches!(self.layer.get(&abs[1..]), Some(Entry::Dir(_)))
            || matches!(self.base.get(abs), Some(InBase::Dir(_)))
    }

    fn copy(&mut self, ctx: &Path, src: &str, dest: &str, many: bool) -> Result<(), Refusal> {
        if self.is_ignored(src) {
            return refuse(format!("the COPY source {src} is ignored"));
        }
        // No link on the way: the context is read as it is, never through a link out of it.
        let mut path = ctx.to_path_buf();
        for part in src.split('/').filter(|p| !p.is_empty()) {
            path.push(part);
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                return refuse(format!("the COPY source {src} goes through a link"));
            }
        }
        let meta = std::fs::symlink_metadata(&path)
            .or_else(|_| refuse(format!("no COPY source {src}")))?;
        let to = dest.trim_end_matches('/');
        if meta.is_dir() {
            self.dir(if to.is_empty() { "/" } else { to })?;
            return self.contents(&path, src, to);
        }
        if !meta.is_file() {
            return refuse(format!(
                "the COPY source {src} is not a file or a directory"
            ));
        }
        let name = src.rsplit('/').next().unwrap_or(src);
        let target = if dest.ends_with('/') || many || self.is_dir(to) {
            format!("{to}/{name}")
        } else {
            to.to_string()
        };
        self.put(&target, Entry::File(path, file_meta(&meta), inode(&meta)))
    }

    /// The entries under the directory `path` (the context's `src`) go under `to`.
    fn contents(&mut self, path: &Path, src: &str, to: &str) -> Result<(), Refusal> {
        let mut walk = walkdir::WalkDir::new(path)
            .min_depth(1)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter();
        while let Some(e) = walk.next() {
            let e = e.or_else(|e| refuse(format!("cannot read the context: {e}")))?;
            let rel = e.path().strip_prefix(path).unwrap_or(e.path());
            let rel = rel
                .to_str()
                .ok_or_else(|| Refusal("a file name that is not UTF-8".into()))?;
            let in_ctx = if src.is_empty() {
                rel.to_string()
            } else {
                format!("{src}/{rel}")
            };
            if self.is_ignored(&in_ctx) {
                if e.file_type().is_dir() {
                    walk.skip_current_dir();
                }
                continue;
            }
            let meta = e
                .metadata()
                .or_else(|e| refuse(format!("cannot read {rel}: {e}")))?;
            let abs = format!("{to}/{rel}");
            let entry = if meta.is_dir() {
                Entry::Dir(file_meta(&meta))
            } else if meta.is_file() {
                Entry::File(e.path().to_path_buf(), file_meta(&meta), inode(&meta))
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(e.path())
                    .or_else(|e| refuse(format!("cannot read the link {rel}: {e}")))?;
                Entry::Link(target, file_meta(&meta))
            } else {
                return refuse(format!("{rel} is not a file, a directory or a link"));
            };
            self.put(&abs, entry)?;
        }
        Ok(())
    }

    fn put(&mut self, abs: &str, entry: Entry) -> Result<(), Refusal> {
        if let Some((parent, _)) = abs.rsplit_once('/') {
            if !parent.is_empty() {
                self.dir(parent)?;
            }
        }
        // Over a link or a file of the base, `podman build` follows or replaces it: its own.
        if matches!(self.base.get(abs), Some(InBase::Other)) {
            return refuse(format!("{abs} is a link or a file in the base"));
        }
        let is_dir = |e: Option<&Entry>| matches!(e, Some(Entry::Dir(_)));
        if is_dir(self.layer.get(&abs[1..])) && !is_dir(Some(&entry)) {
            return refuse(format!("a file over the directory {abs}"));
        }
        self.layer.insert(abs[1..].to_string(), entry);
        Ok(())
    }
}

/// `podman build` makes a missing `WORKDIR` its user's: left to it when that user (the
/// recipe's, or the base's `base_user`) is not root. Pure.
pub fn workdirs_for_root(
    r: &Recipe,
    base_user: &str,
    base: &HashMap<String, InBase>,
) -> Result<(), Refusal> {
    let is_root = |u: &str| matches!(u.split(':').next(), Some("" | "root" | "0"));
    let recipes = r
        .settings
        .get("User")
        .and_then(|u| u.as_str())
        .unwrap_or("");
    let missing = r
        .workdirs
        .iter()
        .any(|w| !matches!(base.get(w), Some(InBase::Dir(_))));
    if missing && !(is_root(recipes) && is_root(base_user)) {
        return refuse("a WORKDIR to make for a user other than root");
    }
    Ok(())
}

/// A file's metadata as `COPY` keeps it: its mode bits and time, owned by root.
fn file_meta(m: &std::fs::Metadata) -> Meta {
    use std::os::unix::fs::MetadataExt;
    Meta {
        mode: m.mode() & 0o7777,
        uid: 0,
        gid: 0,
        mtime: m.mtime().max(0) as u64,
    }
}

fn inode(m: &std::fs::Metadata) -> Inode {
    use std::os::unix::fs::MetadataExt;
    Inode {
        dev: m.dev(),
        ino: m.ino(),
        size: m.len(),
    }
}

/// An entry as the image sees it, without its path: kind, mode, owner, and a file's size and
/// time or a link's target, as bytes (a directory deploy makes is stamped with the time it is
/// made, which is left out). Pure.
fn seen(e: &Entry) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = match e {
        Entry::Dir(m) => format!("d {:o} {} {}", m.mode, m.uid, m.gid),
        Entry::File(_, m, i) => {
            format!("f {:o} {} {} {} {}", m.mode, m.uid, m.gid, i.size, m.mtime)
        }
        Entry::Link(_, m) => format!("l {:o} ", m.mode),
    }
    .into_bytes();
    if let Entry::Link(target, _) = e {
        out.extend_from_slice(target.as_os_str().as_bytes());
    }
    out
}

/// What a layer made over the base `base_id` (`scratch` for none) holds, as a digest of the
/// base and of each entry's path, [`seen`] form and a file's inode, each field counted: what an
/// assembled image records (its label `deploy.files`), so that the next release can check that
/// the image of the last one is that base and what its release directory makes, file for
/// file. (The device is left out: it may change at a reboot, and the files cannot.) Pure.
pub fn fingerprint(base_id: &str, l: &Layer) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(base_id.as_bytes());
    for (path, e) in l {
        field(path.as_bytes());
        field(&seen(e));
        if let Entry::File(_, _, i) = e {
            field(&i.ino.to_le_bytes());
        }
    }
    format!("{:x}", h.finalize())
}

/// The layer that turns `old` into `new` on top of it: each entry that is new or differs (a
/// file by its inode: a changed file is a new one), with the directories above it as `new`
/// has them. `None` when an entry of `old` is gone (it would need a whiteout), when one changed
/// kind (a directory over a link would hide what the base has below it), or when the change is
/// more than half of `new`'s bytes (a layer of its own is then worth its copy). Pure.
pub fn delta(old: &Layer, new: &Layer) -> Option<Layer> {
    use std::mem::discriminant;
    if old.keys().any(|k| !new.contains_key(k)) {
        return None;
    }
    let size = |e: &Entry| match e {
        Entry::File(_, _, i) => i.size,
        _ => 0,
    };
    let mut out = Layer::new();
    let (mut changed, mut total) = (0u64, 0u64);
    for (path, e) in new {
        total += size(e);
        if let Some(o) = old.get(path) {
            if discriminant(o) != discriminant(e) {
                return None;
            }
            let same_file = match (o, e) {
                (Entry::File(_, _, x), Entry::File(_, _, y)) => x == y,
                _ => true,
            };
            if same_file && seen(o) == seen(e) {
                continue;
            }
        }
        changed += size(e);
        for a in with_ancestors(&format!("/{path}")) {
            if let Some(e) = new.get(&a[1..]) {
                out.insert(a[1..].to_string(), e.clone());
            }
        }
    }
    (changed.saturating_mul(2) <= total).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::super::recipe::parse;
    use super::*;

    fn context() -> tempdir::Dir {
        let d = tempdir::Dir::new();
        std::fs::write(d.0.join("Containerfile"), "x").unwrap();
        std::fs::write(d.0.join("app.py"), "print()").unwrap();
        std::fs::create_dir_all(d.0.join("assets/css")).unwrap();
        std::fs::write(d.0.join("assets/css/a.css"), "a").unwrap();
        std::fs::create_dir(d.0.join(".deploy")).unwrap();
        std::os::unix::fs::symlink("../../shared/data", d.0.join("data")).unwrap();
        d
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "deploy-layer-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::SeqCst)
                ));
                let _ = std::fs::remove_dir_all(&p);
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    /// Every path the recipe depends on, missing from the base (as for `FROM scratch`).
    fn missing(r: &Recipe) -> HashMap<String, InBase> {
        probe_paths(r)
            .into_iter()
            .map(|p| (p, InBase::Missing))
            .collect()
    }

    fn names(l: &Layer) -> Vec<&str> {
        l.keys().map(String::as_str).collect()
    }

    #[test]
    fn a_copy_of_the_context_leaves_out_what_is_ignored_and_keeps_the_bases_directories() {
        let ctx = context();
        let r = parse("FROM localhost/base\nCOPY . /srv/app\nWORKDIR /srv/app\n").unwrap();
        let srv = Meta {
            mode: 0o750,
            uid: 0,
            gid: 5,
            mtime: 7,
        };
        let base: HashMap<String, InBase> = probe_paths(&r)
            .into_iter()
            .map(|p| {
                let kind = if p == "/srv" {
                    InBase::Dir(srv)
                } else {
                    InBase::Missing
                };
                (p, kind)
            })
            .collect();
        let ignored = vec![".deploy".to_string(), "data".to_string()];
        let l = plan(&r, &ctx.0, &ignored, &base, 9).unwrap();
        assert_eq!(
            names(&l),
            [
                "srv",
                "srv/app",
                "srv/app/Containerfile",
                "srv/app/app.py",
                "srv/app/assets",
                "srv/app/assets/css",
                "srv/app/assets/css/a.css"
            ]
        );
        assert_eq!(l["srv"], Entry::Dir(srv), "the base's directory as it is");
        assert!(matches!(
            l["srv/app"],
            Entry::Dir(Meta {
                mode: 0o755,
                mtime: 9,
                ..
            })
        ));
    }

    #[test]
    fn a_file_goes_to_its_destination_or_into_a_directory() {
        let ctx = context();
        let r = parse(
            "FROM scratch\nCOPY app.py /app/main.py\nCOPY app.py /app/\nCOPY assets /app/assets\n",
        )
        .unwrap();
        let base = missing(&r);
        let l = plan(&r, &ctx.0, &[], &base, 0).unwrap();
        assert_eq!(
            names(&l),
            [
                "app",
                "app/app.py",
                "app/assets",
                "app/assets/css",
                "app/assets/css/a.css",
                "app/main.py"
            ]
        );
        let r = parse("FROM localhost/b\nCOPY app.py /opt\n").unwrap();
        let mut base = missing(&r);
        base.insert(
            "/opt".into(),
            InBase::Dir(Meta {
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime: 1,
            }),
        );
        assert!(plan(&r, &ctx.0, &[], &base, 0)
            .unwrap()
            .contains_key("opt/app.py"));
    }

    #[test]
    fn a_link_or_a_file_in_the_base_above_a_destination_is_left_to_podman() {
        let ctx = context();
        let r = parse("FROM localhost/b\nCOPY app.py /bin/app.py\n").unwrap();
        let base = probe_paths(&r)
            .into_iter()
            .map(|p| {
                let kind = if p == "/bin" {
                    InBase::Other
                } else {
                    InBase::Missing
                };
                (p, kind)
            })
            .collect();
        assert!(plan(&r, &ctx.0, &[], &base, 0).is_err());
        let r = parse("FROM localhost/b\nCOPY data /app/data\n").unwrap();
        let base = missing(&r);
        assert!(
            plan(&r, &ctx.0, &["data".into()], &base, 0).is_err(),
            "an ignored source"
        );
        assert!(
            plan(&r, &ctx.0, &[], &base, 0).is_err(),
            "a link as a source"
        );
        let r = parse("FROM localhost/b\nCOPY . /\n").unwrap();
        assert!(plan(&r, &ctx.0, &[], &HashMap::new(), 0).is_err());
    }

    #[test]
    fn a_delta_holds_what_changed_with_the_directories_above_and_refuses_a_removal() {
        let ctx = context();
        let r = parse("FROM scratch\nCOPY . /app\n").unwrap();
        let base = missing(&r);
        std::fs::write(ctx.0.join("big.bin"), vec![0u8; 4096]).unwrap();
        let old = plan(&r, &ctx.0, &[], &base, 1).unwrap();
        assert_eq!(
            fingerprint("scratch", &old),
            fingerprint("scratch", &plan(&r, &ctx.0, &[], &base, 2).unwrap())
        );
        // A new file in place of the old one (rsync writes a changed file anew).
        // (The old file lives on, as in the last release's directory: its inode is not reused.)
        let css = ctx.0.join("assets/css/a.css");
        let aside = tempdir::Dir::new();
        std::fs::rename(&css, aside.0.join("a.css")).unwrap();
        std::fs::write(&css, "b").unwrap();
        let new = plan(&r, &ctx.0, &[], &base, 2).unwrap();
        let d = delta(&old, &new).unwrap();
        assert_eq!(
            names(&d),
            [
                "app",
                "app/assets",
                "app/assets/css",
                "app/assets/css/a.css"
            ]
        );
        assert_ne!(
            fingerprint("scratch", &old),
            fingerprint("scratch", &new),
            "a file's time is in it"
        );
        assert_eq!(names(&delta(&new, &new).unwrap()), Vec::<&str>::new());
        std::fs::remove_file(ctx.0.join("app.py")).unwrap();
        assert_eq!(
            delta(&new, &plan(&r, &ctx.0, &[], &base, 3).unwrap()),
            None,
            "a removal"
        );
        let big = ctx.0.join("big.bin");
        std::fs::rename(&big, aside.0.join("big.bin")).unwrap();
        std::fs::write(&big, vec![1u8; 4096]).unwrap();
        let after = plan(&r, &ctx.0, &[], &base, 3).unwrap();
        let before_big = {
            let mut l = after.clone();
            if let Some(Entry::File(_, _, i)) = l.get_mut("app/big.bin") {
                i.ino += 1;
            }
            l
        };
        assert_eq!(
            delta(&before_big, &after),
            None,
            "most of the bytes changed"
        );
    }

    #[test]
    fn what_podman_build_would_do_otherwise_is_left_to_it() {
        let ctx = context();
        // A file where a copied directory was.
        std::fs::create_dir_all(ctx.0.join("b/assets")).unwrap();
        std::fs::remove_dir(ctx.0.join("b/assets")).unwrap();
        std::fs::write(ctx.0.join("b/assets"), "a file").unwrap();
        let r = parse("FROM scratch\nCOPY . /app\nCOPY b /app\n").unwrap();
        assert!(plan(&r, &ctx.0, &[], &missing(&r), 0).is_err());
        // A source through a link (out of the context).
        std::os::unix::fs::symlink("/etc", ctx.0.join("etclink")).unwrap();
        let r = parse("FROM scratch\nCOPY etclink/hostname /x\n").unwrap();
        assert!(plan(&r, &ctx.0, &[], &missing(&r), 0).is_err());
        // A WORKDIR to make for another user.
        let r = parse("FROM scratch\nUSER 1000\nWORKDIR /data\n").unwrap();
        assert!(workdirs_for_root(&r, "", &missing(&r)).is_err());
        let r = parse("FROM scratch\nUSER root:root\nWORKDIR /data\n").unwrap();
        assert!(workdirs_for_root(&r, "", &missing(&r)).is_ok());
        assert!(
            workdirs_for_root(&r, "1001", &missing(&r)).is_err(),
            "the base's user"
        );
        // A file onto the base's link.
        let r = parse("FROM localhost/b\nCOPY app.py /bin\n").unwrap();
        let mut base = missing(&r);
        base.insert("/bin".into(), InBase::Other);
        assert!(plan(&r, &ctx.0, &[], &base, 0).is_err());
    }

    #[test]
    fn a_change_of_kind_or_of_a_links_target_is_seen() {
        use std::os::unix::ffi::OsStrExt;
        let m = Meta {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 1,
        };
        let link = |t: &[u8]| Entry::Link(PathBuf::from(std::ffi::OsStr::from_bytes(t)), m);
        let layer = |e: Entry| {
            Layer::from([
                ("etc".to_string(), Entry::Dir(m)),
                ("etc/ssl".to_string(), e),
            ])
        };
        let (a, b) = (layer(link(b"x\xff")), layer(link(b"x\xfe")));
        assert_ne!(fingerprint("scratch", &a), fingerprint("scratch", &b));
        assert_eq!(names(&delta(&a, &b).unwrap()), ["etc", "etc/ssl"]);
        let mut dir = layer(Entry::Dir(m));
        dir.insert("etc/ssl/f".into(), Entry::Dir(m));
        assert_eq!(delta(&a, &dir), None, "a link that became a directory");
    }
}
