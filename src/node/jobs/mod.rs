//! `jobs:`: periodic work (cleanups, digests, exports) that knows about releases, as cron does
//! not. Each job has a user timer (`<app>_<env>_job_<name>.timer`, [`timers`]); when it comes
//! due, its service (`deploy jobs run-scheduled`) starts one run in a transient unit of its own
//! and ends, so the timer comes due again while a run goes on. A run:
//!
//! 1. holds the job's lock (`.deploy/jobs/<name>.lock`) for its whole life: one run still going
//!    (or a container of the job's left by a run that died) is kept and the new run skipped
//!    (`concurrency: forbid`, the default), or stopped for it (`replace`);
//! 2. gets past the fence ([`Node::when_fence_open`]): a one-off container of the *live*
//!    release, with the app's env, mounts and variables (as `deploy exec`'s), labelled
//!    `deploy.kind=job`, `deploy.job=<name>` and who started it, is created under the fence's
//!    lock while the fence is open. A run that comes due during a swap waits for it (bounded),
//!    then runs as the release then live; with nothing live, the app halted (its `hold` left by
//!    a halt) or a swap unfinished, it is skipped, and why recorded;
//! 3. is started, its output appended to `<path>/log/job_<name>.log` (and here for `deploy jobs
//!    run`), and given its `timeout`: then its container is removed (and its client killed);
//! 4. is recorded in `.deploy/jobs.json` ([`results`]): start, duration, result.

/// The step line of installing the jobs' timers (setup, a release).
pub const INSTALL_STEP: &str = "Installing the jobs' timers";

pub mod report;
pub mod results;
pub mod timers;

use crate::config::{Concurrency, Job};
use crate::node::fence::Passage;
use crate::node::swap::journal::Owner;
use crate::node::{unit, Node};
use crate::sys::{fsx, podman, systemd::Systemd};
use anyhow::{anyhow, bail, Context, Result};
use results::{Outcome, Run};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

/// Who a scheduled run is started by (the `deploy.by` label).
const BY_TIMER: &str = "timer";

/// How a run's container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ended {
    /// Its client's exit code (the container's), or none when a signal ended the client.
    Exited(Option<i32>),
    TimedOut,
    /// SIGTERM or SIGINT reached this run.
    Stopped,
}

/// The command line of one scheduled run, in its transient unit: the kept binary with the kept
/// config. Pure.
pub fn run_unit_argv(bin: &str, config: &str, job: &str, env: &str) -> Vec<String> {
    [
        bin,
        "--node",
        "--resolved",
        "-c",
        config,
        "jobs",
        "run-unit",
        job,
        env,
    ]
    .map(String::from)
    .to_vec()
}

/// A run's record from how its container ended. `said`: the last of what its client wrote
/// (the job's or podman's own last line), for a failure. Pure.
fn ended_run(ended: &Ended, said: &str) -> (Outcome, Option<i32>, Option<String>) {
    let said = said.trim().lines().last().map(String::from);
    match ended {
        Ended::Exited(Some(0)) => (Outcome::Ok, Some(0), None),
        Ended::Exited(Some(code)) => (Outcome::Failed, Some(*code), said),
        Ended::Exited(None) => (
            Outcome::Failed,
            None,
            Some("podman's client was killed by a signal".into()),
        ),
        Ended::TimedOut => (
            Outcome::TimedOut,
            None,
            Some("its timeout ran out: its container was removed".into()),
        ),
        Ended::Stopped => (
            Outcome::Stopped,
            None,
            Some("SIGTERM or SIGINT (a run that replaced it, or a stop)".into()),
        ),
    }
}

/// Keeps the last `max` bytes of what a reader writes (a run's stderr), on a thread. Pure but
/// for the reading.
fn keep_tail(mut from: impl Read + Send + 'static, max: usize) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut tail: Vec<u8> = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            let over = tail.len().saturating_sub(max);
            tail.drain(..over);
        }
        String::from_utf8_lossy(&tail).into_owned()
    })
}

/// A run that holds its job's lock; let go when dropped.
struct Claim {
    _file: File,
}

impl Node<'_> {
    /// The job `name` of the config, or an error listing the jobs there are.
    pub(crate) fn job(&self, name: &str) -> Result<&Job> {
        self.config.jobs.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.config.jobs.keys().map(String::as_str).collect();
            anyhow!(
                "{} has no job `{name}` (jobs: {}): add it to `jobs:` and release, or pick \
                 one of those",
                self.env_name,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        })
    }

    /// How long a run that came due while the fence is closed waits for it: a swap's longest
    /// gap (its hooks, the old release's stop, the new one's health check) and a minute.
    fn fence_wait(&self) -> Duration {
        let c = self.config;
        let hooks = c.hooks.in_gap.len().max(1) as u32;
        c.hooks.timeout * hooks
            + c.health.timeout
            + c.container.stop_timeout * 2
            + Duration::from_secs(60)
    }

    /// `deploy jobs run NAME`: one run now, as its timer's would be, its output here. Its
    /// result is this command's: a failure, a timeout or a skip exits non-zero.
    pub fn run_job_now(&self, name: &str) -> Result<()> {
        self.require_setup()?;
        let job = self.job(name)?;
        crate::signals::defer();
        let by = crate::node::state::Origin::current()
            .who
            .unwrap_or_else(|| "?".into());
        let run = self.run_job(name, job, &by, true)?;
        let said = format!("the job {name} {}", run.summary());
        match run.result {
            Outcome::Ok => {
                self.ui.done(
                    &said,
                    serde_json::json!({"action": "job", "job": name, "run": run}),
                );
                Ok(())
            }
            Outcome::Skipped => Err(crate::exit::with(crate::exit::Code::Locked, anyhow!(said))),
            Outcome::Stopped => Err(crate::exit::with(
                crate::exit::Code::Interrupted,
                anyhow!(said),
            )),
            Outcome::Failed | Outcome::TimedOut => bail!(
                "{said} (its output is above, and in `deploy logs --job {name} {}`)",
                self.env_name
            ),
        }
    }

    /// What a job's timer runs: starts one run in a transient unit of its own and returns, so
    /// the timer can come due again while it goes on.
    pub fn start_scheduled_run(&self, name: &str) -> Result<()> {
        self.require_setup()?;
        self.job(name).context(
            "a timer of a job no longer in the config: the next `deploy setup` or release \
             removes it",
        )?;
        let systemd = Systemd::connect()?;
        let unit = crate::sys::systemd::Transient {
            name: self.names().job_run_unit(name, &run_id()),
            description: format!(
                "A run of the job {name} of {} ({})",
                self.config.app, self.env_name
            ),
            argv: run_unit_argv(
                &self.kept_bin().display().to_string(),
                &self.kept_config().display().to_string(),
                name,
                &self.env_name,
            ),
            stop_timeout: self.config.container.stop_timeout + Duration::from_secs(30),
            environment: Vec::new(),
            runtime_max: None,
        };
        systemd
            .start_transient(&unit)
            .with_context(|| format!("cannot start a run of the job {name}"))
    }

    /// One scheduled run, in the transient unit [`Node::start_scheduled_run`] started: its
    /// outcome is recorded, never this process's exit code.
    pub fn run_scheduled_job(&self, name: &str) -> Result<()> {
        self.require_setup()?;
        let job = self.job(name)?;
        crate::signals::defer();
        let run = self.run_job(name, job, BY_TIMER, false)?;
        self.ui.info(&format!("the job {name} {}", run.summary()));
        Ok(())
    }

    /// A run of `name`, from its claim to its record. `attached`: its output goes to this
    /// terminal too (`deploy jobs run`).
    fn run_job(&self, name: &str, job: &Job, by: &str, attached: bool) -> Result<Run> {
        let started_at = crate::sys::now();
        let t = Instant::now();
        let log = self.layout.job_log(name);
        fsx::ensure_dir(&self.layout.log_dir(), 0o755)?;
        let record = |result: (Outcome, Option<i32>, Option<String>), version: Option<String>| {
            let (result, exit_code, why) = result;
            let run = Run {
                started_at: started_at.clone(),
                duration_ms: t.elapsed().as_millis() as u64,
                result,
                exit_code,
                why,
                version,
                by: by.to_string(),
            };
            self.note_in_log(&log, &format!("{name}: {}", run.summary()));
            self.record_job_run(name, run.clone())?;
            Ok(run)
        };
        // Held by hand (`deploy lock acquire`): the job waits its next turn, said.
        if let Some(hold) = self.held_by_hand()? {
            let why = format!("held by hand: {}", hold.message);
            return record((Outcome::Skipped, None, Some(why)), None);
        }
        let _claim = match self.claim_job(name, job.concurrency, by)? {
            Ok(claim) => claim,
            Err(why) => return record((Outcome::Skipped, None, Some(why)), None),
        };
        let (container, version) = match self.create_job_container(name, job, by)? {
            Passage::Through { made, waited } => {
                if let Some((took, closed_by)) = waited {
                    let took = crate::ui::fmt_duration(took);
                    self.note_in_log(
                        &log,
                        &format!("{name}: waited {took} for the fence ({closed_by})"),
                    );
                }
                made
            }
            Passage::Skipped(why) => return record((Outcome::Skipped, None, Some(why)), None),
        };
        self.note_in_log(
            &log,
            &format!("{name}: run of {version} by {by}, as {container}"),
        );
        let (ended, said) = self.attend(&container, job.timeout, attached)?;
        record(ended_run(&ended, &said), Some(version))
    }

    /// A line of deploy's own in the job's log, between its runs' output.
    fn note_in_log(&self, log: &std::path::Path, text: &str) {
        let line = format!("== {} {text}\n", crate::sys::now());
        let written = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            self.ui
                .warn(&format!("cannot write to {}: {e}", log.display()));
        }
    }

    /// Takes the job's lock, for this run's whole life. A run still going (the lock held, or a
    /// container of the job's whose run died) is kept and this one skipped (`forbid`: the
    /// `Err` says why; `deploy jobs run` first waits for it up to `--lock-wait`), or stopped
    /// first (`replace`: SIGTERM to its run, which removes its container; a container left
    /// alone is stopped and removed).
    fn claim_job(
        &self,
        name: &str,
        concurrency: Concurrency,
        by: &str,
    ) -> Result<std::result::Result<Claim, String>> {
        let path = self.layout.job_lock(name);
        fsx::ensure_private_dir(path.parent().expect("the jobs' lock directory"))?;
        let mut file = fsx::open_lock_file(&path)?;
        let deadline = Instant::now() + self.lock_wait.unwrap_or_default();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    file.rewind()?;
                    let _ = file.read_to_string(&mut holder);
                    let who = holder.lines().next().unwrap_or("a run").to_string();
                    if concurrency == Concurrency::Replace {
                        self.end_run(&holder, &who, &file)?;
                        break;
                    }
                    if Instant::now() >= deadline || crate::signals::interrupted() {
                        return Ok(Err(format!("{who} is still going (concurrency: forbid)")));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("cannot lock {}", path.display()))
                }
            }
        }
        let text = format!(
            "the run by {by} since {}\n{}\n",
            crate::sys::now(),
            Owner::this().to_line()
        );
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(text.as_bytes())?;
        let left = self.job_containers(name)?;
        if !left.is_empty() {
            if concurrency == Concurrency::Forbid {
                return Ok(Err(format!(
                    "a container of an earlier run, {}, is still there (concurrency: forbid; \
                     `podman rm --force` it to end it)",
                    left.join(", ")
                )));
            }
            for c in &left {
                podman::stop_and_remove(c, self.config.container.stop_timeout)?;
            }
        }
        Ok(Ok(Claim { _file: file }))
    }

    /// `concurrency: replace`: the run holding `lock` (its owner on the second line of
    /// `holder`) gets SIGTERM and is waited for (it removes its container: the app's stop
    /// timeout, and 30 s).
    fn end_run(&self, holder: &str, who: &str, lock: &File) -> Result<()> {
        if let Some(owner) = holder.lines().nth(1).and_then(Owner::from_line) {
            if owner.alive() {
                self.ui
                    .info(&format!("   stopping {who} (concurrency: replace)"));
                // SAFETY: kill(2) with a pid and a signal number; nothing is shared.
                unsafe {
                    libc::kill(owner.pid as libc::pid_t, libc::SIGTERM);
                }
            }
        }
        let wait = self.config.container.stop_timeout + Duration::from_secs(30);
        let deadline = Instant::now() + wait;
        loop {
            match lock.try_lock() {
                Ok(()) => return Ok(()),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(TryLockError::WouldBlock) => bail!(
                    "{who} did not end within {} of SIGTERM (concurrency: replace): end it \
                     with `systemctl --user stop` on its unit, or kill it",
                    humantime::format_duration(wait)
                ),
                Err(TryLockError::Error(e)) => return Err(e).context("cannot lock the job"),
            }
        }
    }

    /// The containers of the job `name` in this environment, running or not.
    fn job_containers(&self, name: &str) -> Result<Vec<String>> {
        let filter = format!("label={}", self.names().writer_label());
        let format = format!(
            "{{{{.Names}}}}|{{{{index .Labels \"{}\"}}}}",
            crate::names::JOB_LABEL
        );
        let lines = podman::lines_of(&["ps", "--all", "--filter", &filter, "--format", &format])?;
        Ok(lines
            .iter()
            .filter_map(|l| l.split_once('|'))
            .filter(|(_, job)| *job == name)
            .map(|(container, _)| container.to_string())
            .collect())
    }

    /// The run's container, made under the fence's lock once the fence is open, of the
    /// release live then: the container's name and that release. Skipped with nothing live, the
    /// app halted or a swap unfinished.
    fn create_job_container(
        &self,
        name: &str,
        job: &Job,
        by: &str,
    ) -> Result<Passage<(String, String)>> {
        let rt = self.runtime();
        // Validated with the config: it splits, into at least one word.
        let words = crate::sys::shell::sh_split(&job.command).map_err(|e| anyhow!(e))?;
        let log = self.layout.job_log(name).display().to_string();
        let spec = rt.unit_spec();
        self.when_fence_open(self.fence_wait(), || {
            let Some(live) = self.current()? else {
                return Ok(Err(format!(
                    "nothing is live on {} (release first)",
                    self.env_name
                )));
            };
            // With the fence open, the hold a swap writes is left only by a halt.
            if self.layout.hold_file().exists() {
                return Ok(Err(format!(
                    "the app is halted (a failed swap left it stopped, {} held): `deploy \
                     status {}` says what to do",
                    self.layout.hold_file().display(),
                    self.env_name
                )));
            }
            // Under the fence's lock: the release read here is the one that runs. Its image
            // is rebuilt here in the rare case it went missing.
            let image = rt.ensure_image(&self.load_state()?, &live)?;
            self.ensure_release_vars(&live)?;
            let container = self.names().job_container(name, &run_id());
            let run = unit::JobRun {
                job: name,
                by,
                log: &log,
            };
            podman::create(&unit::job_args(
                &spec, &image, &live, &container, run, &words,
            ))?;
            Ok(Ok((container, live)))
        })
    }

    /// Starts the run's container and waits for it, up to `timeout`: then the container is
    /// removed (the client alone going would leave it running) and the client killed. SIGTERM
    /// or SIGINT meanwhile stops it (the app's stop timeout) and removes it. How it ended, and
    /// the last of what its client wrote (not attached: for a failure's record).
    fn attend(
        &self,
        container: &str,
        timeout: Duration,
        attached: bool,
    ) -> Result<(Ended, String)> {
        use std::process::Stdio;
        let mut start = std::process::Command::new("podman");
        start
            .args(["start", "--attach", container])
            .stdin(Stdio::null());
        if !attached {
            start.stdout(Stdio::null()).stderr(Stdio::piped());
        }
        let mut client = start.spawn().context("cannot run podman")?;
        let tail = client.stderr.take().map(|e| keep_tail(e, 2048));
        let deadline = Instant::now() + timeout;
        let ended = loop {
            if let Some(status) = client.try_wait().context("cannot wait for podman")? {
                // It removes itself (--rm); made sure of before the run lets go of its lock,
                // so the next never finds it and takes it for a run still going.
                if let Err(e) = podman::remove_container_now(container) {
                    self.ui.warn(&format!("{e:#}"));
                }
                // A Ctrl-C reaches the container too (podman passes it on): it was stopped.
                break match crate::signals::interrupted() {
                    true => Ended::Stopped,
                    false => Ended::Exited(status.code()),
                };
            }
            let (late, stopped) = (Instant::now() >= deadline, crate::signals::interrupted());
            if late || stopped {
                let removed = match late {
                    true => podman::remove_container_now(container),
                    false => podman::stop_and_remove(container, self.config.container.stop_timeout),
                };
                let _ = client.kill();
                let _ = client.wait();
                removed.with_context(|| {
                    format!("the run's container {container} could not be removed: remove it")
                })?;
                break if late {
                    Ended::TimedOut
                } else {
                    Ended::Stopped
                };
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let said = tail.and_then(|t| t.join().ok()).unwrap_or_default();
        Ok((ended, said))
    }
}

/// A run's own id: digits of the time and this process's id (unique, sorts by time).
fn run_id() -> String {
    let stamp: String = crate::node::snapshot::stamp()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    format!("{stamp}{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheduled_run_is_the_kept_deploy_with_the_kept_config() {
        assert_eq!(
            run_unit_argv(
                "/srv/shop/.deploy/bin/deploy",
                "/srv/shop/.deploy/config.yaml",
                "digest",
                "prod"
            )
            .join(" "),
            "/srv/shop/.deploy/bin/deploy --node --resolved -c /srv/shop/.deploy/config.yaml \
             jobs run-unit digest prod"
        );
    }

    #[test]
    fn how_a_container_ended_is_how_the_run_is_recorded() {
        assert_eq!(
            ended_run(&Ended::Exited(Some(0)), "x"),
            (Outcome::Ok, Some(0), None)
        );
        assert_eq!(
            ended_run(&Ended::Exited(Some(3)), "working\nno such table: t\n"),
            (Outcome::Failed, Some(3), Some("no such table: t".into()))
        );
        assert_eq!(ended_run(&Ended::Exited(Some(3)), "").2, None);
        let (result, code, why) = ended_run(&Ended::TimedOut, "");
        assert_eq!((result, code), (Outcome::TimedOut, None));
        assert!(why.unwrap().contains("container was removed"));
        assert_eq!(ended_run(&Ended::Stopped, "").0, Outcome::Stopped);
        assert_eq!(ended_run(&Ended::Exited(None), "").0, Outcome::Failed);
    }

    #[test]
    fn only_the_tail_of_a_runs_output_is_kept() {
        let text = "a".repeat(10_000) + "\nthe end\n";
        let tail = keep_tail(std::io::Cursor::new(text.into_bytes()), 100)
            .join()
            .unwrap();
        assert_eq!(tail.len(), 100);
        assert!(tail.ends_with("\nthe end\n"));
    }
}
