//! `deploy jobs`: each job's schedule, when its timer comes due next (systemd's word), its last
//! run, result and duration; and the jobs whose last run failed, for `deploy status`. As text,
//! or JSON with `--json` (fields are added, never renamed or removed).

use super::results::{Outcome, Results, Run};
use crate::node::Node;
use crate::sys::systemd::Systemd;
use anyhow::Result;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct Jobs {
    pub app: String,
    pub environment: String,
    pub jobs: Vec<JobRow>,
}

#[derive(Debug, Serialize)]
pub struct JobRow {
    pub name: String,
    pub schedule: String,
    pub command: String,
    pub timeout_ms: u64,
    /// `forbid` or `replace`.
    pub concurrency: String,
    /// The timer's ActiveState (`active` while it waits), `missing` when it is not installed
    /// (`deploy setup` or a release installs it), or `unknown` (with why).
    pub timer: String,
    /// When the timer comes due next (RFC 3339, UTC), as systemd says.
    pub next_run: Option<String>,
    /// Whether a run of it is going now.
    pub running: bool,
    /// Its last attempt (a skip too).
    pub last: Option<Run>,
}

/// A job whose last run failed or timed out, as `deploy status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct FailedJob {
    pub job: String,
    pub result: String,
    pub started_at: String,
    pub why: Option<String>,
}

/// `2026-11-27T03:00:00Z`. Pure.
fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl Jobs {
    pub fn text(&self) -> String {
        let mut out = format!(
            "{:<14} {:<20} {:<22} {:<22} {:<17} {}\n",
            "JOB", "SCHEDULE", "NEXT", "LAST", "RESULT", "DURATION"
        );
        for j in &self.jobs {
            let last = j.last.as_ref();
            let result = last.map(Run::result_text).unwrap_or_else(|| "-".into());
            out += &format!(
                "{:<14} {:<20} {:<22} {:<22} {:<17} {}\n",
                j.name,
                j.schedule,
                j.next_run.as_deref().unwrap_or("-"),
                last.map(|r| r.started_at.as_str()).unwrap_or("-"),
                result,
                last.filter(|r| r.result != Outcome::Skipped)
                    .map(|r| crate::ui::fmt_duration(Duration::from_millis(r.duration_ms)))
                    .unwrap_or_else(|| "-".into()),
            );
            if let Some(why) = last.and_then(|r| r.why.as_deref()) {
                out += &format!("{:<14} {}\n", "", why);
            }
            if j.running {
                out += &format!("{:<14} a run is going now\n", "");
            }
            if j.timer != "active" {
                out += &format!(
                    "{:<14} its timer is {}: `deploy setup {}` installs it\n",
                    "", j.timer, self.environment
                );
            }
        }
        if self.jobs.is_empty() {
            out += "  (no jobs: add them under `jobs:` in the config)\n";
        }
        out
    }
}

impl Node<'_> {
    pub fn jobs_report(&self) -> Result<Jobs> {
        self.require_setup()?;
        let results = self.job_results()?;
        let systemd = Systemd::connect();
        let jobs = self
            .config
            .jobs
            .iter()
            .map(|(name, job)| {
                let (timer, next_run) = match &systemd {
                    Ok(s) => self.timer_of(s, name),
                    Err(e) => (format!("unknown ({e:#})"), None),
                };
                JobRow {
                    name: name.clone(),
                    schedule: job.schedule.clone(),
                    command: job.command.clone(),
                    timeout_ms: job.timeout.as_millis() as u64,
                    concurrency: job.concurrency.as_str().into(),
                    timer,
                    next_run,
                    running: self.job_running(name),
                    last: results.last(name).cloned(),
                }
            })
            .collect();
        Ok(Jobs {
            app: self.config.app.clone(),
            environment: self.env_name.clone(),
            jobs,
        })
    }

    /// A job's timer: its state and when it comes due next.
    fn timer_of(&self, systemd: &Systemd, name: &str) -> (String, Option<String>) {
        let timer = self.names().job_timer(name);
        match systemd.state(&timer) {
            Ok(s) if s.load != "loaded" => ("missing".into(), None),
            Ok(s) => (
                s.active.to_string(),
                systemd.timer_next(&timer).ok().flatten().map(rfc3339),
            ),
            Err(e) => (format!("unknown ({e:#})"), None),
        }
    }

    /// Whether a run of the job holds its lock now.
    fn job_running(&self, name: &str) -> bool {
        let Ok(file) = std::fs::File::open(self.layout.job_lock(name)) else {
            return false;
        };
        matches!(
            file.try_lock_shared(),
            Err(std::fs::TryLockError::WouldBlock)
        )
    }

    /// The config's jobs whose last run (skips aside) failed or timed out.
    pub(crate) fn failed_jobs(&self) -> Vec<FailedJob> {
        let results = self.job_results().unwrap_or_else(|_| Results::default());
        self.config
            .jobs
            .keys()
            .filter_map(|name| {
                let run = results.last_ran(name).filter(|r| r.failed())?;
                Some(FailedJob {
                    job: name.clone(),
                    result: run.result_text(),
                    started_at: run.started_at.clone(),
                    why: run.why.clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, last: Option<Run>, timer: &str) -> JobRow {
        JobRow {
            name: name.into(),
            schedule: "*-*-* 03:00".into(),
            command: "/app/x".into(),
            timeout_ms: 600_000,
            concurrency: "forbid".into(),
            timer: timer.into(),
            next_run: Some("2026-11-27T03:00:00Z".into()),
            running: false,
            last,
        }
    }

    #[test]
    fn the_list_says_schedule_next_last_result_and_duration() {
        let failed = Run {
            started_at: "2026-11-26T03:00:00Z".into(),
            duration_ms: 1500,
            result: Outcome::Failed,
            exit_code: Some(3),
            why: Some("no such table: t".into()),
            version: Some("v2".into()),
            by: "timer".into(),
        };
        let report = Jobs {
            app: "shop".into(),
            environment: "prod".into(),
            jobs: vec![
                row("digest", Some(failed), "active"),
                row("sweep", None, "missing"),
            ],
        };
        let text = report.text();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("JOB "), "{text}");
        assert!(
            lines[1].starts_with("digest ")
                && lines[1].contains(" *-*-* 03:00 ")
                && lines[1].contains(" 2026-11-27T03:00:00Z ")
                && lines[1].contains(" 2026-11-26T03:00:00Z ")
                && lines[1].contains(" failed (exit 3) ")
                && lines[1].ends_with(" 1.50s"),
            "{text}"
        );
        assert!(lines[2].trim() == "no such table: t", "{text}");
        assert!(
            lines[3].starts_with("sweep ") && lines[3].ends_with(" -"),
            "{text}"
        );
        assert!(
            lines[4].contains("its timer is missing: `deploy setup prod`"),
            "{text}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["jobs"][0]["last"]["exit_code"], 3);
        assert_eq!(json["jobs"][0]["next_run"], "2026-11-27T03:00:00Z");
        assert_eq!(rfc3339(std::time::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let mut going = row("sweep", None, "active");
        going.running = true;
        let text = Jobs {
            jobs: vec![going],
            ..report
        }
        .text();
        assert!(text.lines().nth(1).unwrap().starts_with("sweep "), "{text}");
        assert_eq!(text.lines().nth(2).unwrap().trim(), "a run is going now");
    }
}
