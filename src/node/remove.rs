//! `deploy remove`: the app off the server. What runs goes (its units: the app, its socket, the
//! gap server, Litestream, the recovery watcher, job timers; its containers; its images, found
//! by their `deploy.image` label; its Traefik router; Litestream's config), and what it keeps
//! stays: `shared/`, the releases, the history and the replica, unless `--data` (the data:
//! shared/, the data snapshots, a `file://` replica) or `--all` (the data and the app's whole
//! directory). Never anything shared with other apps: the managed Traefik's static config and
//! `acme.json` stay, and Traefik itself keeps running while another app relies on it (the last
//! one removed stops it and disables its unit).

use crate::front::shared::Leaving;
use crate::node::request::{Consent, RemoveRequest, Scope};
use crate::node::state::{Action, EventOutcome};
use crate::node::{event, Node};
use crate::sys::{podman, systemd::Systemd};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a removal takes away, as found on this node.
#[derive(Debug, Clone, Default)]
pub struct Removal {
    /// Unit files of the app in the user's unit directory, in the order they go.
    pub units: Vec<String>,
    /// The app's containers: its own, and the label of its one-off containers.
    pub container: String,
    pub writer_label: String,
    /// The image repository (`localhost/<app>_<env>`).
    pub images: String,
    /// Traefik's dynamic file of the app's router, if there is one.
    pub router_files: Vec<PathBuf>,
    /// Litestream's config of the app.
    pub litestream: Vec<PathBuf>,
    /// What `--data` deletes.
    pub data: Vec<PathBuf>,
    /// A `file://` replica (`--data`), or how to delete another.
    pub replica: Option<Replica>,
    /// The app's directory (`--all`).
    pub root: PathBuf,
    /// What becomes of the managed Traefik.
    pub traefik: Leaving,
    /// The environment's previews on this server (`ENV/NAME`): taken down first, wholly.
    pub previews: Vec<String>,
}

/// The replica, for `--data` and `--all`.
#[derive(Debug, Clone, PartialEq)]
pub enum Replica {
    /// A directory on this machine: deleted.
    Directory(PathBuf),
    /// Off the server (sftp, s3): left, and said where.
    Elsewhere(String),
}

/// The roles of an app's units, in the order a removal stops them: the watcher first (nothing
/// recovers what is being removed), the jobs, then the app and what serves beside it. Pure.
pub fn unit_order(base: &str, present: &[String]) -> Vec<String> {
    let fixed = [
        format!("{base}_recover.path"),
        format!("{base}_recover.service"),
    ];
    let jobs_prefix = format!("{base}_job_");
    let mut jobs: Vec<String> = present
        .iter()
        .filter(|n| n.starts_with(&jobs_prefix))
        .cloned()
        .collect();
    // A timer before its service: nothing starts the job while it goes.
    jobs.sort_by_key(|n| (!n.ends_with(".timer"), n.clone()));
    let after = [
        format!("{base}.socket"),
        format!("{base}.service"),
        format!("{base}_gap.service"),
        format!("{base}_litestream.service"),
    ];
    fixed
        .into_iter()
        .chain(jobs)
        .chain(after)
        .filter(|n| present.contains(n))
        .collect()
}

/// The question `--data` and `--all` ask first. Pure.
/// `previews`: the environment's on its server, when known here.
pub fn question(scope: Scope, env: &str, previews: Option<&[String]>) -> String {
    let what = if scope.all() {
        "the app's whole directory on the server (releases, history) and its data"
    } else {
        "the data"
    };
    let and_previews = match previews {
        Some([]) => String::new(),
        Some(p) => format!(", and takes down its previews ({})", p.join(", ")),
        None => ", and takes down its previews, if it has any".into(),
    };
    format!(
        "deploy remove --{} deletes {what} of {env}: shared/ (the databases, .env), the data \
         snapshots and a file:// replica{and_previews}. Go on?",
        if scope.all() { "all" } else { "data" }
    )
}

/// `deploy remove --dry-run`. Pure.
pub fn plan_text(app: &str, env: &str, r: &Removal, scope: Scope) -> String {
    use crate::ui::line;
    let mut out = format!("Plan: remove {app} from {env}\n");
    if !r.previews.is_empty() {
        line(
            &mut out,
            "previews",
            format!(
                "{} (each taken down wholly first, as `deploy preview down`)",
                r.previews.join(" ")
            ),
        );
    }
    let list = |v: &[PathBuf]| {
        v.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let units = match r.units.is_empty() {
        true => "none installed".to_string(),
        false => r.units.join(" "),
    };
    line(
        &mut out,
        "units",
        format!("{units} (stopped, disabled, deleted)"),
    );
    line(
        &mut out,
        "containers",
        format!("{} and those labelled {}", r.container, r.writer_label),
    );
    line(
        &mut out,
        "images",
        format!("{}:* (by their deploy.image label)", r.images),
    );
    if !r.router_files.is_empty() {
        line(&mut out, "router", list(&r.router_files));
    }
    if !r.litestream.is_empty() {
        line(&mut out, "litestream", list(&r.litestream));
    }
    if scope.data() {
        line(&mut out, "data", list(&r.data));
        match &r.replica {
            Some(Replica::Directory(d)) => line(&mut out, "replica", d.display()),
            Some(Replica::Elsewhere(url)) => line(
                &mut out,
                "replica",
                format!("{url} is kept: delete it there"),
            ),
            None => {}
        }
    } else {
        line(
            &mut out,
            "kept",
            "shared/, the releases, the history and the replica (--data, --all delete them)",
        );
    }
    if scope.all() {
        line(&mut out, "directory", r.root.display());
    }
    line(&mut out, "traefik", r.traefik.describe());
    out += "Dry run: nothing was changed.\n";
    out
}

/// Deletes a file or a directory tree; one that is not there is fine.
fn delete(path: &Path) -> Result<()> {
    let gone = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
    };
    gone.with_context(|| format!("cannot delete {}", path.display()))
}

impl Node<'_> {
    /// What a removal would take away here.
    fn removal(&self) -> Result<Removal> {
        let front = self.front();
        let names = self.names();
        let dir = self.runtime().user_unit_dir();
        let present: Vec<String> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut router_files = vec![front.default_router_file()?];
        if let Some(r) = front.router()? {
            router_files.insert(0, r.file);
        }
        router_files.dedup();
        router_files.retain(|f| f.exists());
        let meta = self.layout.meta();
        let litestream: Vec<PathBuf> = [meta.join("litestream.yml")]
            .into_iter()
            .filter(|f| f.exists())
            .collect();
        let mut data = vec![self.layout.shared(), meta.join("replaced")];
        for v in self.releases_on_disk().unwrap_or_default() {
            data.push(self.layout.snapshots(&v));
        }
        let replica = self
            .config
            .replicate
            .as_ref()
            .map(|r| match r.url.strip_prefix("file://") {
                Some(path) => Replica::Directory(PathBuf::from(path)),
                None => Replica::Elsewhere(crate::node::replicate::shown_url(&r.url)),
            });
        Ok(Removal {
            units: unit_order(names.base(), &present),
            container: names.container(),
            writer_label: names.writer_label(),
            images: names.image_repository(),
            router_files,
            litestream,
            data,
            replica,
            root: self.layout.root.clone(),
            traefik: front.traefik_leaving()?,
            previews: self.previews_here()?,
        })
    }

    /// This environment's previews on this server, from the node user's app records.
    fn previews_here(&self) -> Result<Vec<String>> {
        let registry = crate::front::shared::Registry::load(&self.home)?;
        let mut previews: Vec<String> = registry
            .records
            .iter()
            .filter(|r| r.app == self.config.app)
            .filter(|r| {
                crate::names::split_preview(&r.env).is_some_and(|(f, _)| f == self.env_name)
            })
            .map(|r| r.env.clone())
            .collect();
        previews.sort();
        Ok(previews)
    }

    /// `deploy remove --dry-run`.
    pub fn remove_plan(&self, scope: Scope) -> Result<String> {
        self.require_setup()?;
        Ok(plan_text(
            &self.config.app,
            &self.env_name,
            &self.removal()?,
            scope,
        ))
    }

    /// `deploy remove`; `take_down` takes the environment's previews down (their configs are
    /// derived from the config where this runs).
    pub fn remove(
        &self,
        a: &RemoveRequest,
        take_down: &dyn Fn(&[String]) -> Result<()>,
    ) -> Result<()> {
        let previews = self.previews_here()?;
        if a.scope.data()
            && a.consent == Consent::Ask
            && !self
                .ui
                .ask(&question(a.scope, &self.env_name, Some(&previews)))?
        {
            bail!(
                "not confirmed, nothing was removed (`--dry-run` lists what would go; pass \
                 --yes to confirm without a prompt)"
            );
        }
        let _lock = self.lock(&format!("deploy remove {}", self.env_name))?;
        take_down(&previews).context("taking down the environment's previews first")?;
        let r = self.removal()?;
        let systemd = Systemd::connect()?;
        self.remove_running(&systemd, &r)?;
        let images = self.remove_images(&r)?;
        for f in r.router_files.iter().chain(&r.litestream) {
            self.ui
                .step(&format!("Deleting {}", f.display()), || delete(f))?;
        }
        let _ = crate::sys::fsx::remove_durable(
            &self.layout.meta().join(crate::front::gap::STOPPED_FILE),
        );
        // Its record among the node user's apps goes: its ports and its Traefik requests no
        // longer count for the others' setups (the shared Traefik keeps serving them).
        crate::front::shared::forget(&self.home, &self.config.app, &self.env_name)?;
        let traefik = self.front().leave_shared_traefik(&systemd)?;
        if traefik != Leaving::NotManaged {
            self.ui.info(&format!("   Traefik: {}", traefik.describe()));
        }
        if a.scope.data() {
            self.remove_data(&r)?;
        }
        if a.scope.all() {
            self.ui
                .step(&format!("Deleting {}", r.root.display()), || {
                    delete(&r.root)
                })?;
        } else {
            let mut state = self.load_state()?;
            let version = self.current()?.unwrap_or_default();
            let ev = event(Action::Remove, &version, None, EventOutcome::Ok, None, None);
            state.push_event(ev);
            self.save_state(&state)?;
        }
        let kept = match a.scope {
            Scope::All => String::new(),
            Scope::Data => format!("; kept the releases in {}", self.layout.root.display()),
            Scope::App => format!(
                "; kept shared/, the releases and the history in {} (`deploy setup {}` and a \
                 release bring it back)",
                self.layout.root.display(),
                self.env_name
            ),
        };
        self.ui.done(
            &format!(
                "removed {} from {}: {} unit(s), {} image(s){kept}",
                self.config.app,
                self.env_name,
                r.units.len(),
                images.len()
            ),
            serde_json::json!({"action": "remove", "environment": self.env_name,
                "units": r.units, "images": images, "data": a.scope.data(), "all": a.scope.all(),
                "traefik_stopped": traefik == Leaving::Stopped,
                "previews": previews}),
        );
        Ok(())
    }

    /// The units (stopped, disabled, deleted) and the containers.
    fn remove_running(&self, systemd: &Systemd, r: &Removal) -> Result<()> {
        let rt = self.runtime();
        let dir = rt.user_unit_dir();
        for unit in &r.units {
            self.ui.step(&format!("Removing {unit}"), || {
                systemd.remove_unit(&dir, unit, rt.stop_timeout().max(Duration::from_secs(40)))
            })?;
        }
        self.ui.step("Removing the app's containers", || {
            podman::remove_container_now(&r.container)?;
            podman::remove_labelled(&r.writer_label).map(|_| ())
        })
    }

    /// The app's images: every name in its repository, then every image its label names.
    fn remove_images(&self, r: &Removal) -> Result<Vec<String>> {
        self.ui
            .step(&format!("Removing the images {}:*", r.images), || {
                let mut gone = podman::names_in(&r.images)?;
                for name in &gone {
                    podman::remove_image(name)?;
                }
                for id in podman::ids_of(&podman::labelled_images(false)?, &r.images) {
                    podman::remove_image(&id)?;
                    gone.push(id);
                }
                Ok(gone)
            })
    }

    /// `--data`: shared/, the data snapshots, a `file://` replica.
    fn remove_data(&self, r: &Removal) -> Result<()> {
        self.ui.step("Deleting the data", || {
            r.data.iter().try_for_each(|p| delete(p))
        })?;
        match &r.replica {
            Some(Replica::Directory(d)) => self
                .ui
                .step(&format!("Deleting the replica {}", d.display()), || {
                    delete(d)
                }),
            Some(Replica::Elsewhere(url)) => {
                self.ui.warn(&format!(
                    "the replica at {url} is kept: deploy does not delete off-site copies, \
                     delete it there if it must go"
                ));
                Ok(())
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_go_watcher_first_and_only_the_apps_own() {
        let present: Vec<String> = [
            "shop_prod.service",
            "shop_prod_gap.service",
            "shop_prod_job_backup.service",
            "shop_prod_job_backup.timer",
            "shop_prod_recover.path",
            "shop_prod-eu.service",
            "shop_staging.service",
            "traefik.service",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            unit_order("shop_prod", &present),
            [
                "shop_prod_recover.path",
                "shop_prod_job_backup.timer",
                "shop_prod_job_backup.service",
                "shop_prod.service",
                "shop_prod_gap.service",
            ]
        );
    }

    #[test]
    fn the_plan_says_what_goes_and_what_stays() {
        let r = Removal {
            units: vec!["shop_prod.service".into()],
            container: "shop_prod".into(),
            writer_label: "deploy.writer=shop_prod".into(),
            images: "localhost/shop_prod".into(),
            router_files: vec!["/h/.config/traefik/dynamic/shop_prod.yaml".into()],
            litestream: vec![],
            data: vec!["/srv/shop/shared".into()],
            replica: Some(Replica::Elsewhere("s3://b/shop".into())),
            root: "/srv/shop".into(),
            traefik: Leaving::KeptFor(vec!["blog (prod)".into()]),
            previews: vec![],
        };
        let p = plan_text("shop", "prod", &r, Scope::App);
        assert!(p.starts_with("Plan: remove shop from prod\n  units:     shop_prod.service (stopped, disabled, deleted)\n"), "{p}");
        assert!(
            p.contains("  router:    /h/.config/traefik/dynamic/shop_prod.yaml\n"),
            "{p}"
        );
        assert!(p.contains("  kept:      shared/, the releases"), "{p}");
        assert!(!p.contains("/srv/shop/shared"), "{p}");
        assert!(
            p.contains("  traefik:   keeps running, for blog (prod)"),
            "{p}"
        );
        let p = plan_text("shop", "prod", &r, Scope::All);
        assert!(p.contains("  data:      /srv/shop/shared\n"), "{p}");
        assert!(
            p.contains("  replica:   s3://b/shop is kept: delete it there\n"),
            "{p}"
        );
        assert!(p.contains("  directory: /srv/shop\n"), "{p}");
    }
}
