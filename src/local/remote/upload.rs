//! What a remote command sends to the node: the config, this shell's secrets and a release's
//! artifacts (hard links to the live release for what did not change).

use super::{on_node, Remote};
use crate::node::appenv::SecretValues;
use crate::node::layout::{Layout, INCOMING_PREFIX};
use crate::sys::shell::sh_quote;
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

/// The newest upload of `version` that a cut-off run left (`.incoming-V` or `.incoming-V.RUN`),
/// among the names in `releases/`: a new upload starts from it. Pure.
pub fn resumable_upload<'n>(names: &'n [String], version: &str) -> Option<&'n str> {
    let exact = format!("{INCOMING_PREFIX}{version}");
    let mut found: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| {
            *n == exact
                || n.strip_prefix(&exact)
                    .and_then(|r| r.strip_prefix('.'))
                    .is_some_and(|run| !run.is_empty() && !run.contains('.'))
        })
        .collect();
    found.sort();
    found.last().copied()
}

impl Remote<'_> {
    /// The config (and the maintenance page) into `<root>/.deploy/project/`.
    pub(super) fn send_config(&self, root: &str) -> Result<String> {
        let file_name = self
            .loaded
            .file
            .file_name()
            .ok_or_else(|| anyhow!("the config file has no name"))?
            .to_string_lossy()
            .into_owned();
        let mut files = Vec::new();
        if let Some(page) = self
            .loaded
            .config
            .traefik
            .as_ref()
            .and_then(|t| t.maintenance_page.clone())
        {
            if page.starts_with('/') || page.split('/').any(|c| c == "..") {
                bail!(
                    "traefik.maintenance_page `{page}` must be inside the project for a remote \
                     environment (a path relative to the config, without ..)"
                );
            }
            files.push(page);
        }
        let dest = format!("{}/", self.project_dir(root));
        let send = |files: Vec<String>, from: &Path| {
            let mut args = vec![
                "--relative".to_string(),
                "--mkpath".into(),
                "--chmod=F600,D700".into(),
                // A symlinked page is sent as the file it points at, never skipped.
                "--copy-links".into(),
            ];
            args.extend(files);
            args.push(self.ssh.remote_path(&dest));
            self.ssh
                .rsync(&args, from)
                .context("cannot send the config to the node")
        };
        if !files.is_empty() {
            send(files, &self.loaded.dir)?;
        }
        // The config as resolved here (`${VAR}` expanded: the node never sees this machine's
        // environment), read there with `--resolved`: nothing in it is expanded again.
        let text = self.loaded.resolved_text_for(&self.env_name)?;
        self.send_private(root, &file_name, text.as_bytes())
    }

    /// Sends `bytes` as the file `name` of this run's private directory on the node (0600 in
    /// 0700), from a private directory of its own here; returns its path there.
    pub(super) fn send_private(&self, root: &str, name: &str, bytes: &[u8]) -> Result<String> {
        let dest = format!("{}/", self.project_dir(root));
        let private = crate::sys::ssh::private_dir_name()?;
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().mode(0o700).create(&private)?;
        }
        let args = [
            "--relative",
            "--mkpath",
            "--chmod=F600,D700",
            name,
            &self.ssh.remote_path(&dest),
        ]
        .map(String::from);
        let written = crate::sys::fsx::write_atomic(&private.join(name), bytes, 0o600)
            .and_then(|()| self.ssh.rsync(&args, &private).map(|_| ()))
            .with_context(|| format!("cannot send {name} to the node"));
        let _ = std::fs::remove_dir_all(&private);
        written?;
        Ok(format!("{dest}{name}"))
    }

    /// Uploads the artifacts into `releases/.incoming-VERSION` (hard links to the live release
    /// for what did not change), then runs the rest of the release on the node.
    pub fn release(&self, version: &str, node_args: &[String]) -> Result<()> {
        let (probe, root, config) = self.prepare()?;
        if !probe.set_up {
            bail!(
                "{root} on {} is not set up for deploy: run `deploy setup {}` first",
                self.ssh.destination,
                self.env_name
            );
        }
        let sources = crate::config::artifacts::sources(&self.loaded.config, &self.loaded.dir)?;
        let layout = Layout::new(&root);
        let incoming = on_node(&layout.incoming_run(version, &self.run));
        // Unchanged files are hard links to the live release's, or to what an upload of the
        // same version that was cut off had sent already.
        let link_dests: Vec<String> = probe
            .current
            .iter()
            .map(|c| format!("{root}/{c}"))
            .chain(
                resumable_upload(&probe.incoming, version)
                    .map(|u| on_node(&layout.releases().join(u))),
            )
            .collect();
        let args = crate::sys::rsync::upload_args(
            &sources,
            &self.ssh.remote_path(&format!("{incoming}/")),
            &link_dests,
        );
        let uploaded = self.ui.step(&format!("Uploading {version}"), || {
            self.ssh.rsync(&args, &self.loaded.dir)
        });
        match uploaded {
            Ok(stats) => {
                if let Some(n) = crate::sys::rsync::bytes_sent(&stats) {
                    self.ui
                        .info(&format!("   {} sent ({n} bytes)", fmt_bytes(n)));
                }
            }
            Err(e) => {
                // A failed upload (a full disk, say) leaves nothing behind.
                let _ = self.ssh.capture(&format!("rm -rf {}", sh_quote(&incoming)));
                return Err(e.context(format!(
                    "the upload of {version} failed: the partial upload was removed, {} keeps \
                     serving what it served",
                    self.env_name
                )));
            }
        }
        let mut node_args = node_args.to_vec();
        let result = self
            .send_secrets(&root, &mut node_args)
            .and_then(|()| self.act(&root, &config, &node_args));
        // A release that went on took the upload; one refused (another deploy held the lock,
        // the version exists) leaves it, and it goes.
        self.clean_up(&root, Some(&incoming));
        result
    }

    /// Sends this shell's env.secret values (if the config names any) and adds `--secrets`.
    pub(super) fn send_secrets(&self, root: &str, args: &mut Vec<String>) -> Result<()> {
        if self.loaded.config.env.secret.is_empty() {
            return Ok(());
        }
        let secrets = SecretValues::from_env(&self.loaded.config.env.secret).to_text()?;
        let path = self.send_private(root, "secrets.env", secrets.as_bytes())?;
        args.extend(["--secrets".into(), path]);
        Ok(())
    }
}

/// `1.2 MB`. Pure.
pub fn fmt_bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else if n < 1024 * 1024 {
        format!("{:.1} KB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MB", n as f64 / (1024.0 * 1024.0))
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::remote::run_id;

    #[test]
    fn a_cut_off_upload_of_the_same_version_is_resumed() {
        let names: Vec<String> = [
            ".incoming-v1",
            ".incoming-v1.20261124T010101-0000000a",
            ".incoming-v1.20261124T020202-0000000b",
            ".incoming-v1.2.20261124T030303-0000000c",
            ".incoming-v10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            resumable_upload(&names, "v1"),
            Some(".incoming-v1.20261124T020202-0000000b")
        );
        assert_eq!(
            resumable_upload(&names, "v1.2"),
            Some(".incoming-v1.2.20261124T030303-0000000c")
        );
        assert_eq!(resumable_upload(&names, "v2"), None);
        let id = run_id();
        assert!(!id.contains('.') && id.len() > 15, "{id}");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(1536), "1.5 KB");
        assert_eq!(fmt_bytes(50 * 1024 * 1024), "50.0 MB");
    }
}
