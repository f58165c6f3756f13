//! A release's stages in words, in one place: the lines each shows while it runs and what
//! `--dry-run` says it does (the swap's steps by [`Node::tell_step`]). `--dry-run` prints the
//! plan the command runs; with `--json` it is one document, each stage (and each of the
//! swap's steps) with its name, its fault-injection point and its step lines.

use super::stages::{self, Facts, PreviewData, Stage};
use crate::config::Backup;
use crate::node::apply::EnvChange;
use crate::node::layout::Layout;
use crate::node::state::State;
use crate::node::Node;
use crate::sys::assemble;
use crate::sys::build_cache::{self, BuildCache};
use crate::ui::line;
use crate::version::Version;
use crate::{node::preview, sys::podman, sys::shell::sh_join};
use anyhow::Result;
use serde::Serialize;

/// The dry run's words for an image made without `podman build` (see [`assemble`]).
const ASSEMBLED: &str = "assembled: the base's layers and one layer of the copied files (of \
    those that changed, over the live release's image, when it can), by podman load";

/// One stage, or one step of the swap, as people read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Told {
    pub name: &'static str,
    /// The fault-injection point a run reaches once it is done.
    pub point: String,
    /// It runs inside the swap (its journal exists meanwhile).
    pub swap: bool,
    /// The lines it shows while it runs, in order (`-> LINE ... ok`).
    pub steps: Vec<String>,
    /// Its `--dry-run` lines: a name and what it does.
    pub lines: Vec<(&'static str, String)>,
}

/// The step lines and the `--dry-run` lines of a stage.
type Words = (Vec<String>, Vec<(&'static str, String)>);

impl Node<'_> {
    /// What the plan of a release of `version` depends on, read from the server (changes
    /// nothing). `sent`: the upload came over SSH; `changes`: what the release applies to
    /// the environment (read once, by the caller).
    pub(crate) fn release_facts(
        &self,
        version: &str,
        sent: bool,
        current: Option<String>,
        state: &State,
        changes: Vec<EnvChange>,
    ) -> Result<Facts> {
        let preview_data = self.config.preview_of.as_ref().and_then(|_| {
            let (stage, _) = preview::data::pending(&self.layout)?;
            Some(PreviewData {
                to_scrub: (stage == preview::data::Stage::Copied)
                    .then(|| self.config.preview.scrub.clone()),
                ready: preview::data::Stage::Ready.dir(&self.layout),
            })
        });
        let jobs_changed = self.jobs_changed().unwrap_or_else(|e| {
            self.ui
                .warn(&format!("cannot read the jobs' timers: {e:#}"));
            true
        });
        Ok(Facts {
            version: version.into(),
            on_kept_data: state.on_kept_data(current.as_deref()),
            current,
            sent,
            snapshots: self.config.backup == Backup::Snapshot,
            preview_data,
            changes,
            jobs_changed,
            swap: self.swap_settings(),
        })
    }

    /// A stage of the release `f` in words: one entry, or one per step for the swap.
    pub(crate) fn tell_stage(&self, f: &Facts, stage: &Stage) -> Result<Vec<Told>> {
        let Stage::Swap { mv, steps } = stage else {
            let (steps, lines) = self.stage_words(f, stage)?;
            let point = stage.points().concat();
            let (name, swap) = (stage.name(), false);
            return Ok(vec![Told {
                name,
                point,
                swap,
                steps,
                lines,
            }]);
        };
        let mut told: Vec<Told> = steps
            .iter()
            .zip(stage.points())
            .map(|(step, point)| {
                let t = self.tell_step(step, mv);
                Told {
                    name: step.name(),
                    point,
                    swap: true,
                    steps: vec![t.label],
                    lines: vec![(step.name(), t.what)],
                }
            })
            .collect();
        if let Some(last) = told.last_mut() {
            last.lines.push(("on failure", self.on_failure(mv)));
        }
        Ok(told)
    }

    /// Each stage but the swap in words: its step lines and its `--dry-run` lines.
    fn stage_words(&self, f: &Facts, stage: &Stage) -> Result<Words> {
        let (v, l) = (f.version.as_str(), &self.layout);
        let (incoming, target) = (l.incoming(v), l.release(v));
        Ok(match stage {
            Stage::Upload { sent } => {
                let step = match sent {
                    true => format!("Linking shared/ into {v}"),
                    false => format!("Uploading {v}"),
                };
                let mut lines = vec![("upload", self.upload_words(f)?)];
                let shared = &self.config.shared;
                for e in shared.dirs.iter().chain(&shared.files) {
                    let to = Layout::shared_link_target(e);
                    lines.push(("link", format!("{e} -> {}", to.display())));
                }
                (vec![step], lines)
            }
            Stage::Rename => {
                let (c, settings) = (&self.config.container, self.run_settings());
                let run = format!(
                    "{v} runs with podman {} (its release.env: port {}, stop timeout {}s)",
                    settings.args.join(" "),
                    c.port,
                    c.stop_timeout.as_secs().max(1)
                );
                let rename = format!("{} -> {}", incoming.display(), target.display());
                (Vec::new(), vec![("rename", rename), ("run", run)])
            }
            Stage::Build => {
                let image = self.runtime().image(v);
                let built = |cache| sh_join(&podman::build_args(&target, &image, cache));
                let what = match self.build_way(&target) {
                    Some(Ok(())) => ASSEMBLED.to_string(),
                    Some(Err(cache)) => format!("podman {}", built(cache)),
                    None => format!(
                        "{ASSEMBLED} if its Containerfile only copies files; else podman {} \
                         ({} if it runs nothing and its files are at most {} MiB)",
                        built(BuildCache::Layers),
                        BuildCache::Off.flag(),
                        build_cache::SMALL_CONTEXT >> 20
                    ),
                };
                (
                    vec![format!("Building image {image}")],
                    vec![("build", what)],
                )
            }
            Stage::Sync => (
                vec![format!("Syncing {v} and its image to disk")],
                vec![(
                    "sync",
                    format!("sync -f {} (and Podman's image store)", target.display()),
                )],
            ),
            Stage::Scrub { commands } => {
                let dir = preview::data::Stage::Copied.dir(l);
                let what = |c: &String| format!("{c} (a one-off container, on {})", dir.display());
                (
                    commands
                        .iter()
                        .map(|c| preview::data::scrub_label(c))
                        .collect(),
                    commands.iter().map(|c| ("scrub", what(c))).collect(),
                )
            }
            Stage::Apply { changes } => (
                self.apply_labels(changes),
                changes.iter().map(|c| ("applies", c.describe())).collect(),
            ),
            Stage::Swap { .. } => unreachable!("the swap is told step by step"),
            Stage::Jobs => (
                vec![crate::node::jobs::INSTALL_STEP.into()],
                self.jobs_lines(),
            ),
            Stage::Prune => (
                vec![crate::node::prune::PRUNE_STEP.into()],
                vec![(
                    "prune",
                    format!(
                        "keep {} releases (never the live or the previous one)",
                        self.config.keep_releases
                    ),
                )],
            ),
        })
    }

    /// Where the upload comes from: over SSH (sent before), or this rsync command line.
    fn upload_words(&self, f: &Facts) -> Result<String> {
        let incoming = self.layout.incoming(&f.version);
        let link_dest = f.current.as_ref().map(|c| self.layout.release(c));
        let link_dest = link_dest.map(|d| d.display().to_string());
        if f.sent {
            return Ok(format!(
                "over SSH into {}, --link-dest={}",
                incoming.display(),
                link_dest.as_deref().unwrap_or("(none: a first release)")
            ));
        }
        let sources = crate::config::artifacts::sources(self.config, &self.project_dir)?;
        let link_dests: Vec<&str> = link_dest.as_deref().into_iter().collect();
        let to = incoming.display().to_string();
        let args = crate::sys::rsync::upload_args(&sources, &to, &link_dests);
        Ok(format!("rsync {}", sh_join(&args)))
    }

    /// How the release directory `target` becomes an image: assembled (`Ok`), or built with a
    /// cache of layers or without. From the directory once it is there, before that from the
    /// artifacts in the project (a dry run here); `None` where neither is (a dry run on a
    /// server, whose artifacts are on the laptop).
    fn build_way(&self, target: &std::path::Path) -> Option<Result<(), BuildCache>> {
        if target.exists() {
            return Some(
                assemble::recipe_of(target)
                    .map(drop)
                    .map_err(|_| BuildCache::of_dir(target)),
            );
        }
        let sources = crate::config::artifacts::sources(self.config, &self.project_dir).ok()?;
        let named: Vec<(&str, &std::path::Path)> = sources
            .iter()
            .filter_map(|p| Some((p.file_name()?.to_str()?, p.as_path())))
            .collect();
        let assembled = assemble::recipe_with(|name| {
            let (_, p) = named.iter().find(|(n, _)| *n == name)?;
            Some(std::fs::read_to_string(p))
        });
        if assembled.is_ok() {
            return Some(Ok(()));
        }
        Some(Err(BuildCache::of_entries(named.iter().copied())))
    }

    /// A release's plan in words: each stage, and each step of its swap.
    pub(crate) fn tell_release(&self, f: &Facts, plan: &[Stage]) -> Result<Vec<Told>> {
        let mut out = Vec::new();
        for stage in plan {
            out.extend(self.tell_stage(f, stage)?);
        }
        Ok(out)
    }

    /// `deploy release V --dry-run`: the plan the release runs, as lines (or, with `--json`,
    /// one document).
    pub fn release_plan(&self, version: &Version, uploaded: bool) -> Result<String> {
        let v = version.as_str();
        let current = self.current()?;
        let changes = self.environment_changes()?;
        let f = self.release_facts(v, uploaded, current.clone(), &self.load_state()?, changes)?;
        let told = self.tell_release(&f, &stages::plan(&f))?;
        if self.ui.json {
            let doc = serde_json::json!({
                "plan": "release", "version": v, "live": current, "stages": told,
            });
            return Ok(format!("{doc}\n"));
        }
        let mut out = format!(
            "Plan: release {v} of {} to {} ({}), live now: {}\n",
            self.config.app,
            self.env_name,
            self.layout.root.display(),
            current.as_deref().unwrap_or("nothing")
        );
        if self.layout.release(v).exists() {
            let note = format!("releases/{v} exists: refused unless --replace (never when live)");
            line(&mut out, "note", note);
        }
        for (name, what) in told.iter().flat_map(|t| &t.lines) {
            line(&mut out, name, what);
        }
        out += "Dry run: nothing was built, uploaded or changed.\n";
        Ok(out)
    }
}
