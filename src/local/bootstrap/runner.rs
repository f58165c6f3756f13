//! Runs the steps on the server as root: over SSH as root, or as a user through `sudo -n`.
//! Each step's check first; a step that is so already says "ok, already"; the others run
//! (or, with `--dry-run`, are printed) and are checked again.

use super::probe::{self, Facts};
use super::steps::{as_root, Step};
use crate::sys::ssh::Ssh;
use crate::ui::Ui;
use anyhow::{bail, Context, Result};
use std::process::Output;

/// A login that runs commands as root on the server.
pub struct RootSession {
    pub ssh: Ssh,
    /// Through `sudo -n` (the login is a sudo-capable user's).
    pub sudo: bool,
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

impl RootSession {
    /// Runs a script as root and captures what it prints.
    pub fn run(&self, script: &str) -> Result<Output> {
        self.ssh.capture(&as_root(script, self.sudo))
    }

    /// Runs a step's `apply`, with its input file on stdin when it has one.
    fn apply(&self, step: &Step) -> Result<Output> {
        let script = as_root(&step.apply, self.sudo);
        match &step.input {
            Some(file) => self.ssh.capture_with_input(&script, file),
            None => self.ssh.capture(&script),
        }
    }

    /// Checks that the login is root's (or that sudo works without a password), then reads the
    /// server. Changes nothing.
    pub fn probe(&self) -> Result<Facts> {
        let dest = &self.ssh.destination;
        if self.sudo {
            let out = self.ssh.capture("sudo -n true")?;
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
                "commands": step.apply, "sudo": self.sudo,
                "stdin": step.input.as_ref().map(|p| p.display().to_string())});
            println!("{event}");
            return;
        }
        ui.info(&format!("-> {} ... would run (below)", step.name));
        println!(
            "# {}{}",
            step.name,
            if self.sudo { " (through sudo -n)" } else { "" }
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
