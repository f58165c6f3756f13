//! Whether a release's `podman build` keeps its cache of layers: [`BuildCache`], decided from
//! the build context (its Containerfile and its size). Either way the image is the same; only
//! the build's time and the store's disk differ.

use std::path::Path;

/// A build context of at most this many bytes of files is copied whole faster than the cache
/// of layers finds what it holds (measured: a build without layers is about 150 ms quicker,
/// and each MB copied again costs about 15 ms).
pub const SMALL_CONTEXT: u64 = 8 << 20;

/// How `podman build` treats its cache of layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildCache {
    /// `--layers=true`: each instruction's result is kept and the next build reuses it, so
    /// what a `RUN` installs is not installed again. Each instruction then costs a commit, and
    /// a lookup over every image in the store.
    Layers,
    /// `--layers=false`: the whole build is one commit. For a Containerfile that runs nothing
    /// (`FROM`, `COPY`, settings) and a small context: the cache would save only the copy of a
    /// few files, and costs more than that.
    Off,
}

impl BuildCache {
    /// The flag `podman build` takes.
    pub fn flag(self) -> &'static str {
        match self {
            BuildCache::Layers => "--layers=true",
            BuildCache::Off => "--layers=false",
        }
    }

    /// The cache for a Containerfile's text (`None`: none found) and a context of `bytes`.
    /// Any line whose first word is `RUN` (any case, whatever follows it) keeps the cache (a
    /// heredoc's or a continued line's text too: wrongly keeping it only costs time). Pure.
    pub fn decide(containerfile: Option<&str>, bytes: u64) -> BuildCache {
        let runs = |text: &str| {
            text.lines().any(|l| {
                let l = l.trim_start();
                let word = &l[..l
                    .find(|c: char| !c.is_ascii_alphabetic())
                    .unwrap_or(l.len())];
                word.eq_ignore_ascii_case("RUN")
            })
        };
        match containerfile {
            Some(text) if !runs(text) && bytes <= SMALL_CONTEXT => BuildCache::Off,
            _ => BuildCache::Layers,
        }
    }

    /// The cache for a build context: `entries` are its top-level files and directories (a
    /// release directory's, or the artifacts that become them), by the name each has in it.
    /// Podman's choice of file: `Containerfile`, else `Dockerfile`. Symbolic links are not
    /// followed (`shared/`'s links are not the app's files); `.deploy` is not counted (the
    /// build never sees it). Whatever cannot be read keeps the cache.
    pub fn of_entries<'a>(entries: impl IntoIterator<Item = (&'a str, &'a Path)>) -> BuildCache {
        let (mut containerfile, mut dockerfile) = (None, None);
        let mut bytes = 0u64;
        for (name, path) in entries {
            match name {
                "Containerfile" => containerfile = Some(path),
                "Dockerfile" => dockerfile = Some(path),
                ".deploy" => continue,
                _ => {}
            }
            bytes = bytes.saturating_add(size_up_to(path, SMALL_CONTEXT.saturating_sub(bytes)));
            if bytes > SMALL_CONTEXT {
                return BuildCache::Layers;
            }
        }
        let text = containerfile
            .or(dockerfile)
            .and_then(|p| std::fs::read_to_string(p).ok());
        BuildCache::decide(text.as_deref(), bytes)
    }

    /// The cache for the release directory `dir`, as built.
    pub fn of_dir(dir: &Path) -> BuildCache {
        let Ok(read) = std::fs::read_dir(dir) else {
            return BuildCache::Layers;
        };
        let entries: Vec<(String, std::path::PathBuf)> = read
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect();
        BuildCache::of_entries(entries.iter().map(|(n, p)| (n.as_str(), p.as_path())))
    }
}

/// The bytes of the files under `path` (symbolic links not followed), counted until they pass
/// `limit` (then any figure above it); what cannot be read counts as above it.
fn size_up_to(path: &Path, limit: u64) -> u64 {
    let over = limit.saturating_add(1);
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return over;
    };
    if !meta.is_dir() {
        return if meta.is_file() { meta.len() } else { 0 };
    }
    let Ok(read) = std::fs::read_dir(path) else {
        return over;
    };
    let mut total = 0u64;
    for entry in read {
        let Ok(entry) = entry else { return over };
        total = total.saturating_add(size_up_to(&entry.path(), limit.saturating_sub(total)));
        if total > limit {
            return total;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_containerfile_that_runs_nothing_on_a_small_context_builds_without_layers() {
        let copy = "FROM scratch\nCOPY app /app/app\nWORKDIR /app\nENTRYPOINT [\"/app/app\"]\n";
        assert_eq!(BuildCache::decide(Some(copy), 1 << 20), BuildCache::Off);
        assert_eq!(
            BuildCache::decide(Some(copy), SMALL_CONTEXT + 1),
            BuildCache::Layers
        );
        assert_eq!(BuildCache::decide(None, 10), BuildCache::Layers);
    }

    #[test]
    fn any_run_keeps_the_layers() {
        for text in [
            "FROM debian\nRUN apt-get install -y python3\nCOPY . /app\n",
            "FROM debian AS b\n  run make\nFROM scratch\nCOPY --from=b /x /x\n",
            "# comment\nFROM x\nRun\\\n  true\n",
            "FROM x\nRUN[\"true\"]\n",
        ] {
            assert_eq!(
                BuildCache::decide(Some(text), 10),
                BuildCache::Layers,
                "{text}"
            );
        }
        // A word that only begins with RUN is not one.
        assert_eq!(
            BuildCache::decide(Some("FROM x\nENV RUNNER=1\nCOPY RUN /RUN\n"), 10),
            BuildCache::Off
        );
    }

    #[test]
    fn a_context_is_measured_without_its_links_and_its_own_files() {
        let root = std::env::temp_dir().join(format!("deploy-cache-{}", std::process::id()));
        let (d, big) = (&root.join("ctx"), &root.join("big"));
        std::fs::create_dir_all(d).unwrap();
        std::fs::create_dir_all(big).unwrap();
        std::fs::write(d.join("Dockerfile"), "FROM x\nRUN y\n").unwrap();
        std::fs::write(d.join("Containerfile"), "FROM x\nCOPY a /a\n").unwrap();
        std::fs::create_dir_all(d.join("assets/deep")).unwrap();
        std::fs::write(d.join("assets/deep/a"), vec![0u8; 1000]).unwrap();
        assert_eq!(
            BuildCache::of_dir(d),
            BuildCache::Off,
            "Containerfile first"
        );
        // Links (shared/'s) and .deploy are not the build's files.
        let f = std::fs::File::create(big.join("big")).unwrap();
        f.set_len(SMALL_CONTEXT + 1).unwrap();
        std::os::unix::fs::symlink(big, d.join("data")).unwrap();
        assert_eq!(
            BuildCache::of_dir(d),
            BuildCache::Off,
            "a link is not followed"
        );
        std::fs::create_dir(d.join(".deploy")).unwrap();
        std::fs::rename(big.join("big"), d.join(".deploy/big")).unwrap();
        assert_eq!(BuildCache::of_dir(d), BuildCache::Off);
        std::fs::rename(d.join(".deploy/big"), d.join("assets/deep/big")).unwrap();
        assert_eq!(BuildCache::of_dir(d), BuildCache::Layers, "too big");
        std::fs::remove_file(d.join("assets/deep/big")).unwrap();
        std::fs::remove_file(d.join("Containerfile")).unwrap();
        assert_eq!(
            BuildCache::of_dir(d),
            BuildCache::Layers,
            "the Dockerfile runs"
        );
        assert_eq!(BuildCache::of_dir(&d.join("none")), BuildCache::Layers);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
