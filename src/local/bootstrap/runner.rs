//! Runs the steps on the server as root: over SSH as root, as a user through `sudo -n`, or on
//! this machine (`--local`, as root). Each step's check first; a step that is so already says
//! "ok, already"; the others run (or, with `--dry-run`, are printed) and are checked again.

use super::probe::{self, Facts};
use super::steps::{as_root, Step};
use crate::sys::ssh::Ssh;
use crate::ui::Ui;
use anyhow::{bail, Context, Result};
use std::process::Output;

/// Where the steps run as root.
pub enum RootSession {
    /// A login on the server; with `sudo`, a sudo-capable user's, every script through
    /// `sudo -n`.
    Ssh { ssh: Ssh, sudo: bool },
    /// This machine, as the root that runs deploy (`--local`).
    Local,
}

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Already,
    Changed,
    /// `--dry-run`: it would have run.
    WouldChange,
}

/// The last lines of a command's output, for an error.
fn said(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    crate::sys::podman::tail(text.trim(), 15)
}

/// Runs a script with `sh` here, its stdin a file or nothing, and captures what it prints.
fn run_here(script: &str, input: Option<&std::path::Path>) -> Result<Output> {
    let cmd = duct::cmd!("sh", "-c", script)
        .stdout_capture()
        .stderr_capture()
        .unchecked();
    match input {
        Some(file) => cmd.stdin_path(file),
        None => cmd.stdin_null(),
    }
    .run()
    .context("cannot run sh")
}

impl RootSession {
    /// What the output calls it: the login, or this machine.
    pub fn label(&self) -> &str {
        match self {
            RootSession::Ssh { ssh, .. } => &ssh.destination,
            RootSession::Local => "this machine",
        }
    }

    fn sudo(&self) -> bool {
        matches!(self, RootSession::Ssh { sudo: true, .. })
    }

    /// Runs a script as root and captures what it prints.
    pub fn run(&self, script: &str) -> Result<Output> {
        match self {
            RootSession::Ssh { ssh, sudo } => ssh.capture(&as_root(script, *sudo)),
            RootSession::Local => run_here(script, None),
        }
    }

    /// Runs a step's `apply`, with its input file on stdin when it has one.
    fn apply(&self, step: &Step) -> Result<Output> {
        match (self, &step.input) {
            (RootSession::Ssh { ssh, sudo }, Some(file)) => {
                ssh.capture_with_input(&as_root(&step.apply, *sudo), file)
            }
            (RootSession::Ssh { ssh, sudo }, None) => ssh.capture(&as_root(&step.apply, *sudo)),
            (RootSession::Local, input) => run_here(&step.apply, input.as_deref()),
        }
    }

    /// Checks that the login is root's (or that sudo works without a password), then reads the
    /// server. Changes nothing.
    pub fn probe(&self) -> Result<Facts> {
        let dest = self.label();
        if let RootSession::Ssh { ssh, sudo: true } = self {
            let out = ssh.capture("sudo -n true")?;
            if !out.status.success() {
                bail!(
                    "{dest} cannot use sudo without a password (`sudo -n true` failed: {}): allow \
                     it for that user (NOPASSWD in /etc/sudoers.d/), or use --root root@HOST",
                    said(&out)
                );
            }
        }
        let out = self.run(&probe::script())?;
        if !out.status.success() {
            bail!("reading the server failed: {}", said(&out));
        }
        let facts = probe::parse(&String::from_utf8_lossy(&out.stdout));
        match facts.uid {
            Some(0) => Ok(facts),
            Some(uid) if matches!(self, RootSession::Local) => bail!(
                "deploy bootstrap --local runs as root (uid 0), not as uid {uid}: run it with sudo"
            ),
            Some(uid) => bail!(
                "{dest} logs in as uid {uid}, not root: pass --sudo to run the steps through \
                 `sudo -n`, or give --root root@HOST (or an ssh alias of a root login)"
            ),
            None => bail!("{dest} did not say who it logs in as (`id -u`)"),
        }
    }

    /// `--dry-run`: a step's commands on stdout (one `plan` event with `--json`).
    fn print_plan(&self, step: &Step, detail: &str, ui: Ui) {
        if ui.json {
            let event = serde_json::json!({"event": "plan", "step": step.name, "detail": detail,
                "commands": step.apply, "sudo": self.sudo(),
                "stdin": step.input.as_ref().map(|p| p.display().to_string())});
            println!("{event}");
            return;
        }
        ui.info(&format!("-> {} ... would run (below)", step.name));
        println!(
            "# {}{}",
            step.name,
            if self.sudo() {
                " (through sudo -n)"
            } else {
                ""
            }
        );
        if !detail.is_empty() {
            println!("# ({detail})");
        }
        if let Some(input) = &step.input {
            println!("# (its stdin: {})", input.display());
        }
        println!("{}", step.apply.trim_end());
    }

    /// Runs one step: its check, then (when not so already) its commands and the check again;
    /// with `dry_run` the commands are printed instead.
    pub fn step(&self, step: &Step, dry_run: bool, ui: Ui) -> Result<Outcome> {
        let checked = self.run(&step.check)?;
        let detail = String::from_utf8_lossy(&checked.stdout).trim().to_string();
        let outcome = if checked.status.success() {
            if ui.json {
                let event = serde_json::json!({"event": "step", "step": step.name,
                    "outcome": "already", "detail": detail});
                println!("{event}");
            } else {
                ui.info(&format!("-> {} ... ok, already", step.name));
                if !detail.is_empty() {
                    ui.info(&format!("   {detail}"));
                }
            }
            Outcome::Already
        } else if dry_run {
            self.print_plan(step, &detail, ui);
            Outcome::WouldChange
        } else {
            ui.step(&step.name, || {
                let out = self.apply(step)?;
                if !out.status.success() {
                    bail!("it failed ({}):\n{}", out.status, said(&out));
                }
                let again = self.run(&step.check)?;
                if !again.status.success() {
                    bail!("it ran, but its check still fails:\n{}", said(&again));
                }
                Ok(())
            })
            .with_context(|| {
                format!(
                    "bootstrap stopped at `{}`: fix what it says and run deploy bootstrap \
                     again (the steps done stay done; --dry-run prints the commands)",
                    step.name
                )
            })?;
            Outcome::Changed
        };
        if let Some(note) = &step.note {
            ui.warn(note);
        }
        Ok(outcome)
    }
}
