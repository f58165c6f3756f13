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
    File(PathBuf, Meta),
    /// A symbolic link, its target as it is.
    Link(PathBuf, Meta),
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
fn with_ancestors(p: &str) -> Vec<String> {
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
        let path = if src.is_empty() {
            ctx.to_path_buf()
        } else {
            ctx.join(src)
        };
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
        self.put(&target, Entry::File(path, file_meta(&meta)))
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
                Entry::File(e.path().to_path_buf(), file_meta(&meta))
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
        if matches!(self.base.get(abs), Some(InBase::Other)) && matches!(entry, Entry::Dir(_)) {
            return refuse(format!("{abs} is not a directory in the base"));
        }
        self.layer.insert(abs[1..].to_string(), entry);
        Ok(())
    }
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
        let base = probe_paths(&r)
            .into_iter()
            .map(|p| (p, InBase::Missing))
            .collect();
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
        let mut base: HashMap<String, InBase> = probe_paths(&r)
            .into_iter()
            .map(|p| (p, InBase::Missing))
            .collect();
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
        let base = probe_paths(&r)
            .into_iter()
            .map(|p| (p, InBase::Missing))
            .collect();
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
}
