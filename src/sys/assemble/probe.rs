//! What a base image has at the paths a layer depends on: read once per base image (`podman
//! image mount` in `podman unshare`, each path's `stat`) and kept under
//! `~/.local/share/deploy/bases/<version>-<image id>`.

use super::layer::{with_ancestors, InBase, Meta};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::Path;

/// The cache's files are named `<this>-<image id>`: a cache written by a version that read the
/// probe otherwise (before 2, a path below a missing directory was `other`) is not read.
const CACHE_VERSION: &str = "2";

/// What the base image `id` has at `paths`: from the cache when it knows them all, else asked.
pub fn probe_cached(id: &str, paths: &[String]) -> Result<HashMap<String, InBase>> {
    let file = std::env::var_os("HOME").map(|h| {
        crate::sys::fsx::deploy_data(Path::new(&h))
            .join("bases")
            .join(format!("{CACHE_VERSION}-{}", id.replace('/', "")))
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
            crate::sys::podman::tail(&err, 5)
        );
    }
    kinds(paths, &String::from_utf8_lossy(&out.stdout))
        .map_err(|e| anyhow::anyhow!("cannot read the base image {id}: {e}"))
}

/// The probe's lines read: one per path, numbered in order, each a directory's `stat`, `-`
/// (missing) or anything else (`Other`); a path below anything but a directory or a missing
/// one is `Other` (its stat went through a link), as is one below a missing directory that is
/// said to be there. Any other count or numbering is an error, never a guess. Pure.
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
    let stats = out.clone();
    for p in paths {
        let above: Vec<Option<&InBase>> = with_ancestors(p)
            .iter()
            .filter(|a| *a != p)
            .map(|a| stats.get(a))
            .collect();
        let through_other = above
            .iter()
            .any(|k| !matches!(k, Some(InBase::Dir(_) | InBase::Missing)));
        let below_missing = above.iter().any(|k| matches!(k, Some(InBase::Missing)));
        // Below a missing directory a path can only be missing; below anything but a
        // directory, its stat went through a link.
        if through_other || (below_missing && stats[p] != InBase::Missing) {
            out.insert(p.clone(), InBase::Other);
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
        // Below a missing directory: missing (made by the layer), unless said to be there.
        let deep: Vec<String> = [
            "/opt",
            "/opt/tools",
            "/opt/tools/x",
            "/bin",
            "/bin/a",
            "/bin/a/b",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let k = kinds(&deep, "0 -\n1 -\n2 41ed 0 0 1\n3 a1ff 0 0 5\n4 -\n5 -\n").unwrap();
        assert_eq!(k["/opt/tools"], InBase::Missing);
        assert_eq!(
            k["/opt/tools/x"],
            InBase::Other,
            "a directory below a missing one"
        );
        assert_eq!(k["/bin/a"], InBase::Other);
        assert_eq!(k["/bin/a/b"], InBase::Other, "a link far above");
        let k = kinds(&deep[..3], "0 -\n1 -\n2 -\n").unwrap();
        assert!(k.values().all(|v| *v == InBase::Missing), "{k:?}");
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
