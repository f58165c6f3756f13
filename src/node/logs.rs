//! `deploy logs`: the app's own output (what the container writes, in Podman's k8s-file log at
//! `<path>/log/<app>.log`), or with `--job NAME` a job's (every run's, in
//! `<path>/log/job_<name>.log`, each run between deploy's own `==` lines), the last lines, and
//! with `-f` what comes after, as it comes; `--since` and `--grep` choose among them.

use crate::node::runtime::strip_k8s_prefix;
use crate::node::Node;
use anyhow::{Context, Result};
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::{Duration, SystemTime};

/// The last `n` lines of a log's text, prefixes removed. Pure.
pub fn last_lines(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| strip_k8s_prefix(l))
        .collect()
}

/// Which lines `deploy logs` shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// How many of the last lines (default 50, or all with `since`).
    pub lines: Option<usize>,
    /// Only lines written this long ago or since.
    pub since: Option<Duration>,
    /// Only lines that contain this text.
    pub grep: Option<String>,
    /// A job's log (`--job NAME`), not the app's.
    pub job: Option<String>,
}

impl Filter {
    /// Whether a line's text (its prefix removed) is shown, as `--grep` says. Pure.
    fn matches(&self, text: &str) -> bool {
        self.grep.as_deref().is_none_or(|g| text.contains(g))
    }

    /// The lines of a log's text to show first, as of `now`, prefixes removed. Pure.
    pub fn first_lines(&self, text: &str, now: SystemTime) -> Vec<String> {
        let from = self.since.and_then(|d| now.checked_sub(d));
        let chosen: Vec<String> = text
            .lines()
            .filter(|l| match (from, line_time(l)) {
                (Some(from), Some(t)) => t >= from,
                _ => true,
            })
            .map(strip_k8s_prefix)
            .filter(|l| self.matches(l))
            .collect();
        let n = self
            .lines
            .unwrap_or(if self.since.is_some() { usize::MAX } else { 50 });
        chosen[chosen.len().saturating_sub(n)..].to_vec()
    }
}

/// When Podman wrote a log line (`2026-11-22T19:05:25.32+01:00 stdout F ...`), if it says.
/// Pure.
pub fn line_time(line: &str) -> Option<SystemTime> {
    let stamp = line.split(' ').next()?;
    let (local, offset_secs) = match stamp.strip_suffix('Z') {
        Some(s) => (s, 0i64),
        None => {
            let at = stamp.len().checked_sub(6)?;
            let (local, offset) = (stamp.get(..at)?, stamp.get(at..)?);
            let sign = match offset.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = offset.get(1..)?.split_once(':')?;
            (
                local,
                sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60),
            )
        }
    };
    if !local.contains('T') {
        return None;
    }
    let t = humantime::parse_rfc3339_weak(local).ok()?;
    let shift = Duration::from_secs(offset_secs.unsigned_abs());
    if offset_secs >= 0 {
        t.checked_sub(shift)
    } else {
        t.checked_add(shift)
    }
}

impl Node<'_> {
    /// Which log: the app's, or the job `job`'s (one of the config's, or one that has a log).
    fn log_of(&self, job: Option<&str>) -> Result<(std::path::PathBuf, String)> {
        let Some(job) = job else {
            return Ok((
                self.layout.app_log(&self.config.app),
                self.config.app.clone(),
            ));
        };
        let path = self.layout.job_log(job);
        if !path.exists() {
            self.job(job)?;
        }
        Ok((path, format!("the job {job}")))
    }

    pub fn logs(&self, filter: &Filter, follow: bool) -> Result<()> {
        self.require_setup()?;
        let (path, whose) = self.log_of(filter.job.as_deref())?;
        let mut out = std::io::stdout().lock();
        let mut offset = 0u64;
        match std::fs::read(&path) {
            Ok(bytes) => {
                offset = bytes.len() as u64;
                // Only complete lines; a partial last line is printed once it is complete.
                let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                offset = offset.min(complete as u64);
                let text = String::from_utf8_lossy(&bytes[..complete]);
                for line in filter.first_lines(&text, SystemTime::now()) {
                    if writeln!(out, "{line}").is_err() {
                        return Ok(()); // the reader went away
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !follow {
                    self.ui.info(&format!(
                        "   {whose} has no output yet ({} does not exist)",
                        path.display()
                    ));
                }
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
        let _ = out.flush();
        if !follow {
            return Ok(());
        }
        let mut pending = String::new();
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let Ok(mut f) = std::fs::File::open(&path) else {
                continue;
            };
            let len = f.metadata()?.len();
            if len < offset {
                offset = 0; // rotated or truncated: read the new file from its start
            }
            if len == offset {
                continue;
            }
            f.seek(SeekFrom::Start(offset))?;
            let mut buf = Vec::new();
            f.take(len - offset).read_to_end(&mut buf)?;
            offset = len;
            pending.push_str(&String::from_utf8_lossy(&buf));
            while let Some(i) = pending.find('\n') {
                let line: String = pending.drain(..=i).collect();
                let text = strip_k8s_prefix(line.trim_end_matches('\n'));
                if filter.matches(&text) && writeln!(out, "{text}").is_err() {
                    return Ok(());
                }
            }
            if out.flush().is_err() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_lines_without_podman_prefixes() {
        let log = "2026-11-22T19:05:25.32+00:00 stdout F one\n\
                   2026-11-22T19:05:25.33+00:00 stderr F two\n\
                   2026-11-22T19:05:25.34+00:00 stdout F three\n";
        assert_eq!(last_lines(log, 2), ["two", "three"]);
        assert_eq!(last_lines(log, 10).len(), 3);
        assert!(last_lines("", 5).is_empty());
    }

    #[test]
    fn since_and_grep_choose_the_lines() {
        let log = "2026-11-22T19:00:00.1+00:00 stdout F old error\n\
                   2026-11-22T20:05:00.5+01:00 stdout F recent error\n\
                   2026-11-22T19:09:00.000000001Z stdout F recent fine\n";
        let now = humantime::parse_rfc3339("2026-11-22T19:10:00Z").unwrap();
        let f = |since: Option<u64>, grep: Option<&str>, lines: Option<usize>| {
            Filter {
                lines,
                since: since.map(|m| Duration::from_secs(m * 60)),
                grep: grep.map(String::from),
                job: None,
            }
            .first_lines(log, now)
        };
        assert_eq!(f(Some(6), None, None), ["recent error", "recent fine"]);
        assert_eq!(f(None, Some("error"), None), ["old error", "recent error"]);
        assert_eq!(f(Some(6), Some("error"), None), ["recent error"]);
        assert_eq!(f(None, None, Some(1)), ["recent fine"]);
        assert_eq!(
            line_time("2026-11-22T20:05:00.5+01:00 stdout F x"),
            Some(humantime::parse_rfc3339("2026-11-22T19:05:00.5Z").unwrap())
        );
        assert_eq!(line_time("plain text"), None);
    }
}
