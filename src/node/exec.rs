//! `deploy exec [ENV] [-i] -- CMD...`: a one-off container of the live release with the app's env
//! and mounts (a console, a one-time task), as the in-gap hooks run, under a name of its own.

use crate::node::request::{ExecRequest, Stdin};
use crate::node::{unit, Node};
use anyhow::{anyhow, bail, Context, Result};
use std::io::IsTerminal;

impl Node<'_> {
    pub fn exec(&self, a: &ExecRequest) -> Result<()> {
        let rt = self.runtime();
        let interactive = a.stdin == Stdin::Open;
        self.require_setup()?;
        let live = self.current()?.ok_or_else(|| {
            anyhow!(
                "nothing is live on {} yet: release first, then exec",
                self.env_name
            )
        })?;
        let state = self.load_state()?;
        let image = rt.ensure_image(&state, &live)?;
        let stamp: String = crate::node::snapshot::stamp()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        let name = self
            .names()
            .exec_container(&format!("{stamp}{}", std::process::id()));
        let tty = interactive && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
        let spec = rt.unit_spec();
        self.ensure_release_vars(&live)?;
        let by = crate::node::state::Origin::current()
            .who
            .unwrap_or_else(|| "?".into());
        let args = unit::exec_args(
            &spec,
            &image,
            (&live, &by),
            &name,
            (interactive, tty),
            &a.command,
        );
        // Made under the fence's lock (never while a swap, a restore or migrate-data has the
        // data), then run: a swap from now on sees it and waits for it, stops it or refuses.
        self.through_fence(|| crate::sys::podman::create(&args))?;
        let mut start = std::process::Command::new("podman");
        start.args(["start", "--attach"]);
        if interactive {
            start.arg("--interactive");
        }
        let status = start.arg(&name).status().context("cannot run podman")?;
        match status.code() {
            Some(0) => Ok(()),
            Some(code) => Err(crate::exit::said(code)),
            None => bail!("`{}` in {name} was killed by a signal", a.command.join(" ")),
        }
    }

    /// A release's variables file, made empty for a release from before env.clear/env.secret
    /// (none of its own): what a one-off container of it reads.
    pub(crate) fn ensure_release_vars(&self, version: &str) -> Result<()> {
        let vars = std::path::PathBuf::from(self.runtime().unit_spec().release_vars(version));
        if !vars.exists() {
            crate::sys::fsx::write_atomic(&vars, b"", 0o600)?;
        }
        Ok(())
    }
}
