//! How the jobs' runs went, in `.deploy/jobs.json` (0600, written atomically under a lock of
//! its own; never the release state): per job its last runs, oldest first, each with its
//! start, duration and result (ok, failed with its exit code, timed out, stopped, skipped with
//! why).

use crate::node::Node;
use crate::sys::fsx;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// How many runs of each job are kept.
const KEPT: usize = 20;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Ok,
    /// It exited non-zero (its code), or deploy could not run it (why).
    Failed,
    /// It ran longer than its timeout: its container was removed.
    TimedOut,
    /// SIGTERM or SIGINT ended it: a run that replaced it (`concurrency: replace`), a stop.
    Stopped,
    /// It did not run (why): a run still going (`concurrency: forbid`), nothing live, the app
    /// halted, a swap unfinished, the fence closed too long.
    Skipped,
}

/// One run of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// RFC 3339, UTC.
    pub started_at: String,
    pub duration_ms: u64,
    pub result: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// The release it ran as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `timer`, or who typed `deploy jobs run`.
    pub by: String,
}

impl Run {
    /// The result in words: `ok`, `failed (exit 3)`, `timed out`, `stopped`, `skipped`. Pure.
    pub fn result_text(&self) -> String {
        match (self.result, self.exit_code) {
            (Outcome::Ok, _) => "ok".into(),
            (Outcome::Failed, Some(code)) => format!("failed (exit {code})"),
            (Outcome::Failed, None) => "failed".into(),
            (Outcome::TimedOut, _) => "timed out".into(),
            (Outcome::Stopped, _) => "stopped".into(),
            (Outcome::Skipped, _) => "skipped".into(),
        }
    }

    /// `ok in 1.2s`, `skipped: why`: one line for a log or a message. Pure.
    pub fn summary(&self) -> String {
        let took = crate::ui::fmt_duration(Duration::from_millis(self.duration_ms));
        match (&self.result, &self.why) {
            (Outcome::Skipped, Some(why)) => format!("skipped: {why}"),
            (_, Some(why)) => format!("{} after {took}: {why}", self.result_text()),
            (_, None) => format!("{} in {took}", self.result_text()),
        }
    }

    /// A run that failed or ran out of time: what `deploy status` shows.
    pub fn failed(&self) -> bool {
        matches!(self.result, Outcome::Failed | Outcome::TimedOut)
    }
}

/// Every job's last runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Results {
    #[serde(default)]
    pub jobs: BTreeMap<String, Vec<Run>>,
}

impl Results {
    /// Adds a run of `job`, keeping its last [`KEPT`]. Pure.
    pub fn push(&mut self, job: &str, run: Run) {
        let runs = self.jobs.entry(job.to_string()).or_default();
        runs.push(run);
        let over = runs.len().saturating_sub(KEPT);
        runs.drain(..over);
    }

    /// The last attempt of `job`, skipped or not.
    pub fn last(&self, job: &str) -> Option<&Run> {
        self.jobs.get(job)?.last()
    }

    /// The last run of `job` that ran (not skipped).
    pub fn last_ran(&self, job: &str) -> Option<&Run> {
        self.jobs
            .get(job)?
            .iter()
            .rev()
            .find(|r| r.result != Outcome::Skipped)
    }
}

impl Node<'_> {
    /// The jobs' runs as recorded; none yet when the file is missing.
    pub(crate) fn job_results(&self) -> Result<Results> {
        let path = self.layout.jobs_file();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is not valid JSON: move it away (the jobs' next runs start a new one)",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Results::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Records a run of `job`, under the file's own lock (runs of several jobs end at once).
    pub(crate) fn record_job_run(&self, job: &str, run: Run) -> Result<()> {
        let path = self.layout.jobs_file();
        fsx::with_lock(&path.with_extension("lock"), || {
            // A file nobody can read any more is started anew rather than stop every job.
            let mut results = self.job_results().unwrap_or_default();
            results.push(job, run);
            fsx::write_atomic(&path, &serde_json::to_vec_pretty(&results)?, 0o600)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(result: Outcome, exit_code: Option<i32>, why: Option<&str>) -> Run {
        Run {
            started_at: "2026-11-26T03:00:00Z".into(),
            duration_ms: 1200,
            result,
            exit_code,
            why: why.map(String::from),
            version: Some("v2".into()),
            by: "timer".into(),
        }
    }

    #[test]
    fn a_runs_result_reads_as_words() {
        assert_eq!(run(Outcome::Ok, Some(0), None).summary(), "ok in 1.20s");
        assert_eq!(
            run(Outcome::Failed, Some(3), Some("no such table")).summary(),
            "failed (exit 3) after 1.20s: no such table"
        );
        assert_eq!(
            run(Outcome::Skipped, None, Some("nothing is live")).summary(),
            "skipped: nothing is live"
        );
        assert!(run(Outcome::TimedOut, None, None).failed());
        assert!(!run(Outcome::Stopped, None, None).failed());
    }

    #[test]
    fn the_last_runs_are_kept_and_a_skip_does_not_hide_the_last_result() {
        let mut r = Results::default();
        for _ in 0..KEPT + 5 {
            r.push("digest", run(Outcome::Ok, Some(0), None));
        }
        assert_eq!(r.jobs["digest"].len(), KEPT);
        r.push("digest", run(Outcome::Failed, Some(2), None));
        r.push("digest", run(Outcome::Skipped, None, Some("forbid")));
        assert_eq!(r.last("digest").unwrap().result, Outcome::Skipped);
        assert_eq!(r.last_ran("digest").unwrap().exit_code, Some(2));
        assert!(r.last("sweep").is_none());
        let json = serde_json::to_string(&r.jobs["digest"][KEPT - 1]).unwrap();
        assert!(json.contains("\"result\":\"skipped\""), "{json}");
        assert!(!json.contains("exit_code"), "{json}");
    }
}
