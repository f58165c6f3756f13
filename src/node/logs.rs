//! `deploy logs`: the app's own output (what the container writes, in Podman's k8s-file log at
//! `<path>/log/<app>.log`), or with `--job NAME` a job's (every run's, in
//! `<path>/log/job_<name>.log`, each run between deploy's own `==` lines), the last lines, and
//! with `-f` what comes after, as it comes.

use crate::node::{strip_k8s_prefix, Node};
use anyhow::{Context, Result};
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

/// The last `n` lines of a log's text, prefixes removed. Pure.
pub fn last_lines(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| strip_k8s_prefix(l))
        .collect()
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

    pub fn logs(&self, job: Option<&str>, n: usize, follow: bool) -> Result<()> {
        self.require_setup()?;
        let (path, whose) = self.log_of(job)?;
        let mut out = std::io::stdout().lock();
        let mut offset = 0u64;
        match std::fs::read(&path) {
            Ok(bytes) => {
                offset = bytes.len() as u64;
                // Only complete lines; a partial last line is printed once it is complete.
                let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                offset = offset.min(complete as u64);
                for line in last_lines(&String::from_utf8_lossy(&bytes[..complete]), n) {
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
                if writeln!(out, "{}", strip_k8s_prefix(line.trim_end_matches('\n'))).is_err() {
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
}
