//! The health check: GET http://127.0.0.1:<port><path> until it answers 2xx or time runs out.

use anyhow::{bail, Result};
use std::time::{Duration, Instant};

pub fn url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

/// One probe: Ok(status) for any HTTP answer, Err for no answer.
pub fn probe(url: &str, timeout: Duration) -> Result<u16, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .proxy(None)
        .build()
        .into();
    agent
        .get(url)
        .call()
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

/// Polls until a 2xx answer. `alive` is asked between probes and may end the wait early (e.g.
/// when the unit has failed). Returns how long it took.
pub fn wait_healthy(
    url: &str,
    timeout: Duration,
    interval: Duration,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<Duration> {
    let start = Instant::now();
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        let last = match probe(
            url,
            left.clamp(Duration::from_millis(100), Duration::from_secs(5)),
        ) {
            Ok(s) if (200..300).contains(&s) => return Ok(start.elapsed()),
            Ok(s) => format!("HTTP {s}"),
            Err(e) => e,
        };
        if start.elapsed() + interval > timeout {
            bail!("{url} did not answer 2xx within {timeout:?} (last: {last})");
        }
        alive()?;
        std::thread::sleep(interval);
    }
}
