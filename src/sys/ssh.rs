//! Reaching a remote node with the system `ssh` and `rsync`, so the user's ssh config, agent and
//! known_hosts apply. One command uses one multiplexed connection (ControlMaster, its socket in
//! a private directory), closed when the command ends.

use crate::sys::shell::{sh_join, sh_quote};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Output;

/// A directory name for the shared connection's socket that nobody can have made before us:
/// in `$XDG_RUNTIME_DIR` (private to the user) when there is one, with a random part.
pub fn private_dir_name() -> Result<PathBuf> {
    private_dir_name_with("deploy-ssh")
}

/// A directory name beginning with `prefix` that nobody can have made before us, as
/// [`private_dir_name`].
pub fn private_dir_name_with(prefix: &str) -> Result<PathBuf> {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let mut random = [0u8; 8];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .context("cannot read /dev/urandom")?;
    Ok(base.join(format!("{prefix}-{:016x}", u64::from_le_bytes(random))))
}

/// A remote script with `XDG_RUNTIME_DIR` set to the user's runtime directory first: a login
/// without a PAM session that sets it (a new user's, some sshd configs) still reaches its
/// systemd user manager and rootless Podman. Pure.
pub fn with_runtime_dir(script: &str) -> String {
    format!("XDG_RUNTIME_DIR=/run/user/$(id -u); export XDG_RUNTIME_DIR\n{script}")
}

/// An environment's `ssh:` options.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshOptions {
    /// A private key (`ssh -i`); `~/` is this machine's home.
    #[serde(default)]
    pub identity: Option<String>,
    /// A jump host (`ssh -J`).
    #[serde(default)]
    pub jump: Option<String>,
    /// More ssh arguments, e.g. ["-o", "ServerAliveInterval=15"].
    #[serde(default)]
    pub options: Vec<String>,
}

pub struct Ssh {
    pub destination: String,
    port: Option<u16>,
    identity: Option<PathBuf>,
    jump: Option<String>,
    options: Vec<String>,
    control_dir: PathBuf,
    master: std::cell::Cell<bool>,
}

impl Ssh {
    /// A connection plan; `home` expands a `~/` in the identity path.
    pub fn new(
        destination: &str,
        port: Option<u16>,
        options: Option<&SshOptions>,
        home: &Path,
    ) -> Result<Ssh> {
        // Validated with the config (`parse_host`); held here too, for rsync (see `remote_path`).
        if destination.is_empty() || destination.starts_with('-') {
            bail!("`{destination}` is no ssh destination: it must not begin with `-`");
        }
        let o = options.cloned().unwrap_or_default();
        let identity = match o.identity {
            Some(i) => Some(crate::sys::fsx::expand_home(&i, home)?),
            None => None,
        };
        let control_dir = private_dir_name()?;
        Ok(Ssh {
            destination: destination.to_string(),
            port,
            identity,
            jump: o.jump,
            options: o.options,
            control_dir,
            master: std::cell::Cell::new(false),
        })
    }

    /// ssh's arguments before the destination. Pure.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-o".into(),
            "ControlMaster=auto".into(),
            "-o".into(),
            // One destination per directory (one directory per command): a short name, well
            // within the 108 bytes of a socket's path.
            format!("ControlPath={}/m", self.control_dir.display()),
            "-o".into(),
            "ControlPersist=30".into(),
        ];
        if let Some(p) = self.port {
            a.extend(["-p".into(), p.to_string()]);
        }
        if let Some(i) = &self.identity {
            a.extend(["-i".into(), i.display().to_string()]);
        }
        if let Some(j) = &self.jump {
            a.extend(["-J".into(), j.clone()]);
        }
        a.extend(self.options.iter().cloned());
        a
    }

    /// What rsync's `-e` gets: ssh with the same arguments (rsync splits it like a shell).
    pub fn rsync_shell(&self) -> String {
        let mut words = vec!["ssh".to_string()];
        words.extend(self.args());
        crate::sys::rsync::join(&words)
    }

    /// `destination:path` for rsync. rsync's remote spec takes no `--` before it, and rsync
    /// passes the host to ssh after its own `-l user`: what keeps it from being read as an
    /// option is that no destination begins with `-` (see [`Ssh::new`]).
    pub fn remote_path(&self, path: &str) -> String {
        format!("{}:{path}", self.destination)
    }

    /// The destination as the end of ssh's options: after `--`, so that it is never read as
    /// one, whatever it is.
    fn destination_args(&self) -> [String; 2] {
        ["--".into(), self.destination.clone()]
    }

    /// ssh's arguments that open the shared connection in the background. Pure.
    fn master_args(&self) -> Vec<String> {
        let mut args: Vec<String> = self
            .args()
            .into_iter()
            .map(|a| {
                if a == "ControlMaster=auto" {
                    "ControlMaster=yes".into()
                } else {
                    a
                }
            })
            .collect();
        args.extend(["-f".into(), "-N".into()]);
        args.extend(self.destination_args());
        args
    }

    /// ssh's arguments that close the shared connection. Pure.
    fn exit_args(&self) -> Vec<String> {
        let mut args = self.args();
        args.extend(["-O".into(), "exit".into()]);
        args.extend(self.destination_args());
        args
    }

    /// Opens the shared connection, once: in the background, with no terminal, pipe or
    /// output of ours (a master that kept our stdout would hold up whoever reads it).
    fn ensure_master(&self) -> Result<()> {
        if self.master.get() {
            return Ok(());
        }
        // Made here, 0700, and never an existing one: nobody else's directory or link.
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&self.control_dir)
            .with_context(|| format!("cannot create {}", self.control_dir.display()))?;
        let err_path = self.control_dir.join("master.err");
        let err = std::fs::File::create(&err_path)?;
        let out = duct::cmd("ssh", self.master_args())
            .stdin_null()
            .stdout_null()
            .stderr_file(err)
            .unchecked()
            .run()
            .context("cannot run ssh: install the OpenSSH client")?;
        if !out.status.success() {
            let text = std::fs::read_to_string(&err_path).unwrap_or_default();
            return Err(self.unreachable(&text));
        }
        self.master.set(true);
        Ok(())
    }

    /// ssh's arguments that run `script` with `sh -c` there (with a terminal: `-t`). Pure.
    fn script_args(&self, script: &str, tty: bool) -> Vec<String> {
        let mut args = self.args();
        if tty {
            args.push("-t".into());
        }
        args.extend(self.destination_args());
        args.extend([
            "sh".into(),
            "-c".into(),
            sh_quote(&with_runtime_dir(script)),
        ]);
        args
    }

    /// A remote script's exit code; 255 is ssh's own failure.
    fn exit_code(&self, status: std::process::ExitStatus) -> Result<i32> {
        match status.code() {
            Some(255) => Err(self.unreachable("the connection failed or dropped (see above)")),
            Some(code) => Ok(code),
            None => bail!("ssh was killed"),
        }
    }

    fn command(&self, script: &str) -> Result<duct::Expression> {
        self.ensure_master()?;
        let args = self.script_args(script, false);
        Ok(duct::cmd("ssh", args).stdin_null().unchecked())
    }

    fn unreachable(&self, stderr: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "cannot reach {} over ssh: {}\ncheck that `ssh {}` works (keys, known_hosts, the \
             ssh: options of this environment)",
            self.destination,
            stderr.trim(),
            sh_join(&[self.args(), self.destination_args().to_vec()].concat())
        )
    }

    /// Runs a shell script on the node and captures what it prints.
    pub fn capture(&self, script: &str) -> Result<Output> {
        let out = self
            .command(script)?
            .stdout_capture()
            .stderr_capture()
            .run()
            .context("cannot run ssh: install the OpenSSH client")?;
        if out.status.code() == Some(255) {
            return Err(self.unreachable(&String::from_utf8_lossy(&out.stderr)));
        }
        Ok(out)
    }

    /// Runs a shell script on the node with a local file as its stdin (an upload that needs
    /// no rsync there), and captures what it prints.
    pub fn capture_with_input(&self, script: &str, input: &Path) -> Result<Output> {
        self.ensure_master()?;
        let out = duct::cmd("ssh", self.script_args(script, false))
            .stdin_path(input)
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .with_context(|| format!("cannot send {} over ssh", input.display()))?;
        if out.status.code() == Some(255) {
            return Err(self.unreachable(&String::from_utf8_lossy(&out.stderr)));
        }
        Ok(out)
    }

    /// Runs a shell script on the node with its output on this terminal, as it comes; returns
    /// its exit code.
    pub fn stream(&self, script: &str) -> Result<i32> {
        let out = self
            .command(script)?
            .run()
            .context("cannot run ssh: install the OpenSSH client")?;
        self.exit_code(out.status)
    }

    /// Runs a shell script on the node with this process's stdin passed on (and, with `tty`, a
    /// terminal there: `ssh -t`), its output here; returns its exit code.
    pub fn interactive(&self, script: &str, tty: bool) -> Result<i32> {
        self.ensure_master()?;
        let status = std::process::Command::new("ssh")
            .args(self.script_args(script, tty))
            .status()
            .context("cannot run ssh: install the OpenSSH client")?;
        self.exit_code(status)
    }

    /// rsync over this connection; returns rsync's `--stats` output.
    pub fn rsync(&self, args: &[String], dir: &Path) -> Result<String> {
        self.ensure_master()?;
        let mut all = vec!["-e".to_string(), self.rsync_shell(), "--stats".into()];
        all.extend(args.iter().cloned());
        crate::sys::rsync::run(all, dir, &self.destination)
    }
}

impl Drop for Ssh {
    fn drop(&mut self) {
        if self.control_dir.exists() {
            let _ = duct::cmd("ssh", self.exit_args())
                .stdin_null()
                .stdout_null()
                .stderr_null()
                .unchecked()
                .run();
            let _ = std::fs::remove_dir_all(&self.control_dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_arguments_carry_port_identity_jump_and_options() {
        let o = SshOptions {
            identity: Some("~/.ssh/deploy".into()),
            jump: Some("bastion".into()),
            options: vec!["-o".into(), "ServerAliveInterval=15".into()],
        };
        let s = Ssh::new("deploy@vps", Some(2222), Some(&o), Path::new("/home/me")).unwrap();
        let a = s.args().join(" ");
        assert!(
            a.starts_with("-o ControlMaster=auto -o ControlPath=/"),
            "{a}"
        );
        assert!(
            a.ends_with(
                "-o ControlPersist=30 -p 2222 -i /home/me/.ssh/deploy -J bastion -o ServerAliveInterval=15"
            ),
            "{a}"
        );
        assert!(s.rsync_shell().starts_with("ssh -o ControlMaster=auto"));
        assert_eq!(s.remote_path("/srv/a"), "deploy@vps:/srv/a");
    }

    #[test]
    fn the_destination_follows_the_end_of_the_options() {
        let o = SshOptions {
            options: vec!["-o".into(), "ServerAliveInterval=15".into()],
            ..SshOptions::default()
        };
        let s = Ssh::new("deploy@vps", Some(2222), Some(&o), Path::new("/home/me")).unwrap();
        let after_options = |args: &[String]| {
            let end = args.iter().position(|a| a == "--").expect("a `--`");
            args[end + 1..].to_vec()
        };
        assert_eq!(
            after_options(&s.script_args("echo hi", true)),
            [
                "deploy@vps",
                "sh",
                "-c",
                "'XDG_RUNTIME_DIR=/run/user/$(id -u); export XDG_RUNTIME_DIR\necho hi'"
            ]
        );
        assert_eq!(after_options(&s.master_args()), ["deploy@vps"]);
        assert_eq!(after_options(&s.exit_args()), ["deploy@vps"]);
        assert!(s.master_args().contains(&"ControlMaster=yes".to_string()));
        // Never one that rsync (which takes no `--` before it) could read as an option.
        assert!(Ssh::new("-oProxyCommand=x", None, None, Path::new("/h")).is_err());
    }
}
