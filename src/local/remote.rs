//! A remote environment, from the machine `deploy` runs on: the node-side steps run on the
//! server by the same `deploy` binary (installed by `deploy setup` into
//! `<path>/.deploy/bin/deploy`), given the config through `<path>/.deploy/project/`.
//!
//! Commands that change the node run there *detached* (`setsid`, output to a log under
//! `<path>/.deploy/runs/`) while this side streams the log: a dropped connection or Ctrl-C here
//! does not stop a swap there; the next command reports how it ended.

use crate::config::{Environment, Host, Loaded};
use crate::node::layout::{Layout, INCOMING_PREFIX, NODE_BIN, NODE_PROJECT};
use crate::sys::shell::{sh_join, sh_quote};
use crate::sys::ssh::Ssh;
use crate::ui::Ui;
use anyhow::{anyhow, bail, Context, Result};
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

fn own_version() -> String {
    format!("deploy {}", env!("CARGO_PKG_VERSION"))
}

/// Whether the node's deploy is this very build (by checksum), or the one this build installed
/// there with `setup --server-binary`.
fn runs_this_build(probe: &Probe) -> Result<bool> {
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

fn own_binary() -> Result<(PathBuf, String)> {
    let exe = std::env::current_exe().context("cannot find this deploy binary")?;
    let sum = sha256(&exe)?;
    Ok((exe, sum))
}

/// A file's sha256, as sha256sum says it.
fn sha256(path: &Path) -> Result<String> {
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

pub struct Remote<'a> {
    pub loaded: &'a Loaded,
    pub env_name: String,
    pub env: &'a Environment,
    pub ui: Ui,
    ssh: Ssh,
    /// This command's own name on the node: its config and its upload go in directories of
    /// that name, so two laptops at once never write into each other's.
    run: String,
    /// `--lock-wait`, passed on to the node.
    pub lock_wait: Option<std::time::Duration>,
    /// Who runs this command, from where: recorded in the node's history.
    pub origin: crate::node::state::Origin,
}

/// A path on the node as a shell command or rsync takes it (the root came from the probe as
/// text). Pure.
fn on_node(path: &Path) -> String {
    path.display().to_string()
}

/// `20261124T034512-1a2b3c4d`: sorts by time, unique, no `.` (it follows a version).
fn run_id() -> String {
    let mut random = [0u8; 4];
    use std::io::Read;
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut random));
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let stamp: String = now
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    format!("{stamp}-{:08x}", u32::from_le_bytes(random))
}

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

impl<'a> Remote<'a> {
    pub fn new(loaded: &'a Loaded, env_name: String, env: &'a Environment, ui: Ui) -> Result<Self> {
        let Host::Ssh { destination, port } = env.host() else {
            bail!("{env_name} is not a remote environment");
        };
        let home = crate::node::home_dir()?;
        let ssh = Ssh::new(&destination, port, env.ssh.as_ref(), &home)?;
        Ok(Remote {
            loaded,
            env_name,
            env,
            ui,
            ssh,
            run: run_id(),
            lock_wait: None,
            origin: Default::default(),
        })
    }

    pub fn run_id(&self) -> &str {
        &self.run
    }

    /// This run's config directory on the node.
    fn project_dir(&self, root: &str) -> String {
        on_node(&Layout::new(root).project(&self.run))
    }

    /// Removes what this run put on the node (its config; its upload, unless a release took it)
    /// and what runs that died left there over an hour ago.
    fn clean_up(&self, root: &str, upload: Option<&str>) {
        let mut script = format!(
            "rm -rf {}; find {} -mindepth 1 -maxdepth 1 -mmin +60 -exec rm -rf {{}} + 2>/dev/null",
            sh_quote(&self.project_dir(root)),
            sh_quote(&on_node(&Layout::new(root).projects()))
        );
        if let Some(u) = upload {
            script += &format!("; rm -rf {}", sh_quote(u));
        }
        let _ = self.ssh.capture(&format!("{script}; true"));
    }

    pub fn ssh_destination(&self) -> &str {
        &self.ssh.destination
    }

    /// The app directory on the node, absolute.
    fn root(&self, probe: &Probe) -> String {
        match self.env.path.strip_prefix("~/") {
            Some(rest) => format!("{}/{rest}", probe.home.trim_end_matches('/')),
            None if self.env.path == "~" => probe.home.clone(),
            None => self.env.path.clone(),
        }
    }

    fn probe(&self) -> Result<Probe> {
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
    fn check_binary(&self, probe: &Probe) -> Result<()> {
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

    /// Installs this binary on the node (or `server_binary`, a build of this version for it),
    /// once it has run there.
    fn install(&self, probe: &Probe, root: &str, server_binary: Option<&Path>) -> Result<()> {
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
            || {
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
                // Sent beside the one there (its delta against it), run, and only then put in
                // its place: a binary that cannot run there replaces nothing.
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
            },
        )
    }

    /// Runs the binary just sent (`new`, quoted) with `--version` on the node: it must run
    /// there and be this version; else it is removed and the error says why.
    fn check_runs(&self, new: &str, server_binary: Option<&Path>) -> Result<()> {
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

    /// The config (and the maintenance page) into `<root>/.deploy/project/`.
    fn send_config(&self, root: &str) -> Result<String> {
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
    fn send_private(&self, root: &str, name: &str, bytes: &[u8]) -> Result<String> {
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

    /// The node's deploy command line for `args`. Pure apart from the environment variable
    /// that carries the test hook.
    fn node_command(&self, root: &str, config: &str, args: &[String]) -> String {
        // `--resolved`: the config sent is this side's resolved one (see `send_config`).
        let mut words = vec![on_node(&Layout::new(root).node_bin()), "--resolved".into()];
        words.extend(crate::local::detached::node_argv(
            Path::new(config),
            self.ui,
            self.lock_wait,
            args,
        ));
        let hook = std::env::var("DEPLOY_TEST_HOOK")
            .map(|h| format!("DEPLOY_TEST_HOOK={} ", sh_quote(&h)))
            .unwrap_or_default();
        let origin: String = self
            .origin
            .env()
            .into_iter()
            .map(|(k, v)| format!("{k}={} ", sh_quote(&v)))
            .collect();
        format!("{hook}{origin}{}", sh_join(&words))
    }

    /// Connects, checks the node's deploy and sends the config: what every command does first.
    fn prepare(&self) -> Result<(Probe, String, String)> {
        let probe = self.probe()?;
        self.check_binary(&probe)?;
        let root = self.root(&probe);
        let config = self.send_config(&root)?;
        Ok((probe, root, config))
    }

    /// Runs a node command that only reads (releases, status), its output straight here.
    pub fn read(&self, args: &[String]) -> Result<()> {
        self.with_run(|root, config| self.run_here(root, config, args))
    }

    /// Runs a node command that only reads and prints one JSON document, and reads that.
    pub fn read_json<T: serde::de::DeserializeOwned>(&self, args: &[String]) -> Result<T> {
        let mut doc = None;
        self.with_run(|root, config| {
            let out = self.ssh.capture(&self.node_command(root, config, args))?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !out.status.success() {
                eprint!("{stderr}");
                return self.node_exit(out.status.code().unwrap_or(1));
            }
            doc = Some(serde_json::from_slice(&out.stdout).with_context(|| {
                format!(
                    "{} answered `deploy {}` with no JSON: {}",
                    self.ssh.destination,
                    args.join(" "),
                    String::from_utf8_lossy(&out.stdout).trim()
                )
            })?);
            Ok(())
        })?;
        Ok(doc.expect("read above"))
    }

    /// Connects, checks the node's deploy and sends the config, runs `f` with the node's root
    /// and the config's path there, then removes what the run put on the node, whatever `f`
    /// did.
    fn with_run(&self, f: impl FnOnce(&str, &str) -> Result<()>) -> Result<()> {
        let (_, root, config) = self.prepare()?;
        let result = f(&root, &config);
        self.clean_up(&root, None);
        result
    }

    /// A node command's exit code as ours.
    fn node_exit(&self, code: i32) -> Result<()> {
        match code {
            0 => Ok(()),
            code => Err(crate::exit::remote(code, &self.ssh.destination)),
        }
    }

    /// `deploy exec -i` on the node: this terminal's input passed on, and a terminal there
    /// when this is one (a console); its exit code becomes ours.
    pub fn exec_interactive(&self, args: &[String]) -> Result<()> {
        use std::io::IsTerminal;
        let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
        self.with_run(|root, config| {
            let command = self.node_command(root, config, args);
            self.node_exit(self.ssh.interactive(&command, tty)?)
        })
    }

    /// Runs a node command attached to this connection, its output straight here; its exit
    /// code becomes ours.
    fn run_here(&self, root: &str, config: &str, args: &[String]) -> Result<()> {
        self.node_exit(self.ssh.stream(&self.node_command(root, config, args))?)
    }

    /// Runs a node command that changes the node, detached from this connection, streaming
    /// its output until it ends.
    fn act(&self, root: &str, config: &str, args: &[String]) -> Result<()> {
        let command = self.node_command(root, config, args);
        let script = format!(
            r#"runs={runs}
mkdir -p "$runs" && chmod 700 "$runs"
ls -1t "$runs" 2>/dev/null | tail -n +121 | while read -r old; do rm -f "$runs/$old"; done
log="$runs/$(date +%Y%m%dT%H%M%S)-$$.log"
: > "$log" && : > "$log.err" && : > "$log.rc" && chmod 600 "$log" "$log.err" "$log.rc"
setsid sh -c '{command} > "$1" 2> "$1.err" < /dev/null; echo $? > "$1.rc"' sh "$log" < /dev/null > /dev/null 2>&1 &
pid=$!
tail -n +1 -s 0.1 -f --pid="$pid" "$log.err" >&2 &
tail -n +1 -s 0.1 -f --pid="$pid" "$log"
wait
rc=$(cat "$log.rc" 2>/dev/null)
exit "${{rc:-1}}"
"#,
            runs = sh_quote(&on_node(&Layout::new(root).runs())),
            // The node's stdout (JSON events with --json) stays stdout, its stderr stderr.
            command = command.replace('\'', r"'\''"),
        );
        crate::signals::defer();
        let code = self.ssh.stream(&script);
        if crate::signals::interrupted() || code.is_err() {
            let why = match &code {
                Err(e) => format!("{e:#}"),
                Ok(_) => "interrupted".into(),
            };
            bail!(
                "{why}: the command goes on on {} by itself (a swap that began is finished or \
                 undone there); `deploy status {}` shows how it ended",
                self.ssh.destination,
                self.env_name
            );
        }
        match code? {
            0 => Ok(()),
            code => Err(crate::exit::remote(code, &self.ssh.destination)),
        }
    }

    /// `deploy check ENV`: what the server lacks, whether its deploy is this build, and then
    /// the node's own checks.
    pub fn check(&self) -> Result<()> {
        let probe = self.probe()?;
        for lack in &probe.lacks {
            self.ui.warn(lack);
        }
        self.check_binary(&probe)?;
        if !probe.lacks.is_empty() {
            bail!("{} lacks what deploy needs (above)", self.ssh.destination);
        }
        let root = self.root(&probe);
        let config = self.send_config(&root)?;
        let result = self.run_here(&root, &config, &["check".into(), self.env_name.clone()]);
        self.clean_up(&root, None);
        result
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

    /// Any other command that changes the node, run there as it is.
    pub fn run(&self, args: &[String]) -> Result<()> {
        self.with_run(|root, config| self.act(root, config, args))
    }

    /// A node command that needs the env.secret values of this shell (`deploy restore`: the
    /// replica's credentials), sent as a private file.
    pub fn run_with_secrets(&self, args: &[String]) -> Result<()> {
        self.with_run(|root, config| {
            let mut args = args.to_vec();
            self.send_secrets(root, &mut args)?;
            self.act(root, config, &args)
        })
    }

    /// Sends this shell's env.secret values (if the config names any) and adds `--secrets`.
    fn send_secrets(&self, root: &str, args: &mut Vec<String>) -> Result<()> {
        if self.loaded.config.env.secret.is_empty() {
            return Ok(());
        }
        let secrets = secrets_here(&self.loaded.config.env)?;
        let path = self.send_private(root, "secrets.env", secrets.as_bytes())?;
        args.extend(["--secrets".into(), path]);
        Ok(())
    }
}

/// The secrets of `env` from this shell's environment, as `NAME=value` lines (what a remote
/// node is sent, in a private file, for [`crate::node::appenv::Secrets`] to read).
fn secrets_here(env: &crate::config::Env) -> Result<String> {
    let only = crate::config::Env {
        clear: Default::default(),
        secret: env.secret.clone(),
    };
    crate::node::appenv::text(&only, |n| std::env::var(n).ok())
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

    #[test]
    fn sizes_read_well() {
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(1536), "1.5 KB");
        assert_eq!(fmt_bytes(50 * 1024 * 1024), "50.0 MB");
    }
}
