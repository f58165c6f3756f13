//! A remote environment, from the machine `deploy` runs on: the node-side steps run on the
//! server by the same `deploy` binary (installed by `deploy setup` into
//! `<path>/.deploy/bin/deploy`), given the config through `<path>/.deploy/project/`.
//!
//! Commands that change the node run there *detached* (`setsid`, output to a log under
//! `<path>/.deploy/runs/`) while this side streams the log: a dropped connection or Ctrl-C here
//! does not stop a swap there; the next command reports how it ended.

mod install;
mod probe;
mod upload;

pub use install::cannot_run;
pub use probe::{drives, installed, local_os, parse_probe, probe_script, root_expr, Probe};
pub use upload::{fmt_bytes, resumable_upload};

use crate::config::{Environment, Host, Loaded};
use crate::node::layout::Layout;
use crate::sys::shell::{sh_join, sh_quote};
use crate::sys::ssh::Ssh;
use crate::ui::Ui;
use anyhow::{bail, Context, Result};
use std::path::Path;

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

impl<'a> Remote<'a> {
    pub fn new(loaded: &'a Loaded, env_name: String, env: &'a Environment, ui: Ui) -> Result<Self> {
        let Host::Ssh { destination, port } = env.host() else {
            bail!("{env_name} is not a remote environment");
        };
        let home = crate::node::home_dir()?;
        let ssh = Ssh::new(&destination, port, env.ssh.as_ref(), &home)?;
        probe::read_own_binary_early();
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
    /// its output until it ends. `tail --pid` notices the end within its sleep interval
    /// (`-s`, also how often it looks at the process while it is quiet): 10 ms, where 100 ms
    /// added 50 ms on average to every remote release and rollback.
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
tail -n +1 -s 0.01 -f --pid="$pid" "$log.err" >&2 &
tail -n +1 -s 0.01 -f --pid="$pid" "$log"
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
}
