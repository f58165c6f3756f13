//! The health check: GET http://127.0.0.1:<port><path> until it answers 2xx or time runs out.

use anyhow::{bail, Result};
use std::time::{Duration, Instant};

pub fn url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

/// One probe: Ok(status) for any HTTP answer, Err for no answer.
pub fn probe(url: &str, timeout: Duration) -> Result<u16, String> {
    // No redirects: a 302 to a page that answers 200 is not a healthy app.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
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
/// when the unit has failed). The first probes come fine-grained (10 ms, doubling up to
/// `interval`): the app usually answers within a few hundred milliseconds of its start, and a
/// coarse first wait would add up to a whole interval to the gap. Returns how long it took.
pub fn wait_healthy(
    url: &str,
    timeout: Duration,
    interval: Duration,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<Duration> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(10).min(interval);
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
        if start.elapsed() + pause > timeout {
            bail!("{url} did not answer 2xx within {timeout:?} (last: {last})");
        }
        alive()?;
        std::thread::sleep(pause);
        pause = (pause * 2).min(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A server on a free port that answers every request with `answer`.
    fn server(answer: &'static str) -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                let mut buf = [0; 4096];
                let _ = c.read(&mut buf);
                let _ = c.write_all(answer.as_bytes());
            }
        });
        port
    }

    #[test]
    fn a_redirect_is_not_healthy() {
        let ok = server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        let redirect = Box::leak(
            format!(
                "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{ok}/\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            )
            .into_boxed_str(),
        );
        let port = server(redirect);
        assert_eq!(
            probe(&url(port, "/healthz"), Duration::from_secs(2)),
            Ok(302)
        );
        let e = wait_healthy(
            &url(port, "/healthz"),
            Duration::from_millis(300),
            Duration::from_millis(100),
            || Ok(()),
        )
        .unwrap_err();
        assert!(format!("{e}").contains("HTTP 302"), "{e}");
        assert_eq!(probe(&url(ok, "/"), Duration::from_secs(2)), Ok(200));
    }
}
