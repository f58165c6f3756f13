//! The migration's plan: what moves to `shared/` and what becomes the first release. Pure.

use super::OWN;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

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
}
