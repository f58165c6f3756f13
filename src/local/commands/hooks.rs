//! A release's local commands (the build, the `before_upload` and `after_release` hooks), run
//! in the config's directory.

use crate::cli::ReleaseArgs;
use crate::config;
use crate::node::Node;
use crate::ui::Ui;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Where and how a release's local commands run (the build, before_upload and after_release
/// hooks): in the config's directory, with DEPLOY_APP, DEPLOY_ENV, DEPLOY_VERSION and (for a
/// local environment) DEPLOY_PREVIOUS, the release live before, in their environment.
pub(super) struct LocalHooks<'a> {
    dir: &'a Path,
    ui: Ui,
    env: Vec<(&'static str, String)>,
}

impl<'a> LocalHooks<'a> {
    pub(super) fn new(
        loaded: &'a config::Loaded,
        env_name: &str,
        env: &config::Environment,
        version: &str,
        ui: Ui,
    ) -> LocalHooks<'a> {
        let previous = (env.host() == config::Host::Local)
            .then(|| Node::new(&loaded.config, env_name.to_string(), env, &loaded.dir, ui).ok())
            .flatten()
            .and_then(|n| n.current().ok().flatten())
            .unwrap_or_default();
        LocalHooks {
            dir: &loaded.dir,
            ui,
            env: vec![
                ("DEPLOY_APP", loaded.config.app.clone()),
                ("DEPLOY_ENV", env_name.to_string()),
                ("DEPLOY_VERSION", version.to_string()),
                ("DEPLOY_PREVIOUS", previous),
            ],
        }
    }

    fn run(&self, command: &str) -> Result<()> {
        run_local(command, self.dir, self.ui.quiet, &self.env)
    }
}

/// What a release runs here first: `build.command`, then the `before_upload` hooks.
pub(super) fn before_release(
    a: &ReleaseArgs,
    loaded: &config::Loaded,
    hooks: &LocalHooks,
    node: bool,
) -> Result<()> {
    if a.dry_run {
        return Ok(());
    }
    if !node {
        // Every env.secret is set here, before anything is built or uploaded.
        crate::node::appenv::SecretValues::from_env(&loaded.config.env.secret).require_all()?;
    }
    let ui = hooks.ui;
    if let (Some(build), false) = (&loaded.config.build, a.skip_build) {
        ui.step_out(&format!("Building ({})", build.command), || {
            hooks.run(&build.command)
        })?;
    }
    if !node {
        for hook in &loaded.config.hooks.before_upload {
            ui.step_out(&format!("Hook before_upload: {hook}"), || hooks.run(hook))
                .context("a before_upload hook failed: nothing was uploaded or changed")?;
        }
    }
    Ok(())
}

/// The `after_release` hooks, run here once the release is live.
pub(super) fn after_release(loaded: &config::Loaded, hooks: &LocalHooks) -> Result<()> {
    for hook in &loaded.config.hooks.after_release {
        hooks
            .ui
            .step_out(&format!("Hook after_release: {hook}"), || hooks.run(hook))
            .context("an after_release hook failed (the release is live)")?;
    }
    Ok(())
}

/// Runs a local command (the build, a hook) with `sh -c` in the project directory; its output
/// goes to stderr.
fn run_local(
    command: &str,
    dir: &std::path::Path,
    quiet: bool,
    env: &[(&'static str, String)],
) -> Result<()> {
    let expr = env
        .iter()
        .fold(duct::cmd!("sh", "-c", command), |e, (k, v)| e.env(k, v))
        .dir(dir)
        .stdout_to_stderr()
        .unchecked();
    let out = if quiet {
        expr.stderr_capture().run()
    } else {
        expr.run()
    }
    .with_context(|| format!("cannot run the build command `{command}`"))?;
    if !out.status.success() {
        let tail = crate::sys::podman::tail(&String::from_utf8_lossy(&out.stderr), 20);
        bail!(
            "the build command `{command}` failed ({}); nothing was uploaded\n{tail}",
            out.status
        );
    }
    Ok(())
}
