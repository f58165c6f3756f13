//! What the node says about itself before anything else (its system, its deploy, what it
//! lacks), and whether its deploy is this very build.

use super::Remote;
use crate::node::layout::{INCOMING_PREFIX, NODE_BIN, NODE_PROJECT};
use crate::sys::shell::sh_quote;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// What the node says about itself before anything else.
#[derive(Debug, Default, PartialEq)]
pub struct Probe {
    pub os: String,
    pub home: String,
    /// The sha256 of the installed deploy binary.
    pub binary: Option<String>,
    /// The sha256 of the deploy that installed it, when that was another build
    /// (`setup --server-binary`): that deploy may drive it. Read from `deploy.client` (the
    /// installed binary's sha256, then the installer's), and only while the binary is that one.
    pub client: Option<String>,
    pub version: Option<String>,
    pub set_up: bool,
    /// What `current` points at (`releases/v1`).
    pub current: Option<String>,
    /// What the server lacks, with what to do.
    pub lacks: Vec<String>,
    /// Uploads in `releases/` that no release took (`.incoming-...`).
    pub incoming: Vec<String>,
}

/// A shell expression for the app directory on the node (`~/x` -> `"$HOME"/'x'`). Pure.
pub fn root_expr(path: &str) -> String {
    match path.strip_prefix("~/") {
        Some(rest) => format!("\"$HOME\"/{}", sh_quote(rest)),
        None if path == "~" => "\"$HOME\"".into(),
        None => sh_quote(path),
    }
}

/// The script that probes the node (and makes this run's private config directory there);
/// its answer is `key=value` lines. Pure.
pub fn probe_script(path: &str, run: &str) -> String {
    format!(
        r#"R={root}
echo "os=$(uname -sm)"
echo "home=$HOME"
if [ -x "$R/{bin}" ]; then
  # The checksum that setup wrote beside it, unless the binary changed since.
  if [ -f "$R/{bin}.sha256" ] && [ ! "$R/{bin}" -nt "$R/{bin}.sha256" ]; then
    echo "binary=$(cat "$R/{bin}.sha256")"
  else
    echo "binary=$(sha256sum "$R/{bin}" | cut -d' ' -f1)"
  fi
  echo "version=$("$R/{bin}" --version 2>/dev/null)"
  if [ -f "$R/{bin}.client" ] && [ ! "$R/{bin}" -nt "$R/{bin}.client" ]; then
    echo "client=$(cat "$R/{bin}.client")"
  fi
fi
[ -d "$R/releases" ] && echo "set_up=yes"
c=$(readlink "$R/current" 2>/dev/null) && echo "current=$c"
install -d -m 0700 "$R/.deploy" "$R/{project}" "$R/{project}/{run}" 2>/dev/null
for d in "$R"/releases/{incoming}*; do [ -d "$d" ] && echo "incoming=${{d##*/}}"; done
u=$(id -un)
command -v podman >/dev/null 2>&1 || echo "lack=podman is not installed: as root, apt-get install podman"
command -v rsync >/dev/null 2>&1 || echo "lack=rsync is not installed: as root, apt-get install rsync"
grep -q "^$u:" /etc/subuid 2>/dev/null && grep -q "^$u:" /etc/subgid 2>/dev/null || echo "lack=$u has no subordinate ids for rootless Podman: as root, usermod --add-subuids FIRST-LAST --add-subgids FIRST-LAST $u with 65536 ids that no line of /etc/subuid or /etc/subgid uses yet (deploy bootstrap --root root@HOST picks them)"
if command -v loginctl >/dev/null 2>&1 && [ "$(loginctl show-user "$u" -p Linger --value 2>/dev/null)" = no ]; then
  echo "lack=lingering is off for $u, so its apps stop when it logs out: as root, loginctl enable-linger $u"
fi
true
"#,
        root = root_expr(path),
        bin = NODE_BIN,
        project = NODE_PROJECT,
        incoming = INCOMING_PREFIX,
        run = run,
    )
}

/// Reads the probe's answer. Pure.
pub fn parse_probe(text: &str) -> Probe {
    let mut p = Probe::default();
    let mut client: Option<(String, String)> = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().to_string();
        match k {
            "os" => p.os = v,
            "home" => p.home = v,
            "binary" if !v.is_empty() => p.binary = Some(v),
            "client" => client = v.split_once(' ').map(|(b, c)| (b.into(), c.into())),
            "version" if !v.is_empty() => p.version = Some(v),
            "set_up" => p.set_up = true,
            "current" => p.current = Some(v),
            "lack" => p.lacks.push(v),
            "incoming" => p.incoming.push(v),
            _ => {}
        }
    }
    p.client = client
        .filter(|(binary, _)| p.binary.as_deref() == Some(binary.as_str()))
        .map(|(_, c)| c);
    p
}

/// This binary's OS and architecture as `uname -sm` says them.
pub fn local_os() -> String {
    let os = match std::env::consts::OS {
        "linux" => "Linux",
        other => other,
    };
    format!("{os} {}", std::env::consts::ARCH)
}

pub(super) fn own_version() -> String {
    format!("deploy {}", env!("CARGO_PKG_VERSION"))
}

/// Whether the node's deploy is this very build (by checksum), or the one this build installed
/// there with `setup --server-binary`.
pub(super) fn runs_this_build(probe: &Probe) -> Result<bool> {
    let (_, ours) = own_binary()?;
    Ok(drives(probe, &ours))
}

/// Whether the deploy whose checksum is `client` may drive the node's: it is that very build,
/// or the one that build installed there (`setup --server-binary`) and unchanged since. Pure.
pub fn drives(probe: &Probe, client: &str) -> bool {
    probe.binary.as_deref() == Some(client) || probe.client.as_deref() == Some(client)
}

/// Whether the node runs `binary` (a checksum) as the deploy `client` installed it: nothing to
/// install. Pure.
pub fn installed(probe: &Probe, binary: &str, client: &str) -> bool {
    probe.binary.as_deref() == Some(binary)
        && (binary == client || probe.client.as_deref() == Some(client))
}

/// This binary and its sha256, read once per process.
static OWN: std::sync::OnceLock<Result<(PathBuf, String), String>> = std::sync::OnceLock::new();

fn read_own_binary() -> Result<(PathBuf, String), String> {
    let read = || -> Result<(PathBuf, String)> {
        let exe = std::env::current_exe().context("cannot find this deploy binary")?;
        let sum = sha256(&exe)?;
        Ok((exe, sum))
    };
    read().map_err(|e| format!("{e:#}"))
}

/// Starts reading this binary's sha256 in a thread of its own, while ssh connects: it takes
/// about 50 ms for a 10 MB binary, which [`own_binary`] then need not wait for.
pub(super) fn read_own_binary_early() {
    std::thread::spawn(|| OWN.get_or_init(read_own_binary));
}

/// This binary and its sha256 (waiting for the thread that reads it, if one does).
pub(super) fn own_binary() -> Result<(PathBuf, String)> {
    OWN.get_or_init(read_own_binary)
        .clone()
        .map_err(anyhow::Error::msg)
}

/// A file's sha256, as sha256sum says it.
pub(super) fn sha256(path: &Path) -> Result<String> {
    let out = duct::cmd!("sha256sum", path)
        .stdout_capture()
        .run()
        .with_context(|| format!("cannot run sha256sum on {}", path.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

impl Remote<'_> {
    /// The app directory on the node, absolute.
    pub(super) fn root(&self, probe: &Probe) -> String {
        match self.env.path.strip_prefix("~/") {
            Some(rest) => format!("{}/{rest}", probe.home.trim_end_matches('/')),
            None if self.env.path == "~" => probe.home.clone(),
            None => self.env.path.clone(),
        }
    }

    pub(super) fn probe(&self) -> Result<Probe> {
        let out = self.ui.step(
            &format!("Connecting to {} ({})", self.ssh.destination, self.env_name),
            || self.ssh.capture(&probe_script(&self.env.path, &self.run)),
        )?;
        if !out.status.success() {
            bail!(
                "probing {} failed: {}",
                self.ssh.destination,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(parse_probe(&String::from_utf8_lossy(&out.stdout)))
    }

    /// The node's deploy must be this very build.
    pub(super) fn check_binary(&self, probe: &Probe) -> Result<()> {
        if runs_this_build(probe)? {
            return Ok(());
        }
        match &probe.version {
            None => bail!(
                "deploy is not installed on {} for {}: run `deploy setup {}` first",
                self.ssh.destination,
                self.env_name,
                self.env_name
            ),
            Some(v) => bail!(
                "{} has another deploy ({v}, this is {}, or another build of it): run `deploy \
                 setup {}` to install this one",
                self.ssh.destination,
                own_version(),
                self.env_name
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::remote::cannot_run;

    #[test]
    fn the_app_directory_expands_on_the_node() {
        assert_eq!(root_expr("~/web/my app"), "\"$HOME\"/'web/my app'");
        assert_eq!(root_expr("/srv/a"), "/srv/a");
        assert!(probe_script("~/web/a", "r1").starts_with("R=\"$HOME\"/web/a\n"));
    }

    #[test]
    fn the_probe_answer_is_read() {
        let p = parse_probe(
            "os=Linux x86_64\nhome=/home/d\nbinary=abc\nversion=deploy 0.1.0\nset_up=yes\n\
             current=releases/v1\nlack=rsync is not installed\nnoise\n",
        );
        assert_eq!(p.os, "Linux x86_64");
        assert_eq!(p.home, "/home/d");
        assert_eq!(p.binary.as_deref(), Some("abc"));
        assert_eq!(p.version.as_deref(), Some("deploy 0.1.0"));
        assert!(p.set_up);
        assert_eq!(p.current.as_deref(), Some("releases/v1"));
        assert_eq!(p.lacks, ["rsync is not installed"]);
        assert_eq!(parse_probe("os=Linux x86_64\n").current, None);
        // Who installed the binary counts only while it is that binary.
        let p = parse_probe("binary=abc\nclient=abc laptop\n");
        assert_eq!(p.client.as_deref(), Some("laptop"));
        let p = parse_probe("binary=def\nclient=abc laptop\n");
        assert_eq!(p.client, None);
    }

    #[test]
    fn a_server_binary_that_another_build_installed_is_driven_by_that_build() {
        let p = Probe {
            binary: Some("static".into()),
            client: Some("laptop".into()),
            ..Probe::default()
        };
        assert!(drives(&p, "laptop") && drives(&p, "static"));
        assert!(!drives(&p, "another-laptop"));
        assert!(installed(&p, "static", "laptop"));
        assert!(
            !installed(&p, "static", "another-laptop"),
            "it records who installed it"
        );
        assert!(
            !installed(&p, "laptop", "laptop"),
            "this build itself is not there"
        );
        let said = cannot_run(
            "d@vps",
            "deploy: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.39' not found\n",
            false,
        );
        assert!(
            said.contains(
                "\n  | deploy: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.39' not found\n"
            ),
            "{said}"
        );
        assert!(said.contains("--server-binary PATH"), "{said}");
    }
}
