//! `deploy setup` on a remote environment: this binary (or `--server-binary`) installed on the
//! node once it has run there, then the node's own setup.

use super::probe::{installed, local_os, own_binary, own_version, runs_this_build, sha256, Probe};
use super::{on_node, Remote};
use crate::node::layout::Layout;
use crate::sys::shell::sh_quote;
use anyhow::{bail, Result};
use std::path::Path;

/// What setup says when the binary it sent cannot run on the server (`--version` failed):
/// its error, and what to do. Pure.
pub fn cannot_run(destination: &str, said: &str, server_binary: bool) -> String {
    let quoted: String = said.trim().lines().map(|l| format!("\n  | {l}")).collect();
    let what = match server_binary {
        true => {
            "build it for that server: scripts/build-static makes one that needs no shared \
                 library"
        }
        false => {
            "a build linked against this machine's libraries needs them there too (an \
                  older glibc says `GLIBC_2.xx not found`): build a static deploy with \
                  scripts/build-static and pass it with `deploy setup ENV --server-binary PATH`"
        }
    };
    format!(
        "the deploy binary sent to {destination} cannot run there; nothing was changed \
         there:{quoted}\n{what}"
    )
}

impl Remote<'_> {
    /// Installs this binary on the node (or `server_binary`, a build of this version for it),
    /// once it has run there.
    pub(super) fn install(
        &self,
        probe: &Probe,
        root: &str,
        server_binary: Option<&Path>,
    ) -> Result<()> {
        let (own, ours) = own_binary()?;
        let (exe, sum) = match server_binary {
            Some(p) if !p.is_file() => bail!(
                "--server-binary {}: no such file (scripts/build-static prints where it built \
                 one)",
                p.display()
            ),
            Some(p) => (std::path::absolute(p)?, sha256(p)?),
            None if probe.os != local_os() => bail!(
                "{} runs {}, and this deploy is built for {}: build deploy for that system and \
                 pass it with `deploy setup {} --server-binary PATH`",
                self.ssh.destination,
                probe.os,
                local_os(),
                self.env_name
            ),
            None => (own, ours.clone()),
        };
        if installed(probe, &sum, &ours) {
            return Ok(());
        }
        let from = server_binary
            .map(|p| format!(" (from {})", p.display()))
            .unwrap_or_default();
        self.ui.step(
            &format!("Installing {} on the node{from}", own_version()),
            || self.put_binary(root, &exe, &ours, server_binary),
        )
    }

    /// Sends `exe` beside the node's binary (its delta against it), runs it there, and only
    /// then puts it in its place with its checksum and who installed it (`ours`): a binary
    /// that cannot run there replaces nothing.
    fn put_binary(
        &self,
        root: &str,
        exe: &Path,
        ours: &str,
        server_binary: Option<&Path>,
    ) -> Result<()> {
        let layout = Layout::new(root);
        let bin_path = on_node(&layout.node_bin());
        let dir = on_node(layout.node_bin().parent().expect("a directory"));
        // `.deploy/` holds logs, state and snapshots: 0700, like everything in it.
        let meta = on_node(&layout.meta());
        let out = self.ssh.capture(&format!(
            "mkdir -p {root} && install -d -m 0700 {} {}",
            sh_quote(&meta),
            sh_quote(&dir),
            root = sh_quote(root)
        ))?;
        if !out.status.success() {
            bail!(
                "cannot create {dir}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let bin = sh_quote(&bin_path);
        let new = sh_quote(&format!("{bin_path}.new"));
        let _ = self
            .ssh
            .capture(&format!("[ -f {bin} ] && cp -p {bin} {new}; true"));
        self.ssh.rsync(
            &[
                "--chmod=F700".into(),
                exe.display().to_string(),
                self.ssh.remote_path(&format!("{bin_path}.new")),
            ],
            Path::new("/"),
        )?;
        self.check_runs(&new, server_binary)?;
        let out = self.ssh.capture(&format!(
            "mv -f {new} {bin} && sha256sum {bin} | cut -d' ' -f1 > {bin}.sha256.tmp && \
             chmod 600 {bin}.sha256.tmp && mv {bin}.sha256.tmp {bin}.sha256 && \
             echo \"$(cat {bin}.sha256) {ours}\" > {bin}.client.tmp && \
             chmod 600 {bin}.client.tmp && \
             mv {bin}.client.tmp {bin}.client"
        ))?;
        if !out.status.success() {
            bail!(
                "cannot install {bin}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Runs the binary just sent (`new`, quoted) with `--version` on the node: it must run
    /// there and be this version; else it is removed and the error says why.
    pub(super) fn check_runs(&self, new: &str, server_binary: Option<&Path>) -> Result<()> {
        let out = self.ssh.capture(&format!("{new} --version"))?;
        let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let failed = !out.status.success();
        if failed || said != own_version() {
            let _ = self.ssh.capture(&format!("rm -f {new}"));
        }
        if failed {
            let err = String::from_utf8_lossy(&out.stderr);
            bail!(cannot_run(
                &self.ssh.destination,
                &format!("{err}{said}"),
                server_binary.is_some()
            ));
        }
        if said != own_version() {
            bail!(
                "the deploy binary sent to {} says `{said}`, and this is `{}`: \
                 --server-binary must be the same version of deploy (build both from the same \
                 source)",
                self.ssh.destination,
                own_version()
            );
        }
        Ok(())
    }

    pub fn setup(
        &self,
        dry_run: bool,
        node_args: &[String],
        server_binary: Option<&Path>,
    ) -> Result<()> {
        let probe = self.probe()?;
        if dry_run {
            for lack in &probe.lacks {
                self.ui.warn(lack);
            }
            if !runs_this_build(&probe)? {
                crate::ui::print(&format!(
                    "Plan: install {} as {}, then set up there (run without --dry-run for the \
                     rest of the plan, which that binary computes).\nDry run: nothing was \
                     changed.\n",
                    own_version(),
                    Layout::new(self.root(&probe)).node_bin().display()
                ))?;
                return Ok(());
            }
            let root = self.root(&probe);
            let config = self.send_config(&root)?;
            let result = self.run_here(&root, &config, node_args);
            self.clean_up(&root, None);
            return result;
        }
        if !probe.lacks.is_empty() {
            bail!(
                "{} is not ready for deploy yet:\n  - {}",
                self.ssh.destination,
                probe.lacks.join("\n  - ")
            );
        }
        let root = self.root(&probe);
        self.install(&probe, &root, server_binary)?;
        let config = self.send_config(&root)?;
        let result = self.act(&root, &config, node_args);
        self.clean_up(&root, None);
        result
    }
}
