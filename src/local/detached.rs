//! A release or rollback on a local environment runs its node-side steps the way a remote one
//! does: in a process of its own (`deploy --node ...`, in its own process group, its output in
//! `<path>/.deploy/runs/`), which the command you typed follows. A SIGKILL of that command, a
//! closed terminal or a Ctrl-C never cuts a swap in progress: Ctrl-C, SIGTERM and SIGHUP are
//! passed on as one SIGTERM, which stops the run before its swap or lets it finish the swap
//! first; a SIGKILL passes on nothing and the run goes on to its end by itself.

use crate::exit;
use crate::ui::Ui;
use anyhow::{Context, Result};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How many run logs a node keeps.
const KEEP_RUNS: usize = 40;

/// The node-side command line for `args`, here or over SSH: `--node`, the config, the output
/// flags and `--lock-wait`. Pure.
pub fn node_argv(
    config: &Path,
    ui: Ui,
    lock_wait: Option<std::time::Duration>,
    args: &[String],
) -> Vec<String> {
    let mut argv = vec!["--node".into(), "-c".into(), config.display().to_string()];
    for (on, flag) in [(ui.verbose, "-v"), (ui.quiet, "-q"), (ui.json, "--json")] {
        if on {
            argv.push(flag.into());
        }
    }
    // The node side writes to a file, not a terminal: colours only when asked for.
    if ui.color == crate::ui::Color::Always {
        argv.extend(["--color".into(), "always".into()]);
    }
    if let Some(w) = lock_wait {
        argv.extend(["--lock-wait".into(), format!("{}ms", w.as_millis())]);
    }
    argv.extend(args.iter().cloned());
    argv
}

/// Removes all but the newest [`KEEP_RUNS`] logs.
fn prune_runs(runs: &Path) {
    let Ok(entries) = std::fs::read_dir(runs) else {
        return;
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let stems: std::collections::BTreeSet<String> = names
        .iter()
        .filter_map(|n| n.rsplit_once('.').map(|(s, _)| s.to_string()))
        .collect();
    let old = stems.len().saturating_sub(KEEP_RUNS);
    for stem in stems.into_iter().take(old) {
        for ext in ["out", "err"] {
            let _ = std::fs::remove_file(runs.join(format!("{stem}.{ext}")));
        }
    }
}

/// Copies what a log file gained since the last call.
struct Tail {
    file: File,
    to_stdout: bool,
}

impl Tail {
    fn pump(&mut self) {
        let mut buf = Vec::new();
        if self.file.read_to_end(&mut buf).is_ok() && !buf.is_empty() {
            let _ = if self.to_stdout {
                std::io::stdout()
                    .write_all(&buf)
                    .and_then(|()| std::io::stdout().flush())
            } else {
                std::io::stderr().write_all(&buf)
            };
        }
    }
}

/// Runs `deploy --node ARGS` detached, in `runs` (the app's `.deploy/runs`), following its
/// output until it ends; its exit code becomes ours.
pub fn run(
    runs: &Path,
    argv: &[String],
    (what, env_name): (&str, &str),
    origin: &crate::node::state::Origin,
) -> Result<()> {
    crate::sys::fsx::ensure_private_dir(runs)?;
    prune_runs(runs);
    let stem = format!(
        "{}-{}",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        std::process::id()
    );
    let (out, err) = (
        runs.join(format!("{stem}.out")),
        runs.join(format!("{stem}.err")),
    );
    let create = |p: &PathBuf| {
        std::fs::OpenOptions::new()
            .mode(0o600)
            .create(true)
            .truncate(true)
            .write(true)
            .read(true)
            .open(p)
            .with_context(|| format!("cannot create {}", p.display()))
    };
    let (out_file, err_file) = (create(&out)?, create(&err)?);
    let exe = std::env::current_exe().context("cannot find this deploy binary")?;
    crate::signals::defer();
    let mut child = Command::new(exe)
        .args(argv)
        .envs(origin.env())
        .stdin(Stdio::null())
        .stdout(out_file.try_clone()?)
        .stderr(err_file.try_clone()?)
        .process_group(0)
        .spawn()
        .context("cannot start the node-side deploy")?;
    let mut tails = [
        Tail {
            file: File::open(&out)?,
            to_stdout: true,
        },
        Tail {
            file: File::open(&err)?,
            to_stdout: false,
        },
    ];
    let status = follow(&mut child, &mut tails)?;
    if status.success() {
        return Ok(());
    }
    match status.code() {
        Some(code) => Err(exit::said(code)),
        None => Err(anyhow::anyhow!(
            "the node-side run of `deploy {what}` died (signal {}; its output is in {}): the next \
             release or rollback puts right what it left, and `deploy status {env_name}` says \
             what that will be",
            status.signal().unwrap_or_default(),
            err.display()
        )),
    }
}

/// Copies the child's output until it exits; the first Ctrl-C, SIGTERM or SIGHUP is passed on
/// as one SIGTERM.
fn follow(child: &mut Child, tails: &mut [Tail]) -> Result<std::process::ExitStatus> {
    let mut passed_on = false;
    let exits = Exit::of(child);
    loop {
        for t in tails.iter_mut() {
            t.pump();
        }
        if let Some(status) = child.try_wait()? {
            for t in tails.iter_mut() {
                t.pump();
            }
            return Ok(status);
        }
        if crate::signals::interrupted() && !passed_on {
            passed_on = true;
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        exits.wait(Duration::from_millis(20));
    }
}

/// The child's exit, waited for with a pidfd (Linux 5.3 and later) where there is one: the
/// wait ends when the child does, not at the next tick (up to 20 ms after it, 10 on average,
/// in every release and rollback).
struct Exit(Option<std::os::fd::OwnedFd>);

impl Exit {
    fn of(child: &Child) -> Exit {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; the
        // descriptor is owned here alone.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
        Exit(
            (fd >= 0)
                .then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as std::os::fd::RawFd) }),
        )
    }

    /// Up to `most`, or until the child exits (or a signal comes).
    fn wait(&self, most: Duration) {
        use std::os::fd::AsRawFd;
        let Some(fd) = &self.0 else {
            return std::thread::sleep(most);
        };
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, alive for the call.
        unsafe { libc::poll(&mut p, 1, most.as_millis() as libc::c_int) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_side_command_carries_the_config_and_the_output_flags() {
        let ui = Ui {
            verbose: false,
            quiet: true,
            json: true,
            color: crate::ui::Color::Auto,
        };
        let argv = node_argv(
            Path::new("/p/deploy.yaml"),
            ui,
            Some(std::time::Duration::from_secs(90)),
            &["release".into(), "v2".into(), "prod".into()],
        );
        assert_eq!(
            argv,
            [
                "--node",
                "-c",
                "/p/deploy.yaml",
                "-q",
                "--json",
                "--lock-wait",
                "90000ms",
                "release",
                "v2",
                "prod"
            ]
        );
    }
}
