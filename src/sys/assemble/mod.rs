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
//! unshare`) and kept under `~/.local/share/deploy/bases/` ([`probe`]).
//!
//! A release whose live release's image was assembled from the same recipe and base adds only a
//! layer of what changed over that image's layers ([`stack`]).
//!
//! `recipe.rs` and the planning in `layer.rs` and `stack.rs` are pure but for reading the
//! release directories; `archive.rs` writes the files `podman load` takes.

pub mod archive;
pub mod layer;
pub mod probe;
pub mod recipe;
pub mod stack;

use anyhow::{bail, Context, Result};
use layer::InBase;
pub use recipe::Refusal;
pub use stack::Previous;
use std::collections::HashMap;
use std::path::Path;

/// What the build context `dir` makes: its recipe and the paths it ignores, or why it is left
/// to `podman build`.
pub fn recipe_of(dir: &Path) -> Result<(recipe::Recipe, Vec<String>), Refusal> {
    recipe_with(|name| {
        let p = dir.join(name);
        p.exists().then(|| std::fs::read_to_string(p))
    })
}

/// The same, from `file`, which gives a file of the context by name (`None`: not there).
/// Podman's choice: `Containerfile`, else `Dockerfile`; `.containerignore`, else
/// `.dockerignore`; one that is there but cannot be read is left to it.
pub fn recipe_with(
    file: impl Fn(&str) -> Option<std::io::Result<String>>,
) -> Result<(recipe::Recipe, Vec<String>), Refusal> {
    let read = |names: [&str; 2]| {
        let text = names.iter().find_map(|n| file(n))?;
        Some(text.map_err(|_| Refusal(format!("an unreadable {}", names[0]))))
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

/// An assembled image, in words for `--verbose`: what its new layer holds and over what.
pub struct Assembled(pub String);

/// Assembles the image `image` of the release directory `dir`, on top of `previous`'s image
/// when only files were added or changed since; `Ok(Err(why))` when it is left to `podman
/// build`. Its files are written in the directory `work` (made if missing) and removed.
pub fn assemble(
    dir: &Path,
    image: &str,
    work: &Path,
    previous: Option<Previous>,
) -> Result<Result<Assembled, Refusal>> {
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
        Some(id) => probe::probe_cached(id, &paths)?,
    };
    let created = std::time::SystemTime::now();
    let now = created
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let full = match full_layer(&r, &ignored, dir, &base, &in_base, now) {
        Ok(l) => l,
        Err(why) => return Ok(Err(why)),
    };
    let files = layer::fingerprint(stack::base_id(&base), &full);
    let stacked = previous
        .ok_or_else(|| "no release is live".to_string())
        .and_then(|p| {
            stack::over(&p, (&r, &ignored), &base, &in_base, &full, now).map(|s| (s, p.image))
        });
    let assembly = Assembly {
        recipe: &r,
        base: &base,
        files: &files,
        created,
        work,
    };
    crate::sys::fsx::ensure_dir(work, 0o700)?;
    remove_leftovers(work);
    let said = match stacked {
        // The same files (a release of its config alone): the live release's image, named
        // again. Its labels are the same but for `deploy.image`, which only finds the app's
        // images (its repository is this one), and no empty layer is stacked on it.
        Ok(((delta, _), over)) if delta.is_empty() => {
            super::podman::tag(over, image)?;
            format!("the same files as {over}: its image, named again")
        }
        Ok(((delta, prev), over)) => {
            assembly.load(&delta, &prev, image)?;
            format!(
                "a layer of {} entries that changed, over {over}",
                delta.len()
            )
        }
        Err(why) => {
            assembly.load(&full, &base, image)?;
            format!("one layer of all {} entries ({why})", full.len())
        }
    };
    Ok(Ok(Assembled(said)))
}

/// The layer of all the files of `dir`, or why `podman build` must make it: what the recipe
/// asks and `base` (as inspected, its paths `in_base`) allows.
fn full_layer(
    r: &recipe::Recipe,
    ignored: &[String],
    dir: &Path,
    base: &serde_json::Value,
    in_base: &HashMap<String, InBase>,
    now: u64,
) -> Result<layer::Layer, Refusal> {
    let config = |k: &str| {
        base.pointer(&format!("/Config/{k}"))
            .and_then(|v| v.as_str())
    };
    if r.relative_from_root && !matches!(config("WorkingDir"), None | Some("" | "/")) {
        return Err(Refusal(
            "a relative path before any WORKDIR, on a base with a working directory".into(),
        ));
    }
    layer::workdirs_for_root(r, config("User").unwrap_or(""), in_base)?;
    layer::plan(r, dir, ignored, in_base, now)
}

/// An image about to be assembled: its recipe and base, the fingerprint of all its files, its
/// time, and the directory its files are written in.
struct Assembly<'a> {
    recipe: &'a recipe::Recipe,
    base: &'a serde_json::Value,
    files: &'a str,
    created: std::time::SystemTime,
    work: &'a Path,
}

impl Assembly<'_> {
    /// Loads the image `image`: `layer` on top of `under`'s layers (the base's, or the last
    /// release's image's), with the base's settings (the same in both) and the recipe's.
    fn load(&self, layer: &layer::Layer, under: &serde_json::Value, image: &str) -> Result<()> {
        let own = |what: &str| {
            self.work
                .join(format!("{WORK_PREFIX}{}.{what}.tar", std::process::id()))
        };
        let (layer_file, archive_file) = (own("layer"), own("oci"));
        let result = (|| {
            let (digest, size) = archive::write_layer(layer, &layer_file)?;
            let created = humantime::format_rfc3339_nanos(self.created).to_string();
            let config = archive::config(
                self.recipe,
                self.base,
                archive::Lower::of(under),
                archive::Labels {
                    image,
                    files: self.files,
                },
                archive::Top {
                    digest: &digest,
                    created: &created,
                },
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
