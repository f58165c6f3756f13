//! `deploy prune`: what a release prunes, by hand: the releases beyond `keep_releases` (never
//! the live or the previous one, the release's own rule and code), their images, and the
//! app's dangling images. Images are found by their `deploy.image` label, never by a layer or
//! an id alone: layers are shared between apps.

use crate::node::state::{Action, EventOutcome};
use crate::node::{event, Node};
use crate::sys::podman;
use anyhow::Result;

/// The step line of a prune (a release's last stage, `deploy prune`).
pub const PRUNE_STEP: &str = "Pruning old releases";

/// `deploy prune --dry-run`. Pure.
pub fn plan_text(app: &str, env: &str, releases: &[String], dangling: &[String]) -> String {
    let list = |v: &[String]| match v.is_empty() {
        true => "none".to_string(),
        false => v.join(", "),
    };
    format!(
        "Plan: prune {app} on {env}\n  releases:  {} (and their images)\n  dangling:  {} \
         (images of {app} on {env} without a name)\nDry run: nothing was changed.\n",
        list(releases),
        list(dangling)
    )
}

impl Node<'_> {
    /// The app's images that no name points at any more.
    fn dangling_images(&self) -> Result<Vec<String>> {
        let images = podman::labelled_images(true)?;
        Ok(podman::ids_of(&images, &self.names().image_repository()))
    }

    /// The releases a prune would remove now.
    fn prunable(&self) -> Result<Vec<String>> {
        let state = self.load_state()?;
        let on_disk = self.releases_on_disk()?;
        let current = self.current()?;
        let previous = current.as_deref().and_then(|c| state.previous(&on_disk, c));
        Ok(state.prune_plan(
            &on_disk,
            current.as_deref(),
            previous.as_deref(),
            self.config.keep_releases,
        ))
    }

    /// `deploy prune --dry-run`.
    pub fn prune_plan_text(&self) -> Result<String> {
        self.require_setup()?;
        Ok(plan_text(
            &self.config.app,
            &self.env_name,
            &self.prunable()?,
            &self.dangling_images()?,
        ))
    }

    /// `deploy prune`.
    pub fn prune_now(&self) -> Result<()> {
        let _lock = self.lock(&format!("deploy prune {}", self.env_name))?;
        let mut state = self.load_state()?;
        let (pruned, images) = self.ui.step(PRUNE_STEP, || self.prune(&mut state))?;
        let mut removed = Vec::new();
        for image in images {
            match podman::remove_image(&image) {
                Ok(()) => removed.push(image),
                Err(e) => self.ui.warn(&format!("{e:#}")),
            }
        }
        let mut dangling = self.dangling_images()?;
        // One still in use (by a one-off container) stays, said as a warning.
        dangling.retain(|id| match podman::remove_image(id) {
            Ok(()) => true,
            Err(e) => {
                self.ui.warn(&format!("{e:#}"));
                false
            }
        });
        let detail = format!("pruned: {}", pruned.join(", "));
        let mut state = self.load_state()?;
        let version = self.current()?.unwrap_or_default();
        state.push_event(event(
            Action::Prune,
            &version,
            None,
            EventOutcome::Ok,
            None,
            Some(&detail),
        ));
        self.save_state(&state)?;
        self.ui.done(
            &format!(
                "pruned {} on {}: {} release(s){}, {} dangling image(s)",
                self.config.app,
                self.env_name,
                pruned.len(),
                match pruned.is_empty() {
                    true => String::new(),
                    false => format!(" ({})", pruned.join(", ")),
                },
                dangling.len()
            ),
            serde_json::json!({"action": "prune", "environment": self.env_name,
                "pruned": pruned, "images": removed, "dangling": dangling}),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prune_plan_names_releases_and_dangling_images() {
        let p = plan_text("shop", "prod", &["v1".into(), "v2".into()], &[]);
        assert_eq!(
            p,
            "Plan: prune shop on prod\n  releases:  v1, v2 (and their images)\n  dangling:  \
             none (images of shop on prod without a name)\nDry run: nothing was changed.\n"
        );
    }
}
