//! A release's image assembled without `podman build`, when its Containerfile only copies files
//! and sets settings (`FROM`, `COPY`, `WORKDIR`, `ENV`, `ENTRYPOINT`, ...; no `RUN`) and its
//! ignore file lists plain paths (deploy's own lines). The image is the base's layers and one
//! layer of the copied files, loaded by `podman load` from an OCI archive that names the base's
//! layers by digest only: about a quarter of the time of `podman build`, whose own start, copy
//! and commit cost about 450 ms on the smallest change. Anything else is a [`Refusal`], and
//! `podman build` builds it.
//!
//! The layer follows `podman build`'s rules: a directory's contents go into the destination, a
//! file goes into it when it ends in `/`, when there are several sources, or when it is a
//! directory; files are owned by root and keep their mode and time. Where a directory above a
//! destination is in the base, its metadata is kept; where the base has something other than
//! a directory there (a link such as Debian's `/bin`), `podman build` builds the image. What
//! the base has at those paths is read once per base image (`podman image mount` in `podman
//! unshare`) and kept under `~/.local/share/deploy/bases/`.

pub mod archive;
pub mod layer;
pub mod recipe;

use anyhow::{bail, Context, Result};
use layer::{InBase, Meta};
pub use recipe::Refusal;
use std::collections::HashMap;
use std::path::Path;

/// What the build context `dir` makes: its recipe and the paths it ignores, or why it is left
/// to `podman build`.
pub fn recipe_of(dir: &Path) -> Result<(recipe::Recipe, Vec<String>), Refusal> {
    // Podman's choice: the first that is there (unreadable: left to it).
    let read = |names: [&str; 2]| {
        let p = names.iter().map(|n| dir.join(n)).find(|p| p.exists())?;
        Some(std::fs::read_to_string(p).map_err(|_| Refusal("an unreadable Containerfile".into())))
    };
    let text = read(["Containerfile", "Dockerfile"])
        .ok_or_else(|| Refusal("no Containerfile".into()))??;
    let recipe = recipe::parse(&text)?;
    let ignored = match read([".containerignore", ".dockerignore"]) {
        Some(t) => recipe::ignored(&t?)?,
        None => Vec::new(),
    };
    Ok((recipe, ignored))
}

/// The release before: its directory and image, whose layers an image assembled from the
/// same Containerfile and base goes on top of, adding only what changed.
pub struct Previous<'a> {
    pub dir: &'a Path,
    pub image: &'a str,
}

/// The most layers an assembled image has over its base: the image after one that has this
/// many starts again from one layer of all its files.
pub const MAX_STACK: usize = 8;

/// Assembles the image `image` of the release directory `dir`, on top of `previous`'s image
/// when only files were added or changed since; `Ok(Err(why))` when it is left to `podman
/// build`. Its files are written in the directory `work` (made if missing) and removed.
pub fn assemble(
    dir: &Path,
    image: &str,
    work: &Path,
    previous: Option<Previous>,
) -> Result<Result<(), Refusal>> {
    let (r, ignored) = match recipe_of(dir) {
        Ok(x) => x,
        Err(why) => return Ok(Err(why)),
    };
    let base = match &r.base {
        Some(name) => match super::podman::inspect_image(name)? {
            Some(b) => b,
            None => return Ok(Err(Refusal(format!("{name} is not in the store")))),
        },
        None => serde_json::json!({}),
    };
    let paths = layer::probe_paths(&r);
    let in_base = match base["Id"].as_str() {
        None => paths.iter().map(|p| (p.clone(), InBase::Missing)).collect(),
        Some(id) => probe_cached(id, &paths)?,
    };
    let created = std::time::SystemTime::now();
    let now = created
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base_config = |k: &str| {
        base.pointer(&format!("/Config/{k}"))
            .and_then(|v| v.as_str())
    };
    if r.relative_from_root && !matches!(base_config("WorkingDir"), None | Some("" | "/")) {
        return Ok(Err(Refusal(
            "a relative path before any WORKDIR, on a base with a working directory".into(),
        )));
    }
    let planned = layer::workdirs_for_root(&r, base_config("User").unwrap_or(""), &in_base)
        .and_then(|()| layer::plan(&r, dir, &ignored, &in_base, now));
    let full = match planned {
        Ok(l) => l,
        Err(why) => return Ok(Err(why)),
    };
    let files = layer::fingerprint(&full);
    let made = Made {
        recipe: &r,
        base: &base,
        files: &files,
        created,
    };
    let stacked = previous.and_then(|p| {
        let prev = super::podman::inspect_image(p.image).ok()??;
        let old = on_top_of(&p, &prev, (&r, &ignored), &base, &in_base, now)?;
        Some((layer::delta(&old, &full)?, prev))
    });
    crate::sys::fsx::ensure_dir(work, 0o700)?;
    remove_leftovers(work);
    match stacked {
        Some((delta, prev)) => made.load(&delta, &prev, image, work),
        None => made.load(&full, &base, image, work),
    }
    .map(Ok)
}

/// What the image of `p` holds when it can be built on: it was assembled from the same
/// Containerfile, ignore rules and base, holds fewer than [`MAX_STACK`] layers over the base,
/// and holds what `p`'s directory makes. Its layer, as planned again from that directory.
fn on_top_of(
    p: &Previous,
    prev: &serde_json::Value,
    recipe: (&recipe::Recipe, &[String]),
    base: &serde_json::Value,
    in_base: &HashMap<String, InBase>,
    now: u64,
) -> Option<layer::Layer> {
    let (r, ignored) = recipe_of(p.dir).ok()?;
    if (&r, ignored.as_slice()) != recipe {
        return None;
    }
    let layers = |v: &serde_json::Value| v.pointer("/RootFS/Layers")?.as_array().cloned();
    let (ours, under) = (layers(prev)?, layers(base).unwrap_or_default());
    if !ours.starts_with(&under) || ours.len() - under.len() >= MAX_STACK {
        return None;
    }
    let recorded = prev.pointer("/Config/Labels/deploy.files")?.as_str()?;
    let old = layer::plan(&r, p.dir, &ignored, in_base, now).ok()?;
    (layer::fingerprint(&old) == recorded).then_some(old)
}

/// An image about to be made: its recipe and base, the fingerprint of all its files, its time.
struct Made<'a> {
    recipe: &'a recipe::Recipe,
    base: &'a serde_json::Value,
    files: &'a str,
    created: std::time::SystemTime,
}

impl Made<'_> {
    /// Loads the image `image`: `layer` on top of `under`'s layers (the base's, or the last
    /// release's image's), with the base's settings (the same in both) and the recipe's.
    fn load(
        &self,
        layer: &layer::Layer,
        under: &serde_json::Value,
        image: &str,
        work: &Path,
    ) -> Result<()> {
        let own = |what: &str| work.join(format!("{WORK_PREFIX}{}.{what}.tar", std::process::id()));
        let (layer_file, archive_file) = (own("layer"), own("oci"));
        let result = (|| {
            let (digest, size) = archive::write_layer(layer, &layer_file)?;
            let created = humantime::format_rfc3339_nanos(self.created).to_string();
            let config = archive::config(
                self.recipe,
                self.base,
                archive::Lower::of(under),
                (image, self.files),
                (&digest, &created),
            );
            archive::write_archive(&archive_file, image, &config, (&digest, size), &layer_file)?;
            load(&archive_file, image)
        })();
        let _ = std::fs::remove_file(&layer_file);
        let _ = std::fs::remove_file(&archive_file);
        result
    }
}

/// The names of an assembly's files in its work directory (with the process id).
const WORK_PREFIX: &str = "image-";

/// Removes what an assembly that was killed left in `work`.
fn remove_leftovers(work: &Path) {
    for e in std::fs::read_dir(work).into_iter().flatten().flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(WORK_PREFIX) && name.ends_with(".tar") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn load(archive: &Path, image: &str) -> Result<()> {
    let out = super::own_group(duct::cmd!("podman", "load", "--quiet", "--input", archive))
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .context("cannot run podman")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains(image) {
        bail!(
            "podman load of {image} failed ({}):\n{}",
            out.status,
            super::podman::tail(&text, 20)
        );
    }
    Ok(())
}

/// What the base image `id` has at `paths`: from the cache when it knows them all, else asked.
fn probe_cached(id: &str, paths: &[String]) -> Result<HashMap<String, InBase>> {
    let file = std::env::var_os("HOME").map(|h| {
        Path::new(&h)
            .join(".local/share/deploy/bases")
            .join(id.replace('/', ""))
    });
    let mut known: HashMap<String, InBase> = file
        .as_ref()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .map(|t| t.lines().filter_map(cache_line).collect())
        .unwrap_or_default();
    if paths.iter().all(|p| known.contains_key(p)) {
        return Ok(known);
    }
    known.extend(probe(id, paths)?);
    if let Some(f) = &file {
        if let Some(dir) = f.parent() {
            let _ = crate::sys::fsx::ensure_dir(dir, 0o700);
        }
        let mut text: Vec<String> = known.iter().map(|(p, k)| to_cache_line(p, k)).collect();
        text.sort();
        let _ = crate::sys::fsx::write_atomic(f, (text.join("\n") + "\n").as_bytes(), 0o600);
    }
    Ok(known)
}

/// The script run in `podman unshare`: mounts the image, prints each path's number and its
/// `stat` (mode in hex, owner, group, time), `-` if it is not there or `?` if it cannot be
/// read, and unmounts. The paths are arguments, never in the script.
const PROBE: &str = r#"i=$1; shift
m=$(podman image mount "$i") || exit 3
trap 'podman image umount "$i" >/dev/null' EXIT
n=0
for p; do
  if [ -e "$m$p" ] || [ -L "$m$p" ]; then s=$(stat -c '%f %u %g %Y' -- "$m$p") || s='?'; else s=-; fi
  printf '%s %s\n' "$n" "$s"; n=$((n+1))
done"#;

fn probe(id: &str, paths: &[String]) -> Result<HashMap<String, InBase>> {
    let mut args: Vec<String> = ["unshare", "sh", "-c", PROBE, "sh", id]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(paths.iter().cloned());
    let out = duct::cmd("podman", args)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .context("cannot run podman unshare")?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "cannot read the base image {id}: {}",
            super::podman::tail(&err, 5)
        );
    }
    kinds(paths, &String::from_utf8_lossy(&out.stdout))
        .map_err(|e| anyhow::anyhow!("cannot read the base image {id}: {e}"))
}

/// The probe's lines read: one per path, numbered in order, each a directory's `stat`, `-`
/// (missing) or anything else (`Other`); a path below anything but a directory is `Other` (its
/// stat went through a link). Any other count or numbering is an error, never a guess. Pure.
pub fn kinds(paths: &[String], text: &str) -> Result<HashMap<String, InBase>, String> {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() != paths.len() {
        return Err(format!("{} lines for {} paths", lines.len(), paths.len()));
    }
    let mut out = HashMap::new();
    for (n, (p, l)) in paths.iter().zip(&lines).enumerate() {
        let rest = l
            .strip_prefix(&format!("{n} "))
            .ok_or_else(|| format!("line {n} is {l:?}"))?;
        out.insert(p.clone(), stat_line(rest));
    }
    for p in paths {
        let mut at = p.as_str();
        while let Some((parent, _)) = at.rsplit_once('/') {
            if !parent.is_empty() && !matches!(out.get(parent), Some(InBase::Dir(_))) {
                out.insert(p.clone(), InBase::Other);
                break;
            }
            at = parent;
        }
    }
    Ok(out)
}

fn stat_line(l: &str) -> InBase {
    let f: Vec<&str> = l.split_whitespace().collect();
    let [mode, uid, gid, mtime] = f[..] else {
        return if l.trim() == "-" {
            InBase::Missing
        } else {
            InBase::Other
        };
    };
    let (Ok(mode), Ok(uid), Ok(gid), Ok(mtime)) = (
        u32::from_str_radix(mode, 16),
        uid.parse(),
        gid.parse(),
        mtime.parse(),
    ) else {
        return InBase::Other;
    };
    if mode & 0o170000 != 0o040000 {
        return InBase::Other;
    }
    InBase::Dir(Meta {
        mode: mode & 0o7777,
        uid,
        gid,
        mtime,
    })
}

/// A line of the cache: an absolute path without control characters, a tab, and a kind as
/// [`to_cache_line`] writes it; anything else is dropped (the path is then asked again).
fn cache_line(l: &str) -> Option<(String, InBase)> {
    let (path, rest) = l.split_once('\t')?;
    if !path.starts_with('/') || path.chars().any(char::is_control) {
        return None;
    }
    let kind = match rest {
        "missing" => InBase::Missing,
        "other" => InBase::Other,
        s if s.split(' ').count() == 4 => match stat_line(s) {
            InBase::Dir(m) => InBase::Dir(m),
            _ => return None,
        },
        _ => return None,
    };
    Some((path.to_string(), kind))
}

fn to_cache_line(p: &str, k: &InBase) -> String {
    match k {
        InBase::Missing => format!("{p}\tmissing"),
        InBase::Other => format!("{p}\tother"),
        InBase::Dir(m) => format!(
            "{p}\t{:x} {} {} {}",
            m.mode | 0o040000,
            m.uid,
            m.gid,
            m.mtime
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_reads_directories_and_distrusts_what_is_below_a_link() {
        let paths: Vec<String> = ["/bin", "/bin/app", "/srv", "/srv/app", "/x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let k = kinds(
            &paths,
            "0 a1ff 0 0 5\n1 41ed 0 0 6\n2 41e8 0 5 7\n3 -\n4 ?\n",
        )
        .unwrap();
        assert_eq!(k["/bin"], InBase::Other);
        assert_eq!(k["/bin/app"], InBase::Other, "stat went through the link");
        assert_eq!(
            k["/srv"],
            InBase::Dir(Meta {
                mode: 0o750,
                uid: 0,
                gid: 5,
                mtime: 7
            })
        );
        assert_eq!(k["/srv/app"], InBase::Missing);
        assert_eq!(k["/x"], InBase::Other, "not read: never guessed");
        let warned = "WARN[0000] \"/\" is not a shared mount\n0 -\n1 -\n2 -\n3 -\n4 -\n";
        assert!(kinds(&paths, warned).is_err(), "a line more is an error");
        assert!(kinds(&paths, "0 -\n2 -\n1 -\n3 -\n4 -\n").is_err());
        assert_eq!(cache_line("/x\nother"), None);
        assert_eq!(cache_line("x\tother"), None);
        assert_eq!(cache_line("/x\t41ed 0 0"), None);
        for (p, kind) in &k {
            assert_eq!(
                cache_line(&to_cache_line(p, kind)),
                Some((p.clone(), *kind))
            );
        }
    }
}
